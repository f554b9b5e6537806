// AVX-512 VNNI GEMV row kernels for quantized weights against int8 activations (quant.h:
// quantize_activations_vnni, below). vpdpbusd multiplies 64 unsigned weight bytes by 64 signed activation bytes
// and adds each 4 products into one of 16 int32 lanes, so a 64-column block costs one instruction
// instead of the fp32 path's four widenings, four conversions and four FMAs.
//   I8: the weight bytes w + 128 (an xor with 0x80); the lanes start from the block's corrections
//       (−128 · Σx per lane), so they end with Σ w·x exactly. The int32 lanes become floats once per
//       block, times the block's activation scale; the row scale multiplies the row's sum at the end.
//   Q4: one 64-byte load holds a superblock of 128 columns (four groups of 32): its low nibbles are the
//       even columns in order, its high nibbles (a 16-bit shift right by 4) the odd ones, which is
//       how quantize_activations_vnni stores x: [the superblock's even columns | its odd columns].
//       Both halves go through vpdpbusd into the same int32 lanes, lane l holding group l / 4 (each
//       lane sums 8 products of one group). The codes c = w + 8 are the unsigned operand, the lanes
//       start from the corrections −8 · Σx. The lanes become floats once per superblock and are
//       scaled by their group's weight scale (a permute of 16 group scales: 4 superblocks); the row's
//       activation scale multiplies the sum at the end. Alternate superblocks go to two accumulators.
//       A last block of 64 columns (k an odd multiple of 64) is stored and read as in 64-column
//       blocks: one 32-byte load broadcast to both halves, shifted by 0 and 4, lanes 0-3 and 8-11 the
//       first group, 4-7 and 12-15 the second. 4 vector operations per 64 weights, where one block
//       at a time took 6 (the 2-thread Zen 5 here retires about 2 a cycle).
// Products are exact integers; only the per-block (I8) or per-group (Q4) float sums round.
// Up to 4 activation rows share each weight load. Only intrinsics and plain loops here (see
// gemv_quant_avx512.cc on template instantiations under a target pragma).
#include "gemv.h"
#include "quant.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")

namespace dsmoe::cpu {
namespace {

#include "gemv_blocks.inc"  // inside the anonymous namespace on purpose (see the file)

// RB weight rows × MB activation rows, all k / 64 blocks.
template <int RB, int MB>
void block_i8_vnni(const int8_t* w, const float* wscale, int64_t k, const int8_t* xq, const float* xs,
                   const int32_t* xc, float* y, int64_t ldy) {
  const int64_t nb = k / kXBlock;
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 acc[RB][MB];
  #pragma GCC unroll 4
  for (int r = 0; r < RB; ++r)
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) acc[r][i] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m512i xv[MB], cv[MB];
    __m512 sv[MB];
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) {
      xv[i] = _mm512_loadu_si512(xq + i * k + b * kXBlock);
      cv[i] = _mm512_loadu_si512(xc + (i * nb + b) * 16);
      sv[i] = _mm512_set1_ps(xs[i * nb + b]);
    }
    #pragma GCC unroll 4
    for (int r = 0; r < RB; ++r) {
      const int8_t* p = w + r * k + b * kXBlock;
      if (RB > 1) _mm_prefetch(reinterpret_cast<const char*>(p + RB * k), _MM_HINT_T0);  // the next pass's rows
      const __m512i wu = _mm512_xor_si512(_mm512_loadu_si512(p), flip);
      #pragma GCC unroll 4
      for (int i = 0; i < MB; ++i)
        acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(cv[i], wu, xv[i])), sv[i], acc[r][i]);
    }
  }
  #pragma GCC unroll 4
  for (int r = 0; r < RB; ++r)
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) y[i * ldy + r] = _mm512_reduce_add_ps(acc[r][i]) * wscale[r];
}

// One weight row at a time (MB = 1) spends few instructions per cache line of weights; a software
// prefetch 1 KiB ahead keeps the superblock kernel from falling behind the 64-column one when reading
// from memory (one Zen 5 thread, 20 MB of q4 rows, separate processes in turn: no prefetch 19.5-23.9
// GB/s, 1 KiB ahead 24.3-26.7, the 64-column kernel 22.8-24.9). From L2 the superblock kernel is
// 1.2-1.3x the 64-column one (576 KB: 29.9-31.7 against 24.3-24.8 GB/s).
constexpr int64_t kQ4Prefetch = 1024;

