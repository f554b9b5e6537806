// Counting the documents of a text file from its bytes: the lines that are not blank, or the runs of
// them (paragraphs). The plain reference is scanNonBlankLines in src/data/dataset.ts, which also finds
// a document's place; this is the count alone, at memchr speed, for `dsmoe tokenize`'s counting pass
// over files of many gigabytes (a line at a time in JavaScript costs a native indexOf call per line).
#pragma once
#include <cstdint>

namespace dsmoe::cpu {

// Carried from one chunk of a file to the next.
struct LineScanState {
  double count = 0;     // non-blank lines (or runs of them) ended so far
  bool blank = true;    // the line in progress has only blank bytes so far
  bool in_run = false;  // the last line ended was not blank
};

// Blank bytes, as isBlank in dataset.ts: space, tab, CR, form feed, vertical tab (all ASCII, so no
// byte of a multi-byte UTF-8 character is one).
inline bool is_blank_byte(uint8_t b) { return b == 32 || b == 9 || b == 13 || b == 12 || b == 11; }

// Scans bytes[0, n) of a file; a line still open at the end stays open in the state (the caller ends
// the file's last line). runs: count runs of non-blank lines (paragraphs), not the lines.
void scan_lines(const uint8_t* bytes, int64_t n, bool runs, LineScanState& state);

}  // namespace dsmoe::cpu
