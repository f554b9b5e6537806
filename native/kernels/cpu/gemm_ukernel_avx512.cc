// AVX-512 micro-kernel: 14 rows x 32 columns = 28 zmm accumulators, 2 for B, 1 broadcast.
#include "gemm_microkernels.h"

#include <algorithm>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#pragma GCC push_options
// GCC 12 warns about _mm512_undefined_* inside its own headers; the values are never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vl,fma")

namespace dsmoe::cpu {
namespace {
constexpr int64_t MR = 14, NR = 32;

void ukernel_avx512(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
                    float alpha, float beta, int64_t mr, int64_t nr) {
  __m512 acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
#pragma GCC unroll 14
    for (int i = 0; i < MR; ++i) {
      __m512 a = _mm512_set1_ps(ap[i]);
      acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
    }
    ap += MR;
    bp += NR;
  }
  if (nr == NR) {
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int i = 0; i < mr; ++i)
      for (int h = 0; h < 2; ++h) {
        float* dst = c + i * ldc + h * 16;
        __m512 v = _mm512_mul_ps(va, acc[i][h]);
        if (beta != 0.f) v = _mm512_fmadd_ps(vb, _mm512_loadu_ps(dst), v);
        _mm512_storeu_ps(dst, v);
      }
    return;
  }
  // Partial width: masked stores keep the tail inside C.
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int h = 0; h < 2; ++h) {
    int64_t cols = nr - h * 16;
    if (cols <= 0) break;
    __mmask16 mask = cols >= 16 ? __mmask16(0xffff) : __mmask16((1u << cols) - 1);
    for (int i = 0; i < mr; ++i) {
      float* dst = c + i * ldc + h * 16;
      __m512 v = _mm512_mul_ps(va, acc[i][h]);
      if (beta != 0.f) v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask, dst), v);
      _mm512_mask_storeu_ps(dst, mask, v);
    }
  }
}
// In-register transpose of 16 rows of 16 floats: r[i][j] -> r[j][i].
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // Groups of four rows: lane l of r[4g + c] holds rows 4g..4g+3 at column 4l + c.
  for (int g = 0; g < 4; ++g) {
    r[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
    t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);
    t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
  }
  for (int c = 0; c < 8; ++c) {
    r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xDD);
  }
}

inline __mmask16 low_mask(int64_t n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }

// Loads up to 16 rows of 16 elements (k tail masked, missing rows zero), transposes, and stores
// column p as dst[p·width + 0 .. cols) for p < kvalid.
template <typename Load>
inline void pack_block16(Load load, int64_t rows, int64_t kvalid, int64_t width, int64_t cols, float* dst) {
  __m512 r[16];
  const __mmask16 kmask = low_mask(kvalid);
  for (int i = 0; i < 16; ++i) r[i] = i < rows ? load(i, kmask) : _mm512_setzero_ps();
  transpose16(r);
  const __mmask16 cmask = low_mask(cols);
  for (int p = 0; p < kvalid; ++p) _mm512_mask_storeu_ps(dst + p * width, cmask, r[p]);
}

void pack_kmajor_f32_avx512(const float* src, int64_t ld, int64_t rows, int64_t kb, int64_t width,
                            int64_t panel_stride, const float* scale, int64_t scale_stride, float* dst) {
  for (int64_t r0 = 0; r0 < rows; r0 += width) {
    float* panel = dst + r0 / width * panel_stride;
    for (int64_t g = 0; g < width; g += 16) {  // 16-row groups inside a panel
      const int64_t live = std::max<int64_t>(0, std::min<int64_t>(16, rows - r0 - g));
      const int64_t cols = std::min<int64_t>(16, width - g);
      const float* base = src + (r0 + g) * ld;
      for (int64_t p0 = 0; p0 < kb; p0 += 16) {
        auto load = [&](int i, __mmask16 m) {
          __m512 v = _mm512_maskz_loadu_ps(m, base + i * ld + p0);
          return scale ? _mm512_mul_ps(v, _mm512_set1_ps(scale[(r0 + g + i) * scale_stride])) : v;
        };
        pack_block16(load, live, std::min<int64_t>(16, kb - p0), width, cols, panel + p0 * width + g);
      }
    }
  }
}

void pack_kmajor_bf16_avx512(const uint16_t* src, int64_t ld, int64_t rows, int64_t kb, int64_t width,
                             int64_t panel_stride, float* dst) {
  for (int64_t r0 = 0; r0 < rows; r0 += width) {
    float* panel = dst + r0 / width * panel_stride;
    for (int64_t g = 0; g < width; g += 16) {
      const int64_t live = std::max<int64_t>(0, std::min<int64_t>(16, rows - r0 - g));
      const int64_t cols = std::min<int64_t>(16, width - g);
      const uint16_t* base = src + (r0 + g) * ld;
      for (int64_t p0 = 0; p0 < kb; p0 += 16) {
        auto load = [&](int i, __mmask16 m) {
          __m256i h = _mm256_maskz_loadu_epi16(m, base + i * ld + p0);
          return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        };
        pack_block16(load, live, std::min<int64_t>(16, kb - p0), width, cols, panel + p0 * width + g);
      }
    }
  }
}

}  // namespace

GemmKernelInfo gemm_kernel_avx512() {
  // Blocks measured on Zen 5 (48 KiB L1, 1 MiB L2): A micro-panel 14 KiB in L1, B block 512 KiB in L2.
  return {ukernel_avx512, MR, NR, 336, 512, 256, pack_kmajor_f32_avx512, pack_kmajor_bf16_avx512};
}

}  // namespace dsmoe::cpu
#pragma GCC pop_options
#else
namespace dsmoe::cpu {
GemmKernelInfo gemm_kernel_avx512() { return gemm_kernel_avx2(); }
}
#endif
