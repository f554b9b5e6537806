// Causal MoA attention (attention.h). Plain fp32 loops over dh, vectorised by the compiler.
//
// Forward: one task per (b, h, block of queries); each query computes its scores against its
// visible keys into O(Tk) thread-local scratch, then a two-pass (max, then exp-sum) softmax.
// Backward: two passes that recompute P = exp(scale·q·k − lse) from the saved lse instead of
// storing it: dq per (b, h, query block), dk/dv per (b, g, key block). Each output element has
// exactly one owning task, so there are no races and no atomics, and the summation order is
// fixed (bit-identical results for any thread count).
#include "attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "../../core/aligned_buffer.h"
#include "../../core/threadpool.h"

namespace dsmoe::cpu {
namespace {

constexpr int64_t kQueryBlock = 16;  // queries per forward / dq task
constexpr int64_t kKeyBlock = 32;    // keys per dk/dv task

// Σ a[i]·b[i] with 8 independent partial sums: without -ffast-math the compiler may not reorder a
// single running sum, so this is what lets it vectorise. The order is fixed, hence deterministic.
inline float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  float tail = 0.f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return tail + (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])));
}

// y += a·x
inline void axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// Offsets into the row-major tensors of attention.h.
struct Index {
  const AttentionShape& s;
  int64_t q_row(int64_t b, int64_t i, int64_t h) const { return ((b * s.tq + i) * s.n_heads_total + h) * s.head_dim; }
  int64_t kv_row(int64_t b, int64_t j, int64_t g) const { return ((b * s.tk + j) * s.kv_heads + g) * s.head_dim; }
  int64_t lse_at(int64_t b, int64_t h, int64_t i) const { return (b * s.n_heads_total + h) * s.tq + i; }
  // Head j of every expert uses kv head j / (H / G) (DESIGN.md §1.1).
  int64_t kv_head(int64_t h) const { return (h % s.heads_per_expert) / (s.heads_per_expert / s.kv_heads); }
  // Query i sits at absolute position Tk − Tq + i and sees keys 0 .. that position.
  int64_t visible_keys(int64_t i) const { return s.tk - s.tq + i + 1; }
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                       float* lse) {
  const Index ix{s};
  const int64_t dh = s.head_dim, n_qblocks = ceil_div(s.tq, kQueryBlock);
  parallel_for(s.batch * s.n_heads_total * n_qblocks, [&](int64_t task, int) {
    const int64_t qb = task % n_qblocks, h = (task / n_qblocks) % s.n_heads_total;
    const int64_t b = task / (n_qblocks * s.n_heads_total), g = ix.kv_head(h);
    thread_local ScratchBuffer scratch;
    float* p = scratch.floats(static_cast<size_t>(s.tk));  // scores, then probabilities: O(Tk)
    for (int64_t i = qb * kQueryBlock; i < std::min(s.tq, (qb + 1) * kQueryBlock); ++i) {
      const float* qi = q + ix.q_row(b, i, h);
      const int64_t n = ix.visible_keys(i);
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < n; ++j) {
        p[j] = s.scale * dot(qi, k + ix.kv_row(b, j, g), dh);
        m = std::max(m, p[j]);
      }
      // Subtracting the max keeps exp() ≤ 1: no overflow, and the largest term is exactly 1.
      float sum = 0.f;
      for (int64_t j = 0; j < n; ++j) sum += (p[j] = std::exp(p[j] - m));
      float* oi = out + ix.q_row(b, i, h);
      std::fill(oi, oi + dh, 0.f);
      for (int64_t j = 0; j < n; ++j) axpy(p[j], v + ix.kv_row(b, j, g), oi, dh);
      const float inv = 1.f / sum;
      for (int64_t d = 0; d < dh; ++d) oi[d] *= inv;
      lse[ix.lse_at(b, h, i)] = m + std::log(sum);
    }
  });
}

