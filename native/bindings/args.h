// Argument checking for the N-API bindings. Every exported kernel takes one object of named
// arguments; each accessor checks type, range and size and throws a JavaScript TypeError or
// RangeError that names the function and the argument. Nothing reaches a kernel unchecked.
#pragma once
#include <napi.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace dsmoe::bind {

// Thrown while checking arguments; turned into a JS TypeError / RangeError by the registration.
struct ArgError {
  enum Kind { Type, Range } kind;
  std::string message;
};

[[noreturn]] inline void type_error(const std::string& msg) { throw ArgError{ArgError::Type, msg}; }
[[noreturn]] inline void range_error(const std::string& msg) { throw ArgError{ArgError::Range, msg}; }

// a * b, or a RangeError naming `what` if it overflows int64 or is negative.
int64_t checked_mul(int64_t a, int64_t b, const std::string& what);
int64_t checked_add(int64_t a, int64_t b, const std::string& what);

// A typed array's memory, viewed without a copy.
template <typename T>
struct View {
  T* data = nullptr;
  int64_t size = 0;
};

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* fn);

  const std::string& fn() const { return fn_; }
  Napi::Env env() const { return env_; }

  bool has(const char* name) const;
  // Whether the argument is a typed array of this type (to pick among the types an argument may have).
  bool is_typed(const char* name, napi_typedarray_type type) const;
  int64_t integer(const char* name, int64_t min, int64_t max = std::numeric_limits<int32_t>::max());
  int64_t integer_or(const char* name, int64_t fallback, int64_t min,
                     int64_t max = std::numeric_limits<int32_t>::max());
  double number(const char* name);
  double number_or(const char* name, double fallback);
  bool boolean_or(const char* name, bool fallback);
  std::string string(const char* name);
  Napi::Object object(const char* name);

  // Typed arrays of at least `min_elems` elements (the exact need for a dense tensor). The array
  // stays referenced until the Args object is gone, so async work may use it.
  View<float> f32(const char* name, int64_t min_elems);
  View<const float> f32_in(const char* name, int64_t min_elems) {
    auto v = f32(name, min_elems);
    return {v.data, v.size};
  }
  View<int32_t> i32(const char* name, int64_t min_elems);
  View<uint16_t> u16(const char* name, int64_t min_elems);  // bf16 tensors
  View<uint8_t> u8(const char* name, int64_t min_elems);
  View<int8_t> i8(const char* name, int64_t min_elems);   // int8 (I8) weights
  View<double> f64(const char* name, int64_t min_elems);  // small outputs (loss values)
  // Float32Array or Uint16Array (bf16): returns data and sets *is_bf16.
  View<const void> f32_or_bf16(const char* name, int64_t min_elems, bool* is_bf16);
  // Optional typed array: {nullptr, 0} when absent or null.
  View<float> f32_opt(const char* name, int64_t min_elems);

  // Elements a row-major matrix [rows, cols] with leading dimension ld occupies.
  static int64_t matrix_elems(int64_t rows, int64_t cols, int64_t ld, const std::string& what);

  // Keeps every typed array seen alive (used by async work).
  std::vector<Napi::Reference<Napi::Value>> take_refs() { return std::move(refs_); }

  std::string where(const char* name) const { return fn_ + ": " + name; }

 private:
  Napi::Value get(const char* name) const;
  Napi::TypedArray typed(const char* name, napi_typedarray_type type, const char* type_name,
                         int64_t min_elems);

  Napi::Env env_;
  Napi::Object obj_;
  std::string fn_;
  std::vector<Napi::Reference<Napi::Value>> refs_;
};

}  // namespace dsmoe::bind
