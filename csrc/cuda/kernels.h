// Launchers of the raw CUDA kernels (implemented in *_kernel.cu with <cuda_runtime.h> only, for
// fast compiles). Plain C types: the host glue in *_cuda.cpp converts from tensors, checks
// arguments, sets the device and passes the current stream. Each returns the launch error.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace dreamkit::cuda {

enum class FloatType { f32, f64, bf16, f16 };

// The layout every kernel shares: rows of `row_pixels` pixels of `pixel` elements (pixel = 1 for
// NCHW, C for channels_last), rows grouped into planes of `height` rows.
struct Rows {
  int64_t rows, height, width, pixel;
};

cudaError_t jitter(const void* src, void* dst, int64_t element_size, Rows layout, int64_t shift_y,
                   int64_t shift_x, cudaStream_t stream);

// in: rows of in_layout (height Hi, width Wi); out: out_layout (Ho, Wo); same planes and pixel.
cudaError_t octave_resample(const void* src, void* dst, FloatType type, Rows in_layout, Rows out_layout,
                            int64_t shift_y, int64_t shift_x, cudaStream_t stream);

// The most partial sums per group that dream_update's first pass writes.
constexpr int64_t kDreamUpdatePartials = 1024;

// scratch: groups * (1 + kDreamUpdatePartials) doubles (per-group sums, then each group's partials).
// The mean |grad| per group is summed in double in a fixed order: the same bits on every run.
cudaError_t dream_update(const void* image, const void* grad, void* out, FloatType type, Rows layout,
                         int64_t groups, int64_t shift_y, int64_t shift_x, double step_size, double clamp_min,
                         double clamp_max, double eps, double* scratch, cudaStream_t stream);

}  // namespace dreamkit::cuda
