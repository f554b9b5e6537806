// The CUDA backend as seen from plain C++ (the bindings): no CUDA headers here, so this compiles
// in every build. The functions are defined in native/cuda/*.cu and native/kernels/cuda/*.cu and
// exist only when the addon is built with DSMOE_WITH_CUDA (CMake, nvcc found); the bindings call
// them only then.
//
// Every kernel entry point takes HOST pointers: it checks that a usable device exists (else throws
// "no usable CUDA device: <reason>"), copies the inputs to the device, runs the kernel(s) with the
// same semantics as the CPU kernel of the same name (kernels/cpu/*.h), and copies the results back.
// That is what the tests and the bindings need; the model will later call device-pointer variants.
// Every CUDA call and launch is checked: a CUDA error is a std::runtime_error carrying the error's
// name and string, never an abort. Arguments are checked by the bindings, not here.
#pragma once
#include <cstdint>
#include <string>

namespace dsmoe::cuda {

struct Info {
  bool compiled = false;   // built with DSMOE_WITH_CUDA
  bool available = false;  // a device this build can run on (compute capability >= 8.0)
  int device_count = 0;
  std::string name;                 // device 0
  int cc_major = 0, cc_minor = 0;   // device 0
  int64_t memory_bytes = 0;         // device 0, total
  int sm_count = 0;
  int runtime_version = 0, driver_version = 0;  // e.g. 13000; driver 0 when there is none
  std::string architectures;        // what the build embeds (CMAKE_CUDA_ARCHITECTURES)
  std::string reason;               // why not available (empty when available)
};

// Never throws; the result is computed once and cached.
Info info();
// Throws std::runtime_error("no usable CUDA device: <reason>") unless info().available.
void require_device();

// ---- GEMM (kernels/cuda/gemm.cu): bf16 tensor cores, fp32 accumulation ----------------------------
// C = alpha·op(A)·op(B) + beta·C as cpu::gemm (beta = 0 never reads C). A is fp32 (rounded to bf16
// on load), B fp32 or bf16. a_elems/b_elems/c_elems: the elements each stored matrix spans (C's
// gaps between rows, ldc > n, come back unchanged).
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          int64_t a_elems, const void* b, bool b_bf16, int64_t ldb, int64_t b_elems, float beta, float* c,
          int64_t ldc, int64_t c_elems);

// As cpu::grouped_gemm, in ONE launch over all experts (the tile -> (expert, tile) map is computed on
// the device from the offsets; empty groups get no tiles). offsets [E+1] on the host, rows = offsets[E].
void grouped_gemm(int64_t experts, const int32_t* offsets, const float* x, const void* w, bool w_bf16,
                  bool trans_w, int64_t n, int64_t k, float beta, float* y);

// ---- Routing (kernels/cuda/nn.cu) ---------------------------------------------------------------
void router_softmax(int64_t T, int64_t E, const float* logits, float* probs);
void route_topk(int64_t T, int64_t E, const float* probs, int64_t k, int32_t* pair_token, int32_t* pair_expert,
                float* pair_weight);
// Stable counting sort on the device: per-chunk histograms, one scan, scatter (no host round trip).
void group_by_expert(int64_t P, int64_t E, const int32_t* pair_expert, int32_t* offsets, int32_t* order,
                     int32_t* position);
void gather_rows(int64_t T, int64_t P, int64_t D, const float* x, const int32_t* pair_token, const int32_t* order,
                 float* xg);
void combine(int64_t T, int64_t P, int64_t N, const float* yg, const int32_t* pair_token, const float* pair_weight,
             const int32_t* position, float* y, float beta);

// ---- nn (kernels/cuda/nn.cu) --------------------------------------------------------------------
void rmsnorm_forward(int64_t rows, int64_t dim, const float* x, const float* w, float eps, float* y, float* rstd);
void rmsnorm_backward(int64_t rows, int64_t dim, const float* x, const float* w, const float* rstd,
                      const float* dy, float* dx, float* dw, bool accumulate_dw);
void rope_forward(int64_t rows, int64_t heads, int64_t head_dim, double theta, const int32_t* positions,
                  const float* x, float* out);
void gelu_forward(int64_t n, const float* x, float* y, bool tanh_approx);
void gelu_backward(int64_t n, const float* x, const float* dy, float* dx, bool tanh_approx);
double cross_entropy(int64_t rows, int64_t vocab, const float* logits, const int32_t* targets, float* dlogits,
                     float* losses, float grad_scale);
void adamw_update(int64_t n, float* param, const float* grad, float* m, float* v, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int64_t step);

// ---- Attention (kernels/cuda/attention.cu) -------------------------------------------------------
struct AttentionShape {
  int64_t batch = 1, tq = 1, tk = 1, n_heads_total = 1, heads_per_expert = 1, kv_heads = 1, head_dim = 1;
  float scale = 1.f;
};
constexpr int64_t kMaxAttentionHeadDim = 256;
// Fused forward (online softmax, key/value tiles in shared memory); the MoA layout of
// cpu::attention_forward. head_dim <= kMaxAttentionHeadDim.
void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                       float* lse);

// ---- Benchmarks (device-resident data, timed with CUDA events) -----------------------------------
// Seconds per call: the mean over `reps` back-to-back calls after one warm-up call.
double bench_gemm(int64_t m, int64_t n, int64_t k, int reps);  // bf16 A [m,k] · bf16 B [n,k]ᵀ -> fp32 C
double bench_grouped_gemm(int64_t experts, const int32_t* offsets, int64_t n, int64_t k, int reps);  // bf16 x, w
double bench_memcpy(int64_t bytes, int reps);  // device-to-device cudaMemcpy

}  // namespace dsmoe::cuda
