// The AVX2 FMA peak loop: 10 independent accumulator chains.
#include <cstdint>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace dsmoe::cpu {
double fma_loop_avx2(int64_t iters) {
  __m256 acc[10];
  for (int j = 0; j < 10; ++j) acc[j] = _mm256_set1_ps(1.f + j);
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 10; ++j) acc[j] = _mm256_fmadd_ps(acc[j], m, c);
  __m256 s = acc[0];
  for (int j = 1; j < 10; ++j) s = _mm256_add_ps(s, acc[j]);
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  volatile float sink = out[0];
  (void)sink;
  return 10.0 * 8 * 2 * static_cast<double>(iters);
}
}  // namespace dsmoe::cpu
#pragma GCC pop_options
#else
#include <cstdint>
namespace dsmoe::cpu { double fma_loop_avx2(int64_t iters) { return 0.0 * iters; } }
#endif