template <int RB, int MB>
void block_q4_vnni(const uint8_t* w, const uint16_t* wscale, int64_t k, const int8_t* xq, const float* xs,
                   const int32_t* xc, float* y, int64_t ldy) {
  const int64_t groups = k / kQ4Group, rb = k / 2, nb = k / kXBlock;
  const int64_t full = (nb / 2) * 4;  // groups in whole superblocks
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i lane_group = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  __m512 acc[RB][MB], acc2[RB][MB];
  #pragma GCC unroll 4
  for (int r = 0; r < RB; ++r)
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) acc[r][i] = acc2[r][i] = _mm512_setzero_ps();
  // Superblock j (groups g .. g + 3 of the 16 whose scales are in sc) at block b = g / 2.
  auto superblock = [&](int64_t b, int g, const __m512* sc, bool odd) {
    const __m512i idx = _mm512_add_epi32(lane_group, _mm512_set1_epi32(g));
    __m512i xlo[MB], xhi[MB], cv[MB];
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) {
      xlo[i] = _mm512_loadu_si512(xq + i * k + b * kXBlock);
      xhi[i] = _mm512_loadu_si512(xq + i * k + b * kXBlock + kXBlock);
      cv[i] = _mm512_loadu_si512(xc + (i * nb + b) * 16);
    }
    #pragma GCC unroll 4
    for (int r = 0; r < RB; ++r) {
      const uint8_t* p = w + r * rb + b * (kXBlock / 2);
      if (RB > 1) _mm_prefetch(reinterpret_cast<const char*>(p + RB * rb), _MM_HINT_T0);  // the next pass's rows
      if (RB == 1 && kQ4Prefetch > 0) _mm_prefetch(reinterpret_cast<const char*>(p + kQ4Prefetch), _MM_HINT_T0);
      const __m512i bytes = _mm512_loadu_si512(p);
      const __m512i lo = _mm512_and_si512(bytes, low4);
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), low4);
      const __m512 lane_scale = _mm512_permutexvar_ps(idx, sc[r]);
      #pragma GCC unroll 4
      for (int i = 0; i < MB; ++i) {
        const __m512i d = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(cv[i], lo, xlo[i]), hi, xhi[i]);
        if (odd) acc2[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), lane_scale, acc2[r][i]);
        else acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), lane_scale, acc[r][i]);
      }
    }
  };
  __m512 sc[RB];
  int64_t g0 = 0;
  for (; g0 + 16 <= full; g0 += 16) {  // four superblocks per 16 scales, unrolled (constant permute indexes)
    #pragma GCC unroll 4
    for (int r = 0; r < RB; ++r)
      sc[r] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wscale + r * groups + g0)));
    superblock(g0 / 2, 0, sc, false);
    superblock(g0 / 2 + 2, 4, sc, true);
    superblock(g0 / 2 + 4, 8, sc, false);
    superblock(g0 / 2 + 6, 12, sc, true);
  }
  if (g0 < groups) {  // the last < 16 groups: whole superblocks, then perhaps a 64-column block
    const int64_t gn = groups - g0;
    const __mmask16 gm = static_cast<__mmask16>((1u << gn) - 1u);
    #pragma GCC unroll 4
    for (int r = 0; r < RB; ++r) sc[r] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(gm, wscale + r * groups + g0));
    int g = 0;
    for (; g0 + g + 4 <= full; g += 4) superblock((g0 + g) / 2, g, sc, (g & 4) != 0);
    if (g0 + g < groups) {  // the 64-column block: two groups
      const int64_t b = (g0 + g) / 2;
      const __m512i shift = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
      const __m512i idx = _mm512_add_epi32(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1),
                                           _mm512_set1_epi32(g));
      #pragma GCC unroll 4
      for (int r = 0; r < RB; ++r) {
        const uint8_t* p = w + r * rb + b * (kXBlock / 2);
        const __m512i bytes = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        const __m512i codes = _mm512_and_si512(_mm512_srlv_epi64(bytes, shift), low4);
        const __m512 lane_scale = _mm512_permutexvar_ps(idx, sc[r]);
        #pragma GCC unroll 4
        for (int i = 0; i < MB; ++i) {
          const __m512i d = _mm512_dpbusd_epi32(_mm512_loadu_si512(xc + (i * nb + b) * 16), codes,
                                                _mm512_loadu_si512(xq + i * k + b * kXBlock));
          acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), lane_scale, acc[r][i]);
        }
      }
    }
  }
  #pragma GCC unroll 4
  for (int r = 0; r < RB; ++r)
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) y[i * ldy + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][i], acc2[r][i])) * xs[i];
}

