// jitter: one thread per element (grid-stride), moving elements as same-sized unsigned words.
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace dreamkit::cuda {
namespace {

template <typename word_t>
__global__ void jitter_kernel(const word_t* __restrict src, word_t* __restrict dst, int64_t n, Rows l, int64_t sy,
                              int64_t sx) {
  const int64_t row_len = l.width * l.pixel;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / row_len, p = i % row_len;
    const int64_t x = p / l.pixel, c = p % l.pixel;
    const int64_t plane = r / l.height, y = r % l.height;
    const int64_t source_y = y - sy < 0 ? y - sy + l.height : y - sy;
    const int64_t source_x = x - sx < 0 ? x - sx + l.width : x - sx;
    dst[i] = src[((plane * l.height + source_y) * l.width + source_x) * l.pixel + c];
  }
}

template <typename word_t>
cudaError_t launch(const void* src, void* dst, Rows l, int64_t sy, int64_t sx, cudaStream_t stream) {
  const int64_t n = l.rows * l.width * l.pixel;
  jitter_kernel<word_t><<<detail::blocks_for(n), detail::kThreads, 0, stream>>>(
      static_cast<const word_t*>(src), static_cast<word_t*>(dst), n, l, detail::wrap(sy, l.height),
      detail::wrap(sx, l.width));
  return cudaGetLastError();
}

}  // namespace

cudaError_t jitter(const void* src, void* dst, int64_t element_size, Rows layout, int64_t shift_y, int64_t shift_x,
                   cudaStream_t stream) {
  switch (element_size) {
    case 1: return launch<uint8_t>(src, dst, layout, shift_y, shift_x, stream);
    case 2: return launch<uint16_t>(src, dst, layout, shift_y, shift_x, stream);
    case 4: return launch<uint32_t>(src, dst, layout, shift_y, shift_x, stream);
    case 8: return launch<uint64_t>(src, dst, layout, shift_y, shift_x, stream);
    default: return launch<uint8_t>(src, dst, {layout.rows, layout.height, layout.width, layout.pixel * element_size},
                                    shift_y, shift_x, stream);  // any size: move it as bytes
  }
}

}  // namespace dreamkit::cuda
