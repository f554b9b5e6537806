#include "model.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

namespace dsmoe::model {

using backend::AttentionShape;
using backend::GeluKind;
using backend::MiLossValue;

struct Model::LayerCache {
  template <typename T>
  using Array = backend::Array<T>;
  // attention sub-layer: input h, rmsnorm, routing, projections (after RoPE), attention output
  Array<float> h_att, rstd_att, xa, probs_a, w_a, q, k, v, att, lse;
  Array<uint8_t> mask_a;
  // MLP sub-layer: input h, rmsnorm, routing, up projection and its activation
  Array<float> h_mlp, rstd_mlp, xm, probs_m, w_m, up, act;
  Array<uint8_t> mask_m;
  // two-layer routers (empty when linear): hidden pre-activation z and gelu(z), [N, router_hidden]
  Array<float> rz_a, ra_a, rz_m, ra_m;
};


Model::Model(const Config& config, const Buffers& buffers, backend::Backend& be)
    : cfg_(config), layout_(make_layout(config)), buf_(buffers), be_(be) {
  std::string err = validate(cfg_);
  if (!err.empty()) throw std::invalid_argument(err);
}

Model::~Model() = default;

void Model::ensure_workspace(int64_t batch, int64_t seq) {
  if (batch == batch_ && seq == seq_) return;
  batch_ = batch; seq_ = seq; n_ = batch * seq;
  const int64_t N = n_, D = cfg_.d_model, QD = cfg_.q_dim(), KV = cfg_.kv_dim(), FD = cfg_.mlp_dim();
  const int64_t Ea = cfg_.att_experts, Em = cfg_.mlp_experts, Hq = cfg_.att_experts * cfg_.att_heads;
  const int64_t Emax = std::max(Ea, Em);
  backend::Backend& be = be_;
  auto resize = [&be](auto& array, int64_t n) { array.assign(be, n); };
  resize(h_, N * D); resize(dh_, N * D); resize(dx_, N * D); resize(hf_, N * D); resize(rstd_f_, N);
  resize(logits_, N * cfg_.vocab_size); resize(scratch_, N * std::max(QD, FD));
  resize(dq_, N * QD); resize(dk_, N * KV); resize(dv_, N * KV);
  resize(router_logits_, N * Emax); resize(dprobs_, N * Emax);
  resize(tokens_, N); resize(targets_, N);
  const int64_t Rh = cfg_.router_hidden, RNa = Ea > 1 ? N * Rh : 0, RNm = Em > 1 ? N * Rh : 0;
  resize(router_da_, std::max(RNa, RNm));
  resize(positions_, N);
  resize(pair_token_, N * Emax); resize(pair_expert_, N * Emax); resize(pair_weight_, N * Emax);
  std::vector<int32_t> positions(static_cast<size_t>(N));
  for (int64_t t = 0; t < N; ++t) positions[static_cast<size_t>(t)] = static_cast<int32_t>(t % seq);
  be_.upload(positions_.data(), positions.data(), N * int64_t(sizeof(int32_t)));
  caches_.clear();
  caches_.resize(static_cast<size_t>(cfg_.n_layers));
  for (auto& c : caches_) {
    resize(c.h_att, N * D); resize(c.rstd_att, N); resize(c.xa, N * D); resize(c.probs_a, N * Ea);
    resize(c.w_a, N * Ea); resize(c.mask_a, N * Ea); resize(c.q, N * QD); resize(c.k, N * KV);
    resize(c.v, N * KV); resize(c.att, N * QD); resize(c.lse, batch * Hq * seq);
    resize(c.h_mlp, N * D); resize(c.rstd_mlp, N); resize(c.xm, N * D); resize(c.probs_m, N * Em);
    resize(c.w_m, N * Em); resize(c.mask_m, N * Em); resize(c.up, N * FD); resize(c.act, N * FD);
    resize(c.rz_a, RNa); resize(c.ra_a, RNa); resize(c.rz_m, RNm); resize(c.ra_m, RNm);
  }
}

// Router: probs = softmax(x · Rᵀ), or softmax(gelu(x · Whᵀ) · Woutᵀ) for a two-layer router;
// weights = probs (dsmoe), probs on the top-k (smoe), 1 (one expert).
void Model::route_forward(const float* x, const Router& r, float* logits_buf, float* probs, float* weights,
                          uint8_t* mask) {
  const int64_t N = n_, D = cfg_.d_model, E = r.E, Rh = cfg_.router_hidden;
  if (E == 1) {  // (the mask is read only by the top-k backward, which has E > 1)
    be_.fill(N, probs, 1.f);
    be_.fill(N, weights, 1.f);
    return;
  }
  if (r.hidden_off < 0) {
    be_.gemm(false, true, N, E, D, 1.f, x, D, buf_.params + r.off, D, 0.f, logits_buf, E);
  } else {  // z and gelu(z) stay in the layer cache for the backward
    be_.gemm(false, true, N, Rh, D, 1.f, x, D, buf_.params + r.hidden_off, D, 0.f, r.z, Rh);
    be_.gelu_forward(N * Rh, r.z, r.a, GeluKind::Erf);
    be_.gemm(false, true, N, E, Rh, 1.f, r.a, Rh, buf_.params + r.off, Rh, 0.f, logits_buf, E);
  }
  be_.router_softmax(N, E, logits_buf, probs);
  if (cfg_.mode == Mode::SMoe) {
    const int64_t k = std::min(cfg_.top_k, E);
    be_.route_topk(N, E, probs, k, pair_token_.data(), pair_expert_.data(), pair_weight_.data());
    be_.pair_weights(N, E, N * k, pair_token_.data(), pair_expert_.data(), probs, weights, mask);
  } else {
    be_.copy(weights, probs, int64_t(sizeof(float)) * N * E);
  }
}

// dweights holds dL/dW on entry. Adds the auxiliary loss gradient, goes back through the softmax
// and the router, accumulating dR and dx (dx += dlogits · R; two-layer: through Wout, gelu and Wh).
void Model::route_backward(const float* x, const Router& r, const float* probs, const uint8_t* mask,
                           float* dweights, double alpha_scale, float* dx) {
  const int64_t N = n_, D = cfg_.d_model, E = r.E, Rh = cfg_.router_hidden;
  if (E == 1) return;
  float* ds = dweights;
  if (cfg_.mode == Mode::SMoe) {
    // unselected experts pass no gradient to the router
    const int64_t P = be_.mask_scores(N, E, mask, ds, pair_expert_.data());
    if (alpha_scale > 0) be_.switch_loss(N, E, probs, pair_expert_.data(), P, alpha_scale, ds, true);
  } else if (alpha_scale > 0) {
    be_.mi_loss(N, E, probs, alpha_scale, ds, true);
  }
  be_.router_softmax_backward(N, E, probs, ds, ds);
  if (r.hidden_off < 0) {
    be_.gemm(true, false, E, D, N, 1.f, ds, E, x, D, 1.f, buf_.grads + r.off, D);
    be_.gemm(false, false, N, D, E, 1.f, ds, E, buf_.params + r.off, D, 1.f, dx, D);
    return;
  }
  float* dz = router_da_.data();
  be_.gemm(true, false, E, Rh, N, 1.f, ds, E, r.a, Rh, 1.f, buf_.grads + r.off, Rh);        // dWout += dsᵀ·a
  be_.gemm(false, false, N, Rh, E, 1.f, ds, E, buf_.params + r.off, Rh, 0.f, dz, Rh);        // da = ds·Wout
  be_.gelu_backward(N * Rh, r.z, dz, dz, GeluKind::Erf);                                     // dz = da ⊙ gelu'(z)
  be_.gemm(true, false, Rh, D, N, 1.f, dz, Rh, x, D, 1.f, buf_.grads + r.hidden_off, D);    // dWh += dzᵀ·x
  be_.gemm(false, false, N, D, Rh, 1.f, dz, Rh, buf_.params + r.hidden_off, D, 1.f, dx, D);  // dx += dz·Wh
}

void Model::run_micro(const int32_t* tokens, const int32_t* targets, float grad_scale, StepStats* st, bool backward) {
  const int64_t N = n_, D = cfg_.d_model, V = cfg_.vocab_size, T = seq_;
  const int64_t Ea = cfg_.att_experts, Em = cfg_.mlp_experts, H = cfg_.att_heads, G = cfg_.kv_heads;
  const int64_t dhead = cfg_.head_dim, HD = cfg_.expert_q_dim(), QD = cfg_.q_dim(), KV = cfg_.kv_dim();
  const int64_t F = cfg_.expert_dim, FD = cfg_.mlp_dim();
  const float eps = static_cast<float>(cfg_.norm_eps);
  const GeluKind gelu = cfg_.gelu_tanh ? GeluKind::Tanh : GeluKind::Erf;
  float* P = buf_.params;
  float* Gr = buf_.grads;
  AttentionShape ash;
  ash.batch = batch_; ash.tq = T; ash.tk = T; ash.n_heads_total = Ea * H; ash.heads_per_expert = H;
  ash.kv_heads = G; ash.head_dim = dhead; ash.scale = static_cast<float>(1.0 / std::sqrt(double(dhead)));
  const int32_t* pos = positions_.data();
  float* h = h_.data();

  // Router statistics and the auxiliary loss value of one MoE layer.
  auto aux_forward = [&](int64_t E, const float* probs, double alpha, double* ent, double* cond) {
    if (E == 1) return;
    MiLossValue mi = be_.mi_loss(N, E, probs, 0.0, nullptr, false);
    *ent += mi.h_e;
    *cond += mi.h_e_given_x;
    if (cfg_.mode == Mode::SMoe) {
      const int64_t k = std::min(cfg_.top_k, E);  // route_forward left this layer's pairs in pair_expert_
      st->aux_loss += cfg_.switch_alpha * be_.switch_loss(N, E, probs, pair_expert_.data(), N * k, 0.0, nullptr, false);
    } else {
      st->aux_loss += alpha * mi.loss;
    }
  };

  be_.embedding_forward(N, D, tokens, {P + layout_.embed, backend::DType::F32}, h);

  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    const LayerOffsets& o = layout_.layers[static_cast<size_t>(l)];
    LayerCache& c = caches_[static_cast<size_t>(l)];
    // ---- MoA: h += Σ_e W[:, e] · (attention of expert e's query heads) · Wo[e]ᵀ
    be_.copy(c.h_att.data(), h, int64_t(sizeof(float)) * N * D);
    be_.rmsnorm_forward(N, D, h, P + o.attn_norm, eps, c.xa.data(), c.rstd_att.data());
    const Router ra{o.att_router, o.att_router_hidden, Ea, c.rz_a.data(), c.ra_a.data()};
    route_forward(c.xa.data(), ra, router_logits_.data(), c.probs_a.data(), c.w_a.data(), c.mask_a.data());
    aux_forward(Ea, c.probs_a.data(), cfg_.mi_alpha_att, &st->att_entropy, &st->att_cond_entropy);
    be_.gemm(false, true, N, QD, D, 1.f, c.xa.data(), D, P + o.q, D, 0.f, c.q.data(), QD);
    be_.gemm(false, true, N, KV, D, 1.f, c.xa.data(), D, P + o.k, D, 0.f, c.k.data(), KV);
    be_.gemm(false, true, N, KV, D, 1.f, c.xa.data(), D, P + o.v, D, 0.f, c.v.data(), KV);
    be_.rope_forward(N, Ea * H, dhead, cfg_.rope_theta, pos, c.q.data(), c.q.data());
    be_.rope_forward(N, G, dhead, cfg_.rope_theta, pos, c.k.data(), c.k.data());
    be_.attention_forward(ash, c.q.data(), c.k.data(), c.v.data(), c.att.data(), c.lse.data());
    be_.expert_weighted_gemm(N, Ea, D, HD, c.att.data(), QD, HD, P + o.o, c.w_a.data(), 1.f, h);
    // ---- MoE MLP: h += Σ_e W[:, e] · gelu(x·Wup[e]ᵀ) · Wdown[e]ᵀ
    be_.copy(c.h_mlp.data(), h, int64_t(sizeof(float)) * N * D);
    be_.rmsnorm_forward(N, D, h, P + o.mlp_norm, eps, c.xm.data(), c.rstd_mlp.data());
    const Router rm{o.mlp_router, o.mlp_router_hidden, Em, c.rz_m.data(), c.ra_m.data()};
    route_forward(c.xm.data(), rm, router_logits_.data(), c.probs_m.data(), c.w_m.data(), c.mask_m.data());
    aux_forward(Em, c.probs_m.data(), cfg_.mi_alpha_mlp, &st->mlp_entropy, &st->mlp_cond_entropy);
    be_.gemm(false, true, N, FD, D, 1.f, c.xm.data(), D, P + o.up, D, 0.f, c.up.data(), FD);
    be_.gelu_forward(N * FD, c.up.data(), c.act.data(), gelu);
    be_.expert_weighted_gemm(N, Em, D, F, c.act.data(), FD, F, P + o.down, c.w_m.data(), 1.f, h);
  }

