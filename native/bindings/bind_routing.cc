// Bindings of the routing ops: Backend ops (backend.h) on the `device` argument's backend (stage.h);
// every binding takes `device` ('cpu' by default).
//
// Index arguments (pairToken, pairExpert, order, position) are checked element by element and then
// *copied*: the kernel reads the checked copy, so JavaScript code that changes an array while an
// Async call is running cannot send an unchecked index into the kernel. The copy is O(P) int32s,
// small next to the O(P·D) work of the kernels that read them.
// Kernels with a result (a count, a loss) write it into a small `out` typed array, so they still go
// through export_kernel and have an Async variant.
#include <limits>
#include <memory>
#include <vector>

#include "../kernels/cpu/routing.h"
#include "index_args.h"
#include "op_args.h"
#include "register.h"
#include "stage.h"

namespace dsmoe::bind {
namespace {

// Readers of the shared arguments are in op_args.h.
int64_t tokens(Args& args) { return read_tokens(args); }
int64_t experts(Args& args) { return read_experts(args); }

// routerSoftmax({t, experts, logits [t, E], probs [t, E]})
Work bind_router_softmax(Args& args) {
  const RouterSoftmaxArgs r = read_router_softmax(args);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    const int64_t n = r.t * r.experts;
    st.be.router_softmax(r.t, r.experts, st.in(r.logits.data, n), st.out(r.probs.data, n));
    st.finish();
  };
}

// routerSoftmaxBackward({t, experts, probs, dprobs, dlogits})   all [t, E]
Work bind_router_softmax_backward(Args& args) {
  const int64_t T = tokens(args), E = experts(args);
  const int64_t n = checked_mul(T, E, args.where("probs"));
  auto probs = args.f32_in("probs", n);
  auto dprobs = args.f32_in("dprobs", n);
  auto dlogits = args.f32("dlogits", n);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.router_softmax_backward(T, E, st.in(probs.data, n), st.in(dprobs.data, n), st.out(dlogits.data, n));
    st.finish();
  };
}

// routeTopk({t, experts, probs [t, E], k in [1, E], pairToken, pairExpert, pairWeight [t·k]})
Work bind_route_topk(Args& args) {
  const RouteTopkArgs r = read_route_topk(args);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    const int64_t p = r.t * r.k;
    st.be.route_topk(r.t, r.experts, st.in(r.probs.data, r.t * r.experts), r.k, st.out(r.out.token.data, p),
                     st.out(r.out.expert.data, p), st.out(r.out.weight.data, p));
    st.finish();
  };
}

// The threshold routings share their arguments: {t, experts, probs, eps, pairToken, pairExpert,
// pairWeight [t·E], out: Int32Array [1]}. Route is Backend::route_threshold (out[0] = P, the pairs
// written) or Backend::route_threshold_topk (out[0] = K; P = t·K).
using ThresholdRoute = int64_t (backend::Backend::*)(int64_t, int64_t, const float*, double, int32_t*, int32_t*,
                                                      float*);
template <ThresholdRoute Route>
Work bind_threshold_routing(Args& args) {
  const int64_t T = tokens(args), E = experts(args);
  const int64_t n = score_elems(args, T, E);
  const double eps = args.number("eps");
  auto probs = args.f32_in("probs", n);
  auto pr = pair_outputs(args, n);
  auto out = args.i32("out", 1);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    const int64_t pairs = (st.be.*Route)(T, E, st.in(probs.data, n), eps, st.out(pr.token.data, n),
                                         st.out(pr.expert.data, n), st.out(pr.weight.data, n));
    st.finish();
    out.data[0] = static_cast<int32_t>(pairs);
  };
}

// groupByExpert({pairs, experts, pairExpert [P], offsets [E+1], order [P], position [P]})
Work bind_group_by_expert(Args& args) {
  const GroupByExpertArgs g = read_group_by_expert(args);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.group_by_expert(g.pairs, g.experts, st.in(g.pair_expert->data(), g.pairs),
                          st.out(g.offsets.data, g.experts + 1), st.out(g.order.data, g.pairs),
                          st.out(g.position.data, g.pairs));
    st.finish();
  };
}

// gatherRows({t, pairs, d, x [t, d], pairToken [P], order [P], xg [P, d]})
Work bind_gather_rows(Args& args) {
  const GatherRowsArgs g = read_gather_rows(args);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.gather_rows(g.pairs, g.d, st.in(g.x.data, g.t * g.d), st.in(g.pair_token->data(), g.pairs),
                      st.in(g.order->data(), g.pairs), st.out(g.xg.data, g.pairs * g.d));
    st.finish();
  };
}

// gatherRowsBackward({t, pairs, d, dxg [P, d], pairToken, position, dx [t, d], beta=0})
Work bind_gather_rows_backward(Args& args) {
  const int64_t T = tokens(args), P = read_pairs(args), D = args.integer("d", 0);
  const float beta = static_cast<float>(args.number_or("beta", 0.0));
  auto dxg = args.f32_in("dxg", checked_mul(P, D, args.where("dxg")));
  Index tok = pair_tokens(args, "pairToken", P, T);
  Index pos = permutation(args, "position", P);
  auto dx = args.f32("dx", checked_mul(T, D, args.where("dx")));
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.gather_rows_backward(T, P, D, st.in(dxg.data, P * D), st.in(tok->data(), P), st.in(pos->data(), P),
                               st.out(dx.data, T * D), beta);
    st.finish();
  };
}

