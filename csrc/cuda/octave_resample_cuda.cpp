// octave_resample on CUDA: host glue around octave_resample_kernel.cu.
#include <torch/library.h>
#include <torch/types.h>

#include "cuda/glue.h"

namespace {

at::Tensor octave_resample_cuda(const at::Tensor& x, at::IntArrayRef size, int64_t shift_y, int64_t shift_x) {
  dreamkit::check_octave_resample_args(x, size);
  TORCH_CHECK(x.is_cuda(), "dreamkit::octave_resample (CUDA kernel): x is on ", x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  const auto format = dreamkit::kernel_format(x);
  const bool channels_last = format == at::MemoryFormat::ChannelsLast;
  const at::Tensor in = x.contiguous(format);
  at::Tensor out = at::empty({x.size(0), x.size(1), size[0], size[1]}, x.options().memory_format(format));
  if (out.numel() == 0) return out;
  dreamkit::cuda::check_launch(
      dreamkit::cuda::octave_resample(in.const_data_ptr(), out.mutable_data_ptr(),
                                      dreamkit::cuda::float_type(x, "dreamkit::octave_resample"),
                                      dreamkit::cuda::rows_of(in, channels_last),
                                      dreamkit::cuda::rows_of(out, channels_last), shift_y, shift_x,
                                      c10::cuda::getCurrentCUDAStream()),
      "dreamkit::octave_resample");
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dreamkit, CUDA, m) { m.impl("octave_resample", &octave_resample_cuda); }
