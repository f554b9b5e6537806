#include "quant.h"

#include <algorithm>
#include <cstring>

#include "../../core/bf16.h"
#include "../../core/half.h"
#include "../../core/threadpool.h"

namespace dsmoe::cpu {
namespace {

void rows_f32(const float* w, int64_t k, int64_t rows, float* out) {
  std::memcpy(out, w, static_cast<size_t>(rows * k) * sizeof(float));
}

void rows_bf16(const uint16_t* w, int64_t k, int64_t rows, float* out) {
  for (int64_t i = 0; i < rows * k; ++i) out[i] = bf16_to_f32(w[i]);
}

void rows_i8(const int8_t* w, const float* scale, int64_t k, int64_t rows, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float s = scale[r];
    for (int64_t j = 0; j < k; ++j) out[r * k + j] = static_cast<float>(w[r * k + j]) * s;
  }
}

void rows_q4(const uint8_t* w, const uint16_t* scale, int64_t k, int64_t rows, float* out) {
  const int64_t groups = k / kQ4Group;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < groups; ++g) {
      const float s = half_to_float(scale[r * groups + g]);
      const uint8_t* b = w + r * (k / 2) + g * (kQ4Group / 2);
      float* o = out + r * k + g * kQ4Group;
      for (int64_t c = 0; c < kQ4Group / 2; ++c) {
        o[2 * c] = static_cast<float>(static_cast<int>(b[c] & 0x0f) - 8) * s;
        o[2 * c + 1] = static_cast<float>(static_cast<int>(b[c] >> 4) - 8) * s;
      }
    }
}

}  // namespace

int64_t dtype_row_bytes(DType dt, int64_t k) {
  switch (dt) {
    case DType::F32: return 4 * k;
    case DType::BF16: return 2 * k;
    case DType::I8: return k;
    case DType::Q4: return k / 2;
  }
  return 4 * k;
}

const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::I8: return "I8";
    case DType::Q4: return "Q4";
  }
  return "?";
}

void dequantize_rows(DType dt, const void* w, const void* scales, int64_t row0, int64_t rows, int64_t k,
                     float* out) {
  if (rows <= 0 || k <= 0) return;
  // Tasks of ~64 KiB of output: cheap next to the hand-off, fine enough to balance a few threads.
  const int64_t per_task = std::max<int64_t>(1, 16384 / k);
  const int64_t tasks = (rows + per_task - 1) / per_task;
  parallel_for(tasks, [&](int64_t t, int) {
    const int64_t r0 = t * per_task, n = std::min(rows, r0 + per_task) - r0, r = row0 + r0;
    float* o = out + r0 * k;
    switch (dt) {
      case DType::F32: rows_f32(static_cast<const float*>(w) + r * k, k, n, o); break;
      case DType::BF16: rows_bf16(static_cast<const uint16_t*>(w) + r * k, k, n, o); break;
      case DType::I8:
        rows_i8(static_cast<const int8_t*>(w) + r * k, static_cast<const float*>(scales) + r, k, n, o);
        break;
      case DType::Q4:
        rows_q4(static_cast<const uint8_t*>(w) + r * (k / 2), static_cast<const uint16_t*>(scales) + r * (k / kQ4Group),
                k, n, o);
        break;
    }
  });
}


}  // namespace dsmoe::cpu
