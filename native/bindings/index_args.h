// Checked index arguments shared by the bindings that take routing pairs (CPU routing, CUDA): each
// returns a copy, so JavaScript cannot change an index after it was checked while async work runs.
#pragma once
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "args.h"

namespace dsmoe::bind {

using Index = std::shared_ptr<const std::vector<int32_t>>;
constexpr int64_t kMaxPairs = std::numeric_limits<int32_t>::max();  // pair positions are int32

// "name[i]" (the message already starts with the function name).
inline std::string at(const char* name, int64_t i) { return std::string(name) + "[" + std::to_string(i) + "]"; }

// name [n]: every value in [0, limit). Returns the checked copy.
inline Index indices(Args& args, const char* name, int64_t n, int64_t limit) {
  auto v = args.i32(name, n);
  auto copy = std::make_shared<std::vector<int32_t>>(v.data, v.data + n);
  for (int64_t i = 0; i < n; ++i)
    if ((*copy)[i] < 0 || (*copy)[i] >= limit)
      range_error(args.fn() + ": " + at(name, i) + " = " + std::to_string((*copy)[i]) + " is out of range [0, " +
                  std::to_string(limit) + ")");
  return copy;
}

// pairToken [P]: tokens in [0, T), non-decreasing (a token-major pair list).
inline Index pair_tokens(Args& args, const char* name, int64_t P, int64_t T) {
  Index idx = indices(args, name, P, T);
  for (int64_t i = 1; i < P; ++i)
    if ((*idx)[i] < (*idx)[i - 1])
      range_error(args.where(name) + " must be non-decreasing (token-major pairs): " + at(name, i) + " = " +
                  std::to_string((*idx)[i]) + " < " + at(name, i - 1) + " = " + std::to_string((*idx)[i - 1]));
  return idx;
}

// position [P]: a permutation of [0, P), so every grouped row is read or written by one pair only.
inline Index permutation(Args& args, const char* name, int64_t P) {
  Index idx = indices(args, name, P, P);
  std::vector<bool> seen(static_cast<size_t>(P), false);
  for (int64_t i = 0; i < P; ++i) {
    if (seen[static_cast<size_t>((*idx)[i])])
      range_error(args.where(name) + " must be a permutation of [0, " + std::to_string(P) + "): " +
                  std::to_string((*idx)[i]) + " appears twice");
    seen[static_cast<size_t>((*idx)[i])] = true;
  }
  return idx;
}

}  // namespace dsmoe::bind