void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v, const float* out,
                        const float* lse, const float* dout, float* dq, float* dk, float* dv) {
  const Index ix{s};
  const int64_t dh = s.head_dim;

  // dQ_i = scale · Σ_j dS_ij k_j, dS_ij = P_ij (dO_i·v_j − D_i), D_i = dO_i·O_i. A query row only
  // needs its own row of P, so (b, h, query block) tasks own disjoint rows of dq.
  const int64_t n_qblocks = ceil_div(s.tq, kQueryBlock);
  parallel_for(s.batch * s.n_heads_total * n_qblocks, [&](int64_t task, int) {
    const int64_t qb = task % n_qblocks, h = (task / n_qblocks) % s.n_heads_total;
    const int64_t b = task / (n_qblocks * s.n_heads_total), g = ix.kv_head(h);
    for (int64_t i = qb * kQueryBlock; i < std::min(s.tq, (qb + 1) * kQueryBlock); ++i) {
      const int64_t r = ix.q_row(b, i, h);
      const float* qi = q + r;
      const float* doi = dout + r;
      const float di = dot(doi, out + r, dh), l = lse[ix.lse_at(b, h, i)];
      float* dqi = dq + r;
      std::fill(dqi, dqi + dh, 0.f);
      for (int64_t j = 0; j < ix.visible_keys(i); ++j) {
        const float* kj = k + ix.kv_row(b, j, g);
        const float pij = std::exp(s.scale * dot(qi, kj, dh) - l);
        const float dsij = pij * (dot(doi, v + ix.kv_row(b, j, g), dh) - di);
        axpy(s.scale * dsij, kj, dqi, dh);
      }
    }
  });

  // dV_j = Σ_{h,i} P_ij dO_i and dK_j = scale · Σ_{h,i} dS_ij q_i, summed over every query head of
  // every expert that uses kv head g. A (b, g, key block) task owns those rows of dk/dv and loops
  // over heads (expert-major) and queries in a fixed order: no race, same bits for any thread count.
  const int64_t n_kblocks = ceil_div(s.tk, kKeyBlock);
  const int64_t group = s.heads_per_expert / s.kv_heads;  // query heads per kv head per expert
  const int64_t experts = s.n_heads_total / s.heads_per_expert;
  parallel_for(s.batch * s.kv_heads * n_kblocks, [&](int64_t task, int) {
    const int64_t kb = task % n_kblocks, g = (task / n_kblocks) % s.kv_heads;
    const int64_t b = task / (n_kblocks * s.kv_heads);
    const int64_t j0 = kb * kKeyBlock, j1 = std::min(s.tk, j0 + kKeyBlock);
    for (int64_t j = j0; j < j1; ++j) {
      std::fill(dk + ix.kv_row(b, j, g), dk + ix.kv_row(b, j, g) + dh, 0.f);
      std::fill(dv + ix.kv_row(b, j, g), dv + ix.kv_row(b, j, g) + dh, 0.f);
    }
    // Only queries at absolute position ≥ j0 see any key of this block.
    const int64_t i_first = std::max<int64_t>(0, j0 - (s.tk - s.tq));
    for (int64_t e = 0; e < experts; ++e)
      for (int64_t h = e * s.heads_per_expert + g * group; h < e * s.heads_per_expert + (g + 1) * group; ++h)
        for (int64_t i = i_first; i < s.tq; ++i) {
          const int64_t r = ix.q_row(b, i, h);
          const float* qi = q + r;
          const float* doi = dout + r;
          const float di = dot(doi, out + r, dh), l = lse[ix.lse_at(b, h, i)];
          for (int64_t j = j0; j < std::min(j1, ix.visible_keys(i)); ++j) {
            const int64_t kr = ix.kv_row(b, j, g);
            const float pij = std::exp(s.scale * dot(qi, k + kr, dh) - l);
            const float dsij = pij * (dot(doi, v + kr, dh) - di);
            axpy(pij, doi, dv + kr, dh);
            axpy(s.scale * dsij, qi, dk + kr, dh);
          }
        }
  });
}

}  // namespace dsmoe::cpu
