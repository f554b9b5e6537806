// Runtime settings and facts: threads, instruction set, build info.
#include "../core/cpu_features.h"
#include "../core/threadpool.h"
#include "register.h"

namespace dsmoe::bind {
namespace {

Napi::Value set_threads(const Napi::CallbackInfo& info) {
  Args args(info, "setThreads");
  set_num_threads(static_cast<int>(args.integer("threads", 1, kMaxThreads)));
  return Napi::Number::New(info.Env(), num_threads());
}

Napi::Value set_isa_fn(const Napi::CallbackInfo& info) {
  Args args(info, "setIsa");
  std::string name = args.string("isa");
  Isa isa;
  if (!parse_isa(name, &isa)) range_error("setIsa: isa must be 'avx512', 'avx2' or 'generic', got '" + name + "'");
  if (!set_isa(isa))
    range_error("setIsa: this CPU does not support '" + name + "' (best: " + isa_name(best_isa()) + ")");
  return Napi::String::New(info.Env(), isa_name(active_isa()));
}

Napi::Value runtime_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("threads", num_threads());
  o.Set("isa", isa_name(active_isa()));
  o.Set("bestIsa", isa_name(best_isa()));
  o.Set("avx512bf16", cpu_has_avx512_bf16());
  o.Set("avx512vnni", cpu_has_avx512_vnni());
#ifdef DSMOE_BUILD_SYSTEM
  o.Set("buildSystem", DSMOE_BUILD_SYSTEM);
#else
  o.Set("buildSystem", "unknown");
#endif
#if defined(__SANITIZE_ADDRESS__)
  o.Set("sanitized", true);
#else
  o.Set("sanitized", false);
#endif
  return o;
}

}  // namespace

void register_core(Napi::Env env, Napi::Object exports) {
  export_function(env, exports, "setThreads", set_threads);
  export_function(env, exports, "setIsa", set_isa_fn);
  export_function(env, exports, "runtimeInfo", runtime_info);
}

}  // namespace dsmoe::bind
