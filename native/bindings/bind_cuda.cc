// Bindings of the CUDA backend's device queries and timers (native/cuda/api.h): cudaInfo() and the
// cudaBenchXxx timers. The kernels themselves run through the ordinary kernel bindings with
// `device: 'cuda'` (stage.h, backend::get). Compiled in every build: without DSMOE_WITH_CUDA,
// cuda_absent.cc supplies an info() that says why and every timer throws "no usable CUDA device: ...".
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "../cuda/api.h"
#include "index_args.h"
#include "op_args.h"
#include "register.h"

#ifndef DSMOE_CUDA_OPTION
#define DSMOE_CUDA_OPTION "off"
#endif

namespace dsmoe::bind {
namespace {

// ---- info ---------------------------------------------------------------------------------------

Napi::Value cuda_info(const Napi::CallbackInfo& info) {
  const cuda::Info in = cuda::info();
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("compiled", in.compiled);
  o.Set("available", in.available);
  o.Set("deviceCount", in.device_count);
  o.Set("buildOption", DSMOE_CUDA_OPTION);
  if (in.compiled) {
    o.Set("architectures", in.architectures);
    o.Set("runtimeVersion", in.runtime_version);
    o.Set("driverVersion", in.driver_version);
  }
  if (!in.name.empty()) {
    o.Set("name", in.name);
    o.Set("computeCapability", std::to_string(in.cc_major) + "." + std::to_string(in.cc_minor));
    o.Set("memoryBytes", static_cast<double>(in.memory_bytes));
    o.Set("multiprocessors", in.sm_count);
  }
  if (!in.available) o.Set("reason", in.reason);
  return o;
}

// ---- benchmarks ---------------------------------------------------------------------------------

int reps_arg(Args& args) { return static_cast<int>(args.integer_or("reps", 10, 1, 100000)); }

// cudaBenchGemm({m, n, k, reps=10}) -> seconds per bf16 GEMM (A [m,k] · B [n,k]ᵀ, fp32 out), CUDA events
Napi::Value cuda_bench_gemm(const Napi::CallbackInfo& info) {
  Args args(info, "cudaBenchGemm");
  cuda::require_device();
  const int64_t m = args.integer("m", 1), n = args.integer("n", 1), k = args.integer("k", 1);
  return Napi::Number::New(info.Env(), cuda::bench_gemm(m, n, k, reps_arg(args)));
}

// cudaBenchGroupedGemm({experts, offsets [E+1], n, k, reps=10}) -> seconds per launch (bf16, transW)
Napi::Value cuda_bench_grouped_gemm(const Napi::CallbackInfo& info) {
  Args args(info, "cudaBenchGroupedGemm");
  cuda::require_device();
  const int64_t experts = args.integer("experts", 1);
  const int64_t n = args.integer("n", 1), k = args.integer("k", 1);
  Index off = group_offsets(args, experts);
  return Napi::Number::New(info.Env(), cuda::bench_grouped_gemm(experts, off->data(), n, k, reps_arg(args)));
}

// cudaBenchMemcpy({bytes, reps=10}) -> seconds per device-to-device cudaMemcpy of `bytes`
Napi::Value cuda_bench_memcpy(const Napi::CallbackInfo& info) {
  Args args(info, "cudaBenchMemcpy");
  cuda::require_device();
  const int64_t bytes = args.integer("bytes", 1, std::numeric_limits<int64_t>::max() / 4);
  return Napi::Number::New(info.Env(), cuda::bench_memcpy(bytes, reps_arg(args)));
}

}  // namespace

void register_cuda(Napi::Env env, Napi::Object exports) {
  export_function(env, exports, "cudaInfo", cuda_info);
  export_function(env, exports, "cudaBenchGemm", cuda_bench_gemm);
  export_function(env, exports, "cudaBenchGroupedGemm", cuda_bench_grouped_gemm);
  export_function(env, exports, "cudaBenchMemcpy", cuda_bench_memcpy);
}

}  // namespace dsmoe::bind
