// CUDA-side helpers (only for .cu files): checked calls, checked launches, RAII device buffers,
// CUDA-event timing. A CUDA error becomes a std::runtime_error naming the call, the error and
// where it happened; the bindings turn it into a JavaScript Error. Nothing aborts.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "api.h"

namespace dsmoe::cuda {

[[noreturn]] void throw_cuda(cudaError_t err, const char* what, const char* file, int line);
// "error 35: cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version"
std::string describe(cudaError_t err);

#define DSMOE_CUDA_CHECK(expr)                                                  \
  do {                                                                          \
    const cudaError_t dsmoe_err_ = (expr);                                      \
    if (dsmoe_err_ != cudaSuccess) ::dsmoe::cuda::throw_cuda(dsmoe_err_, #expr, __FILE__, __LINE__); \
  } while (0)

// After every <<<...>>>: launch-configuration errors now, and errors of earlier async work.
#define DSMOE_CUDA_CHECK_LAUNCH(kernel_name) \
  ::dsmoe::cuda::check_launch(kernel_name, __FILE__, __LINE__)
void check_launch(const char* kernel, const char* file, int line);

// Grid size for n elements with `threads` per block, capped (kernels use grid-stride loops).
inline unsigned grid_for(int64_t n, int threads, int64_t cap = 65535LL * 32) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  return static_cast<unsigned>(b < cap ? b : cap);
}

// A device allocation of n elements of T (none when n == 0), freed on destruction.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(int64_t n) : n_(n) {
    if (n > 0) DSMOE_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), static_cast<size_t>(n) * sizeof(T)));
  }
  // Allocates and uploads n elements from host.
  DeviceBuffer(const T* host, int64_t n) : DeviceBuffer(n) { upload(host, n); }
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);  // never throws; an error here would be sticky and reported by the next call
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      if (p_) cudaFree(p_);
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }

  T* get() const { return p_; }
  int64_t size() const { return n_; }
  void upload(const T* host, int64_t n) {
    if (n > 0) DSMOE_CUDA_CHECK(cudaMemcpy(p_, host, static_cast<size_t>(n) * sizeof(T), cudaMemcpyHostToDevice));
  }
  void download(T* host, int64_t n) const {
    if (n > 0) DSMOE_CUDA_CHECK(cudaMemcpy(host, p_, static_cast<size_t>(n) * sizeof(T), cudaMemcpyDeviceToHost));
  }
  void zero() {
    if (n_ > 0) DSMOE_CUDA_CHECK(cudaMemset(p_, 0, static_cast<size_t>(n_) * sizeof(T)));
  }

 private:
  T* p_ = nullptr;
  int64_t n_ = 0;
};

// Stream-ordered scratch on the legacy default stream (cudaMallocAsync / cudaFreeAsync from the
// device's memory pool): a kernel's temporary arrays without the device-wide synchronisation that
// cudaFree implies. The memory is usable by work enqueued on stream 0 after construction; it is
// returned to the pool after the work enqueued before destruction, so an op can free it on return.
template <typename T>
class ScratchBuffer {
 public:
  explicit ScratchBuffer(int64_t n) {
    if (n > 0)
      DSMOE_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&p_), static_cast<size_t>(n) * sizeof(T), 0));
  }
  ~ScratchBuffer() {
    if (p_) cudaFreeAsync(p_, 0);  // never throws; an error here is sticky and reported by the next call
  }
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  T* get() const { return p_; }

 private:
  T* p_ = nullptr;
};

// A pair of CUDA events, destroyed on scope exit.
class EventTimer {
 public:
  EventTimer();
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start();
  // Seconds since start(), after synchronising on the stop event.
  double stop();

 private:
  cudaEvent_t a_ = nullptr, b_ = nullptr;
};

}  // namespace dsmoe::cuda
