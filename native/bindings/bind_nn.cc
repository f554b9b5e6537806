// Bindings of the nn ops: Backend ops (backend.h) on the `device` argument's backend (stage.h). Kernels
// that only write buffers are exported with export_kernel (sync + Async); the three that return a
// number (crossEntropy, gradNorm, clipGradNorm) with export_function (synchronous only). Every one
// also takes `device` ('cpu' by default).
#include <cmath>
#include <limits>
#include <sstream>
#include <vector>

#include "../kernels/cpu/nn.h"
#include "op_args.h"
#include "register.h"
#include "stage.h"

namespace dsmoe::bind {
namespace {

// Every op's arguments are read by op_args.h; these binders run the backend's op on them.
cpu::GeluKind gelu_kind(bool tanh) { return tanh ? cpu::GeluKind::Tanh : cpu::GeluKind::Erf; }

// rmsnormForward({rows, dim, x [rows, dim], w [dim], eps, y [rows, dim], rstd? [rows]})
Work bind_rmsnorm_forward(Args& args) {
  const RmsnormForwardArgs a = read_rmsnorm_forward(args);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    const int64_t n = a.rows * a.dim;
    st.be.rmsnorm_forward(a.rows, a.dim, st.in(a.x.data, n), st.in(a.w.data, a.dim), a.eps, st.out(a.y.data, n),
                          st.out(a.rstd.data, a.rows));
    st.finish();
  };
}

// rmsnormBackward({rows, dim, x, w, rstd, dy, dx, dw, accumulateDw=false})
Work bind_rmsnorm_backward(Args& args) {
  const RmsnormBackwardArgs a = read_rmsnorm_backward(args);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    const int64_t n = a.rows * a.dim;
    st.be.rmsnorm_backward(a.rows, a.dim, st.in(a.x.data, n), st.in(a.w.data, a.dim), st.in(a.rstd.data, a.rows),
                           st.in(a.dy.data, n), st.out(a.dx.data, n), st.out(a.dw.data, a.dim), a.accumulate_dw);
    st.finish();
  };
}

// ropeForward({rows, heads, headDim, theta, positions [rows], x [rows, heads, headDim], out?})
Work bind_rope_forward(Args& args) {
  const RopeShape s = read_rope_shape(args);
  auto x = args.f32("x", s.elems);
  auto out = args.has("out") ? args.f32("out", s.elems) : x;  // in place by default
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.rope_forward(s.rows, s.heads, s.head_dim, s.theta, st.in(s.positions.data, s.rows), st.in(x.data, s.elems),
                       st.out(out.data, s.elems));
    st.finish();
  };
}

// ropeBackward({rows, heads, headDim, theta, positions, dy, dx?})
Work bind_rope_backward(Args& args) {
  const RopeShape s = read_rope_shape(args);
  auto dy = args.f32("dy", s.elems);
  auto dx = args.has("dx") ? args.f32("dx", s.elems) : dy;
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.rope_backward(s.rows, s.heads, s.head_dim, s.theta, st.in(s.positions.data, s.rows),
                        st.in(dy.data, s.elems), st.out(dx.data, s.elems));
    st.finish();
  };
}

// geluForward({n, x, y, approximate='erf'})
Work bind_gelu_forward(Args& args) {
  const GeluArgs g = read_gelu(args, false);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.gelu_forward(g.n, st.in(g.x.data, g.n), st.out(g.out.data, g.n), gelu_kind(g.tanh));
    st.finish();
  };
}

// geluBackward({n, x, dy, dx, approximate='erf'})
Work bind_gelu_backward(Args& args) {
  const GeluArgs g = read_gelu(args, true);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.gelu_backward(g.n, st.in(g.x.data, g.n), st.in(g.dy.data, g.n), st.out(g.out.data, g.n), gelu_kind(g.tanh));
    st.finish();
  };
}

// adamwUpdate({n, param, grad, m, v, lr, beta1, beta2, eps, weightDecay=0, step})
Work bind_adamw_update(Args& args) {
  const AdamwArgs a = read_adamw(args);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.adamw_update(a.n, st.out(a.param.data, a.n), st.in(a.grad.data, a.n), st.out(a.m.data, a.n),
                       st.out(a.v.data, a.n), a.lr, a.beta1, a.beta2, a.eps, a.weight_decay, a.step);
    st.finish();
  };
}

// crossEntropy({rows, vocab, logits [rows, vocab], targets [rows], dlogits?, losses? [rows],
//               gradScale=1}) -> mean loss over targets >= 0 (targets are checked before running:
//               an out-of-range one would read outside its row)
Napi::Value cross_entropy(const Napi::CallbackInfo& info) {
  Args args(info, "crossEntropy");
  const CrossEntropyArgs c = read_cross_entropy(args);
  const backend::Device device = read_device(args);
  Stage st(device);
  const int64_t n = c.rows * c.vocab;
  const double loss = st.be.cross_entropy(c.rows, c.vocab, st.in(c.logits.data, n), st.in(c.targets.data, c.rows),
                                          st.out(c.dlogits.data, n), st.out(c.losses.data, c.rows), c.grad_scale);
  st.finish();
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

double global_norm(Stage& st, const std::vector<View<float>>& ts) {
  double ss = 0;
  for (const auto& t : ts) ss += st.be.sum_squares(t.size, st.in(t.data, t.size));  // tensor order: reproducible
  return std::sqrt(ss);
}

// gradNorm({tensors: Float32Array[], device?}) -> √(Σ over all tensors of Σ x²)
Napi::Value grad_norm(const Napi::CallbackInfo& info) {
  Args args(info, "gradNorm");
  const auto ts = f32_list(info, args, "tensors");
  Stage st(read_device(args));
  return Napi::Number::New(info.Env(), global_norm(st, ts));
}

// clipGradNorm({tensors, maxNorm, device?}) -> the norm before clipping. When it exceeds maxNorm every
// tensor is scaled by maxNorm/norm. A non-finite norm leaves the tensors as they are (the caller
// sees it and skips the step).
Napi::Value clip_grad_norm(const Napi::CallbackInfo& info) {
  Args args(info, "clipGradNorm");
  const double max_norm = positive(args, "maxNorm");
  const auto ts = f32_list(info, args, "tensors");
  Stage st(read_device(args));
  const double norm = global_norm(st, ts);
  if (std::isfinite(norm) && norm > max_norm) {
    const float s = static_cast<float>(max_norm / norm);
    for (const auto& t : ts) st.be.scale_inplace(t.size, st.out(t.data, t.size), s);
    st.finish();
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
