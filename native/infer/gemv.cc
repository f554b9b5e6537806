#include "gemv.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "../core/bf16.h"
#include "../core/cpu_features.h"
#include "../core/threadpool.h"

namespace dsmoe::infer {
namespace {

std::atomic<bool> g_bf16_dot_allowed{true};

struct Kernels {
  GemvF32 f32;
  GemvBf16 bf16;
  bool needs_xb;  // the bf16 kernel reads x rounded to bf16
};

Kernels kernels() {
  if (active_isa() == Isa::Avx512) {
    if (bf16_dot_active()) return {gemv_f32_avx512, gemv_bf16_dot_avx512, true};
    return {gemv_f32_avx512, gemv_bf16_widen_avx512, false};
  }
  return {gemv_f32_generic, gemv_bf16_generic, false};
}

struct Task {
  int64_t e, r0, r1;
};

}  // namespace

bool set_bf16_dot(bool allowed) {
  g_bf16_dot_allowed = allowed;
  return bf16_dot_active();
}

bool bf16_dot_active() {
  return g_bf16_dot_allowed && active_isa() == Isa::Avx512 && cpu_has_avx512_bf16();
}

void gemv_f32_generic(const float* w, int64_t rows, int64_t k, const float* x, int64_t m, float* y, int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < m; ++i) {
      const float* wr = w + r * k;
      const float* xi = x + i * k;
      float acc = 0.f;
      for (int64_t j = 0; j < k; ++j) acc += wr[j] * xi[j];
      y[i * ldy + r] = acc;
    }
}

void gemv_bf16_generic(const uint16_t* w, int64_t rows, int64_t k, const float* x, const uint16_t*, int64_t m,
                       float* y, int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < m; ++i) {
      const uint16_t* wr = w + r * k;
      const float* xi = x + i * k;
      float acc = 0.f;
      for (int64_t j = 0; j < k; ++j) acc += bf16_to_f32(wr[j]) * xi[j];
      y[i * ldy + r] = acc;
    }
}

void expert_gemv(int64_t E, const int32_t* offsets, const float* x, const void* w, cpu::DType dt, int64_t n,
                 int64_t k, float* y) {
  const Kernels kern = kernels();
  const bool bf16 = dt == cpu::DType::BF16;
  const int64_t P = offsets[E];
  if (P == 0 || n == 0) return;
  // The native bf16 dot multiplies bf16 pairs: round the activations once per call, not per row.
  // (thread_local buffers are named only outside the parallel body, which runs on other threads.)
  static thread_local std::vector<uint16_t> xb;
  if (bf16 && kern.needs_xb) {
    xb.resize(static_cast<size_t>(P * k));
    uint16_t* xbw = xb.data();
    parallel_for(P, [&](int64_t i, int) {
      for (int64_t j = 0; j < k; ++j) xbw[i * k + j] = f32_to_bf16(x[i * k + j]);
    });
  }
  // Blocks of ~32 KiB of weights: small enough to balance 2..64 threads on one expert, large
  // enough that the per-task overhead is noise next to the memory traffic.
  const int64_t row_bytes = k * (bf16 ? 2 : 4);
  const int64_t block = std::max<int64_t>(1, (int64_t(32) << 10) / std::max<int64_t>(row_bytes, 1));
  static thread_local std::vector<Task> tasks;
  tasks.clear();
  for (int64_t e = 0; e < E; ++e) {
    if (offsets[e + 1] == offsets[e]) continue;
    for (int64_t r0 = 0; r0 < n; r0 += block) tasks.push_back({e, r0, std::min(n, r0 + block)});
  }
  const Task* tk = tasks.data();
  const uint16_t* xbd = xb.data();
  parallel_for(static_cast<int64_t>(tasks.size()), [&](int64_t t, int) {
    const Task& task = tk[t];
    const int64_t row0 = offsets[task.e], m = offsets[task.e + 1] - row0;
    const int64_t wrow = task.e * n + task.r0;  // first weight row of the block
    float* yb = y + row0 * n + task.r0;
    if (bf16)
      kern.bf16(static_cast<const uint16_t*>(w) + wrow * k, task.r1 - task.r0, k, x + row0 * k,
                kern.needs_xb ? xbd + row0 * k : nullptr, m, yb, n);
    else
      kern.f32(static_cast<const float*>(w) + wrow * k, task.r1 - task.r0, k, x + row0 * k, m, yb, n);
  });
}

}  // namespace dsmoe::infer