// All rows for MB activation rows. At MB = 1 one weight row at a time (one sequential stream per
// thread reads DRAM fastest, as in gemv_quant_avx512.cc: Q4 with 2 interleaved rows streamed 128 MB at
// 21.6 instead of 34.8 GB/s, 2 Zen 5 threads); with more activation rows, blocks of weight rows share
// each activation load.
template <int MB>
void rows_i8_vnni(const int8_t* w, const float* wscale, int64_t rows, int64_t k, const int8_t* xq, const float* xs,
                  const int32_t* xc, float* y, int64_t ldy) {
  constexpr int RB = MB == 1 ? 1 : 4;
  int64_t r = 0;
  for (; r + RB <= rows; r += RB) block_i8_vnni<RB, MB>(w + r * k, wscale + r, k, xq, xs, xc, y + r, ldy);
  for (; r < rows; ++r) block_i8_vnni<1, MB>(w + r * k, wscale + r, k, xq, xs, xc, y + r, ldy);
}

template <int MB>
void rows_q4_vnni(const uint8_t* w, const uint16_t* wscale, int64_t rows, int64_t k, const int8_t* xq,
                  const float* xs, const int32_t* xc, float* y, int64_t ldy) {
  constexpr int RB = MB == 1 ? 1 : 2;
  const int64_t rb = k / 2, groups = k / kQ4Group;
  int64_t r = 0;
  for (; r + RB <= rows; r += RB)
    block_q4_vnni<RB, MB>(w + r * rb, wscale + r * groups, k, xq, xs, xc, y + r, ldy);
  for (; r < rows; ++r) block_q4_vnni<1, MB>(w + r * rb, wscale + r * groups, k, xq, xs, xc, y + r, ldy);
}

// |x| max over n floats (n a multiple of 16).
inline float abs_max(const float* x, int64_t n) {
  __m512 m = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
  return _mm512_reduce_max_ps(m);
}

// 16 floats × inv rounded to nearest even (vcvtps2dq under the default MXCSR), clamped to ±127.
inline __m512i round16(const float* x, __m512 inv) {
  const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x), inv));
  return _mm512_max_epi32(_mm512_min_epi32(q, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
}

}  // namespace

