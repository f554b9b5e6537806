// One way to export a kernel: a binder checks the arguments (Args) and returns the work to do.
// export_kernel() registers `name` (runs now, returns undefined) and `nameAsync` (runs on a libuv
// worker thread, returns a Promise) from the same binder, so every kernel can run off the main
// thread and checks are identical in both. Argument errors become TypeError / RangeError; any
// other C++ exception becomes an Error with its message. Nothing escapes as a crash.
#pragma once
#include <napi.h>

#include <functional>
#include <string>

#include "args.h"

namespace dsmoe::bind {

using Work = std::function<void()>;
using Binder = Work (*)(Args& args);

void export_kernel(Napi::Env env, Napi::Object exports, const char* name, Binder binder);

// For functions that return a value: wraps checks the same way (synchronous only).
using ValueFn = Napi::Value (*)(const Napi::CallbackInfo& info);
void export_function(Napi::Env env, Napi::Object exports, const char* name, ValueFn fn);

// Converts a caught exception into a pending JS exception.
void throw_js(Napi::Env env, const std::string& fn);

// Each group of kernels registers itself here (one bind_<group>.cc each).
void register_core(Napi::Env env, Napi::Object exports);
void register_gemm(Napi::Env env, Napi::Object exports);
void register_routing(Napi::Env env, Napi::Object exports);
void register_nn(Napi::Env env, Napi::Object exports);
void register_attention(Napi::Env env, Napi::Object exports);
void register_bench(Napi::Env env, Napi::Object exports);
void register_model(Napi::Env env, Napi::Object exports);
void register_infer(Napi::Env env, Napi::Object exports);
void register_cuda(Napi::Env env, Napi::Object exports);
void register_backend_ops(Napi::Env env, Napi::Object exports);
void register_quant(Napi::Env env, Napi::Object exports);
void register_dist(Napi::Env env, Napi::Object exports);
void register_mmap(Napi::Env env, Napi::Object exports);
void register_text(Napi::Env env, Napi::Object exports);

}  // namespace dsmoe::bind
