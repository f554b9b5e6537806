// The CUDA backend's entry points in a build without CUDA (node-gyp, DSMOE_CUDA=off, no nvcc):
// info() says why, and everything else throws "no usable CUDA device: ..." (the bindings call
// require_device() first, so the kernel stubs below are never reached).
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

void gemm(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, int64_t, const void*, bool, int64_t,
          int64_t, float, float*, int64_t, int64_t) { absent(); }
void grouped_gemm(int64_t, const int32_t*, const float*, const void*, bool, bool, int64_t, int64_t, float, float*) {
  absent();
}
void router_softmax(int64_t, int64_t, const float*, float*) { absent(); }
void route_topk(int64_t, int64_t, const float*, int64_t, int32_t*, int32_t*, float*) { absent(); }
void group_by_expert(int64_t, int64_t, const int32_t*, int32_t*, int32_t*, int32_t*) { absent(); }
void gather_rows(int64_t, int64_t, int64_t, const float*, const int32_t*, const int32_t*, float*) { absent(); }
void combine(int64_t, int64_t, int64_t, const float*, const int32_t*, const float*, const int32_t*, float*, float) {
  absent();
}
void rmsnorm_forward(int64_t, int64_t, const float*, const float*, float, float*, float*) { absent(); }
void rmsnorm_backward(int64_t, int64_t, const float*, const float*, const float*, const float*, float*, float*, bool) {
  absent();
}
void rope_forward(int64_t, int64_t, int64_t, double, const int32_t*, const float*, float*) { absent(); }
void gelu_forward(int64_t, const float*, float*, bool) { absent(); }
void gelu_backward(int64_t, const float*, const float*, float*, bool) { absent(); }
double cross_entropy(int64_t, int64_t, const float*, const int32_t*, float*, float*, float) { absent(); }
void adamw_update(int64_t, float*, const float*, float*, float*, float, float, float, float, float, int64_t) {
  absent();
}
void attention_forward(const AttentionShape&, const float*, const float*, const float*, float*, float*) { absent(); }
double bench_gemm(int64_t, int64_t, int64_t, int) { absent(); }
double bench_grouped_gemm(int64_t, const int32_t*, int64_t, int64_t, int) { absent(); }
double bench_memcpy(int64_t, int) { absent(); }

}  // namespace dsmoe::cuda
#endif  // DSMOE_WITH_CUDA
