// Bindings of the routing kernels.
#include "register.h"

namespace dsmoe::bind {

void register_routing(Napi::Env env, Napi::Object exports) {
  (void)env;
  (void)exports;
}

}  // namespace dsmoe::bind
