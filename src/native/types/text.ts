// Text scanning for `dsmoe tokenize` (native/bindings/bind_text.cc).

export interface TextKernels {
  /**
   * Counts the non-blank lines (or, with runs, the runs of them: paragraphs) in a chunk of a file's
   * bytes, updating `state` = [count, blank, inRun] in place: count of lines or runs ended so far;
   * blank: 1 while the line in progress has only blank bytes (space, tab, CR, form feed, vertical
   * tab); inRun: 1 when the last line ended was not blank. Start a file at [0, 1, 0]; after its last
   * chunk, end its last line as a newline would. scanNonBlankLines (src/data/dataset.ts) is the reference.
   */
  scanLines(args: { bytes: Uint8Array; runs?: boolean; state: Float64Array }): void;
}
