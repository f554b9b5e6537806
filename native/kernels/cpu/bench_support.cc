#include "bench_support.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

#include "../../core/cpu_features.h"

namespace dsmoe::cpu {

double fma_loop_avx512(int64_t iters);  // bench_support_avx512.cc
double fma_loop_avx2(int64_t iters);    // bench_support_avx2.cc

namespace {

using Clock = std::chrono::steady_clock;

// Returns FLOPs done by `iters` iterations of the generic loop (8 independent chains of scalar FMAs).
double fma_loop_generic(int64_t iters) {
  float a[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  const float m = 0.999999f, c = 1e-7f;
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 8; ++j) a[j] = a[j] * m + c;
  volatile float sink = a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
  (void)sink;
  return 16.0 * static_cast<double>(iters);
}

double fma_loop(int64_t iters) {
  switch (active_isa()) {
    case Isa::Avx512: return fma_loop_avx512(iters);
    case Isa::Avx2: return fma_loop_avx2(iters);
    default: return fma_loop_generic(iters);
  }
}

}  // namespace

double measure_fma_peak(int threads, double seconds) {
  // Calibrate iterations for ~seconds on one thread, then run all threads at once.
  int64_t iters = 1 << 16;
  for (;;) {
    auto t0 = Clock::now();
    fma_loop(iters);
    double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    if (dt > seconds / 4 || iters > (int64_t(1) << 40)) {
      iters = static_cast<int64_t>(iters * seconds / std::max(dt, 1e-9));
      break;
    }
    iters *= 4;
  }
  std::vector<std::thread> pool;
  std::vector<double> flops(static_cast<size_t>(threads));
  std::atomic<int> ready{0};
  auto t0 = Clock::now();
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < threads) {}
      flops[static_cast<size_t>(t)] = fma_loop(iters);
    });
  for (auto& th : pool) th.join();
  double dt = std::chrono::duration<double>(Clock::now() - t0).count();
  double total = 0;
  for (double f : flops) total += f;
  return total / dt;
}

void naive_gemm_nt(int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float acc = 0.f;
      for (int64_t p = 0; p < k; ++p) acc += a[i * k + p] * b[j * k + p];
      c[i * n + j] = acc;
    }
}

double measure_read_bandwidth(int64_t bytes, int threads, int reps) {
  const int64_t n = bytes / 8;
  std::vector<int64_t> data(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) data[static_cast<size_t>(i)] = i;
  double best = 0;
  std::vector<int64_t> sums(static_cast<size_t>(threads));
  for (int r = 0; r < reps; ++r) {
    std::vector<std::thread> pool;
    auto t0 = Clock::now();
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        int64_t b = n * t / threads, e = n * (t + 1) / threads, s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int64_t i = b;
        for (; i + 4 <= e; i += 4) { s0 += data[i]; s1 += data[i + 1]; s2 += data[i + 2]; s3 += data[i + 3]; }
        for (; i < e; ++i) s0 += data[i];
        sums[static_cast<size_t>(t)] = s0 + s1 + s2 + s3;
      });
    for (auto& th : pool) th.join();
    double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n * 8) / dt);
  }
  volatile int64_t sink = sums[0];
  (void)sink;
  return best;
}

}  // namespace dsmoe::cpu
