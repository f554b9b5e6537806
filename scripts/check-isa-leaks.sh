#!/usr/bin/env bash
# Fails if a weak (shared, linker-chosen) symbol of the addon contains AVX/AVX-512 instructions.
# ISA-specific files compile under #pragma GCC target; if a template or inline function they use
# were emitted there as a weak symbol, the linker could pick that copy for every caller and the
# addon would crash with SIGILL on CPUs without AVX-512. The one binary must run on any x86-64.
set -euo pipefail
lib="${1:-build/Release/dsmoe.node}"
bad=0
for sym in $(nm "$lib" | awk '$2 == "W" {print $3}'); do
  if objdump -d --no-show-raw-insn "$lib" --disassemble="$sym" | grep -qE '%(y|z)mm|%k[1-7]'; then
    echo "weak symbol with AVX/AVX-512 code: $(echo "$sym" | c++filt)"
    bad=1
  fi
done
[ "$bad" = 0 ] && echo "ISA check: no weak symbol of $lib uses AVX/AVX-512 instructions"
exit "$bad"
