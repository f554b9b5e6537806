// Routing kernels (see routing.h for the contracts). Work is split over rows (tokens, pairs or
// (token, expert) rows); every output is written by exactly one task in a fixed order, and the two
// reductions over tokens (column sums for the losses) use a fixed chunking, so nothing depends on
// the number of threads.
#include "routing.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "../../core/threadpool.h"

namespace dsmoe::cpu {
namespace {

// Work units (≈ element operations) per task: below this a thread hand-off costs more than it saves.
constexpr int64_t kGrain = 1 << 14;

// Runs fn(begin, end) over [0, n) split into contiguous ranges; small problems stay on this thread.
template <class F>
void parallel_rows(int64_t n, int64_t row_cost, const F& fn) {
  if (n <= 0) return;
  const int64_t total = n * std::max<int64_t>(row_cost, 1);
  const int64_t tasks = std::min({n, std::max<int64_t>(1, total / kGrain), int64_t{4} * num_threads()});
  if (tasks == 1) return fn(int64_t{0}, n);
  parallel_for(tasks, [&](int64_t i, int) {
    int64_t b, e;
    split_range(n, tasks, i, &b, &e);
    fn(b, e);
  });
}

// NaN ranks below every number, so the comparison below is a strict weak order (std::sort's
// requirement; a NaN breaking it would be undefined behaviour).
inline float rank_key(float s) { return std::isnan(s) ? -INFINITY : s; }

// idx[0..m) = the m best experts of one token in routing order (descending score, ties to the
// lower index). idx has room for E entries.
void best_experts(const float* p, int64_t E, int64_t m, int32_t* idx) {
  for (int64_t e = 0; e < E; ++e) idx[e] = static_cast<int32_t>(e);
  std::partial_sort(idx, idx + m, idx + E, [p](int32_t a, int32_t b) {
    const float ka = rank_key(p[a]), kb = rank_key(p[b]);
    return ka > kb || (ka == kb && a < b);
  });
}

// Experts of one token with E·S_e > eps, at least 1. The product of an fp32 value and an integer
// < 2^31 is exact in double, so the decision is exact (and equals a double-precision reference's).
int64_t threshold_count(const float* p, int64_t E, double eps) {
  int64_t c = 0;
  for (int64_t e = 0; e < E; ++e) c += static_cast<double>(E) * static_cast<double>(p[e]) > eps;
  return std::max<int64_t>(c, 1);
}

// Writes the first m experts of token t's ranking as pairs [base, base + m).
void emit_pairs(int64_t t, const float* p, int64_t m, const int32_t* idx, int64_t base, int32_t* pair_token,
                int32_t* pair_expert, float* pair_weight) {
  for (int64_t j = 0; j < m; ++j) {
    pair_token[base + j] = static_cast<int32_t>(t);
    pair_expert[base + j] = idx[j];
    pair_weight[base + j] = p[idx[j]];
  }
}

// Threshold count of every token (the sort-free first pass of both threshold strategies).
std::vector<int64_t> threshold_counts(int64_t T, int64_t E, const float* probs, double eps) {
  std::vector<int64_t> cnt(T);
  parallel_rows(T, E, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) cnt[t] = threshold_count(probs + t * E, E, eps);
  });
  return cnt;
}

// Tokens per partial sum in the loss reductions. Fixed (not per thread), so the order of the
// double additions, and so the result, is the same for any thread count.
constexpr int64_t kReduceChunk = 256;

inline double xlogx(double s) { return s > 0 ? s * std::log(s) : 0.0; }  // limit 0 at s = 0

