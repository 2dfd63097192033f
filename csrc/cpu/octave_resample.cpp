// octave_resample on the CPU: bilinear resize (align_corners=False, as F.interpolate) with a
// wrap-around shift of the output folded into the index tables, so jitter + resize is one pass.
//
// Separable: each source row is resampled horizontally once into a small per-task cache (two rows),
// then every output row is a blend of two cached rows, a contiguous loop the compiler vectorises.
// NCHW and channels_last use the same code: a "pixel" is 1 element (NCHW) or C elements (NHWC).
// The float32 NCHW inner loops are compiled for AVX-512, AVX2 and baseline x86-64 and picked at
// load time (GCC target_clones): the horizontal pass is a gather, which only AVX2+ vectorises.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "dreamkit_ops.h"

namespace {

// Source indices and weight of every output position along one axis, shift included. The
// arithmetic follows ATen's area_pixel_compute_source_index so results match F.interpolate.
template <typename acc_t>
struct AxisTable {
  std::vector<int64_t> lo, hi;
  std::vector<acc_t> weight;  // of hi

  AxisTable(int64_t in, int64_t out, int64_t shift) : lo(out), hi(out), weight(out) {
    const acc_t scale = static_cast<acc_t>(in) / static_cast<acc_t>(out);
    for (int64_t o = 0; o < out; ++o) {
      const int64_t unshifted = (o - shift + out) % out;  // shift already wrapped into [0, out)
      const acc_t real = std::max(scale * (static_cast<acc_t>(unshifted) + acc_t(0.5)) - acc_t(0.5), acc_t(0));
      const int64_t index = std::min(static_cast<int64_t>(real), in - 1);
      lo[o] = index;
      hi[o] = index + (index < in - 1 ? 1 : 0);
      weight[o] = std::min(std::max(real - static_cast<acc_t>(index), acc_t(0)), acc_t(1));
    }
  }
};


DREAMKIT_CPU_CLONES void gather_f32(const float* __restrict row, const int32_t* __restrict lo,
                                    const int32_t* __restrict hi, const float* __restrict w, float* __restrict out,
                                    int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = (1.0f - w[i]) * row[lo[i]] + w[i] * row[hi[i]];
}

DREAMKIT_CPU_CLONES void blend_f32(const float* __restrict top, const float* __restrict bottom, float w,
                                   float* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = (1.0f - w) * top[i] + w * bottom[i];
}

// out[i] = (1 - w) a[i] + w b[i] over n contiguous values (a vertical blend of two rows).
template <typename in_t, typename acc_t, typename out_t>
void blend(const in_t* a, const in_t* b, acc_t w, out_t* out, int64_t n) {
  if constexpr (std::is_same_v<in_t, float> && std::is_same_v<out_t, float>) {
    blend_f32(a, b, w, out, n);
  } else {
    for (int64_t i = 0; i < n; ++i)
      out[i] = static_cast<out_t>((acc_t(1) - w) * static_cast<acc_t>(a[i]) + w * static_cast<acc_t>(b[i]));
  }
}

// Horizontal resample of one row of pixels through the column table.
template <typename acc_t>
struct Columns {
  const AxisTable<acc_t>& table;
  std::vector<int32_t> lo, hi;  // 32-bit copies: what the vector gathers take

  explicit Columns(const AxisTable<acc_t>& t) : table(t), lo(t.lo.begin(), t.lo.end()), hi(t.hi.begin(), t.hi.end()) {}

  template <typename in_t, typename out_t>
  void resample(const in_t* row, out_t* out, int64_t pixel) const {
    const int64_t n = static_cast<int64_t>(lo.size());
    if constexpr (std::is_same_v<in_t, float> && std::is_same_v<out_t, float>) {
      if (pixel == 1) return gather_f32(row, lo.data(), hi.data(), table.weight.data(), out, n);
    }
    for (int64_t o = 0; o < n; ++o) blend(row + lo[o] * pixel, row + hi[o] * pixel, table.weight[o], out + o * pixel, pixel);
  }
};

// Enlarging: each source row is resampled horizontally once into a two-row cache (consecutive
// output rows share source rows), then output rows are blends of two cached rows. Shrinking:
// output rows rarely share source rows, so blend the two source rows first (contiguous) and
// resample the blend horizontally: one gather per output row instead of two.
template <typename scalar_t>
void resample(const at::Tensor& in, at::Tensor& out, bool channels_last, int64_t shift_y, int64_t shift_x) {
  using acc_t = at::opmath_type<scalar_t>;
  const dreamkit::RowLayout source = dreamkit::row_layout(in, channels_last);
  const dreamkit::RowLayout target = dreamkit::row_layout(out, channels_last);
  const int64_t Hi = source.height, Ho = target.height, pixel = source.pixel;
  const AxisTable<acc_t> ys(Hi, Ho, shift_y), xs(source.width, target.width, shift_x);
  const Columns<acc_t> columns(xs);
  const int64_t out_row = target.row_len(), in_row = source.row_len();
  const int64_t rows = target.rows;
  const scalar_t* src = in.const_data_ptr<scalar_t>();
  scalar_t* dst = out.mutable_data_ptr<scalar_t>();
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(out_row, 1));
  const bool blend_first = Ho < Hi;

  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> cache[2] = {std::vector<acc_t>(blend_first ? in_row : out_row),
                                   std::vector<acc_t>(blend_first ? 0 : out_row)};
    int64_t key[2] = {-1, -1};  // global source row held in each cache slot
    auto horizontal = [&](int64_t source_row, int64_t keep) -> const acc_t* {
      for (int s = 0; s < 2; ++s)
        if (key[s] == source_row) return cache[s].data();
      const int s = key[0] == keep ? 1 : 0;  // evict the slot the other needed row is not in
      key[s] = source_row;
      columns.resample(src + source_row * in_row, cache[s].data(), pixel);
      return cache[s].data();
    };
    for (int64_t r = begin; r < end; ++r) {
      const int64_t plane = r / Ho, oy = r % Ho;
      const int64_t top = plane * Hi + ys.lo[oy], bottom = plane * Hi + ys.hi[oy];
      scalar_t* o = dst + r * out_row;
      if (blend_first) {
        blend(src + top * in_row, src + bottom * in_row, ys.weight[oy], cache[0].data(), in_row);
        columns.resample(static_cast<const acc_t*>(cache[0].data()), o, pixel);
      } else {
        const acc_t* upper = horizontal(top, bottom);
        blend(upper, horizontal(bottom, top), ys.weight[oy], o, out_row);
      }
    }
  });
}

at::Tensor octave_resample_cpu(const at::Tensor& x, at::IntArrayRef size, int64_t shift_y, int64_t shift_x) {
  dreamkit::check_octave_resample_args(x, size);
  TORCH_CHECK(x.device().is_cpu(), "dreamkit::octave_resample (CPU kernel): x is on ", x.device());
  const auto format = dreamkit::kernel_format(x);
  const bool channels_last = format == at::MemoryFormat::ChannelsLast;
  const at::Tensor in = x.contiguous(format);
  at::Tensor out = at::empty({x.size(0), x.size(1), size[0], size[1]}, x.options().memory_format(format));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "dreamkit::octave_resample", [&] {
    resample<scalar_t>(in, out, channels_last, dreamkit::wrap_shift(shift_y, size[0]),
                       dreamkit::wrap_shift(shift_x, size[1]));
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dreamkit, CPU, m) { m.impl("octave_resample", &octave_resample_cpu); }
