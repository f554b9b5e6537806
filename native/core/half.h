// IEEE 754 binary16 ("half", fp16) stored as uint16_t: the scales of 4-bit (Q4) weights. Portable bit
// arithmetic (no F16C needed); the AVX-512 kernels convert with vcvtph2ps, which gives the same floats.
#pragma once
#include <cstdint>
#include <cstring>

namespace dsmoe {

// Exact: every half is a float. NaN keeps its payload (shifted into the float's top mantissa bits).
inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);  // inf, NaN
  } else if (exp == 0) {
    if (man == 0) {
      bits = sign;  // ±0
    } else {        // subnormal: man · 2^-24, exact in float
      const float f = static_cast<float>(man) * (1.0f / 16777216.0f);
      return sign ? -f : f;
    }
  } else {
    bits = sign | ((exp + 112) << 23) | (man << 13);  // rebias 15 -> 127
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even. Overflow (|f| >= 65520) gives ±inf, tiny values round into the subnormals
// (or ±0), NaN stays NaN (quiet, the top 9 payload bits kept).
inline uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((x >> 13) & 0x3ffu));
  if (x >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // ≥ 65520 (and inf) -> inf
  if (x >= 0x38800000u) {                                                // normal half (≥ 2^-14)
    x += 0xfffu + ((x >> 13) & 1u);                                      // round the 13 dropped bits
    return static_cast<uint16_t>(sign | ((x - 0x38000000u) >> 13));      // rebias 127 -> 15
  }
  // Subnormal or zero: |f| + 0.5 has ulp 2^-24 = the half subnormal step, so the FPU's own round to
  // nearest even yields the code in the mantissa (1024 = the smallest normal, also correct).
  float a;
  std::memcpy(&a, &x, 4);
  const float t = a + 0.5f;
  uint32_t tb;
  std::memcpy(&tb, &t, 4);
  return static_cast<uint16_t>(sign | (tb - 0x3f000000u));
}

}  // namespace dsmoe
