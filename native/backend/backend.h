// The backend boundary (DESIGN.md §2): every op the model (native/model) and the inference session
// (native/infer) need, behind one interface with a CPU implementation (cpu_backend.cc, over
// kernels/cpu) and a CUDA one (cuda_backend.cu, over kernels/cuda). The model and the session are
// written once, over a `Backend&`; they never call one backend's kernels directly.
//
// Memory: a Backend allocates on its device (`Buffer`, `Array<T>`). Every pointer an op takes is
// memory of that backend's device (for the CPU backend, host memory); only the explicit copies
// (upload/download) and the outputs typed `double*` / returned by value — a few statistics — cross
// to the host. Ops have the semantics of the CPU kernel of the same name (kernels/cpu/*.h), which is
// the reference every backend is tested against (the all-backends harness: forEachBackend in
// test/helpers.ts, used by test/native/{gemm,gemv,nn,routing,attention,backend-ops}.test.ts).
//
// Calls on one backend are ordered (a CUDA backend uses one stream); a value returned by an op
// (a loss, a pair count) is final when the call returns.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "../kernels/cpu/attention.h"
#include "../kernels/cpu/gemm.h"
#include "../kernels/cpu/nn.h"
#include "../kernels/cpu/routing.h"

namespace dsmoe::backend {

using cpu::AttentionShape;
using cpu::DType;
using cpu::GeluKind;
using cpu::MiLossValue;

enum class DeviceKind : int { Cpu = 0, Cuda = 1 };

struct Device {
  DeviceKind kind = DeviceKind::Cpu;
  int index = 0;  // cuda:N
  std::string str() const { return kind == DeviceKind::Cpu ? "cpu" : "cuda:" + std::to_string(index); }
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
};

// "cpu", "cuda", "cuda:N"; throws std::invalid_argument naming the text otherwise.
Device parse_device(const std::string& text);

// A weight matrix as stored, row-major as in DESIGN.md §3: fp32, bf16, or quantized (I8: int8 with
// a float scale per row; Q4: 4-bit codes with an fp16 scale per 32 inputs; kernels/cpu/quant.h).
struct WeightRef {
  const void* data = nullptr;
  DType dtype = DType::F32;
  const void* scales = nullptr;  // I8 / Q4 only, for the tensor's row 0
  const float* f32() const { return static_cast<const float*>(data); }
  const uint16_t* bf16() const { return static_cast<const uint16_t*>(data); }
  bool quantized() const { return dtype == DType::I8 || dtype == DType::Q4; }
};

// Bytes of an fp32 or bf16 element (the dtypes a buffer of parameters can have).
inline int64_t dtype_bytes(DType t) { return t == DType::BF16 ? 2 : 4; }
// Bytes a weight costs to read, scales included (I8: 1 + 4/k, counted as 1; Q4: 4.5 bits).
inline double weight_bytes(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::I8: return 1;
    case DType::Q4: return 0.5625;
  }
  return 4;
}

// One product of a decode batch: Y[rows of e] = X[rows of e] · W[e]ᵀ for every expert e with rows.
struct GemvJob {
  int64_t n_experts = 1;
  const int32_t* offsets = nullptr;  // [E+1]
  const float* x = nullptr;          // [P, k]
  WeightRef w;                       // [E, n, k]
  int64_t n = 0, k = 0;
  float* y = nullptr;                // [P, n]
};

class Backend;

// Device memory of one backend, zero-filled when allocated, freed on destruction. Move-only.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Backend& be, int64_t bytes);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept
      : be_(std::exchange(o.be_, nullptr)), p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  Buffer& operator=(Buffer&& o) noexcept;
  void* data() const { return p_; }
  int64_t bytes() const { return bytes_; }
  Backend* backend() const { return be_; }

 private:
  Backend* be_ = nullptr;
  void* p_ = nullptr;
  int64_t bytes_ = 0;
};

