// instance_norm on the CPU: instance normalisation with a per-channel scale and shift, and the
// ReLU that usually follows it, in two passes over the data (one read for the statistics, one read
// and one write for the result). ATen makes four passes and two writes for the same work (mean,
// variance, the affine transform, then the ReLU), and a style network's activations at 512 px do
// not fit in the cache: see bench/ops.py.
//
// The statistics are Σx and Σx² in double (float products are exact in double, so the one-pass
// variance E[x²] - mean² loses nothing a float32 result could show; the tests derive the bound),
// reduced in a fixed order, so the result does not depend on the number of threads. The affine
// transform y = x·a + s folds the mean, the variance and the learned scale and shift into a and s
// (computed in double, rounded once).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "dreamkit_ops.h"

namespace {

constexpr int64_t kPixelsPerBlock = 1024;  // channels_last: pixels whose channel sums one job gathers

// Σx and Σx² of a contiguous run (one NCHW plane).
template <typename T>
void plane_moments(const T* x, int64_t n, double& sum, double& squares) {
  double s = 0, q = 0;
#pragma omp simd reduction(+ : s, q)
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    s += v;
    q += v * v;
  }
  sum = s;
  squares = q;
}

// Σx and Σx² per channel of `pixels` channels_last pixels of C channels, added to sum[c], squares[c].
template <typename T>
void pixel_moments(const T* x, int64_t pixels, int64_t C, double* __restrict sum, double* __restrict squares) {
  for (int64_t p = 0; p < pixels; ++p) {
    const T* pixel = x + p * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const double v = pixel[c];
      sum[c] += v;
      squares[c] += v * v;
    }
  }
}

// y = x·a + s, then max(y, 0) when relu; a and s per element of a run of `channels` (1: a plane).
template <typename T>
void affine(const T* x, T* y, int64_t n, const T* a, const T* s, int64_t channels, bool relu) {
  if (channels == 1) {
    const T a0 = a[0], s0 = s[0];
    if (relu) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) y[i] = std::max(x[i] * a0 + s0, T(0));
    } else {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] * a0 + s0;
    }
    return;
  }
  for (int64_t p = 0; p < n; p += channels) {
    const T* in = x + p;
    T* out = y + p;
    if (relu) {
#pragma omp simd
      for (int64_t c = 0; c < channels; ++c) out[c] = std::max(in[c] * a[c] + s[c], T(0));
    } else {
#pragma omp simd
      for (int64_t c = 0; c < channels; ++c) out[c] = in[c] * a[c] + s[c];
    }
  }
}

// Compiled for AVX-512, AVX2 and baseline x86-64 (picked at load time).
#define DREAMKIT_NORM_CLONES(T, suffix)                                                                        \
  DREAMKIT_CPU_CLONES void plane_moments_##suffix(const T* x, int64_t n, double& sum, double& squares) {       \
    plane_moments<T>(x, n, sum, squares);                                                                      \
  }                                                                                                            \
  DREAMKIT_CPU_CLONES void pixel_moments_##suffix(const T* x, int64_t pixels, int64_t C, double* sum,          \
                                                  double* squares) {                                           \
    pixel_moments<T>(x, pixels, C, sum, squares);                                                              \
  }                                                                                                            \
  DREAMKIT_CPU_CLONES void affine_##suffix(const T* x, T* y, int64_t n, const T* a, const T* s, int64_t channels, \
                                           bool relu) {                                                        \
    affine<T>(x, y, n, a, s, channels, relu);                                                                  \
  }                                                                                                            \
  inline void plane_moments_any(const T* x, int64_t n, double& sum, double& squares) {                         \
    plane_moments_##suffix(x, n, sum, squares);                                                                \
  }                                                                                                            \
  inline void pixel_moments_any(const T* x, int64_t pixels, int64_t C, double* sum, double* squares) {         \
    pixel_moments_##suffix(x, pixels, C, sum, squares);                                                        \
  }                                                                                                            \
  inline void affine_any(const T* x, T* y, int64_t n, const T* a, const T* s, int64_t channels, bool relu) {   \
    affine_##suffix(x, y, n, a, s, channels, relu);                                                            \
  }
DREAMKIT_NORM_CLONES(float, f32)
DREAMKIT_NORM_CLONES(double, f64)
#undef DREAMKIT_NORM_CLONES

// a = weight / sqrt(var + eps) and s = bias - mean·a for every (image, channel), from the sums.
template <typename T>
void fold(const std::vector<double>& sum, const std::vector<double>& squares, int64_t count, int64_t C,
          const T* weight, const T* bias, double eps, T* a, T* s) {
  for (size_t i = 0; i < sum.size(); ++i) {
    const int64_t c = static_cast<int64_t>(i) % C;
    const double mean = sum[i] / count;
    const double var = std::max(squares[i] / count - mean * mean, 0.0);
    const double scale = (weight ? static_cast<double>(weight[c]) : 1.0) / std::sqrt(var + eps);
    a[i] = static_cast<T>(scale);
    s[i] = static_cast<T>((bias ? static_cast<double>(bias[c]) : 0.0) - mean * scale);
  }
}

