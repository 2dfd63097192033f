// dream_update on CUDA: host glue around dream_update_kernel.cu.
#include <torch/library.h>
#include <torch/types.h>

#include <limits>

#include "cuda/glue.h"

namespace {

// Writes the update of image (contiguous in its kernel format) into out (same layout, may be image).
void run(const at::Tensor& image, const at::Tensor& grad, at::Tensor& out, int64_t shift_y, int64_t shift_x,
         double step_size, std::optional<double> clamp_min, std::optional<double> clamp_max, double eps) {
  if (image.numel() == 0) return;
  const auto format = dreamkit::kernel_format(image);
  const at::Tensor g = grad.contiguous(format);
  const int64_t groups = image.dim() == 4 ? image.size(0) : 1;
  at::Tensor scratch =
      at::empty({groups * (1 + dreamkit::cuda::kDreamUpdatePartials)}, image.options().dtype(at::kDouble));
  const double inf = std::numeric_limits<double>::infinity();
  dreamkit::cuda::check_launch(
      dreamkit::cuda::dream_update(image.const_data_ptr(), g.const_data_ptr(), out.mutable_data_ptr(),
                                   dreamkit::cuda::float_type(image, "dreamkit::dream_update"),
                                   dreamkit::cuda::rows_of(image, format == at::MemoryFormat::ChannelsLast), groups,
                                   shift_y, shift_x, step_size, clamp_min.value_or(-inf), clamp_max.value_or(inf), eps,
                                   scratch.mutable_data_ptr<double>(), c10::cuda::getCurrentCUDAStream()),
      "dreamkit::dream_update");
}

at::Tensor dream_update_cuda(const at::Tensor& image, const at::Tensor& grad, int64_t shift_y, int64_t shift_x,
                             double step_size, std::optional<double> clamp_min, std::optional<double> clamp_max,
                             double eps) {
  dreamkit::check_dream_update_args(image, grad, step_size, clamp_min, clamp_max, eps);
  TORCH_CHECK(image.is_cuda(), "dreamkit::dream_update (CUDA kernel): image is on ", image.device());
  const c10::cuda::CUDAGuard guard(image.device());
  return dreamkit::updated_copy(image, [&](const at::Tensor& in, at::Tensor& out) {
    run(in, grad, out, shift_y, shift_x, step_size, clamp_min, clamp_max, eps);
  });
}

void dream_update_inplace_cuda(const at::Tensor& image, const at::Tensor& grad, int64_t shift_y, int64_t shift_x,
                               double step_size, std::optional<double> clamp_min, std::optional<double> clamp_max,
                               double eps) {
  dreamkit::check_dream_update_args(image, grad, step_size, clamp_min, clamp_max, eps);
  TORCH_CHECK(image.is_cuda(), "dreamkit::dream_update_ (CUDA kernel): image is on ", image.device());
  const c10::cuda::CUDAGuard guard(image.device());
  dreamkit::update_in_place(image, [&](const at::Tensor& in, at::Tensor& out) {
    run(in, grad, out, shift_y, shift_x, step_size, clamp_min, clamp_max, eps);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(dreamkit, CUDA, m) {
  m.impl("dream_update", &dream_update_cuda);
  m.impl("dream_update_", &dream_update_inplace_cuda);
}
