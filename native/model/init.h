// Parameter initialisation: seeded and platform-independent (splitmix64 + Box-Muller in double).
#pragma once
#include <cstdint>

#include "config.h"
#include "layout.h"

namespace dsmoe::model {

// Linear weights and embeddings ~ N(0, 0.02²); output projections (o_proj, down_proj) scaled by
// 1/sqrt(2·n_layers) as in GPT-2, so the residual stream's variance does not grow with depth;
// a two-layer router's hidden weight ~ N(0, 1/D) (fan-in), its output weight N(0, 0.02²) like a
// linear router; norms = 1. Each tensor draws from its own stream (seed, tensor index), so adding a tensor does
// not change the others.
void init_params(const Config& c, const Layout& layout, float* params, uint64_t seed);

}  // namespace dsmoe::model
