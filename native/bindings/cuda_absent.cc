// cuda/api.h in a build without CUDA (node-gyp, DSMOE_CUDA=off, no nvcc): info() says why, and
// require_device() and the timers throw "no usable CUDA device: ..." (the bindings call
// require_device() first, so the timer stubs below are never reached).
#ifndef DSMOE_WITH_CUDA
#include <stdexcept>
#include <string>

#include "../cuda/api.h"

#ifndef DSMOE_BUILD_SYSTEM
#define DSMOE_BUILD_SYSTEM "unknown"
#endif
#ifndef DSMOE_CUDA_OPTION
#define DSMOE_CUDA_OPTION "off"
#endif

namespace dsmoe::cuda {

Info info() {
  Info in;
  const std::string sys = DSMOE_BUILD_SYSTEM, opt = DSMOE_CUDA_OPTION;
  if (sys != "cmake")
    in.reason = "built without CUDA (the " + sys + " build is CPU-only; build with cmake and nvcc for CUDA)";
  else if (opt == "off")
    in.reason = "built without CUDA (DSMOE_CUDA=off, or a sanitizer build)";
  else
    in.reason = "built without CUDA (no nvcc was found at build time; install the CUDA toolkit and rebuild)";
  return in;
}

void require_device() { throw std::runtime_error("no usable CUDA device: " + info().reason); }

namespace {
[[noreturn]] void absent() {
  require_device();
  throw std::logic_error("unreachable");
}
}  // namespace

double bench_gemm(int64_t, int64_t, int64_t, int) { absent(); }
double bench_grouped_gemm(int64_t, const int32_t*, int64_t, int64_t, int) { absent(); }
double bench_memcpy(int64_t, int) { absent(); }

}  // namespace dsmoe::cuda
#endif  // DSMOE_WITH_CUDA
