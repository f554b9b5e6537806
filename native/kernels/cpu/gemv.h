// Matrix-vector products for decode: each weight row is read once from memory and dotted with the
// few activation rows that need it (the B tokens of a decode step routed to that expert). Decode is
// memory-bound, so the work is "read exactly the selected experts' weights, once".
//
// Weights may be F32 or BF16. BF16 uses vdpbf16ps (AVX512-BF16; activations are rounded to bf16,
// products summed in fp32) when the CPU has it and it is allowed, else widens each weight to fp32
// and uses FMA (exact products). Every output element is computed by one task in a fixed order, so
// results do not depend on the thread count.
// Quantized weights (I8, Q4; formats in quant.h) are read as stored, 1 or 1/2 byte per weight: each
// weight is dequantized exactly in fp32 and multiplied by the fp32 activations, products summed in
// fp32 (I8 applies the row scale to the row's sum Σ q·x, Q4 dequantizes each weight with its group's
// scale). Where the CPU has AVX-512 VNNI (and int8_dot_active()), and k is a multiple of 64, the
// activations are instead rounded to int8 once per product (quant.h, quantize_activations_vnni; I8: one
// scale per 64 columns, Q4: one per row) and multiplied with vpdpbusd (exact integer products),
// as llama.cpp does; the error this adds is bounded by Σ_j |w_j| · (scale of x_j) / 2.
#pragma once
#include <cstdint>

#include "gemm.h"

