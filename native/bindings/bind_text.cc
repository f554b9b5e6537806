// Text scanning for `dsmoe tokenize` (native/kernels/cpu/line_scan.h): scanLines.
#include "../kernels/cpu/line_scan.h"
#include "register.h"

namespace dsmoe::bind {
namespace {

// scanLines({bytes: Uint8Array, runs: boolean, state: Float64Array [count, blank, inRun]}): scans a
// chunk of a file, updating the state in place (count: non-blank lines, or runs of them, ended so far;
// blank, inRun: 1 or 0). Start a file with [0, 1, 0]; after its last chunk, end its last line as a
// newline would.
Work scan_lines(Args& args) {
  const auto bytes = args.u8("bytes", 0);
  const bool runs = args.boolean_or("runs", false);
  const auto state = args.f64("state", 3);
  return [bytes, runs, state] {
    cpu::LineScanState s{state.data[0], state.data[1] != 0, state.data[2] != 0};
    cpu::scan_lines(bytes.data, bytes.size, runs, s);
    state.data[0] = s.count;
    state.data[1] = s.blank ? 1 : 0;
    state.data[2] = s.in_run ? 1 : 0;
  };
}

}  // namespace

void register_text(Napi::Env env, Napi::Object exports) { export_kernel(env, exports, "scanLines", scan_lines); }

}  // namespace dsmoe::bind
