// AVX-512 GEMV row kernels: fp32 weights, and bf16 weights widened to fp32 (exact) + FMA. Up to 4
// activation rows share each weight load; several weight rows per pass hide the FMA latency.
#include "gemv.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vl,fma")

namespace dsmoe::cpu {
namespace {

#include "gemv_blocks.inc"  // inside the anonymous namespace on purpose (see the file)

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

// RB weight rows × MB activation rows per pass, two 16-lane halves each: 2·RB·MB independent FMA
// chains, enough to cover the FMA latency (one chain per row was latency-bound at ~16 B/cycle),
// and each activation load serves RB rows.
template <int RB, int MB, typename W>
void block(const W* w, int64_t k, const float* x, float* y, int64_t ldy) {
  const int64_t k32 = k & ~int64_t(31), rem = k - k32;
  __m512 a0[RB][MB], a1[RB][MB];
  #pragma GCC unroll 4
  for (int r = 0; r < RB; ++r)
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) a0[r][i] = a1[r][i] = _mm512_setzero_ps();
  for (int64_t j = 0; j < k32; j += 32) {
    __m512 x0[MB], x1[MB];
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) {
      x0[i] = _mm512_loadu_ps(x + i * k + j);
      x1[i] = _mm512_loadu_ps(x + i * k + j + 16);
    }
    #pragma GCC unroll 4
    for (int r = 0; r < RB; ++r) {
      const __m512 w0 = load_w(w + r * k + j), w1 = load_w(w + r * k + j + 16);
      #pragma GCC unroll 4
      for (int i = 0; i < MB; ++i) {
        a0[r][i] = _mm512_fmadd_ps(w0, x0[i], a0[r][i]);
        a1[r][i] = _mm512_fmadd_ps(w1, x1[i], a1[r][i]);
      }
    }
  }
  if (rem) {  // masked lanes load as 0 and add nothing
    const __mmask16 m0 = static_cast<__mmask16>(rem >= 16 ? 0xffffu : (1u << rem) - 1u);
    const __mmask16 m1 = static_cast<__mmask16>(rem > 16 ? (1u << (rem - 16)) - 1u : 0u);
    #pragma GCC unroll 4
    for (int r = 0; r < RB; ++r) {
      const __m512 w0 = load_w_tail(w + r * k + k32, m0), w1 = load_w_tail(w + r * k + k32 + 16, m1);
      #pragma GCC unroll 4
      for (int i = 0; i < MB; ++i) {
        a0[r][i] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m0, x + i * k + k32), a0[r][i]);
        a1[r][i] = _mm512_fmadd_ps(w1, _mm512_maskz_loadu_ps(m1, x + i * k + k32 + 16), a1[r][i]);
      }
    }
  }
  #pragma GCC unroll 4
  for (int r = 0; r < RB; ++r)
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) y[i * ldy + r] = _mm512_reduce_add_ps(_mm512_add_ps(a0[r][i], a1[r][i]));
}

// All rows for MB activation rows: blocks of RB = 4/MB rows (≥ 8 chains), then single rows. Bf16
// widening stays at one row per pass: its zero-extending shuffle, not the FMA latency, is the limit
// (measured on Zen 4: 4 rows per pass fell from ~30 to ~19 GB/s).
template <int MB, typename W>
void rows_mb(const W* w, int64_t rows, int64_t k, const float* x, float* y, int64_t ldy) {
  constexpr int RB = (MB >= 4 || sizeof(W) == 2) ? 1 : 4 / MB;
  int64_t r = 0;
  for (; r + RB <= rows; r += RB) block<RB, MB>(w + r * k, k, x, y + r, ldy);
  for (; r < rows; ++r) block<1, MB>(w + r * k, k, x, y + r, ldy);
}

template <typename W>
void rows_any(const W* w, int64_t rows, int64_t k, const float* x, int64_t m, float* y, int64_t ldy) {
  // Blocks of up to 4 activation rows; the weight block (≤ 32 KiB) stays in L1/L2 across them.
  for_activation_blocks(m, [&](auto mb, int64_t i) {
    const float* xi = x + i * k;
    float* yi = y + i * ldy;
    rows_mb<decltype(mb)::value>(w, rows, k, xi, yi, ldy);
  });
}

}  // namespace

void gemv_f32_avx512(const float* w, int64_t rows, int64_t k, const float* x, int64_t m, float* y, int64_t ldy) {
  rows_any(w, rows, k, x, m, y, ldy);
}

void gemv_bf16_widen_avx512(const uint16_t* w, int64_t rows, int64_t k, const float* x, const uint16_t*,
                            int64_t m, float* y, int64_t ldy) {
  rows_any(w, rows, k, x, m, y, ldy);
}

}  // namespace dsmoe::cpu
#pragma GCC pop_options
#else
namespace dsmoe::cpu {
void gemv_f32_avx512(const float* w, int64_t rows, int64_t k, const float* x, int64_t m, float* y, int64_t ldy) {
  gemv_f32_generic(w, rows, k, x, m, y, ldy);
}
void gemv_bf16_widen_avx512(const uint16_t* w, int64_t rows, int64_t k, const float* x, const uint16_t* xb,
                            int64_t m, float* y, int64_t ldy) {
  gemv_bf16_generic(w, rows, k, x, xb, m, y, ldy);
}
}  // namespace dsmoe::cpu
#endif
