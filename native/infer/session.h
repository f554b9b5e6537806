// The inference engine (DESIGN.md §1.1, §1.3): prefill and token-by-token decode of B sequences
// with a KV cache, routing chosen at run time per layer kind, computing only the active experts.
//
// Per block, for the tokens of a call (N rows):
//   x = rmsnorm(h);  S = softmax(x·Rᵀ);  active pairs (t, e) from the routing strategy
//   MoA:  Q_e only for active pairs (grouped by expert); K, V once with the G shared kv heads,
//         RoPE, appended to the cache; causal attention; O_e only for active pairs;
//         h += Σ_{e active} S_e · O_e
//   MLP:  h += Σ_{e active} S_e · down_e(gelu(up_e(x)))
// Prefill runs the grouped expert GEMM over the rows of each expert; decode runs GEMV kernels that
// read only the selected experts' weights. Active experts are weighted by the raw S_e.
//
// A session runs on the backend that holds its weights (Weights::backend()) and composes that
// backend's ops only; its KV cache and workspace live in the backend's memory. Any number of
// sessions may share one Weights (a server's requests), each with its own cache and routing.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "../backend/backend.h"
#include "routing_spec.h"
#include "weights.h"

namespace dsmoe::infer {

// Counters since the last reset.
struct InferStats {
  int64_t tokens = 0;                   // tokens processed (prefill + decode)
  std::vector<int64_t> att_usage, mlp_usage;  // [layers, E]: tokens that activated expert e in layer l
  // Router statistics for the MI loss (DESIGN.md §1.2), over the tokens routed since the reset:
  // Σ_x S_e(x) per [layer, expert] (→ p(e)) and Σ_x −Σ_e S_e(x)·log S_e(x) per layer (→ H(e|X)).
  // Empty for a layer kind with one expert (no router).
  std::vector<double> att_prob_sum, mlp_prob_sum, att_entropy_sum, mlp_entropy_sum;
};

// Derived from InferStats and the model shape (DESIGN.md §1.3 "active parameters").
struct ActiveSummary {
  double att_experts_per_token = 0, mlp_experts_per_token = 0;  // mean active experts per token per layer
  double active_params_per_token = 0;   // routers + k/v + active q/o + active up/down (norms excluded)
  double active_expert_share = 0;       // mean active expert params / all expert params
  double active_weight_bytes_per_token = 0;  // the same, in bytes of the stored dtypes, + the LM head
  int64_t expert_params = 0;            // all q/o/up/down params
  int64_t shared_params = 0;            // routers + k/v: touched by every token
  int64_t embedding_params = 0, lm_head_params = 0;  // lm_head 0 when tied
};

class Session {
 public:
  // max_len ≤ config.max_seq_len: cache positions per sequence.
  Session(std::shared_ptr<const Weights> w, int64_t batch, int64_t max_len, RoutingSpec att, RoutingSpec mlp);

  int64_t batch() const { return B_; }
  int64_t max_len() const { return max_len_; }
  const std::vector<int64_t>& lengths() const { return len_; }  // cached positions per sequence
  bool started() const { return started_; }
  const Weights& weights() const { return *w_; }
  // The routing of every sequence (and the session's default).
  void set_routing(RoutingSpec att, RoutingSpec mlp);
  // Sequence b's own routing: sequences with different routings run in the same call (a server's
  // requests), each routed as it would be alone.
  void set_sequence_routing(int64_t b, RoutingSpec att, RoutingSpec mlp);
  const RoutingSpec& att_routing() const { return att_route_; }
  const RoutingSpec& mlp_routing() const { return mlp_route_; }
  const RoutingSpec& att_routing(int64_t b) const { return seq_att_[static_cast<size_t>(b)]; }
  const RoutingSpec& mlp_routing(int64_t b) const { return seq_mlp_[static_cast<size_t>(b)]; }

