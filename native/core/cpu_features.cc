#include "cpu_features.h"

#include <atomic>
#include <cstdlib>

namespace dsmoe {
namespace {

Isa detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // libgcc's checks include the OS's XCR0 state, so a CPU feature the OS does not enable is absent.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
    return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
  return Isa::Generic;
}

std::atomic<int>& active() {
  static std::atomic<int> isa{[] {
    Isa best = detect();
    Isa chosen = best;
    if (const char* env = std::getenv("DSMOE_ISA")) {
      Isa want;
      if (parse_isa(env, &want) && want <= best) chosen = want;
    }
    return static_cast<int>(chosen);
  }()};
  return isa;
}

}  // namespace

Isa best_isa() {
  static const Isa best = detect();
  return best;
}
Isa active_isa() { return static_cast<Isa>(active().load(std::memory_order_relaxed)); }
bool set_isa(Isa isa) {
  if (isa > best_isa()) return false;
  active().store(static_cast<int>(isa));
  return true;
}
bool cpu_has_avx512_bf16() {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && (__GNUC__ >= 11 || defined(__clang__))
  static const bool has = best_isa() == Isa::Avx512 && __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}
bool cpu_has_avx512_vnni() {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
  static const bool has = best_isa() == Isa::Avx512 && __builtin_cpu_supports("avx512vnni");
  return has;
#else
  return false;
#endif
}
const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "generic";
  }
}
bool parse_isa(const std::string& name, Isa* out) {
  if (name == "avx512") *out = Isa::Avx512;
  else if (name == "avx2") *out = Isa::Avx2;
  else if (name == "generic") *out = Isa::Generic;
  else return false;
  return true;
}

}  // namespace dsmoe
