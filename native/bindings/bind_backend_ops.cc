// Bindings of the Backend ops (backend.h) that the model and the session use but that have no kernel
// binding of their own elsewhere: element-wise add, the embedding, the training pair weights and score
// mask, the MoA pair-head slices, the inference router statistics and the dense-training expert
// gradients. Like every kernel binding they take `device` ('cpu' by default, 'cuda', 'cuda:N') and run
// the op on that device's backend (stage.h): they exist so that the all-backends harness
// (test/native/backend-ops.test.ts) can check each op on every backend against a double reference.
//
// Index arguments are checked element by element and copied (index_args.h): the op reads the checked
// copy, so an Async call cannot be sent an index JavaScript changed after the check.
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "index_args.h"
#include "op_args.h"
#include "register.h"
#include "stage.h"

namespace dsmoe::bind {
namespace {

// addInplace({n, y [n], x [n]})   y += x
Work bind_add_inplace(Args& args) {
  const int64_t n = args.integer("n", 0, kMaxElems);
  auto y = args.f32("y", n);
  auto x = args.f32_in("x", n);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.add_inplace(n, st.out(y.data, n), st.in(x.data, n));
    st.finish();
  };
}

// The embedding's shape: n tokens of ids in [0, vocab), rows of d.
struct EmbeddingShape {
  int64_t n, d, vocab;
  Index tokens;
};
EmbeddingShape read_embedding_shape(Args& args) {
  EmbeddingShape s;
  s.n = args.integer("n", 0);
  s.d = args.integer("d", 0);
  s.vocab = args.integer("vocab", 1);
  checked_mul(s.n, s.d, args.where("n·d"));
  checked_mul(s.vocab, s.d, args.where("vocab·d"));
  s.tokens = indices(args, "tokens", s.n, s.vocab);
  return s;
}

// embeddingForward({n, d, vocab, tokens [n] in [0, vocab), table [vocab, d] (f32|bf16), out [n, d]})
//   out[t] = table[tokens[t]] (a bf16 table widened)
Work bind_embedding_forward(Args& args) {
  const EmbeddingShape s = read_embedding_shape(args);
  bool bf16 = false;
  auto table = args.f32_or_bf16("table", s.vocab * s.d, &bf16);
  auto out = args.f32("out", s.n * s.d);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    const backend::DType dt = bf16 ? backend::DType::BF16 : backend::DType::F32;
    const backend::WeightRef w{st.in_bytes(table.data, s.vocab * s.d * backend::dtype_bytes(dt)), dt};
    st.be.embedding_forward(s.n, s.d, st.in(s.tokens->data(), s.n), w, st.out(out.data, s.n * s.d));
    st.finish();
  };
}

// embeddingBackward({n, d, vocab, tokens [n], dy [n, d], dtable [vocab, d]})
//   dtable[tokens[t]] += dy[t]; a token id may repeat (its rows all add)
Work bind_embedding_backward(Args& args) {
  const EmbeddingShape s = read_embedding_shape(args);
  auto dy = args.f32_in("dy", s.n * s.d);
  auto dtable = args.f32("dtable", s.vocab * s.d);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.embedding_backward(s.n, s.d, st.in(s.tokens->data(), s.n), st.in(dy.data, s.n * s.d),
                             st.out(dtable.data, s.vocab * s.d));
    st.finish();
  };
}

// pairWeights({t, experts, pairs, pairToken [P] in [0, t), pairExpert [P] in [0, E), probs [t, E],
//              weights [t, E], mask: Uint8Array [t, E]})
//   weights = probs on the pairs, 0 elsewhere; mask = 1 on the pairs, 0 elsewhere
Work bind_pair_weights(Args& args) {
  const int64_t T = read_tokens(args), E = read_experts(args);
  const int64_t n = score_elems(args, T, E);
  const int64_t P = read_pairs(args);
  Index tok = indices(args, "pairToken", P, T);
  Index expert = indices(args, "pairExpert", P, E);
  auto probs = args.f32_in("probs", n);
  auto weights = args.f32("weights", n);
  auto mask = args.u8("mask", n);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.pair_weights(T, E, P, st.in(tok->data(), P), st.in(expert->data(), P), st.in(probs.data, n),
                       st.out(weights.data, n), st.out(mask.data, n));
    st.finish();
  };
}

