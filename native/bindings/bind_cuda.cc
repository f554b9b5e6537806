// Bindings of the CUDA backend (native/cuda/api.h): cudaInfo(), the cudaXxx kernels with the same
// named arguments as their CPU counterparts (host typed arrays: copy in, run, copy out), and the
// cudaBenchXxx timers. Compiled in every build: without DSMOE_WITH_CUDA, cuda_absent.cc supplies an
// info() that says why and every kernel throws "no usable CUDA device: ...". The device check comes
// first, then the same argument checks as the CPU bindings; index arrays are checked and copied.
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "../cuda/api.h"
#include "index_args.h"
#include "register.h"

#ifndef DSMOE_CUDA_OPTION
#define DSMOE_CUDA_OPTION "off"
#endif

namespace dsmoe::bind {
namespace {

constexpr int64_t kMaxSize = std::numeric_limits<int64_t>::max() / 4;

// Offsets [E+1]: 0, non-decreasing; checked and copied. Returns the copy (rows = back()).
Index group_offsets(Args& args, int64_t experts) {
  auto off = args.i32("offsets", experts + 1);
  auto copy = std::make_shared<std::vector<int32_t>>(off.data, off.data + experts + 1);
  if ((*copy)[0] != 0) range_error(args.where("offsets") + "[0] must be 0, got " + std::to_string((*copy)[0]));
  for (int64_t e = 0; e < experts; ++e)
    if ((*copy)[e + 1] < (*copy)[e])
      range_error(args.where("offsets") + " must be non-decreasing (offsets[" + std::to_string(e + 1) + "] = " +
                  std::to_string((*copy)[e + 1]) + " < offsets[" + std::to_string(e) + "] = " +
                  std::to_string((*copy)[e]) + ")");
  return copy;
}

double positive(Args& args, const char* name) {
  const double v = args.number(name);
  if (!(v > 0)) range_error(args.where(name) + " must be > 0, got " + std::to_string(v));
  return v;
}
double non_negative(Args& args, const char* name) {
  const double v = args.number(name);
  if (!(v >= 0)) range_error(args.where(name) + " must be >= 0, got " + std::to_string(v));
  return v;
}
double beta_arg(Args& args, const char* name) {
  const double v = args.number(name);
  if (!(v >= 0 && v < 1)) range_error(args.where(name) + " must be in [0, 1), got " + std::to_string(v));
  return v;
}
bool gelu_tanh(Args& args) {
  if (!args.has("approximate")) return false;
  const std::string s = args.string("approximate");
  if (s == "erf") return false;
  if (s == "tanh") return true;
  range_error(args.where("approximate") + " must be 'erf' or 'tanh', got '" + s + "'");
}

// ---- info ---------------------------------------------------------------------------------------

Napi::Value cuda_info(const Napi::CallbackInfo& info) {
  const cuda::Info in = cuda::info();
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("compiled", in.compiled);
  o.Set("available", in.available);
  o.Set("deviceCount", in.device_count);
  o.Set("buildOption", DSMOE_CUDA_OPTION);
  if (in.compiled) {
    o.Set("architectures", in.architectures);
    o.Set("runtimeVersion", in.runtime_version);
    o.Set("driverVersion", in.driver_version);
  }
  if (!in.name.empty()) {
    o.Set("name", in.name);
    o.Set("computeCapability", std::to_string(in.cc_major) + "." + std::to_string(in.cc_minor));
    o.Set("memoryBytes", static_cast<double>(in.memory_bytes));
    o.Set("multiprocessors", in.sm_count);
  }
  if (!in.available) o.Set("reason", in.reason);
  return o;
}

// ---- GEMM ---------------------------------------------------------------------------------------

Work bind_gemm(Args& args) {
  cuda::require_device();
  const bool ta = args.boolean_or("transA", false), tb = args.boolean_or("transB", false);
  const int64_t m = args.integer("m", 0), n = args.integer("n", 0), k = args.integer("k", 0);
  const float alpha = static_cast<float>(args.number_or("alpha", 1.0));
  const float beta = static_cast<float>(args.number_or("beta", 0.0));
  const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
  const int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
  const int64_t lda = args.integer_or("lda", a_cols, 1), ldb = args.integer_or("ldb", b_cols, 1);
  const int64_t ldc = args.integer_or("ldc", n, 1);
  const int64_t a_elems = Args::matrix_elems(a_rows, a_cols, lda, args.where("a"));
  const int64_t b_elems = Args::matrix_elems(b_rows, b_cols, ldb, args.where("b"));
  const int64_t c_elems = Args::matrix_elems(m, n, ldc, args.where("c"));
  auto a = args.f32_in("a", a_elems);
  bool b_bf16 = false;
  auto b = args.f32_or_bf16("b", b_elems, &b_bf16);
  auto c = args.f32("c", c_elems);
  return [=] {
    cuda::gemm(ta, tb, m, n, k, alpha, a.data, lda, a_elems, b.data, b_bf16, ldb, b_elems, beta, c.data, ldc, c_elems);
  };
}

Work bind_grouped_gemm(Args& args) {
  cuda::require_device();
  const int64_t experts = args.integer("experts", 1);
  const int64_t n = args.integer("n", 0), k = args.integer("k", 0);
  const bool trans_w = args.boolean_or("transW", true);
  const float beta = static_cast<float>(args.number_or("beta", 0.0));
  Index off = group_offsets(args, experts);
  const int64_t rows = off->back();
  auto x = args.f32_in("x", checked_mul(rows, k, args.where("x")));
  bool bf16 = false;
  auto w = args.f32_or_bf16("w", checked_mul(experts, checked_mul(n, k, args.where("w")), args.where("w")), &bf16);
  auto y = args.f32("y", checked_mul(rows, n, args.where("y")));
  return [=] { cuda::grouped_gemm(experts, off->data(), x.data, w.data, bf16, trans_w, n, k, beta, y.data); };
}

// ---- routing ------------------------------------------------------------------------------------

int64_t score_elems(Args& args, int64_t T, int64_t E) {
  const int64_t n = checked_mul(T, E, args.where("t·experts"));
  if (n > kMaxPairs) range_error(args.where("t·experts") + " = " + std::to_string(n) + " exceeds 2^31 − 1");
  return n;
}

Work bind_router_softmax(Args& args) {
  cuda::require_device();
  const int64_t T = args.integer("t", 0), E = args.integer("experts", 1);
  const int64_t n = checked_mul(T, E, args.where("probs"));
  auto logits = args.f32_in("logits", n);
  auto probs = args.f32("probs", n);
  return [=] { cuda::router_softmax(T, E, logits.data, probs.data); };
}

Work bind_route_topk(Args& args) {
  cuda::require_device();
  const int64_t T = args.integer("t", 0), E = args.integer("experts", 1);
  const int64_t n = score_elems(args, T, E);
  const int64_t k = args.integer("k", 1, E);
  auto probs = args.f32_in("probs", n);
  auto tok = args.i32("pairToken", T * k);
  auto ex = args.i32("pairExpert", T * k);
  auto w = args.f32("pairWeight", T * k);
  return [=] { cuda::route_topk(T, E, probs.data, k, tok.data, ex.data, w.data); };
}

Work bind_group_by_expert(Args& args) {
  cuda::require_device();
  const int64_t P = args.integer("pairs", 0, kMaxPairs), E = args.integer("experts", 1);
  Index pe = indices(args, "pairExpert", P, E);
  auto offsets = args.i32("offsets", E + 1);
  auto order = args.i32("order", P);
  auto position = args.i32("position", P);
  return [=] { cuda::group_by_expert(P, E, pe->data(), offsets.data, order.data, position.data); };
}

Work bind_gather_rows(Args& args) {
  cuda::require_device();
  const int64_t T = args.integer("t", 0), P = args.integer("pairs", 0, kMaxPairs), D = args.integer("d", 0);
  auto x = args.f32_in("x", checked_mul(T, D, args.where("x")));
  Index tok = pair_tokens(args, "pairToken", P, T);
  Index order = indices(args, "order", P, P);
  auto xg = args.f32("xg", checked_mul(P, D, args.where("xg")));
  return [=] { cuda::gather_rows(T, P, D, x.data, tok->data(), order->data(), xg.data); };
}

Work bind_combine(Args& args) {
  cuda::require_device();
  const int64_t T = args.integer("t", 0), P = args.integer("pairs", 0, kMaxPairs), N = args.integer("n", 0);
  const float beta = static_cast<float>(args.number_or("beta", 0.0));
  auto yg = args.f32_in("yg", checked_mul(P, N, args.where("yg")));
  Index tok = pair_tokens(args, "pairToken", P, T);
  auto w = args.f32_in("pairWeight", P);
  Index pos = permutation(args, "position", P);
  auto y = args.f32("y", checked_mul(T, N, args.where("y")));
  return [=] { cuda::combine(T, P, N, yg.data, tok->data(), w.data, pos->data(), y.data, beta); };
}

// ---- nn -----------------------------------------------------------------------------------------

Work bind_rmsnorm_forward(Args& args) {
  cuda::require_device();
  const int64_t rows = args.integer("rows", 0), dim = args.integer("dim", 1);
  const float eps = static_cast<float>(positive(args, "eps"));
  const int64_t n = checked_mul(rows, dim, args.where("x"));
  auto x = args.f32_in("x", n);
  auto w = args.f32_in("w", dim);
  auto y = args.f32("y", n);
  auto rstd = args.f32_opt("rstd", rows);
  return [=] { cuda::rmsnorm_forward(rows, dim, x.data, w.data, eps, y.data, rstd.data); };
}

Work bind_rmsnorm_backward(Args& args) {
  cuda::require_device();
  const int64_t rows = args.integer("rows", 0), dim = args.integer("dim", 1);
  const int64_t n = checked_mul(rows, dim, args.where("x"));
  auto x = args.f32_in("x", n);
  auto w = args.f32_in("w", dim);
  auto rstd = args.f32_in("rstd", rows);
  auto dy = args.f32_in("dy", n);
  auto dx = args.f32("dx", n);
  auto dw = args.f32("dw", dim);
  const bool acc = args.boolean_or("accumulateDw", false);
  return [=] { cuda::rmsnorm_backward(rows, dim, x.data, w.data, rstd.data, dy.data, dx.data, dw.data, acc); };
}

Work bind_rope_forward(Args& args) {
  cuda::require_device();
  const int64_t rows = args.integer("rows", 0), heads = args.integer("heads", 0), hd = args.integer("headDim", 2);
  if (hd % 2 != 0) range_error(args.where("headDim") + " must be even, got " + std::to_string(hd));
  const double theta = positive(args, "theta");
  const int64_t elems = checked_mul(rows, checked_mul(heads, hd, args.where("x")), args.where("x"));
  auto pos = args.i32("positions", rows);
  for (int64_t r = 0; r < rows; ++r)
    if (pos.data[r] < 0)
      range_error(args.where("positions") + "[" + std::to_string(r) + "] must be >= 0, got " +
                  std::to_string(pos.data[r]));
  auto x = args.f32("x", elems);
  auto out = args.has("out") ? args.f32("out", elems) : x;
  return [=] { cuda::rope_forward(rows, heads, hd, theta, pos.data, x.data, out.data); };
}

Work bind_gelu_forward(Args& args) {
  cuda::require_device();
  const int64_t n = args.integer("n", 0, kMaxSize);
  const bool t = gelu_tanh(args);
  auto x = args.f32_in("x", n);
  auto y = args.f32("y", n);
  return [=] { cuda::gelu_forward(n, x.data, y.data, t); };
}

Work bind_gelu_backward(Args& args) {
  cuda::require_device();
  const int64_t n = args.integer("n", 0, kMaxSize);
  const bool t = gelu_tanh(args);
  auto x = args.f32_in("x", n);
  auto dy = args.f32_in("dy", n);
  auto dx = args.f32("dx", n);
  return [=] { cuda::gelu_backward(n, x.data, dy.data, dx.data, t); };
}

Work bind_adamw_update(Args& args) {
  cuda::require_device();
  const int64_t n = args.integer("n", 0, kMaxSize);
  const float lr = static_cast<float>(non_negative(args, "lr"));
  const float b1 = static_cast<float>(beta_arg(args, "beta1")), b2 = static_cast<float>(beta_arg(args, "beta2"));
  const float eps = static_cast<float>(positive(args, "eps"));
  const float wd = static_cast<float>(args.has("weightDecay") ? non_negative(args, "weightDecay") : 0.0);
  const int64_t step = args.integer("step", 1, std::numeric_limits<int64_t>::max() / 2);
  auto param = args.f32("param", n);
  auto grad = args.f32_in("grad", n);
  auto m = args.f32("m", n);
  auto v = args.f32("v", n);
  return [=] { cuda::adamw_update(n, param.data, grad.data, m.data, v.data, lr, b1, b2, eps, wd, step); };
}

Napi::Value cuda_cross_entropy(const Napi::CallbackInfo& info) {
  Args args(info, "cudaCrossEntropy");
  cuda::require_device();
  const int64_t rows = args.integer("rows", 0), vocab = args.integer("vocab", 1);
  const int64_t n = checked_mul(rows, vocab, args.where("logits"));
  auto logits = args.f32_in("logits", n);
  auto targets = args.i32("targets", rows);
  auto dlogits = args.f32_opt("dlogits", n);
  auto losses = args.f32_opt("losses", rows);
  const float scale = static_cast<float>(args.number_or("gradScale", 1.0));
  for (int64_t r = 0; r < rows; ++r)
    if (targets.data[r] >= vocab)
      range_error(args.where("targets") + "[" + std::to_string(r) + "] = " + std::to_string(targets.data[r]) +
                  " is out of range for vocab " + std::to_string(vocab));
  const double loss = cuda::cross_entropy(rows, vocab, logits.data, targets.data, dlogits.data, losses.data, scale);
  return Napi::Number::New(info.Env(), loss);
}

// ---- attention ----------------------------------------------------------------------------------

Work bind_attention_forward(Args& args) {
  cuda::require_device();
  cuda::AttentionShape s;
  s.batch = args.integer("batch", 1);
  s.tq = args.integer("tq", 1);
  s.tk = args.integer("tk", 1);
  if (s.tk < s.tq)
    range_error(args.where("tk") + " (" + std::to_string(s.tk) + ") must be at least tq (" + std::to_string(s.tq) +
                "): the queries are the last tq of the tk positions");
  s.n_heads_total = args.integer("nHeads", 1);
  s.heads_per_expert = args.integer("headsPerExpert", 1);
  s.kv_heads = args.integer("kvHeads", 1);
  s.head_dim = args.integer("headDim", 1, cuda::kMaxAttentionHeadDim);
  if (s.n_heads_total % s.heads_per_expert != 0)
    range_error(args.where("headsPerExpert") + " (" + std::to_string(s.heads_per_expert) + ") must divide nHeads (" +
                std::to_string(s.n_heads_total) + ")");
  if (s.heads_per_expert % s.kv_heads != 0)
    range_error(args.where("kvHeads") + " (" + std::to_string(s.kv_heads) + ") must divide headsPerExpert (" +
                std::to_string(s.heads_per_expert) + ")");
  if (s.n_heads_total > 65535 || s.batch > 65535)
    range_error(args.where("nHeads") + " and batch must be at most 65535 on CUDA");
  const double scale = args.number_or("scale", 1.0 / std::sqrt(static_cast<double>(s.head_dim)));
  s.scale = static_cast<float>(scale);
  if (!std::isfinite(s.scale)) range_error(args.where("scale") + " must be finite in fp32");
  const std::string wq = args.where("q"), wk = args.where("k"), wl = args.where("lse");
  const int64_t nq = checked_mul(checked_mul(checked_mul(s.batch, s.tq, wq), s.n_heads_total, wq), s.head_dim, wq);
  const int64_t nkv = checked_mul(checked_mul(checked_mul(s.batch, s.tk, wk), s.kv_heads, wk), s.head_dim, wk);
  const int64_t nl = checked_mul(checked_mul(s.batch, s.n_heads_total, wl), s.tq, wl);
  auto q = args.f32_in("q", nq);
  auto k = args.f32_in("k", nkv);
  auto v = args.f32_in("v", nkv);
  auto out = args.f32("out", nq);
  auto lse = args.f32("lse", nl);
  return [=] { cuda::attention_forward(s, q.data, k.data, v.data, out.data, lse.data); };
}

// ---- benchmarks ---------------------------------------------------------------------------------

int reps_arg(Args& args) { return static_cast<int>(args.integer_or("reps", 10, 1, 100000)); }

// cudaBenchGemm({m, n, k, reps=10}) -> seconds per bf16 GEMM (A [m,k] · B [n,k]ᵀ, fp32 out), CUDA events
Napi::Value cuda_bench_gemm(const Napi::CallbackInfo& info) {
  Args args(info, "cudaBenchGemm");
  cuda::require_device();
  const int64_t m = args.integer("m", 1), n = args.integer("n", 1), k = args.integer("k", 1);
  return Napi::Number::New(info.Env(), cuda::bench_gemm(m, n, k, reps_arg(args)));
}

// cudaBenchGroupedGemm({experts, offsets [E+1], n, k, reps=10}) -> seconds per launch (bf16, transW)
Napi::Value cuda_bench_grouped_gemm(const Napi::CallbackInfo& info) {
  Args args(info, "cudaBenchGroupedGemm");
  cuda::require_device();
  const int64_t experts = args.integer("experts", 1);
  const int64_t n = args.integer("n", 1), k = args.integer("k", 1);
  Index off = group_offsets(args, experts);
  return Napi::Number::New(info.Env(), cuda::bench_grouped_gemm(experts, off->data(), n, k, reps_arg(args)));
}

// cudaBenchMemcpy({bytes, reps=10}) -> seconds per device-to-device cudaMemcpy of `bytes`
Napi::Value cuda_bench_memcpy(const Napi::CallbackInfo& info) {
  Args args(info, "cudaBenchMemcpy");
  cuda::require_device();
  const int64_t bytes = args.integer("bytes", 1, std::numeric_limits<int64_t>::max() / 4);
  return Napi::Number::New(info.Env(), cuda::bench_memcpy(bytes, reps_arg(args)));
}

}  // namespace

void register_cuda(Napi::Env env, Napi::Object exports) {
  export_function(env, exports, "cudaInfo", cuda_info);
  export_kernel(env, exports, "cudaGemm", bind_gemm);
  export_kernel(env, exports, "cudaGroupedGemm", bind_grouped_gemm);
  export_kernel(env, exports, "cudaRouterSoftmax", bind_router_softmax);
  export_kernel(env, exports, "cudaRouteTopk", bind_route_topk);
  export_kernel(env, exports, "cudaGroupByExpert", bind_group_by_expert);
  export_kernel(env, exports, "cudaGatherRows", bind_gather_rows);
  export_kernel(env, exports, "cudaCombine", bind_combine);
  export_kernel(env, exports, "cudaRmsnormForward", bind_rmsnorm_forward);
  export_kernel(env, exports, "cudaRmsnormBackward", bind_rmsnorm_backward);
  export_kernel(env, exports, "cudaRopeForward", bind_rope_forward);
  export_kernel(env, exports, "cudaGeluForward", bind_gelu_forward);
  export_kernel(env, exports, "cudaGeluBackward", bind_gelu_backward);
  export_kernel(env, exports, "cudaAdamwUpdate", bind_adamw_update);
  export_function(env, exports, "cudaCrossEntropy", cuda_cross_entropy);
  export_kernel(env, exports, "cudaAttentionForward", bind_attention_forward);
  export_function(env, exports, "cudaBenchGemm", cuda_bench_gemm);
  export_function(env, exports, "cudaBenchGroupedGemm", cuda_bench_grouped_gemm);
  export_function(env, exports, "cudaBenchMemcpy", cuda_bench_memcpy);
}

}  // namespace dsmoe::bind
