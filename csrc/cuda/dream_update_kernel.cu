// dream_update: (1) per block and group, a partial sum of |grad| in double, written to its own
// slot; (2) one block per group adds its partials in a fixed tree order (deterministic: no float
// atomicAdd whose order depends on scheduling); (3) one thread per element: un-rolled gradient,
// scaled step, clamp. out may be image.
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace dreamkit::cuda {
namespace {

// Fixed-order tree sum of partial[0..kThreads) in shared memory; the result is in partial[0].
__device__ void tree_sum(double* partial) {
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
}

template <typename scalar_t>
__global__ void abs_partial_kernel(const scalar_t* __restrict grad, int64_t group_numel, double* partials) {
  __shared__ double partial[detail::kThreads];
  const int64_t group = blockIdx.y;
  const scalar_t* g = grad + group * group_numel;
  double sum = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < group_numel;
       i += int64_t(gridDim.x) * blockDim.x)
    sum += fabs(static_cast<double>(detail::load(g + i)));
  partial[threadIdx.x] = sum;
  tree_sum(partial);
  if (threadIdx.x == 0) partials[group * gridDim.x + blockIdx.x] = partial[0];
}

// One block per group: sums[group] = the fixed-order sum of that group's `count` partials.
__global__ void group_sum_kernel(const double* __restrict partials, int64_t count, double* sums) {
  __shared__ double partial[detail::kThreads];
  const double* p = partials + blockIdx.x * count;
  double sum = 0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) sum += p[i];
  partial[threadIdx.x] = sum;
  tree_sum(partial);
  if (threadIdx.x == 0) sums[blockIdx.x] = partial[0];
}

template <typename scalar_t>
__global__ void update_kernel(const scalar_t* image, const scalar_t* __restrict grad, scalar_t* out, int64_t n,
                              int64_t group_numel, Rows l, int64_t sy, int64_t sx, double step_size, double lo,
                              double hi, double eps, const double* __restrict sums) {
  using acc_t = typename detail::Acc<scalar_t>::type;
  const int64_t row_len = l.width * l.pixel;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / row_len, p = i % row_len;
    const int64_t x = p / l.pixel, c = p % l.pixel;
    const int64_t plane = r / l.height, y = r % l.height;
    const int64_t gy = y + sy >= l.height ? y + sy - l.height : y + sy;
    const int64_t gx = x + sx >= l.width ? x + sx - l.width : x + sx;
    const acc_t gradient = detail::load(grad + ((plane * l.height + gy) * l.width + gx) * l.pixel + c);
    const double mean = sums[i / group_numel] / static_cast<double>(group_numel);
    const acc_t k = static_cast<acc_t>(step_size / (mean + eps));
    acc_t v = detail::load(image + i) + k * gradient;
    v = v < static_cast<acc_t>(lo) ? static_cast<acc_t>(lo) : v;
    v = v > static_cast<acc_t>(hi) ? static_cast<acc_t>(hi) : v;
    detail::store(out + i, v);
  }
}

template <typename scalar_t>
cudaError_t launch(const void* image, const void* grad, void* out, Rows l, int64_t groups, int64_t sy, int64_t sx,
                   double step_size, double lo, double hi, double eps, double* scratch, cudaStream_t stream) {
  const int64_t n = l.rows * l.width * l.pixel, group_numel = n / groups;
  const unsigned int blocks = detail::blocks_for(group_numel);
  const unsigned int per_group = blocks < kDreamUpdatePartials ? blocks : kDreamUpdatePartials;
  double* sums = scratch;
  double* partials = scratch + groups;
  abs_partial_kernel<scalar_t><<<dim3(per_group, static_cast<unsigned int>(groups)), detail::kThreads, 0, stream>>>(
      static_cast<const scalar_t*>(grad), group_numel, partials);
  cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess) return error;
  group_sum_kernel<<<static_cast<unsigned int>(groups), detail::kThreads, 0, stream>>>(partials, per_group, sums);
  if ((error = cudaGetLastError()) != cudaSuccess) return error;
  update_kernel<scalar_t><<<detail::blocks_for(n), detail::kThreads, 0, stream>>>(
      static_cast<const scalar_t*>(image), static_cast<const scalar_t*>(grad), static_cast<scalar_t*>(out), n,
      group_numel, l, detail::wrap(sy, l.height), detail::wrap(sx, l.width), step_size, lo, hi, eps, sums);
  return cudaGetLastError();
}

}  // namespace

cudaError_t dream_update(const void* image, const void* grad, void* out, FloatType type, Rows layout, int64_t groups,
                         int64_t shift_y, int64_t shift_x, double step_size, double clamp_min, double clamp_max,
                         double eps, double* scratch, cudaStream_t stream) {
  switch (type) {
    case FloatType::f32:
      return launch<float>(image, grad, out, layout, groups, shift_y, shift_x, step_size, clamp_min, clamp_max, eps,
                           scratch, stream);
    case FloatType::f64:
      return launch<double>(image, grad, out, layout, groups, shift_y, shift_x, step_size, clamp_min, clamp_max, eps,
                            scratch, stream);
    case FloatType::bf16:
      return launch<__nv_bfloat16>(image, grad, out, layout, groups, shift_y, shift_x, step_size, clamp_min, clamp_max,
                                   eps, scratch, stream);
    case FloatType::f16:
      return launch<__half>(image, grad, out, layout, groups, shift_y, shift_x, step_size, clamp_min, clamp_max, eps,
                            scratch, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace dreamkit::cuda
