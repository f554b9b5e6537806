// Bindings of the quantized weight formats (native/kernels/cpu/quant.h) and the fp16 conversions
// (native/core/half.h), for tests and tools: dequantizeRows, halfToFloat, floatToHalf. The quantized
// decode GEMV itself is expertGemv (bind_infer.cc).
#include <string>

#include "../core/half.h"
#include "../kernels/cpu/quant.h"
#include "register.h"

namespace dsmoe::bind {
namespace {

// dequantizeRows({dtype: 'F32'|'BF16'|'I8'|'Q4', w, scales?, rows, k, row0 = 0}) -> Float32Array [rows, k]:
// rows [row0, row0 + rows) of the dequantized matrix. w: Float32Array | Uint16Array (bf16) | Int8Array [·, k]
// | Uint8Array [·, k/2]; scales: Float32Array [·] (I8) | Uint16Array of fp16 [·, k/32] (Q4).
Napi::Value dequantize_rows(const Napi::CallbackInfo& info) {
  Args args(info, "dequantizeRows");
  const std::string name = args.string("dtype");
  cpu::DType dt;
  if (name == "F32") dt = cpu::DType::F32;
  else if (name == "BF16") dt = cpu::DType::BF16;
  else if (name == "I8") dt = cpu::DType::I8;
  else if (name == "Q4") dt = cpu::DType::Q4;
  else range_error(args.where("dtype") + " must be 'F32', 'BF16', 'I8' or 'Q4', got '" + name + "'");
  const int64_t rows = args.integer("rows", 0), k = args.integer("k", 0), row0 = args.integer_or("row0", 0, 0);
  if (dt == cpu::DType::Q4 && k % cpu::kQ4Group != 0)
    range_error(args.where("k") + " must be a multiple of 32 for Q4, got " + std::to_string(k));
  const int64_t end = checked_add(row0, rows, args.where("row0 + rows"));
  const void* w = nullptr;
  const void* scales = nullptr;
  switch (dt) {
    case cpu::DType::F32: w = args.f32("w", checked_mul(end, k, args.where("w"))).data; break;
    case cpu::DType::BF16: w = args.u16("w", checked_mul(end, k, args.where("w"))).data; break;
    case cpu::DType::I8:
      w = args.i8("w", checked_mul(end, k, args.where("w"))).data;
      scales = args.f32("scales", end).data;
      break;
    case cpu::DType::Q4:
      w = args.u8("w", checked_mul(end, k / 2, args.where("w"))).data;
      scales = args.u16("scales", checked_mul(end, k / cpu::kQ4Group, args.where("scales"))).data;
      break;
  }
  const int64_t n = checked_mul(rows, k, args.where("rows·k"));
  Napi::Float32Array out = Napi::Float32Array::New(info.Env(), static_cast<size_t>(n));
  cpu::dequantize_rows(dt, w, scales, row0, rows, k, out.Data());
  return out;
}

// halfToFloat({h: Uint16Array of fp16}) -> Float32Array (exact).
Napi::Value bind_half_to_float(const Napi::CallbackInfo& info) {
  Args args(info, "halfToFloat");
  const auto h = args.u16("h", 0);
  Napi::Float32Array out = Napi::Float32Array::New(info.Env(), static_cast<size_t>(h.size));
  for (int64_t i = 0; i < h.size; ++i) out.Data()[i] = half_to_float(h.data[i]);
  return out;
}

// floatToHalf({x: Float32Array}) -> Uint16Array of fp16 (round to nearest even).
Napi::Value bind_float_to_half(const Napi::CallbackInfo& info) {
  Args args(info, "floatToHalf");
  const auto x = args.f32("x", 0);
  Napi::Uint16Array out = Napi::Uint16Array::New(info.Env(), static_cast<size_t>(x.size));
  for (int64_t i = 0; i < x.size; ++i) out.Data()[i] = float_to_half(x.data[i]);
  return out;
}

}  // namespace

void register_quant(Napi::Env env, Napi::Object exports) {
  export_function(env, exports, "dequantizeRows", dequantize_rows);
  export_function(env, exports, "halfToFloat", bind_half_to_float);
  export_function(env, exports, "floatToHalf", bind_float_to_half);
}

}  // namespace dsmoe::bind
