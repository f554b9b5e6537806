// Portable versions of vecmath.h (libm) and the run-time dispatch.
#include "vecmath.h"

#include <cmath>

#include "../../core/cpu_features.h"

namespace dsmoe::cpu {
namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kSqrt2OverPi = 0.79788456080286536f;
constexpr float kTanhC = 0.044715f;

bool use_avx512() { return active_isa() == Isa::Avx512; }

}  // namespace

double exp_shifted_sum(int64_t n, const float* x, float shift, float* y) {
  if (use_avx512()) return vecmath_detail::exp_shifted_sum_avx512(n, x, shift, y);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    y[i] = std::exp(x[i] - shift);
    s += y[i];
  }
  return s;
}

// gelu(x) = 0.5·x·erfc(−x/√2): erfc keeps relative accuracy where x is very negative.
void gelu_erf_array(int64_t n, const float* x, float* y) {
  if (use_avx512()) return vecmath_detail::gelu_erf_avx512(n, x, y);
  for (int64_t i = 0; i < n; ++i) y[i] = 0.5f * x[i] * std::erfc(-x[i] * kInvSqrt2);
}

// gelu'(x) = Φ(x) + x·φ(x)
void gelu_erf_grad_array(int64_t n, const float* x, const float* dy, float* dx) {
  if (use_avx512()) return vecmath_detail::gelu_erf_grad_avx512(n, x, dy, dx);
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    dx[i] = dy[i] * (0.5f * std::erfc(-v * kInvSqrt2) + v * kInvSqrt2Pi * std::exp(-0.5f * v * v));
  }
}

void gelu_tanh_array(int64_t n, const float* x, float* y) {
  if (use_avx512()) return vecmath_detail::gelu_tanh_avx512(n, x, y);
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    y[i] = 0.5f * v * (1.f + std::tanh(kSqrt2OverPi * (v + kTanhC * v * v * v)));
  }
}

// d/dx 0.5·x·(1 + tanh(u)) = 0.5·(1 + t) + 0.5·x·(1 − t²)·u',  u' = √(2/π)·(1 + 3c·x²)
void gelu_tanh_grad_array(int64_t n, const float* x, const float* dy, float* dx) {
  if (use_avx512()) return vecmath_detail::gelu_tanh_grad_avx512(n, x, dy, dx);
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float t = std::tanh(kSqrt2OverPi * (v + kTanhC * v * v * v));
    const float du = kSqrt2OverPi * (1.f + 3.f * kTanhC * v * v);
    dx[i] = dy[i] * (0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * du);
  }
}

}  // namespace dsmoe::cpu
