// Bindings of the inference engine (native/infer). openWeights / openWeightsFromBuffer open a
// checkpoint's weights once; their createSession makes any number of sessions sharing them.
// createSession / createSessionFromFile are the one-session shorthands. A session's prefill/decode
// run synchronously or on a worker thread (…Async); a session serves one call at a time: an
// overlapping call is refused (busy) rather than queued.
#include <atomic>
#include <memory>

#include "../kernels/cpu/gemv.h"
#include "../kernels/cpu/quant.h"
#include "../infer/session.h"
#include "config_reader.h"
#include "op_args.h"
#include "register.h"
#include "session_object.h"
#include "stage.h"

namespace dsmoe::bind {
namespace {

using infer::RoutingSpec;
using infer::Session;

struct SessionHandle {
  std::unique_ptr<Session> session;
  std::vector<Napi::Reference<Napi::Value>> keep_alive;  // what owns the weights (buffers, a weights object)
  std::atomic<bool> busy{false};
};

SessionHandle* handle_of(const Napi::CallbackInfo& info) {
  Napi::Value self = info.This();
  if (self.IsObject()) {
    Napi::Value ext = self.As<Napi::Object>().Get("_native");
    if (ext.IsExternal()) return ext.As<Napi::External<SessionHandle>>().Data();
  }
  type_error("session methods must be called on a session made by createSession");
}

// routing: {attention?, mlp?}; a missing field falls back to config.routing, else 'dense'.
std::pair<RoutingSpec, RoutingSpec> read_routing(Args& args, const model::Config& c, Napi::Value fallback) {
  auto pick = [&](const char* key, int64_t E) {
    std::string text = "dense";
    std::string where = args.where("routing") + "." + key;
    Napi::Value v;
    if (args.has("routing")) v = args.object("routing").Get(key);
    if ((v.IsEmpty() || v.IsUndefined()) && fallback.IsObject()) {
      v = fallback.As<Napi::Object>().Get(key);
      where = args.fn() + ": config.routing." + key;
    }
    if (!v.IsEmpty() && !v.IsUndefined()) {
      if (!v.IsString()) type_error(where + " must be a string");
      text = v.As<Napi::String>().Utf8Value();
    }
    try {
      return infer::parse_routing(text, E);
    } catch (const std::invalid_argument& e) {
      range_error(where + ": " + e.what());
    }
  };
  return {pick("attention", c.att_experts), pick("mlp", c.mlp_experts)};
}

// ---- calls -----------------------------------------------------------------------------------

class CallWorker : public Napi::AsyncWorker {
 public:
  CallWorker(Napi::Env env, std::string name, SessionHandle* h, Napi::Object owner, std::function<void()> fn,
             std::vector<Napi::Reference<Napi::Value>> refs)
      : Napi::AsyncWorker(env), name_(std::move(name)), h_(h), owner_(Napi::Persistent(owner)), fn_(std::move(fn)),
        refs_(std::move(refs)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try { fn_(); } catch (const std::exception& e) { SetError(name_ + ": " + e.what()); }
  }
  void OnOK() override { h_->busy = false; deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { h_->busy = false; deferred_.Reject(e.Value()); }

 private:
  std::string name_;
  SessionHandle* h_;
  Napi::ObjectReference owner_;  // keeps the session (and its weights) alive while running
  std::function<void()> fn_;
  std::vector<Napi::Reference<Napi::Value>> refs_;  // the output arrays
  Napi::Promise::Deferred deferred_;
};

using MakeWork = std::function<void()> (*)(Args& args, Session& s);

// Marks the session busy, then checks the arguments against its current state (lengths), then
// runs the work now or on a worker thread.
Napi::Value call(const Napi::CallbackInfo& info, const char* name, bool async, MakeWork make) {
  try {
    SessionHandle* h = handle_of(info);
    Args args(info, name);
    bool expected = false;
    if (!h->busy.compare_exchange_strong(expected, true))
      throw std::runtime_error("the session is busy with another call (await it first)");
    std::function<void()> work;
    try { work = make(args, *h->session); } catch (...) { h->busy = false; throw; }
    if (async) {
      auto* worker = new CallWorker(info.Env(), name, h, info.This().As<Napi::Object>(), std::move(work),
                                    args.take_refs());
      Napi::Promise p = worker->promise();
      worker->Queue();
      return p;
    }
    try { work(); } catch (...) { h->busy = false; throw; }
    h->busy = false;
  } catch (...) {
    throw_js(info.Env(), name);
  }
  return info.Env().Undefined();
}

void check_token(Args& args, const char* name, int64_t i, int32_t t, int64_t V) {
  if (t < 0 || t >= V)
    range_error(args.where(name) + "[" + std::to_string(i) + "] = " + std::to_string(t) +
                " is outside the vocabulary [0, " + std::to_string(V) + ")");
}

// prefill({tokens [batch, len], batch, len, lengths? [batch], logits [batch, V], allLogits? [batch, len, V],
//          targets? [batch, len], losses? [batch, len]}); logits may be left out when losses are asked for
std::function<void()> make_prefill(Args& args, Session& s) {
  const model::Config& c = s.weights().config();
  const int64_t B = s.batch(), V = c.vocab_size;
  const int64_t batch = args.integer("batch", 1, 1 << 20);
  if (batch != B)
    range_error(args.where("batch") + " is " + std::to_string(batch) + " but the session was made for batch " +
                std::to_string(B));
  if (args.has("len") && args.integer("len", 0) == 0)
    range_error(args.where("len") + ": the prompt is empty (len must be >= 1)");
  const int64_t len = args.integer("len", 1, 1 << 30);
  auto tok = args.i32("tokens", checked_mul(B, len, args.where("tokens")));
  auto lengths = std::make_shared<std::vector<int32_t>>(static_cast<size_t>(B), static_cast<int32_t>(len));
  if (args.has("lengths")) {
    auto lv = args.i32("lengths", B);
    int64_t total = 0;
    for (int64_t b = 0; b < B; ++b) {
      if (lv.data[b] < 0 || lv.data[b] > len)
        range_error(args.where("lengths") + "[" + std::to_string(b) + "] = " + std::to_string(lv.data[b]) +
                    " must be in [0, len = " + std::to_string(len) + "] (0: the sequence takes no tokens now)");
      (*lengths)[static_cast<size_t>(b)] = lv.data[b];
      total += lv.data[b];
    }
    if (total == 0) range_error(args.where("lengths") + ": every length is 0 (an empty prompt cannot be prefilled)");
  }
  for (int64_t b = 0; b < B; ++b) {
    const int64_t have = s.lengths()[static_cast<size_t>(b)], n = (*lengths)[static_cast<size_t>(b)];
    if (have + n > s.max_len())
      range_error(args.fn() + ": sequence " + std::to_string(b) + ": a prompt of " + std::to_string(n) + " tokens" +
                  (have ? " after " + std::to_string(have) + " cached ones" : std::string()) +
                  " is longer than the context (maxLen " + std::to_string(s.max_len()) + ")");
  }
  auto tokens = std::make_shared<std::vector<int32_t>>(tok.data, tok.data + B * len);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < (*lengths)[static_cast<size_t>(b)]; ++i)
      check_token(args, "tokens", b * len + i, (*tokens)[static_cast<size_t>(b * len + i)], V);
  const bool scored = args.has("losses");
  if (scored != args.has("targets"))
    type_error(args.fn() + ": targets and losses come together (per-position losses of the targets)");
  auto logits = scored ? args.f32_opt("logits", checked_mul(B, V, args.where("logits")))
                       : args.f32("logits", checked_mul(B, V, args.where("logits")));
  auto all = args.f32_opt("allLogits",
                          checked_mul(checked_mul(B, len, args.where("allLogits")), V, args.where("allLogits")));
  auto targets = std::make_shared<std::vector<int32_t>>();
  View<float> losses{};
  if (scored) {
    auto tv = args.i32("targets", B * len);
    targets->assign(tv.data, tv.data + B * len);
    for (int64_t i = 0; i < B * len; ++i)
      if ((*targets)[static_cast<size_t>(i)] >= V)
        range_error(args.where("targets") + "[" + std::to_string(i) + "] = " +
                    std::to_string((*targets)[static_cast<size_t>(i)]) +
                    " is outside the vocabulary [0, " + std::to_string(V) + ") (negative = not scored)");
    losses = args.f32("losses", B * len);
  }
  Session* sp = &s;
  return [sp, tokens, lengths, len, logits, all, targets, losses] {
    sp->prefill(tokens->data(), len, lengths->data(), logits.data, all.data,
                targets->empty() ? nullptr : targets->data(), losses.data);
  };
}

// decode({tokens [batch], logits [batch, V]})
std::function<void()> make_decode(Args& args, Session& s) {
  const int64_t B = s.batch(), V = s.weights().config().vocab_size;
  if (!s.started())
    throw std::runtime_error("no prompt: call prefill before decode (after creating or resetting the session)");
  // active [B] (optional): the sequences that take a token; the others keep their cache and logits rows.
  auto active = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(B), uint8_t(1));
  if (args.has("active")) {
    auto av = args.u8("active", B);
    active->assign(av.data, av.data + B);
  }
  for (int64_t b = 0; b < B; ++b) {
    if (!(*active)[static_cast<size_t>(b)]) continue;
    const int64_t have = s.lengths()[static_cast<size_t>(b)];
    if (have == 0)
      range_error(args.fn() + ": sequence " + std::to_string(b) + " has no prompt: prefill it first " +
                  "(or leave it out with active[" + std::to_string(b) + "] = 0)");
    if (have >= s.max_len())
      range_error(args.fn() + ": sequence " + std::to_string(b) + " already fills the context (maxLen " +
                  std::to_string(s.max_len()) + "); decoding past it is not possible");
  }
  auto tok = args.i32("tokens", B);
  auto tokens = std::make_shared<std::vector<int32_t>>(tok.data, tok.data + B);
  for (int64_t b = 0; b < B; ++b) check_token(args, "tokens", b, (*tokens)[static_cast<size_t>(b)], V);
  auto logits = args.f32("logits", checked_mul(B, V, args.where("logits")));
  Session* sp = &s;
  return [sp, tokens, logits, active] { sp->decode(tokens->data(), logits.data, active->data()); };
}

// Small synchronous methods that must not run while a worker uses the session.
template <typename Fn>
Napi::Value quick(const Napi::CallbackInfo& info, const char* name, Fn fn) {
  try {
    SessionHandle* h = handle_of(info);
    bool expected = false;
    if (!h->busy.compare_exchange_strong(expected, true))
      throw std::runtime_error("the session is busy with another call (await it first)");
    Napi::Value out;
    try { out = fn(*h->session); } catch (...) { h->busy = false; throw; }
    h->busy = false;
    return out;
  } catch (...) {
    throw_js(info.Env(), name);
    return info.Env().Undefined();
  }
}

Napi::Value num(Napi::Env env, double v) { return Napi::Number::New(env, v); }

Napi::Value usage_to_js(Napi::Env env, const std::vector<int64_t>& u, int64_t L, int64_t E) {
  Napi::Array rows = Napi::Array::New(env, static_cast<size_t>(L));
  for (int64_t l = 0; l < L; ++l) {
    Napi::Array r = Napi::Array::New(env, static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e)
      r.Set(static_cast<uint32_t>(e), num(env, double(u[static_cast<size_t>(l * E + e)])));
    rows.Set(static_cast<uint32_t>(l), r);
  }
  return rows;
}

// The session's counters, or sequence `b`'s (b ≥ 0).
Napi::Value stats_to_js(Napi::Env env, const Session& s, int64_t b = -1) {
  const model::Config& c = s.weights().config();
  const infer::InferStats& st = b < 0 ? s.stats() : s.stats(b);
  const infer::ActiveSummary a = b < 0 ? s.summary() : s.summary(b);
  Napi::Object o = Napi::Object::New(env);
  o.Set("tokens", num(env, double(st.tokens)));
  o.Set("attExpertsPerToken", num(env, a.att_experts_per_token));
  o.Set("mlpExpertsPerToken", num(env, a.mlp_experts_per_token));
  o.Set("activeParamsPerToken", num(env, a.active_params_per_token));
  o.Set("activeExpertShare", num(env, a.active_expert_share));
  o.Set("activeWeightBytesPerToken", num(env, a.active_weight_bytes_per_token));
  o.Set("expertParams", num(env, double(a.expert_params)));
  o.Set("sharedParams", num(env, double(a.shared_params)));
  o.Set("embeddingParams", num(env, double(a.embedding_params)));
  o.Set("lmHeadParams", num(env, double(a.lm_head_params)));
  o.Set("attUsage", usage_to_js(env, st.att_usage, c.n_layers, c.att_experts));
  o.Set("mlpUsage", usage_to_js(env, st.mlp_usage, c.n_layers, c.mlp_experts));
  // Router sums for the MI loss: probSum [layers][E] = Σ_x S_e(x), entropySum [layers] = Σ_x H(S(x)).
  auto router = [&](const std::vector<double>& ps, const std::vector<double>& es, int64_t E) -> Napi::Value {
    if (ps.empty()) return env.Null();
    Napi::Object r = Napi::Object::New(env);
    Napi::Array rows = Napi::Array::New(env, static_cast<size_t>(c.n_layers));
    Napi::Array ent = Napi::Array::New(env, static_cast<size_t>(c.n_layers));
    for (int64_t l = 0; l < c.n_layers; ++l) {
      Napi::Array row = Napi::Array::New(env, static_cast<size_t>(E));
      for (int64_t e = 0; e < E; ++e) row.Set(static_cast<uint32_t>(e), num(env, ps[static_cast<size_t>(l * E + e)]));
      rows.Set(static_cast<uint32_t>(l), row);
      ent.Set(static_cast<uint32_t>(l), num(env, es[static_cast<size_t>(l)]));
    }
    r.Set("probSum", rows);
    r.Set("entropySum", ent);
    return r;
  };
  o.Set("attRouter", router(st.att_prob_sum, st.att_entropy_sum, c.att_experts));
  o.Set("mlpRouter", router(st.mlp_prob_sum, st.mlp_entropy_sum, c.mlp_experts));
  Napi::Object r = Napi::Object::New(env);
  r.Set("attention", b < 0 ? s.att_routing().text : s.att_routing(b).text);
  r.Set("mlp", b < 0 ? s.mlp_routing().text : s.mlp_routing(b).text);
  o.Set("routing", r);
  return o;
}

Napi::Object make_session_object(Napi::Env env, SessionHandle* h) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("_native", Napi::External<SessionHandle>::New(env, h, [](Napi::Env, SessionHandle* p) { delete p; }));
  auto method = [&](const char* name, Napi::Function::Callback cb) { o.Set(name, Napi::Function::New(env, cb, name)); };
  method("prefill", [](const Napi::CallbackInfo& i) { return call(i, "prefill", false, make_prefill); });
  method("prefillAsync", [](const Napi::CallbackInfo& i) { return call(i, "prefill", true, make_prefill); });
  method("decode", [](const Napi::CallbackInfo& i) { return call(i, "decode", false, make_decode); });
  method("decodeAsync", [](const Napi::CallbackInfo& i) { return call(i, "decode", true, make_decode); });
  method("reset", [](const Napi::CallbackInfo& i) {
    return quick(i, "reset", [&](Session& s) -> Napi::Value { s.reset(); return i.Env().Undefined(); });
  });
  method("resetSequence", [](const Napi::CallbackInfo& i) {
    return quick(i, "resetSequence", [&](Session& s) -> Napi::Value {
      Args args(i, "resetSequence");
      const int64_t b = args.integer("index", 0, s.batch() - 1);
      s.reset_sequence(b);
      return i.Env().Undefined();
    });
  });
  method("resetStats", [](const Napi::CallbackInfo& i) {
    return quick(i, "resetStats", [&](Session& s) -> Napi::Value { s.reset_stats(); return i.Env().Undefined(); });
  });
  method("stats", [](const Napi::CallbackInfo& i) {
    return quick(i, "stats", [&](Session& s) {
      if (i.Length() == 0 || i[0].IsUndefined()) return stats_to_js(i.Env(), s);
      Args args(i, "stats");
      return stats_to_js(i.Env(), s, args.has("index") ? args.integer("index", 0, s.batch() - 1) : -1);
    });
  });
  method("lengths", [](const Napi::CallbackInfo& i) {
    return quick(i, "lengths", [&](Session& s) -> Napi::Value {
      Napi::Array a = Napi::Array::New(i.Env(), s.lengths().size());
      for (size_t b = 0; b < s.lengths().size(); ++b)
        a.Set(static_cast<uint32_t>(b), num(i.Env(), double(s.lengths()[b])));
      return a;
    });
  });
  method("setRouting", [](const Napi::CallbackInfo& i) {
    return quick(i, "setRouting", [&](Session& s) -> Napi::Value {
      Args args(i, "setRouting");
      auto r = [&] {
        if (!args.has("attention") || !args.has("mlp"))
          type_error("setRouting: attention and mlp are both required (strings)");
        Napi::Object ro = i[0].As<Napi::Object>();
        auto parse = [&](const char* key, int64_t E) {
          Napi::Value v = ro.Get(key);
          if (!v.IsString()) type_error(std::string("setRouting: ") + key + " must be a string");
          try { return infer::parse_routing(v.As<Napi::String>().Utf8Value(), E); }
          catch (const std::invalid_argument& e) { range_error(std::string("setRouting: ") + key + ": " + e.what()); }
        };
        const model::Config& c = s.weights().config();
        return std::make_pair(parse("attention", c.att_experts), parse("mlp", c.mlp_experts));
      }();
      if (args.has("index")) s.set_sequence_routing(args.integer("index", 0, s.batch() - 1), r.first, r.second);
      else s.set_routing(r.first, r.second);
      return i.Env().Undefined();
    });
  });
  return o;
}

