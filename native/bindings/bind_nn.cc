// Bindings of the nn kernels (kernels/cpu/nn.h). Kernels that only write buffers are exported with
// export_kernel (sync + Async); the three that return a number (crossEntropy, gradNorm,
// clipGradNorm) with export_function (synchronous only).
#include <cmath>
#include <limits>
#include <sstream>
#include <vector>

#include "../kernels/cpu/nn.h"
#include "register.h"

namespace dsmoe::bind {
namespace {

constexpr int64_t kMaxSize = std::numeric_limits<int64_t>::max() / 4;

// Shortest form of a double for messages (to_string would print 1e-8 as 0.000000).
std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// Range-checked numbers; errors name the argument.
double positive(Args& args, const char* name) {
  const double v = args.number(name);
  if (!(v > 0)) range_error(args.where(name) + " must be > 0, got " + num(v));
  return v;
}

double non_negative(Args& args, const char* name) {
  const double v = args.number(name);
  if (!(v >= 0)) range_error(args.where(name) + " must be >= 0, got " + num(v));
  return v;
}

double beta(Args& args, const char* name) {
  const double v = args.number(name);
  if (!(v >= 0 && v < 1)) range_error(args.where(name) + " must be in [0, 1), got " + num(v));
  return v;
}

cpu::GeluKind gelu_kind(Args& args) {
  if (!args.has("approximate")) return cpu::GeluKind::Erf;
  const std::string s = args.string("approximate");
  if (s == "erf") return cpu::GeluKind::Erf;
  if (s == "tanh") return cpu::GeluKind::Tanh;
  range_error(args.where("approximate") + " must be 'erf' or 'tanh', got '" + s + "'");
}

// head_dim even and ≥ 2, positions [rows] all ≥ 0.
struct RopeShape {
  int64_t rows, heads, head_dim, elems;
  double theta;
  View<int32_t> positions;
};

RopeShape rope_shape(Args& args) {
  RopeShape s;
  s.rows = args.integer("rows", 0);
  s.heads = args.integer("heads", 0);
  s.head_dim = args.integer("headDim", 2);
  if (s.head_dim % 2 != 0) range_error(args.where("headDim") + " must be even, got " + std::to_string(s.head_dim));
  s.theta = positive(args, "theta");
  s.elems = checked_mul(s.rows, checked_mul(s.heads, s.head_dim, args.where("x")), args.where("x"));
  s.positions = args.i32("positions", s.rows);
  for (int64_t r = 0; r < s.rows; ++r)
    if (s.positions.data[r] < 0)
      range_error(args.where("positions") + "[" + std::to_string(r) + "] must be >= 0, got " +
                  std::to_string(s.positions.data[r]));
  return s;
}

// rmsnormForward({rows, dim, x [rows, dim], w [dim], eps, y [rows, dim], rstd? [rows]})
Work bind_rmsnorm_forward(Args& args) {
  const int64_t rows = args.integer("rows", 0), dim = args.integer("dim", 1);
  const float eps = static_cast<float>(positive(args, "eps"));
  const int64_t n = checked_mul(rows, dim, args.where("x"));
  auto x = args.f32_in("x", n);
  auto w = args.f32_in("w", dim);
  auto y = args.f32("y", n);
  auto rstd = args.f32_opt("rstd", rows);
  return [=] { cpu::rmsnorm_forward(rows, dim, x.data, w.data, eps, y.data, rstd.data); };
}

// rmsnormBackward({rows, dim, x, w, rstd, dy, dx, dw, accumulateDw=false})
Work bind_rmsnorm_backward(Args& args) {
  const int64_t rows = args.integer("rows", 0), dim = args.integer("dim", 1);
  const int64_t n = checked_mul(rows, dim, args.where("x"));
  auto x = args.f32_in("x", n);
  auto w = args.f32_in("w", dim);
  auto rstd = args.f32_in("rstd", rows);
  auto dy = args.f32_in("dy", n);
  auto dx = args.f32("dx", n);
  auto dw = args.f32("dw", dim);
  const bool acc = args.boolean_or("accumulateDw", false);
  return [=] { cpu::rmsnorm_backward(rows, dim, x.data, w.data, rstd.data, dy.data, dx.data, dw.data, acc); };
}

// ropeForward({rows, heads, headDim, theta, positions [rows], x [rows, heads, headDim], out?})
Work bind_rope_forward(Args& args) {
  const RopeShape s = rope_shape(args);
  auto x = args.f32("x", s.elems);
  auto out = args.has("out") ? args.f32("out", s.elems) : x;  // in place by default
  return [=] { cpu::rope_forward(s.rows, s.heads, s.head_dim, s.theta, s.positions.data, x.data, out.data); };
}

// ropeBackward({rows, heads, headDim, theta, positions, dy, dx?})
Work bind_rope_backward(Args& args) {
  const RopeShape s = rope_shape(args);
  auto dy = args.f32("dy", s.elems);
  auto dx = args.has("dx") ? args.f32("dx", s.elems) : dy;
  return [=] { cpu::rope_backward(s.rows, s.heads, s.head_dim, s.theta, s.positions.data, dy.data, dx.data); };
}

// geluForward({n, x, y, approximate='erf'})
Work bind_gelu_forward(Args& args) {
  const int64_t n = args.integer("n", 0, kMaxSize);
  const cpu::GeluKind kind = gelu_kind(args);
  auto x = args.f32_in("x", n);
  auto y = args.f32("y", n);
  return [=] { cpu::gelu_forward(n, x.data, y.data, kind); };
}

// geluBackward({n, x, dy, dx, approximate='erf'})
Work bind_gelu_backward(Args& args) {
  const int64_t n = args.integer("n", 0, kMaxSize);
  const cpu::GeluKind kind = gelu_kind(args);
  auto x = args.f32_in("x", n);
  auto dy = args.f32_in("dy", n);
  auto dx = args.f32("dx", n);
  return [=] { cpu::gelu_backward(n, x.data, dy.data, dx.data, kind); };
}

// adamwUpdate({n, param, grad, m, v, lr, beta1, beta2, eps, weightDecay=0, step})
Work bind_adamw_update(Args& args) {
  const int64_t n = args.integer("n", 0, kMaxSize);
  const float lr = static_cast<float>(non_negative(args, "lr"));
  const float b1 = static_cast<float>(beta(args, "beta1")), b2 = static_cast<float>(beta(args, "beta2"));
  const float eps = static_cast<float>(positive(args, "eps"));
  const float wd = static_cast<float>(args.has("weightDecay") ? non_negative(args, "weightDecay") : 0.0);
  const int64_t step = args.integer("step", 1, std::numeric_limits<int64_t>::max() / 2);
  auto param = args.f32("param", n);
  auto grad = args.f32_in("grad", n);
  auto m = args.f32("m", n);
  auto v = args.f32("v", n);
  return [=] { cpu::adamw_update(n, param.data, grad.data, m.data, v.data, lr, b1, b2, eps, wd, step); };
}

// crossEntropy({rows, vocab, logits [rows, vocab], targets [rows], dlogits?, losses? [rows],
//               gradScale=1}) -> mean loss over targets >= 0
Napi::Value cross_entropy(const Napi::CallbackInfo& info) {
  Args args(info, "crossEntropy");
  const int64_t rows = args.integer("rows", 0), vocab = args.integer("vocab", 1);
  const int64_t n = checked_mul(rows, vocab, args.where("logits"));
  auto logits = args.f32_in("logits", n);
  auto targets = args.i32("targets", rows);
  auto dlogits = args.f32_opt("dlogits", n);
  auto losses = args.f32_opt("losses", rows);
  const float scale = static_cast<float>(args.number_or("gradScale", 1.0));
  // Checked before running: an out-of-range target would read outside the row.
  for (int64_t r = 0; r < rows; ++r)
    if (targets.data[r] >= vocab)
      range_error(args.where("targets") + "[" + std::to_string(r) + "] = " + std::to_string(targets.data[r]) +
                  " is out of range for vocab " + std::to_string(vocab));
  const double loss = cpu::cross_entropy(rows, vocab, logits.data, targets.data, dlogits.data, losses.data, scale);
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
