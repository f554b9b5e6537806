// Device query, error reporting, event timing and the copy-bandwidth benchmark.
#include <cstring>
#include <mutex>

#include "device.h"

#ifndef DSMOE_CUDA_ARCHITECTURES
#define DSMOE_CUDA_ARCHITECTURES "unknown"
#endif

namespace dsmoe::cuda {

std::string describe(cudaError_t err) {
  return "error " + std::to_string(static_cast<int>(err)) + ": " + cudaGetErrorName(err) + ": " +
         cudaGetErrorString(err);
}

void throw_cuda(cudaError_t err, const char* what, const char* file, int line) {
  const char* base = std::strrchr(file, '/');
  throw std::runtime_error("CUDA " + describe(err) + " (in " + what + " at " + (base ? base + 1 : file) + ":" +
                           std::to_string(line) + ")");
}

void check_launch(const char* kernel, const char* file, int line) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_cuda(err, (std::string("launch of ") + kernel).c_str(), file, line);
}

namespace {

Info query() {
  Info in;
  in.compiled = true;
  in.architectures = DSMOE_CUDA_ARCHITECTURES;
  cudaRuntimeGetVersion(&in.runtime_version);
  cudaDriverGetVersion(&in.driver_version);
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear it: it is the answer, not a failure of later calls
    if (err == cudaErrorInsufficientDriver)
      in.reason = "no CUDA driver, or one older than the runtime (" + describe(err) + ")";
    else if (err == cudaErrorNoDevice)
      in.reason = "no CUDA device (" + describe(err) + ")";
    else
      in.reason = "cudaGetDeviceCount failed (" + describe(err) + ")";
    return in;
  }
  in.device_count = count;
  if (count == 0) {
    in.reason = "no CUDA device (cudaGetDeviceCount returned 0)";
    return in;
  }
  cudaDeviceProp prop;
  const cudaError_t perr = cudaGetDeviceProperties(&prop, 0);
  if (perr != cudaSuccess) {
    cudaGetLastError();
    in.reason = "cudaGetDeviceProperties(0) failed (" + describe(perr) + ")";
    return in;
  }
  in.name = prop.name;
  in.cc_major = prop.major;
  in.cc_minor = prop.minor;
  in.memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
  in.sm_count = prop.multiProcessorCount;
  if (prop.major < 8) {
    in.reason = "device 0 (" + in.name + ") has compute capability " + std::to_string(prop.major) + "." +
                std::to_string(prop.minor) + "; the kernels need 8.0 or newer (bf16 tensor cores)";
    return in;
  }
  in.available = true;
  return in;
}

}  // namespace

Info info() {
  static std::once_flag once;
  static Info cached;
  std::call_once(once, [] { cached = query(); });
  return cached;
}

void require_device() {
  const Info& in = info();
  if (!in.available) throw std::runtime_error("no usable CUDA device: " + in.reason);
}

EventTimer::EventTimer() {
  DSMOE_CUDA_CHECK(cudaEventCreate(&a_));
  const cudaError_t err = cudaEventCreate(&b_);
  if (err != cudaSuccess) {
    cudaEventDestroy(a_);
    throw_cuda(err, "cudaEventCreate", __FILE__, __LINE__);
  }
}

EventTimer::~EventTimer() {
  cudaEventDestroy(a_);
  cudaEventDestroy(b_);
}

void EventTimer::start() { DSMOE_CUDA_CHECK(cudaEventRecord(a_)); }

double EventTimer::stop() {
  DSMOE_CUDA_CHECK(cudaEventRecord(b_));
  DSMOE_CUDA_CHECK(cudaEventSynchronize(b_));
  float ms = 0;
  DSMOE_CUDA_CHECK(cudaEventElapsedTime(&ms, a_, b_));
  return static_cast<double>(ms) * 1e-3;
}

double bench_memcpy(int64_t bytes, int reps) {
  require_device();
  DeviceBuffer<unsigned char> src(bytes), dst(bytes);
  src.zero();
  DSMOE_CUDA_CHECK(cudaMemcpy(dst.get(), src.get(), static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice));
  EventTimer t;
  t.start();
  for (int r = 0; r < reps; ++r)
    DSMOE_CUDA_CHECK(cudaMemcpy(dst.get(), src.get(), static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice));
  return t.stop() / reps;
}

}  // namespace dsmoe::cuda
