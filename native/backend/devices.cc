// Backend lookup by device: the CPU backend always; a CUDA backend per GPU index, created on first
// use, in a build with the CUDA backend (cuda_backend.cu). A device that cannot be used is an error
// that says why and what to do, never a fallback the user did not ask for.
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>

#include "../cuda/api.h"
#include "backend.h"

namespace dsmoe::backend {

#ifdef DSMOE_WITH_CUDA
std::unique_ptr<Backend> make_cuda_backend(int index);  // cuda_backend.cu
#endif

Backend& get(const Device& device) {
  if (device.kind == DeviceKind::Cpu) return cpu();
  const cuda::Info in = cuda::info();
  if (!in.available)
    throw std::runtime_error("device " + device.str() + " is not usable: " + in.reason +
                             " (use --device cpu, or see `dsmoe info --devices`)");
  if (device.index < 0 || device.index >= in.device_count)
    throw std::runtime_error("device " + device.str() + " does not exist: this machine has " +
                             std::to_string(in.device_count) + " CUDA device(s), cuda:0.." +
                             std::to_string(in.device_count - 1));
#ifdef DSMOE_WITH_CUDA
  static std::mutex mu;
  static std::map<int, std::unique_ptr<Backend>> backends;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = backends[device.index];
  if (!slot) slot = make_cuda_backend(device.index);
  return *slot;
#else
  throw std::runtime_error("device " + device.str() + ": this dsmoe was built without the CUDA backend");
#endif
}

}  // namespace dsmoe::backend