int64_t read_max_len(Args& args, const model::Config& c) {
  return args.integer_or("maxLen", c.max_seq_len, 1, c.max_seq_len);
}

}  // namespace

Napi::Value create_session_over(Args& args, std::shared_ptr<const infer::Weights> w, Napi::Value routing_fallback,
                                std::vector<Napi::Reference<Napi::Value>> keep_alive) {
  const model::Config& c = w->config();
  const int64_t batch = args.integer("batch", 1, 1 << 16);
  const int64_t max_len = read_max_len(args, c);
  auto routing = read_routing(args, c, routing_fallback);
  // KV cache: [L, B, maxLen, G·dh] floats for K and for V.
  checked_mul(checked_mul(checked_mul(c.n_layers, batch, args.fn() + ": KV cache"), max_len, args.fn() + ": KV cache"),
              checked_mul(c.kv_dim(), 8, args.fn() + ": KV cache"), args.fn() + ": KV cache");
  auto* h = new SessionHandle();
  try {
    h->session = std::make_unique<Session>(std::move(w), batch, max_len, routing.first, routing.second);
  } catch (...) {
    delete h;
    throw;
  }
  h->keep_alive = std::move(keep_alive);
  return make_session_object(args.env(), h);
}

namespace {

Napi::Value finish_create(Args& args, const model::Config&, std::shared_ptr<const infer::Weights> w,
                          std::vector<Napi::Reference<Napi::Value>> refs) {
  return create_session_over(args, std::move(w), args.object("config").Get("routing"), std::move(refs));
}

// createSession({config, weights: Float32Array | Uint16Array (bf16) [layout total], batch, maxLen?, routing?})
Napi::Value create_session(const Napi::CallbackInfo& info) {
  Args args(info, "createSession");
  model::Config c = read_config(args);
  const int64_t total = model::make_layout(c).total;
  bool bf16 = false;
  auto wv = args.f32_or_bf16("weights", total, &bf16);
  auto weights = infer::Weights::from_buffer(c, wv.data, bf16 ? cpu::DType::BF16 : cpu::DType::F32);
  return finish_create(args, c, std::move(weights), args.take_refs());
}

int64_t safe_int(Napi::Value v, const std::string& where) {
  if (!v.IsNumber()) type_error(where + " must be an integer");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d) || d < 0 || d > 9007199254740991.0)
    range_error(where + " must be a non-negative safe integer, got " + std::to_string(d));
  return static_cast<int64_t>(d);
}

