// The exit codes of the dsmoe command line, in one place (a command's handler resolves to one of
// them; src/cli/index.ts turns a thrown error into EXIT_ERROR).
//   0    done
//   1    an error: bad input, a failed save, a diverged run, a commander usage error
//   2    bad usage of the machine: a --device that cannot be used here (no GPU, no CUDA build)
//   130  interrupted (Ctrl-C, 128 + SIGINT): the work so far was saved

export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
export const EXIT_USAGE = 2;
export const EXIT_INTERRUPTED = 130;

export type ExitCode = typeof EXIT_OK | typeof EXIT_ERROR | typeof EXIT_USAGE | typeof EXIT_INTERRUPTED;

/** The code of a run that ended for `reason` (training, generation, evaluation). */
export function exitCodeFor(reason: 'budget' | 'done' | 'interrupted'): ExitCode {
  return reason === 'interrupted' ? EXIT_INTERRUPTED : EXIT_OK;
}
