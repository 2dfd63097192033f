// dream_update on the CPU: the DeepDream step after the backward pass, fused.
//
//   g   = jitter(grad, -shift_y, -shift_x)          (un-roll the gradient of the jittered image)
//   out = clamp(image + step_size * g / (mean|g| + eps), clamp_min, clamp_max)
//
// mean|g| is taken per sample (dim 0) of a 4-D image, over the whole tensor otherwise; the roll
// does not change it, so it is reduced straight from grad. Then one pass reads image and grad
// and writes out (which may be image itself: the in-place variant).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "dreamkit_ops.h"

namespace {

// Sum of |row[i]|; the simd reduction lets the compiler keep several partial sums in vectors.
template <typename scalar_t, typename acc_t>
acc_t abs_sum(const scalar_t* row, int64_t n) {
  acc_t sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += std::abs(static_cast<acc_t>(row[i]));
  return sum;
}

DREAMKIT_CPU_CLONES float abs_sum_f32(const float* __restrict row, int64_t n) { return abs_sum<float, float>(row, n); }

// out[i] = clamp(in[i] + k * g[i]); out may be in (the in-place variant), so no __restrict on them.
template <typename scalar_t, typename acc_t>
void step_row(const scalar_t* in, const scalar_t* __restrict g, scalar_t* out, int64_t n, acc_t k, acc_t low, acc_t high) {
  for (int64_t i = 0; i < n; ++i) {
    const acc_t v = static_cast<acc_t>(in[i]) + k * static_cast<acc_t>(g[i]);
    out[i] = static_cast<scalar_t>(std::min(std::max(v, low), high));
  }
}

DREAMKIT_CPU_CLONES void step_row_f32(const float* in, const float* __restrict g, float* out, int64_t n, float k,
                                      float low, float high) {
  step_row<float, float>(in, g, out, n, k, low, high);
}

// The image's rows (dreamkit::RowLayout) and the groups that get their own mean |grad|: one per
// sample of a 4-D batch, whatever the memory format (a group is a contiguous run of rows).
struct Geometry {
  dreamkit::RowLayout rows;
  int64_t groups;
  int64_t group_of(int64_t row) const { return row / (rows.rows / groups); }
};

Geometry geometry_of(const at::Tensor& image, bool channels_last) {
  return {dreamkit::row_layout(image, channels_last), image.dim() == 4 ? image.size(0) : 1};
}

template <typename scalar_t>
std::vector<double> step_per_group(const scalar_t* grad, const Geometry& g, double step_size, double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t row_len = g.rows.row_len();
  std::vector<double> row_sums(g.rows.rows);
  at::parallel_for(0, g.rows.rows, std::max<int64_t>(1, 16384 / row_len), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const scalar_t* row = grad + r * row_len;
      if constexpr (std::is_same_v<scalar_t, float>) {
        row_sums[r] = abs_sum_f32(row, row_len);
      } else {
        row_sums[r] = abs_sum<scalar_t, acc_t>(row, row_len);
      }
    }
  });
  std::vector<double> steps(g.groups, 0.0);
  for (int64_t r = 0; r < g.rows.rows; ++r) steps[g.group_of(r)] += row_sums[r];
  const double group_numel = static_cast<double>(g.rows.rows * row_len / g.groups);
  for (double& s : steps) s = step_size / (s / group_numel + eps);
  return steps;
}

template <typename scalar_t>
void update(const scalar_t* image, const scalar_t* grad, scalar_t* out, const Geometry& g, int64_t sy, int64_t sx,
            double step_size, double lo, double hi, double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const std::vector<double> steps = step_per_group(grad, g, step_size, eps);
  const acc_t low = static_cast<acc_t>(lo), high = static_cast<acc_t>(hi);
  // Output element x of a row reads gradient element x + sx (wrapping): two straight segments.
  const dreamkit::RowLayout& l = g.rows;
  const int64_t row_len = l.row_len(), split = (l.width - sx) * l.pixel, offset = sx * l.pixel;
  at::parallel_for(0, l.rows, std::max<int64_t>(1, 16384 / row_len), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const scalar_t* src = grad + l.row_in_plane(r, (r % l.height + sy) % l.height) * row_len;
      const scalar_t* in = image + r * row_len;
      scalar_t* o = out + r * row_len;
      const acc_t k = static_cast<acc_t>(steps[g.group_of(r)]);
      if constexpr (std::is_same_v<scalar_t, float>) {
        step_row_f32(in, src + offset, o, split, k, low, high);
        step_row_f32(in + split, src, o + split, row_len - split, k, low, high);
      } else {
        step_row<scalar_t, acc_t>(in, src + offset, o, split, k, low, high);
        step_row<scalar_t, acc_t>(in + split, src, o + split, row_len - split, k, low, high);
      }
    }
  });
}

// Writes the update of `image` into `out` (both contiguous in image's memory format).
void run(const at::Tensor& image, const at::Tensor& grad, at::Tensor& out, int64_t shift_y, int64_t shift_x,
         double step_size, std::optional<double> clamp_min, std::optional<double> clamp_max, double eps) {
  const auto format = dreamkit::kernel_format(image);
  const at::Tensor g = grad.contiguous(format);
  if (image.numel() == 0) return;
  const Geometry geo = geometry_of(image, format == at::MemoryFormat::ChannelsLast);
  const int64_t sy = dreamkit::wrap_shift(shift_y, geo.rows.height), sx = dreamkit::wrap_shift(shift_x, geo.rows.width);
  const double inf = std::numeric_limits<double>::infinity();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, image.scalar_type(), "dreamkit::dream_update", [&] {
    update<scalar_t>(image.const_data_ptr<scalar_t>(), g.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
                     geo, sy, sx, step_size, clamp_min.value_or(-inf), clamp_max.value_or(inf), eps);
  });
}

at::Tensor dream_update_cpu(const at::Tensor& image, const at::Tensor& grad, int64_t shift_y, int64_t shift_x,
                            double step_size, std::optional<double> clamp_min, std::optional<double> clamp_max,
                            double eps) {
  dreamkit::check_dream_update_args(image, grad, step_size, clamp_min, clamp_max, eps);
  TORCH_CHECK(image.device().is_cpu(), "dreamkit::dream_update (CPU kernel): image is on ", image.device());
  return dreamkit::updated_copy(image, [&](const at::Tensor& in, at::Tensor& out) {
    run(in, grad, out, shift_y, shift_x, step_size, clamp_min, clamp_max, eps);
  });
}

void dream_update_inplace_cpu(const at::Tensor& image, const at::Tensor& grad, int64_t shift_y, int64_t shift_x,
                              double step_size, std::optional<double> clamp_min, std::optional<double> clamp_max,
                              double eps) {
  dreamkit::check_dream_update_args(image, grad, step_size, clamp_min, clamp_max, eps);
  TORCH_CHECK(image.device().is_cpu(), "dreamkit::dream_update_ (CPU kernel): image is on ", image.device());
  // Each element is read before it is written, at the same index: out may be image.
  dreamkit::update_in_place(image, [&](const at::Tensor& in, at::Tensor& out) {
    run(in, grad, out, shift_y, shift_x, step_size, clamp_min, clamp_max, eps);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(dreamkit, CPU, m) {
  m.impl("dream_update", &dream_update_cpu);
  m.impl("dream_update_", &dream_update_inplace_cpu);
}
