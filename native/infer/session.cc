#include "session.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>

namespace dsmoe::infer {

using backend::AttentionShape;
using backend::GeluKind;

Session::Session(std::shared_ptr<const Weights> w, int64_t batch, int64_t max_len, RoutingSpec att, RoutingSpec mlp)
    : w_(std::move(w)), be_(w_->backend()), c_(w_->config()), B_(batch), max_len_(max_len),
      att_route_(att), mlp_route_(mlp), seq_att_(static_cast<size_t>(batch), att),
      seq_mlp_(static_cast<size_t>(batch), mlp), len_(static_cast<size_t>(batch), 0) {
  const int64_t per_layer = B_ * max_len_ * c_.kv_dim();
  kcache_.assign(be_, c_.n_layers * per_layer);
  vcache_.assign(be_, c_.n_layers * per_layer);
  reset();
}

void Session::reset() {
  std::fill(len_.begin(), len_.end(), 0);
  started_ = false;
  reset_stats();
}

InferStats Session::empty_stats(bool router_sums) const {
  InferStats st;
  st.att_usage.assign(static_cast<size_t>(c_.n_layers * c_.att_experts), 0);
  st.mlp_usage.assign(static_cast<size_t>(c_.n_layers * c_.mlp_experts), 0);
  if (router_sums && c_.att_experts > 1) {
    st.att_prob_sum.assign(static_cast<size_t>(c_.n_layers * c_.att_experts), 0.0);
    st.att_entropy_sum.assign(static_cast<size_t>(c_.n_layers), 0.0);
  }
  if (router_sums && c_.mlp_experts > 1) {
    st.mlp_prob_sum.assign(static_cast<size_t>(c_.n_layers * c_.mlp_experts), 0.0);
    st.mlp_entropy_sum.assign(static_cast<size_t>(c_.n_layers), 0.0);
  }
  return st;
}

void Session::reset_stats() {
  stats_ = empty_stats(true);
  seq_stats_.assign(static_cast<size_t>(B_), empty_stats(false));
}

void Session::set_routing(RoutingSpec att, RoutingSpec mlp) {
  std::fill(seq_att_.begin(), seq_att_.end(), att);
  std::fill(seq_mlp_.begin(), seq_mlp_.end(), mlp);
  att_route_ = std::move(att);
  mlp_route_ = std::move(mlp);
}

void Session::set_sequence_routing(int64_t b, RoutingSpec att, RoutingSpec mlp) {
  seq_att_[static_cast<size_t>(b)] = std::move(att);
  seq_mlp_[static_cast<size_t>(b)] = std::move(mlp);
}

// Prefill: the grouped expert GEMM (each expert's rows at once). Decode: GEMV over exactly the
// experts with rows. Both: y [rows, n] = x [rows, k] · W[e]ᵀ per expert group.
void Session::matmul(int64_t E, const int32_t* offsets, const float* x, WeightRef w, int64_t n, int64_t k,
                     float* y, bool decode) {
  if (decode) {
    const backend::GemvJob job{E, offsets, x, w, n, k, y};
    be_.gemv_batch(&job, 1);
  } else {
    be_.grouped_gemm(E, offsets, x, w, true, n, k, 0.f, y);
  }
}

int64_t Session::route(int64_t l, bool att, const float* x, bool decode) {
  const int64_t N = N_, D = c_.d_model;
  const int64_t E = att ? c_.att_experts : c_.mlp_experts;
  const LayerWeights& lw = w_->layers[static_cast<size_t>(l)];
  int32_t* pt = pair_token_.grow(be_, N * E);
  int32_t* pe = pair_expert_.grow(be_, N * E);
  float* pw = pair_weight_.grow(be_, N * E);
  int64_t P = N;
  if (E == 1) {  // no router: S = 1 for every token (top-1 of one expert)
    float* probs = probs_.grow(be_, N);
    be_.fill(N, probs, 1.f);
    be_.route_topk(N, 1, probs, 1, pt, pe, pw);
  } else {
    float* probs = probs_.grow(be_, N * E);
    const WeightRef router = att ? lw.att_router : lw.mlp_router;
    if (c_.router_hidden > 0) {  // two-layer router: softmax(gelu(x · Whᵀ) · Woutᵀ), as in training
      const int64_t Rh = c_.router_hidden;
      float* a = rhid_.grow(be_, N * Rh);
      matmul(1, one_offsets_.data(), x, att ? lw.att_router_hidden : lw.mlp_router_hidden, Rh, D, a, decode);
      be_.gelu_forward(N * Rh, a, a, GeluKind::Erf);
      matmul(1, one_offsets_.data(), a, router, E, Rh, probs, decode);
    } else {
      matmul(1, one_offsets_.data(), x, router, E, D, probs, decode);
    }
    be_.router_softmax(N, E, probs, probs);
    // router statistics for the MI loss (S·log S taken as 0 at S = 0, as in mi_loss)
    be_.router_statistics(N, E, probs, (att ? stats_.att_prob_sum : stats_.mlp_prob_sum).data() + l * E,
                          (att ? stats_.att_entropy_sum : stats_.mlp_entropy_sum).data() + l);
    // Runs of consecutive sequences with one strategy are routed together (all the rows, when the
    // session has one routing). Only threshold-topk looks across rows: its K is taken over the run
    // (DESIGN.md §1.3: per batch), so it is the one strategy whose result depends on the batch.
    P = 0;
    const std::vector<RoutingSpec>& specs = att ? seq_att_ : seq_mlp_;
    for (size_t i = 0; i < segs_.size();) {
      const RoutingSpec& spec = specs[static_cast<size_t>(segs_[i].b)];
      size_t j = i + 1;
      while (j < segs_.size() && specs[static_cast<size_t>(segs_[j].b)].text == spec.text) ++j;
      const int64_t r0 = segs_[i].row0, n = segs_[j - 1].row0 + segs_[j - 1].count - r0;
      P += route_rows(spec, E, probs, r0, n, pt + P, pe + P, pw + P);
      i = j;
    }
  }
  int32_t* off = offsets_.grow(be_, E + 1);
  be_.group_by_expert(P, E, pe, off, order_.grow(be_, P), position_.grow(be_, P));
  offsets_host_.resize(static_cast<size_t>(E + 1));
  be_.download(offsets_host_.data(), off, (E + 1) * int64_t(sizeof(int32_t)));
  int64_t* usage = (att ? stats_.att_usage : stats_.mlp_usage).data() + l * E;
  for (int64_t e = 0; e < E; ++e) usage[e] += offsets_host_[size_t(e + 1)] - offsets_host_[size_t(e)];
  count_sequence_usage(l, att, P);
  return P;
}

int64_t Session::route_rows(const RoutingSpec& spec, int64_t E, const float* probs, int64_t r0, int64_t n,
                            int32_t* pt, int32_t* pe, float* pw) {
  const float* p = probs + r0 * E;
  int64_t P = 0;
  switch (spec.kind) {
    case RoutingSpec::Kind::Dense: be_.route_topk(n, E, p, E, pt, pe, pw); P = n * E; break;
    case RoutingSpec::Kind::TopK: be_.route_topk(n, E, p, spec.k, pt, pe, pw); P = n * spec.k; break;
    case RoutingSpec::Kind::Threshold: P = be_.route_threshold(n, E, p, spec.eps, pt, pe, pw); break;
    case RoutingSpec::Kind::ThresholdTopK: P = n * be_.route_threshold_topk(n, E, p, spec.eps, pt, pe, pw); break;
  }
  if (r0 != 0) be_.offset_indices(P, pt, static_cast<int32_t>(r0));
  return P;
}

// Each sequence's expert usage: the pairs' tokens mapped to their sequences (P small integers per
// layer kind, read back from the backend: a few hundred in decode).
void Session::count_sequence_usage(int64_t l, bool att, int64_t P) {
  const int64_t E = att ? c_.att_experts : c_.mlp_experts;
  pair_token_host_.resize(static_cast<size_t>(P));
  pair_expert_host_.resize(static_cast<size_t>(P));
  be_.download(pair_token_host_.data(), pair_token_.data(), P * int64_t(sizeof(int32_t)));
  be_.download(pair_expert_host_.data(), pair_expert_.data(), P * int64_t(sizeof(int32_t)));
  for (int64_t i = 0; i < P; ++i) {
    const int32_t b = row_seq_[static_cast<size_t>(pair_token_host_[static_cast<size_t>(i)])];
    InferStats& st = seq_stats_[static_cast<size_t>(b)];
    (att ? st.att_usage : st.mlp_usage)[static_cast<size_t>(l * E + pair_expert_host_[static_cast<size_t>(i)])]++;
  }
}

void Session::run(bool decode) {
  const int64_t N = N_, D = c_.d_model, L = c_.n_layers;
  const int64_t Ea = c_.att_experts, H = c_.att_heads, G = c_.kv_heads, dh = c_.head_dim;
  const int64_t HD = c_.expert_q_dim(), QD = c_.q_dim(), KV = c_.kv_dim(), F = c_.expert_dim;
  const float eps = static_cast<float>(c_.norm_eps);
  const GeluKind gelu = c_.gelu_tanh ? GeluKind::Tanh : GeluKind::Erf;
  const int32_t one_host[2] = {0, static_cast<int32_t>(N)};
  be_.upload(one_offsets_.grow(be_, 2), one_host, int64_t(sizeof(one_host)));
  be_.upload(tok_dev_.grow(be_, N), tok_.data(), N * int64_t(sizeof(int32_t)));
  be_.upload(pos_dev_.grow(be_, N), pos_.data(), N * int64_t(sizeof(int32_t)));
  row_seq_.resize(static_cast<size_t>(N));
  for (const Segment& s : segs_)
    std::fill_n(row_seq_.begin() + s.row0, s.count, static_cast<int32_t>(s.b));
  float* h = h_.grow(be_, N * D);
  float* x = x_.grow(be_, N * D);
  float* q = q_.grow(be_, N * QD);
  float* k = k_.grow(be_, N * KV);
  float* v = v_.grow(be_, N * KV);
  float* att = att_.grow(be_, N * QD);
  float* lse = lse_.grow(be_, N * Ea * H);
  const int32_t* pos = pos_dev_.data();

  // Decode works on a handful of rows: its row-wise steps (norms, routing, gathers, RoPE, combine)
  // take microseconds, so they run as the backend's small work; only weight reads go wide.
  auto section = [&](const std::function<void()>& fn) {
    if (decode) be_.small_work(fn);
    else fn();
  };
  section([&] { be_.embedding_forward(N, D, tok_dev_.data(), w_->embed, h); });

  AttentionShape ash;
  ash.batch = 1; ash.n_heads_total = Ea * H; ash.heads_per_expert = H; ash.kv_heads = G; ash.head_dim = dh;
  ash.scale = static_cast<float>(1.0 / std::sqrt(double(dh)));
  ash.skip_zero_queries = true;  // heads of unselected experts (q = 0, output never projected)
  const int64_t cache_seq = max_len_ * KV, cache_layer = B_ * cache_seq;

  const int32_t* one = one_offsets_.data();
  for (int64_t l = 0; l < L; ++l) {
    const LayerWeights& lw = w_->layers[static_cast<size_t>(l)];
    // ---- MoA
    int64_t P = 0;
    float *xg = nullptr, *yg = nullptr;
    section([&] {
      be_.rmsnorm_forward(N, D, h, lw.attn_norm, eps, x, nullptr);
      P = route(l, true, x, decode);
      xg = xg_.grow(be_, P * std::max(D, HD));
      yg = yg_.grow(be_, P * std::max(D, HD));
      be_.gather_rows(P, D, x, pair_token_.data(), order_.data(), xg);
    });
    const int32_t *off = offsets_.data(), *order = order_.data(), *pt = pair_token_.data(), *pe = pair_expert_.data();
    // Q projections only for active (token, expert) pairs. Heads of unselected experts see Q = 0;
    // the attention core skips them (skip_zero_queries) and their output is never projected.
    // K and V once for the G shared heads.
    if (decode) {
      const backend::GemvJob jobs[3] = {{Ea, off, xg, lw.q, HD, D, yg},
                                        {1, one, x, lw.k, KV, D, k},
                                        {1, one, x, lw.v, KV, D, v}};
      be_.gemv_batch(jobs, 3);
    } else {
      matmul(Ea, off, xg, lw.q, HD, D, yg, false);
      matmul(1, one, x, lw.k, KV, D, k, false);
      matmul(1, one, x, lw.v, KV, D, v, false);
    }
    float* kc = kcache_.data() + l * cache_layer;
    float* vc = vcache_.data() + l * cache_layer;
    section([&] {
      be_.fill(N * QD, q, 0.f);
      be_.scatter_pair_heads(P, HD, QD, order, pt, pe, yg, q);
      be_.rope_forward(N, Ea * H, dh, c_.rope_theta, pos, q, q);
      be_.rope_forward(N, G, dh, c_.rope_theta, pos, k, k);
      for (const Segment& s : segs_) {  // K (post-RoPE) and V into the cache at each row's position
        const int64_t bytes = int64_t(sizeof(float)) * s.count * KV;
        be_.copy(kc + s.b * cache_seq + s.pos0 * KV, k + s.row0 * KV, bytes);
        be_.copy(vc + s.b * cache_seq + s.pos0 * KV, v + s.row0 * KV, bytes);
      }
    });
    // Queries are the last `count` of the pos0 + count cached positions. Decode: all sequences'
    // single queries in one batch; prefill: one sequence at a time (each parallel inside).
    att_jobs_.clear();
    for (const Segment& s : segs_) {
      att_jobs_.push_back({q + s.row0 * QD, kc + s.b * cache_seq, vc + s.b * cache_seq, att + s.row0 * QD,
                           lse + (decode ? s.row0 * Ea * H : 0), s.count, s.pos0 + s.count});
    }
    if (decode) {
      be_.attention_forward_batch(ash, att_jobs_.data(), static_cast<int64_t>(att_jobs_.size()));
    } else {
      for (const auto& j : att_jobs_) {
        ash.tq = j.tq;
        ash.tk = j.tk;
        be_.attention_forward(ash, j.q, j.k, j.v, j.out, j.lse);
      }
    }
    // O projections only for active pairs: gather each pair's HD slice of the attention output.
    section([&] { be_.gather_pair_heads(P, HD, QD, order, pt, pe, att, xg); });
    matmul(Ea, off, xg, lw.o, D, HD, yg, decode);

    // ---- MoE MLP
    section([&] {
      be_.combine(N, P, D, yg, pt, pair_weight_.data(), position_.data(), h, 1.f);
      be_.rmsnorm_forward(N, D, h, lw.mlp_norm, eps, x, nullptr);
      P = route(l, false, x, decode);
      xg = xg_.grow(be_, P * std::max(D, F));
      yg = yg_.grow(be_, P * std::max(D, F));
      be_.gather_rows(P, D, x, pair_token_.data(), order_.data(), xg);
    });
    matmul(c_.mlp_experts, offsets_.data(), xg, lw.up, F, D, yg, decode);
    section([&] { be_.gelu_forward(P * F, yg, yg, gelu); });
    matmul(c_.mlp_experts, offsets_.data(), yg, lw.down, D, F, xg, decode);
    section([&] {
      be_.combine(N, P, D, xg, pair_token_.data(), pair_weight_.data(), position_.data(), h, 1.f);
    });
  }
  for (const Segment& s : segs_) {
    len_[static_cast<size_t>(s.b)] = s.pos0 + s.count;
    seq_stats_[static_cast<size_t>(s.b)].tokens += s.count;
  }
  stats_.tokens += N;
}

void Session::logits_rows(const std::vector<int64_t>& rows, bool decode) {
  const int64_t R = static_cast<int64_t>(rows.size()), D = c_.d_model;
  float* hf = hf_.grow(be_, R * D);
  for (int64_t i = 0; i < R; ++i)
    be_.copy(hf + i * D, h_.data() + rows[static_cast<size_t>(i)] * D, int64_t(sizeof(float)) * D);
  be_.rmsnorm_forward(R, D, hf, w_->final_norm, static_cast<float>(c_.norm_eps), hf, nullptr);
  const int32_t off_host[2] = {0, static_cast<int32_t>(R)};
  int32_t* off = one_offsets_.grow(be_, 2);
  be_.upload(off, off_host, int64_t(sizeof(off_host)));
  matmul(1, off, hf, w_->lm_head, c_.vocab_size, D, logits_.grow(be_, R * c_.vocab_size), decode);
}

void Session::prefill(const int32_t* tokens, int64_t tp, const int32_t* lengths, float* logits, float* all_logits,
                      const int32_t* targets, float* losses) {
  const int64_t V = c_.vocab_size;
  const int64_t fbytes = int64_t(sizeof(float));
  tok_.clear(); pos_.clear(); segs_.clear();
  for (int64_t b = 0; b < B_; ++b) {
    const int64_t n = lengths[b], p0 = len_[static_cast<size_t>(b)];
    if (n < 0 || n > tp || p0 + n > max_len_) throw std::out_of_range("prefill: bad length");  // bindings check
    if (n == 0) continue;  // this sequence takes no tokens in this call
    segs_.push_back({b, static_cast<int64_t>(tok_.size()), n, p0});
    for (int64_t i = 0; i < n; ++i) {
      tok_.push_back(tokens[b * tp + i]);
      pos_.push_back(static_cast<int32_t>(p0 + i));
    }
  }
  N_ = static_cast<int64_t>(tok_.size());
  if (N_ == 0) throw std::out_of_range("prefill: no tokens");  // bindings check
  run(false);
  started_ = true;
  std::vector<int64_t> rows;
  if (logits) {  // each sequence's last prompt token
    for (const Segment& s : segs_) rows.push_back(s.row0 + s.count - 1);
    logits_rows(rows, false);
    for (size_t i = 0; i < segs_.size(); ++i)  // rows of sequences without tokens stay as they were
      be_.download(logits + segs_[i].b * V, logits_.data() + int64_t(i) * V, V * fbytes);
  }
  if (!all_logits && !(targets && losses)) return;
  // Every position, in chunks of rows so the [rows, V] logits stay small.
  if (all_logits) std::fill(all_logits, all_logits + B_ * tp * V, 0.f);
  if (losses) std::fill(losses, losses + B_ * tp, 0.f);
  constexpr int64_t kChunk = 256;
  std::vector<int32_t> chunk_targets;
  std::vector<float> chunk_losses;
  for (const Segment& s : segs_) {
    for (int64_t i0 = 0; i0 < s.count; i0 += kChunk) {
      const int64_t n = std::min(kChunk, s.count - i0);
      rows.clear();
      for (int64_t i = 0; i < n; ++i) rows.push_back(s.row0 + i0 + i);
      logits_rows(rows, false);
      if (all_logits) be_.download(all_logits + (s.b * tp + i0) * V, logits_.data(), n * V * fbytes);
      if (targets && losses) {
        chunk_targets.assign(targets + s.b * tp + i0, targets + s.b * tp + i0 + n);
        chunk_losses.assign(static_cast<size_t>(n), 0.f);
        be_.upload(targets_.grow(be_, n), chunk_targets.data(), n * int64_t(sizeof(int32_t)));
        be_.cross_entropy(n, V, logits_.data(), targets_.data(), nullptr, losses_.grow(be_, n), 1.f);
        be_.download(losses + s.b * tp + i0, losses_.data(), n * fbytes);
      }
    }
  }
}

void Session::decode(const int32_t* tokens, float* logits, const uint8_t* active) {
  if (!started_) throw std::logic_error("decode before prefill");  // bindings check
  tok_.clear(); pos_.clear(); segs_.clear();
  for (int64_t b = 0; b < B_; ++b) {
    if (active && !active[b]) continue;
    const int64_t p = len_[static_cast<size_t>(b)];
    if (p >= max_len_) throw std::out_of_range("decode: cache full");  // bindings check
    segs_.push_back({b, static_cast<int64_t>(tok_.size()), 1, p});
    tok_.push_back(tokens[b]);
    pos_.push_back(static_cast<int32_t>(p));
  }
  N_ = static_cast<int64_t>(tok_.size());
  if (N_ == 0) return;
  run(true);
  std::vector<int64_t> rows(static_cast<size_t>(N_));
  for (int64_t r = 0; r < N_; ++r) rows[static_cast<size_t>(r)] = r;
  logits_rows(rows, true);
  const int64_t V = c_.vocab_size;
  for (const Segment& s : segs_)  // rows of inactive sequences stay as they were
    be_.download(logits + s.b * V, logits_.data() + s.row0 * V, V * int64_t(sizeof(float)));
}

void Session::reset_sequence(int64_t b) {
  len_[static_cast<size_t>(b)] = 0;  // its cache positions are rewritten by the next prefill
  seq_stats_[static_cast<size_t>(b)] = empty_stats(false);
}

ActiveSummary Session::summarize(const InferStats& st) const {
  ActiveSummary s;
  const int64_t L = c_.n_layers, D = c_.d_model, Ea = c_.att_experts, Em = c_.mlp_experts, KV = c_.kv_dim();
  const int64_t att_e = 2 * c_.expert_q_dim() * D, mlp_e = 2 * c_.expert_dim * D;  // q+o, up+down per expert
  s.expert_params = L * (Ea * att_e + Em * mlp_e);
  // A router: E·D weights, or h·D + E·h for a two-layer one (router_hidden = h).
  const int64_t Rh = c_.router_hidden;
  auto router_params = [&](int64_t E) -> int64_t { return E == 1 ? 0 : Rh > 0 ? Rh * D + E * Rh : E * D; };
  s.shared_params = L * (router_params(Ea) + router_params(Em) + 2 * KV * D);
  s.embedding_params = c_.vocab_size * D;
  s.lm_head_params = c_.tie_embeddings ? 0 : c_.vocab_size * D;
  const double T = static_cast<double>(st.tokens);
  double shared_bytes = 0, expert_bytes = 0, att_sum = 0, mlp_sum = 0;
  for (int64_t l = 0; l < L; ++l) {
    const LayerWeights& lw = w_->layers[static_cast<size_t>(l)];
    double na = 0, nm = 0;
    for (int64_t e = 0; e < Ea; ++e) na += double(st.att_usage[static_cast<size_t>(l * Ea + e)]);
    for (int64_t e = 0; e < Em; ++e) nm += double(st.mlp_usage[static_cast<size_t>(l * Em + e)]);
    att_sum += na; mlp_sum += nm;
    const int64_t qo = c_.expert_q_dim() * D, ud = c_.expert_dim * D;
    expert_bytes += na * double(qo) * (weight_bytes(lw.q.dtype) + weight_bytes(lw.o.dtype)) +
                    nm * double(ud) * (weight_bytes(lw.up.dtype) + weight_bytes(lw.down.dtype));
    shared_bytes += double(KV * D) * (weight_bytes(lw.k.dtype) + weight_bytes(lw.v.dtype));
    auto router_bytes = [&](int64_t E, WeightRef out, WeightRef hidden) -> double {
      if (E == 1) return 0;
      if (Rh == 0) return double(E * D) * weight_bytes(out.dtype);
      return double(Rh * D) * weight_bytes(hidden.dtype) + double(E * Rh) * weight_bytes(out.dtype);
    };
    shared_bytes += router_bytes(Ea, lw.att_router, lw.att_router_hidden);
    shared_bytes += router_bytes(Em, lw.mlp_router, lw.mlp_router_hidden);
  }
  if (T > 0) {
    s.att_experts_per_token = att_sum / (T * double(L));
    s.mlp_experts_per_token = mlp_sum / (T * double(L));
    const double active_expert = (att_sum * double(att_e) + mlp_sum * double(mlp_e)) / T;
    s.active_params_per_token = double(s.shared_params) + active_expert;
    s.active_expert_share = active_expert / double(s.expert_params);
    s.active_weight_bytes_per_token = shared_bytes + expert_bytes / T +
                                      double(c_.vocab_size * D) * weight_bytes(w_->lm_head.dtype);
  }
  return s;
}

}  // namespace dsmoe::infer
