// Register-blocked GEMM micro-kernels, one per instruction set (gemm_ukernel_<isa>.cc), and the
// blocking each one wants. The driver (gemm.cc) packs A into MR-row panels ([kc][MR]) and B into
// NR-column panels ([kc][NR]), zero-padded, then calls the micro-kernel per MR x NR block of C:
//   C[0:mr, 0:nr] = alpha * Ap·Bp + beta * C     (beta == 0: C is not read)
// mr <= MR and nr <= NR: edge blocks are computed in full and only the valid part is stored.
#pragma once
#include <cstdint>

namespace dsmoe::cpu {

using GemmMicroKernel = void (*)(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc,
                                 float alpha, float beta, int64_t mr, int64_t nr);

struct GemmKernelInfo {
  GemmMicroKernel kernel;
  int64_t mr, nr;  // register block
  int64_t mc, nc, kc;  // cache blocks (multiples of mr / nr)
};

GemmKernelInfo gemm_kernel_generic();
GemmKernelInfo gemm_kernel_avx2();
GemmKernelInfo gemm_kernel_avx512();

// Stores a computed MR x NR tile (row stride NR) into C with alpha/beta; shared edge path.
inline void store_tile(const float* acc, int64_t nr_full, float* c, int64_t ldc, float alpha,
                       float beta, int64_t mr, int64_t nr) {
  for (int64_t i = 0; i < mr; ++i)
    for (int64_t j = 0; j < nr; ++j) {
      float v = alpha * acc[i * nr_full + j];
      c[i * ldc + j] = beta == 0.f ? v : v + beta * c[i * ldc + j];
    }
}

}  // namespace dsmoe::cpu
