#include "layout.h"

namespace dsmoe::model {

Layout make_layout(const Config& c) {
  Layout L;
  auto add = [&](std::string name, std::vector<int64_t> shape, bool decay = true) {
    int64_t size = 1;
    for (int64_t d : shape) size *= d;
    L.tensors.push_back({std::move(name), std::move(shape), L.total, size, decay});
    L.total += size;
    return L.tensors.back().offset;
  };
  const int64_t D = c.d_model, Rh = c.router_hidden;
  // A layer's router in the place of DESIGN.md §3's router.weight: one [E, D] tensor, or the two
  // weights of a two-layer router (hidden [h, D], then output [E, h]). Returns the last one.
  auto router = [&](const std::string& p, int64_t E, int64_t* hidden) -> int64_t {
    if (E == 1) return -1;
    if (Rh == 0) return add(p + "router.weight", {E, D});
    *hidden = add(p + "router.hidden.weight", {Rh, D});
    return add(p + "router.output.weight", {E, Rh});
  };
  L.embed = add("embed.weight", {c.vocab_size, D});
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    LayerOffsets o{};
    o.attn_norm = add(p + "attn_norm.weight", {D}, false);
    o.att_router = router(p + "attn.", c.att_experts, &o.att_router_hidden);
    o.q = add(p + "attn.q_proj.weight", {c.att_experts, c.expert_q_dim(), D});
    o.k = add(p + "attn.k_proj.weight", {c.kv_dim(), D});
    o.v = add(p + "attn.v_proj.weight", {c.kv_dim(), D});
    o.o = add(p + "attn.o_proj.weight", {c.att_experts, D, c.expert_q_dim()});
    o.mlp_norm = add(p + "mlp_norm.weight", {D}, false);
    o.mlp_router = router(p + "mlp.", c.mlp_experts, &o.mlp_router_hidden);
    o.up = add(p + "mlp.up_proj.weight", {c.mlp_experts, c.expert_dim, D});
    o.down = add(p + "mlp.down_proj.weight", {c.mlp_experts, D, c.expert_dim});
    L.layers.push_back(o);
  }
  L.final_norm = add("final_norm.weight", {D}, false);
  L.lm_head = c.tie_embeddings ? L.embed : add("lm_head.weight", {c.vocab_size, D});
  L.non_embedding = L.total - c.vocab_size * D * (c.tie_embeddings ? 1 : 2);
  return L;
}

}  // namespace dsmoe::model
