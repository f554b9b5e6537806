// AVX2 GEMV row kernels, for x86-64 CPUs without AVX-512: F32, BF16 (widened: exact products) and the
// quantized formats of quant.h, with the arithmetic of gemv_avx512.cc / gemv_quant_avx512.cc, 8 lanes
// wide. Weights are read as stored and widened in registers; activations stay fp32, products are fp32
// FMAs. One weight row at a time (one sequential stream per thread).
//   I8: 8 int8 -> 8 int32 -> 8 floats (vpmovsxbd + vcvtdq2ps), FMA with x; the row scale multiplies
//       the row's sum at the end.
//   Q4: a group of 32 columns is 16 bytes: the low nibbles (even columns) and high nibbles (odd
//       columns) are interleaved back into column order (vpunpck{l,h}bw), 8 is subtracted, and each
//       8 codes become floats times the group's scale (exactly the weights of dequantize_rows).
// Up to 4 activation rows share each weight load. Only intrinsics and plain loops here (see
// gemv_quant_avx512.cc on template instantiations under a target pragma).
#include "gemv.h"
#include "quant.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "../../core/half.h"
#pragma GCC push_options
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx2,fma,f16c")

namespace dsmoe::cpu {
namespace {

#include "gemv_blocks.inc"  // inside the anonymous namespace on purpose (see the file)

inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// A row of F32 / BF16 / I8 weights: 16 columns per step in two accumulators per activation row; the
// sum times `scale` (I8's row scale; 1 otherwise, exact).
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {  // bf16 -> fp32: the bits shifted into the high half (exact)
  const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
inline __m256 load8(const int8_t* p) {  // int8 -> int32 -> fp32 (exact)
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
inline float widen(int8_t v) { return static_cast<float>(v); }
inline float widen(float v) { return v; }
inline float widen(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

template <int MB, typename W>
void row_wide(const W* w, float scale, int64_t k, const float* x, float* y, int64_t ldy) {
  const int64_t k16 = k & ~int64_t(15);
  __m256 a0[MB], a1[MB];
  #pragma GCC unroll 4
  for (int i = 0; i < MB; ++i) a0[i] = a1[i] = _mm256_setzero_ps();
  for (int64_t j = 0; j < k16; j += 16) {
    const __m256 w0 = load8(w + j), w1 = load8(w + j + 8);
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) {
      a0[i] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i * k + j), a0[i]);
      a1[i] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i * k + j + 8), a1[i]);
    }
  }
  #pragma GCC unroll 4
  for (int i = 0; i < MB; ++i) {
    float acc = hsum8(_mm256_add_ps(a0[i], a1[i]));
    for (int64_t j = k16; j < k; ++j) acc += widen(w[j]) * x[i * k + j];
    y[i * ldy] = acc * scale;
  }
}

// scale: one per row (I8), or null (1).
template <int MB, typename W>
void rows_wide(const W* w, const float* scale, int64_t rows, int64_t k, const float* x, float* y, int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r) row_wide<MB>(w + r * k, scale ? scale[r] : 1.f, k, x, y + r, ldy);
}

template <typename W>
void gemv_wide(const W* w, const float* scale, int64_t rows, int64_t k, const float* x, int64_t m, float* y,
               int64_t ldy) {
  for_activation_blocks(m, [&](auto mb, int64_t i) {
    const float* xi = x + i * k;
    float* yi = y + i * ldy;
    rows_wide<decltype(mb)::value>(w, scale, rows, k, xi, yi, ldy);
  });
}

template <int MB>
void row_q4(const uint8_t* w, const uint16_t* scale, int64_t k, const float* x, float* y, int64_t ldy) {
  const int64_t groups = k / kQ4Group;
  const __m128i low4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
  __m256 acc[MB];
  #pragma GCC unroll 4
  for (int i = 0; i < MB; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    const __m256 s = _mm256_set1_ps(half_to_float(scale[g]));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + g * (kQ4Group / 2)));
    const __m128i lo = _mm_and_si128(b, low4), hi = _mm_and_si128(_mm_srli_epi16(b, 4), low4);
    // columns 0..15 and 16..31 as signed codes c − 8
    const __m128i c0 = _mm_sub_epi8(_mm_unpacklo_epi8(lo, hi), eight);
    const __m128i c1 = _mm_sub_epi8(_mm_unpackhi_epi8(lo, hi), eight);
    __m256 wv[4];
    wv[0] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c0)), s);
    wv[1] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(c0, 8))), s);
    wv[2] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c1)), s);
    wv[3] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(c1, 8))), s);
    #pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) {
      const float* xg = x + i * k + g * kQ4Group;
      #pragma GCC unroll 4
      for (int t = 0; t < 4; ++t) acc[i] = _mm256_fmadd_ps(wv[t], _mm256_loadu_ps(xg + 8 * t), acc[i]);
    }
  }
  #pragma GCC unroll 4
  for (int i = 0; i < MB; ++i) y[i * ldy] = hsum8(acc[i]);
}

template <int MB>
void rows_q4(const uint8_t* w, const uint16_t* scale, int64_t rows, int64_t k, const float* x, float* y,
             int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r) row_q4<MB>(w + r * (k / 2), scale + r * (k / kQ4Group), k, x, y + r, ldy);
}

}  // namespace

void gemv_f32_avx2(const float* w, int64_t rows, int64_t k, const float* x, int64_t m, float* y, int64_t ldy) {
  gemv_wide(w, nullptr, rows, k, x, m, y, ldy);
}

void gemv_bf16_avx2(const uint16_t* w, int64_t rows, int64_t k, const float* x, const uint16_t*, int64_t m,
                    float* y, int64_t ldy) {
  gemv_wide(w, nullptr, rows, k, x, m, y, ldy);
}

void gemv_i8_avx2(const int8_t* w, const float* scale, int64_t rows, int64_t k, const float* x, int64_t m,
                  float* y, int64_t ldy) {
  gemv_wide(w, scale, rows, k, x, m, y, ldy);
}

void gemv_q4_avx2(const uint8_t* w, const uint16_t* scale, int64_t rows, int64_t k, const float* x, int64_t m,
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
// Never selected off x86-64 (active_isa() is generic there); kept for linking.
void gemv_f32_avx2(const float* w, int64_t rows, int64_t k, const float* x, int64_t m, float* y, int64_t ldy) {
  gemv_f32_generic(w, rows, k, x, m, y, ldy);
}
void gemv_bf16_avx2(const uint16_t* w, int64_t rows, int64_t k, const float* x, const uint16_t* xb, int64_t m,
                    float* y, int64_t ldy) {
  gemv_bf16_generic(w, rows, k, x, xb, m, y, ldy);
}
void gemv_i8_avx2(const int8_t* w, const float* scale, int64_t rows, int64_t k, const float* x, int64_t m,
                  float* y, int64_t ldy) {
  gemv_i8_generic(w, scale, rows, k, x, m, y, ldy);
}
void gemv_q4_avx2(const uint8_t* w, const uint16_t* scale, int64_t rows, int64_t k, const float* x, int64_t m,
                  float* y, int64_t ldy) {
  gemv_q4_generic(w, scale, rows, k, x, m, y, ldy);
}
}  // namespace dsmoe::cpu
#endif
