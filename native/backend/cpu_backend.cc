// The CPU backend: every op of backend.h over the kernels in kernels/cpu (and the decode GEMV in
// kernels/cpu/gemv.h), on host memory. It adds no arithmetic of its own beyond the few loops that used
// to sit inline in the model and the session, so its results are those kernels' results.
#include <sys/mman.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#include "../core/bf16.h"
#include "../core/cpu_features.h"
#include "../core/threadpool.h"
#include "../kernels/cpu/quant.h"
#include "../kernels/cpu/gemv.h"
#include "backend.h"

namespace dsmoe::backend {
namespace {

constexpr size_t kAlign = 64;
constexpr size_t kMapThreshold = size_t(1) << 20;  // 1 MiB

struct BlockHeader {
  size_t total;  // bytes of the whole block, header included
  bool mapped;   // mmap (else aligned_alloc)
};
static_assert(sizeof(BlockHeader) <= kAlign, "the header must fit before the aligned data");

class CpuBackend final : public Backend {
 public:
  Device device() const override { return {}; }
  std::string describe() const override {
    return std::string("cpu (") + isa_name(active_isa()) + ", " + std::to_string(num_threads()) + " threads)";
  }

  // Large blocks (workspaces, parameters, KV caches) are anonymous mappings: zero pages for free,
  // resident only once written, and returned to the system on release — heap blocks of that size
  // would stay in malloc's arenas (the session's workspace grows in steps) and raise the peak RSS.
  // A 64-byte header before each block records how it was made.
  void* allocate(int64_t bytes) override {
    const size_t total = (static_cast<size_t>(bytes) + 2 * kAlign - 1) / kAlign * kAlign;
    void* base = nullptr;
    if (total >= kMapThreshold) {
      base = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (base == MAP_FAILED) throw std::bad_alloc();
    } else {
      base = std::aligned_alloc(kAlign, total);
      if (!base) throw std::bad_alloc();
      std::memset(base, 0, total);
    }
    auto* h = static_cast<BlockHeader*>(base);
    h->total = total;
    h->mapped = total >= kMapThreshold;
    return static_cast<char*>(base) + kAlign;
  }
  void release(void* p) noexcept override {
    if (!p) return;
    auto* h = reinterpret_cast<BlockHeader*>(static_cast<char*>(p) - kAlign);
    if (h->mapped) munmap(h, h->total);
    else std::free(h);
  }
  void upload(void* dst, const void* host, int64_t bytes) override { copy(dst, host, bytes); }
  void download(void* host, const void* src, int64_t bytes) override { copy(host, src, bytes); }
  void copy(void* dst, const void* src, int64_t bytes) override {
    if (bytes > 0 && dst != src) std::memcpy(dst, src, static_cast<size_t>(bytes));
  }
  void fill(int64_t n, float* x, float value) override { std::fill(x, x + n, value); }
  void offset_indices(int64_t n, int32_t* x, int32_t delta) override {
    for (int64_t i = 0; i < n; ++i) x[i] += delta;
  }
  void small_work(const std::function<void()>& fn) override {
    // A parallel_for of one task runs the nested parallel_for calls of fn serially on this thread.
    parallel_for(1, [&](int64_t, int) { fn(); });
  }