// colsum[e] = Σ_t probs[t,e]; *neg_ent = Σ_t Σ_e −S log S (when neg_ent is not null).
void column_sums(int64_t T, int64_t E, const float* probs, double* colsum, double* neg_ent) {
  const int64_t chunks = (T + kReduceChunk - 1) / kReduceChunk;
  std::vector<double> part(chunks * (E + 1), 0.0);  // per chunk: E column sums, then the entropy sum
  parallel_rows(chunks, kReduceChunk * E, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      double* acc = part.data() + c * (E + 1);
      for (int64_t t = c * kReduceChunk; t < std::min(T, (c + 1) * kReduceChunk); ++t)
        for (int64_t e = 0; e < E; ++e) {
          const double s = probs[t * E + e];
          acc[e] += s;
          if (neg_ent) acc[E] -= xlogx(s);
        }
    }
  });
  std::fill(colsum, colsum + E, 0.0);
  double ent = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    for (int64_t e = 0; e < E; ++e) colsum[e] += part[c * (E + 1) + e];
    ent += part[c * (E + 1) + E];
  }
  if (neg_ent) *neg_ent = ent;
}

// dprobs[t,e] = [dprobs[t,e] +] grad(t, e)
template <class G>
void write_grad(int64_t T, int64_t E, float* dprobs, bool accumulate, const G& grad) {
  parallel_rows(T, E, [&](int64_t b, int64_t end) {
    for (int64_t t = b; t < end; ++t)
      for (int64_t e = 0; e < E; ++e) {
        const float g = static_cast<float>(grad(t, e));
        dprobs[t * E + e] = accumulate ? dprobs[t * E + e] + g : g;
      }
  });
}

// First pair of token t in a token-major list.
inline int64_t first_pair_of(int64_t t, int64_t P, const int32_t* pair_token) {
  return std::lower_bound(pair_token, pair_token + P, static_cast<int32_t>(t)) - pair_token;
}

// out[t] = beta·out[t] + Σ_{p of t} w_p·rows[position[p]] for t in [0, T), parallel over tokens:
// each token owns its output row, so no atomics and a fixed summation order (pair order).
void sum_pairs_into_tokens(int64_t T, int64_t P, int64_t N, const float* rows, const int32_t* pair_token,
                           const float* weight /* null: 1 */, const int32_t* position, float* out, float beta) {
  parallel_rows(T, N * (P / std::max<int64_t>(T, 1) + 1), [&](int64_t tb, int64_t te) {
    int64_t p = first_pair_of(tb, P, pair_token);
    for (int64_t t = tb; t < te; ++t) {
      float* o = out + t * N;
      if (beta == 0.f) std::fill(o, o + N, 0.f);  // beta = 0 never reads out (it may hold NaN)
      else if (beta != 1.f) for (int64_t n = 0; n < N; ++n) o[n] *= beta;
      for (; p < P && pair_token[p] == t; ++p) {
        const float* r = rows + static_cast<int64_t>(position[p]) * N;
        const float w = weight ? weight[p] : 1.f;
        for (int64_t n = 0; n < N; ++n) o[n] += w * r[n];
      }
    }
  });
}

}  // namespace

void router_softmax(int64_t T, int64_t E, const float* logits, float* probs) {
  parallel_rows(T, 4 * E, [&](int64_t b, int64_t end) {
    for (int64_t t = b; t < end; ++t) {
      const float* x = logits + t * E;
      float* p = probs + t * E;
      float mx = -INFINITY;
      for (int64_t e = 0; e < E; ++e) mx = std::max(mx, x[e]);
      double sum = 0;
      for (int64_t e = 0; e < E; ++e) {
        p[e] = std::exp(x[e] - mx);  // <= 1: no overflow, and the largest term is exactly 1
        sum += p[e];
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t e = 0; e < E; ++e) p[e] *= inv;
    }
  });
}

void router_softmax_backward(int64_t T, int64_t E, const float* probs, const float* dprobs, float* dlogits) {
  parallel_rows(T, 3 * E, [&](int64_t b, int64_t end) {
    for (int64_t t = b; t < end; ++t) {
      const float* p = probs + t * E;
      const float* dp = dprobs + t * E;
      double dot = 0;
      for (int64_t e = 0; e < E; ++e) dot += static_cast<double>(p[e]) * dp[e];
      for (int64_t e = 0; e < E; ++e) dlogits[t * E + e] = static_cast<float>(p[e] * (dp[e] - dot));
    }
  });
}