// The tensors of {config, path, tensors: [{name, dtype, shape, begin, end}], dataOffset, load?}, opened
// once: read into huge pages (load 'read', the default) or mapped ('mmap').
std::shared_ptr<infer::Weights> map_weights(Args& args, const Napi::CallbackInfo& info, const model::Config& c) {
  const std::string path = args.string("path");
  const int64_t data_offset = args.integer("dataOffset", 8, int64_t(1) << 50);
  Napi::Value tv = info[0].As<Napi::Object>().Get("tensors");
  if (!tv.IsArray()) type_error(args.where("tensors") + " must be an array of {name, dtype, shape, begin, end}");
  Napi::Array arr = tv.As<Napi::Array>();
  std::vector<infer::FileTensor> tensors;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    const std::string where = args.where("tensors") + "[" + std::to_string(i) + "]";
    Napi::Value ev = arr.Get(i);
    if (!ev.IsObject()) type_error(where + " must be an object");
    Napi::Object e = ev.As<Napi::Object>();
    infer::FileTensor t;
    if (!e.Get("name").IsString()) type_error(where + ".name must be a string");
    if (!e.Get("dtype").IsString()) type_error(where + ".dtype must be a string");
    t.name = e.Get("name").As<Napi::String>().Utf8Value();
    t.dtype = e.Get("dtype").As<Napi::String>().Utf8Value();
    if (!e.Get("shape").IsArray()) type_error(where + ".shape must be an array");
    Napi::Array sh = e.Get("shape").As<Napi::Array>();
    for (uint32_t d = 0; d < sh.Length(); ++d)
      t.shape.push_back(safe_int(sh.Get(d), where + ".shape[" + std::to_string(d) + "]"));
    t.begin = safe_int(e.Get("begin"), where + ".begin");
    t.end = safe_int(e.Get("end"), where + ".end");
    tensors.push_back(std::move(t));
  }
  infer::FileLoad load = infer::FileLoad::Read;
  if (args.has("load")) {
    const std::string how = args.string("load");
    if (how == "mmap") load = infer::FileLoad::Map;
    else if (how != "read") range_error(args.where("load") + " must be 'read' or 'mmap', got '" + how + "'");
  }
  try {
    return infer::Weights::from_file(c, path, tensors, data_offset, load);
  } catch (const std::out_of_range& e) {
    range_error(args.fn() + ": " + path + ": " + e.what());
  }
}

