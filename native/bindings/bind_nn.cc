// Bindings of the nn kernels (kernels/cpu/nn.h). Kernels that only write buffers are exported with
// export_kernel (sync + Async); the three that return a number (crossEntropy, gradNorm,
// clipGradNorm) with export_function (synchronous only).
#include <cmath>
#include <limits>
#include <sstream>
#include <vector>

#include "../kernels/cpu/nn.h"
#include "op_args.h"
#include "register.h"

namespace dsmoe::bind {
namespace {

// Every op's arguments are read by op_args.h (shared with the CUDA bindings); these binders run
// the CPU kernels on them.
cpu::GeluKind gelu_kind(bool tanh) { return tanh ? cpu::GeluKind::Tanh : cpu::GeluKind::Erf; }

// rmsnormForward({rows, dim, x [rows, dim], w [dim], eps, y [rows, dim], rstd? [rows]})
Work bind_rmsnorm_forward(Args& args) {
  const RmsnormForwardArgs a = read_rmsnorm_forward(args);
  return [=] { cpu::rmsnorm_forward(a.rows, a.dim, a.x.data, a.w.data, a.eps, a.y.data, a.rstd.data); };
}

// rmsnormBackward({rows, dim, x, w, rstd, dy, dx, dw, accumulateDw=false})
Work bind_rmsnorm_backward(Args& args) {
  const RmsnormBackwardArgs a = read_rmsnorm_backward(args);
  return [=] {
    cpu::rmsnorm_backward(a.rows, a.dim, a.x.data, a.w.data, a.rstd.data, a.dy.data, a.dx.data, a.dw.data,
        a.accumulate_dw);
  };
}

// ropeForward({rows, heads, headDim, theta, positions [rows], x [rows, heads, headDim], out?})
Work bind_rope_forward(Args& args) {
  const RopeShape s = read_rope_shape(args);
  auto x = args.f32("x", s.elems);
  auto out = args.has("out") ? args.f32("out", s.elems) : x;  // in place by default
  return [=] { cpu::rope_forward(s.rows, s.heads, s.head_dim, s.theta, s.positions.data, x.data, out.data); };
}

// ropeBackward({rows, heads, headDim, theta, positions, dy, dx?})
Work bind_rope_backward(Args& args) {
  const RopeShape s = read_rope_shape(args);
  auto dy = args.f32("dy", s.elems);
  auto dx = args.has("dx") ? args.f32("dx", s.elems) : dy;
  return [=] { cpu::rope_backward(s.rows, s.heads, s.head_dim, s.theta, s.positions.data, dy.data, dx.data); };
}

// geluForward({n, x, y, approximate='erf'})
Work bind_gelu_forward(Args& args) {
  const GeluArgs g = read_gelu(args, false);
  return [=] { cpu::gelu_forward(g.n, g.x.data, g.out.data, gelu_kind(g.tanh)); };
}

// geluBackward({n, x, dy, dx, approximate='erf'})
Work bind_gelu_backward(Args& args) {
  const GeluArgs g = read_gelu(args, true);
  return [=] { cpu::gelu_backward(g.n, g.x.data, g.dy.data, g.out.data, gelu_kind(g.tanh)); };
}

// adamwUpdate({n, param, grad, m, v, lr, beta1, beta2, eps, weightDecay=0, step})
Work bind_adamw_update(Args& args) {
  const AdamwArgs a = read_adamw(args);
  return [=] {
    cpu::adamw_update(a.n, a.param.data, a.grad.data, a.m.data, a.v.data, a.lr, a.beta1, a.beta2, a.eps, a.weight_decay,
        a.step);
  };
}

// crossEntropy({rows, vocab, logits [rows, vocab], targets [rows], dlogits?, losses? [rows],
//               gradScale=1}) -> mean loss over targets >= 0 (targets are checked before running:
//               an out-of-range one would read outside its row)
Napi::Value cross_entropy(const Napi::CallbackInfo& info) {
  Args args(info, "crossEntropy");
  const CrossEntropyArgs c = read_cross_entropy(args);
  const double loss = cpu::cross_entropy(c.rows, c.vocab, c.logits.data, c.targets.data, c.dlogits.data, c.losses.data,
                                         c.grad_scale);
  return Napi::Number::New(info.Env(), loss);
}

// The Float32Arrays of an array argument (gradNorm's tensors), each named tensors[i] in errors.
std::vector<View<float>> f32_list(const Napi::CallbackInfo& info, Args& args, const char* name) {
  Napi::Value v = info[0].As<Napi::Object>().Get(name);  // Args checked info[0] is an object
  if (!v.IsArray()) type_error(args.where(name) + " must be an array of Float32Array");
  Napi::Array arr = v.As<Napi::Array>();
  std::vector<View<float>> out;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value e = arr.Get(i);
    if (!e.IsTypedArray() || e.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      type_error(args.where(name) + "[" + std::to_string(i) + "] must be a Float32Array");
    Napi::Float32Array f = e.As<Napi::Float32Array>();
    out.push_back({f.Data(), static_cast<int64_t>(f.ElementLength())});
  }
  return out;
}

double global_norm(const std::vector<View<float>>& ts) {
  double ss = 0;
  for (const auto& t : ts) ss += cpu::sum_squares(t.size, t.data);  // tensor order: reproducible
  return std::sqrt(ss);
}

// gradNorm({tensors: Float32Array[]}) -> √(Σ over all tensors of Σ x²)
Napi::Value grad_norm(const Napi::CallbackInfo& info) {
  Args args(info, "gradNorm");
  return Napi::Number::New(info.Env(), global_norm(f32_list(info, args, "tensors")));
}

// clipGradNorm({tensors, maxNorm}) -> the norm before clipping. When it exceeds maxNorm every
// tensor is scaled by maxNorm/norm. A non-finite norm leaves the tensors as they are (the caller
// sees it and skips the step).
Napi::Value clip_grad_norm(const Napi::CallbackInfo& info) {
  Args args(info, "clipGradNorm");
  const double max_norm = positive(args, "maxNorm");
  const auto ts = f32_list(info, args, "tensors");
  const double norm = global_norm(ts);
  if (std::isfinite(norm) && norm > max_norm) {
    const float s = static_cast<float>(max_norm / norm);
    for (const auto& t : ts) cpu::scale_inplace(t.size, t.data, s);
  }
  return Napi::Number::New(info.Env(), norm);
}

}  // namespace

void register_nn(Napi::Env env, Napi::Object exports) {
  export_kernel(env, exports, "rmsnormForward", bind_rmsnorm_forward);
  export_kernel(env, exports, "rmsnormBackward", bind_rmsnorm_backward);
  export_kernel(env, exports, "ropeForward", bind_rope_forward);
  export_kernel(env, exports, "ropeBackward", bind_rope_backward);
  export_kernel(env, exports, "geluForward", bind_gelu_forward);
  export_kernel(env, exports, "geluBackward", bind_gelu_backward);
  export_kernel(env, exports, "adamwUpdate", bind_adamw_update);
  export_function(env, exports, "crossEntropy", cross_entropy);
  export_function(env, exports, "gradNorm", grad_norm);
  export_function(env, exports, "clipGradNorm", clip_grad_norm);
}

}  // namespace dsmoe::bind
