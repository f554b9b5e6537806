// Helpers shared by the nn kernels' implementation files (not part of the kernel interface).
#pragma once
#include <algorithm>
#include <cstdint>

#include "../../core/threadpool.h"

namespace dsmoe::cpu::nn_detail {

// Elements one task should handle: large enough to amortise the task hand-off, small enough to
// balance over a few threads.
constexpr int64_t kGrain = 16384;

// Runs body(begin, end) over [0, n) cut into fixed chunks of `chunk` items, spread over the pool.
// Chunk boundaries depend only on n and chunk, never on the thread count.
template <class F>
inline void parallel_chunks(int64_t n, int64_t chunk, F&& body) {
  if (n <= 0) return;
  const int64_t tasks = (n + chunk - 1) / chunk;
  parallel_for(tasks, [&](int64_t t, int) {
    const int64_t begin = t * chunk;
    body(begin, std::min(n, begin + chunk));
  });
}

// Rows per task for row-wise kernels whose rows hold `cols` elements.
inline int64_t rows_per_task(int64_t cols) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(1, cols)); }

// Σ a_j·b_j in double. Eight independent accumulators (combined in a fixed order) let the compiler
// vectorise without changing the result from one call to the next.
inline double dot_f64(int64_t n, const float* a, const float* b) {
  double acc[8] = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(a[j + k]) * b[j + k];
  double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; j < n; ++j) s += static_cast<double>(a[j]) * b[j];
  return s;
}

}  // namespace dsmoe::cpu::nn_detail