template <typename T>
void norm_planes(const T* x, T* y, int64_t planes, int64_t plane, int64_t C, const T* weight, const T* bias,
                 double eps, bool relu) {
  std::vector<double> sum(planes), squares(planes);
  at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) plane_moments_any(x + p * plane, plane, sum[p], squares[p]);
  });
  std::vector<T> a(planes), s(planes);
  fold(sum, squares, plane, C, weight, bias, eps, a.data(), s.data());
  at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) affine_any(x + p * plane, y + p * plane, plane, &a[p], &s[p], 1, relu);
  });
}

template <typename T>
void norm_channels_last(const T* x, T* y, int64_t N, int64_t pixels, int64_t C, const T* weight, const T* bias,
                        double eps, bool relu) {
  const int64_t blocks = (pixels + kPixelsPerBlock - 1) / kPixelsPerBlock;
  // Each block's channel sums apart, then added in block order: the same result for any thread count.
  std::vector<double> block_sum(N * blocks * C, 0.0), block_squares(N * blocks * C, 0.0);
  at::parallel_for(0, N * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t job = begin; job < end; ++job) {
      const int64_t n = job / blocks, first = job % blocks * kPixelsPerBlock;
      const int64_t count = std::min(kPixelsPerBlock, pixels - first);
      pixel_moments_any(x + (n * pixels + first) * C, count, C, &block_sum[job * C], &block_squares[job * C]);
    }
  });
  std::vector<double> sum(N * C, 0.0), squares(N * C, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t c = 0; c < C; ++c) {
        sum[n * C + c] += block_sum[(n * blocks + b) * C + c];
        squares[n * C + c] += block_squares[(n * blocks + b) * C + c];
      }
  std::vector<T> a(N * C), s(N * C);
  fold(sum, squares, pixels, C, weight, bias, eps, a.data(), s.data());
  at::parallel_for(0, N * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t job = begin; job < end; ++job) {
      const int64_t n = job / blocks, first = job % blocks * kPixelsPerBlock;
      const int64_t count = std::min(kPixelsPerBlock, pixels - first);
      const int64_t offset = (n * pixels + first) * C;
      affine_any(x + offset, y + offset, count * C, &a[n * C], &s[n * C], C, relu);
    }
  });
}

void check_parameter(const char* name, const std::optional<at::Tensor>& p, const at::Tensor& x) {
  if (!p.has_value()) return;
  TORCH_CHECK(p->dim() == 1 && p->size(0) == x.size(1) && p->scalar_type() == x.scalar_type() && p->device().is_cpu(),
              "dreamkit::instance_norm: ", name, " must be a CPU (C,) = (", x.size(1), ",) tensor of x's dtype ",
              x.scalar_type(), "; got ", p->sizes(), " ", p->scalar_type(), " on ", p->device());
}

at::Tensor instance_norm_cpu(const at::Tensor& x, const std::optional<at::Tensor>& weight,
                             const std::optional<at::Tensor>& bias, double eps, bool relu) {
  TORCH_CHECK(x.dim() >= 3, "dreamkit::instance_norm: x must be (N, C, ...) with at least one spatial dim; got ",
              x.dim(), " dims ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "dreamkit::instance_norm: x must be float32 or float64; got ", x.scalar_type());
  TORCH_CHECK(x.device().is_cpu(), "dreamkit::instance_norm (CPU kernel): x is on ", x.device());
  TORCH_CHECK(eps > 0, "dreamkit::instance_norm: eps must be positive; got ", eps);
  check_parameter("weight", weight, x);
  check_parameter("bias", bias, x);
  const int64_t N = x.size(0), C = x.size(1), pixels = C > 0 && N > 0 ? x.numel() / (N * C) : 0;
  TORCH_CHECK(pixels > 0 || x.numel() == 0, "dreamkit::instance_norm: x has no pixels: ", x.sizes());

  const auto format = dreamkit::kernel_format(x);
  const at::Tensor in = x.contiguous(format);
  at::Tensor out = at::empty_like(in, in.options().memory_format(format));
  if (x.numel() == 0) return out;
  const at::Tensor w = weight.has_value() ? weight->contiguous() : at::Tensor();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dreamkit::instance_norm", [&] {
    const scalar_t* wp = w.defined() ? w.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* bp = b.defined() ? b.const_data_ptr<scalar_t>() : nullptr;
    if (format == at::MemoryFormat::ChannelsLast)
      norm_channels_last<scalar_t>(in.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), N, pixels, C, wp, bp,
                                   eps, relu);
    else
      norm_planes<scalar_t>(in.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), N * C, pixels, C, wp, bp,
                            eps, relu);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dreamkit, CPU, m) { m.impl("instance_norm", &instance_norm_cpu); }
