// The addon's single entry point: each group of kernels registers its exports.
#include <napi.h>

#include "register.h"

namespace {
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace dsmoe::bind;
  register_core(env, exports);
  register_gemm(env, exports);
  register_routing(env, exports);
  register_nn(env, exports);
  register_attention(env, exports);
  register_bench(env, exports);
  register_model(env, exports);
  register_infer(env, exports);
  register_cuda(env, exports);
  register_backend_ops(env, exports);
  register_quant(env, exports);
  register_dist(env, exports);
  register_mmap(env, exports);
  register_text(env, exports);
  return exports;
}
}  // namespace

NODE_API_MODULE(dsmoe, Init)
