#include "config.h"

#include <algorithm>

namespace dsmoe::model {

std::string validate(const Config& c) {
  auto positive = [](int64_t v, const char* name, int64_t max) -> std::string {
    if (v < 1 || v > max)
      return std::string(name) + " must be in [1, " + std::to_string(max) + "], got " + std::to_string(v);
    return "";
  };
  std::string e;
  if (!(e = positive(c.vocab_size, "vocab_size", int64_t(1) << 24)).empty()) return e;
  if (!(e = positive(c.d_model, "d_model", 1 << 16)).empty()) return e;
  if (!(e = positive(c.n_layers, "n_layers", 1024)).empty()) return e;
  if (!(e = positive(c.max_seq_len, "max_seq_len", 1 << 20)).empty()) return e;
  if (!(e = positive(c.att_experts, "attention.n_experts", 1024)).empty()) return e;
  if (!(e = positive(c.att_heads, "attention.n_heads", 1024)).empty()) return e;
  if (!(e = positive(c.kv_heads, "attention.n_kv_heads", 1024)).empty()) return e;
  if (!(e = positive(c.head_dim, "attention.head_dim", 4096)).empty()) return e;
  if (!(e = positive(c.mlp_experts, "mlp.n_experts", 4096)).empty()) return e;
  if (!(e = positive(c.expert_dim, "mlp.expert_dim", 1 << 20)).empty()) return e;
  if (c.router_hidden < 0 || c.router_hidden > (1 << 16))
    return "router_hidden must be in [0, 65536], got " + std::to_string(c.router_hidden);
  if (c.head_dim % 2 != 0)
    return "attention.head_dim must be even (RoPE rotates pairs), got " + std::to_string(c.head_dim);
  if (c.att_heads % c.kv_heads != 0)
    return "attention.n_heads (" + std::to_string(c.att_heads) + ") must be a multiple of attention.n_kv_heads (" +
           std::to_string(c.kv_heads) + ")";
  if (!(c.norm_eps > 0 && c.norm_eps < 1)) return "norm_eps must be in (0, 1)";
  if (!(c.rope_theta > 1)) return "rope_theta must be > 1";
  if (c.mode == Mode::Dense && (c.att_experts != 1 || c.mlp_experts != 1))
    return "training.mode 'dense' needs attention.n_experts = mlp.n_experts = 1";
  if (c.mode == Mode::SMoe && (c.top_k < 1 || c.top_k > std::max(c.att_experts, c.mlp_experts)))
    return "training.top_k must be in [1, number of experts], got " + std::to_string(c.top_k);
  if (!(c.mi_alpha_att >= 0 && c.mi_alpha_mlp >= 0 && c.switch_alpha >= 0))
    return "training.mi_alpha_att, mi_alpha_mlp and switch_alpha must be >= 0";
  return "";
}

}  // namespace dsmoe::model