  be_.rmsnorm_forward(N, D, h, P + layout_.final_norm, eps, hf_.data(), rstd_f_.data());
  be_.gemm(false, true, N, V, D, 1.f, hf_.data(), D, P + layout_.lm_head, D, 0.f, logits_.data(), V);
  if (!targets) return;
  float* dlogits = backward ? logits_.data() : nullptr;  // the gradient overwrites the logits in place
  st->lm_loss += be_.cross_entropy(N, V, logits_.data(), targets, dlogits, nullptr, grad_scale);
  if (!backward) return;

  // ---- backward (dres: gradient of the residual stream h)
  float* dres = dh_.data();
  float* dx = dx_.data();
  float* S = scratch_.data();
  be_.gemm(true, false, V, D, N, 1.f, dlogits, V, hf_.data(), D, 1.f, Gr + layout_.lm_head, D);
  be_.gemm(false, false, N, D, V, 1.f, dlogits, V, P + layout_.lm_head, D, 0.f, dx, D);
  be_.rmsnorm_backward(N, D, h, P + layout_.final_norm, rstd_f_.data(), dx, dres, Gr + layout_.final_norm, true);

  const double mlp_alpha = (cfg_.mode == Mode::SMoe ? cfg_.switch_alpha : cfg_.mi_alpha_mlp) * grad_scale;
  const double att_alpha = (cfg_.mode == Mode::SMoe ? cfg_.switch_alpha : cfg_.mi_alpha_att) * grad_scale;
  auto add_into_residual = [&] { be_.add_inplace(N * D, dres, dx); };
  for (int64_t l = cfg_.n_layers - 1; l >= 0; --l) {
    const LayerOffsets& o = layout_.layers[static_cast<size_t>(l)];
    LayerCache& c = caches_[static_cast<size_t>(l)];
    // MLP. S = dres · Wdown[e] per expert; dW[:, e] = Σ_f S·act; dact = W ⊙ S (in place in S).
    be_.expert_input_grad(N, Em, D, F, dres, P + o.down, S);
    be_.expert_scores_backward(N, Em, F, c.w_m.data(), S, c.act.data(), dprobs_.data(), S);
    be_.expert_weighted_weight_grad(N, Em, D, F, dres, c.act.data(), FD, F, c.w_m.data(), Gr + o.down);
    be_.gelu_backward(N * FD, c.up.data(), S, S, gelu);
    be_.gemm(true, false, FD, D, N, 1.f, S, FD, c.xm.data(), D, 1.f, Gr + o.up, D);
    be_.gemm(false, false, N, D, FD, 1.f, S, FD, P + o.up, D, 0.f, dx, D);
    const Router rm{o.mlp_router, o.mlp_router_hidden, Em, c.rz_m.data(), c.ra_m.data()};
    route_backward(c.xm.data(), rm, c.probs_m.data(), c.mask_m.data(), dprobs_.data(), mlp_alpha, dx);
    be_.rmsnorm_backward(N, D, c.h_mlp.data(), P + o.mlp_norm, c.rstd_mlp.data(), dx, dx, Gr + o.mlp_norm, true);
    add_into_residual();
    // MoA. S = dres · Wo[e] per expert; dW and datt as above; then attention, RoPE, projections.
    be_.expert_input_grad(N, Ea, D, HD, dres, P + o.o, S);
    be_.expert_scores_backward(N, Ea, HD, c.w_a.data(), S, c.att.data(), dprobs_.data(), S);
    be_.expert_weighted_weight_grad(N, Ea, D, HD, dres, c.att.data(), QD, HD, c.w_a.data(), Gr + o.o);
    be_.attention_backward(ash, c.q.data(), c.k.data(), c.v.data(), c.att.data(), c.lse.data(), S, dq_.data(),
                           dk_.data(), dv_.data());
    be_.rope_backward(N, Ea * H, dhead, cfg_.rope_theta, pos, dq_.data(), dq_.data());
    be_.rope_backward(N, G, dhead, cfg_.rope_theta, pos, dk_.data(), dk_.data());
    be_.gemm(true, false, QD, D, N, 1.f, dq_.data(), QD, c.xa.data(), D, 1.f, Gr + o.q, D);
    be_.gemm(true, false, KV, D, N, 1.f, dk_.data(), KV, c.xa.data(), D, 1.f, Gr + o.k, D);
    be_.gemm(true, false, KV, D, N, 1.f, dv_.data(), KV, c.xa.data(), D, 1.f, Gr + o.v, D);
    be_.gemm(false, false, N, D, QD, 1.f, dq_.data(), QD, P + o.q, D, 0.f, dx, D);
    be_.gemm(false, false, N, D, KV, 1.f, dk_.data(), KV, P + o.k, D, 1.f, dx, D);
    be_.gemm(false, false, N, D, KV, 1.f, dv_.data(), KV, P + o.v, D, 1.f, dx, D);
    const Router ra{o.att_router, o.att_router_hidden, Ea, c.rz_a.data(), c.ra_a.data()};
    route_backward(c.xa.data(), ra, c.probs_a.data(), c.mask_a.data(), dprobs_.data(), att_alpha, dx);
    be_.rmsnorm_backward(N, D, c.h_att.data(), P + o.attn_norm, c.rstd_att.data(), dx, dx, Gr + o.attn_norm, true);
    add_into_residual();
  }
  be_.embedding_backward(N, D, tokens, dres, Gr + layout_.embed);
}

