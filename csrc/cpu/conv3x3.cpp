// conv3x3 on the CPU: a 3x3 stride-1 convolution without padding by Winograd's minimal filtering
// F(4x4, 3x3) (Lavin and Gray 2016). Each 4x4 block of output pixels is computed from a 6x6 input
// tile as Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A: the sums over input channels become 36 independent GEMMs
// (tiles x C) · (C x K), 36 multiplies per 16 outputs instead of 144 (4x fewer), and the
// transforms are cheap adds over channels. oneDNN's direct convolution spends ~60% of a `classic`
// style network's pass on its ten 128-channel 3x3 convolutions (see bench/fast_style.py).
//
// Layout: NCHW (channels_last inputs are converted and the output converted back). The input
// transform works a tile row of one channel at a time: Bᵀ down the columns of six image rows (one
// vectorised pass over whole rows), then Bᵀ along each tile, read from the row split into its four
// phases (pixels 4t + j for j = 0..3: contiguous in t, so that pass vectorises too); V is (tap, C,
// tiles) so that each tap's GEMM is U[tap] (K x C) · V[tap] (C x tiles), and the output transform
// reads M (tap, K, tiles) the same way round, makes output rows as phases and interleaves them
// once. Tile rows are processed in chunks of about kChunkBytes so that V and M stay in the cache
// between the transforms and the GEMMs.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/kron.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "dreamkit_ops.h"