void route_topk(int64_t T, int64_t E, const float* probs, int64_t k, int32_t* pair_token, int32_t* pair_expert,
                float* pair_weight) {
  parallel_rows(T, 4 * E, [&](int64_t b, int64_t end) {
    std::vector<int32_t> idx(E);
    for (int64_t t = b; t < end; ++t) {
      best_experts(probs + t * E, E, k, idx.data());
      emit_pairs(t, probs + t * E, k, idx.data(), t * k, pair_token, pair_expert, pair_weight);
    }
  });
}

int64_t route_threshold(int64_t T, int64_t E, const float* probs, double eps, int32_t* pair_token,
                        int32_t* pair_expert, float* pair_weight) {
  // Pass 1 counts each token's pairs, a prefix sum places them, pass 2 sorts and writes.
  std::vector<int64_t> start = threshold_counts(T, E, probs, eps);
  int64_t P = 0;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t c = start[t];
    start[t] = P;
    P += c;
  }
  parallel_rows(T, 4 * E, [&](int64_t b, int64_t end) {
    std::vector<int32_t> idx(E);
    for (int64_t t = b; t < end; ++t) {
      const int64_t m = (t + 1 < T ? start[t + 1] : P) - start[t];
      best_experts(probs + t * E, E, m, idx.data());
      emit_pairs(t, probs + t * E, m, idx.data(), start[t], pair_token, pair_expert, pair_weight);
    }
  });
  return P;
}

int64_t route_threshold_topk(int64_t T, int64_t E, const float* probs, double eps, int32_t* pair_token,
                             int32_t* pair_expert, float* pair_weight) {
  int64_t total = 0;  // integer sum: exact, so K does not depend on summation order
  for (int64_t c : threshold_counts(T, E, probs, eps)) total += c;
  // round(total / T), half up: floor((2·total + T) / (2T)), in integers.
  const int64_t K = T == 0 ? 1 : std::clamp<int64_t>((2 * total + T) / (2 * T), 1, E);
  route_topk(T, E, probs, K, pair_token, pair_expert, pair_weight);
  return K;
}

void group_by_expert(int64_t P, int64_t E, const int32_t* pair_expert, int32_t* offsets, int32_t* order,
                     int32_t* position) {
  // Serial: one O(P) pass over int32s is cheaper than the per-thread histograms a parallel stable
  // counting sort would need.
  std::fill(offsets, offsets + E + 1, 0);
  for (int64_t p = 0; p < P; ++p) ++offsets[pair_expert[p] + 1];
  for (int64_t e = 0; e < E; ++e) offsets[e + 1] += offsets[e];
  std::vector<int32_t> next(offsets, offsets + E);  // next free sorted position of each expert
  for (int64_t p = 0; p < P; ++p) {
    const int32_t i = next[pair_expert[p]]++;
    order[i] = static_cast<int32_t>(p);
    position[p] = i;
  }
}

void gather_rows(int64_t P, int64_t D, const float* x, const int32_t* pair_token, const int32_t* order, float* xg) {
  parallel_rows(P, D, [&](int64_t b, int64_t end) {
    for (int64_t i = b; i < end; ++i)
      std::memcpy(xg + i * D, x + static_cast<int64_t>(pair_token[order[i]]) * D, sizeof(float) * D);
  });
}

void gather_rows_backward(int64_t T, int64_t P, int64_t D, const float* dxg, const int32_t* pair_token,
                          const int32_t* position, float* dx, float beta) {
  sum_pairs_into_tokens(T, P, D, dxg, pair_token, nullptr, position, dx, beta);
}

void combine(int64_t T, int64_t P, int64_t N, const float* yg, const int32_t* pair_token, const float* pair_weight,
             const int32_t* position, float* y, float beta) {
  sum_pairs_into_tokens(T, P, N, yg, pair_token, pair_weight, position, y, beta);
}

