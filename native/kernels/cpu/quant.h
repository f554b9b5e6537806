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

}  // namespace dsmoe::cpu
