// The checked arguments of each op, read once for every backend: the CPU binders (bind_gemm.cc,
// bind_routing.cc, bind_nn.cc, bind_attention.cc) and the CUDA binders (bind_cuda.cc) call the same
// read_<op>() and differ only in the kernel they run. One op, one set of argument rules and
// messages, several backends (DESIGN.md §2).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>

#include "../kernels/cpu/attention.h"
#include "args.h"
#include "index_args.h"

namespace dsmoe::bind {

constexpr int64_t kMaxElems = std::numeric_limits<int64_t>::max() / 4;

// Shortest form of a double for messages (to_string would print 1e-8 as 0.000000).
inline std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// Range-checked numbers; errors name the argument.
inline double positive(Args& args, const char* name) {
  const double v = args.number(name);
  if (!(v > 0)) range_error(args.where(name) + " must be > 0, got " + num(v));
  return v;
}
inline double non_negative(Args& args, const char* name) {
  const double v = args.number(name);
  if (!(v >= 0)) range_error(args.where(name) + " must be >= 0, got " + num(v));
  return v;
}
inline double unit_interval(Args& args, const char* name) {  // [0, 1): Adam's betas
  const double v = args.number(name);
  if (!(v >= 0 && v < 1)) range_error(args.where(name) + " must be in [0, 1), got " + num(v));
  return v;
}

// ---- GEMM ---------------------------------------------------------------------------------------

// gemm({transA, transB, m, n, k, alpha=1, beta=0, a, lda?, b (f32|bf16), ldb?, c, ldc?})
// Stored shapes: A [m, k] or [k, m]; B [k, n] or [n, k]; C [m, n].
struct GemmArgs {
  bool ta, tb, b_bf16 = false;
  int64_t m, n, k, lda, ldb, ldc, a_elems, b_elems, c_elems;
  float alpha, beta;
  View<const float> a;
  View<const void> b;
  View<float> c;
};
inline GemmArgs read_gemm(Args& args) {
  GemmArgs g;
  g.ta = args.boolean_or("transA", false);
  g.tb = args.boolean_or("transB", false);
  g.m = args.integer("m", 0);
  g.n = args.integer("n", 0);
  g.k = args.integer("k", 0);
  g.alpha = static_cast<float>(args.number_or("alpha", 1.0));
  g.beta = static_cast<float>(args.number_or("beta", 0.0));
  const int64_t a_rows = g.ta ? g.k : g.m, a_cols = g.ta ? g.m : g.k;
  const int64_t b_rows = g.tb ? g.n : g.k, b_cols = g.tb ? g.k : g.n;
  g.lda = args.integer_or("lda", a_cols, 1);
  g.ldb = args.integer_or("ldb", b_cols, 1);
  g.ldc = args.integer_or("ldc", g.n, 1);
  g.a_elems = Args::matrix_elems(a_rows, a_cols, g.lda, args.where("a"));
  g.b_elems = Args::matrix_elems(b_rows, b_cols, g.ldb, args.where("b"));
  g.c_elems = Args::matrix_elems(g.m, g.n, g.ldc, args.where("c"));
  g.a = args.f32_in("a", g.a_elems);
  g.b = args.f32_or_bf16("b", g.b_elems, &g.b_bf16);
  g.c = args.f32("c", g.c_elems);
  return g;
}

// offsets [experts + 1]: 0, non-decreasing; checked and copied (rows = back()).
inline Index group_offsets(Args& args, int64_t experts) {
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

// groupedGemm({experts, offsets [E+1], x [R, k], w [E, n, k] (transW) or [E, k, n], n, k, transW=true,
//              beta=0, y [R, n]})   (w: Float32Array or bf16 Uint16Array)
struct GroupedGemmArgs {
  int64_t experts, n, k, rows;
  bool trans_w, w_bf16 = false;
  float beta;
  Index offsets;
  View<const float> x;
  View<const void> w;
  View<float> y;
};
inline GroupedGemmArgs read_grouped_gemm(Args& args) {
  GroupedGemmArgs g;
  g.experts = args.integer("experts", 1);
  g.n = args.integer("n", 0);
  g.k = args.integer("k", 0);
  g.trans_w = args.boolean_or("transW", true);
  g.beta = static_cast<float>(args.number_or("beta", 0.0));
  g.offsets = group_offsets(args, g.experts);
  g.rows = g.offsets->back();
  g.x = args.f32_in("x", checked_mul(g.rows, g.k, args.where("x")));
  g.w = args.f32_or_bf16("w", checked_mul(g.experts, checked_mul(g.n, g.k, args.where("w")), args.where("w")),
      &g.w_bf16);
  g.y = args.f32("y", checked_mul(g.rows, g.n, args.where("y")));
  return g;
}

// ---- routing ------------------------------------------------------------------------------------

inline int64_t read_tokens(Args& args) { return args.integer("t", 0); }
inline int64_t read_experts(Args& args) { return args.integer("experts", 1); }
inline int64_t read_pairs(Args& args) { return args.integer("pairs", 0, kMaxPairs); }

// t·experts, the size of a score matrix and the most pairs a routing can make (must fit int32).
inline int64_t score_elems(Args& args, int64_t T, int64_t E) {
  const int64_t n = checked_mul(T, E, args.where("t·experts"));
  if (n > kMaxPairs) range_error(args.where("t·experts") + " = " + std::to_string(n)
      + " exceeds 2^31 − 1 (pair indices are int32)");
  return n;
}

// routerSoftmax({t, experts, logits [t, E], probs [t, E]})
struct RouterSoftmaxArgs {
  int64_t t, experts;
  View<const float> logits;
  View<float> probs;
};
inline RouterSoftmaxArgs read_router_softmax(Args& args) {
  RouterSoftmaxArgs r;
  r.t = read_tokens(args);
  r.experts = read_experts(args);
  const int64_t n = checked_mul(r.t, r.experts, args.where("probs"));
  r.logits = args.f32_in("logits", n);
  r.probs = args.f32("probs", n);
  return r;
}

// The three output arrays of a routing: pairToken, pairExpert, pairWeight, each [n].
struct PairOutputs {
  View<int32_t> token, expert;
  View<float> weight;
};
inline PairOutputs pair_outputs(Args& args, int64_t n) {
  return {args.i32("pairToken", n), args.i32("pairExpert", n), args.f32("pairWeight", n)};
}

// routeTopk({t, experts, probs [t, E], k in [1, E], pairToken, pairExpert, pairWeight [t·k]})
struct RouteTopkArgs {
  int64_t t, experts, k;
  View<const float> probs;
  PairOutputs out;
};
inline RouteTopkArgs read_route_topk(Args& args) {
  RouteTopkArgs r;
  r.t = read_tokens(args);
  r.experts = read_experts(args);
  const int64_t n = score_elems(args, r.t, r.experts);
  r.k = args.integer("k", 1, r.experts);
  r.probs = args.f32_in("probs", n);
  r.out = pair_outputs(args, r.t * r.k);
  return r;
}

// groupByExpert({pairs, experts, pairExpert [P], offsets [E+1], order [P], position [P]})
struct GroupByExpertArgs {
  int64_t pairs, experts;
  Index pair_expert;
  View<int32_t> offsets, order, position;
};
inline GroupByExpertArgs read_group_by_expert(Args& args) {
  GroupByExpertArgs g;
  g.pairs = read_pairs(args);
  g.experts = read_experts(args);
  g.pair_expert = indices(args, "pairExpert", g.pairs, g.experts);
  g.offsets = args.i32("offsets", g.experts + 1);
  g.order = args.i32("order", g.pairs);
  g.position = args.i32("position", g.pairs);
  return g;
}

// gatherRows({t, pairs, d, x [t, d], pairToken [P], order [P], xg [P, d]})
struct GatherRowsArgs {
  int64_t t, pairs, d;
  View<const float> x;
  Index pair_token, order;
  View<float> xg;
};
inline GatherRowsArgs read_gather_rows(Args& args) {
  GatherRowsArgs g;
  g.t = read_tokens(args);
  g.pairs = read_pairs(args);
  g.d = args.integer("d", 0);
  g.x = args.f32_in("x", checked_mul(g.t, g.d, args.where("x")));
  g.pair_token = pair_tokens(args, "pairToken", g.pairs, g.t);
  g.order = indices(args, "order", g.pairs, g.pairs);
  g.xg = args.f32("xg", checked_mul(g.pairs, g.d, args.where("xg")));
  return g;
}

// combine({t, pairs, n, yg [P, n], pairToken, pairWeight [P], position, y [t, n], beta=0})
struct CombineArgs {
  int64_t t, pairs, n;
  float beta;
  View<const float> yg, weight;
  Index pair_token, position;
  View<float> y;
};
inline CombineArgs read_combine(Args& args) {
  CombineArgs c;
  c.t = read_tokens(args);
  c.pairs = read_pairs(args);
  c.n = args.integer("n", 0);
  c.beta = static_cast<float>(args.number_or("beta", 0.0));
  c.yg = args.f32_in("yg", checked_mul(c.pairs, c.n, args.where("yg")));
  c.pair_token = pair_tokens(args, "pairToken", c.pairs, c.t);
  c.weight = args.f32_in("pairWeight", c.pairs);
  c.position = permutation(args, "position", c.pairs);
  c.y = args.f32("y", checked_mul(c.t, c.n, args.where("y")));
  return c;
}

// ---- nn -----------------------------------------------------------------------------------------

// rmsnormForward({rows, dim, x [rows, dim], w [dim], eps, y [rows, dim], rstd? [rows]})
struct RmsnormForwardArgs {
  int64_t rows, dim;
  float eps;
  View<const float> x, w;
  View<float> y, rstd;
};
inline RmsnormForwardArgs read_rmsnorm_forward(Args& args) {
  RmsnormForwardArgs r;
  r.rows = args.integer("rows", 0);
  r.dim = args.integer("dim", 1);
  r.eps = static_cast<float>(positive(args, "eps"));
  const int64_t n = checked_mul(r.rows, r.dim, args.where("x"));
  r.x = args.f32_in("x", n);
  r.w = args.f32_in("w", r.dim);
  r.y = args.f32("y", n);
  r.rstd = args.f32_opt("rstd", r.rows);
  return r;
}

// rmsnormBackward({rows, dim, x, w, rstd, dy, dx, dw, accumulateDw=false})
struct RmsnormBackwardArgs {
  int64_t rows, dim;
  bool accumulate_dw;
  View<const float> x, w, rstd, dy;
  View<float> dx, dw;
};
inline RmsnormBackwardArgs read_rmsnorm_backward(Args& args) {
  RmsnormBackwardArgs r;
  r.rows = args.integer("rows", 0);
  r.dim = args.integer("dim", 1);
  const int64_t n = checked_mul(r.rows, r.dim, args.where("x"));
  r.x = args.f32_in("x", n);
  r.w = args.f32_in("w", r.dim);
  r.rstd = args.f32_in("rstd", r.rows);
  r.dy = args.f32_in("dy", n);
  r.dx = args.f32("dx", n);
  r.dw = args.f32("dw", r.dim);
  r.accumulate_dw = args.boolean_or("accumulateDw", false);
  return r;
}

// RoPE shape: head_dim even and ≥ 2, positions [rows] all ≥ 0.
struct RopeShape {
  int64_t rows, heads, head_dim, elems;
  double theta;
  View<int32_t> positions;
};
inline RopeShape read_rope_shape(Args& args) {
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

// approximate: 'erf' (default) or 'tanh'; returns true for tanh.
inline bool read_gelu_tanh(Args& args) {
  if (!args.has("approximate")) return false;
  const std::string s = args.string("approximate");
  if (s == "erf") return false;
  if (s == "tanh") return true;
  range_error(args.where("approximate") + " must be 'erf' or 'tanh', got '" + s + "'");
}

// geluForward({n, x, y, approximate='erf'}) and geluBackward({n, x, dy, dx, approximate})
struct GeluArgs {
  int64_t n;
  bool tanh;
  View<const float> x, dy;  // dy: backward only
  View<float> out;          // y (forward) or dx (backward)
};
inline GeluArgs read_gelu(Args& args, bool backward) {
  GeluArgs g;
  g.n = args.integer("n", 0, kMaxElems);
  g.tanh = read_gelu_tanh(args);
  g.x = args.f32_in("x", g.n);
  if (backward) g.dy = args.f32_in("dy", g.n);
  g.out = args.f32(backward ? "dx" : "y", g.n);
  return g;
}

// adamwUpdate({n, param, grad, m, v, lr, beta1, beta2, eps, weightDecay=0, step})
struct AdamwArgs {
  int64_t n, step;
  float lr, beta1, beta2, eps, weight_decay;
  View<float> param, m, v;
  View<const float> grad;
};
inline AdamwArgs read_adamw(Args& args) {
  AdamwArgs a;
  a.n = args.integer("n", 0, kMaxElems);
  a.lr = static_cast<float>(non_negative(args, "lr"));
  a.beta1 = static_cast<float>(unit_interval(args, "beta1"));
  a.beta2 = static_cast<float>(unit_interval(args, "beta2"));
  a.eps = static_cast<float>(positive(args, "eps"));
  a.weight_decay = static_cast<float>(args.has("weightDecay") ? non_negative(args, "weightDecay") : 0.0);
  a.step = args.integer("step", 1, std::numeric_limits<int64_t>::max() / 2);
  a.param = args.f32("param", a.n);
  a.grad = args.f32_in("grad", a.n);
  a.m = args.f32("m", a.n);
  a.v = args.f32("v", a.n);
  return a;
}

// crossEntropy({rows, vocab, logits [rows, vocab], targets [rows], dlogits?, losses? [rows], gradScale=1})
struct CrossEntropyArgs {
  int64_t rows, vocab;
  float grad_scale;
  View<const float> logits;
  View<int32_t> targets;
  View<float> dlogits, losses;
};
inline CrossEntropyArgs read_cross_entropy(Args& args) {
  CrossEntropyArgs c;
  c.rows = args.integer("rows", 0);
  c.vocab = args.integer("vocab", 1);
  const int64_t n = checked_mul(c.rows, c.vocab, args.where("logits"));
  c.logits = args.f32_in("logits", n);
  c.targets = args.i32("targets", c.rows);
  c.dlogits = args.f32_opt("dlogits", n);
  c.losses = args.f32_opt("losses", c.rows);
  c.grad_scale = static_cast<float>(args.number_or("gradScale", 1.0));
  for (int64_t r = 0; r < c.rows; ++r)
    if (c.targets.data[r] >= c.vocab)
      range_error(args.where("targets") + "[" + std::to_string(r) + "] = " + std::to_string(c.targets.data[r]) +
                  " is out of range for vocab " + std::to_string(c.vocab));
  return c;
}

// ---- attention ----------------------------------------------------------------------------------

// The shape arguments of attentionForward/Backward, checked, with the element count of each tensor.
struct AttentionShapes {
  cpu::AttentionShape s;
  int64_t q_elems, kv_elems, lse_elems;  // [B,Tq,Hq,dh], [B,Tk,G,dh], [B,Hq,Tq]
};
inline AttentionShapes read_attention_shapes(Args& args) {
  AttentionShapes r;
  cpu::AttentionShape& s = r.s;
  s.batch = args.integer("batch", 1);
  s.tq = args.integer("tq", 1);
  s.tk = args.integer("tk", 1);
  if (s.tk < s.tq)
    range_error(args.where("tk") + " (" + std::to_string(s.tk) + ") must be at least tq (" + std::to_string(s.tq) +
                "): the queries are the last tq of the tk positions");
  s.n_heads_total = args.integer("nHeads", 1);
  s.heads_per_expert = args.integer("headsPerExpert", 1);
  s.kv_heads = args.integer("kvHeads", 1);
  s.head_dim = args.integer("headDim", 1);
  if (s.n_heads_total % s.heads_per_expert != 0)
    range_error(args.where("headsPerExpert") + " (" + std::to_string(s.heads_per_expert) + ") must divide nHeads (" +
                std::to_string(s.n_heads_total) + "): nHeads = experts · headsPerExpert");
  if (s.heads_per_expert % s.kv_heads != 0)
    range_error(args.where("kvHeads") + " (" + std::to_string(s.kv_heads) + ") must divide headsPerExpert (" +
                std::to_string(s.heads_per_expert) + ")");
  const double scale = args.number_or("scale", 1.0 / std::sqrt(static_cast<double>(s.head_dim)));
  s.scale = static_cast<float>(scale);
  if (!std::isfinite(s.scale)) range_error(args.where("scale") + " must be finite in fp32, got "
      + std::to_string(scale));
  const std::string wq = args.where("q"), wk = args.where("k"), wl = args.where("lse");
  r.q_elems = checked_mul(checked_mul(checked_mul(s.batch, s.tq, wq), s.n_heads_total, wq), s.head_dim, wq);
  r.kv_elems = checked_mul(checked_mul(checked_mul(s.batch, s.tk, wk), s.kv_heads, wk), s.head_dim, wk);
  r.lse_elems = checked_mul(checked_mul(s.batch, s.n_heads_total, wl), s.tq, wl);
  return r;
}

}  // namespace dsmoe::bind