StepStats Model::loss_and_grad(const int32_t* tokens, const int32_t* targets, int64_t micro, int64_t batch,
                               int64_t seq) {
  ensure_workspace(batch, seq);
  be_.fill(layout_.total, buf_.grads, 0.f);
  StepStats st;
  const float scale = 1.f / static_cast<float>(micro);  // gradients of the mean over micro-batches
  for (int64_t m = 0; m < micro; ++m) {
    upload_batch(tokens + m * n_, targets + m * n_);
    run_micro(tokens_.data(), targets_.data(), scale, &st, true);
  }
  return finish_stats(st, micro);
}

StepStats Model::evaluate(const int32_t* tokens, const int32_t* targets, int64_t micro, int64_t batch,
                          int64_t seq) {
  ensure_workspace(batch, seq);
  StepStats st;
  for (int64_t m = 0; m < micro; ++m) {
    upload_batch(tokens + m * n_, targets + m * n_);
    run_micro(tokens_.data(), targets_.data(), 1.f, &st, false);
  }
  return finish_stats(st, micro);
}

StepStats Model::finish_stats(StepStats st, int64_t micro) const {
  const double m = static_cast<double>(micro), layers = static_cast<double>(cfg_.n_layers);
  st.lm_loss /= m;
  st.aux_loss /= m;
  st.loss = st.lm_loss + st.aux_loss;
  st.att_entropy /= m * layers; st.att_cond_entropy /= m * layers;
  st.mlp_entropy /= m * layers; st.mlp_cond_entropy /= m * layers;
  st.tokens = micro * n_;
  return st;
}

