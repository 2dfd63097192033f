// jitter on CUDA: host glue (checks, device guard, current stream) around jitter_kernel.cu.
#include <torch/library.h>
#include <torch/types.h>

#include "cuda/glue.h"

namespace {

at::Tensor jitter_cuda(const at::Tensor& x, int64_t shift_y, int64_t shift_x) {
  TORCH_CHECK(x.dim() >= 2, "dreamkit::jitter: x must have at least 2 dims (..., H, W); got ", x.dim(), " dims");
  TORCH_CHECK(x.is_cuda(), "dreamkit::jitter (CUDA kernel): x is on ", x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  const auto format = dreamkit::kernel_format(x);
  const at::Tensor in = x.contiguous(format);
  at::Tensor out = at::empty(x.sizes(), x.options().memory_format(format));
  if (x.numel() == 0) return out;
  const auto layout = dreamkit::cuda::rows_of(in, format == at::MemoryFormat::ChannelsLast);
  dreamkit::cuda::check_launch(
      dreamkit::cuda::jitter(in.const_data_ptr(), out.mutable_data_ptr(), in.element_size(), layout, shift_y, shift_x,
                             c10::cuda::getCurrentCUDAStream()),
      "dreamkit::jitter");
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dreamkit, CUDA, m) { m.impl("jitter", &jitter_cuda); }
