// Every op schema of the dreamkit namespace, in one place. Kernels register their
// implementations per backend in cpu/<op>.cpp and cuda/<op>_cuda.cpp.
#include <torch/library.h>

TORCH_LIBRARY(dreamkit, m) {
  // Wrap-around roll of the last two dims: out[..., y, x] = x[..., (y - shift_y) mod H, (x - shift_x) mod W]
  // (torch.roll(x, (shift_y, shift_x), dims=(-2, -1))). The adjoint is the negative shift.
  m.def("jitter(Tensor x, int shift_y, int shift_x) -> Tensor");

  // G = F Fᵀ per batch item, F = x viewed as (B, C, N); divided by C*N when normalize.
  m.def("gram_matrix(Tensor x, bool normalize) -> Tensor");
  // Style loss mean((G(x) - target)²); also returns G(x) - target, which the backward needs
  // (dF = scale * (D + Dᵀ) F, one GEMM). target is (C, C) or (B or 1, C, C).
  m.def("gram_mse_loss(Tensor x, Tensor target, bool normalize) -> (Tensor, Tensor)");

  // Bilinear resize to size (align_corners=False, as F.interpolate), then a wrap-around roll of
  // the result by (shift_y, shift_x): jitter(interpolate(x, size), shift_y, shift_x) in one pass.
  m.def("octave_resample(Tensor x, SymInt[2] size, int shift_y, int shift_x) -> Tensor");

  // A 3x3 convolution, stride 1 (F.conv2d(x, weight, bias) with weight (K, C, 3, 3)) of x padded
  // by reflection by reflect_pad pixels on every side (0: no padding): Winograd F(4x4, 3x3) on the
  // CPU. channels_last in, channels_last out. transformed_weight, when given, must be
  // winograd_weight(weight) (kept by the caller so that it is not remade on every call).
  m.def("conv3x3(Tensor x, Tensor weight, Tensor? bias, int reflect_pad=0, Tensor? transformed_weight=None) -> Tensor");
  // conv3x3's weight transform: G g Gᵀ of each 3x3 filter, as (36, K, C).
  m.def("winograd_weight(Tensor weight) -> Tensor");

  // Instance normalisation of x (N, C, ...) over its spatial dims (biased variance, as
  // F.instance_norm), times weight plus bias per channel, then max(·, 0) when relu: the
  // normalisation and activation of a style network in one op. Layout kept as conv3x3's.
  m.def("instance_norm(Tensor x, Tensor? weight, Tensor? bias, float eps, bool relu) -> Tensor");

  // The DeepDream step: image + step_size * g / (mean|g| + eps), clamped, where
  // g = jitter(grad, -shift_y, -shift_x); mean per sample of a 4-D image. Not differentiable.
  m.def(
      "dream_update(Tensor image, Tensor grad, int shift_y, int shift_x, float step_size, float? clamp_min, "
      "float? clamp_max, float eps) -> Tensor");
  m.def(
      "dream_update_(Tensor(a!) image, Tensor grad, int shift_y, int shift_x, float step_size, float? clamp_min, "
      "float? clamp_max, float eps) -> ()");
}
