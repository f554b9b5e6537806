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

namespace dsmoe::cpu {
namespace {

#include "gemv_blocks.inc"  // inside the anonymous namespace on purpose (see the file)

inline __m512bh as_bh(__m512i v) { return reinterpret_cast<__m512bh&>(v); }

// RB weight rows × MB activation rows per pass, two 32-pair halves each: 2·RB·MB independent
// vdpbf16ps chains (its latency is longer than an FMA's, so one row at a time was latency-bound).
template <int RB, int MB>
void block(const uint16_t* w, int64_t k, const uint16_t* xb, float* y, int64_t ldy) {
  const int64_t k64 = k & ~int64_t(63), rem = k - k64;
  __m512 a0[RB][MB], a1[RB][MB];
  #pragma GCC unroll 4
  for (int r = 0; r < RB; ++r)
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) a0[r][i] = a1[r][i] = _mm512_setzero_ps();
  for (int64_t j = 0; j < k64; j += 64) {
    __m512i x0[MB], x1[MB];
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) {
      x0[i] = _mm512_loadu_si512(xb + i * k + j);
      x1[i] = _mm512_loadu_si512(xb + i * k + j + 32);
    }
    #pragma GCC unroll 4
    for (int r = 0; r < RB; ++r) {
      const __m512i w0 = _mm512_loadu_si512(w + r * k + j), w1 = _mm512_loadu_si512(w + r * k + j + 32);
      #pragma GCC unroll 4
      for (int i = 0; i < MB; ++i) {
        a0[r][i] = _mm512_dpbf16_ps(a0[r][i], as_bh(w0), as_bh(x0[i]));
        a1[r][i] = _mm512_dpbf16_ps(a1[r][i], as_bh(w1), as_bh(x1[i]));
      }
    }
  }
  if (rem) {  // masked lanes load as +0 and add nothing
    const __mmask32 m0 = static_cast<__mmask32>(rem >= 32 ? 0xffffffffu : (uint32_t(1) << rem) - 1u);
    const __mmask32 m1 = static_cast<__mmask32>(rem > 32 ? (uint32_t(1) << (rem - 32)) - 1u : 0u);
    #pragma GCC unroll 4
    for (int r = 0; r < RB; ++r) {
      const __m512i w0 = _mm512_maskz_loadu_epi16(m0, w + r * k + k64),
                    w1 = _mm512_maskz_loadu_epi16(m1, w + r * k + k64 + 32);
      #pragma GCC unroll 4
      for (int i = 0; i < MB; ++i) {
        a0[r][i] = _mm512_dpbf16_ps(a0[r][i], as_bh(w0), as_bh(_mm512_maskz_loadu_epi16(m0, xb + i * k + k64)));
        a1[r][i] = _mm512_dpbf16_ps(a1[r][i], as_bh(w1), as_bh(_mm512_maskz_loadu_epi16(m1, xb + i * k + k64 + 32)));
      }
    }
  }
  #pragma GCC unroll 4
  for (int r = 0; r < RB; ++r)
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) y[i * ldy + r] = _mm512_reduce_add_ps(_mm512_add_ps(a0[r][i], a1[r][i]));
}

// Decode (MB = 1) takes one weight row at a time, as the int8 and q4 kernels do: one sequential stream
// per thread reads memory fastest. Four interleaved rows ran at half the speed (expertGemv over 128 MB
// of bf16, AMD EPYC family 25: 10-12 against 21-25 GB/s on one thread, 18-21 against 31-50 on two),
// though the row's two vdpbf16ps chains are latency-bound when the weights sit in L2. Each row's sum
// is the same either way (the same two chains), so the results do not change.
template <int MB>
void rows_mb(const uint16_t* w, int64_t rows, int64_t k, const uint16_t* xb, float* y, int64_t ldy) {
  constexpr int RB = MB == 1 ? 1 : MB >= 4 ? 2 : 4 / MB;
  int64_t r = 0;
  for (; r + RB <= rows; r += RB) block<RB, MB>(w + r * k, k, xb, y + r, ldy);
  for (; r < rows; ++r) block<1, MB>(w + r * k, k, xb, y + r, ldy);
}

}  // namespace

void gemv_bf16_dot_avx512(const uint16_t* w, int64_t rows, int64_t k, const float*, const uint16_t* xb,
                          int64_t m, float* y, int64_t ldy) {
  for_activation_blocks(m, [&](auto mb, int64_t i) {
    const uint16_t* xi = xb + i * k;
    float* yi = y + i * ldy;
    rows_mb<decltype(mb)::value>(w, rows, k, xi, yi, ldy);
  });
}

}  // namespace dsmoe::cpu
#pragma GCC pop_options
#else
namespace dsmoe::cpu {
// Never selected without the instruction (bf16_dot_active() is false); kept for linking.
void gemv_bf16_dot_avx512(const uint16_t* w, int64_t rows, int64_t k, const float* x, const uint16_t* xb,
                          int64_t m, float* y, int64_t ldy) {
  gemv_bf16_generic(w, rows, k, x, xb, m, y, ldy);
}
}  // namespace dsmoe::cpu
#endif
