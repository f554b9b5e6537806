// AVX-512 micro-kernel: 14 rows x 32 columns = 28 zmm accumulators, 2 for B, 1 broadcast.
#include "gemm_microkernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#pragma GCC push_options
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
}  // namespace

GemmKernelInfo gemm_kernel_avx512() { return {ukernel_avx512, MR, NR, 168, 256, 256}; }

}  // namespace dsmoe::cpu
#pragma GCC pop_options
#else
namespace dsmoe::cpu {
GemmKernelInfo gemm_kernel_avx512() { return gemm_kernel_avx2(); }
}
#endif
