// octave_resample: one thread per output element; bilinear (align_corners=False, ATen's source
// index arithmetic) at the un-shifted output position, so the wrap-around shift costs nothing.
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace dreamkit::cuda {
namespace {

template <typename acc_t>
__device__ __forceinline__ void source(int64_t o, int64_t in, acc_t scale, int64_t& lo, int64_t& hi, acc_t& w) {
  acc_t real = scale * (static_cast<acc_t>(o) + acc_t(0.5)) - acc_t(0.5);
  real = real < acc_t(0) ? acc_t(0) : real;
  lo = static_cast<int64_t>(real);
  lo = lo < in - 1 ? lo : in - 1;
  hi = lo + (lo < in - 1 ? 1 : 0);
  w = real - static_cast<acc_t>(lo);
  w = w < acc_t(0) ? acc_t(0) : (w > acc_t(1) ? acc_t(1) : w);
}

template <typename scalar_t>
__global__ void resample_kernel(const scalar_t* __restrict src, scalar_t* __restrict dst, int64_t n, Rows in, Rows out,
                                int64_t sy, int64_t sx) {
  using acc_t = typename detail::Acc<scalar_t>::type;
  const acc_t scale_y = static_cast<acc_t>(in.height) / static_cast<acc_t>(out.height);
  const acc_t scale_x = static_cast<acc_t>(in.width) / static_cast<acc_t>(out.width);
  const int64_t row_len = out.width * out.pixel;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / row_len, p = i % row_len;
    const int64_t ox = p / out.pixel, c = p % out.pixel;
    const int64_t plane = r / out.height, oy = r % out.height;
    int64_t y0, y1, x0, x1;
    acc_t wy, wx;
    source<acc_t>(detail::wrap(oy - sy, out.height), in.height, scale_y, y0, y1, wy);
    source<acc_t>(detail::wrap(ox - sx, out.width), in.width, scale_x, x0, x1, wx);
    const scalar_t* top = src + (plane * in.height + y0) * in.width * in.pixel + c;
    const scalar_t* bottom = src + (plane * in.height + y1) * in.width * in.pixel + c;
    const acc_t upper = (acc_t(1) - wx) * detail::load(top + x0 * in.pixel) + wx * detail::load(top + x1 * in.pixel);
    const acc_t lower =
        (acc_t(1) - wx) * detail::load(bottom + x0 * in.pixel) + wx * detail::load(bottom + x1 * in.pixel);
    detail::store(dst + i, (acc_t(1) - wy) * upper + wy * lower);
  }
}

template <typename scalar_t>
cudaError_t launch(const void* src, void* dst, Rows in, Rows out, int64_t sy, int64_t sx, cudaStream_t stream) {
  const int64_t n = out.rows * out.width * out.pixel;
  resample_kernel<scalar_t><<<detail::blocks_for(n), detail::kThreads, 0, stream>>>(
      static_cast<const scalar_t*>(src), static_cast<scalar_t*>(dst), n, in, out, sy, sx);
  return cudaGetLastError();
}

}  // namespace

cudaError_t octave_resample(const void* src, void* dst, FloatType type, Rows in, Rows out, int64_t shift_y,
                            int64_t shift_x, cudaStream_t stream) {
  switch (type) {
    case FloatType::f32: return launch<float>(src, dst, in, out, shift_y, shift_x, stream);
    case FloatType::f64: return launch<double>(src, dst, in, out, shift_y, shift_x, stream);
    case FloatType::bf16: return launch<__nv_bfloat16>(src, dst, in, out, shift_y, shift_x, stream);
    case FloatType::f16: return launch<__half>(src, dst, in, out, shift_y, shift_x, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace dreamkit::cuda
