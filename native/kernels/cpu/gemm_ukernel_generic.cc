// Portable micro-kernel: plain C++ the compiler may vectorise for the baseline ISA.
#include "gemm_microkernels.h"

namespace dsmoe::cpu {
namespace {
constexpr int64_t MR = 4, NR = 16;

void ukernel_generic(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
                     float alpha, float beta, int64_t mr, int64_t nr) {
  float acc[MR * NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    const float* a = ap + p * MR;
    const float* b = bp + p * NR;
    for (int64_t i = 0; i < MR; ++i)
      for (int64_t j = 0; j < NR; ++j) acc[i * NR + j] += a[i] * b[j];
  }
  store_tile(acc, NR, c, ldc, alpha, beta, mr, nr);
}
}  // namespace

GemmKernelInfo gemm_kernel_generic() { return {ukernel_generic, MR, NR, 128, 256, 256, pack_kmajor_f32_generic,
    pack_kmajor_bf16_generic}; }

}  // namespace dsmoe::cpu
