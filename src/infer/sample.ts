// Choosing the next token from a row of logits: greedy (temperature 0), or sampling from
// softmax(logits / T) restricted to the top-k tokens and/or the top-p nucleus, with a seeded PRNG.
//
// Ties are broken towards the lower token id everywhere, so top-k 1 and a tiny top-p pick exactly
// the greedy token.
import { Rng } from '../data/rng';

export interface SamplingOptions {
  /** 0 = greedy */
  temperature: number;
  /** keep the K most likely tokens (0 or undefined: all) */
  topK?: number;
  /** keep the smallest set of most likely tokens whose probability reaches P (1 or undefined: all) */
  topP?: number;
}

/** Index of the largest finite value (lowest index among equals); NaN rows are an error. */
export function argmax(logits: Float32Array): number {
  let best = -1, bv = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    if (v > bv) { bv = v; best = i; }
  }
  if (best < 0) {
    // all -Inf or NaN
    for (let i = 0; i < logits.length; i++) if (logits[i] === -Infinity) return i;
    throw new Error('the model returned NaN logits');
  }
  return best;
}

export function checkSampling(o: SamplingOptions): void {
  if (!(Number.isFinite(o.temperature) && o.temperature >= 0)) {
    throw new RangeError(`--temperature must be a number ≥ 0, got ${o.temperature}`);
  }
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) {
    throw new RangeError(`--top-k must be an integer ≥ 0, got ${o.topK}`);
  }
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) {
    throw new RangeError(`--top-p must be in (0, 1], got ${o.topP}`);
  }
}

/** The next token for one row of logits (length V). */
export function sampleToken(logits: Float32Array, o: SamplingOptions, rng: Rng): number {
  const V = logits.length;
  const topK = o.topK && o.topK > 0 ? Math.min(o.topK, V) : V;
  const topP = o.topP ?? 1;
  if (o.temperature === 0 || topK === 1) return argmax(logits);
  // Candidates in order of decreasing logit (lower id first among equals).
  let idx: number[];
  if (topK < V || topP < 1) {
    idx = Array.from({ length: V }, (_, i) => i);
    idx.sort((a, b) => logits[b] - logits[a] || a - b);
    if (topK < V) idx.length = topK;
  } else {
    idx = Array.from({ length: V }, (_, i) => i);
  }
  let max = -Infinity;
  for (const i of idx) if (logits[i] > max) max = logits[i];
  if (!Number.isFinite(max)) return argmax(logits);
  const invT = 1 / o.temperature;
  const p = new Float64Array(idx.length);
  let sum = 0;
  for (let j = 0; j < idx.length; j++) { p[j] = Math.exp((logits[idx[j]] - max) * invT); sum += p[j]; }
  let n = idx.length;
  if (topP < 1) {
    // idx is sorted: keep the shortest prefix whose mass reaches topP (at least one token).
    let acc = 0;
    for (n = 0; n < idx.length;) {
      acc += p[n] / sum;
      n++;
      if (acc >= topP) break;
    }
    sum = 0;
    for (let j = 0; j < n; j++) sum += p[j];
  }
  let u = rng.nextFloat() * sum;
  for (let j = 0; j < n; j++) {
    u -= p[j];
    if (u < 0) return idx[j];
  }
  return idx[n - 1];
}
