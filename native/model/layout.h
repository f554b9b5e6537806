// Where each parameter tensor lives in the flat parameter buffer. Names, shapes and order are
// DESIGN.md §3's, contiguous with no padding; the TypeScript checkpoint code derives the same.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "config.h"

namespace dsmoe::model {

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0, size = 0;
  bool decay = true;  // AdamW weight decay (false for norms)
};

// Offsets of one block's tensors (-1 when absent, e.g. a router with one expert). att_router and
// mlp_router are the router's last (or only) weight, [E, K] with K = D for a linear router and
// K = router_hidden for a two-layer one, whose first weight [h, D] is at *_router_hidden.
struct LayerOffsets {
  int64_t attn_norm, att_router, q, k, v, o, mlp_norm, mlp_router, up, down;
  int64_t att_router_hidden = -1, mlp_router_hidden = -1;
};

struct Layout {
  std::vector<Tensor> tensors;
  std::vector<LayerOffsets> layers;
  int64_t embed = 0, final_norm = 0, lm_head = 0;  // lm_head == embed when tied
  int64_t total = 0, non_embedding = 0;
};

Layout make_layout(const Config& c);

}  // namespace dsmoe::model
