#include "gemv.h"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <vector>

#include "../../core/bf16.h"
#include "../../core/cpu_features.h"
#include "../../core/half.h"
#include "../../core/threadpool.h"
#include "quant.h"

namespace dsmoe::cpu {
namespace {

std::atomic<bool> g_bf16_dot_allowed{true};
std::atomic<bool> g_int8_dot_allowed{true};

struct Kernels {
  GemvF32 f32;
  GemvBf16 bf16;
  bool needs_xb;  // the bf16 kernel reads x rounded to bf16
  GemvI8 i8;
  GemvQ4 q4;
};

Kernels kernels() {
  if (active_isa() == Isa::Avx512) {
    if (bf16_dot_active()) return {gemv_f32_avx512, gemv_bf16_dot_avx512, true, gemv_i8_avx512, gemv_q4_avx512};
    return {gemv_f32_avx512, gemv_bf16_widen_avx512, false, gemv_i8_avx512, gemv_q4_avx512};
  }
  if (active_isa() == Isa::Avx2) return {gemv_f32_avx2, gemv_bf16_avx2, false, gemv_i8_avx2, gemv_q4_avx2};
  return {gemv_f32_generic, gemv_bf16_generic, false, gemv_i8_generic, gemv_q4_generic};
}

struct Task {
  int64_t job, e, r0, r1;
};

}  // namespace

bool set_bf16_dot(bool allowed) {
  g_bf16_dot_allowed = allowed;
  return bf16_dot_active();
}

bool bf16_dot_active() {
  return g_bf16_dot_allowed && active_isa() == Isa::Avx512 && cpu_has_avx512_bf16();
}

bool set_int8_dot(bool allowed) {
  g_int8_dot_allowed = allowed;
  return int8_dot_active();
}

bool int8_dot_active() {
  return g_int8_dot_allowed && active_isa() == Isa::Avx512 && cpu_has_avx512_vnni();
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

void gemv_i8_generic(const int8_t* w, const float* scale, int64_t rows, int64_t k, const float* x, int64_t m,
                     float* y, int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < m; ++i) {
      const int8_t* wr = w + r * k;
      const float* xi = x + i * k;
      float acc = 0.f;
      for (int64_t j = 0; j < k; ++j) acc += static_cast<float>(wr[j]) * xi[j];
      y[i * ldy + r] = acc * scale[r];
    }
}

void gemv_q4_generic(const uint8_t* w, const uint16_t* scale, int64_t rows, int64_t k, const float* x, int64_t m,
                     float* y, int64_t ldy) {
  const int64_t groups = k / kQ4Group;
  float wq[kQ4Group];
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < m; ++i) y[i * ldy + r] = 0.f;
    for (int64_t g = 0; g < groups; ++g) {
      const float s = half_to_float(scale[r * groups + g]);
      const uint8_t* b = w + r * (k / 2) + g * (kQ4Group / 2);
      for (int64_t c = 0; c < kQ4Group / 2; ++c) {
        wq[2 * c] = static_cast<float>(static_cast<int>(b[c] & 0x0f) - 8) * s;
        wq[2 * c + 1] = static_cast<float>(static_cast<int>(b[c] >> 4) - 8) * s;
      }
      for (int64_t i = 0; i < m; ++i) {
        const float* xi = x + i * k + g * kQ4Group;
        float acc = 0.f;
        for (int64_t j = 0; j < kQ4Group; ++j) acc += wq[j] * xi[j];
        y[i * ldy + r] += acc;
      }
    }
  }
}