// A typed array in a backend's memory: the model's and the session's workspaces.
template <typename T>
class Array {
 public:
  // n zeroed elements (the old contents are dropped).
  T* assign(Backend& be, int64_t n) {
    buf_ = Buffer(be, n * static_cast<int64_t>(sizeof(T)));
    n_ = n;
    return data();
  }
  // At least n elements, keeping the contents of the first size() ones.
  T* grow(Backend& be, int64_t n);
  T* data() const { return static_cast<T*>(buf_.data()); }
  int64_t size() const { return n_; }

 private:
  Buffer buf_;
  int64_t n_ = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  // A line for logs and `dsmoe info`: "cpu (avx512, 2 threads)", "cuda:0 (NVIDIA H200, sm_90)".
  virtual std::string describe() const = 0;

  // ---- memory ---------------------------------------------------------------------------------
  virtual void* allocate(int64_t bytes) = 0;  // zero-filled; throws std::bad_alloc / runtime_error
  virtual void release(void* p) noexcept = 0;
  virtual void upload(void* dst, const void* host, int64_t bytes) = 0;
  virtual void download(void* host, const void* src, int64_t bytes) = 0;
  virtual void copy(void* dst, const void* src, int64_t bytes) = 0;  // within the device
  virtual void fill(int64_t n, float* x, float value) = 0;
  // x[i] += delta: the pair tokens of rows routed apart (a sequence with its own routing) made
  // relative to all the rows of the call.
  virtual void offset_indices(int64_t n, int32_t* x, int32_t delta) = 0;
  virtual void synchronize() {}
  // Runs fn, whose ops are all small (a decode step's per-row work): the CPU backend keeps them on
  // the calling thread instead of waking its pool for microseconds of work.
  virtual void small_work(const std::function<void()>& fn) { fn(); }

  // ---- element-wise and embedding -----------------------------------------------------------------
  virtual void add_inplace(int64_t n, float* y, const float* x) = 0;  // y += x
  // out[t] = table[tokens[t]] (bf16 widened), out [N, D]
  virtual void embedding_forward(int64_t N, int64_t D, const int32_t* tokens, WeightRef table, float* out) = 0;
  // dtable[tokens[t]] += dy[t] in token order (a token id may repeat), dtable [V, D]
  virtual void embedding_backward(int64_t N, int64_t D, const int32_t* tokens, const float* dy, float* dtable) = 0;

