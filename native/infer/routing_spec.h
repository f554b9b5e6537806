// Inference routing strategies (DESIGN.md §1.3), chosen per layer kind at run time:
//   dense | topk:K | threshold:ε | threshold-topk:ε
// `topk:E` and `threshold:0` select every expert, so they compute exactly what `dense` does.
#pragma once
#include <cstdint>
#include <string>

namespace dsmoe::infer {

struct RoutingSpec {
  enum class Kind { Dense, TopK, Threshold, ThresholdTopK };
  Kind kind = Kind::Dense;
  int64_t k = 0;     // topk
  double eps = 0.0;  // threshold, threshold-topk (compared with E·S_e)
  std::string text = "dense";
};

// Parses `text` for a layer kind with n_experts experts. Throws std::invalid_argument naming the
// string for a malformed strategy, K outside [1, E], or ε that is negative or not finite.
RoutingSpec parse_routing(const std::string& text, int64_t n_experts);

}  // namespace dsmoe::infer