  // Appends the prompts to the sequences (a fresh session or after reset(): the whole prompt).
  // Row b of tokens holds lengths[b] valid tokens (0 ≤ lengths[b] ≤ tp; the rest is padding; 0: the
  // sequence takes no tokens now, its output rows are left as they were; at least one > 0) and
  // needs lengths()[b] + lengths[b] ≤ max_len (the bindings check it). A sequence can thus join a
  // running batch: reset_sequence(b), then a prefill with only lengths[b] > 0.
  //   tokens [B, tp], lengths [B], logits [B, V] at each sequence's last prompt token (or null),
  //   all_logits [B, tp, V] or null (padding positions are zero),
  //   targets [B, tp] or null: with losses [B, tp], losses[b, i] = −log softmax(logits[b, i])[target]
  //   for valid positions with a target ≥ 0, else 0 — scored here, no logits leave the session.
  // All pointers are host memory.
  void prefill(const int32_t* tokens, int64_t tp, const int32_t* lengths, float* logits, float* all_logits,
               const int32_t* targets = nullptr, float* losses = nullptr);
  // One token per sequence at position lengths()[b]; needs a prefill first and room in the cache.
  //   tokens [B], logits [B, V], active [B] or null (all): only sequences with active[b] ≠ 0 take a
  //   token; the others (finished, or waiting to join) keep their cache and their logits rows.
  void decode(const int32_t* tokens, float* logits, const uint8_t* active = nullptr);
  void reset();        // empty caches and zero counters
  void reset_sequence(int64_t b);  // empty sequence b's cache and zero its counters (a new prompt)
  void reset_stats();  // zero counters, keep the caches (e.g. to measure decode after a prefill)

  const InferStats& stats() const { return stats_; }
  // Sequence b's counters since its reset_sequence (or the session's reset / reset_stats): tokens and
  // expert usage; no router sums.
  const InferStats& stats(int64_t b) const { return seq_stats_[static_cast<size_t>(b)]; }
  ActiveSummary summary() const { return summarize(stats_); }
  ActiveSummary summary(int64_t b) const { return summarize(stats(b)); }

 private:
  struct Segment { int64_t b, row0, count, pos0; };  // rows of one sequence in this call
  void run(bool decode);                              // the blocks over rows_ / segs_
  int64_t route(int64_t l, bool att, const float* x, bool decode);  // returns P, fills pairs and offsets
  // Pairs of rows [r0, r0 + n) under one strategy, written at pt/pe/pw; returns their count.
  int64_t route_rows(const RoutingSpec& spec, int64_t E, const float* probs, int64_t r0, int64_t n, int32_t* pt,
                     int32_t* pe, float* pw);
  void count_sequence_usage(int64_t l, bool att, int64_t P);
  ActiveSummary summarize(const InferStats& st) const;
  InferStats empty_stats(bool router_sums) const;
  void matmul(int64_t E, const int32_t* offsets, const float* x, WeightRef w, int64_t n, int64_t k, float* y,
              bool decode);
  // Final norm and LM head of the given rows of h into the device array logits_ [rows.size(), V].
  void logits_rows(const std::vector<int64_t>& rows, bool decode);

  std::shared_ptr<const Weights> w_;
  backend::Backend& be_;
  model::Config c_;
  int64_t B_, max_len_;
  RoutingSpec att_route_, mlp_route_;              // the session's default
  std::vector<RoutingSpec> seq_att_, seq_mlp_;     // [B]: each sequence's
  std::vector<int64_t> len_;
  bool started_ = false;
  InferStats stats_;
  std::vector<InferStats> seq_stats_;              // [B]
  std::vector<int32_t> pair_token_host_, pair_expert_host_, row_seq_;  // per-sequence usage counting
  template <typename T>
  using Array = backend::Array<T>;
  Array<float> kcache_, vcache_;  // [L, B, max_len, G, dh] each (post-RoPE K, and V)

  // Rows of the current call (host) and their device copies.
  std::vector<int32_t> tok_, pos_;
  Array<int32_t> tok_dev_, pos_dev_;
  std::vector<Segment> segs_;
  int64_t N_ = 0;
  // Workspace, grown on demand.
  Array<float> h_, x_, probs_, rhid_, q_, k_, v_, att_, lse_, xg_, yg_, hf_, logits_, losses_;  // rhid_: routers
  Array<int32_t> pair_token_, pair_expert_, order_, position_, offsets_, one_offsets_, targets_;
  Array<float> pair_weight_;
  std::vector<int32_t> offsets_host_;
  std::vector<backend::Backend::AttentionJob> att_jobs_;
};

}  // namespace dsmoe::infer
