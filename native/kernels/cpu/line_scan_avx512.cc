// AVX-512 version of line_scan.h, with no branch per line: each 64-byte block becomes two bit masks,
// newlines and "other" bytes (those that make a line non-blank). A line is non-blank exactly when the
// set bit of (newlines | other) just below its newline is an other byte, so compressing the newline
// mask to those bits (pext) and comparing each bit with the one below gives every line's blankness at
// once; a second pext keeps one bit per line, and runs of lines are counted the same way. The
// generic version calls memchr once per line, and text lines are short.
#include "line_scan.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,bmi,bmi2,popcnt")

namespace dsmoe::cpu::line_scan_detail {

void scan_lines_avx512(const uint8_t* bytes, int64_t n, bool runs, LineScanState& s) {
  const __m512i newline = _mm512_set1_epi8('\n'), space = _mm512_set1_epi8(' ');
  const __m512i nine = _mm512_set1_epi8(9), four = _mm512_set1_epi8(4);
  uint64_t count = 0;
  uint64_t blank = s.blank ? 1 : 0, in_run = s.in_run ? 1 : 0;
  for (int64_t i = 0; i < n; i += 64) {
    const int64_t len = n - i < 64 ? n - i : 64;
    const __mmask64 valid = len == 64 ? ~0ull : (1ull << len) - 1;
    const __m512i v = _mm512_maskz_loadu_epi8(valid, bytes + i);
    const uint64_t nl = _mm512_mask_cmpeq_epi8_mask(valid, v, newline);
    // Bytes 9..13 (tab, newline, vertical tab, form feed, CR) and space are blank or newlines.
    const uint64_t blank_or_nl = _mm512_cmple_epu8_mask(_mm512_sub_epi8(v, nine), four) |
                                 _mm512_cmpeq_epi8_mask(v, space);
    const uint64_t marks = nl | (valid & ~blank_or_nl);
    if (marks == 0) continue;  // only blank bytes: nothing changes
    // seq: one bit per mark, in order, 1 for a newline. A newline ends a non-blank line when the mark
    // before it is an other byte (bit 0), the one before the block counting as `blank`.
    const uint64_t seq = _pext_u64(nl, marks);
    const uint64_t nonblank_end = seq & ~((seq << 1) | blank);
    const int marks_n = __builtin_popcountll(marks), lines = __builtin_popcountll(nl);
    if (lines > 0) {
      // One bit per line ended in this block: 1 when it is not blank.
      const uint64_t line_bits = _pext_u64(nonblank_end, seq);
      count += static_cast<uint64_t>(__builtin_popcountll(runs ? line_bits & ~((line_bits << 1) | in_run) : line_bits));
      in_run = (line_bits >> (lines - 1)) & 1;
    }
    blank = (seq >> (marks_n - 1)) & 1;  // the last mark: a newline (the line now open is blank so far) or not
  }
  s.count += static_cast<double>(count);
  s.blank = blank != 0;
  s.in_run = in_run != 0;
}

}  // namespace dsmoe::cpu::line_scan_detail

#pragma GCC pop_options
#endif