void quantize_activations_vnni(DType wt, const float* x, int64_t m, int64_t k, QuantizedActivations out) {
  const int64_t nb = k / kXBlock;
  const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512i ones = _mm512_set1_epi8(1);
  const __m512i neg_bias = _mm512_set1_epi32(wt == DType::Q4 ? -8 : -128);
  // Groups of 32 columns from xb rounded by inv: the even columns to q[0, 16·groups), the odd ones
  // after them (a superblock: 4 groups, a lone 64-column block: 2).
  auto store_even_odd = [&](const float* xb, __m512 inv, int groups, int8_t* q) {
    for (int g = 0; g < groups; ++g) {
      const __m512i a = round16(xb + 32 * g, inv), c = round16(xb + 32 * g + 16, inv);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16 * g),
                       _mm512_cvtepi32_epi8(_mm512_permutex2var_epi32(a, ev, c)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16 * (groups + g)),
                       _mm512_cvtepi32_epi8(_mm512_permutex2var_epi32(a, od, c)));
    }
  };
  for (int64_t i = 0; i < m; ++i) {
    const float* xi = x + i * k;
    int8_t* qi = out.q + i * k;
    __m512 inv = _mm512_setzero_ps();
    if (wt == DType::Q4) {
      const float amax = abs_max(xi, k);
      out.scale[i] = amax / 127.f;
      inv = _mm512_set1_ps(amax > 0.f ? 127.f / amax : 0.f);
    }
    for (int64_t b = 0; b < nb; ++b) {
      const float* xb = xi + b * kXBlock;
      int8_t* qb = qi + b * kXBlock;
      if (wt == DType::I8) {
        const float amax = abs_max(xb, kXBlock);
        out.scale[i * nb + b] = amax / 127.f;
        inv = _mm512_set1_ps(amax > 0.f ? 127.f / amax : 0.f);
        for (int t = 0; t < 4; ++t)
          _mm_storeu_si128(reinterpret_cast<__m128i*>(qb + 16 * t), _mm512_cvtepi32_epi8(round16(xb + 16 * t, inv)));
      } else if (b + 1 < nb) {  // a Q4 superblock of 128 columns (b even here): even columns, then odd ones
        store_even_odd(xb, inv, 4, qb);
        // Lane l of the superblock adds the 4 even and the 4 odd bytes at 4l: one correction for both.
        const __m512i sums = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones,
                                                                     _mm512_loadu_si512(qb)),
                                                 ones, _mm512_loadu_si512(qb + 64));
        _mm512_storeu_si512(out.corr + (i * nb + b) * 16, _mm512_mullo_epi32(sums, neg_bias));
        ++b;  // the superblock's second block is done (its correction slot stays unused)
        continue;
      } else {  // the last 64-column block of an odd count: even columns of each group of 32, then odd
        store_even_odd(xb, inv, 2, qb);
      }
      // Σ of each lane's 4 bytes (1 · x through vpdpbusd), times −bias.
      const __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, _mm512_loadu_si512(qb));
      _mm512_storeu_si512(out.corr + (i * nb + b) * 16, _mm512_mullo_epi32(sums, neg_bias));
    }
  }
}

void gemv_i8_vnni(const int8_t* w, const float* wscale, int64_t rows, int64_t k, const int8_t* xq, const float* xs,
                  const int32_t* xc, int64_t m, float* y, int64_t ldy) {
  const int64_t nb = k / kXBlock;
  for_activation_blocks(m, [&](auto mb, int64_t i) {
    const int8_t* q = xq + i * k;
    const float* s = xs + i * nb;
    const int32_t* c = xc + i * nb * 16;
    float* yi = y + i * ldy;
    rows_i8_vnni<decltype(mb)::value>(w, wscale, rows, k, q, s, c, yi, ldy);
  });
}

void gemv_q4_vnni(const uint8_t* w, const uint16_t* wscale, int64_t rows, int64_t k, const int8_t* xq,
                  const float* xs, const int32_t* xc, int64_t m, float* y, int64_t ldy) {
  const int64_t nb = k / kXBlock;
  for_activation_blocks(m, [&](auto mb, int64_t i) {
    const int8_t* q = xq + i * k;
    const float* s = xs + i;
    const int32_t* c = xc + i * nb * 16;
    float* yi = y + i * ldy;
    rows_q4_vnni<decltype(mb)::value>(w, wscale, rows, k, q, s, c, yi, ldy);
  });
}

}  // namespace dsmoe::cpu
#pragma GCC pop_options
#else
#include <stdexcept>
namespace dsmoe::cpu {
// Never selected off x86-64 (int8_dot_active() is false there); kept for linking.
void quantize_activations_vnni(DType, const float*, int64_t, int64_t, QuantizedActivations) {
  throw std::logic_error("quantize_activations_vnni: no AVX-512 VNNI on this platform");
}
void gemv_i8_vnni(const int8_t*, const float*, int64_t, int64_t, const int8_t*, const float*, const int32_t*, int64_t,
                  float*, int64_t) {
  throw std::logic_error("gemv_i8_vnni: no AVX-512 VNNI on this platform");
}
void gemv_q4_vnni(const uint8_t*, const uint16_t*, int64_t, int64_t, const int8_t*, const float*, const int32_t*,
                  int64_t, float*, int64_t) {
  throw std::logic_error("gemv_q4_vnni: no AVX-512 VNNI on this platform");
}
}  // namespace dsmoe::cpu
#endif