void gemv_batch(const GemvJob* jobs, int64_t count) {
  const Kernels kern = kernels();
  // The native bf16 dot multiplies bf16 pairs: round each job's activations once, not per row
  // (serially: decode has a few rows). thread_local buffers are named only outside the parallel
  // body, which runs on other threads.
  static thread_local std::vector<uint16_t> xb;
  static thread_local std::vector<size_t> xb_at;
  static thread_local std::vector<Task> tasks;
  xb_at.assign(static_cast<size_t>(count), 0);
  size_t need = 0;
  for (int64_t j = 0; j < count; ++j)
    if (jobs[j].w_dtype == DType::BF16 && kern.needs_xb) {
      xb_at[static_cast<size_t>(j)] = need;
      need += static_cast<size_t>(jobs[j].offsets[jobs[j].n_experts] * jobs[j].k);
    }
  xb.resize(need);
  // The int8 dot: each quantized job's activations rounded once (quant.h), here, serially.
  static thread_local std::vector<int8_t> xq;
  static thread_local std::vector<float> xq_scale;
  static thread_local std::vector<int32_t> xq_corr;
  static thread_local std::vector<QuantizedActivations> xq_at;
  const bool int8_dot = int8_dot_active();
  auto uses_int8_dot = [&](const GemvJob& g) {
    return int8_dot && (g.w_dtype == DType::I8 || g.w_dtype == DType::Q4) && g.k > 0 && g.k % kXBlock == 0;
  };
  size_t nq = 0, ns = 0, nc = 0;
  for (int64_t j = 0; j < count; ++j)
    if (uses_int8_dot(jobs[j])) {
      const int64_t P = jobs[j].offsets[jobs[j].n_experts];
      nq += static_cast<size_t>(P * jobs[j].k);
      ns += static_cast<size_t>(xq_scale_count(jobs[j].w_dtype, P, jobs[j].k));
      nc += static_cast<size_t>(xq_corr_count(P, jobs[j].k));
    }
  xq.resize(nq);
  xq_scale.resize(ns);
  xq_corr.resize(nc);
  xq_at.assign(static_cast<size_t>(count), QuantizedActivations{nullptr, nullptr, nullptr});
  nq = ns = nc = 0;
  for (int64_t j = 0; j < count; ++j) {
    const GemvJob& g = jobs[j];
    const int64_t P = g.offsets[g.n_experts];
    if (!uses_int8_dot(g) || P == 0 || g.n == 0) continue;
    const QuantizedActivations qa{xq.data() + nq, xq_scale.data() + ns, xq_corr.data() + nc};
    quantize_activations_vnni(g.w_dtype, g.x, P, g.k, qa);
    xq_at[static_cast<size_t>(j)] = qa;
    nq += static_cast<size_t>(P * g.k);
    ns += static_cast<size_t>(xq_scale_count(g.w_dtype, P, g.k));
    nc += static_cast<size_t>(xq_corr_count(P, g.k));
  }
  tasks.clear();
  // Task size: the weight bytes to read, shared out as one contiguous block per thread, between 32 KiB
  // and 1 MiB. Each thread streams a block from memory at its own pace, and every block start costs a
  // cold stream: with 32 KiB blocks taken in turn by the threads, dense decode read its weights at
  // ~25-33 GB/s where 512 KiB blocks reached 42-48 (2 Zen 5 threads, 128 MB of weights); the sparse
  // rows' small regions (a few experts, 128-512 KiB) decoded 22 % (int8 topk:1) and 14 % (q4) faster
  // with one block per thread than with four (same process, 10 interleaved rounds; dense unchanged).
  int64_t total_bytes = 0;
  for (int64_t j = 0; j < count; ++j) {
    const GemvJob& g = jobs[j];
    for (int64_t e = 0; e < g.n_experts; ++e)
      if (g.offsets[e + 1] > g.offsets[e]) total_bytes += g.n * dtype_row_bytes(g.w_dtype, g.k);
  }
  const int64_t block_bytes = std::clamp<int64_t>(total_bytes / num_threads(), int64_t(32) << 10,
                                                  int64_t(1) << 20);
  for (int64_t j = 0; j < count; ++j) {
    const GemvJob& g = jobs[j];
    const bool bf16 = g.w_dtype == DType::BF16;
    const int64_t P = g.offsets[g.n_experts];
    if (P == 0 || g.n == 0) continue;
    if ((g.w_dtype == DType::I8 || (g.w_dtype == DType::Q4 && g.k > 0)) && g.w_scales == nullptr)
      throw std::invalid_argument("gemv_batch: quantized weights without scales");
    if (g.w_dtype == DType::Q4 && g.k % kQ4Group != 0)
      throw std::invalid_argument("gemv_batch: Q4 weights need k a multiple of 32");
    if (bf16 && kern.needs_xb)
      for (int64_t i = 0; i < P * g.k; ++i)
        xb[xb_at[static_cast<size_t>(j)] + static_cast<size_t>(i)] = f32_to_bf16(g.x[i]);
    const int64_t row_bytes = dtype_row_bytes(g.w_dtype, g.k);
    // A multiple of 4 rows: the row kernels take rows in blocks of up to 4 from a task's first row, so
    // each output is summed the same way whatever the task size (and so the thread count) is.
    const int64_t block = std::max<int64_t>(4, block_bytes / std::max<int64_t>(row_bytes, 1) / 4 * 4);
    for (int64_t e = 0; e < g.n_experts; ++e) {
      if (g.offsets[e + 1] == g.offsets[e]) continue;
      for (int64_t r0 = 0; r0 < g.n; r0 += block) tasks.push_back({j, e, r0, std::min(g.n, r0 + block)});
    }
  }
  const Task* tk = tasks.data();
  const uint16_t* xbd = xb.data();
  const size_t* xat = xb_at.data();
  const QuantizedActivations* qat = xq_at.data();
  parallel_for(static_cast<int64_t>(tasks.size()), [&](int64_t t, int) {
    const Task& task = tk[t];
    const GemvJob& g = jobs[task.job];
    const int64_t row0 = g.offsets[task.e], m = g.offsets[task.e + 1] - row0;
    const int64_t wrow = task.e * g.n + task.r0;  // first weight row of the block
    float* yb = g.y + row0 * g.n + task.r0;
    const int64_t rows = task.r1 - task.r0;
    const float* xe = g.x + row0 * g.k;
    switch (g.w_dtype) {
      case DType::F32: kern.f32(static_cast<const float*>(g.w) + wrow * g.k, rows, g.k, xe, m, yb, g.n); break;
      case DType::BF16:
        kern.bf16(static_cast<const uint16_t*>(g.w) + wrow * g.k, rows, g.k, xe,
                  kern.needs_xb ? xbd + xat[task.job] + row0 * g.k : nullptr, m, yb, g.n);
        break;
      case DType::I8: {
        const int8_t* w = static_cast<const int8_t*>(g.w) + wrow * g.k;
        const float* sc = static_cast<const float*>(g.w_scales) + wrow;
        const QuantizedActivations& qa = qat[task.job];
        if (qa.q) {
          const int64_t nb = g.k / kXBlock;
          gemv_i8_vnni(w, sc, rows, g.k, qa.q + row0 * g.k, qa.scale + row0 * nb, qa.corr + row0 * nb * 16, m, yb,
                       g.n);
        } else {
          kern.i8(w, sc, rows, g.k, xe, m, yb, g.n);
        }
        break;
      }
      case DType::Q4: {
        const uint8_t* w = static_cast<const uint8_t*>(g.w) + wrow * (g.k / 2);
        const uint16_t* sc = static_cast<const uint16_t*>(g.w_scales) + wrow * (g.k / kQ4Group);
        const QuantizedActivations& qa = qat[task.job];
        if (qa.q) {
          const int64_t nb = g.k / kXBlock;
          gemv_q4_vnni(w, sc, rows, g.k, qa.q + row0 * g.k, qa.scale + row0, qa.corr + row0 * nb * 16, m, yb, g.n);
        } else {
          kern.q4(w, sc, rows, g.k, xe, m, yb, g.n);
        }
        break;
      }
    }
  });
}

void expert_gemv(int64_t E, const int32_t* offsets, const float* x, const void* w, DType dt, int64_t n,
                 int64_t k, float* y, const void* w_scales) {
  const GemvJob job{E, offsets, x, w, dt, n, k, y, w_scales};
  gemv_batch(&job, 1);
}

}  // namespace dsmoe::cpu
