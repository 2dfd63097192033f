// Helpers for the host glue (*_cuda.cpp): tensors to the plain launcher arguments of kernels.h.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>

#include "cuda/kernels.h"
#include "dreamkit_ops.h"

namespace dreamkit::cuda {

inline FloatType float_type(const at::Tensor& x, const char* op) {
  switch (x.scalar_type()) {
    case at::kFloat: return FloatType::f32;
    case at::kDouble: return FloatType::f64;
    case at::kBFloat16: return FloatType::bf16;
    case at::kHalf: return FloatType::f16;
    default: TORCH_CHECK(false, op, ": CUDA kernel supports float32, float64, bfloat16 and float16; got ", x.scalar_type());
  }
}

// The row layout of x (..., H, W), contiguous in the format chosen by is_channels_last.
inline Rows rows_of(const at::Tensor& x, bool channels_last) {
  const int64_t W = x.size(-1), H = x.size(-2), pixel = channels_last ? x.size(1) : 1;
  return {x.numel() / (W * pixel), H, W, pixel};
}

inline void check_launch(cudaError_t error, const char* op) {
  TORCH_CHECK(error == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(error));
}

}  // namespace dreamkit::cuda
