// AVX-512 VNNI GEMV row kernels for quantized weights against int8 activations (quant.h:
// quantize_activations_vnni, below). vpdpbusd multiplies 64 unsigned weight bytes by 64 signed activation bytes
// and adds each 4 products into one of 16 int32 lanes, so a 64-column block costs one instruction
// instead of the fp32 path's four widenings, four conversions and four FMAs.
//   I8: the weight bytes w + 128 (an xor with 0x80); the lanes start from the block's corrections
//       (−128 · Σx per lane), so they end with Σ w·x exactly. The int32 lanes become floats once per
//       block, times the block's activation scale; the row scale multiplies the row's sum at the end.
//   Q4: one 32-byte load holds two groups of 32 columns; the low nibbles (even columns) go to the
//       lower half of a register and the high nibbles (odd columns) to the upper half, which is the
//       order quantize_activations_vnni stored x in. The codes c = w + 8 are the unsigned operand, the
//       corrections are −8 · Σx per lane. Lanes 0-3 and 8-11 hold the first group, 4-7 and 12-15 the
//       second: each lane is scaled by its group's weight scale (a permute of 16 group scales); the
//       row's activation scale multiplies the sum at the end. Alternate blocks go to two accumulators
//       (two FMA chains: +4 % in L2 on one Zen 5 thread).
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

template <int RB, int MB>
void block_q4_vnni(const uint8_t* w, const uint16_t* wscale, int64_t k, const int8_t* xq, const float* xs,
                   const int32_t* xc, float* y, int64_t ldy) {
  const int64_t groups = k / kQ4Group, rb = k / 2, nb = k / kXBlock;
  const __m512i shift = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);  // upper half: the high nibbles
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i lane_group = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1);
  __m512 acc[RB][MB], acc2[RB][MB];
  #pragma GCC unroll 4
  for (int r = 0; r < RB; ++r)
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) acc[r][i] = acc2[r][i] = _mm512_setzero_ps();
  for (int64_t g0 = 0; g0 < groups; g0 += 16) {
    // The next ≤ 16 group scales of each row, fp16 -> fp32 at once (vcvtph2ps is exact).
    const int64_t gn = groups - g0 < 16 ? groups - g0 : 16;
    const __mmask16 gm = static_cast<__mmask16>(gn == 16 ? 0xffffu : (1u << gn) - 1u);
    __m512 sc[RB];
    #pragma GCC unroll 4
    for (int r = 0; r < RB; ++r) sc[r] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(gm, wscale + r * groups + g0));
    for (int64_t g = 0; g < gn; g += 2) {  // one 64-column block: groups g0 + g and g0 + g + 1
      const int64_t b = (g0 + g) / 2;
      const __m512i idx = _mm512_add_epi32(lane_group, _mm512_set1_epi32(static_cast<int>(g)));
      __m512i xv[MB], cv[MB];
      #pragma GCC unroll 4
      for (int i = 0; i < MB; ++i) {
        xv[i] = _mm512_loadu_si512(xq + i * k + b * kXBlock);
        cv[i] = _mm512_loadu_si512(xc + (i * nb + b) * 16);
      }
      #pragma GCC unroll 4
      for (int r = 0; r < RB; ++r) {
        const uint8_t* p = w + r * rb + b * (kXBlock / 2);
        if (RB > 1 && (b & 1) == 0) _mm_prefetch(reinterpret_cast<const char*>(p + RB * rb), _MM_HINT_T0);
        const __m512i bytes = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        const __m512i codes = _mm512_and_si512(_mm512_srlv_epi64(bytes, shift), low4);
        const __m512 lane_scale = _mm512_permutexvar_ps(idx, sc[r]);
        #pragma GCC unroll 4
        for (int i = 0; i < MB; ++i) {
          const __m512 d = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(cv[i], codes, xv[i]));
          if (g & 2) acc2[r][i] = _mm512_fmadd_ps(d, lane_scale, acc2[r][i]);
          else acc[r][i] = _mm512_fmadd_ps(d, lane_scale, acc[r][i]);
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
      } else {  // even columns of each group of 32 to bytes 0..31, odd ones to 32..63 (quant.h)
        for (int g = 0; g < 2; ++g) {
          const __m512i a = round16(xb + 32 * g, inv), c = round16(xb + 32 * g + 16, inv);
          _mm_storeu_si128(reinterpret_cast<__m128i*>(qb + 16 * g),
                           _mm512_cvtepi32_epi8(_mm512_permutex2var_epi32(a, ev, c)));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(qb + 32 + 16 * g),
                           _mm512_cvtepi32_epi8(_mm512_permutex2var_epi32(a, od, c)));
        }
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
