// AVX-512 GEMV row kernels for quantized weights (formats in quant.h): the weights are read as stored
// (1 or 1/2 byte each) and dequantized in registers; activations stay fp32, products are fp32 FMAs.
//   I8: 16 int8 -> 16 int32 -> 16 floats (vpmovsxbd + vcvtdq2ps), FMA with x; the row scale multiplies
//       the row's sum once at the end.
//   Q4: per group of 32 columns a 16-entry table (c − 8)·scale (one multiply), 16 bytes zero-extended
//       to 16 dwords whose low 4 bits index it (vpermps ignores the rest): the low nibbles give the
//       even columns, the bytes shifted right by 4 the odd ones. Each weight is exactly the float
//       (c − 8)·scale of dequantize_rows. The activations are split into even / odd columns once per
//       pass (shared by its weight rows), or, when there are as many activation rows as weight rows,
//       two vpermt2ps put the weights back in column order instead.
// As in gemv_avx512.cc, up to 4 activation rows share each weight load and several weight rows per
// pass keep enough FMA chains in flight. Only intrinsics and plain loops here (no std:: templates):
// template instantiations made under the target pragma could be picked by the linker for baseline code.
#include "gemv.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vl,fma,f16c")

namespace dsmoe::cpu {
namespace {

#include "gemv_blocks.inc"  // inside the anonymous namespace on purpose (see the file)

inline __m512 i8_to_ps(__m128i q) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)); }

// RB weight rows × MB activation rows; NA = 2: the two 16-column halves of each 32 columns in separate
// accumulators (2·RB·MB FMA chains), NA = 1: in one (RB·MB chains, fewer registers).
template <int RB, int MB, int NA>
void block_i8(const int8_t* w, const float* scale, int64_t k, const float* x, float* y, int64_t ldy) {
  const int64_t k32 = k & ~int64_t(31), rem = k - k32;
  __m512 a0[RB][MB], a1x[RB][MB];
  __m512 (&a1)[RB][MB] = NA == 2 ? a1x : a0;  // NA = 1: both halves into one accumulator
  #pragma GCC unroll 4
  for (int r = 0; r < RB; ++r)
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) a0[r][i] = a1x[r][i] = _mm512_setzero_ps();
  for (int64_t j = 0; j < k32; j += 32) {
    __m512 x0[MB], x1[MB];
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) {
      x0[i] = _mm512_loadu_ps(x + i * k + j);
      x1[i] = _mm512_loadu_ps(x + i * k + j + 16);
    }
    #pragma GCC unroll 4
    for (int r = 0; r < RB; ++r) {
      const int8_t* p = w + r * k + j;
      // The same line of the next pass's rows: with RB interleaved rows the hardware prefetchers alone
      // kept a Zen 5 core at ~11-15 instead of ~16-20 GB/s on weights from DRAM (MB = 2..4).
      if (RB > 1 && (j & 63) == 0) _mm_prefetch(reinterpret_cast<const char*>(p + RB * k), _MM_HINT_T0);
      const __m512 w0 = i8_to_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      const __m512 w1 = i8_to_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
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
      const int8_t* p = w + r * k + k32;
      const __m512 w0 = i8_to_ps(_mm_maskz_loadu_epi8(m0, p)), w1 = i8_to_ps(_mm_maskz_loadu_epi8(m1, p + 16));
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
    for (int i = 0; i < MB; ++i)
      y[i * ldy + r] = _mm512_reduce_add_ps(NA == 2 ? _mm512_add_ps(a0[r][i], a1[r][i]) : a0[r][i]) * scale[r];
}

template <int RB, int MB, int NA>
void block_q4(const uint8_t* w, const uint16_t* scale, int64_t k, const float* x, float* y, int64_t ldy) {
  const int64_t groups = k / 32, rb = k / 2;  // rb: bytes per weight row
  const __m512 codes = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
  // Columns 0..15 and 16..31 of a group from (even columns, odd columns): lanes i of the first operand
  // and 16 + i of the second.
  const __m512i lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi_idx = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512i ev_idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i od_idx = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  constexpr bool kSplitX = RB > MB;  // fewer shuffles: MB pairs for x instead of RB pairs for the weights
  __m512 a0[RB][MB], a1x[RB][MB];
  __m512 (&a1)[RB][MB] = NA == 2 ? a1x : a0;  // NA = 1: both halves into one accumulator
  #pragma GCC unroll 4
  for (int r = 0; r < RB; ++r)
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) a0[r][i] = a1x[r][i] = _mm512_setzero_ps();
  for (int64_t g0 = 0; g0 < groups; g0 += 16) {
    // The next ≤ 16 group scales of each row, fp16 -> fp32 at once (vcvtph2ps is exact).
    const int64_t gn = groups - g0 < 16 ? groups - g0 : 16;
    const __mmask16 gm = static_cast<__mmask16>(gn == 16 ? 0xffffu : (1u << gn) - 1u);
    alignas(64) float sc[RB][16];
    #pragma GCC unroll 4
    for (int r = 0; r < RB; ++r)
      _mm512_store_ps(sc[r], _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(gm, scale + r * groups + g0)));
    for (int64_t g = 0; g < gn; ++g) {
      const int64_t j = (g0 + g) * 32;
      __m512 x0[MB], x1[MB];
      #pragma GCC unroll 4
      for (int i = 0; i < MB; ++i) {
        x0[i] = _mm512_loadu_ps(x + i * k + j);
        x1[i] = _mm512_loadu_ps(x + i * k + j + 16);
      }
      if (kSplitX) {  // x split into even / odd columns once, shared by the RB rows
        #pragma GCC unroll 4
        for (int i = 0; i < MB; ++i) {
          const __m512 xe = _mm512_permutex2var_ps(x0[i], ev_idx, x1[i]);
          x1[i] = _mm512_permutex2var_ps(x0[i], od_idx, x1[i]);
          x0[i] = xe;
        }
      }
      #pragma GCC unroll 4
      for (int r = 0; r < RB; ++r) {
        const __m512 table = _mm512_mul_ps(codes, _mm512_set1_ps(sc[r][g]));
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + r * rb + j / 2));
        const __m512i v = _mm512_cvtepu8_epi32(b);  // byte c in dword c: low nibble = column 2c
        const __m512 even = _mm512_permutexvar_ps(v, table);
        const __m512 odd = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table);
        const __m512 w0 = kSplitX ? even : _mm512_permutex2var_ps(even, lo_idx, odd);
        const __m512 w1 = kSplitX ? odd : _mm512_permutex2var_ps(even, hi_idx, odd);
        #pragma GCC unroll 4
        for (int i = 0; i < MB; ++i) {
          a0[r][i] = _mm512_fmadd_ps(w0, x0[i], a0[r][i]);
          a1[r][i] = _mm512_fmadd_ps(w1, x1[i], a1[r][i]);
        }
      }
    }
  }
  #pragma GCC unroll 4
  for (int r = 0; r < RB; ++r)
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i)
      y[i * ldy + r] = _mm512_reduce_add_ps(NA == 2 ? _mm512_add_ps(a0[r][i], a1[r][i]) : a0[r][i]);
}

