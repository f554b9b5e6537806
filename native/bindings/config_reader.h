// Reads config.json's schema (DESIGN.md §3) from a JS object into a model::Config; shared by the
// model and inference bindings. Errors are TypeError/RangeError naming the field (config.<path>).
#pragma once
#include <napi.h>

#include <cmath>
#include <string>

#include "../model/config.h"
#include "args.h"

namespace dsmoe::bind {

using model::Config;

// Reads config.json's schema (snake_case) from a JS object; errors name the field.
class ConfigReader {
 public:
  ConfigReader(Napi::Object root, std::string fn) : root_(root), fn_(std::move(fn)) {}

  Napi::Object object(Napi::Object o, const char* key, const std::string& path) {
    Napi::Value v = o.Get(key);
    if (!v.IsObject()) type_error(fn_ + ": config." + path + " must be an object");
    return v.As<Napi::Object>();
  }
  int64_t integer(Napi::Object o, const char* key, const std::string& path, int64_t fallback = -1) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() && fallback >= 0) return fallback;
    if (!v.IsNumber()) type_error(fn_ + ": config." + path + " must be an integer");
    double d = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9e15)
      type_error(fn_ + ": config." + path + " must be an integer, got " + std::to_string(d));
    return static_cast<int64_t>(d);
  }
  double number(Napi::Object o, const char* key, const std::string& path, double fallback) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return fallback;
    if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue()))
      type_error(fn_ + ": config." + path + " must be a finite number");
    return v.As<Napi::Number>().DoubleValue();
  }
  bool boolean(Napi::Object o, const char* key, const std::string& path, bool fallback) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return fallback;
    if (!v.IsBoolean()) type_error(fn_ + ": config." + path + " must be a boolean");
    return v.As<Napi::Boolean>().Value();
  }
  std::string string(Napi::Object o, const char* key, const std::string& path, const char* fallback) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return fallback;
    if (!v.IsString()) type_error(fn_ + ": config." + path + " must be a string");
    return v.As<Napi::String>().Utf8Value();
  }

  Config read() {
    Config c;
    Napi::Object r = root_;
    c.vocab_size = integer(r, "vocab_size", "vocab_size");
    c.d_model = integer(r, "d_model", "d_model");
    c.n_layers = integer(r, "n_layers", "n_layers");
    c.max_seq_len = integer(r, "max_seq_len", "max_seq_len");
    c.norm_eps = number(r, "norm_eps", "norm_eps", 1e-5);
    c.rope_theta = number(r, "rope_theta", "rope_theta", 10000.0);
    c.tie_embeddings = boolean(r, "tie_embeddings", "tie_embeddings", false);
    c.router_hidden = integer(r, "router_hidden", "router_hidden", 0);  // absent: linear routers
    Napi::Object a = object(r, "attention", "attention");
    c.att_experts = integer(a, "n_experts", "attention.n_experts");
    c.att_heads = integer(a, "n_heads", "attention.n_heads");
    c.kv_heads = integer(a, "n_kv_heads", "attention.n_kv_heads");
    c.head_dim = integer(a, "head_dim", "attention.head_dim");
    Napi::Object m = object(r, "mlp", "mlp");
    c.mlp_experts = integer(m, "n_experts", "mlp.n_experts");
    c.expert_dim = integer(m, "expert_dim", "mlp.expert_dim");
    std::string act = string(m, "activation", "mlp.activation", "gelu");
    if (act == "gelu") c.gelu_tanh = false;
    else if (act == "gelu_tanh") c.gelu_tanh = true;
    else range_error(fn_ + ": config.mlp.activation must be 'gelu' or 'gelu_tanh', got '" + act + "'");
    Napi::Value tv = r.Get("training");
    if (tv.IsObject()) {
      Napi::Object t = tv.As<Napi::Object>();
      std::string mode = string(t, "mode", "training.mode", "dsmoe");
      if (mode == "dsmoe") c.mode = model::Mode::DsMoe;
      else if (mode == "smoe") c.mode = model::Mode::SMoe;
      else if (mode == "dense") c.mode = model::Mode::Dense;
      else range_error(fn_ + ": config.training.mode must be 'dsmoe', 'smoe' or 'dense', got '" + mode + "'");
      c.mi_alpha_att = number(t, "mi_alpha_att", "training.mi_alpha_att", 0.0);
      c.mi_alpha_mlp = number(t, "mi_alpha_mlp", "training.mi_alpha_mlp", 0.0);
      c.switch_alpha = number(t, "switch_alpha", "training.switch_alpha", 0.01);
      c.top_k = integer(t, "top_k", "training.top_k", 2);
    } else if (!tv.IsUndefined()) {
      type_error(fn_ + ": config.training must be an object");
    }
    std::string err = model::validate(c);
    if (!err.empty()) range_error(fn_ + ": config." + err);
    // The largest buffers must be addressable: parameters and one [seq, vocab] row of logits.
    checked_mul(c.vocab_size, c.d_model, fn_ + ": config (vocab_size × d_model)");
    return c;
  }

 private:
  Napi::Object root_;
  std::string fn_;
};

inline Config read_config(Args& args) { return ConfigReader(args.object("config"), args.fn()).read(); }

}  // namespace dsmoe::bind
