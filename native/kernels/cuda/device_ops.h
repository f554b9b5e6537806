// Device-pointer entry points of the CUDA kernels (kernels/cuda/*.cu): what the CUDA backend
// (backend/cuda_backend.cu) calls. No CUDA headers here.
//
// Contract of every function below:
// - every pointer is DEVICE memory of the current device (cudaSetDevice is the caller's job);
// - the work is enqueued on the legacy default stream (stream 0) and is asynchronous: nothing is
//   copied to or from the host and nothing waits, EXCEPT the functions that return a value
//   (cross_entropy, sum_squares, router_statistics, mi_loss, switch_loss, route_threshold,
//   route_threshold_topk, mask_scores): they wait for their own result;
// - temporary arrays come from the stream-ordered pool (cudaMallocAsync), never cudaMalloc/cudaFree;
// - the semantics, the aliasing allowed and "beta = 0 never reads the output" are those of the CPU
//   kernel of the same name (kernels/cpu/*.h); arguments are not checked (the backend's callers do);
// - a CUDA error is a std::runtime_error (DSMOE_CUDA_CHECK / DSMOE_CUDA_CHECK_LAUNCH), never an abort.
#pragma once
#include <cstdint>

#include "../cpu/routing.h"  // MiLossValue

namespace dsmoe::cuda {

// The MoA attention shape of dev::attention_forward (the fields of cpu::AttentionShape).
struct AttentionShape {
  int64_t batch = 1, tq = 1, tk = 1, n_heads_total = 1, heads_per_expert = 1, kv_heads = 1, head_dim = 1;
  float scale = 1.f;
};
constexpr int64_t kMaxAttentionHeadDim = 256;

namespace dev {

// ---- GEMM (gemm.cu): bf16 tensor cores, fp32 accumulation ------------------------------------------
// C = alpha·op(A)·op(B) + beta·C as cpu::gemm; A fp32, B fp32 or bf16; fp32 inputs are ROUNDED TO
// BF16 while staged (about 3 significant digits: see native/cuda/README.md). Optional row_scale:
// C[r] = alpha·row_scale[r·row_scale_stride]·(op(A)·op(B))[r] + beta·C[r] (the per-token router
// weight of the dense-training expert form).
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const void* b, bool b_bf16, int64_t ldb, float beta, float* c, int64_t ldc,
          const float* row_scale = nullptr, int64_t row_scale_stride = 1);

// As cpu::grouped_gemm with DEVICE offsets [E+1], in one launch and with no host round trip: the
// expert of each M-tile is found on the device. rows_hint = offsets[E] when the caller knows it (a
// tighter grid), else -1 (a persistent grid of about two blocks per SM loops over the tiles).
void grouped_gemm(int64_t experts, const int32_t* offsets, int64_t rows_hint, const float* x, const void* w,
                  bool w_bf16, bool trans_w, int64_t n, int64_t k, float beta, float* y);

// As cpu::grouped_gemm_weight_grad: dW[e] = dY[rows of e]ᵀ·X[rows of e] + beta·dW[e], dW [E, N, K],
// DEVICE offsets; one launch (grid z = expert, the reduction length read on the device). Experts
// with no rows get beta·dW[e] (zeros at beta = 0).
void grouped_gemm_weight_grad(int64_t experts, const int32_t* offsets, const float* dy, const float* x, int64_t n,
                              int64_t k, float beta, float* dw);

// ---- routing (nn.cu, routing_extra.cu) ---------------------------------------------------------------
void router_softmax(int64_t T, int64_t E, const float* logits, float* probs);
void router_softmax_backward(int64_t T, int64_t E, const float* probs, const float* dprobs, float* dlogits);
void route_topk(int64_t T, int64_t E, const float* probs, int64_t k, int32_t* pair_token, int32_t* pair_expert,
                float* pair_weight);
// As cpu::route_threshold / cpu::route_threshold_topk (routing_extra.cu): a device compaction (counts
// per token, a one-block scan, pairs written by rank); return P / K, so they wait for the count
// (8 bytes read back). Output buffers hold T·E pairs, as on the CPU.
int64_t route_threshold(int64_t T, int64_t E, const float* probs, double eps, int32_t* pair_token,
                        int32_t* pair_expert, float* pair_weight);
int64_t route_threshold_topk(int64_t T, int64_t E, const float* probs, double eps, int32_t* pair_token,
                             int32_t* pair_expert, float* pair_weight);
// As CpuBackend::mask_scores: ds = 0 where !mask, pair_expert = the mask's experts token-major;
// returns their count (waits for it).
int64_t mask_scores(int64_t T, int64_t E, const uint8_t* mask, float* ds, int32_t* pair_expert);
void group_by_expert(int64_t P, int64_t E, const int32_t* pair_expert, int32_t* offsets, int32_t* order,
                     int32_t* position);
void gather_rows(int64_t P, int64_t D, const float* x, const int32_t* pair_token, const int32_t* order, float* xg);
void gather_rows_backward(int64_t T, int64_t P, int64_t D, const float* dxg, const int32_t* pair_token,
                          const int32_t* position, float* dx, float beta);
void combine(int64_t T, int64_t P, int64_t N, const float* yg, const int32_t* pair_token, const float* pair_weight,
             const int32_t* position, float* y, float beta);
void combine_backward(int64_t T, int64_t P, int64_t N, const float* dy, const float* yg, const int32_t* pair_token,
                      const float* pair_weight, const int32_t* position, float* dyg, float* dweight);
// weights = probs on the P pairs, 0 elsewhere; mask = 1 on the pairs (CpuBackend::pair_weights).
void pair_weights(int64_t T, int64_t E, int64_t P, const int32_t* pair_token, const int32_t* pair_expert,
                  const float* probs, float* weights, uint8_t* mask);
// MoA pair slices (CpuBackend::scatter_pair_heads / gather_pair_heads).
void scatter_pair_heads(int64_t P, int64_t HD, int64_t QD, const int32_t* order, const int32_t* pair_token,
                        const int32_t* pair_expert, const float* src, float* dst);
void gather_pair_heads(int64_t P, int64_t HD, int64_t QD, const int32_t* order, const int32_t* pair_token,
                       const int32_t* pair_expert, const float* src, float* dst);
void expert_scores_backward(int64_t T, int64_t E, int64_t F, const float* s, const float* pe, const float* g,
                            float* ds, float* dg);

// ---- nn (nn.cu, elementwise.cu) -------------------------------------------------------------------
void rmsnorm_forward(int64_t rows, int64_t dim, const float* x, const float* w, float eps, float* y, float* rstd);
void rmsnorm_backward(int64_t rows, int64_t dim, const float* x, const float* w, const float* rstd,
                      const float* dy, float* dx, float* dw, bool accumulate_dw);
void rope_forward(int64_t rows, int64_t heads, int64_t head_dim, double theta, const int32_t* positions,
                  const float* x, float* out);
void rope_backward(int64_t rows, int64_t heads, int64_t head_dim, double theta, const int32_t* positions,
                   const float* dy, float* dx);
void gelu_forward(int64_t n, const float* x, float* y, bool tanh_approx);
void gelu_backward(int64_t n, const float* x, const float* dy, float* dx, bool tanh_approx);
// Returns the mean loss (waits for it). The count of valid rows and 1/n_valid stay on the device.
double cross_entropy(int64_t rows, int64_t vocab, const float* logits, const int32_t* targets, float* dlogits,
                     float* losses, float grad_scale);
void adamw_update(int64_t n, float* param, const float* grad, float* m, float* v, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int64_t step);
// Σ x² in double: fixed 4096-element block partials, then one block adds them in a fixed tree (the
// result depends only on n, not on scheduling). Waits for the result.
double sum_squares(int64_t n, const float* x);
void scale_inplace(int64_t n, float* x, float s);
void add_inplace(int64_t n, float* y, const float* x);
void fill(int64_t n, float* x, float value);
// x[i] += delta (pair token indices of a routed row range, made relative to the whole call).
void offset_indices(int64_t n, int32_t* x, int32_t delta);
// out[r, c] = scale[r·scale_stride]·x[r·ldx + c], out [rows, cols] contiguous.
void scale_rows(int64_t rows, int64_t cols, const float* x, int64_t ldx, const float* scale, int64_t scale_stride,
                float* out);
// out[t] = table[tokens[t]] (bf16 widened).
void embedding_forward(int64_t N, int64_t D, const int32_t* tokens, const void* table, bool table_bf16, float* out);
// dtable[tokens[t]] += dy[t] with float atomicAdd: a token id that repeats in the batch adds its rows
// in an unspecified order, so the result can differ from the CPU's token order in the last bits and
// between runs (documented nondeterminism).
void embedding_backward(int64_t N, int64_t D, const int32_t* tokens, const float* dy, float* dtable);
// prob_sum[e] += Σ_t S[t,e], *entropy_sum += Σ_t −Σ_e S log S: HOST outputs (E + 1 doubles read back).
void router_statistics(int64_t T, int64_t E, const float* probs, double* prob_sum, double* entropy_sum);

// As cpu::mi_loss / cpu::switch_loss; the gradient is written on the device, the value waits (E + 1
// or 2E numbers read back). Column sums in double per expert over tokens in order.
cpu::MiLossValue mi_loss(int64_t T, int64_t E, const float* probs, double grad_scale, float* dprobs, bool accumulate);
double switch_loss(int64_t T, int64_t E, const float* probs, const int32_t* pair_expert, int64_t P,
                   double grad_scale, float* dprobs, bool accumulate);

// ---- attention (attention.cu) ------------------------------------------------------------------------
// Fused forward (online softmax, key/value tiles in shared memory), the MoA layout of
// cpu::attention_forward; head_dim <= kMaxAttentionHeadDim.
void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                       float* lse);
// As cpu::attention_backward: dq, dk, dv overwritten; dk/dv sum over every query head of every expert
// that shares the kv head. Two passes (dq, then dk/dv), P recomputed from lse, no atomics.
void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v, const float* out,
                        const float* lse, const float* dout, float* dq, float* dk, float* dv);

}  // namespace dev
}  // namespace dsmoe::cuda
