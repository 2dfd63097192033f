// Every op schema of the dreamkit namespace, in one place. Kernels register their
// implementations per backend in cpu/<op>.cpp and cuda/<op>_cuda.cpp.
#include <torch/library.h>

TORCH_LIBRARY(dreamkit, m) {
  // Wrap-around roll of the last two dims: out[..., y, x] = x[..., (y - shift_y) mod H, (x - shift_x) mod W]
  // (torch.roll(x, (shift_y, shift_x), dims=(-2, -1))). The adjoint is the negative shift.
  m.def("jitter(Tensor x, int shift_y, int shift_x) -> Tensor");
}
