// Option-value parsers shared by the inference commands (generate, eval): each throws commander's
// InvalidArgumentError with a message naming the flag and the value.
import { InvalidArgumentError } from 'commander';

export const intArg = (flag: string, min = 1) => (v: string): number => {
  const n = Number(v);
  if (!/^\s*\d+\s*$/.test(v) || !Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`${flag} expects ` +
    `an integer ≥ ${min}, got "${v}"`);
  return n;
};

export const numArg = (flag: string, check: (n: number) => boolean, what: string) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || !check(n)) throw new InvalidArgumentError(`${flag} expects ${what}, ` +
    `got "${v}"`);
  return n;
};

export const collect = (v: string, prev: string[] | undefined): string[] => [...(prev ?? []), v];

/** A share in (0, 1] written as 0.35 or 35% (--target-active). */
export const shareArg = (flag: string) => (v: string): number => {
  const t = v.trim(), percent = t.endsWith('%');
  const n = Number(percent ? t.slice(0, -1) : t) / (percent ? 100 : 1);
  if (t === '' || !Number.isFinite(n) || n <= 0 || n > 1) throw new InvalidArgumentError(`${flag} expects a share in ` +
    `(0, 1] such as 0.35 or 35%, got "${v}"`);
  return n;
};

/** A comma-separated list of integers ≥ min (--concurrency 1,4,16). */
export const intListArg = (flag: string, min = 1) => (v: string): number[] => {
  const parts = v.split(',').map((s) => s.trim());
  if (parts.some((p) => !/^\d+$/.test(p) || Number(p) < min)) {
    throw new InvalidArgumentError(`${flag} expects comma-separated integers ≥ ${min}, got "${v}"`);
  }
  return parts.map(Number);
};
