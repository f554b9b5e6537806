// AVX512-BF16 GEMV row kernel: vdpbf16ps multiplies 32 bf16 weight/activation pairs per
// instruction and accumulates pairwise in fp32. The activations arrive pre-rounded to bf16 (xb).
// Separate file: only this code may be compiled for avx512bf16, and it runs only where the CPU
// has it (cpu_has_avx512_bf16()).
#include "gemv.h"

#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 11 || defined(__clang__))
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,fma")

namespace dsmoe::infer {
namespace {

inline __m512bh as_bh(__m512i v) { return reinterpret_cast<__m512bh&>(v); }

template <int MB>
void rows_block(const uint16_t* w, int64_t rows, int64_t k, const uint16_t* xb, float* y, int64_t ldy) {
  const int64_t k64 = k & ~int64_t(63), k32 = k & ~int64_t(31);
  const __mmask32 tail = static_cast<__mmask32>((uint64_t(1) << (k - k32)) - 1u);
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* wr = w + r * k;
    __m512 a0[MB], a1[MB];
    for (int i = 0; i < MB; ++i) a0[i] = a1[i] = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j < k64; j += 64) {
      const __m512i w0 = _mm512_loadu_si512(wr + j), w1 = _mm512_loadu_si512(wr + j + 32);
      for (int i = 0; i < MB; ++i) {
        a0[i] = _mm512_dpbf16_ps(a0[i], as_bh(w0), as_bh(_mm512_loadu_si512(xb + i * k + j)));
        a1[i] = _mm512_dpbf16_ps(a1[i], as_bh(w1), as_bh(_mm512_loadu_si512(xb + i * k + j + 32)));
      }
    }
    if (j < k32) {
      const __m512i w0 = _mm512_loadu_si512(wr + j);
      for (int i = 0; i < MB; ++i) a0[i] = _mm512_dpbf16_ps(a0[i], as_bh(w0), as_bh(_mm512_loadu_si512(xb + i * k + j)));
      j += 32;
    }
    if (j < k) {  // masked lanes load as +0, adding nothing
      const __m512i w0 = _mm512_maskz_loadu_epi16(tail, wr + j);
      for (int i = 0; i < MB; ++i)
        a1[i] = _mm512_dpbf16_ps(a1[i], as_bh(w0), as_bh(_mm512_maskz_loadu_epi16(tail, xb + i * k + j)));
    }
    for (int i = 0; i < MB; ++i) y[i * ldy + r] = _mm512_reduce_add_ps(_mm512_add_ps(a0[i], a1[i]));
  }
}

}  // namespace

void gemv_bf16_dot_avx512(const uint16_t* w, int64_t rows, int64_t k, const float*, const uint16_t* xb,
                          int64_t m, float* y, int64_t ldy) {
  for (int64_t i = 0; i < m; i += 4) {
    const uint16_t* xi = xb + i * k;
    float* yi = y + i * ldy;
    switch (m - i < 4 ? m - i : 4) {
      case 1: rows_block<1>(w, rows, k, xi, yi, ldy); break;
      case 2: rows_block<2>(w, rows, k, xi, yi, ldy); break;
      case 3: rows_block<3>(w, rows, k, xi, yi, ldy); break;
      default: rows_block<4>(w, rows, k, xi, yi, ldy); break;
    }
  }
}

}  // namespace dsmoe::infer
#pragma GCC pop_options
#else
namespace dsmoe::infer {
// Never selected without the instruction (bf16_dot_active() is false); kept for linking.
void gemv_bf16_dot_avx512(const uint16_t* w, int64_t rows, int64_t k, const float* x, const uint16_t* xb,
                          int64_t m, float* y, int64_t ldy) {
  gemv_bf16_generic(w, rows, k, x, xb, m, y, ldy);
}
}  // namespace dsmoe::infer
#endif