  void add_inplace(int64_t n, float* y, const float* x) override {
    constexpr int64_t kChunk = 65536;
    parallel_for((n + kChunk - 1) / kChunk, [&](int64_t chunk, int) {
      const int64_t b = chunk * kChunk, e = std::min(n, b + kChunk);
      for (int64_t i = b; i < e; ++i) y[i] += x[i];
    });
  }
  void embedding_forward(int64_t N, int64_t D, const int32_t* tokens, WeightRef table, float* out) override {
    parallel_for(N, [&](int64_t t, int) {
      const int64_t row = int64_t(tokens[t]) * D;
      if (table.quantized())  // one row, dequantized (nested: serial in this task)
        cpu::dequantize_rows(table.dtype, table.data, table.scales, tokens[t], 1, D, out + t * D);
      else if (table.dtype == DType::F32)
        std::memcpy(out + t * D, table.f32() + row, sizeof(float) * static_cast<size_t>(D));
      else
        for (int64_t j = 0; j < D; ++j) out[t * D + j] = bf16_to_f32(table.bf16()[row + j]);
    });
  }
  void embedding_backward(int64_t N, int64_t D, const int32_t* tokens, const float* dy, float* dtable) override {
    for (int64_t t = 0; t < N; ++t) {  // serial: a token id can repeat (no racy adds)
      float* row = dtable + int64_t(tokens[t]) * D;
      const float* g = dy + t * D;
      for (int64_t j = 0; j < D; ++j) row[j] += g[j];
    }
  }

  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
            const float* b, int64_t ldb, float beta, float* c, int64_t ldc) override {
    cpu::gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  void grouped_gemm(int64_t n_experts, const int32_t* offsets, const float* x, WeightRef w, bool trans_w, int64_t n,
                    int64_t k, float beta, float* y) override {
    if (!w.quantized()) {
      cpu::grouped_gemm(n_experts, offsets, x, w.data, w.dtype, trans_w, n, k, beta, y);
      return;
    }
    // Quantized weights (inference, y = x·Wᵀ): each expert with rows is dequantized to fp32 once per
    // call, then multiplied; prefill is compute-bound, so the extra pass over the weights is small.
    if (!trans_w) throw std::invalid_argument("grouped_gemm: quantized weights need trans_w (y = x·Wᵀ)");
    static thread_local std::vector<float> scratch;
    scratch.resize(static_cast<size_t>(n * k));
    for (int64_t e = 0; e < n_experts; ++e) {
      const int64_t r0 = offsets[e], rows = offsets[e + 1] - r0;
      if (rows == 0) continue;
      cpu::dequantize_rows(w.dtype, w.data, w.scales, e * n, n, k, scratch.data());
      const int32_t one[2] = {0, static_cast<int32_t>(rows)};
      cpu::grouped_gemm(1, one, x + r0 * k, scratch.data(), DType::F32, true, n, k, beta, y + r0 * n);
    }
  }
  void grouped_gemm_weight_grad(int64_t n_experts, const int32_t* offsets, const float* dy, const float* x,
                                int64_t n, int64_t k, float beta, float* dw) override {
    cpu::grouped_gemm_weight_grad(n_experts, offsets, dy, x, n, k, beta, dw);
  }
  void gemv_batch(const GemvJob* jobs, int64_t count) override {
    // Decode calls this a few times per layer per token: no heap allocation for the usual ≤ 4 jobs.
    constexpr int64_t kInline = 4;
    cpu::GemvJob inline_jobs[kInline];
    std::vector<cpu::GemvJob> many;
    cpu::GemvJob* js = inline_jobs;
    if (count > kInline) {
      many.resize(static_cast<size_t>(count));
      js = many.data();
    }
    for (int64_t i = 0; i < count; ++i) {
      const GemvJob& j = jobs[i];
      js[i] = {j.n_experts, j.offsets, j.x, j.w.data, j.w.dtype, j.n, j.k, j.y, j.w.scales};
    }
    cpu::gemv_batch(js, count);
  }

  void expert_weighted_gemm(int64_t t, int64_t n_experts, int64_t n, int64_t k, const float* x, int64_t ldx,
                            int64_t x_expert_stride, const float* w, const float* s, float beta,
                            float* y) override {
    cpu::expert_weighted_gemm(t, n_experts, n, k, x, ldx, x_expert_stride, w, s, beta, y);
  }
  void expert_weighted_weight_grad(int64_t N, int64_t E, int64_t D, int64_t K, const float* dy, const float* x,
                                   int64_t ldx, int64_t x_stride, const float* s, float* dw) override {
    per_expert_gemm(E, [&](int64_t e, cpu::GemmSegment& seg, cpu::GemmProblem& p) {
      seg.a = {dy, D, true, s + e, E};                       // op(A) = dyᵀ [D, N], scaled per token by s[:, e]
      seg.b = {x + e * x_stride, ldx, false, DType::F32};    // op(B) = X_e [N, K]
      seg.k = N;
      p.m = D; p.n = K; p.alpha = 1.f; p.beta = 1.f; p.c = dw + e * D * K; p.ldc = K;
    });
  }
  void expert_input_grad(int64_t N, int64_t E, int64_t D, int64_t K, const float* dy, const float* w,
                         float* p) override {
    per_expert_gemm(E, [&](int64_t e, cpu::GemmSegment& seg, cpu::GemmProblem& pr) {
      seg.a = {dy, D, false, nullptr, 1};
      seg.b = {w + e * D * K, K, false, DType::F32};  // W[e] stored [D, K] = op(B) [K=D, N=K]
      seg.k = D;
      pr.m = N; pr.n = K; pr.alpha = 1.f; pr.beta = 0.f; pr.c = p + e * K; pr.ldc = E * K;
    });
  }
  void expert_scores_backward(int64_t T, int64_t E, int64_t F, const float* s, const float* pe, const float* g,
                              float* ds, float* dg) override {
    cpu::expert_scores_backward(T, E, F, s, pe, g, ds, dg);
  }

  void router_softmax(int64_t T, int64_t E, const float* logits, float* probs) override {
    cpu::router_softmax(T, E, logits, probs);
  }
  void router_softmax_backward(int64_t T, int64_t E, const float* probs, const float* dprobs,
                               float* dlogits) override {
    cpu::router_softmax_backward(T, E, probs, dprobs, dlogits);
  }
  void route_topk(int64_t T, int64_t E, const float* probs, int64_t k, int32_t* pt, int32_t* pe,
                  float* pw) override {
    cpu::route_topk(T, E, probs, k, pt, pe, pw);
  }
  int64_t route_threshold(int64_t T, int64_t E, const float* probs, double eps, int32_t* pt, int32_t* pe,
                          float* pw) override {
    return cpu::route_threshold(T, E, probs, eps, pt, pe, pw);
  }
  int64_t route_threshold_topk(int64_t T, int64_t E, const float* probs, double eps, int32_t* pt, int32_t* pe,
                               float* pw) override {
    return cpu::route_threshold_topk(T, E, probs, eps, pt, pe, pw);
  }
  void pair_weights(int64_t T, int64_t E, int64_t P, const int32_t* pair_token, const int32_t* pair_expert,
                    const float* probs, float* weights, uint8_t* mask) override {
    std::fill(weights, weights + T * E, 0.f);
    std::fill(mask, mask + T * E, uint8_t(0));
    for (int64_t p = 0; p < P; ++p) {
      const int64_t i = int64_t(pair_token[p]) * E + pair_expert[p];
      weights[i] = probs[i];
      mask[i] = 1;
    }
  }
  int64_t mask_scores(int64_t T, int64_t E, const uint8_t* mask, float* ds, int32_t* pair_expert) override {
    int64_t P = 0;
    for (int64_t i = 0; i < T * E; ++i) {
      if (!mask[i]) ds[i] = 0.f;
      else pair_expert[P++] = static_cast<int32_t>(i % E);
    }
    return P;
  }
  void group_by_expert(int64_t P, int64_t E, const int32_t* pair_expert, int32_t* offsets, int32_t* order,
                       int32_t* position) override {
    cpu::group_by_expert(P, E, pair_expert, offsets, order, position);
  }
  void gather_rows(int64_t P, int64_t D, const float* x, const int32_t* pair_token, const int32_t* order,
                   float* xg) override {
    cpu::gather_rows(P, D, x, pair_token, order, xg);
  }
  void gather_rows_backward(int64_t T, int64_t P, int64_t D, const float* dxg, const int32_t* pair_token,
                            const int32_t* position, float* dx, float beta) override {
    cpu::gather_rows_backward(T, P, D, dxg, pair_token, position, dx, beta);
  }
  void combine(int64_t T, int64_t P, int64_t N, const float* yg, const int32_t* pair_token, const float* pair_weight,
               const int32_t* position, float* y, float beta) override {
    cpu::combine(T, P, N, yg, pair_token, pair_weight, position, y, beta);
  }
  void combine_backward(int64_t T, int64_t P, int64_t N, const float* dy, const float* yg, const int32_t* pair_token,
                        const float* pair_weight, const int32_t* position, float* dyg, float* dweight) override {
    cpu::combine_backward(T, P, N, dy, yg, pair_token, pair_weight, position, dyg, dweight);
  }
  void scatter_pair_heads(int64_t P, int64_t HD, int64_t QD, const int32_t* order, const int32_t* pt,
                          const int32_t* pe, const float* src, float* dst) override {
    parallel_for(P, [&](int64_t i, int) {
      const int32_t p = order[i];
      std::memcpy(dst + int64_t(pt[p]) * QD + int64_t(pe[p]) * HD, src + i * HD,
                  sizeof(float) * static_cast<size_t>(HD));
    });
  }
  void gather_pair_heads(int64_t P, int64_t HD, int64_t QD, const int32_t* order, const int32_t* pt,
                         const int32_t* pe, const float* src, float* dst) override {
    parallel_for(P, [&](int64_t i, int) {
      const int32_t p = order[i];
      std::memcpy(dst + i * HD, src + int64_t(pt[p]) * QD + int64_t(pe[p]) * HD,
                  sizeof(float) * static_cast<size_t>(HD));
    });
  }
  void router_statistics(int64_t T, int64_t E, const float* probs, double* prob_sum, double* entropy_sum) override {
    double ent = 0;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t e = 0; e < E; ++e) {
        const double p = probs[t * E + e];
        prob_sum[e] += p;
        if (p > 0) ent -= p * std::log(p);
      }
    *entropy_sum += ent;
  }
  MiLossValue mi_loss(int64_t T, int64_t E, const float* probs, double grad_scale, float* dprobs,
                      bool accumulate) override {
    return cpu::mi_loss(T, E, probs, grad_scale, dprobs, accumulate);
  }
  double switch_loss(int64_t T, int64_t E, const float* probs, const int32_t* pair_expert, int64_t P,
                     double grad_scale, float* dprobs, bool accumulate) override {
    return cpu::switch_loss(T, E, probs, pair_expert, P, grad_scale, dprobs, accumulate);
  }

