#include "line_scan.h"

#include <cstring>

#include "../../core/cpu_features.h"

namespace dsmoe::cpu {

namespace line_scan_detail {
void scan_lines_avx512(const uint8_t* bytes, int64_t n, bool runs, LineScanState& s);  // line_scan_avx512.cc
}

// A line has ended: count it (or the run it starts) if it was not blank.
static inline void end_line(LineScanState& s, bool runs) {
  if (!s.blank && (!runs || !s.in_run)) s.count += 1;
  s.in_run = !s.blank;
  s.blank = true;
}

// Portable: a line at a time, memchr to the end of each non-blank one.
static void scan_lines_generic(const uint8_t* bytes, int64_t n, bool runs, LineScanState& s) {
  int64_t i = 0;
  while (i < n) {
    const uint8_t c = bytes[i];
    if (c == '\n') {
      end_line(s, runs);
      ++i;
    } else if (!s.blank || !is_blank_byte(c)) {
      s.blank = false;
      const void* nl = std::memchr(bytes + i, '\n', static_cast<size_t>(n - i));
      i = nl ? static_cast<const uint8_t*>(nl) - bytes : n;
    } else {
      ++i;
    }
  }
}

void scan_lines(const uint8_t* bytes, int64_t n, bool runs, LineScanState& s) {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool has_bmi2 = __builtin_cpu_supports("bmi2");  // pext (every AVX-512 CPU so far has it)
  if (active_isa() == Isa::Avx512 && has_bmi2) return line_scan_detail::scan_lines_avx512(bytes, n, runs, s);
#endif
  scan_lines_generic(bytes, n, runs, s);
}

}  // namespace dsmoe::cpu