// combine({t, pairs, n, yg [P, n], pairToken, pairWeight [P], position, y [t, n], beta=0})
Work bind_combine(Args& args) {
  const CombineArgs c = read_combine(args);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.combine(c.t, c.pairs, c.n, st.in(c.yg.data, c.pairs * c.n), st.in(c.pair_token->data(), c.pairs),
                  st.in(c.weight.data, c.pairs), st.in(c.position->data(), c.pairs), st.out(c.y.data, c.t * c.n),
                  c.beta);
    st.finish();
  };
}

// combineBackward({t, pairs, n, dy [t, n], yg [P, n], pairToken, pairWeight, position, dyg [P, n], dweight [P]})
Work bind_combine_backward(Args& args) {
  const int64_t T = tokens(args), P = read_pairs(args), N = args.integer("n", 0);
  auto dy = args.f32_in("dy", checked_mul(T, N, args.where("dy")));
  auto yg = args.f32_in("yg", checked_mul(P, N, args.where("yg")));
  Index tok = pair_tokens(args, "pairToken", P, T);
  auto w = args.f32_in("pairWeight", P);
  Index pos = permutation(args, "position", P);
  auto dyg = args.f32("dyg", checked_mul(P, N, args.where("dyg")));
  auto dweight = args.f32("dweight", P);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.combine_backward(T, P, N, st.in(dy.data, T * N), st.in(yg.data, P * N), st.in(tok->data(), P),
                           st.in(w.data, P), st.in(pos->data(), P), st.out(dyg.data, P * N), st.out(dweight.data, P));
    st.finish();
  };
}

// expertScoresBackward({t, experts, f, s [t, E], pe [t, E, f], g [t, E, f], ds [t, E], dg [t, E, f]})
//   dg may be the same array as pe.
Work bind_expert_scores_backward(Args& args) {
  const int64_t T = tokens(args), E = experts(args), F = args.integer("f", 0);
  const int64_t n = checked_mul(T, E, args.where("s"));
  const int64_t nf = checked_mul(n, F, args.where("pe"));
  auto s = args.f32_in("s", n);
  auto pe = args.f32_in("pe", nf);
  auto g = args.f32_in("g", nf);
  auto ds = args.f32("ds", n);
  auto dg = args.f32("dg", nf);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.expert_scores_backward(T, E, F, st.in(s.data, n), st.in(pe.data, nf), st.in(g.data, nf), st.out(ds.data, n),
                                 st.out(dg.data, nf));
    st.finish();
  };
}

// miLoss({t, experts, probs [t, E], gradScale=1, dprobs? [t, E], accumulate=false, out: Float64Array [3]})
//   out = [loss, H(e), H(e|X)]
Work bind_mi_loss(Args& args) {
  const int64_t T = tokens(args), E = experts(args);
  const int64_t n = checked_mul(T, E, args.where("probs"));
  auto probs = args.f32_in("probs", n);
  const double scale = args.number_or("gradScale", 1.0);
  auto dprobs = args.f32_opt("dprobs", n);
  const bool acc = args.boolean_or("accumulate", false);
  auto out = args.f64("out", 3);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    const cpu::MiLossValue v = st.be.mi_loss(T, E, st.in(probs.data, n), scale, st.out(dprobs.data, n), acc);
    st.finish();
    out.data[0] = v.loss;
    out.data[1] = v.h_e;
    out.data[2] = v.h_e_given_x;
  };
}

// switchLoss({t, experts, probs [t, E], pairs, pairExpert [P], gradScale=1, dprobs? [t, E],
//             accumulate=false, out: Float64Array [1]})   out[0] = loss
Work bind_switch_loss(Args& args) {
  const int64_t T = tokens(args), E = experts(args), P = read_pairs(args);
  const int64_t n = checked_mul(T, E, args.where("probs"));
  auto probs = args.f32_in("probs", n);
  Index pe = indices(args, "pairExpert", P, E);
  const double scale = args.number_or("gradScale", 1.0);
  auto dprobs = args.f32_opt("dprobs", n);
  const bool acc = args.boolean_or("accumulate", false);
  auto out = args.f64("out", 1);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    const double loss = st.be.switch_loss(T, E, st.in(probs.data, n), st.in(pe->data(), P), P, scale,
                                          st.out(dprobs.data, n), acc);
    st.finish();
    out.data[0] = loss;
  };
}

}  // namespace

void register_routing(Napi::Env env, Napi::Object exports) {
  export_kernel(env, exports, "routerSoftmax", bind_router_softmax);
  export_kernel(env, exports, "routerSoftmaxBackward", bind_router_softmax_backward);
  export_kernel(env, exports, "routeTopk", bind_route_topk);
  export_kernel(env, exports, "routeThreshold", bind_threshold_routing<&backend::Backend::route_threshold>);
  export_kernel(env, exports, "routeThresholdTopk", bind_threshold_routing<&backend::Backend::route_threshold_topk>);
  export_kernel(env, exports, "groupByExpert", bind_group_by_expert);
  export_kernel(env, exports, "gatherRows", bind_gather_rows);
  export_kernel(env, exports, "gatherRowsBackward", bind_gather_rows_backward);
  export_kernel(env, exports, "combine", bind_combine);
  export_kernel(env, exports, "combineBackward", bind_combine_backward);
  export_kernel(env, exports, "expertScoresBackward", bind_expert_scores_backward);
  export_kernel(env, exports, "miLoss", bind_mi_loss);
  export_kernel(env, exports, "switchLoss", bind_switch_loss);
}

}  // namespace dsmoe::bind
