// Vectorised transcendental functions over arrays, for the kernels whose cost is exp/erf rather
// than FLOPs (softmax, cross-entropy, attention, GELU). One portable version (vecmath.cc, libm)
// and one AVX-512 version (vecmath_avx512.cc: polynomial exp with ~1 ulp error, erfc with relative
// error < 1.2e-7), chosen at run time by active_isa().
#pragma once
#include <cstdint>

namespace dsmoe::cpu {

// y[i] = exp(x[i] − shift); returns Σ y[i] accumulated in double. y may alias x.
double exp_shifted_sum(int64_t n, const float* x, float shift, float* y);

// GELU over arrays (erf form or tanh form). y may alias x; dx may alias dy.
void gelu_erf_array(int64_t n, const float* x, float* y);
void gelu_erf_grad_array(int64_t n, const float* x, const float* dy, float* dx);
void gelu_tanh_array(int64_t n, const float* x, float* y);
void gelu_tanh_grad_array(int64_t n, const float* x, const float* dy, float* dx);

namespace vecmath_detail {  // the per-ISA implementations behind the dispatch
double exp_shifted_sum_avx512(int64_t n, const float* x, float shift, float* y);
void gelu_erf_avx512(int64_t n, const float* x, float* y);
void gelu_erf_grad_avx512(int64_t n, const float* x, const float* dy, float* dx);
void gelu_tanh_avx512(int64_t n, const float* x, float* y);
void gelu_tanh_grad_avx512(int64_t n, const float* x, const float* dy, float* dx);
}  // namespace vecmath_detail

}  // namespace dsmoe::cpu
