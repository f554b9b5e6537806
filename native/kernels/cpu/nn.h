// Element-wise and per-row layers of the CPU backend: RMSNorm, RoPE, GELU, fused softmax
// cross-entropy, AdamW and the pieces of gradient-norm clipping (DESIGN §1.1, §1.2).
//
// All fp32, row-major, caller-allocated outputs; no argument checks (the bindings do them).
// Every result is bit-identical for any thread count: per-row/per-element work does not depend on
// the split, and every reduction across rows or chunks (RMSNorm dw, the mean loss, sum of squares)
// adds its parts in a fixed order that depends only on the sizes.
#pragma once
#include <cstdint>

namespace dsmoe::cpu {

// ---- RMSNorm (weight only) --------------------------------------------------------------------
// y = x · rstd · w,  rstd = 1 / sqrt(mean_j(x_j²) + eps), per row. y may alias x; rstd may be null
// (inference) and is otherwise kept for the backward.
void rmsnorm_forward(int64_t rows, int64_t dim,
                     const float* x,  // [rows, dim]
                     const float* w,  // [dim]
                     float eps,
                     float* y,        // [rows, dim]
                     float* rstd);    // [rows] or nullptr

// dx = rstd·w⊙dy − x · rstd³/dim · Σ_j dy_j w_j x_j;  dw (+)= Σ_rows dy ⊙ x · rstd.
// dx may alias dy or x (dw is computed first). accumulate_dw adds to dw instead of overwriting.
void rmsnorm_backward(int64_t rows, int64_t dim,
                      const float* x,     // [rows, dim]
                      const float* w,     // [dim]
                      const float* rstd,  // [rows] from rmsnorm_forward
                      const float* dy,    // [rows, dim]
                      float* dx,          // [rows, dim]
                      float* dw,          // [dim]
                      bool accumulate_dw);

// ---- RoPE, rotate-half convention ---------------------------------------------------------------
// For each row r, head h and i < half = head_dim/2, with a = positions[r] · theta^(−2i/head_dim):
//   out[i] = x[i]·cos a − x[i+half]·sin a,   out[i+half] = x[i+half]·cos a + x[i]·sin a.
// Angles are computed in double (exact enough at positions ~1e5 and beyond). out may equal x
// (in place). head_dim must be even, positions ≥ 0.
void rope_forward(int64_t rows, int64_t heads, int64_t head_dim, double theta,
                  const int32_t* positions,  // [rows]
                  const float* x,            // [rows, heads, head_dim]
                  float* out);               // [rows, heads, head_dim]

// The transpose of the rotation (rotation by −a): dx from dy. dx may equal dy.
void rope_backward(int64_t rows, int64_t heads, int64_t head_dim, double theta,
                   const int32_t* positions,  // [rows]
                   const float* dy,           // [rows, heads, head_dim]
                   float* dx);                // [rows, heads, head_dim]

// ---- GELU ---------------------------------------------------------------------------------------
enum class GeluKind : int {
  Erf = 0,   // 0.5·x·(1 + erf(x/√2))  (DESIGN `gelu`)
  Tanh = 1,  // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))  (DESIGN `gelu_tanh`)
};

void gelu_forward(int64_t n,
                  const float* x,  // [n]
                  float* y,        // [n], may alias x
                  GeluKind kind);

// dx = dy · gelu'(x). dx may alias dy.
void gelu_backward(int64_t n,
                   const float* x,   // [n]
                   const float* dy,  // [n]
                   float* dx,        // [n]
                   GeluKind kind);

// ---- Fused softmax cross-entropy ----------------------------------------------------------------
// Per row with targets[r] ≥ 0: loss_r = logsumexp(logits[r]) − logits[r, targets[r]] (max-subtracted,
// summed in double). Rows with targets[r] < 0 are ignored: loss 0, zero gradient. With n_valid the
// number of non-ignored rows:
//   dlogits = grad_scale · (softmax(logits) − onehot(target)) / n_valid
// Returns the mean loss over the valid rows (0 when there are none). dlogits may alias logits, or be
// null (loss only); losses may be null. Requires targets[r] < vocab (checked by the binding).
double cross_entropy(int64_t rows, int64_t vocab,
                     const float* logits,     // [rows, vocab]
                     const int32_t* targets,  // [rows]
                     float* dlogits,          // [rows, vocab] or nullptr
                     float* losses,           // [rows] or nullptr
                     float grad_scale);

// ---- Optimiser ----------------------------------------------------------------------------------
// AdamW with decoupled weight decay and bias correction, step ≥ 1 (the 1-based step count):
//   m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;  m̂ = m/(1−β1^step);  v̂ = v/(1−β2^step)
//   p −= lr · (m̂/(√v̂ + eps) + wd·p)
void adamw_update(int64_t n,
                  float* param,       // [n]
                  const float* grad,  // [n]
                  float* m,           // [n] first moment
                  float* v,           // [n] second moment
                  float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step);

// Σ x², accumulated in double over fixed chunks added in chunk order (reproducible).
double sum_squares(int64_t n, const float* x);  // x [n]

// x *= s
void scale_inplace(int64_t n, float* x, float s);  // x [n]

}  // namespace dsmoe::cpu
