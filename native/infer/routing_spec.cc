#include "routing_spec.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

namespace dsmoe::infer {
namespace {

[[noreturn]] void bad(const std::string& text, const std::string& why) {
  throw std::invalid_argument("routing '" + text + "' " + why +
                              " (expected dense, topk:K, threshold:ε or threshold-topk:ε)");
}

// The whole of s as a number, else NaN (strtod alone accepts prefixes, hex and "inf").
double parse_number(const std::string& s) {
  if (s.empty() || s.find_first_not_of("0123456789.eE+-") != std::string::npos) return NAN;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || end != s.c_str() + s.size()) return NAN;
  return v;
}

}  // namespace

RoutingSpec parse_routing(const std::string& text, int64_t n_experts) {
  RoutingSpec r;
  r.text = text;
  if (text == "dense") return r;
  const size_t colon = text.find(':');
  if (colon == std::string::npos) bad(text, "is not a routing strategy");
  const std::string name = text.substr(0, colon), arg = text.substr(colon + 1);
  const double v = parse_number(arg);
  if (name == "topk") {
    if (!(v == std::floor(v)) || arg.find_first_not_of("0123456789") != std::string::npos)
      bad(text, "needs an integer K");
    if (v < 1 || v > double(n_experts))
      bad(text, "needs 1 <= K <= E = " + std::to_string(n_experts));
    r.kind = RoutingSpec::Kind::TopK;
    r.k = static_cast<int64_t>(v);
  } else if (name == "threshold" || name == "threshold-topk") {
    if (!std::isfinite(v) || v < 0) bad(text, "needs a finite ε >= 0");
    r.kind = name == "threshold" ? RoutingSpec::Kind::Threshold : RoutingSpec::Kind::ThresholdTopK;
    r.eps = v;
  } else {
    bad(text, "has an unknown strategy '" + name + "'");
  }
  return r;
}

}  // namespace dsmoe::infer
