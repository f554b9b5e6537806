// Quantized weight formats and their dequantization (portable code; prefill dequantizes expert weights
// to fp32 before its GEMMs, decode reads them directly in the GEMV kernels, gemv.h).
//
//   I8: int8 q[rows, k] + float32 scale[rows]:            w[r, j] = q[r, j] · scale[r]
//   Q4: uint8 [rows, k/2], two 4-bit codes per byte (column 2c in the low nibble, 2c+1 in the high
//       one) + fp16 scale[rows, k/32] (uint16_t bits):     w[r, j] = (code(r, j) − 8) · scale[r, j/32]
//       k must be a multiple of 32 (llama.cpp's Q4_0 numerics, the scales stored apart).
// Rows are absolute rows of the whole tensor (an expert tensor [E, n, k] has E·n rows); `scales`
// always points at row 0's scales. Each weight is computed as one fp32 product, so it is exact
// whenever the float can hold it (the GEMV kernels use the same values).
#pragma once
#include <cstdint>

#include "gemm.h"

namespace dsmoe::cpu {

constexpr int64_t kQ4Group = 32;  // columns per Q4 scale

// Bytes of one weight row of k columns (Q4: k/2).
int64_t dtype_row_bytes(DType dt, int64_t k);
const char* dtype_name(DType dt);

// out[i, j] = w[row0 + i, j] for i < rows, j < k (out [rows, k] fp32). F32: a copy; BF16: widened;
// I8 and Q4 as above (scales: float* for I8, uint16_t* fp16 for Q4; ignored for F32/BF16).
// Parallel over rows (serial when called from inside a parallel task).
void dequantize_rows(DType dt, const void* w, const void* scales, int64_t row0, int64_t rows, int64_t k,
                     float* out);

// Activations quantized for the int8 dot product (vpdpbusd: unsigned bytes × signed bytes summed in
// fours into int32 lanes; gemv_quant_vnni.cc, which also rounds them: quantize_activations_vnni).
// x rows are rounded to int8 with a symmetric scale
// (absmax / 127, round to nearest even): for I8 weights one scale per block of kXBlock columns (the
// weight error is small, so the activations keep block scales as llama.cpp's Q8_0 does), for Q4 one
// per row (the 4-bit weights' own error is ~10× larger). Each block of 64 bytes also carries its
// 16 lane corrections: the weights enter vpdpbusd as unsigned bytes (I8: w + 128, Q4: the code
// c = w + 8), so lane l starts from −bias · Σ(its 4 activation bytes) and ends with Σ w·x exactly.
// Q4 activations are stored in the order the unpacked nibbles come in: superblocks of 128 columns,
// its 64 even columns then its 64 odd ones (one correction vector, in the first block's slot); a
// last block of 64 (k an odd multiple of 64): bytes 0..31 its even columns, 32..63 its odd ones.
// k must be a multiple of kXBlock (the callers fall back to the fp32 kernels otherwise).
constexpr int64_t kXBlock = 64;
struct QuantizedActivations {
  int8_t* q;      // [m, k]
  float* scale;   // I8: [m, k/64]; Q4: [m]
  int32_t* corr;  // [m, k/64, 16]
};
// Sizes (elements) of the three arrays for m rows of k columns.
inline int64_t xq_scale_count(DType w, int64_t m, int64_t k) { return w == DType::Q4 ? m : m * (k / kXBlock); }
inline int64_t xq_corr_count(int64_t m, int64_t k) { return m * (k / kXBlock) * 16; }

}  // namespace dsmoe::cpu
