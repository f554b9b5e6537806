#include "session.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>

#include "../core/bf16.h"
#include "../core/threadpool.h"
#include "../kernels/cpu/attention.h"
#include "../kernels/cpu/nn.h"
#include "../kernels/cpu/routing.h"
#include "gemv.h"

namespace dsmoe::infer {

using namespace dsmoe::cpu;

namespace {
template <typename T>
T* grow(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}
}  // namespace

Session::Session(std::shared_ptr<const Weights> w, int64_t batch, int64_t max_len, RoutingSpec att, RoutingSpec mlp)
    : w_(std::move(w)), c_(w_->config()), B_(batch), max_len_(max_len), att_route_(std::move(att)),
      mlp_route_(std::move(mlp)), len_(static_cast<size_t>(batch), 0) {
  const int64_t per_layer = B_ * max_len_ * c_.kv_dim();
  kcache_.assign(static_cast<size_t>(c_.n_layers * per_layer), 0.f);
  vcache_.assign(static_cast<size_t>(c_.n_layers * per_layer), 0.f);
  reset();
}

void Session::reset() {
  std::fill(len_.begin(), len_.end(), 0);
  started_ = false;
  reset_stats();
}

void Session::reset_stats() {
  stats_ = InferStats{};
  stats_.att_usage.assign(static_cast<size_t>(c_.n_layers * c_.att_experts), 0);
  stats_.mlp_usage.assign(static_cast<size_t>(c_.n_layers * c_.mlp_experts), 0);
  if (c_.att_experts > 1) {
    stats_.att_prob_sum.assign(static_cast<size_t>(c_.n_layers * c_.att_experts), 0.0);
    stats_.att_entropy_sum.assign(static_cast<size_t>(c_.n_layers), 0.0);
  }
  if (c_.mlp_experts > 1) {
    stats_.mlp_prob_sum.assign(static_cast<size_t>(c_.n_layers * c_.mlp_experts), 0.0);
    stats_.mlp_entropy_sum.assign(static_cast<size_t>(c_.n_layers), 0.0);
  }
}

// Prefill: the grouped expert GEMM (each expert's rows at once). Decode: GEMV over exactly the
// experts with rows. Both: y [rows, n] = x [rows, k] · W[e]ᵀ per expert group.
void Session::matmul(int64_t E, const int32_t* offsets, const float* x, WeightRef w, int64_t n, int64_t k,
                     float* y, bool decode) {
  if (decode) expert_gemv(E, offsets, x, w.data, w.dtype, n, k, y);
  else grouped_gemm(E, offsets, x, w.data, w.dtype, true, n, k, 0.f, y);
}

int64_t Session::route(int64_t l, bool att, const float* x, bool decode) {
  const int64_t N = N_, D = c_.d_model;
  const int64_t E = att ? c_.att_experts : c_.mlp_experts;
  const LayerWeights& lw = w_->layers[static_cast<size_t>(l)];
  const RoutingSpec& spec = att ? att_route_ : mlp_route_;
  int32_t* pt = grow(pair_token_, N * E);
  int32_t* pe = grow(pair_expert_, N * E);
  float* pw = grow(pair_weight_, N * E);
  int64_t P = N;
  if (E == 1) {  // no router: S = 1 for every token
    for (int64_t t = 0; t < N; ++t) { pt[t] = static_cast<int32_t>(t); pe[t] = 0; pw[t] = 1.f; }
  } else {
    float* probs = grow(probs_, N * E);
    const WeightRef router = att ? lw.att_router : lw.mlp_router;
    if (c_.router_hidden > 0) {  // two-layer router: softmax(gelu(x · Whᵀ) · Woutᵀ), as in training
      const int64_t Rh = c_.router_hidden;
      float* a = grow(rhid_, N * Rh);
      matmul(1, one_offsets_.data(), x, att ? lw.att_router_hidden : lw.mlp_router_hidden, Rh, D, a, decode);
      gelu_forward(N * Rh, a, a, GeluKind::Erf);
      matmul(1, one_offsets_.data(), a, router, E, Rh, probs, decode);
    } else {
      matmul(1, one_offsets_.data(), x, router, E, D, probs, decode);
    }
    router_softmax(N, E, probs, probs);
    {  // router statistics for the MI loss (S·log S taken as 0 at S = 0, as in mi_loss)
      double* psum = (att ? stats_.att_prob_sum : stats_.mlp_prob_sum).data() + l * E;
      double ent = 0;
      for (int64_t t = 0; t < N; ++t)
        for (int64_t e = 0; e < E; ++e) {
          const double p = probs[t * E + e];
          psum[e] += p;
          if (p > 0) ent -= p * std::log(p);
        }
      (att ? stats_.att_entropy_sum : stats_.mlp_entropy_sum)[static_cast<size_t>(l)] += ent;
    }
    switch (spec.kind) {
      case RoutingSpec::Kind::Dense: route_topk(N, E, probs, E, pt, pe, pw); P = N * E; break;
      case RoutingSpec::Kind::TopK: route_topk(N, E, probs, spec.k, pt, pe, pw); P = N * spec.k; break;
      case RoutingSpec::Kind::Threshold: P = route_threshold(N, E, probs, spec.eps, pt, pe, pw); break;
      case RoutingSpec::Kind::ThresholdTopK: P = N * route_threshold_topk(N, E, probs, spec.eps, pt, pe, pw); break;
    }
  }
  int32_t* off = grow(offsets_, E + 1);
  group_by_expert(P, E, pe, off, grow(order_, P), grow(position_, P));
  int64_t* usage = (att ? stats_.att_usage : stats_.mlp_usage).data() + l * E;
  for (int64_t e = 0; e < E; ++e) usage[e] += off[e + 1] - off[e];
  return P;
}

void Session::run(bool decode) {
  const int64_t N = N_, D = c_.d_model, L = c_.n_layers;
  const int64_t Ea = c_.att_experts, H = c_.att_heads, G = c_.kv_heads, dh = c_.head_dim;
  const int64_t HD = c_.expert_q_dim(), QD = c_.q_dim(), KV = c_.kv_dim(), F = c_.expert_dim;
  const float eps = static_cast<float>(c_.norm_eps);
  const GeluKind gelu = c_.gelu_tanh ? GeluKind::Tanh : GeluKind::Erf;
  one_offsets_ = {0, static_cast<int32_t>(N)};
  float* h = grow(h_, N * D);
  float* x = grow(x_, N * D);
  float* q = grow(q_, N * QD);
  float* k = grow(k_, N * KV);
  float* v = grow(v_, N * KV);
  float* att = grow(att_, N * QD);
  float* lse = grow(lse_, N * Ea * H);

  // Decode works on a handful of rows: its row-wise steps (norms, routing, gathers, RoPE, combine)
  // take microseconds, less than waking the thread pool, so they run serially on this thread (a
  // parallel_for of one task runs nested parallel_for calls serially); only weight reads go wide.
  auto section = [&](const std::function<void()>& fn) {
    if (decode) parallel_for(1, [&](int64_t, int) { fn(); });
    else fn();
  };
  // Embedding rows.
  const WeightRef emb = w_->embed;
  section([&] {
    parallel_for(N, [&](int64_t t, int) {
      const int64_t row = int64_t(tok_[static_cast<size_t>(t)]) * D;
      if (emb.dtype == DType::F32) std::memcpy(h + t * D, emb.f32() + row, sizeof(float) * static_cast<size_t>(D));
      else for (int64_t j = 0; j < D; ++j) h[t * D + j] = bf16_to_f32(emb.bf16()[row + j]);
    });
  });

  AttentionShape ash;
  ash.batch = 1; ash.n_heads_total = Ea * H; ash.heads_per_expert = H; ash.kv_heads = G; ash.head_dim = dh;
  ash.scale = static_cast<float>(1.0 / std::sqrt(double(dh)));
  const int64_t cache_seq = max_len_ * KV, cache_layer = B_ * cache_seq;

  const int32_t* one = one_offsets_.data();
  for (int64_t l = 0; l < L; ++l) {
    const LayerWeights& lw = w_->layers[static_cast<size_t>(l)];
    // ---- MoA
    int64_t P = 0;
    float *xg = nullptr, *yg = nullptr;
    section([&] {
      rmsnorm_forward(N, D, h, lw.attn_norm, eps, x, nullptr);
      P = route(l, true, x, decode);
      xg = grow(xg_, P * std::max(D, HD));
      yg = grow(yg_, P * std::max(D, HD));
      gather_rows(P, D, x, pair_token_.data(), order_.data(), xg);
    });
    const int32_t *off = offsets_.data(), *order = order_.data(), *pt = pair_token_.data(), *pe = pair_expert_.data();
    // Q projections only for active (token, expert) pairs. The attention core below still runs
    // every query head; heads of unselected experts see Q = 0 and their output is never projected
    // (weight 0), so they cost a little attention arithmetic but no weight reads.
    // K and V once for the G shared heads.
    if (decode) {
      const GemvJob jobs[3] = {{Ea, off, xg, lw.q.data, lw.q.dtype, HD, D, yg},
                               {1, one, x, lw.k.data, lw.k.dtype, KV, D, k},
                               {1, one, x, lw.v.data, lw.v.dtype, KV, D, v}};
      gemv_batch(jobs, 3);
    } else {
      matmul(Ea, off, xg, lw.q, HD, D, yg, false);
      matmul(1, one, x, lw.k, KV, D, k, false);
      matmul(1, one, x, lw.v, KV, D, v, false);
    }
    float* kc = kcache_.data() + l * cache_layer;
    float* vc = vcache_.data() + l * cache_layer;
    section([&] {
      std::fill(q, q + N * QD, 0.f);
      parallel_for(P, [&](int64_t i, int) {
        const int32_t p = order[i];
        std::memcpy(q + int64_t(pt[p]) * QD + int64_t(pe[p]) * HD, yg + i * HD, sizeof(float) * static_cast<size_t>(HD));
      });
      rope_forward(N, Ea * H, dh, c_.rope_theta, pos_.data(), q, q);
      rope_forward(N, G, dh, c_.rope_theta, pos_.data(), k, k);
      for (const Segment& s : segs_) {  // K (post-RoPE) and V into the cache at each row's position
        const size_t bytes = sizeof(float) * static_cast<size_t>(s.count * KV);
        std::memcpy(kc + s.b * cache_seq + s.pos0 * KV, k + s.row0 * KV, bytes);
        std::memcpy(vc + s.b * cache_seq + s.pos0 * KV, v + s.row0 * KV, bytes);
      }
    });
    for (const Segment& s : segs_) {
      // Queries are the last `count` of the pos0 + count cached positions.
      ash.tq = s.count;
      ash.tk = s.pos0 + s.count;
      attention_forward(ash, q + s.row0 * QD, kc + s.b * cache_seq, vc + s.b * cache_seq, att + s.row0 * QD, lse);
    }
    // O projections only for active pairs: gather each pair's HD slice of the attention output.
    section([&] {
      parallel_for(P, [&](int64_t i, int) {
        const int32_t p = order[i];
        std::memcpy(xg + i * HD, att + int64_t(pt[p]) * QD + int64_t(pe[p]) * HD, sizeof(float) * static_cast<size_t>(HD));
      });
    });
    matmul(Ea, off, xg, lw.o, D, HD, yg, decode);

    // ---- MoE MLP
    section([&] {
      combine(N, P, D, yg, pt, pair_weight_.data(), position_.data(), h, 1.f);
      rmsnorm_forward(N, D, h, lw.mlp_norm, eps, x, nullptr);
      P = route(l, false, x, decode);
      xg = grow(xg_, P * std::max(D, F));
      yg = grow(yg_, P * std::max(D, F));
      gather_rows(P, D, x, pair_token_.data(), order_.data(), xg);
    });
    matmul(c_.mlp_experts, offsets_.data(), xg, lw.up, F, D, yg, decode);
    section([&] { gelu_forward(P * F, yg, yg, gelu); });
    matmul(c_.mlp_experts, offsets_.data(), yg, lw.down, D, F, xg, decode);
    section([&] { combine(N, P, D, xg, pair_token_.data(), pair_weight_.data(), position_.data(), h, 1.f); });
  }
  for (const Segment& s : segs_) len_[static_cast<size_t>(s.b)] = s.pos0 + s.count;
  stats_.tokens += N;
}

// Final norm and LM head for the given rows of h.
void Session::logits_rows(const std::vector<int64_t>& rows, float* out, bool decode) {
  const int64_t R = static_cast<int64_t>(rows.size()), D = c_.d_model;
  float* hf = grow(hf_, R * D);
  for (int64_t i = 0; i < R; ++i)
    std::memcpy(hf + i * D, h_.data() + rows[static_cast<size_t>(i)] * D, sizeof(float) * static_cast<size_t>(D));
  rmsnorm_forward(R, D, hf, w_->final_norm, static_cast<float>(c_.norm_eps), hf, nullptr);
  const int32_t off[2] = {0, static_cast<int32_t>(R)};
  matmul(1, off, hf, w_->lm_head, c_.vocab_size, D, out, decode);
}

void Session::prefill(const int32_t* tokens, int64_t tp, const int32_t* lengths, float* logits, float* all_logits) {
  const int64_t V = c_.vocab_size;
  tok_.clear(); pos_.clear(); segs_.clear();
  for (int64_t b = 0; b < B_; ++b) {
    const int64_t n = lengths[b], p0 = len_[static_cast<size_t>(b)];
    if (n < 1 || n > tp || p0 + n > max_len_) throw std::out_of_range("prefill: bad length");  // bindings check
    segs_.push_back({b, static_cast<int64_t>(tok_.size()), n, p0});
    for (int64_t i = 0; i < n; ++i) {
      tok_.push_back(tokens[b * tp + i]);
      pos_.push_back(static_cast<int32_t>(p0 + i));
    }
  }
  N_ = static_cast<int64_t>(tok_.size());
  run(false);
  started_ = true;
  std::vector<int64_t> rows;
  if (all_logits) {
    for (int64_t r = 0; r < N_; ++r) rows.push_back(r);
    std::vector<float> out(static_cast<size_t>(N_ * V));
    logits_rows(rows, out.data(), false);
    std::fill(all_logits, all_logits + B_ * tp * V, 0.f);
    for (const Segment& s : segs_) {
      std::memcpy(all_logits + s.b * tp * V, out.data() + s.row0 * V, sizeof(float) * static_cast<size_t>(s.count * V));
      std::memcpy(logits + s.b * V, out.data() + (s.row0 + s.count - 1) * V, sizeof(float) * static_cast<size_t>(V));
    }
  } else {
    for (const Segment& s : segs_) rows.push_back(s.row0 + s.count - 1);
    logits_rows(rows, logits, false);
  }
}

void Session::decode(const int32_t* tokens, float* logits) {
  if (!started_) throw std::logic_error("decode before prefill");  // bindings check
  tok_.assign(tokens, tokens + B_);
  pos_.clear(); segs_.clear();
  for (int64_t b = 0; b < B_; ++b) {
    const int64_t p = len_[static_cast<size_t>(b)];
    if (p >= max_len_) throw std::out_of_range("decode: cache full");  // bindings check
    pos_.push_back(static_cast<int32_t>(p));
    segs_.push_back({b, b, 1, p});
  }
  N_ = B_;
  run(true);
  std::vector<int64_t> rows(static_cast<size_t>(B_));
  for (int64_t b = 0; b < B_; ++b) rows[static_cast<size_t>(b)] = b;
  logits_rows(rows, logits, true);
}

ActiveSummary Session::summary() const {
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
  const double T = static_cast<double>(stats_.tokens);
  double shared_bytes = 0, expert_bytes = 0, att_sum = 0, mlp_sum = 0;
  for (int64_t l = 0; l < L; ++l) {
    const LayerWeights& lw = w_->layers[static_cast<size_t>(l)];
    double na = 0, nm = 0;
    for (int64_t e = 0; e < Ea; ++e) na += double(stats_.att_usage[static_cast<size_t>(l * Ea + e)]);
    for (int64_t e = 0; e < Em; ++e) nm += double(stats_.mlp_usage[static_cast<size_t>(l * Em + e)]);
    att_sum += na; mlp_sum += nm;
    const int64_t qo = c_.expert_q_dim() * D, ud = c_.expert_dim * D;
    expert_bytes += na * double(qo * (dtype_bytes(lw.q.dtype) + dtype_bytes(lw.o.dtype))) +
                    nm * double(ud * (dtype_bytes(lw.up.dtype) + dtype_bytes(lw.down.dtype)));
    shared_bytes += double(KV * D * (dtype_bytes(lw.k.dtype) + dtype_bytes(lw.v.dtype)));
    auto router_bytes = [&](int64_t E, WeightRef out, WeightRef hidden) -> double {
      if (E == 1) return 0;
      if (Rh == 0) return double(E * D * dtype_bytes(out.dtype));
      return double(Rh * D * dtype_bytes(hidden.dtype) + E * Rh * dtype_bytes(out.dtype));
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
                                      double(c_.vocab_size * D * dtype_bytes(w_->lm_head.dtype));
  }
  return s;
}

}  // namespace dsmoe::infer
