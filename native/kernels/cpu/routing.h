// Routing kernels for the CPU backend (DESIGN.md §1.1–1.3): the router softmax, expert selection
// (top-k, threshold, threshold-top-k; "dense" is top-k with k = E), grouping of (token, expert)
// pairs by expert for the grouped expert GEMM, gather / combine of token rows with their backward
// passes, the dense-training score gradient, and the auxiliary losses (mutual information, switch).
//
// Sizes: T tokens, E experts, D / N / F feature widths, P (token, expert) pairs. fp32 data, int32
// indices, row-major. Kernels do not check their arguments (the bindings do).
//
// Pair lists are token-major: the pairs of token t are contiguous, pair_token is non-decreasing, and
// within a token experts come in descending score order, ties to the lower expert index. NaN scores
// rank below every number (so sorting stays a strict weak order) and never pass a threshold.
//
// Every output element is computed by one task in a fixed order, so results are bit-identical for
// any thread count.
#pragma once
#include <cstdint>

namespace dsmoe::cpu {

// probs[t] = softmax(logits[t]), max-subtracted (exact for any finite logits).
//   logits [T, E], probs [T, E] (may alias logits)
void router_softmax(int64_t T, int64_t E, const float* logits, float* probs);

// dlogits[t] = p ⊙ (dp − Σ_e p·dp)   (the dot in double)
//   probs [T, E], dprobs [T, E], dlogits [T, E] (may alias dprobs)
void router_softmax_backward(int64_t T, int64_t E, const float* probs, const float* dprobs, float* dlogits);

// topk:k — the k best experts of every token, P = T·k pairs, weight = the raw probability.
//   probs [T, E], 1 <= k <= E; pair_token [T·k], pair_expert [T·k], pair_weight [T·k]
void route_topk(int64_t T, int64_t E, const float* probs, int64_t k, int32_t* pair_token,
                int32_t* pair_expert, float* pair_weight);

// threshold:eps — every expert with E·S_e > eps (compared in double, exactly), at least the best
// one per token. Returns P. Output buffers must hold T·E pairs (the worst case).
//   probs [T, E]; pair_token, pair_expert, pair_weight [T·E] (first P written)
int64_t route_threshold(int64_t T, int64_t E, const float* probs, double eps, int32_t* pair_token,
                        int32_t* pair_expert, float* pair_weight);

// threshold-topk:eps — K = round(mean over tokens of the threshold count), half up, clamped to
// [1, E] (K = 1 when T = 0), then topk:K for every token. Returns K (P = T·K).
//   probs [T, E]; pair_token, pair_expert, pair_weight [T·E] (first T·K written)
int64_t route_threshold_topk(int64_t T, int64_t E, const float* probs, double eps, int32_t* pair_token,
                             int32_t* pair_expert, float* pair_weight);

// Stable counting sort of the pairs by expert: the pairs of expert e occupy sorted positions
// [offsets[e], offsets[e+1]) in their original order; order[i] = the pair at sorted position i,
// position[p] = the sorted position of pair p (order's inverse).
//   pair_expert [P] (values in [0, E)); offsets [E+1], order [P], position [P]
void group_by_expert(int64_t P, int64_t E, const int32_t* pair_expert, int32_t* offsets, int32_t* order,
                     int32_t* position);

// xg[i] = x[pair_token[order[i]]]: the expert-grouped input rows.
//   x [T, D], pair_token [P], order [P], xg [P, D]
void gather_rows(int64_t P, int64_t D, const float* x, const int32_t* pair_token, const int32_t* order,
                 float* xg);

// dx[t] = beta·dx[t] + Σ_{pairs p of t, in pair order} dxg[position[p]]   (beta = 0: dx not read)
//   dxg [P, D], pair_token [P] (token-major), position [P], dx [T, D]
void gather_rows_backward(int64_t T, int64_t P, int64_t D, const float* dxg, const int32_t* pair_token,
                          const int32_t* position, float* dx, float beta);

// y[t] = beta·y[t] + Σ_{pairs p of t, in pair order} w_p·yg[position[p]]   (beta = 0: y not read)
//   yg [P, N], pair_token [P] (token-major), pair_weight [P], position [P], y [T, N]
void combine(int64_t T, int64_t P, int64_t N, const float* yg, const int32_t* pair_token,
             const float* pair_weight, const int32_t* position, float* y, float beta);

// Backward of combine: dyg[position[p]] = w_p·dy[t], dweight[p] = dy[t]·yg[position[p]] (in double),
// t = pair_token[p]. position must be a permutation (each dyg row written once).
//   dy [T, N], yg [P, N], pair_token [P], pair_weight [P], position [P], dyg [P, N], dweight [P]
void combine_backward(int64_t T, int64_t P, int64_t N, const float* dy, const float* yg,
                      const int32_t* pair_token, const float* pair_weight, const int32_t* position,
                      float* dyg, float* dweight);

// Dense-training combine backward, with pe = dY·W[e] per token and expert and g the expert inputs:
//   ds[t,e] = Σ_f pe[t,e,f]·g[t,e,f] (in double),  dg[t,e,f] = s[t,e]·pe[t,e,f]
//   s [T, E], pe [T, E, F], g [T, E, F], ds [T, E], dg [T, E, F] (may alias pe)
void expert_scores_backward(int64_t T, int64_t E, int64_t F, const float* s, const float* pe, const float* g,
                            float* ds, float* dg);

// Mutual-information loss (DESIGN.md §1.2) over the T tokens of one layer, in double:
//   p(e) = mean_t S[t,e];  H(e) = −Σ_e p log p;  H(e|X) = mean_t −Σ_e S log S;  L = −H(e) + H(e|X)
// S·log S is taken as 0 at S = 0 (its limit). Gradient dL/dS[t,e] = (log p(e) − log S[t,e]) / T,
// with each log evaluated at max(·, FLT_MIN) so it stays finite where S (or p) is 0: the true
// derivative is +∞ there, and through the softmax backward it is multiplied by S = 0 anyway.
// dprobs (optional, may be null) = [dprobs +] grad_scale·dL/dS.
//   probs [T, E], dprobs [T, E]
struct MiLossValue {
  double loss = 0, h_e = 0, h_e_given_x = 0;
};
MiLossValue mi_loss(int64_t T, int64_t E, const float* probs, double grad_scale, float* dprobs, bool accumulate);

// Switch load-balancing loss: L = E·Σ_e f_e·P_e, f_e = (pairs routed to e) / P, P_e = mean_t S[t,e].
// f is a count, so the gradient flows only through P_e: dL/dS[t,e] = E·f_e / T. L = 0 when P = 0.
// dprobs (optional, may be null) = [dprobs +] grad_scale·dL/dS.
//   probs [T, E], pair_expert [P] (values in [0, E)), dprobs [T, E]
double switch_loss(int64_t T, int64_t E, const float* probs, const int32_t* pair_expert, int64_t P,
                   double grad_scale, float* dprobs, bool accumulate);

}  // namespace dsmoe::cpu
