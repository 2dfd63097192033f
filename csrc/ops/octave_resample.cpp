// Backend-independent code of octave_resample: argument checks shared by the CPU kernel
// (cpu/octave_resample.cpp) and the CUDA glue (cuda/octave_resample_cuda.cpp), as torchvision
// keeps them in csrc/ops/.
#include <ATen/core/Tensor.h>

#include <cmath>
#include <optional>
#include <tuple>

#include "dreamkit_ops.h"

namespace dreamkit {

void check_octave_resample_args(const at::Tensor& x, at::IntArrayRef size) {
  TORCH_CHECK(x.dim() == 4, "dreamkit::octave_resample: x must be (B, C, H, W); got ", x.dim(), " dims ", x.sizes());
  TORCH_CHECK(x.is_floating_point(), "dreamkit::octave_resample: x must be a floating-point tensor; got ",
              x.scalar_type());
  TORCH_CHECK(size.size() == 2 && size[0] > 0 && size[1] > 0,
              "dreamkit::octave_resample: size must be two positive ints (height, width); got ", size);
  TORCH_CHECK(x.size(2) > 0 && x.size(3) > 0,
              "dreamkit::octave_resample: x has an empty image plane ", x.sizes());
}

}  // namespace dreamkit