namespace dsmoe::cpu {

// One product of a batch: Y[rows of e] = X[rows of e] · W[e]ᵀ for every expert e with rows.
struct GemvJob {
  int64_t n_experts = 1;
  const int32_t* offsets = nullptr;  // [E+1]
  const float* x = nullptr;          // [P, k]
  const void* w = nullptr;           // [E, n, k]
  DType w_dtype = DType::F32;
  int64_t n = 0, k = 0;
  float* y = nullptr;                // [P, n]
  // I8: float [E·n] (one per weight row), Q4: uint16_t fp16 [E·n, k/32]; indexed by the absolute
  // weight row e·n + r. Unused (may be null) for F32 and BF16. Last, so {…, y} initialisers still work.
  const void* w_scales = nullptr;
};

// Independent products in one parallel_for (e.g. Q, K and V of a decode step): the pool is woken
// once, which matters when each product is a few microseconds of memory traffic.
void gemv_batch(const GemvJob* jobs, int64_t count);

// Y[rows of e] = X[rows of e] · W[e]ᵀ for every expert e with rows; experts without rows are not
// read. Rows of X/Y are grouped by expert: group e = rows [offsets[e], offsets[e+1]).
// One parallel_for over (expert, block of output rows) tasks.
void expert_gemv(int64_t n_experts,
                 const int32_t* offsets,  // [E+1]
                 const float* x,          // [P, k]
                 const void* w,           // [E, n, k] fp32, bf16, int8 or 4-bit (quant.h)
                 DType w_dtype,
                 int64_t n, int64_t k,
                 float* y,                // [P, n]
                 const void* w_scales = nullptr);  // I8 / Q4 scales (GemvJob::w_scales)

// Allows (default) or forbids the AVX512-BF16 dot product; returns whether it is now in use
// (false when the CPU lacks it or the active ISA is below AVX-512). Tests force the fallback.
bool set_bf16_dot(bool allowed);
bool bf16_dot_active();
// The same for the int8 (VNNI) dot product of I8 / Q4 weights.
bool set_int8_dot(bool allowed);
bool int8_dot_active();

// Row kernels, one per ISA (gemv.cc: generic; gemv_avx512.cc; gemv_avx512bf16.cc; gemv_quant_avx512.cc;
// gemv_avx2.cc; gemv_quant_vnni.cc):
//   y[i·ldy + r] = Σ_j w[r·k + j] · x[i·k + j]   for r < rows, i < m
// w points at the first row of the block, y at its first output column.
using GemvF32 = void (*)(const float* w /*[rows, k]*/, int64_t rows, int64_t k, const float* x /*[m, k]*/,
                         int64_t m, float* y /*[m, ldy]*/, int64_t ldy);
// xb: x rounded to bf16 (used by the native dot only; may be null otherwise).
using GemvBf16 = void (*)(const uint16_t* w /*[rows, k]*/, int64_t rows, int64_t k, const float* x /*[m, k]*/,
                          const uint16_t* xb /*[m, k]*/, int64_t m, float* y /*[m, ldy]*/, int64_t ldy);

// Quantized rows: scale points at the block's first row's scales (I8: one float per row; Q4: k/32
// fp16 per row, k a multiple of 32). Q4 rows are k/2 bytes.
using GemvI8 = void (*)(const int8_t* w /*[rows, k]*/, const float* scale /*[rows]*/, int64_t rows, int64_t k,
                        const float* x /*[m, k]*/, int64_t m, float* y /*[m, ldy]*/, int64_t ldy);
using GemvQ4 = void (*)(const uint8_t* w /*[rows, k/2]*/, const uint16_t* scale /*[rows, k/32]*/, int64_t rows,
                        int64_t k, const float* x /*[m, k]*/, int64_t m, float* y /*[m, ldy]*/, int64_t ldy);

void gemv_f32_generic(const float* w, int64_t rows, int64_t k, const float* x, int64_t m, float* y, int64_t ldy);
void gemv_bf16_generic(const uint16_t* w, int64_t rows, int64_t k, const float* x, const uint16_t* xb, int64_t m,
                       float* y, int64_t ldy);
void gemv_f32_avx512(const float* w, int64_t rows, int64_t k, const float* x, int64_t m, float* y, int64_t ldy);
void gemv_bf16_widen_avx512(const uint16_t* w, int64_t rows, int64_t k, const float* x, const uint16_t* xb,
                            int64_t m, float* y, int64_t ldy);
void gemv_bf16_dot_avx512(const uint16_t* w, int64_t rows, int64_t k, const float* x, const uint16_t* xb,
                          int64_t m, float* y, int64_t ldy);
void gemv_i8_generic(const int8_t* w, const float* scale, int64_t rows, int64_t k, const float* x, int64_t m,
                     float* y, int64_t ldy);
void gemv_q4_generic(const uint8_t* w, const uint16_t* scale, int64_t rows, int64_t k, const float* x, int64_t m,
                     float* y, int64_t ldy);
void gemv_i8_avx512(const int8_t* w, const float* scale, int64_t rows, int64_t k, const float* x, int64_t m,
                    float* y, int64_t ldy);
void gemv_q4_avx512(const uint8_t* w, const uint16_t* scale, int64_t rows, int64_t k, const float* x, int64_t m,
                    float* y, int64_t ldy);
void gemv_f32_avx2(const float* w, int64_t rows, int64_t k, const float* x, int64_t m, float* y, int64_t ldy);
void gemv_bf16_avx2(const uint16_t* w, int64_t rows, int64_t k, const float* x, const uint16_t* xb, int64_t m,
                    float* y, int64_t ldy);
void gemv_i8_avx2(const int8_t* w, const float* scale, int64_t rows, int64_t k, const float* x, int64_t m,
                  float* y, int64_t ldy);
void gemv_q4_avx2(const uint8_t* w, const uint16_t* scale, int64_t rows, int64_t k, const float* x, int64_t m,
                  float* y, int64_t ldy);
// VNNI rows (gemv_quant_vnni.cc) against activations from quantize_activations_vnni (the layouts of
// quant.h, for weights of dtype wt): xq [m, k], xs and xc
// for row 0 (the layouts of quant.h); k a multiple of 64.
struct QuantizedActivations;
void quantize_activations_vnni(DType wt, const float* x, int64_t m, int64_t k, QuantizedActivations out);
void gemv_i8_vnni(const int8_t* w, const float* scale, int64_t rows, int64_t k, const int8_t* xq, const float* xs,
                  const int32_t* xc, int64_t m, float* y, int64_t ldy);
void gemv_q4_vnni(const uint8_t* w, const uint16_t* scale, int64_t rows, int64_t k, const int8_t* xq,
                  const float* xs, const int32_t* xc, int64_t m, float* y, int64_t ldy);

}  // namespace dsmoe::cpu