// All rows for MB activation rows: blocks of RB weight rows, then single rows. RB = 4: each activation
// load serves 4 rows (with RB = 1 at MB = 4 the loads of x, not the weights, were the limit: 9.7 vs
// 22.4 GB/s of I8 weights, L2-hot, one Zen 5 thread). One accumulator per (row, activation row) when
// MB ≥ 2 (4·MB ≥ 8 FMA chains; 16 accumulators + 8 x registers at MB = 4), two at MB = 1 (8 chains).
// I8 at MB = 1 takes one row at a time: a single sequential stream ran at ~20-24 GB/s from DRAM on one
// Zen 5 core, 4 interleaved rows at ~10-14 (L2-hot the one row is slower, 32 vs 50 GB/s, but decode
// reads its weights from memory). Q4 keeps 4 rows at MB = 1 too: it is limited by its shuffles, and
// splitting x once per 4 rows pays (one row at a time: ~7-9 instead of ~10-12 GB/s from DRAM).
constexpr int na_of(int mb) { return mb == 1 ? 2 : 1; }

template <int MB>
void rows_i8(const int8_t* w, const float* scale, int64_t rows, int64_t k, const float* x, float* y, int64_t ldy) {
  constexpr int RB = MB == 1 ? 1 : 4, NA = na_of(MB);
  int64_t r = 0;
  for (; r + RB <= rows; r += RB) block_i8<RB, MB, NA>(w + r * k, scale + r, k, x, y + r, ldy);
  for (; r < rows; ++r) block_i8<1, MB, 2>(w + r * k, scale + r, k, x, y + r, ldy);
}

template <int MB>
void rows_q4(const uint8_t* w, const uint16_t* scale, int64_t rows, int64_t k, const float* x, float* y,
             int64_t ldy) {
  constexpr int RB = 4, NA = na_of(MB);
  const int64_t rb = k / 2, groups = k / 32;
  int64_t r = 0;
  for (; r + RB <= rows; r += RB) block_q4<RB, MB, NA>(w + r * rb, scale + r * groups, k, x, y + r, ldy);
  for (; r < rows; ++r) block_q4<1, MB, 2>(w + r * rb, scale + r * groups, k, x, y + r, ldy);
}

}  // namespace

// Blocks of up to 4 activation rows; the weight block (≤ 32 KiB) stays in L1/L2 across them.
void gemv_i8_avx512(const int8_t* w, const float* scale, int64_t rows, int64_t k, const float* x, int64_t m,
                    float* y, int64_t ldy) {
  for_activation_blocks(m, [&](auto mb, int64_t i) {
    const float* xi = x + i * k;
    float* yi = y + i * ldy;
    rows_i8<decltype(mb)::value>(w, scale, rows, k, xi, yi, ldy);
  });
}

void gemv_q4_avx512(const uint8_t* w, const uint16_t* scale, int64_t rows, int64_t k, const float* x, int64_t m,
                    float* y, int64_t ldy) {
  for_activation_blocks(m, [&](auto mb, int64_t i) {
    const float* xi = x + i * k;
    float* yi = y + i * ldy;
    rows_q4<decltype(mb)::value>(w, scale, rows, k, xi, yi, ldy);
  });
}

}  // namespace dsmoe::cpu
#pragma GCC pop_options
#else
namespace dsmoe::cpu {
// Never selected off x86-64 (active_isa() is below AVX-512); kept for linking.
void gemv_i8_avx512(const int8_t* w, const float* scale, int64_t rows, int64_t k, const float* x, int64_t m,
                    float* y, int64_t ldy) {
  gemv_i8_generic(w, scale, rows, k, x, m, y, ldy);
}
void gemv_q4_avx512(const uint8_t* w, const uint16_t* scale, int64_t rows, int64_t k, const float* x, int64_t m,
                    float* y, int64_t ldy) {
  gemv_q4_generic(w, scale, rows, k, x, m, y, ldy);
}
}  // namespace dsmoe::cpu
#endif
