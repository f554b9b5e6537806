#include "args.h"

#include <cmath>

namespace dsmoe::bind {

int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r))
    range_error(what + " is too large (size overflow)");
  return r;
}

int64_t checked_add(int64_t a, int64_t b, const std::string& what) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r))
    range_error(what + " is too large (size overflow)");
  return r;
}

Args::Args(const Napi::CallbackInfo& info, const char* fn) : env_(info.Env()), fn_(fn) {
  if (info.Length() < 1 || !info[0].IsObject() || info[0].IsArray() || info[0].IsTypedArray())
    type_error(fn_ + ": expected one object of named arguments");
  obj_ = info[0].As<Napi::Object>();
}

Napi::Value Args::get(const char* name) const { return obj_.Get(name); }

bool Args::has(const char* name) const {
  Napi::Value v = get(name);
  return !v.IsUndefined() && !v.IsNull();
}

bool Args::is_typed(const char* name, napi_typedarray_type type) const {
  Napi::Value v = get(name);
  return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == type;
}

int64_t Args::integer(const char* name, int64_t min, int64_t max) {
  Napi::Value v = get(name);
  if (v.IsUndefined()) type_error(where(name) + " is missing (expected an integer)");
  if (!v.IsNumber()) type_error(where(name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d)) type_error(where(name) + " must be an integer, got "
      + std::to_string(d));
  if (d < static_cast<double>(min) || d > static_cast<double>(max))
    range_error(where(name) + " must be in [" + std::to_string(min) + ", " + std::to_string(max) +
                "], got " + std::to_string(static_cast<long long>(d)));
  return static_cast<int64_t>(d);
}

int64_t Args::integer_or(const char* name, int64_t fallback, int64_t min, int64_t max) {
  return has(name) ? integer(name, min, max) : fallback;
}

double Args::number(const char* name) {
  Napi::Value v = get(name);
  if (v.IsUndefined()) type_error(where(name) + " is missing (expected a number)");
  if (!v.IsNumber()) type_error(where(name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) range_error(where(name) + " must be finite");
  return d;
}

double Args::number_or(const char* name, double fallback) { return has(name) ? number(name) : fallback; }

bool Args::boolean_or(const char* name, bool fallback) {
  Napi::Value v = get(name);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsBoolean()) type_error(where(name) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string Args::string(const char* name) {
  Napi::Value v = get(name);
  if (!v.IsString()) type_error(where(name) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

Napi::Object Args::object(const char* name) {
  Napi::Value v = get(name);
  if (!v.IsObject() || v.IsArray() || v.IsTypedArray()) type_error(where(name) + " must be an object");
  return v.As<Napi::Object>();
}

Napi::TypedArray Args::typed(const char* name, napi_typedarray_type type, const char* type_name,
                             int64_t min_elems) {
  Napi::Value v = get(name);
  const std::string a = type_name[0] == 'I' ? "an " : "a ";  // an Int8Array / Int32Array, a Float32Array
  if (v.IsUndefined()) type_error(where(name) + " is missing (expected " + a + type_name + ")");
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    type_error(where(name) + " must be " + a + type_name);
  Napi::TypedArray arr = v.As<Napi::TypedArray>();
  int64_t len = static_cast<int64_t>(arr.ElementLength());
  if (len < min_elems)
    range_error(where(name) + " has " + std::to_string(len) + " elements but needs at least " +
                std::to_string(min_elems));
  refs_.push_back(Napi::Persistent(v));
  return arr;
}

template <typename T>
static View<T> view_of(Napi::TypedArray arr) {
  Napi::ArrayBuffer buf = arr.ArrayBuffer();
  T* p = reinterpret_cast<T*>(static_cast<uint8_t*>(buf.Data()) + arr.ByteOffset());
  return {p, static_cast<int64_t>(arr.ElementLength())};
}

View<float> Args::f32(const char* name, int64_t min_elems) {
  return view_of<float>(typed(name, napi_float32_array, "Float32Array", min_elems));
}
View<int32_t> Args::i32(const char* name, int64_t min_elems) {
  return view_of<int32_t>(typed(name, napi_int32_array, "Int32Array", min_elems));
}
View<uint16_t> Args::u16(const char* name, int64_t min_elems) {
  return view_of<uint16_t>(typed(name, napi_uint16_array, "Uint16Array", min_elems));
}
View<uint8_t> Args::u8(const char* name, int64_t min_elems) {
  return view_of<uint8_t>(typed(name, napi_uint8_array, "Uint8Array", min_elems));
}
View<int8_t> Args::i8(const char* name, int64_t min_elems) {
  return view_of<int8_t>(typed(name, napi_int8_array, "Int8Array", min_elems));
}
View<double> Args::f64(const char* name, int64_t min_elems) {
  return view_of<double>(typed(name, napi_float64_array, "Float64Array", min_elems));
}
View<float> Args::f32_opt(const char* name, int64_t min_elems) {
  if (!has(name)) return {};
  return f32(name, min_elems);
}

View<const void> Args::f32_or_bf16(const char* name, int64_t min_elems, bool* is_bf16) {
  Napi::Value v = get(name);
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array) {
    *is_bf16 = true;
    auto u = u16(name, min_elems);
    return {u.data, u.size};
  }
  if (!v.IsUndefined() && !(v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array))
    type_error(where(name) + " must be a Float32Array or a Uint16Array of bf16 values");
  *is_bf16 = false;
  auto f = f32(name, min_elems);
  return {f.data, f.size};
}

int64_t Args::matrix_elems(int64_t rows, int64_t cols, int64_t ld, const std::string& what) {
  if (rows == 0 || cols == 0) return 0;
  if (ld < cols) range_error(what + ": leading dimension " + std::to_string(ld) + " is smaller than its " +
                             std::to_string(cols) + " columns");
  return checked_add(checked_mul(rows - 1, ld, what), cols, what);
}

}  // namespace dsmoe::bind