  // ---- GEMM --------------------------------------------------------------------------------------
  // C = alpha·op(A)·op(B) + beta·C, fp32 (cpu::gemm)
  virtual void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                    int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) = 0;
  // Grouped expert GEMM over rows grouped by expert; W fp32 or bf16 (cpu::grouped_gemm)
  virtual void grouped_gemm(int64_t n_experts, const int32_t* offsets, const float* x, WeightRef w, bool trans_w,
                            int64_t n, int64_t k, float beta, float* y) = 0;
  virtual void grouped_gemm_weight_grad(int64_t n_experts, const int32_t* offsets, const float* dy,
                                        const float* x, int64_t n, int64_t k, float beta, float* dw) = 0;
  // Decode: Y[rows of e] = X[rows of e]·W[e]ᵀ reading only experts with rows; jobs run together.
  virtual void gemv_batch(const GemvJob* jobs, int64_t count) = 0;

  // ---- the dense-training expert forms (every expert on every token, weighted by the router) ---------
  // Y = beta·Y + Σ_e S[:, e] ⊙ X_e·W[e]ᵀ  (cpu::expert_weighted_gemm)
  virtual void expert_weighted_gemm(int64_t t, int64_t n_experts, int64_t n, int64_t k, const float* x,
                                    int64_t ldx, int64_t x_expert_stride, const float* w, const float* s,
                                    float beta, float* y) = 0;
  // dW[e] += (s[:, e] ⊙ dy)ᵀ · X_e: dy [N, D], X_e at x + e·x_stride (ld ldx), s [N, E], dW [E, D, K]
  virtual void expert_weighted_weight_grad(int64_t N, int64_t E, int64_t D, int64_t K, const float* dy,
                                           const float* x, int64_t ldx, int64_t x_stride, const float* s,
                                           float* dw) = 0;
  // p[:, e·K..] = dy · W[e] for every expert: dy [N, D], W [E, D, K], p [N, E·K]
  virtual void expert_input_grad(int64_t N, int64_t E, int64_t D, int64_t K, const float* dy, const float* w,
                                 float* p) = 0;
  virtual void expert_scores_backward(int64_t T, int64_t E, int64_t F, const float* s, const float* pe,
                                      const float* g, float* ds, float* dg) = 0;

  // ---- routing -------------------------------------------------------------------------------------
  virtual void router_softmax(int64_t T, int64_t E, const float* logits, float* probs) = 0;
  virtual void router_softmax_backward(int64_t T, int64_t E, const float* probs, const float* dprobs,
                                       float* dlogits) = 0;
  virtual void route_topk(int64_t T, int64_t E, const float* probs, int64_t k, int32_t* pair_token,
                          int32_t* pair_expert, float* pair_weight) = 0;
  virtual int64_t route_threshold(int64_t T, int64_t E, const float* probs, double eps, int32_t* pair_token,
                                  int32_t* pair_expert, float* pair_weight) = 0;
  virtual int64_t route_threshold_topk(int64_t T, int64_t E, const float* probs, double eps,
                                       int32_t* pair_token, int32_t* pair_expert, float* pair_weight) = 0;
  // Training's top-k weights: weights = probs on the P pairs, 0 elsewhere; mask = 1 on the pairs.
  virtual void pair_weights(int64_t T, int64_t E, int64_t P, const int32_t* pair_token,
                            const int32_t* pair_expert, const float* probs, float* weights, uint8_t* mask) = 0;
  // ds = 0 where !mask; pair_expert = the experts of the mask, token-major. Returns their count.
  virtual int64_t mask_scores(int64_t T, int64_t E, const uint8_t* mask, float* ds, int32_t* pair_expert) = 0;
  virtual void group_by_expert(int64_t P, int64_t E, const int32_t* pair_expert, int32_t* offsets,
                               int32_t* order, int32_t* position) = 0;
  virtual void gather_rows(int64_t P, int64_t D, const float* x, const int32_t* pair_token, const int32_t* order,
                           float* xg) = 0;
  virtual void gather_rows_backward(int64_t T, int64_t P, int64_t D, const float* dxg, const int32_t* pair_token,
                                    const int32_t* position, float* dx, float beta) = 0;
  virtual void combine(int64_t T, int64_t P, int64_t N, const float* yg, const int32_t* pair_token,
                       const float* pair_weight, const int32_t* position, float* y, float beta) = 0;
  virtual void combine_backward(int64_t T, int64_t P, int64_t N, const float* dy, const float* yg,
                                const int32_t* pair_token, const float* pair_weight, const int32_t* position,
                                float* dyg, float* dweight) = 0;
  // MoA pair slices: the [P, HD] rows of active (token, expert) pairs, in grouped order, to and from
  // the [T, E·HD] per-token layout (expert e's heads at columns e·HD..).
  virtual void scatter_pair_heads(int64_t P, int64_t HD, int64_t QD, const int32_t* order, const int32_t* pair_token,
                                  const int32_t* pair_expert, const float* src, float* dst) = 0;
  virtual void gather_pair_heads(int64_t P, int64_t HD, int64_t QD, const int32_t* order, const int32_t* pair_token,
                                 const int32_t* pair_expert, const float* src, float* dst) = 0;
  // Inference router statistics, added into host arrays: prob_sum[e] += Σ_t S[t,e],
  // *entropy_sum += Σ_t −Σ_e S log S (0 at S = 0).
  virtual void router_statistics(int64_t T, int64_t E, const float* probs, double* prob_sum,
                                 double* entropy_sum) = 0;
  virtual MiLossValue mi_loss(int64_t T, int64_t E, const float* probs, double grad_scale, float* dprobs,
                              bool accumulate) = 0;
  virtual double switch_loss(int64_t T, int64_t E, const float* probs, const int32_t* pair_expert, int64_t P,
                             double grad_scale, float* dprobs, bool accumulate) = 0;

  // ---- layers --------------------------------------------------------------------------------------
  virtual void rmsnorm_forward(int64_t rows, int64_t dim, const float* x, const float* w, float eps, float* y,
                               float* rstd) = 0;
  virtual void rmsnorm_backward(int64_t rows, int64_t dim, const float* x, const float* w, const float* rstd,
                                const float* dy, float* dx, float* dw, bool accumulate_dw) = 0;
  virtual void rope_forward(int64_t rows, int64_t heads, int64_t head_dim, double theta, const int32_t* positions,
                            const float* x, float* out) = 0;
  virtual void rope_backward(int64_t rows, int64_t heads, int64_t head_dim, double theta,
                             const int32_t* positions, const float* dy, float* dx) = 0;
  virtual void gelu_forward(int64_t n, const float* x, float* y, GeluKind kind) = 0;
  virtual void gelu_backward(int64_t n, const float* x, const float* dy, float* dx, GeluKind kind) = 0;
  virtual void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v,
                                 float* out, float* lse) = 0;
  // attention_forward of several sequences, each over its own K/V (a decode step of a batch whose
  // sequences have different cache lengths): job i uses s with tq = jobs[i].tq, tk = jobs[i].tk.
  // The default runs them one by one; the CPU backend runs B ≥ 2 of them as one parallel region (a
  // decode step of B sequences would otherwise wake the thread pool B times per layer for tiny work)
  // and a single one parallel over its heads.
  struct AttentionJob {
    const float *q, *k, *v;
    float *out, *lse;
    int64_t tq, tk;
  };
  virtual void attention_forward_batch(const AttentionShape& s, const AttentionJob* jobs, int64_t n) {
    AttentionShape one = s;
    for (int64_t i = 0; i < n; ++i) {
      one.tq = jobs[i].tq;
      one.tk = jobs[i].tk;
      attention_forward(one, jobs[i].q, jobs[i].k, jobs[i].v, jobs[i].out, jobs[i].lse);
    }
  }
  virtual void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v,
                                  const float* out, const float* lse, const float* dout, float* dq, float* dk,
                                  float* dv) = 0;
  // Mean loss over rows with targets ≥ 0 (cpu::cross_entropy); losses [rows] or null.
  virtual double cross_entropy(int64_t rows, int64_t vocab, const float* logits, const int32_t* targets,
                               float* dlogits, float* losses, float grad_scale) = 0;

  // ---- optimizer -----------------------------------------------------------------------------------
  virtual void adamw_update(int64_t n, float* param, const float* grad, float* m, float* v, float lr, float beta1,
                            float beta2, float eps, float weight_decay, int64_t step) = 0;
  virtual double sum_squares(int64_t n, const float* x) = 0;
  virtual void scale_inplace(int64_t n, float* x, float s) = 0;
};

// The process-wide CPU backend (kernels/cpu over the shared thread pool).
Backend& cpu();
// The backend of a device: the CPU one, or a CUDA backend for cuda:N (created once per device).
// Throws std::runtime_error naming the reason when the device is not usable (no CUDA build, no GPU).
Backend& get(const Device& device);

// ---- inline definitions ------------------------------------------------------------------------------

inline Buffer::Buffer(Backend& be, int64_t bytes) : be_(&be), bytes_(bytes) {
  if (bytes < 0) throw std::length_error("negative buffer size");
  if (bytes > 0) p_ = be.allocate(bytes);
}
inline Buffer::~Buffer() {
  if (p_) be_->release(p_);
}
inline Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    if (p_) be_->release(p_);
    be_ = std::exchange(o.be_, nullptr);
    p_ = std::exchange(o.p_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

template <typename T>
T* Array<T>::grow(Backend& be, int64_t n) {
  if (n <= n_) return data();
  Buffer next(be, n * static_cast<int64_t>(sizeof(T)));
  if (n_ > 0) be.copy(next.data(), buf_.data(), n_ * static_cast<int64_t>(sizeof(T)));
  buf_ = std::move(next);
  n_ = n;
  return data();
}

}  // namespace dsmoe::backend