namespace {

constexpr int64_t kOut = 4;              // output pixels per tile side
constexpr int64_t kTile = kOut + 2;      // input pixels per tile side
constexpr int64_t kTaps = kTile * kTile;  // 36 Winograd-domain points
constexpr int64_t kChunkBytes = 8 << 20;  // V of one chunk: GEMMs under ~256 tiles ran at half speed

// Bᵀ d and Aᵀ m for one column of six values: the transforms' only arithmetic (applied once down
// columns and once along rows).
template <typename T>
struct Six {
  T v[kTile];
};
template <typename T>
inline Six<T> times_bt(T d0, T d1, T d2, T d3, T d4, T d5) {
  return {{4 * d0 - 5 * d2 + d4, -4 * (d1 + d2) + d3 + d4, 4 * (d1 - d2) - d3 + d4, 2 * (d3 - d1) - d2 + d4,
           2 * (d1 - d3) - d2 + d4, 4 * d1 - 5 * d3 + d5}};
}
template <typename T>
struct Four {
  T v[kOut];
};
template <typename T>
inline Four<T> times_at(T m0, T m1, T m2, T m3, T m4, T m5) {
  const T s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
  return {{m0 + s12 + s34, d12 + 2 * d34, s12 + 4 * s34, d12 + 8 * d34 + m5}};
}

// Bᵀ down the columns of six input rows, a whole row at once (contiguous: vectorised).
template <typename T>
inline void input_columns(const T* const in[kTile], T* const out[kTile], int64_t n) {
  // In and out never overlap (the input or zeros in, a scratch row out): without ivdep GCC cannot
  // prove it for twelve pointers and leaves the loop scalar.
#pragma GCC ivdep
  for (int64_t x = 0; x < n; ++x) {
    const Six<T> o = times_bt(in[0][x], in[1][x], in[2][x], in[3][x], in[4][x], in[5][x]);
    for (int64_t r = 0; r < kTile; ++r) out[r][x] = o.v[r];
  }
}

// The row transforms combine pixels 4t..4t+5 of a row for tile t: read in place, overlapping
// stride-4 groups that GCC vectorises only with a shuffle per vector (the transforms were 60% of
// the convolution's time, more than its GEMMs). So a row is first split into its four phases, phase[j][t] = row[4t + j] (one shuffle pass), and the
// transforms then read whole phases: pixel 4t + j is phase[j % 4][t + j / 4], contiguous in t.
template <typename T>
inline void deinterleave(const T* __restrict row, T* __restrict phase, int64_t length) {
  for (int64_t t = 0; t < length; ++t)
    for (int64_t j = 0; j < kOut; ++j) phase[j * length + t] = row[kOut * t + j];
}

// The inverse, for output rows: row[4t + s] = phase[s][t].
template <typename T>
inline void interleave(const T* __restrict phase, T* __restrict row, int64_t length) {
  for (int64_t t = 0; t < length; ++t)
    for (int64_t s = 0; s < kOut; ++s) row[kOut * t + s] = phase[s * length + t];
}

// Then along the rows, tile by tile: v[s][t] = Σ_j row[4t + j] Bᵀ[s][j] for the tiles of a row,
// from the row's phases (each ``length`` >= tiles + 1 long).
template <typename T>
inline void input_rows(const T* phase, int64_t length, T* const v[kTile], int64_t tiles) {
  const T *p0 = phase, *p1 = phase + length, *p2 = phase + 2 * length, *p3 = phase + 3 * length;
#pragma GCC ivdep
  for (int64_t t = 0; t < tiles; ++t) {
    const Six<T> o = times_bt(p0[t], p1[t], p2[t], p3[t], p0[t + 1], p1[t + 1]);
    for (int64_t s = 0; s < kTile; ++s) v[s][t] = o.v[s];
  }
}

// Aᵀ along the rows of the tiles of one tile row, into the output row's phases:
// phase[s][t] = Σ_j m[j][t] Aᵀ[s][j] (pixel 4t + s of the row).
template <typename T>
inline void output_rows(const T* const m[kTile], T* phase, int64_t tiles) {
  T* out[kOut] = {phase, phase + tiles, phase + 2 * tiles, phase + 3 * tiles};
#pragma GCC ivdep
  for (int64_t t = 0; t < tiles; ++t) {
    const Four<T> y = times_at(m[0][t], m[1][t], m[2][t], m[3][t], m[4][t], m[5][t]);
    for (int64_t s = 0; s < kOut; ++s) out[s][t] = y.v[s];
  }
}

// Then down the columns, a whole output row at once: out[r][x] = Σ_i Aᵀ[r][i] in[i][x] + bias.
template <typename T>
inline void output_columns(const T* const in[kTile], T* const out[kOut], int64_t n, T bias) {
#pragma GCC ivdep
  for (int64_t x = 0; x < n; ++x) {
    const Four<T> y = times_at(in[0][x], in[1][x], in[2][x], in[3][x], in[4][x], in[5][x]);
    for (int64_t r = 0; r < kOut; ++r) out[r][x] = y.v[r] + bias;
  }
}

// Compiled for AVX-512, AVX2 and baseline x86-64 (picked at load time): the loops vectorise with
// whatever the CPU has.
#define DREAMKIT_CONV3X3_CLONES(T, suffix)                                                                      \
  DREAMKIT_CPU_CLONES void input_columns_##suffix(const T* const in[kTile], T* const out[kTile], int64_t n) {  \
    input_columns<T>(in, out, n);                                                                               \
  }                                                                                                             \
  DREAMKIT_CPU_CLONES void deinterleave_##suffix(const T* row, T* phase, int64_t length) {                     \
    deinterleave<T>(row, phase, length);                                                                        \
  }                                                                                                             \
  DREAMKIT_CPU_CLONES void interleave_##suffix(const T* phase, T* row, int64_t length) {                       \
    interleave<T>(phase, row, length);                                                                          \
  }                                                                                                             \
  DREAMKIT_CPU_CLONES void input_rows_##suffix(const T* phase, int64_t length, T* const v[kTile], int64_t tiles) { \
    input_rows<T>(phase, length, v, tiles);                                                                     \
  }                                                                                                             \
  DREAMKIT_CPU_CLONES void output_rows_##suffix(const T* const m[kTile], T* row, int64_t tiles) {              \
    output_rows<T>(m, row, tiles);                                                                              \
  }                                                                                                             \
  DREAMKIT_CPU_CLONES void output_columns_##suffix(const T* const in[kTile], T* const out[kOut], int64_t n,   \
                                                   T bias) {                                                    \
    output_columns<T>(in, out, n, bias);                                                                        \
  }                                                                                                             \
  inline void input_columns_any(const T* const in[kTile], T* const out[kTile], int64_t n) {                    \
    input_columns_##suffix(in, out, n);                                                                         \
  }                                                                                                             \
  inline void deinterleave_any(const T* row, T* phase, int64_t length) { deinterleave_##suffix(row, phase, length); } \
  inline void interleave_any(const T* phase, T* row, int64_t length) { interleave_##suffix(phase, row, length); } \
  inline void input_rows_any(const T* phase, int64_t length, T* const v[kTile], int64_t tiles) {                \
    input_rows_##suffix(phase, length, v, tiles);                                                               \
  }                                                                                                             \
  inline void output_rows_any(const T* const m[kTile], T* row, int64_t tiles) { output_rows_##suffix(m, row, tiles); } \
  inline void output_columns_any(const T* const in[kTile], T* const out[kOut], int64_t n, T bias) {            \
    output_columns_##suffix(in, out, n, bias);                                                                  \
  }
DREAMKIT_CONV3X3_CLONES(float, f32)
DREAMKIT_CONV3X3_CLONES(double, f64)
#undef DREAMKIT_CONV3X3_CLONES

struct Geometry {
  int64_t batch, channels, height, width;  // the input, NCHW
  int64_t pad;                             // reflection padding on every side (0: none)
  int64_t out_h, out_w, tiles_y, tiles_x;
  // The input row that row y of the padded image is (reflected at the edges), or -1 below it.
  int64_t source_row(int64_t y) const {
    const int64_t r = y - pad;
    if (y >= height + 2 * pad) return -1;
    return r < 0 ? -r : (r >= height ? 2 * (height - 1) - r : r);
  }
};

// V[tap][c][t] for the tile rows first..first+count of image n (t: tiles in order, row by row):
// Bᵀ d B of each 6x6 tile of the (reflection-padded) input, zeros past the edge (those outputs are
// cropped). The padding is made here, row by row in the scratch buffer: no padded copy of x.
template <typename T>
void transform_input(const T* x, const Geometry& g, int64_t n, int64_t first, int64_t count, T* v) {
  const int64_t C = g.channels, row_tiles = g.tiles_x, chunk_tiles = count * row_tiles;
  at::parallel_for(0, count * C, 1, [&](int64_t begin, int64_t end) {
    // Rows padded to a whole number of phases (tiles_x + 1 of them: tile t reads 4t..4t+5).
    const int64_t length = g.tiles_x + 1, span = kOut * length;
    std::vector<T> padded(kTile * span, T(0)), columns(kTile * span), phases(span);
    for (int64_t job = begin; job < end; ++job) {
      const int64_t ty = first + job / C, c = job % C;
      const T* plane = x + (n * C + c) * g.height * g.width;
      const T* in[kTile];
      T* out[kTile];
      const int64_t p = g.pad, row_len = g.width + 2 * p;
      for (int64_t i = 0; i < kTile; ++i) {
        const int64_t y = g.source_row(ty * kOut + i);
        T* row = padded.data() + i * span;
        // Rows past the bottom are zeros; past the right edge the buffer's tail stays zero.
        if (y < 0) {
          std::fill_n(row, row_len, T(0));
        } else {
          const T* source = plane + y * g.width;
          std::copy_n(source, g.width, row + p);
          for (int64_t j = 1; j <= p; ++j) {
            row[p - j] = source[j];
            row[p + g.width - 1 + j] = source[g.width - 1 - j];
          }
        }
        in[i] = row;
        out[i] = columns.data() + i * span;
      }
      input_columns_any(in, out, span);
      for (int64_t r = 0; r < kTile; ++r) {
        T* taps[kTile];
        for (int64_t s = 0; s < kTile; ++s)
          taps[s] = v + ((r * kTile + s) * C + c) * chunk_tiles + (ty - first) * row_tiles;
        deinterleave_any(columns.data() + r * span, phases.data(), length);
        input_rows_any(phases.data(), length, taps, row_tiles);
      }
    }
  });
}

// The output rows of tile rows first..first+count of image n from M[tap][k][t]: Aᵀ M A + bias.
template <typename T>
void transform_output(const T* m, const T* bias, const Geometry& g, int64_t K, int64_t n, int64_t first, int64_t count,
                      T* y) {
  const int64_t row_tiles = g.tiles_x, chunk_tiles = count * row_tiles, row_len = row_tiles * kOut;
  at::parallel_for(0, count * K, 1, [&](int64_t begin, int64_t end) {
    // Rows and pixels in the phase layout (see deinterleave); interleaved once at the end.
    std::vector<T> rows(kTile * row_len), pixels(kOut * row_len), line(row_len);
    for (int64_t job = begin; job < end; ++job) {
      const int64_t ty = first + job / K, k = job % K;
      const T* in[kTile];
      for (int64_t i = 0; i < kTile; ++i) {
        const T* taps[kTile];
        for (int64_t j = 0; j < kTile; ++j) taps[j] = m + ((i * kTile + j) * K + k) * chunk_tiles + (ty - first) * row_tiles;
        output_rows_any(taps, rows.data() + i * row_len, row_tiles);
        in[i] = rows.data() + i * row_len;
      }
      T* out[kOut];
      for (int64_t r = 0; r < kOut; ++r) out[r] = pixels.data() + r * row_len;
      output_columns_any(in, out, row_len, bias ? bias[k] : T(0));
      T* plane = y + (n * K + k) * g.out_h * g.out_w;
      for (int64_t r = 0; r < kOut && ty * kOut + r < g.out_h; ++r) {
        T* target = plane + (ty * kOut + r) * g.out_w;
        if (g.out_w == row_len) {
          interleave_any(out[r], target, row_tiles);
        } else {  // the last tile sticks out: interleave whole, keep what is inside
          interleave_any(out[r], line.data(), row_tiles);
          std::copy_n(line.data(), g.out_w, target);
        }
      }
    }
  });
}

// U[tap][k][c] = (G g Gᵀ) of each filter, in double (G has sixths and twelfths) and as one GEMM:
// vec(G g Gᵀ) = (G ⊗ G) vec(g) (a broadcast matmul of K·C tiny matrices took 4 ms at 128 channels).
at::Tensor transform_weight(const at::Tensor& weight) {
  TORCH_CHECK(weight.dim() == 4 && weight.size(2) == 3 && weight.size(3) == 3,
              "dreamkit::winograd_weight: weight must be (K, C, 3, 3); got ", weight.sizes());
  TORCH_CHECK(weight.scalar_type() == at::kFloat || weight.scalar_type() == at::kDouble,
              "dreamkit::winograd_weight: weight must be float32 or float64; got ", weight.scalar_type());
  const at::Tensor G = at::tensor({1. / 4, 0., 0., -1. / 6, -1. / 6, -1. / 6, -1. / 6, 1. / 6, -1. / 6, 1. / 24, 1. / 12,
                                   1. / 6, 1. / 24, -1. / 12, 1. / 6, 0., 0., 1.},
                                  weight.options().dtype(at::kDouble))
                           .view({kTile, 3});
  const int64_t K = weight.size(0), C = weight.size(1);
  const at::Tensor u = at::mm(weight.to(at::kDouble).reshape({K * C, 9}), at::kron(G, G).t());  // K·C, 36
  return u.view({K, C, kTaps}).permute({2, 0, 1}).to(weight.scalar_type()).contiguous();
}

at::Tensor conv3x3_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       int64_t reflect_pad, const std::optional<at::Tensor>& transformed_weight) {
  TORCH_CHECK(x.dim() == 4, "dreamkit::conv3x3: x must be (N, C, H, W); got ", x.dim(), " dims ", x.sizes());
  TORCH_CHECK(weight.dim() == 4 && weight.size(2) == 3 && weight.size(3) == 3 && weight.size(1) == x.size(1),
              "dreamkit::conv3x3: weight must be (K, C, 3, 3) with C = ", x.size(1), " (x's channels); got ",
              weight.sizes());
  TORCH_CHECK(reflect_pad >= 0 && reflect_pad < x.size(2) && reflect_pad < x.size(3),
              "dreamkit::conv3x3: reflect_pad must be at least 0 and smaller than x's height and width; got ",
              reflect_pad, " for x ", x.sizes());
  TORCH_CHECK(x.size(2) + 2 * reflect_pad >= 3 && x.size(3) + 2 * reflect_pad >= 3,
              "dreamkit::conv3x3: x must be at least 3x3 once padded; got ", x.sizes(), " with reflect_pad ", reflect_pad);
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "dreamkit::conv3x3: x must be float32 or float64; got ", x.scalar_type());
  TORCH_CHECK(weight.scalar_type() == x.scalar_type(), "dreamkit::conv3x3: weight must have x's dtype ",
              x.scalar_type(), "; got ", weight.scalar_type());
  TORCH_CHECK(x.device().is_cpu() && weight.device().is_cpu(), "dreamkit::conv3x3 (CPU kernel): x is on ", x.device(),
              ", weight on ", weight.device());
  const int64_t K = weight.size(0);
  if (bias.has_value()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == K && bias->scalar_type() == x.scalar_type() && bias->device().is_cpu(),
                "dreamkit::conv3x3: bias must be a CPU (K,) = (", K, ",) tensor of x's dtype; got ", bias->sizes(), " ",
                bias->scalar_type());
  }
  const bool channels_last = dreamkit::is_channels_last(x);
  const int64_t p = reflect_pad;
  Geometry g{x.size(0), x.size(1), x.size(2), x.size(3), p, x.size(2) + 2 * p - 2, x.size(3) + 2 * p - 2, 0, 0};
  g.tiles_y = (g.out_h + kOut - 1) / kOut;
  g.tiles_x = (g.out_w + kOut - 1) / kOut;
  at::Tensor out = at::empty({g.batch, K, g.out_h, g.out_w}, x.options());
  if (out.numel() == 0) return channels_last ? out.contiguous(at::MemoryFormat::ChannelsLast) : out;

  const at::Tensor in = x.contiguous();
  if (transformed_weight.has_value()) {
    TORCH_CHECK(transformed_weight->dim() == 3 && transformed_weight->size(0) == kTaps &&
                    transformed_weight->size(1) == K && transformed_weight->size(2) == x.size(1) &&
                    transformed_weight->scalar_type() == x.scalar_type() && transformed_weight->device().is_cpu(),
                "dreamkit::conv3x3: transformed_weight must be winograd_weight(weight): a CPU (36, ", K, ", ", x.size(1),
                ") tensor of x's dtype; got ", transformed_weight->sizes(), " ", transformed_weight->scalar_type());
  }
  const at::Tensor u = transformed_weight.has_value() ? transformed_weight->contiguous() : transform_weight(weight);
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  const int64_t widest = std::max(g.channels, K);
  // Whole tile rows of one image per chunk, as many as fit kChunkBytes.
  const int64_t rows_per_chunk =
      std::clamp<int64_t>(kChunkBytes / (kTaps * widest * g.tiles_x * x.element_size()), 1, g.tiles_y);

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dreamkit::conv3x3", [&] {
    for (int64_t n = 0; n < g.batch; ++n) {
      for (int64_t first = 0; first < g.tiles_y; first += rows_per_chunk) {
        const int64_t count = std::min(rows_per_chunk, g.tiles_y - first);
        at::Tensor v = at::empty({kTaps, g.channels, count * g.tiles_x}, x.options());
        transform_input<scalar_t>(in.const_data_ptr<scalar_t>(), g, n, first, count, v.mutable_data_ptr<scalar_t>());
        const at::Tensor m = at::bmm(u, v);  // tap, K, tiles
        transform_output<scalar_t>(m.const_data_ptr<scalar_t>(), b.defined() ? b.const_data_ptr<scalar_t>() : nullptr,
                                   g, K, n, first, count, out.mutable_data_ptr<scalar_t>());
      }
    }
  });
  return channels_last ? out.contiguous(at::MemoryFormat::ChannelsLast) : out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dreamkit, CPU, m) {
  m.impl("conv3x3", &conv3x3_cpu);
  m.impl("winograd_weight", &transform_weight);
}
