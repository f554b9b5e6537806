// Bindings of the CUDA backend (native/cuda/api.h): cudaInfo(), the cudaXxx kernels with the same
// named arguments as their CPU counterparts (host typed arrays: copy in, run, copy out), and the
// cudaBenchXxx timers. Compiled in every build: without DSMOE_WITH_CUDA, cuda_absent.cc supplies an
// info() that says why and every kernel throws "no usable CUDA device: ...". The device check comes
// first, then the same argument checks as the CPU bindings (op_args.h); index arrays are checked and copied.
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "../cuda/api.h"
#include "index_args.h"
#include "op_args.h"
#include "register.h"

#ifndef DSMOE_CUDA_OPTION
#define DSMOE_CUDA_OPTION "off"
#endif

namespace dsmoe::bind {
namespace {

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

// ---- kernels: the CPU bindings' argument rules (op_args.h), then the CUDA kernel ------------------
// The device check comes first: without a GPU every call says why, whatever its arguments.

Work bind_gemm(Args& args) {
  cuda::require_device();
  const GemmArgs g = read_gemm(args);
  return [=] {
    cuda::gemm(g.ta, g.tb, g.m, g.n, g.k, g.alpha, g.a.data, g.lda, g.a_elems, g.b.data, g.b_bf16, g.ldb, g.b_elems,
        g.beta,
               g.c.data, g.ldc, g.c_elems);
  };
}

Work bind_grouped_gemm(Args& args) {
  cuda::require_device();
  const GroupedGemmArgs g = read_grouped_gemm(args);
  return [=] { cuda::grouped_gemm(g.experts, g.offsets->data(), g.x.data, g.w.data, g.w_bf16, g.trans_w, g.n, g.k,
      g.beta, g.y.data); };
}

Work bind_router_softmax(Args& args) {
  cuda::require_device();
  const RouterSoftmaxArgs r = read_router_softmax(args);
  return [=] { cuda::router_softmax(r.t, r.experts, r.logits.data, r.probs.data); };
}

Work bind_route_topk(Args& args) {
  cuda::require_device();
  const RouteTopkArgs r = read_route_topk(args);
  return [=] { cuda::route_topk(r.t, r.experts, r.probs.data, r.k, r.out.token.data, r.out.expert.data,
      r.out.weight.data); };
}

Work bind_group_by_expert(Args& args) {
  cuda::require_device();
  const GroupByExpertArgs g = read_group_by_expert(args);
  return [=] { cuda::group_by_expert(g.pairs, g.experts, g.pair_expert->data(), g.offsets.data, g.order.data,
      g.position.data); };
}

Work bind_gather_rows(Args& args) {
  cuda::require_device();
  const GatherRowsArgs g = read_gather_rows(args);
  return [=] { cuda::gather_rows(g.t, g.pairs, g.d, g.x.data, g.pair_token->data(), g.order->data(), g.xg.data); };
}

Work bind_combine(Args& args) {
  cuda::require_device();
  const CombineArgs c = read_combine(args);
  return [=] {
    cuda::combine(c.t, c.pairs, c.n, c.yg.data, c.pair_token->data(), c.weight.data, c.position->data(), c.y.data,
        c.beta);
  };
}

Work bind_rmsnorm_forward(Args& args) {
  cuda::require_device();
  const RmsnormForwardArgs a = read_rmsnorm_forward(args);
  return [=] { cuda::rmsnorm_forward(a.rows, a.dim, a.x.data, a.w.data, a.eps, a.y.data, a.rstd.data); };
}

Work bind_rmsnorm_backward(Args& args) {
  cuda::require_device();
  const RmsnormBackwardArgs a = read_rmsnorm_backward(args);
  return [=] {
    cuda::rmsnorm_backward(a.rows, a.dim, a.x.data, a.w.data, a.rstd.data, a.dy.data, a.dx.data, a.dw.data,
        a.accumulate_dw);
  };
}

Work bind_rope_forward(Args& args) {
  cuda::require_device();
  const RopeShape s = read_rope_shape(args);
  auto x = args.f32("x", s.elems);
  auto out = args.has("out") ? args.f32("out", s.elems) : x;
  return [=] { cuda::rope_forward(s.rows, s.heads, s.head_dim, s.theta, s.positions.data, x.data, out.data); };
}

Work bind_gelu_forward(Args& args) {
  cuda::require_device();
  const GeluArgs g = read_gelu(args, false);
  return [=] { cuda::gelu_forward(g.n, g.x.data, g.out.data, g.tanh); };
}

Work bind_gelu_backward(Args& args) {
  cuda::require_device();
  const GeluArgs g = read_gelu(args, true);
  return [=] { cuda::gelu_backward(g.n, g.x.data, g.dy.data, g.out.data, g.tanh); };
}

Work bind_adamw_update(Args& args) {
  cuda::require_device();
  const AdamwArgs a = read_adamw(args);
  return [=] {
    cuda::adamw_update(a.n, a.param.data, a.grad.data, a.m.data, a.v.data, a.lr, a.beta1, a.beta2, a.eps,
        a.weight_decay, a.step);
  };
}

Napi::Value cuda_cross_entropy(const Napi::CallbackInfo& info) {
  Args args(info, "cudaCrossEntropy");
  cuda::require_device();
  const CrossEntropyArgs c = read_cross_entropy(args);
  const double loss = cuda::cross_entropy(c.rows, c.vocab, c.logits.data, c.targets.data, c.dlogits.data, c.losses.data,
                                          c.grad_scale);
  return Napi::Number::New(info.Env(), loss);
}

Work bind_attention_forward(Args& args) {
  cuda::require_device();
  const AttentionShapes sh = read_attention_shapes(args);
  // Device limits on top of the shared rules: the head is one tile, grid y/z are ≤ 65535.
  if (sh.s.head_dim > cuda::kMaxAttentionHeadDim)
    range_error(args.where("headDim") + " must be at most " + std::to_string(cuda::kMaxAttentionHeadDim)
        + " on CUDA, got " +
                std::to_string(sh.s.head_dim));
  if (sh.s.n_heads_total > 65535 || sh.s.batch > 65535)
    range_error(args.where("nHeads") + " and batch must be at most 65535 on CUDA");
  cuda::AttentionShape s;
  s.batch = sh.s.batch; s.tq = sh.s.tq; s.tk = sh.s.tk; s.n_heads_total = sh.s.n_heads_total;
  s.heads_per_expert = sh.s.heads_per_expert; s.kv_heads = sh.s.kv_heads; s.head_dim = sh.s.head_dim;
  s.scale = sh.s.scale;
  auto q = args.f32_in("q", sh.q_elems);
  auto k = args.f32_in("k", sh.kv_elems);
  auto v = args.f32_in("v", sh.kv_elems);
  auto out = args.f32("out", sh.q_elems);
  auto lse = args.f32("lse", sh.lse_elems);
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
