// Bindings of the nn kernels.
#include "register.h"

namespace dsmoe::bind {

void register_nn(Napi::Env env, Napi::Object exports) {
  (void)env;
  (void)exports;
}

}  // namespace dsmoe::bind
