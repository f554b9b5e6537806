// AVX2 + FMA micro-kernel: 6 rows x 16 columns = 12 ymm accumulators.
#include "gemm_microkernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace dsmoe::cpu {
namespace {
constexpr int64_t MR = 6, NR = 16;

void ukernel_avx2(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, float alpha,
                  float beta, int64_t mr, int64_t nr) {
  __m256 acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    __m256 b0 = _mm256_load_ps(bp + p * NR), b1 = _mm256_load_ps(bp + p * NR + 8);
    for (int i = 0; i < MR; ++i) {
      __m256 a = _mm256_broadcast_ss(ap + p * MR + i);
      acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
    }
  }
  if (mr == MR && nr == NR) {
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    for (int i = 0; i < MR; ++i)
      for (int h = 0; h < 2; ++h) {
        float* dst = c + i * ldc + h * 8;
        __m256 v = _mm256_mul_ps(va, acc[i][h]);
        if (beta != 0.f) v = _mm256_fmadd_ps(vb, _mm256_loadu_ps(dst), v);
        _mm256_storeu_ps(dst, v);
      }
    return;
  }
  alignas(32) float tile[MR * NR];
  for (int i = 0; i < MR; ++i) {
    _mm256_store_ps(tile + i * NR, acc[i][0]);
    _mm256_store_ps(tile + i * NR + 8, acc[i][1]);
  }
  store_tile(tile, NR, c, ldc, alpha, beta, mr, nr);
}
}  // namespace

GemmKernelInfo gemm_kernel_avx2() { return {ukernel_avx2, MR, NR, 120, 256, 256, pack_kmajor_f32_generic,
    pack_kmajor_bf16_generic}; }

}  // namespace dsmoe::cpu
#pragma GCC pop_options
#else
namespace dsmoe::cpu {
GemmKernelInfo gemm_kernel_avx2() { return gemm_kernel_generic(); }
}
#endif