  void rmsnorm_forward(int64_t rows, int64_t dim, const float* x, const float* w, float eps, float* y,
                       float* rstd) override {
    cpu::rmsnorm_forward(rows, dim, x, w, eps, y, rstd);
  }
  void rmsnorm_backward(int64_t rows, int64_t dim, const float* x, const float* w, const float* rstd, const float* dy,
                        float* dx, float* dw, bool accumulate_dw) override {
    cpu::rmsnorm_backward(rows, dim, x, w, rstd, dy, dx, dw, accumulate_dw);
  }
  void rope_forward(int64_t rows, int64_t heads, int64_t head_dim, double theta, const int32_t* positions,
                    const float* x, float* out) override {
    cpu::rope_forward(rows, heads, head_dim, theta, positions, x, out);
  }
  void rope_backward(int64_t rows, int64_t heads, int64_t head_dim, double theta, const int32_t* positions,
                     const float* dy, float* dx) override {
    cpu::rope_backward(rows, heads, head_dim, theta, positions, dy, dx);
  }
  void gelu_forward(int64_t n, const float* x, float* y, GeluKind kind) override { cpu::gelu_forward(n, x, y, kind); }
  void gelu_backward(int64_t n, const float* x, const float* dy, float* dx, GeluKind kind) override {
    cpu::gelu_backward(n, x, dy, dx, kind);
  }
  void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                         float* lse) override {
    cpu::attention_forward(s, q, k, v, out, lse);
  }
  void attention_forward_batch(const AttentionShape& s, const AttentionJob* jobs, int64_t n) override {
    auto one = [&](int64_t i) {
      AttentionShape shape = s;
      shape.tq = jobs[i].tq;
      shape.tk = jobs[i].tk;
      cpu::attention_forward(shape, jobs[i].q, jobs[i].k, jobs[i].v, jobs[i].out, jobs[i].lse);
    };
    // One sequence (batch-1 decode): parallel over its heads, or one thread would attend alone while
    // the others wait. Several: one task per sequence, its attention serial inside the task (nested
    // parallel_for), one parallel region for the batch. Each head's arithmetic is the same either
    // way, so the results are those of one by one.
    if (n == 1) {
      one(0);
    } else {
      parallel_for(n, [&](int64_t i, int) { one(i); });
    }
  }
  void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v, const float* out,
                          const float* lse, const float* dout, float* dq, float* dk, float* dv) override {
    cpu::attention_backward(s, q, k, v, out, lse, dout, dq, dk, dv);
  }
  double cross_entropy(int64_t rows, int64_t vocab, const float* logits, const int32_t* targets, float* dlogits,
                       float* losses, float grad_scale) override {
    return cpu::cross_entropy(rows, vocab, logits, targets, dlogits, losses, grad_scale);
  }

  void adamw_update(int64_t n, float* param, const float* grad, float* m, float* v, float lr, float beta1,
                    float beta2, float eps, float weight_decay, int64_t step) override {
    cpu::adamw_update(n, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step);
  }
  double sum_squares(int64_t n, const float* x) override { return cpu::sum_squares(n, x); }
  void scale_inplace(int64_t n, float* x, float s) override { cpu::scale_inplace(n, x, s); }

 private:
  // E independent single-segment GEMMs as one parallel batch; make(e, segment, problem) fills each.
  template <typename Make>
  static void per_expert_gemm(int64_t E, Make make) {
    std::vector<cpu::GemmSegment> segs(static_cast<size_t>(E));
    std::vector<cpu::GemmProblem> probs(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) {
      make(e, segs[static_cast<size_t>(e)], probs[static_cast<size_t>(e)]);
      probs[static_cast<size_t>(e)].segments = &segs[static_cast<size_t>(e)];
      probs[static_cast<size_t>(e)].n_segments = 1;
    }
    cpu::gemm_batch(probs.data(), E);
  }
};

}  // namespace

Backend& cpu() {
  static CpuBackend backend;
  return backend;
}

Device parse_device(const std::string& text) {
  if (text == "cpu") return {};
  if (text == "cuda") return {DeviceKind::Cuda, 0};
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5 && text.size() <= 8) {
    int index = 0;
    for (size_t i = 5; i < text.size(); ++i) {
      if (text[i] < '0' || text[i] > '9') index = -1;
      if (index >= 0) index = index * 10 + (text[i] - '0');
    }
    if (index >= 0) return {DeviceKind::Cuda, index};
  }
  throw std::invalid_argument("unknown device \"" + text + "\" (expected cpu, cuda or cuda:N)");
}

}  // namespace dsmoe::backend
