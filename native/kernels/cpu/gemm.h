// GEMM for the CPU backend: C = alpha * sum_s op(A_s) · op(B_s) + beta * C.
//
// Shapes (row-major, leading dimensions in elements):
//   op(A) is [M, K]: A stored [M, K] (trans = false) or [K, M] (trans = true)
//   op(B) is [K, N]: B stored [K, N] (trans = false) or [N, K] (trans = true, the [out, in]
//                    weight layout, so a Linear layer's y = x·Wᵀ is gemm(A=x, B=W, trans_b=true))
//   C     is [M, N]
// A problem may have several K-segments (s) summed into the same C: that expresses
// "y = sum_e S[:,e] ⊙ (x_e · W[e]ᵀ)" (the dense-training expert combine) as one GEMM.
// A's stored rows may be scaled while packing (row_scale[r * row_scale_stride]): the router weight of
// each token (trans = false) or of each reduction index (trans = true), for free.
// B may be bf16 (converted while packing), for inference weights.
// beta == 0 never reads C (it may hold garbage). gemm_batch runs many independent problems (the
// experts of a grouped GEMM) in one parallel region; problems must not write overlapping C.
#pragma once
#include <cstdint>

namespace dsmoe::cpu {

// Weight storage types. I8 and Q4 are quantized with scales stored apart (quant.h has the formats);
// only the decode GEMV (gemv.h) and dequantize_rows (quant.h) read them.
enum class DType : int { F32 = 0, BF16 = 1, I8 = 2, Q4 = 3 };

struct GemmA {
  const float* data = nullptr;
  int64_t ld = 0;
  bool trans = false;
  const float* row_scale = nullptr;  // optional, one per stored row of A
  int64_t row_scale_stride = 1;
};

struct GemmB {
  const void* data = nullptr;  // float* or uint16_t* (bf16)
  int64_t ld = 0;
  bool trans = false;
  DType dtype = DType::F32;
};

struct GemmSegment {
  GemmA a;
  GemmB b;
  int64_t k = 0;
};

struct GemmProblem {
  int64_t m = 0, n = 0;
  const GemmSegment* segments = nullptr;
  int64_t n_segments = 0;
  float alpha = 1.f, beta = 0.f;
  float* c = nullptr;
  int64_t ldc = 0;
};

void gemm_batch(const GemmProblem* problems, int64_t count);

// The common single-segment case.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// Grouped expert GEMM: rows of X are grouped by expert, group e = rows [offsets[e], offsets[e+1]).
//   trans_w = true : Y[rows of e] = X[rows of e] · W[e]ᵀ   (X [R, K], W [E, N, K], Y [R, N])
//   trans_w = false: Y[rows of e] = X[rows of e] · W[e]    (X [R, K], W [E, K, N], Y [R, N])
// Empty groups are skipped; beta as in gemm.
void grouped_gemm(int64_t n_experts, const int32_t* offsets, const float* x, const void* w,
                  DType w_dtype, bool trans_w, int64_t n, int64_t k, float beta, float* y);

// Grouped weight gradient: dW[e] (+)= dY[rows of e]ᵀ · X[rows of e]   (dW [E, N, K]).
// beta = 0 overwrites (experts with no rows get zeros), beta = 1 accumulates.
void grouped_gemm_weight_grad(int64_t n_experts, const int32_t* offsets, const float* dy,
                              const float* x, int64_t n, int64_t k, float beta, float* dw);

// Dense-training form: every expert sees every token, outputs weighted per token by the router.
//   Y[t] = beta·Y[t] + sum_e S[t, e] · X_e[t] · W[e]ᵀ     X_e = x + e·x_expert_stride (row stride ldx)
//   (x_expert_stride = 0: all experts share one input X [T, K])
//   W [E, N, K], S [T, E], Y [T, N]
void expert_weighted_gemm(int64_t t, int64_t n_experts, int64_t n, int64_t k, const float* x,
                          int64_t ldx, int64_t x_expert_stride, const float* w, const float* s,
                          float beta, float* y);

}  // namespace dsmoe::cpu