// createSessionFromFile({config, path, tensors, dataOffset, batch, maxLen?, routing?})
Napi::Value create_session_from_file(const Napi::CallbackInfo& info) {
  Args args(info, "createSessionFromFile");
  model::Config c = read_config(args);
  return finish_create(args, c, map_weights(args, info, c), {});
}

// ---- weights opened once, shared by sessions ------------------------------------------------------

struct WeightsHandle {
  std::shared_ptr<const infer::Weights> weights;
  std::vector<Napi::Reference<Napi::Value>> buffers;  // an in-memory source, kept alive
};

// {config, mappedBytes, createSession({batch, maxLen?, routing?})}: a session keeps this object (and
// so the weights and their source) alive; the default routing is config.routing.
Napi::Value make_weights_object(Napi::Env env, std::shared_ptr<const infer::Weights> w, Napi::Object config,
                                std::vector<Napi::Reference<Napi::Value>> buffers) {
  auto* h = new WeightsHandle{std::move(w), std::move(buffers)};
  Napi::Object o = Napi::Object::New(env);
  o.Set("_native", Napi::External<WeightsHandle>::New(env, h, [](Napi::Env, WeightsHandle* p) { delete p; }));
  o.Set("config", config);
  o.Set("mappedBytes", Napi::Number::New(env, double(h->weights->mapped_bytes())));
  if (h->weights->mapped_bytes() > 0)
    o.Set("load", Napi::String::New(env, h->weights->load() == infer::FileLoad::Read ? "read" : "mmap"));
  o.Set("createSession", Napi::Function::New(env, [](const Napi::CallbackInfo& i) -> Napi::Value {
    try {
      Napi::Value self = i.This();
      Napi::Value ext = self.IsObject() ? self.As<Napi::Object>().Get("_native") : Napi::Value();
      if (ext.IsEmpty() || !ext.IsExternal())
        type_error("createSession must be called on the object openWeights returned");
      WeightsHandle* wh = ext.As<Napi::External<WeightsHandle>>().Data();
      Args args(i, "createSession");
      Napi::Value cfg = self.As<Napi::Object>().Get("config");
      Napi::Value fallback = cfg.IsObject() ? cfg.As<Napi::Object>().Get("routing") : Napi::Value();
      std::vector<Napi::Reference<Napi::Value>> keep;
      keep.push_back(Napi::Persistent(self));
      return create_session_over(args, wh->weights, fallback, std::move(keep));
    } catch (...) {
      throw_js(i.Env(), "createSession");
      return i.Env().Undefined();
    }
  }, "createSession"));
  return o;
}