void combine_backward(int64_t T, int64_t P, int64_t N, const float* dy, const float* yg, const int32_t* pair_token,
                      const float* pair_weight, const int32_t* position, float* dyg, float* dweight) {
  parallel_rows(P, 2 * N, [&](int64_t b, int64_t end) {
    for (int64_t p = b; p < end; ++p) {
      const float* d = dy + static_cast<int64_t>(pair_token[p]) * N;
      const int64_t r = static_cast<int64_t>(position[p]) * N;
      const float w = pair_weight[p];
      double dot = 0;
      for (int64_t n = 0; n < N; ++n) {
        dot += static_cast<double>(d[n]) * yg[r + n];
        dyg[r + n] = w * d[n];
      }
      dweight[p] = static_cast<float>(dot);
    }
  });
}

void expert_scores_backward(int64_t T, int64_t E, int64_t F, const float* s, const float* pe, const float* g,
                            float* ds, float* dg) {
  parallel_rows(T * E, 2 * F, [&](int64_t b, int64_t end) {
    for (int64_t r = b; r < end; ++r) {  // r = t·E + e
      const float* pr = pe + r * F;
      const float* gr = g + r * F;
      double dot = 0;
      for (int64_t f = 0; f < F; ++f) dot += static_cast<double>(pr[f]) * gr[f];
      ds[r] = static_cast<float>(dot);
      // After the dot: dg may alias pe, and each element is read before it is overwritten.
      const float sr = s[r];
      float* dr = dg + r * F;
      for (int64_t f = 0; f < F; ++f) dr[f] = sr * pr[f];
    }
  });
}

MiLossValue mi_loss(int64_t T, int64_t E, const float* probs, double grad_scale, float* dprobs, bool accumulate) {
  MiLossValue v;
  if (T == 0) return v;
  std::vector<double> pe(E);
  double neg_ent = 0;
  column_sums(T, E, probs, pe.data(), &neg_ent);
  for (int64_t e = 0; e < E; ++e) {
    pe[e] /= static_cast<double>(T);
    v.h_e -= xlogx(pe[e]);
  }
  v.h_e_given_x = neg_ent / static_cast<double>(T);
  v.loss = -v.h_e + v.h_e_given_x;
  if (dprobs) {
    // dL/dS = (1/T)[(log p + 1) − (log S + 1)]; logs clamped at FLT_MIN (see routing.h).
    std::vector<double> log_p(E);
    for (int64_t e = 0; e < E; ++e) log_p[e] = std::log(std::max(pe[e], static_cast<double>(FLT_MIN)));
    const double scale = grad_scale / static_cast<double>(T);
    write_grad(T, E, dprobs, accumulate, [&](int64_t t, int64_t e) {
      return scale * (log_p[e] - std::log(std::max(static_cast<double>(probs[t * E + e]),
          static_cast<double>(FLT_MIN))));
    });
  }
  return v;
}

double switch_loss(int64_t T, int64_t E, const float* probs, const int32_t* pair_expert, int64_t P,
                   double grad_scale, float* dprobs, bool accumulate) {
  std::vector<double> f(E, 0.0), pm(E, 0.0);
  for (int64_t p = 0; p < P; ++p) f[pair_expert[p]] += 1;  // counts: exact in double below 2^53
  for (int64_t e = 0; e < E; ++e) f[e] = P > 0 ? f[e] / static_cast<double>(P) : 0.0;
  if (T > 0) column_sums(T, E, probs, pm.data(), nullptr);
  double loss = 0;
  for (int64_t e = 0; e < E; ++e) loss += f[e] * (T > 0 ? pm[e] / static_cast<double>(T) : 0.0);
  loss *= static_cast<double>(E);
  if (dprobs && T > 0) {
    const double scale = grad_scale * static_cast<double>(E) / static_cast<double>(T);
    write_grad(T, E, dprobs, accumulate, [&](int64_t, int64_t e) { return scale * f[e]; });
  }
  return loss;
}

}  // namespace dsmoe::cpu
