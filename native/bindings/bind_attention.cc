// Bindings of the attention kernels.
#include "register.h"

namespace dsmoe::bind {

void register_attention(Napi::Env env, Napi::Object exports) {
  (void)env;
  (void)exports;
}

}  // namespace dsmoe::bind