// openWeights({config, path, tensors, dataOffset})
Napi::Value open_weights(const Napi::CallbackInfo& info) {
  try {
    Args args(info, "openWeights");
    model::Config c = read_config(args);
    return make_weights_object(info.Env(), map_weights(args, info, c), args.object("config"), {});
  } catch (...) {
    throw_js(info.Env(), "openWeights");
    return info.Env().Undefined();
  }
}

// openWeightsFromBuffer({config, weights: Float32Array | Uint16Array (bf16) [layout total]})
Napi::Value open_weights_from_buffer(const Napi::CallbackInfo& info) {
  try {
    Args args(info, "openWeightsFromBuffer");
    model::Config c = read_config(args);
    bool bf16 = false;
    auto wv = args.f32_or_bf16("weights", model::make_layout(c).total, &bf16);
    auto w = infer::Weights::from_buffer(c, wv.data, bf16 ? cpu::DType::BF16 : cpu::DType::F32);
    return make_weights_object(info.Env(), std::move(w), args.object("config"), args.take_refs());
  } catch (...) {
    throw_js(info.Env(), "openWeightsFromBuffer");
    return info.Env().Undefined();
  }
}

// setBf16Dot({enabled}) -> whether the AVX512-BF16 dot product is in use now (tests force the fallback).
Napi::Value set_bf16_dot(const Napi::CallbackInfo& info) {
  Args args(info, "setBf16Dot");
  Napi::Value v = info[0].As<Napi::Object>().Get("enabled");
  if (!v.IsBoolean()) type_error("setBf16Dot: enabled must be a boolean");
  return Napi::Boolean::New(info.Env(), cpu::set_bf16_dot(v.As<Napi::Boolean>().Value()));
}

