// A persistent pool of worker threads for the CPU kernels.
// Size: DSMOE_THREADS, else the number of cores; changeable at run time (tests sweep 1..4).
#pragma once
#include <cstdint>
#include <functional>

namespace dsmoe {

// Runs body(task, thread) for every task in [0, n_tasks), spread over the pool; returns when all
// are done. Calls from inside a task (nested) and calls while another thread holds the pool run
// serially on the calling thread, so kernels may call each other freely.
void parallel_for(int64_t n_tasks, const std::function<void(int64_t task, int thread)>& body);

int num_threads();           // threads a parallel_for uses (the caller counts as one)
void set_num_threads(int n); // 1..kMaxThreads
constexpr int kMaxThreads = 256;

// Splits [0, n) into `parts` nearly equal ranges; returns range `i` as [begin, end).
inline void split_range(int64_t n, int64_t parts, int64_t i, int64_t* begin, int64_t* end) {
  int64_t base = n / parts, rem = n % parts;
  *begin = i * base + (i < rem ? i : rem);
  *end = *begin + base + (i < rem ? 1 : 0);
}

}  // namespace dsmoe
