// Backend-independent code of gram_matrix and gram_mse_loss: the feature view with its checks and
// the loss from a Gram matrix, shared by the CPU kernel (cpu/gram.cpp) and the CUDA glue
// (cuda/gram_cuda.cpp), as torchvision keeps such code in csrc/ops/.
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>

#include <cmath>
#include <optional>
#include <tuple>

#include "dreamkit_ops.h"

namespace dreamkit {

at::Tensor gram_features(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 3 || x.dim() == 4,
              "dreamkit::gram_matrix: x must be (B, C, H, W) or (B, C, N); got ", x.dim(), " dims ", x.sizes());
  TORCH_CHECK(x.is_floating_point(), "dreamkit::gram_matrix: x must be a floating-point tensor; got ", x.scalar_type());
  return x.flatten(2).contiguous();  // (B, C, N); flatten, unlike reshape(-1), allows B = 0
}

std::tuple<at::Tensor, at::Tensor> gram_mse_loss_from_gram(const at::Tensor& gram, const at::Tensor& target) {
  TORCH_CHECK(target.dim() == 2 || target.dim() == 3,
              "dreamkit::gram_mse_loss: target must be (C, C) or (B, C, C); got ", target.sizes());
  TORCH_CHECK(target.size(-1) == gram.size(-1) && target.size(-2) == gram.size(-2) &&
                  (target.dim() == 2 || target.size(0) == gram.size(0) || target.size(0) == 1),
              "dreamkit::gram_mse_loss: target has shape ", target.sizes(), " but the Gram matrix of x has shape ",
              gram.sizes());
  at::Tensor diff = gram.sub_(target.to(gram.scalar_type()));  // gram is a fresh tensor: reuse it
  at::Tensor loss = diff.numel() ? diff.square().mean() : at::zeros({}, diff.options());
  return {loss, diff};
}

}  // namespace dreamkit