// maskScores({t, experts, mask: Uint8Array [t, E], ds [t, E], pairExpert [t·E], out: Int32Array [1]})
//   ds = 0 where !mask; pairExpert[0..P) = the experts of the mask, token-major; out[0] = P
Work bind_mask_scores(Args& args) {
  const int64_t T = read_tokens(args), E = read_experts(args);
  const int64_t n = score_elems(args, T, E);
  auto mask = args.u8("mask", n);
  auto ds = args.f32("ds", n);
  auto pe = args.i32("pairExpert", n);
  auto out = args.i32("out", 1);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    const int64_t P = st.be.mask_scores(T, E, st.in(mask.data, n), st.out(ds.data, n), st.out(pe.data, n));
    st.finish();
    out.data[0] = static_cast<int32_t>(P);
  };
}

// The MoA pair-head slices' arguments: {t, experts, pairs, hd, qd = experts·hd (at least that),
// order [P] a permutation of [0, P), pairToken [P] token-major in [0, t), pairExpert [P] in [0, E),
// each (token, expert) once}. Pair p's slice is [pairToken[p], pairExpert[p]·hd .. +hd) of [t, qd].
struct PairHeadsArgs {
  int64_t t, pairs, hd, qd;
  Index order, pair_token, pair_expert;
};
PairHeadsArgs read_pair_heads(Args& args) {
  PairHeadsArgs a;
  a.t = read_tokens(args);
  const int64_t E = read_experts(args);
  a.pairs = read_pairs(args);
  a.hd = args.integer("hd", 0);
  const int64_t min_qd = checked_mul(E, a.hd, args.where("experts·hd"));
  a.qd = args.integer_or("qd", min_qd, min_qd, std::numeric_limits<int64_t>::max() / 4);
  checked_mul(a.t, a.qd, args.where("t·qd"));
  checked_mul(a.pairs, a.hd, args.where("pairs·hd"));
  a.order = permutation(args, "order", a.pairs);
  a.pair_token = pair_tokens(args, "pairToken", a.pairs, a.t);
  a.pair_expert = indices(args, "pairExpert", a.pairs, E);
  // Distinct (token, expert) pairs: a scattered slice is written by one pair only.
  std::vector<int64_t> seen_at(static_cast<size_t>(E), -1);
  for (int64_t p = 0; p < a.pairs; ++p) {
    const int32_t e = (*a.pair_expert)[p];
    const int64_t tok = (*a.pair_token)[p];
    if (seen_at[static_cast<size_t>(e)] == tok)
      range_error(args.where("pairExpert") + ": token " + std::to_string(tok) + " has expert " + std::to_string(e) +
                  " twice (" + at("pairExpert", p) + ")");
    seen_at[static_cast<size_t>(e)] = tok;
  }
  return a;
}

// scatterPairHeads({…pair-head arguments, src [P, hd] in grouped order, dst [t, qd]})
//   dst[pairToken[p], pairExpert[p]·hd ..] = src[i] for p = order[i]; the rest of dst is untouched
// gatherPairHeads({…pair-head arguments, src [t, qd], dst [P, hd] in grouped order})
//   dst[i] = src[pairToken[p], pairExpert[p]·hd ..] for p = order[i]
// The same arguments with the two layouts swapped: one binder for both directions.
Work bind_pair_heads(Args& args, bool scatter) {
  const PairHeadsArgs a = read_pair_heads(args);
  const int64_t pair_elems = a.pairs * a.hd, token_elems = a.t * a.qd;
  auto src = args.f32_in("src", scatter ? pair_elems : token_elems);
  auto dst = args.f32("dst", scatter ? token_elems : pair_elems);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    const int32_t* order = st.in(a.order->data(), a.pairs);
    const int32_t* token = st.in(a.pair_token->data(), a.pairs);
    const int32_t* expert = st.in(a.pair_expert->data(), a.pairs);
    const float* in = st.in(src.data, scatter ? pair_elems : token_elems);
    float* out = st.out(dst.data, scatter ? token_elems : pair_elems);
    if (scatter) st.be.scatter_pair_heads(a.pairs, a.hd, a.qd, order, token, expert, in, out);
    else st.be.gather_pair_heads(a.pairs, a.hd, a.qd, order, token, expert, in, out);
    st.finish();
  };
}
Work bind_scatter_pair_heads(Args& args) { return bind_pair_heads(args, true); }
Work bind_gather_pair_heads(Args& args) { return bind_pair_heads(args, false); }

