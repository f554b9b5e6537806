// Timing helpers for benchmarks: best-of-N wall time, after a warm-up.

/** Seconds for one call of fn, the best of repeated runs lasting at least minSeconds in total. */
export function timeBest(fn: () => void, minSeconds = 0.3, minReps = 2, maxReps = 50): number {
  fn(); // warm-up: page faults, packing buffers, thread wake-up
  let best = Infinity, total = 0, reps = 0;
  while ((total < minSeconds || reps < minReps) && reps < maxReps) {
    const t0 = process.hrtime.bigint();
    fn();
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    best = Math.min(best, dt);
    total += dt;
    reps++;
  }
  return best;
}
