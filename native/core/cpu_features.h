// Which vector instruction set the CPU kernels use. Detected at run time so one binary runs on any
// x86-64 (no -march=native); DSMOE_ISA=avx512|avx2|generic or set_isa() picks a lower one (tests
// use this to check every path on one machine).
#pragma once
#include <string>

namespace dsmoe {

enum class Isa { Generic = 0, Avx2 = 1, Avx512 = 2 };

Isa best_isa();                 // the best this CPU and OS support
Isa active_isa();               // what the kernels use now
bool set_isa(Isa isa);          // false if the CPU lacks it
bool cpu_has_avx512_bf16();     // native bf16 dot products (vdpbf16ps)
bool cpu_has_avx512_vnni();     // int8 dot products (vpdpbusd)
const char* isa_name(Isa isa);
bool parse_isa(const std::string& name, Isa* out);

}  // namespace dsmoe
