// Declarations shared by the backend-independent code (ops/), the CPU kernels (cpu/) and the CUDA
// host glue (cuda/).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>

// Hot float32 loops are compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time
// (GCC function multi-versioning): the extension still runs on any x86-64 CPU.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define DREAMKIT_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DREAMKIT_CPU_CLONES
#endif

namespace dreamkit {

// A shift reduced to [0, size): shifts may be negative or larger than the size.
inline int64_t wrap_shift(int64_t shift, int64_t size) { return size > 0 ? ((shift % size) + size) % size : 0; }

// True when a 4-D tensor is channels_last and not also plain contiguous (1x1 images are both).
inline bool is_channels_last(const at::Tensor& x) {
  return x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

// The layout the kernels work in: channels_last stays channels_last, anything else contiguous.
inline at::MemoryFormat kernel_format(const at::Tensor& x) {
  return is_channels_last(x) ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// The one description of the image layout every CPU kernel works in (cuda/kernels.h's Rows is the
// same for the CUDA kernels): a tensor contiguous in kernel_format is `rows` rows of `width`
// pixels of `pixel` elements (pixel = 1 for NCHW, C for channels_last), grouped into planes of
// `height` rows (a plane is one channel of one image for NCHW, one whole image for NHWC).
struct RowLayout {
  int64_t rows, height, width, pixel;
  int64_t row_len() const { return width * pixel; }
  // Row y of the plane that row r belongs to.
  int64_t row_in_plane(int64_t r, int64_t y) const { return r / height * height + y; }
};

// The layout of x (..., H, W) once contiguous in its kernel format. channels_last is passed, not
// read from x: a 1x1 image is both contiguous and channels_last, and an output must follow its input.
inline RowLayout row_layout(const at::Tensor& x, bool channels_last) {
  const int64_t height = x.size(-2), width = x.size(-1), pixel = channels_last ? x.size(1) : 1;
  const int64_t row_len = width * pixel;
  return {row_len > 0 ? x.numel() / row_len : 0, height, width, pixel};
}

// The two schemas of an elementwise update (functional and in place) over one kernel
// `write(in, out)`, where in and out are contiguous in kernel_format and out may be in itself.
template <typename Write>
at::Tensor updated_copy(const at::Tensor& image, Write write) {
  const at::Tensor in = image.contiguous(kernel_format(image));
  at::Tensor out = at::empty_like(in);
  write(in, out);
  return out;
}

// In place: straight into image when it has the kernel layout, else through a contiguous copy.
template <typename Write>
void update_in_place(const at::Tensor& image, Write write) {
  if (image.is_contiguous(kernel_format(image))) {
    at::Tensor out = image;
    write(image, out);
  } else {
    image.copy_(updated_copy(image, write));
  }
}

// gram (ops/gram.cpp): x (B, C, H, W) or (B, C, N) checked and viewed as contiguous features (B, C, N).
at::Tensor gram_features(const at::Tensor& x);
// How the CPU kernel exploits symmetry here (for `dreamkit doctor`).
std::string gram_cpu_method();
// (loss, G - T) from a freshly computed Gram matrix (reused as the difference).
std::tuple<at::Tensor, at::Tensor> gram_mse_loss_from_gram(const at::Tensor& gram, const at::Tensor& target);

// Argument checks shared by the CPU and CUDA kernels of these ops (defined in ops/<op>.cpp).
void check_octave_resample_args(const at::Tensor& x, at::IntArrayRef size);
void check_dream_update_args(const at::Tensor& image, const at::Tensor& grad, double step_size,
                             std::optional<double> clamp_min, std::optional<double> clamp_max, double eps);

}  // namespace dreamkit
