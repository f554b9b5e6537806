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

// Packs `rows` rows of a K-contiguous matrix (row r at src + r·ld, kb elements) into panels of
// `width` rows: dst[panel·panel_stride + p·width + i] = src[(panel·width + i)·ld + p] · scale[...]
// (scale optional, one per row), zero-padding the last panel. panel_stride lets several K pieces
// (the segments of one GEMM) be packed side by side into one panel. This is the transposing pack
// that both Y = X·Wᵀ operands need; ISA versions transpose 16x16 blocks in registers.
using PackKMajorF32 = void (*)(const float* src, int64_t ld, int64_t rows, int64_t kb, int64_t width,
                               int64_t panel_stride, const float* scale, int64_t scale_stride, float* dst);
using PackKMajorBf16 = void (*)(const uint16_t* src, int64_t ld, int64_t rows, int64_t kb,
                                int64_t width, int64_t panel_stride, float* dst);

struct GemmKernelInfo {
  GemmMicroKernel kernel;
  int64_t mr, nr;  // register block
  int64_t mc, nc, kc;  // cache blocks (multiples of mr / nr)
  PackKMajorF32 pack_kmajor_f32;
  PackKMajorBf16 pack_kmajor_bf16;
};

// Portable packers (gemm.cc), used by the generic and AVX2 kernels.
void pack_kmajor_f32_generic(const float* src, int64_t ld, int64_t rows, int64_t kb, int64_t width,
                             int64_t panel_stride, const float* scale, int64_t scale_stride, float* dst);
void pack_kmajor_bf16_generic(const uint16_t* src, int64_t ld, int64_t rows, int64_t kb, int64_t width,
                              int64_t panel_stride, float* dst);

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
