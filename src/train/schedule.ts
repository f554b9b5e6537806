// Learning-rate schedule and budget parsing for the training loop.

export interface LrSchedule {
  /** Peak learning rate. */
  lr: number;
  /** Floor of the cosine decay (default 0.1·lr). */
  minLr: number;
  /** Linear warm-up steps (0: none). */
  warmup: number;
  /** Steps of the whole run; null while unknown (the lr then stays at its peak after warm-up). */
  totalSteps: number | null;
}

/**
 * Learning rate of optimizer step `step` (1-based): linear warm-up from lr/warmup to lr over the
 * first `warmup` steps, then cosine decay from lr to minLr at `totalSteps`, then minLr.
 */
export function lrAt(step: number, s: LrSchedule): number {
  if (s.warmup > 0 && step <= s.warmup) return (s.lr * step) / s.warmup;
  if (s.totalSteps === null) return s.lr;
  const span = Math.max(1, s.totalSteps - s.warmup);
  const progress = Math.min(1, Math.max(0, (step - s.warmup) / span));
  return s.minLr + (s.lr - s.minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

/** Default warm-up: 5 % of the run, at least 1 and at most 200 steps; 20 when the length is not known yet. */
export function defaultWarmup(totalSteps: number | null): number {
  if (totalSteps === null) return 20;
  return Math.min(200, Math.max(1, Math.ceil(0.05 * totalSteps)));
}

/** Parses a duration: "90s", "10m", "1.5h", "1h30m", "2d" or plain seconds ("600"). Returns seconds. */
export function parseDuration(text: string): number {
  const s = text.trim().toLowerCase();
  if (/^\d+(\.\d+)?$/.test(s)) {
    const v = Number(s);
    if (v > 0) return v;
  }
  const re = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)/gy;
  const unit: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };
  let total = 0, pos = 0, m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * unit[m[2]];
    pos = re.lastIndex;
  }
  if (pos === 0 || pos !== s.length || !(total > 0))
    throw new RangeError(`cannot read the duration "${text}" (examples: 90s, 10m, 1h30m, 2h)`);
  return total;
}

/** Formats seconds as "1h02m", "4m05s" or "12s". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}
