// Device helpers shared by the CUDA kernel files (nn.cu, routing_extra.cu). Header-only; every
// function is __forceinline__ device code, so each .cu file gets its own copy.
#pragma once
#include <cmath>
#include <cstdint>

namespace dsmoe::cuda::common {

// Grid-stride loops: this thread's first index and the stride.
__device__ __forceinline__ int64_t gtid() { return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; }
__device__ __forceinline__ int64_t gstride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// The order routing ranks scores in: NaN below everything (the CPU's order).
__device__ __forceinline__ float rank_key(float s) { return isnan(s) ? -INFINITY : s; }

// One block's exclusive scan in place: x[i] = Σ_{j<i} x[j]; returns Σ x to every thread. Each thread
// sums a contiguous segment, a Hillis-Steele scan of the segment sums in `sums` (shared memory,
// blockDim.x entries), then each thread rewrites its segment. Integers: exact in any order.
template <typename T>
__device__ __forceinline__ T block_exclusive_scan(int64_t n, T* x, T* sums) {
  const int tid = threadIdx.x, nt = blockDim.x;
  const int64_t seg = (n + nt - 1) / nt, b = tid * seg, e = min(n, b + seg);
  T s = 0;
  for (int64_t i = b; i < e; ++i) s += x[i];
  sums[tid] = s;
  __syncthreads();
  for (int o = 1; o < nt; o <<= 1) {
    const T v = tid >= o ? sums[tid - o] : 0;
    __syncthreads();
    sums[tid] += v;
    __syncthreads();
  }
  T run = tid > 0 ? sums[tid - 1] : 0;
  for (int64_t i = b; i < e; ++i) {
    const T v = x[i];
    x[i] = run;
    run += v;
  }
  return sums[nt - 1];
}

}  // namespace dsmoe::cuda::common