// setInt8Dot({enabled}) -> whether the AVX-512 VNNI dot product of int8 / q4 weights is in use now.
Napi::Value set_int8_dot(const Napi::CallbackInfo& info) {
  Args args(info, "setInt8Dot");
  Napi::Value v = info[0].As<Napi::Object>().Get("enabled");
  if (!v.IsBoolean()) type_error("setInt8Dot: enabled must be a boolean");
  return Napi::Boolean::New(info.Env(), cpu::set_int8_dot(v.As<Napi::Boolean>().Value()));
}

}  // namespace

namespace {
// expertGemv with quantized weights (native/kernels/cpu/quant.h): w Int8Array [E·n, k] with scales
// Float32Array [E·n] (I8), or Uint8Array [E·n, k/2] with scales Uint16Array of fp16 [E·n, k/32] (Q4,
// k a multiple of 32). The CPU kernels directly: the backends' GemvJob carries no scales yet.
Work bind_expert_gemv_quant(Args& args, bool q4) {
  const int64_t E = args.integer("experts", 1), n = args.integer("n", 0), k = args.integer("k", 0);
  if (!args.boolean_or("transW", true))
    range_error(args.where("transW") + ": expertGemv takes weights [E, n, k] (transW true) only");
  if (args.number_or("beta", 0.0) != 0.0) range_error(args.where("beta") + ": expertGemv overwrites y (beta 0) only");
  if (q4 && k % cpu::kQ4Group != 0)
    range_error(args.where("k") + " must be a multiple of 32 for 4-bit weights (w a Uint8Array), got " +
                std::to_string(k));
  const Index offsets = group_offsets(args, E);
  const int64_t rows = offsets->back();
  const float* x = args.f32_in("x", checked_mul(rows, k, args.where("x"))).data;
  const int64_t wrows = checked_mul(E, n, args.where("w"));
  const void* w = q4 ? static_cast<const void*>(args.u8("w", checked_mul(wrows, k / 2, args.where("w"))).data)
                     : static_cast<const void*>(args.i8("w", checked_mul(wrows, k, args.where("w"))).data);
  const void* scales = q4 ? static_cast<const void*>(args.u16("scales", checked_mul(wrows, k / cpu::kQ4Group,
                                                                                    args.where("scales"))).data)
                          : static_cast<const void*>(args.f32("scales", wrows).data);
  float* y = args.f32("y", checked_mul(rows, n, args.where("y"))).data;
  const backend::Device device = read_device(args);
  if (device.kind != backend::DeviceKind::Cpu)  // no CUDA kernels for them (native/cuda/README.md)
    range_error(args.where("device") + ": quantized weights (Int8Array or Uint8Array w) run on the cpu only");
  const backend::DType dt = q4 ? backend::DType::Q4 : backend::DType::I8;
  return [=] {
    // The backend's op, as the session calls it (on the CPU, Stage passes host pointers through).
    Stage st(device);
    backend::GemvJob job;
    job.n_experts = E;
    job.offsets = offsets->data();
    job.x = x;
    job.w = {w, dt, scales};
    job.n = n;
    job.k = k;
    job.y = y;
    st.be.gemv_batch(&job, 1);
    st.finish();
  };
}

// expertGemv({experts, offsets [E+1], x [R, k], w [E, n, k] (f32|bf16|int8|4-bit), scales?, n, k, y [R, n],
// device?}): the decode op alone (Backend::gemv_batch with one job; stage.h), for tests against the
// grouped-GEMM reference (the same contract, transW only). Quantized weights: bind_expert_gemv_quant
// (the same op, CPU only).
Work bind_expert_gemv(Args& args) {
  if (args.is_typed("w", napi_int8_array)) return bind_expert_gemv_quant(args, false);
  if (args.is_typed("w", napi_uint8_array)) return bind_expert_gemv_quant(args, true);
  if (args.has("w") && !args.is_typed("w", napi_float32_array) && !args.is_typed("w", napi_uint16_array))
    type_error(args.where("w") + " must be a Float32Array, a Uint16Array (bf16), an Int8Array (I8, with scales) "
               "or a Uint8Array (Q4, with scales)");
  if (args.has("scales"))
    range_error(args.where("scales") + " belongs to quantized weights (w an Int8Array or a Uint8Array)");
  const GroupedGemmArgs g = read_grouped_gemm(args);
  if (!g.trans_w) range_error(args.where("transW") + ": expertGemv takes weights [E, n, k] (transW true) only");
  if (g.beta != 0.f) range_error(args.where("beta") + ": expertGemv overwrites y (beta 0) only");
  const backend::Device device = read_device(args);
  return [=] {
    Stage st(device);
    const backend::DType dt = g.w_bf16 ? backend::DType::BF16 : backend::DType::F32;
    backend::GemvJob job;
    job.n_experts = g.experts;
    job.offsets = st.in(g.offsets->data(), g.experts + 1);
    job.x = st.in(g.x.data, g.rows * g.k);
    job.w = {st.in_bytes(g.w.data, g.experts * g.n * g.k * backend::dtype_bytes(dt)), dt};
    job.n = g.n;
    job.k = g.k;
    job.y = st.out(g.y.data, g.rows * g.n);
    st.be.gemv_batch(&job, 1);
    st.finish();
  };
}
}  // namespace

void register_infer(Napi::Env env, Napi::Object exports) {
  export_kernel(env, exports, "expertGemv", bind_expert_gemv);
  export_function(env, exports, "createSession", create_session);
  export_function(env, exports, "createSessionFromFile", create_session_from_file);
  export_function(env, exports, "openWeights", open_weights);
  export_function(env, exports, "openWeightsFromBuffer", open_weights_from_buffer);
  export_function(env, exports, "setBf16Dot", set_bf16_dot);
  export_function(env, exports, "setInt8Dot", set_int8_dot);
}

}  // namespace dsmoe::bind
