// gram_matrix and gram_mse_loss on CUDA: cuBLAS through at::bmm. cuBLAS's syrk is not reachable
// from this build (the toolkit here lacks the cuBLAS headers), so no symmetric saving on the GPU;
// the win there is the one-GEMM backward, which is device-independent (dreamkit/ops/gram.py).
#include <ATen/ops/bmm.h>
#include <torch/library.h>
#include <torch/types.h>

#include "cuda/glue.h"

namespace {

at::Tensor gram_matrix_cuda(const at::Tensor& x, bool normalize) {
  TORCH_CHECK(x.is_cuda(), "dreamkit::gram_matrix (CUDA kernel): x is on ", x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor features = dreamkit::gram_features(x);
  at::Tensor gram = at::bmm(features, features.transpose(1, 2));
  const int64_t scale = features.size(1) * features.size(2);
  if (normalize && scale > 0) gram.div_(static_cast<double>(scale));
  return gram;
}

std::tuple<at::Tensor, at::Tensor> gram_mse_loss_cuda(const at::Tensor& x, const at::Tensor& target, bool normalize) {
  TORCH_CHECK(target.device() == x.device(), "dreamkit::gram_mse_loss: target is on ", target.device(),
              " but x is on ", x.device());
  return dreamkit::gram_mse_loss_from_gram(gram_matrix_cuda(x, normalize), target);
}

}  // namespace

TORCH_LIBRARY_IMPL(dreamkit, CUDA, m) {
  m.impl("gram_matrix", &gram_matrix_cuda);
  m.impl("gram_mse_loss", &gram_mse_loss_cuda);
}
