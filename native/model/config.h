// The model's shape and training settings: config.json (DESIGN.md §3) as a C++ struct.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dsmoe::model {

enum class Mode { DsMoe, SMoe, Dense };

struct Config {
  int64_t vocab_size = 0, d_model = 0, n_layers = 0, max_seq_len = 0;
  double norm_eps = 1e-5, rope_theta = 10000.0;
  bool tie_embeddings = false;
  int64_t att_experts = 1, att_heads = 1, kv_heads = 1, head_dim = 1;  // attention (MoA)
  int64_t mlp_experts = 1, expert_dim = 1;                              // MoE MLP
  // Router of every layer with > 1 expert: 0 = linear (W_r [E, D]); h > 0 = two-layer,
  // S = softmax(W_out · gelu(W_hidden · x)) with W_hidden [h, D], W_out [E, h] (gelu: erf form).
  int64_t router_hidden = 0;
  bool gelu_tanh = false;
  Mode mode = Mode::DsMoe;
  double mi_alpha_att = 0, mi_alpha_mlp = 0, switch_alpha = 0.01;
  int64_t top_k = 2;

  int64_t q_dim() const { return att_experts * att_heads * head_dim; }  // all experts' query heads
  int64_t kv_dim() const { return kv_heads * head_dim; }
  int64_t expert_q_dim() const { return att_heads * head_dim; }
  int64_t mlp_dim() const { return mlp_experts * expert_dim; }         // all experts' hidden units
};

// Returns "" if the config is usable, else a message naming the field ("attention.n_heads must …").
std::string validate(const Config& c);

}  // namespace dsmoe::model
