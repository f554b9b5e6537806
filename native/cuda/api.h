// The CUDA backend as seen from plain C++ (the bindings, backend/devices.cc): no CUDA headers here,
// so this compiles in every build. The device query and the benchmark timers, defined in
// native/cuda/device.cu and native/kernels/cuda/gemm.cu when the addon is built with DSMOE_WITH_CUDA
// (CMake, nvcc found), else by the stubs of native/bindings/cuda_absent.cc (they say why).
//
// The kernels themselves are reached only through the CUDA backend (backend/cuda_backend.cu), by
// their device-pointer entry points (kernels/cuda/device_ops.h).
// Every CUDA call and launch is checked: a CUDA error is a std::runtime_error carrying the error's
// name and string, never an abort. Arguments are checked by the bindings, not here.
#pragma once
#include <cstdint>
#include <string>

namespace dsmoe::cuda {

struct Info {
  bool compiled = false;   // built with DSMOE_WITH_CUDA
  bool available = false;  // a device this build can run on (compute capability >= 8.0)
  int device_count = 0;
  std::string name;                 // device 0
  int cc_major = 0, cc_minor = 0;   // device 0
  int64_t memory_bytes = 0;         // device 0, total
  int sm_count = 0;
  int runtime_version = 0, driver_version = 0;  // e.g. 13000; driver 0 when there is none
  std::string architectures;        // what the build embeds (CMAKE_CUDA_ARCHITECTURES)
  std::string reason;               // why not available (empty when available)
};

// Never throws; the result is computed once and cached.
Info info();
// Throws std::runtime_error("no usable CUDA device: <reason>") unless info().available.
void require_device();

// ---- Benchmarks (device-resident data, timed with CUDA events) -----------------------------------
// Seconds per call: the mean over `reps` back-to-back calls after one warm-up call.
double bench_gemm(int64_t m, int64_t n, int64_t k, int reps);  // bf16 A [m,k] · bf16 B [n,k]ᵀ -> fp32 C
double bench_grouped_gemm(int64_t experts, const int32_t* offsets, int64_t n, int64_t k, int reps);  // bf16 x, w
double bench_memcpy(int64_t bytes, int reps);  // device-to-device cudaMemcpy

}  // namespace dsmoe::cuda