StepStats Model::train_step(const int32_t* tokens, const int32_t* targets, int64_t micro, int64_t batch,
                            int64_t seq, const OptimSettings& opt) {
  StepStats st = loss_and_grad(tokens, targets, micro, batch, seq);
  st.grad_norm = apply_optimizer(opt, st.loss);
  return st;
}

double Model::apply_optimizer(const OptimSettings& opt, double loss) {
  const double norm = std::sqrt(be_.sum_squares(layout_.total, buf_.grads));
  // A non-finite loss or gradient must not reach the weights: the caller stops with the last
  // good state intact.
  if (std::isfinite(loss) && std::isfinite(norm)) {
    if (opt.clip > 0 && norm > opt.clip)
      be_.scale_inplace(layout_.total, buf_.grads, static_cast<float>(opt.clip / norm));
    for (const Tensor& t : layout_.tensors)
      be_.adamw_update(t.size, buf_.params + t.offset, buf_.grads + t.offset, buf_.adam_m + t.offset,
                       buf_.adam_v + t.offset, opt.lr, opt.beta1, opt.beta2, opt.eps,
                       t.decay ? opt.weight_decay : 0.f, opt.step);
  }
  be_.fill(layout_.total, buf_.grads, 0.f);
  return norm;
}

void Model::upload_batch(const int32_t* tokens, const int32_t* targets) {
  be_.upload(tokens_.data(), tokens, n_ * int64_t(sizeof(int32_t)));
  if (targets) be_.upload(targets_.data(), targets, n_ * int64_t(sizeof(int32_t)));
}

void Model::forward_logits(const int32_t* tokens, int64_t batch, int64_t seq, float* logits) {
  ensure_workspace(batch, seq);
  StepStats st;
  upload_batch(tokens, nullptr);
  run_micro(tokens_.data(), nullptr, 1.f, &st, false);
  be_.download(logits, logits_.data(), int64_t(sizeof(float)) * n_ * cfg_.vocab_size);
}

}  // namespace dsmoe::model
