// Causal multi-head attention for the MoA layout (DESIGN.md §1.1): E attention experts with H
// query heads each, all attending over G key/value heads shared by every expert.
//
// Shapes (row-major, fp32):
//   q, out, dq, dout  [B, Tq, Hq, dh]   Hq = E·H; expert e owns heads e·H .. e·H+H−1
//   k, v, dk, dv      [B, Tk, G, dh]    shared by all experts
//   lse               [B, Hq, Tq]       log Σ_j exp(scale · q·k_j) per query, saved for backward
// Query head h uses kv head g(h) = (h % H) / (H / G): head j of *every* expert uses the same g(j).
// Tq ≤ Tk: the queries are the LAST Tq of the Tk positions, so query i sits at absolute position
// Tk − Tq + i and attends to keys 0 .. Tk − Tq + i. Tq = Tk is training; Tq = 1 is decode against
// a KV cache of Tk positions; one kernel serves both.
// Requirements (checked by the bindings, not here): H divides Hq, G divides H, 1 ≤ Tq ≤ Tk.
//
// Results are bit-identical for any thread count: every output element is computed by one task
// in a fixed order (dk/dv are owned per (b, g, key block), summing over heads and queries in order).
#pragma once
#include <cstdint>

namespace dsmoe::cpu {

struct AttentionShape {
  int64_t batch = 1;             // B
  int64_t tq = 1;                // Tq, queries (the last Tq positions)
  int64_t tk = 1;                // Tk, keys/values
  int64_t n_heads_total = 1;     // Hq = E·H
  int64_t heads_per_expert = 1;  // H
  int64_t kv_heads = 1;          // G
  int64_t head_dim = 1;          // dh
  float scale = 1.f;             // usually 1/sqrt(dh)
  // Inference: a query head whose q is all zero belongs to an expert the token did not select; its
  // output is never used, so it is skipped (out = 0, lse = 0) instead of attending uniformly.
  bool skip_zero_queries = false;
};

// out = softmax_causal(scale · q kᵀ) v per head; writes out and lse (neither is read).
void attention_forward(const AttentionShape& s,
                       const float* q,  // q   [B, Tq, Hq, dh]
                       const float* k,  // k   [B, Tk, G, dh]
                       const float* v,  // v   [B, Tk, G, dh]
                       float* out,      // out [B, Tq, Hq, dh]
                       float* lse);     // lse [B, Hq, Tq]

// Gradients of attention_forward given dout. dq, dk, dv are overwritten (never read); dk and dv
// sum over every query head of every expert that shares the kv head.
void attention_backward(const AttentionShape& s,
                        const float* q,     // q    [B, Tq, Hq, dh]
                        const float* k,     // k    [B, Tk, G, dh]
                        const float* v,     // v    [B, Tk, G, dh]
                        const float* out,   // out  [B, Tq, Hq, dh]  from attention_forward
                        const float* lse,   // lse  [B, Hq, Tq]      from attention_forward
                        const float* dout,  // dout [B, Tq, Hq, dh]
                        float* dq,          // dq   [B, Tq, Hq, dh]
                        float* dk,          // dk   [B, Tk, G, dh]
                        float* dv);         // dv   [B, Tk, G, dh]

}  // namespace dsmoe::cpu
