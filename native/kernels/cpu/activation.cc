// GELU, exact (erf) and tanh forms, forward and backward (nn.h).
#include <cmath>

#include "nn.h"
#include "nn_internal.h"

namespace dsmoe::cpu {

using namespace nn_detail;

namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;     // 1/√2
constexpr float kInvSqrt2Pi = 0.39894228040143268f;   // 1/√(2π)
constexpr float kSqrt2OverPi = 0.79788456080286536f;  // √(2/π)
constexpr float kTanhC = 0.044715f;

inline float gelu_erf(float x) { return 0.5f * x * (1.f + std::erf(x * kInvSqrt2)); }

inline float gelu_tanh(float x) {
  const float u = kSqrt2OverPi * (x + kTanhC * x * x * x);
  return 0.5f * x * (1.f + std::tanh(u));
}

// d/dx 0.5·x·(1 + erf(x/√2)) = Φ(x) + x·φ(x)
inline float gelu_erf_grad(float x) {
  const float cdf = 0.5f * (1.f + std::erf(x * kInvSqrt2));
  return cdf + x * kInvSqrt2Pi * std::exp(-0.5f * x * x);
}

// d/dx 0.5·x·(1 + tanh(u)) = 0.5·(1 + t) + 0.5·x·(1 − t²)·u',  u' = √(2/π)·(1 + 3c·x²)
inline float gelu_tanh_grad(float x) {
  const float t = std::tanh(kSqrt2OverPi * (x + kTanhC * x * x * x));
  const float du = kSqrt2OverPi * (1.f + 3.f * kTanhC * x * x);
  return 0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * du;
}

}  // namespace

void gelu_forward(int64_t n, const float* x, float* y, GeluKind kind) {
  parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) {
    if (kind == GeluKind::Tanh)
      for (int64_t i = b; i < e; ++i) y[i] = gelu_tanh(x[i]);
    else
      for (int64_t i = b; i < e; ++i) y[i] = gelu_erf(x[i]);
  });
}

void gelu_backward(int64_t n, const float* x, const float* dy, float* dx, GeluKind kind) {
  parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) {
    if (kind == GeluKind::Tanh)
      for (int64_t i = b; i < e; ++i) dx[i] = dy[i] * gelu_tanh_grad(x[i]);
    else
      for (int64_t i = b; i < e; ++i) dx[i] = dy[i] * gelu_erf_grad(x[i]);
  });
}

}  // namespace dsmoe::cpu
