// Backend-independent code of dream_update: argument checks shared by the CPU kernel
// (cpu/dream_update.cpp) and the CUDA glue (cuda/dream_update_cuda.cpp), as torchvision keeps
// them in csrc/ops/.
#include <ATen/core/Tensor.h>

#include <cmath>
#include <optional>
#include <tuple>

#include "dreamkit_ops.h"

namespace dreamkit {

void check_dream_update_args(const at::Tensor& image, const at::Tensor& grad, double step_size,
                             std::optional<double> clamp_min, std::optional<double> clamp_max, double eps) {
  TORCH_CHECK(image.dim() >= 2, "dreamkit::dream_update: image must have at least 2 dims (..., H, W); got ",
              image.sizes());
  TORCH_CHECK(image.is_floating_point(), "dreamkit::dream_update: image must be floating point; got ",
              image.scalar_type());
  TORCH_CHECK(grad.sizes() == image.sizes(), "dreamkit::dream_update: grad has shape ", grad.sizes(),
              " but image has shape ", image.sizes());
  TORCH_CHECK(grad.scalar_type() == image.scalar_type(), "dreamkit::dream_update: grad is ", grad.scalar_type(),
              " but image is ", image.scalar_type());
  TORCH_CHECK(grad.device() == image.device(), "dreamkit::dream_update: grad is on ", grad.device(),
              " but image is on ", image.device());
  TORCH_CHECK(std::isfinite(step_size), "dreamkit::dream_update: step_size must be finite; got ", step_size);
  TORCH_CHECK(!clamp_min || !clamp_max || *clamp_min <= *clamp_max, "dreamkit::dream_update: clamp_min (",
              clamp_min.value_or(0), ") is greater than clamp_max (", clamp_max.value_or(0), ")");
  TORCH_CHECK(eps >= 0 && std::isfinite(eps), "dreamkit::dream_update: eps must be finite and >= 0; got ", eps);
}

}  // namespace dreamkit
