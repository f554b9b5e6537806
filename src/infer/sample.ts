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

/**
 * The `count` largest logits' indices in decreasing order, the lower id first among equals. The
 * threshold comes from a native (typed-array) sort of a copy; only the survivors are sorted by the
 * comparator, so a top-k / top-p draw costs one O(V log V) native sort, not a comparator sort of V.
 */
function topIndices(logits: Float32Array, count: number): number[] {
  const V = logits.length;
  const threshold = Float32Array.from(logits).sort()[V - count];  // the count-th largest
  const idx: number[] = [];
  for (let i = 0; i < V; i++) if (logits[i] > threshold) idx.push(i);
  for (let i = 0; i < V && idx.length < count; i++) if (logits[i] === threshold) idx.push(i);
  return idx.sort((a, b) => logits[b] - logits[a] || a - b);
}

/** The next token for one row of logits (length V). */
export function sampleToken(logits: Float32Array, o: SamplingOptions, rng: Rng): number {
  const V = logits.length;
  const topK = o.topK && o.topK > 0 ? Math.min(o.topK, V) : V;
  const topP = o.topP ?? 1;
  if (o.temperature === 0 || topK === 1) return argmax(logits);
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (logits[i] > max) max = logits[i];
  if (!Number.isFinite(max)) return argmax(logits);
  const invT = 1 / o.temperature;
  // Candidates: all tokens in id order, or the top-k / top-p ones by decreasing logit.
  let idx: number[] | undefined;
  if (topP < 1) {
    // The nucleus: the shortest most-likely prefix (within the top-k) whose tempered mass reaches
    // topP (at least one token). Weights are monotonic in the logits, so their sorted copy gives
    // its length; equal weights add the same whichever comes first.
    const w = new Float64Array(V);
    for (let i = 0; i < V; i++) w[i] = Math.exp((logits[i] - max) * invT);
    w.sort();
    let total = 0;
    for (let j = V - 1; j >= V - topK; j--) total += w[j];
    let acc = 0, n = 0;
    for (let j = V - 1; j >= V - topK;) {
      acc += w[j--] / total;
      n++;
      if (acc >= topP) break;
    }
    idx = topIndices(logits, n);
  } else if (topK < V) {
    idx = topIndices(logits, topK);
  }
  const n = idx ? idx.length : V;
  const p = new Float64Array(n);
  let sum = 0;
  for (let j = 0; j < n; j++) { p[j] = Math.exp((logits[idx ? idx[j] : j] - max) * invT); sum += p[j]; }
  let u = rng.nextFloat() * sum;
  for (let j = 0; j < n; j++) {
    u -= p[j];
    if (u < 0) return idx ? idx[j] : j;
  }
  return idx ? idx[n - 1] : n - 1;
}
