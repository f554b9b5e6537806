#include "init.h"

#include <algorithm>
#include <cmath>

#include "../core/threadpool.h"

namespace dsmoe::model {
namespace {

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double uniform01(uint64_t& s) { return (static_cast<double>(splitmix64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

void init_params(const Config& c, const Layout& layout, float* params, uint64_t seed) {
  const double out_scale = 1.0 / std::sqrt(2.0 * static_cast<double>(c.n_layers));
  for (size_t ti = 0; ti < layout.tensors.size(); ++ti) {
    const Tensor& t = layout.tensors[ti];
    float* p = params + t.offset;
    if (!t.decay) {  // norms
      for (int64_t i = 0; i < t.size; ++i) p[i] = 1.f;
      continue;
    }
    double std = 0.02;
    if (ends_with(t.name, "o_proj.weight") || ends_with(t.name, "down_proj.weight")) std *= out_scale;
    // Two-layer router: unit-variance pre-activations (x is RMS-normalised), so GELU sees its
    // curved range at any width; 0.02 would leave near-zero features when D is small.
    if (ends_with(t.name, "router.hidden.weight")) std = 1.0 / std::sqrt(static_cast<double>(t.shape[1]));
    // Chunks of 4096 values, each from its own stream, so threads can fill in parallel.
    const int64_t chunks = (t.size + 4095) / 4096;
    parallel_for(chunks, [&](int64_t ch, int) {
      uint64_t s = seed * 0x100000001b3ull ^ (static_cast<uint64_t>(ti) << 32) ^ static_cast<uint64_t>(ch);
      splitmix64(s);
      const int64_t b = ch * 4096, e = std::min(t.size, b + 4096);
      for (int64_t i = b; i < e; i += 2) {
        double u = uniform01(s), v = uniform01(s);
        double r = std::sqrt(-2.0 * std::log(u)) * std;
        p[i] = static_cast<float>(r * std::cos(2 * M_PI * v));
        if (i + 1 < e) p[i + 1] = static_cast<float>(r * std::sin(2 * M_PI * v));
      }
    });
  }
}

}  // namespace dsmoe::model
