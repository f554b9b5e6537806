// Causal MoA attention (attention.h): run-time dispatch between the baseline and AVX-512 builds of
// attention_impl.inc.
//
// Forward: one task per (b, h, block of queries); each query computes its scores against its
// visible keys into O(Tk) thread-local scratch, then a two-pass (max, then exp-sum) softmax.
// Backward: two passes that recompute P = exp(scale·q·k − lse) from the saved lse instead of
// storing it: dq per (b, h, query block), dk/dv per (b, g, key block). Each output element has
// exactly one owning task, so there are no races and no atomics, and the summation order is
// fixed (bit-identical results for any thread count, within one instruction set).
#include "attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "../../core/aligned_buffer.h"
#include "../../core/cpu_features.h"
#include "../../core/threadpool.h"
#include "vecmath.h"

#define ATTN_NS attn_generic
#include "attention_impl.inc"
#undef ATTN_NS

namespace dsmoe::cpu {

namespace attn_avx512 {  // attention_avx512.cc
void forward(const AttentionShape& s, const float* q, const float* k, const float* v, float* out, float* lse);
void backward(const AttentionShape& s, const float* q, const float* k, const float* v, const float* out,
              const float* lse, const float* dout, float* dq, float* dk, float* dv);
}  // namespace attn_avx512

void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                       float* lse) {
  if (active_isa() == Isa::Avx512) attn_avx512::forward(s, q, k, v, out, lse);
  else attn_generic::forward(s, q, k, v, out, lse);
}

void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v, const float* out,
                        const float* lse, const float* dout, float* dq, float* dk, float* dv) {
  if (active_isa() == Isa::Avx512) attn_avx512::backward(s, q, k, v, out, lse, dout, dq, dk, dv);
  else attn_generic::backward(s, q, k, v, out, lse, dout, dq, dk, dv);
}

}  // namespace dsmoe::cpu
