// AVX-512 versions of vecmath.h.
#include "vecmath.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wpsabi"
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")

namespace dsmoe::cpu::vecmath_detail {
namespace {

// exp(x): x = n·ln2 + r with |r| ≤ ln2/2, exp(r) by the Cephes expf polynomial, times 2ⁿ via
// scalef (which also gives 0 / denormals / inf at the ends without special cases).
inline __m512 exp512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.f)), _mm512_set1_ps(88.72f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, n);
}

// erfc(u) (Numerical Recipes' erfcc: Chebyshev fit, fractional error < 1.2e-7 everywhere).
inline __m512 erfc512(__m512 u) {
  const __m512 z = _mm512_abs_ps(u);
  const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.f), _mm512_fmadd_ps(_mm512_set1_ps(0.5f), z, _mm512_set1_ps(1.f)));
  __m512 p = _mm512_set1_ps(0.17087277f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.82215223f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.48851587f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.13520398f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.27886807f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.18628806f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.09678418f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.37409196f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.00002368f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.26551223f));
  const __m512 ans = _mm512_mul_ps(t, exp512(_mm512_sub_ps(p, _mm512_mul_ps(z, z))));
  const __mmask16 neg = _mm512_cmp_ps_mask(u, _mm512_setzero_ps(), _CMP_LT_OQ);
  return _mm512_mask_sub_ps(ans, neg, _mm512_set1_ps(2.f), ans);
}

inline __m512 tanh512(__m512 u) {  // 1 − 2/(e^{2u} + 1), exact limits ±1
  const __m512 e = exp512(_mm512_add_ps(u, u));
  return _mm512_sub_ps(_mm512_set1_ps(1.f), _mm512_div_ps(_mm512_set1_ps(2.f), _mm512_add_ps(e, _mm512_set1_ps(1.f))));
}

inline __mmask16 tail(int64_t left) { return left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1); }

template <typename F>
inline void map1(int64_t n, const float* x, float* y, F f) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail(n - i);
    _mm512_mask_storeu_ps(y + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

template <typename F>
inline void map2(int64_t n, const float* x, const float* dy, float* dx, F f) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail(n - i);
    _mm512_mask_storeu_ps(dx + i, m,
        _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dy + i), f(_mm512_maskz_loadu_ps(m, x + i))));
  }
}

}  // namespace

double exp_shifted_sum_avx512(int64_t n, const float* x, float shift, float* y) {
  const __m512 s = _mm512_set1_ps(shift);
  __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail(n - i);
    const __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s)));
    _mm512_mask_storeu_ps(y + i, m, e);
    acc0 = _mm512_add_pd(acc0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    acc1 = _mm512_add_pd(acc1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
}

void gelu_erf_avx512(int64_t n, const float* x, float* y) {
  map1(n, x, y, [](__m512 v) {
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v), erfc512(_mm512_mul_ps(v,
        _mm512_set1_ps(-0.70710678118654752f))));
  });
}

void gelu_erf_grad_avx512(int64_t n, const float* x, const float* dy, float* dx) {
  map2(n, x, dy, dx, [](__m512 v) {
    const __m512 cdf = _mm512_mul_ps(_mm512_set1_ps(0.5f), erfc512(_mm512_mul_ps(v,
        _mm512_set1_ps(-0.70710678118654752f))));
    const __m512 pdf = _mm512_mul_ps(_mm512_set1_ps(0.39894228040143268f), exp512(_mm512_mul_ps(_mm512_set1_ps(-0.5f),
        _mm512_mul_ps(v, v))));
    return _mm512_fmadd_ps(v, pdf, cdf);
  });
}

void gelu_tanh_avx512(int64_t n, const float* x, float* y) {
  map1(n, x, y, [](__m512 v) {
    const __m512 v3 = _mm512_mul_ps(_mm512_mul_ps(v, v), v);
    const __m512 u = _mm512_mul_ps(_mm512_set1_ps(0.79788456080286536f),
        _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), v3, v));
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v), _mm512_add_ps(_mm512_set1_ps(1.f), tanh512(u)));
  });
}

void gelu_tanh_grad_avx512(int64_t n, const float* x, const float* dy, float* dx) {
  map2(n, x, dy, dx, [](__m512 v) {
    const __m512 v2 = _mm512_mul_ps(v, v);
    const __m512 u = _mm512_mul_ps(_mm512_set1_ps(0.79788456080286536f),
        _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(0.044715f), v2), v, v));
    const __m512 t = tanh512(u);
    const __m512 du = _mm512_mul_ps(_mm512_set1_ps(0.79788456080286536f),
        _mm512_fmadd_ps(_mm512_set1_ps(3.f * 0.044715f), v2, _mm512_set1_ps(1.f)));
    const __m512 one_minus_t2 = _mm512_fnmadd_ps(t, t, _mm512_set1_ps(1.f));
    return _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v), one_minus_t2), du,
                           _mm512_mul_ps(_mm512_set1_ps(0.5f), _mm512_add_ps(_mm512_set1_ps(1.f), t)));
  });
}

}  // namespace dsmoe::cpu::vecmath_detail
#pragma GCC pop_options
#else
#include <cmath>
namespace dsmoe::cpu::vecmath_detail {
// Never called: active_isa() is never Avx512 off x86-64.
double exp_shifted_sum_avx512(int64_t, const float*, float, float*) { return 0; }
void gelu_erf_avx512(int64_t, const float*, float*) {}
void gelu_erf_grad_avx512(int64_t, const float*, const float*, float*) {}
void gelu_tanh_avx512(int64_t, const float*, float*) {}
void gelu_tanh_grad_avx512(int64_t, const float*, const float*, float*) {}
}  // namespace dsmoe::cpu::vecmath_detail
#endif
