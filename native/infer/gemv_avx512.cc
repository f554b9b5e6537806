// AVX-512 GEMV row kernels: fp32 weights, and bf16 weights widened to fp32 (exact) + FMA. Up to 4
// activation rows share each weight load; two accumulator chains per row hide the FMA latency.
#include "gemv.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vl,fma")

namespace dsmoe::infer {
namespace {

inline __m512 load_w(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load_w(const uint16_t* p) {  // 16 bf16 -> 16 fp32 (shift into the high half)
  __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}
inline __m512 load_w_tail(const float* p, __mmask16 mask) { return _mm512_maskz_loadu_ps(mask, p); }
inline __m512 load_w_tail(const uint16_t* p, __mmask16 mask) {
  __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

// MB activation rows (1..4) against `rows` weight rows.
template <int MB, typename W>
void rows_block(const W* w, int64_t rows, int64_t k, const float* x, float* y, int64_t ldy) {
  const int64_t k32 = k & ~int64_t(31), k16 = k & ~int64_t(15);
  const __mmask16 tail = static_cast<__mmask16>((1u << (k - k16)) - 1u);
  for (int64_t r = 0; r < rows; ++r) {
    const W* wr = w + r * k;
    __m512 a0[MB], a1[MB];
    for (int i = 0; i < MB; ++i) a0[i] = a1[i] = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j < k32; j += 32) {
      const __m512 w0 = load_w(wr + j), w1 = load_w(wr + j + 16);
      for (int i = 0; i < MB; ++i) {
        a0[i] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + i * k + j), a0[i]);
        a1[i] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + i * k + j + 16), a1[i]);
      }
    }
    if (j < k16) {
      const __m512 w0 = load_w(wr + j);
      for (int i = 0; i < MB; ++i) a0[i] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + i * k + j), a0[i]);
      j += 16;
    }
    if (j < k) {
      const __m512 w0 = load_w_tail(wr + j, tail);
      for (int i = 0; i < MB; ++i) a1[i] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(tail, x + i * k + j), a1[i]);
    }
    for (int i = 0; i < MB; ++i) y[i * ldy + r] = _mm512_reduce_add_ps(_mm512_add_ps(a0[i], a1[i]));
  }
}

template <typename W>
void rows_any(const W* w, int64_t rows, int64_t k, const float* x, int64_t m, float* y, int64_t ldy) {
  // Blocks of 4 activation rows; the weight block (≤ 32 KiB) stays in L1/L2 across them.
  for (int64_t i = 0; i < m; i += 4) {
    const float* xi = x + i * k;
    float* yi = y + i * ldy;
    switch (m - i < 4 ? m - i : 4) {
      case 1: rows_block<1>(w, rows, k, xi, yi, ldy); break;
      case 2: rows_block<2>(w, rows, k, xi, yi, ldy); break;
      case 3: rows_block<3>(w, rows, k, xi, yi, ldy); break;
      default: rows_block<4>(w, rows, k, xi, yi, ldy); break;
    }
  }
}

}  // namespace

void gemv_f32_avx512(const float* w, int64_t rows, int64_t k, const float* x, int64_t m, float* y, int64_t ldy) {
  rows_any(w, rows, k, x, m, y, ldy);
}

void gemv_bf16_widen_avx512(const uint16_t* w, int64_t rows, int64_t k, const float* x, const uint16_t*,
                            int64_t m, float* y, int64_t ldy) {
  rows_any(w, rows, k, x, m, y, ldy);
}

}  // namespace dsmoe::infer
#pragma GCC pop_options
#else
namespace dsmoe::infer {
void gemv_f32_avx512(const float* w, int64_t rows, int64_t k, const float* x, int64_t m, float* y, int64_t ldy) {
  gemv_f32_generic(w, rows, k, x, m, y, ldy);
}
void gemv_bf16_widen_avx512(const uint16_t* w, int64_t rows, int64_t k, const float* x, const uint16_t* xb,
                            int64_t m, float* y, int64_t ldy) {
  gemv_bf16_generic(w, rows, k, x, xb, m, y, ldy);
}
}  // namespace dsmoe::infer
#endif
