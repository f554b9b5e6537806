// The CUDA backend: every op of backend.h on DEVICE memory of one GPU, over the device entry points
// of kernels/cuda (device_ops.h). All work goes to the legacy default stream of the backend's device,
// so calls are ordered; nothing crosses to the host inside an op except the values an op returns or
// writes to host arrays (cross_entropy, sum_squares, router_statistics, the pair counts of the threshold
// routings and mask_scores): those wait for their result.
// Known gaps, each counted in native/cuda/README.md ("Backend ops"):
// - every op has a CUDA kernel (issue 14 added attention_backward and the threshold/mask compactions);
//   quantized (int8/q4) weights throw "... is not implemented on CUDA yet";
// - GEMMs round fp32 inputs to bf16 on the tensor cores (about 3 significant digits), where the CPU
//   backend computes in fp32;
// - embedding_backward adds repeated tokens with atomics (order not fixed);
// - the dense-training expert forms run one GEMM launch per expert.
//
// The device is set (cudaSetDevice) on entry to every method, so a process can hold a backend per GPU
// and call them from any thread. Errors are std::runtime_error (DSMOE_CUDA_CHECK), never aborts.
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>

#include "../cuda/device.h"
#include "../kernels/cuda/device_ops.h"
#include "backend.h"

namespace dsmoe::backend {
namespace {

namespace dev = ::dsmoe::cuda::dev;

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int index) : index_(index) {
    DSMOE_CUDA_CHECK(cudaSetDevice(index));
    cudaDeviceProp prop;
    DSMOE_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
    if (prop.major < 8)
      throw std::runtime_error("device cuda:" + std::to_string(index) + " (" + prop.name +
                               ") has compute capability " + std::to_string(prop.major) + "." +
                               std::to_string(prop.minor) + "; the kernels need 8.0 or newer (bf16 tensor cores)");
    describe_ = "cuda:" + std::to_string(index) + " (" + prop.name + ", sm_" + std::to_string(prop.major) +
                std::to_string(prop.minor) + ")";
    // Keep freed scratch (cudaMallocAsync) in the pool instead of returning it at every synchronisation.
    cudaMemPool_t pool = nullptr;
    DSMOE_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, index));
    uint64_t keep = UINT64_MAX;
    DSMOE_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  }

  Device device() const override { return {DeviceKind::Cuda, index_}; }
  std::string describe() const override { return describe_; }

  // ---- memory --------------------------------------------------------------------------------------
  void* allocate(int64_t bytes) override {
    use();
    if (bytes <= 0) return nullptr;
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, static_cast<size_t>(bytes));
    if (err != cudaSuccess) {
      cudaGetLastError();  // not sticky: clear it, or the next checked launch would report it again
      throw std::runtime_error("cuda:" + std::to_string(index_) + ": cannot allocate " + std::to_string(bytes) +
                               " bytes (" + cuda::describe(err) + ")");
    }
    const cudaError_t zerr = cudaMemsetAsync(p, 0, static_cast<size_t>(bytes), 0);  // ordered before any use
    if (zerr != cudaSuccess) {
      cudaFree(p);
      cuda::throw_cuda(zerr, "cudaMemsetAsync", __FILE__, __LINE__);
    }
    return p;
  }
  void release(void* p) noexcept override {
    if (!p) return;
    cudaSetDevice(index_);  // noexcept: an error here is sticky and reported by the next checked call
    cudaFree(p);
  }
  void upload(void* dst, const void* host, int64_t bytes) override {
    use();
    if (bytes > 0) DSMOE_CUDA_CHECK(cudaMemcpy(dst, host, static_cast<size_t>(bytes), cudaMemcpyHostToDevice));
  }
  void download(void* host, const void* src, int64_t bytes) override {
    use();
    if (bytes > 0) DSMOE_CUDA_CHECK(cudaMemcpy(host, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToHost));
  }
  void copy(void* dst, const void* src, int64_t bytes) override {
    use();
    if (bytes > 0 && dst != src)
      DSMOE_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice, 0));
  }
  void fill(int64_t n, float* x, float value) override {
    use();
    dev::fill(n, x, value);
  }
  void offset_indices(int64_t n, int32_t* x, int32_t delta) override {
    use();
    dev::offset_indices(n, x, delta);
  }
  void synchronize() override {
    use();
    DSMOE_CUDA_CHECK(cudaDeviceSynchronize());
  }

  // ---- element-wise and embedding ------------------------------------------------------------------
  void add_inplace(int64_t n, float* y, const float* x) override {
    use();
    dev::add_inplace(n, y, x);
  }
  // Quantized weights (I8, Q4) have no CUDA kernels yet: a clear error, not a wrong read.
  static void no_quantized(const WeightRef& w, const char* op) {
    if (w.quantized())
      throw std::runtime_error(std::string(op) + " with int8/q4 weights is not implemented on CUDA yet");
  }
  void embedding_forward(int64_t N, int64_t D, const int32_t* tokens, WeightRef table, float* out) override {
    no_quantized(table, "embedding_forward");
    use();
    dev::embedding_forward(N, D, tokens, table.data, table.dtype == DType::BF16, out);
  }
  void embedding_backward(int64_t N, int64_t D, const int32_t* tokens, const float* dy, float* dtable) override {
    use();
    dev::embedding_backward(N, D, tokens, dy, dtable);  // atomics: repeated tokens add in any order
  }

  // ---- GEMM ----------------------------------------------------------------------------------------
  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
            const float* b, int64_t ldb, float beta, float* c, int64_t ldc) override {
    use();
    dev::gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, false, ldb, beta, c, ldc);
  }
  void grouped_gemm(int64_t n_experts, const int32_t* offsets, const float* x, WeightRef w, bool trans_w, int64_t n,
                    int64_t k, float beta, float* y) override {
    no_quantized(w, "grouped_gemm");
    use();
    // Device offsets: the row count is not known here, so a persistent grid walks the tiles (no sync).
    dev::grouped_gemm(n_experts, offsets, -1, x, w.data, w.dtype == DType::BF16, trans_w, n, k, beta, y);
  }
  void grouped_gemm_weight_grad(int64_t n_experts, const int32_t* offsets, const float* dy, const float* x,
                                int64_t n, int64_t k, float beta, float* dw) override {
    use();
    dev::grouped_gemm_weight_grad(n_experts, offsets, dy, x, n, k, beta, dw);
  }
  void gemv_batch(const GemvJob* jobs, int64_t count) override {
    use();
    // One grouped GEMM launch per job (the jobs' descriptors are host structs holding device pointers).
    // A decode batch has few rows per expert, so most of each 128-row tile is idle: a GEMV kernel is
    // issue 14's.
    for (int64_t i = 0; i < count; ++i) {
      const GemvJob& j = jobs[i];
      no_quantized(j.w, "gemv_batch");
      dev::grouped_gemm(j.n_experts, j.offsets, -1, j.x, j.w.data, j.w.dtype == DType::BF16, true, j.n, j.k, 0.f,
                        j.y);
    }
  }

  // ---- the dense-training expert forms ---------------------------------------------------------------
  void expert_weighted_gemm(int64_t t, int64_t n_experts, int64_t n, int64_t k, const float* x, int64_t ldx,
                            int64_t x_expert_stride, const float* w, const float* s, float beta,
                            float* y) override {
    use();
    if (t <= 0 || n <= 0) return;
    if (n_experts <= 0) {  // Y = beta·Y
      if (beta == 0.f) dev::fill(t * n, y, 0.f);
      else if (beta != 1.f) dev::scale_inplace(t * n, y, beta);
      return;
    }
    // Y = beta·Y + Σ_e S[:, e] ⊙ (X_e·W[e]ᵀ): one GEMM per expert, S applied per row in the epilogue,
    // accumulated in expert order (the stream orders the launches).
    for (int64_t e = 0; e < n_experts; ++e)
      dev::gemm(false, true, t, n, k, 1.f, x + e * x_expert_stride, ldx, w + e * n * k, false, k,
                e == 0 ? beta : 1.f, y, n, s + e, n_experts);
  }
  void expert_weighted_weight_grad(int64_t N, int64_t E, int64_t D, int64_t K, const float* dy, const float* x,
                                   int64_t ldx, int64_t x_stride, const float* s, float* dw) override {
    use();
    if (N <= 0 || E <= 0 || D <= 0 || K <= 0) return;
    // dW[e] += (s[:, e] ⊙ dy)ᵀ·X_e: the scaled dy in a scratch [N, D] (reused by every expert in stream
    // order), then one GEMM per expert.
    cuda::ScratchBuffer<float> scaled(N * D);
    for (int64_t e = 0; e < E; ++e) {
      dev::scale_rows(N, D, dy, D, s + e, E, scaled.get());
      dev::gemm(true, false, D, K, N, 1.f, scaled.get(), D, x + e * x_stride, false, ldx, 1.f, dw + e * D * K, K);
    }
  }
  void expert_input_grad(int64_t N, int64_t E, int64_t D, int64_t K, const float* dy, const float* w,
                         float* p) override {
    use();
    // p[:, e·K..] = dy·W[e], W[e] stored [D, K].
    for (int64_t e = 0; e < E; ++e)
      dev::gemm(false, false, N, K, D, 1.f, dy, D, w + e * D * K, false, K, 0.f, p + e * K, E * K);
  }
  void expert_scores_backward(int64_t T, int64_t E, int64_t F, const float* s, const float* pe, const float* g,
                              float* ds, float* dg) override {
    use();
    dev::expert_scores_backward(T, E, F, s, pe, g, ds, dg);
  }

  // ---- routing ---------------------------------------------------------------------------------------
  void router_softmax(int64_t T, int64_t E, const float* logits, float* probs) override {
    use();
    dev::router_softmax(T, E, logits, probs);
  }
  void router_softmax_backward(int64_t T, int64_t E, const float* probs, const float* dprobs,
                               float* dlogits) override {
    use();
    dev::router_softmax_backward(T, E, probs, dprobs, dlogits);
  }
  void route_topk(int64_t T, int64_t E, const float* probs, int64_t k, int32_t* pt, int32_t* pe,
                  float* pw) override {
    use();
    dev::route_topk(T, E, probs, k, pt, pe, pw);
  }
  int64_t route_threshold(int64_t T, int64_t E, const float* probs, double eps, int32_t* pt, int32_t* pe,
                          float* pw) override {
    use();
    return dev::route_threshold(T, E, probs, eps, pt, pe, pw);  // waits for P
  }
  int64_t route_threshold_topk(int64_t T, int64_t E, const float* probs, double eps, int32_t* pt, int32_t* pe,
                               float* pw) override {
    use();
    return dev::route_threshold_topk(T, E, probs, eps, pt, pe, pw);  // waits for K
  }
  void pair_weights(int64_t T, int64_t E, int64_t P, const int32_t* pair_token, const int32_t* pair_expert,
                    const float* probs, float* weights, uint8_t* mask) override {
    use();
    dev::pair_weights(T, E, P, pair_token, pair_expert, probs, weights, mask);
  }
  int64_t mask_scores(int64_t T, int64_t E, const uint8_t* mask, float* ds, int32_t* pair_expert) override {
    use();
    return dev::mask_scores(T, E, mask, ds, pair_expert);  // waits for P
  }
  void group_by_expert(int64_t P, int64_t E, const int32_t* pair_expert, int32_t* offsets, int32_t* order,
                       int32_t* position) override {
    use();
    dev::group_by_expert(P, E, pair_expert, offsets, order, position);
  }
  void gather_rows(int64_t P, int64_t D, const float* x, const int32_t* pair_token, const int32_t* order,
                   float* xg) override {
    use();
    dev::gather_rows(P, D, x, pair_token, order, xg);
  }
  void gather_rows_backward(int64_t T, int64_t P, int64_t D, const float* dxg, const int32_t* pair_token,
                            const int32_t* position, float* dx, float beta) override {
    use();
    dev::gather_rows_backward(T, P, D, dxg, pair_token, position, dx, beta);
  }
  void combine(int64_t T, int64_t P, int64_t N, const float* yg, const int32_t* pair_token, const float* pair_weight,
               const int32_t* position, float* y, float beta) override {
    use();
    dev::combine(T, P, N, yg, pair_token, pair_weight, position, y, beta);
  }
  void combine_backward(int64_t T, int64_t P, int64_t N, const float* dy, const float* yg, const int32_t* pair_token,
                        const float* pair_weight, const int32_t* position, float* dyg, float* dweight) override {
    use();
    dev::combine_backward(T, P, N, dy, yg, pair_token, pair_weight, position, dyg, dweight);
  }
  void scatter_pair_heads(int64_t P, int64_t HD, int64_t QD, const int32_t* order, const int32_t* pt,
                          const int32_t* pe, const float* src, float* dst) override {
    use();
    dev::scatter_pair_heads(P, HD, QD, order, pt, pe, src, dst);
  }
  void gather_pair_heads(int64_t P, int64_t HD, int64_t QD, const int32_t* order, const int32_t* pt,
                         const int32_t* pe, const float* src, float* dst) override {
    use();
    dev::gather_pair_heads(P, HD, QD, order, pt, pe, src, dst);
  }
  void router_statistics(int64_t T, int64_t E, const float* probs, double* prob_sum, double* entropy_sum) override {
    use();
    dev::router_statistics(T, E, probs, prob_sum, entropy_sum);  // host outputs: E + 1 doubles read back
  }
  MiLossValue mi_loss(int64_t T, int64_t E, const float* probs, double grad_scale, float* dprobs,
                      bool accumulate) override {
    use();
    return dev::mi_loss(T, E, probs, grad_scale, dprobs, accumulate);  // waits for the value
  }
  double switch_loss(int64_t T, int64_t E, const float* probs, const int32_t* pair_expert, int64_t P,
                     double grad_scale, float* dprobs, bool accumulate) override {
    use();
    return dev::switch_loss(T, E, probs, pair_expert, P, grad_scale, dprobs, accumulate);  // waits for the value
  }

  // ---- layers ----------------------------------------------------------------------------------------
  void rmsnorm_forward(int64_t rows, int64_t dim, const float* x, const float* w, float eps, float* y,
                       float* rstd) override {
    use();
    dev::rmsnorm_forward(rows, dim, x, w, eps, y, rstd);
  }
  void rmsnorm_backward(int64_t rows, int64_t dim, const float* x, const float* w, const float* rstd, const float* dy,
                        float* dx, float* dw, bool accumulate_dw) override {
    use();
    dev::rmsnorm_backward(rows, dim, x, w, rstd, dy, dx, dw, accumulate_dw);
  }
  void rope_forward(int64_t rows, int64_t heads, int64_t head_dim, double theta, const int32_t* positions,
                    const float* x, float* out) override {
    use();
    dev::rope_forward(rows, heads, head_dim, theta, positions, x, out);
  }
  void rope_backward(int64_t rows, int64_t heads, int64_t head_dim, double theta, const int32_t* positions,
                     const float* dy, float* dx) override {
    use();
    dev::rope_backward(rows, heads, head_dim, theta, positions, dy, dx);
  }
  void gelu_forward(int64_t n, const float* x, float* y, GeluKind kind) override {
    use();
    dev::gelu_forward(n, x, y, kind == GeluKind::Tanh);
  }
  void gelu_backward(int64_t n, const float* x, const float* dy, float* dx, GeluKind kind) override {
    use();
    dev::gelu_backward(n, x, dy, dx, kind == GeluKind::Tanh);
  }
  void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                         float* lse) override {
    use();
    dev::attention_forward(shape(s), q, k, v, out, lse);
  }
  void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v, const float* out,
                          const float* lse, const float* dout, float* dq, float* dk, float* dv) override {
    use();
    dev::attention_backward(shape(s), q, k, v, out, lse, dout, dq, dk, dv);
  }
  double cross_entropy(int64_t rows, int64_t vocab, const float* logits, const int32_t* targets, float* dlogits,
                       float* losses, float grad_scale) override {
    use();
    return dev::cross_entropy(rows, vocab, logits, targets, dlogits, losses, grad_scale);  // waits for the mean
  }

  // ---- optimizer -------------------------------------------------------------------------------------
  void adamw_update(int64_t n, float* param, const float* grad, float* m, float* v, float lr, float beta1,
                    float beta2, float eps, float weight_decay, int64_t step) override {
    use();
    dev::adamw_update(n, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step);
  }
  double sum_squares(int64_t n, const float* x) override {
    use();
    return dev::sum_squares(n, x);  // waits for the sum
  }
  void scale_inplace(int64_t n, float* x, float s) override {
    use();
    dev::scale_inplace(n, x, s);
  }

 private:
  void use() const { DSMOE_CUDA_CHECK(cudaSetDevice(index_)); }
  static cuda::AttentionShape shape(const AttentionShape& s) {
    cuda::AttentionShape c;
    c.batch = s.batch; c.tq = s.tq; c.tk = s.tk; c.n_heads_total = s.n_heads_total;
    c.heads_per_expert = s.heads_per_expert; c.kv_heads = s.kv_heads; c.head_dim = s.head_dim; c.scale = s.scale;
    return c;
  }

  int index_;
  std::string describe_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int index) { return std::make_unique<CudaBackend>(index); }

}  // namespace dsmoe::backend