// routerStatistics({t, experts, probs [t, E], probSum: Float64Array [E], entropySum: Float64Array [1]})
//   probSum[e] += Σ_t probs[t, e]; entropySum[0] += Σ_t −Σ_e p log p (0 at p = 0). The sums are host
//   arrays on every backend (the op reads its E + 1 numbers back), so they are never staged.
Work bind_router_statistics(Args& args) {
  const int64_t T = read_tokens(args), E = read_experts(args);
  const int64_t n = checked_mul(T, E, args.where("probs"));
  auto probs = args.f32_in("probs", n);
  auto prob_sum = args.f64("probSum", E);
  auto entropy_sum = args.f64("entropySum", 1);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.router_statistics(T, E, st.in(probs.data, n), prob_sum.data, entropy_sum.data);
    st.finish();
  };
}

// expertInputGrad({t, experts, d, k, dy [t, d], w [E, d, k], p [t, E·k]})   p[:, e·k ..] = dy · w[e]
Work bind_expert_input_grad(Args& args) {
  const int64_t N = read_tokens(args), E = read_experts(args);
  const int64_t D = args.integer("d", 0), K = args.integer("k", 0);
  const int64_t nd = checked_mul(N, D, args.where("dy"));
  const int64_t w_elems = checked_mul(E, checked_mul(D, K, args.where("w")), args.where("w"));
  const int64_t p_elems = checked_mul(N, checked_mul(E, K, args.where("p")), args.where("p"));
  auto dy = args.f32_in("dy", nd);
  auto w = args.f32_in("w", w_elems);
  auto p = args.f32("p", p_elems);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.expert_input_grad(N, E, D, K, st.in(dy.data, nd), st.in(w.data, w_elems), st.out(p.data, p_elems));
    st.finish();
  };
}

// expertWeightedWeightGrad({t, experts, d, k, dy [t, d], x, ldx = k, xExpertStride = 0, s [t, E],
//                           dw [E, d, k]})
//   dw[e] += (s[:, e] ⊙ dy)ᵀ · x_e,  x_e [t, k] at x + e·xExpertStride, rows ldx apart (stride 0: shared)
Work bind_expert_weighted_weight_grad(Args& args) {
  const int64_t N = read_tokens(args), E = read_experts(args);
  const int64_t D = args.integer("d", 0), K = args.integer("k", 0);
  const int64_t ldx = args.integer_or("ldx", K, 1);
  const int64_t xstride = args.integer_or("xExpertStride", 0, 0, std::numeric_limits<int64_t>::max() / 4);
  int64_t x_need = Args::matrix_elems(N, K, ldx, args.where("x"));
  if (x_need > 0) x_need = checked_add(x_need, checked_mul(E - 1, xstride, args.where("x")), args.where("x"));
  const int64_t nd = checked_mul(N, D, args.where("dy"));
  const int64_t ns = checked_mul(N, E, args.where("s"));
  const int64_t dw_elems = checked_mul(E, checked_mul(D, K, args.where("dw")), args.where("dw"));
  auto dy = args.f32_in("dy", nd);
  auto x = args.f32_in("x", x_need);
  auto s = args.f32_in("s", ns);
  auto dw = args.f32("dw", dw_elems);
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    st.be.expert_weighted_weight_grad(N, E, D, K, st.in(dy.data, nd), st.in(x.data, x_need), ldx, xstride,
                                      st.in(s.data, ns), st.out(dw.data, dw_elems));
    st.finish();
  };
}

}  // namespace

void register_backend_ops(Napi::Env env, Napi::Object exports) {
  export_kernel(env, exports, "addInplace", bind_add_inplace);
  export_kernel(env, exports, "embeddingForward", bind_embedding_forward);
  export_kernel(env, exports, "embeddingBackward", bind_embedding_backward);
  export_kernel(env, exports, "pairWeights", bind_pair_weights);
  export_kernel(env, exports, "maskScores", bind_mask_scores);
  export_kernel(env, exports, "scatterPairHeads", bind_scatter_pair_heads);
  export_kernel(env, exports, "gatherPairHeads", bind_gather_pair_heads);
  export_kernel(env, exports, "routerStatistics", bind_router_statistics);
  export_kernel(env, exports, "expertInputGrad", bind_expert_input_grad);
  export_kernel(env, exports, "expertWeightedWeightGrad", bind_expert_weighted_weight_grad);
}

}  // namespace dsmoe::bind
