// Evaluating a checkpoint's weights under one routing strategy on held-out token windows, through
// the inference engine (native/infer): cross-entropy over the prefill logits at every position of
// every window, the engine's own routing counters (active parameters, per-layer expert usage),
// prefill tokens/s, and a short greedy decode for decode tokens/s.
//
// This is the one place that turns "weights + routing + windows" into quality and speed numbers;
// `dsmoe bench` (compare.ts) and `dsmoe bench reproduce` use it, and `dsmoe eval` can share it.
import type { TokenArray } from '../data/sampler';
import type { InferenceSession, InferStats, ModelConfig, NativeAddon, Routing } from '../native/addon';

/** Sequential, non-overlapping windows of seqLen inputs + 1 target (as the trainer's evaluation). */
export interface TokenWindows {
  seqLen: number;
  count: number;
  /** [count, seqLen + 1]: window w is tokens[w·seqLen … w·seqLen + seqLen] of the source. */
  tokens: Int32Array;
}

/**
 * Windows start at 0, T, 2T, … (each needs T + 1 tokens), at most maxWindows of them. When
 * `multipleOf` is given the count is rounded down to a multiple of it (full batches only), unless
 * there are fewer windows than that.
 */
export function tokenWindows(tokens: TokenArray, seqLen: number, maxWindows = Infinity, multipleOf = 1): TokenWindows {
  if (!Number.isInteger(seqLen) || seqLen < 1) throw new RangeError(`window length must be a positive integer, got ${seqLen}`);
  const available = tokens.length < seqLen + 1 ? 0 : Math.floor((tokens.length - 1) / seqLen);
  if (available === 0)
    throw new Error(`the evaluation text has ${tokens.length} tokens, fewer than one window of ${seqLen} + 1`);
  let count = Math.min(available, maxWindows);
  if (count >= multipleOf) count -= count % multipleOf;
  const out = new Int32Array(count * (seqLen + 1));
  for (let w = 0; w < count; w++) {
    const src = tokens.subarray(w * seqLen, w * seqLen + seqLen + 1);
    for (let i = 0; i <= seqLen; i++) out[w * (seqLen + 1) + i] = src[i];
  }
  return { seqLen, count, tokens: out };
}

/** Inputs [rows, seqLen] and targets [rows, seqLen] of windows [first, first + rows). */
export function windowBatch(win: TokenWindows, first: number, rows: number): { inputs: Int32Array; targets: Int32Array } {
  const T = win.seqLen;
  const inputs = new Int32Array(rows * T), targets = new Int32Array(rows * T);
  for (let r = 0; r < rows; r++) {
    const w = win.tokens.subarray((first + r) * (T + 1), (first + r + 1) * (T + 1));
    inputs.set(w.subarray(0, T), r * T);
    targets.set(w.subarray(1), r * T);
  }
  return { inputs, targets };
}

/** Σ over rows of −log softmax(logits_row)[target_row], in double precision. */
export function sumCrossEntropy(logits: Float32Array, targets: Int32Array, vocab: number): number {
  let sum = 0;
  for (let r = 0; r < targets.length; r++) {
    const o = r * vocab;
    let max = -Infinity;
    for (let v = 0; v < vocab; v++) if (logits[o + v] > max) max = logits[o + v];
    let z = 0;
    for (let v = 0; v < vocab; v++) z += Math.exp(logits[o + v] - max);
    sum += max + Math.log(z) - logits[o + targets[r]];
  }
  return sum;
}

export interface WindowEval {
  routing: Routing;
  windows: number;
  /** predicted positions: windows × seqLen */
  tokens: number;
  /** mean cross-entropy (nats per token) */
  loss: number;
  ppl: number;
  /** The engine's counters over all evaluated tokens (InferStats, summed over the batches). */
  attExpertsPerToken: number;
  mlpExpertsPerToken: number;
  activeParamsPerToken: number;
  activeExpertShare: number;
  expertParams: number;
  sharedParams: number;
  /** [layers][E]: tokens that activated each expert */
  attUsage: number[][];
  mlpUsage: number[][];
  prefillSeconds: number;
  prefillTokensPerS: number;
}

const addUsage = (acc: number[][] | undefined, u: number[][]) => (acc ? acc.map((row, l) => row.map((x, e) => x + u[l][e])) : u.map((r) => r.slice()));

/**
 * Prefills every window (batches of session.batch rows; the window count must be a multiple of
 * it) under `routing` and returns perplexity and the engine's statistics. The session is reset
 * before each batch.
 */
export async function evaluateWindows(session: InferenceSession, config: ModelConfig, win: TokenWindows, routing: Routing, batch: number): Promise<WindowEval> {
  if (win.count % batch !== 0) throw new RangeError(`${win.count} windows are not a whole number of batches of ${batch}`);
  const V = config.vocab_size, T = win.seqLen;
  session.setRouting(routing);
  const logits = new Float32Array(batch * V), allLogits = new Float32Array(batch * T * V);
  let nll = 0, seconds = 0, tokens = 0;
  let attUsage: number[][] | undefined, mlpUsage: number[][] | undefined;
  let apt = 0, share = 0, attE = 0, mlpE = 0;
  let last: InferStats | undefined;
  for (let w = 0; w < win.count; w += batch) {
    const { inputs, targets } = windowBatch(win, w, batch);
    session.reset();
    const t0 = performance.now();
    await session.prefillAsync({ tokens: inputs, batch, len: T, logits, allLogits });
    seconds += (performance.now() - t0) / 1000;
    nll += sumCrossEntropy(allLogits, targets, V);
    const s = session.stats();
    // The per-token means are linear in the usage counts, so token-weighted sums are exact.
    tokens += s.tokens;
    apt += s.activeParamsPerToken * s.tokens;
    share += s.activeExpertShare * s.tokens;
    attE += s.attExpertsPerToken * s.tokens;
    mlpE += s.mlpExpertsPerToken * s.tokens;
    attUsage = addUsage(attUsage, s.attUsage);
    mlpUsage = addUsage(mlpUsage, s.mlpUsage);
    last = s;
  }
  session.reset();
  const loss = nll / (win.count * T);
  return {
    routing, windows: win.count, tokens: win.count * T, loss, ppl: Math.exp(loss),
    attExpertsPerToken: attE / tokens, mlpExpertsPerToken: mlpE / tokens,
    activeParamsPerToken: apt / tokens, activeExpertShare: share / tokens,
    expertParams: last!.expertParams, sharedParams: last!.sharedParams,
    attUsage: attUsage!, mlpUsage: mlpUsage!,
    prefillSeconds: seconds, prefillTokensPerS: tokens / seconds,
  };
}

export interface DecodeEval {
  prompts: number;
  promptLen: number;
  /** decoded tokens over all prompts */
  tokens: number;
  seconds: number;
  /** decoded tokens / seconds */
  tokensPerS: number;
  /** seconds of each decode call (for robust statistics on a noisy machine) */
  callSeconds: number[];
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const a = xs.slice().sort((x, y) => x - y), m = a.length >> 1;
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
}

/**
 * Greedy decode at batch 1: for each prompt (the first promptLen tokens of the first windows),
 * prefill it, then decode `steps` tokens, each the argmax of the previous logits. Only the decode
 * calls are timed. `session` must have batch 1 and room for promptLen + steps.
 */
export async function greedyDecode(session: InferenceSession, config: ModelConfig, win: TokenWindows, routing: Routing,
  opts: { prompts: number; promptLen: number; steps: number }): Promise<DecodeEval> {
  const V = config.vocab_size;
  const prompts = Math.min(opts.prompts, win.count);
  session.setRouting(routing);
  const logits = new Float32Array(V);
  const next = new Int32Array(1);
  let seconds = 0, tokens = 0;
  const callSeconds: number[] = [];
  for (let p = 0; p < prompts; p++) {
    session.reset();
    const prompt = win.tokens.slice(p * (win.seqLen + 1), p * (win.seqLen + 1) + opts.promptLen);
    await session.prefillAsync({ tokens: prompt, batch: 1, len: opts.promptLen, logits });
    for (let i = 0; i < opts.steps; i++) {
      let best = 0;
      for (let v = 1; v < V; v++) if (logits[v] > logits[best]) best = v;
      next[0] = best;
      const t0 = performance.now();
      session.decode({ tokens: next, logits });
      const dt = (performance.now() - t0) / 1000;
      seconds += dt;
      callSeconds.push(dt);
      tokens++;
    }
  }
  session.reset();
  return { prompts, promptLen: opts.promptLen, tokens, seconds, tokensPerS: seconds > 0 ? tokens / seconds : 0, callSeconds };
}

/** A prefill session (batch rows, windows of seqLen) and a batch-1 decode session over the same fp32 weights. */
export function createEvalSessions(addon: NativeAddon, config: ModelConfig, params: Float32Array, batch: number, seqLen: number, decodeLen: number):
  { prefill: InferenceSession; decode: InferenceSession } {
  const dense = { attention: 'dense', mlp: 'dense' };
  return {
    prefill: addon.createSession({ config, weights: params, batch, maxLen: seqLen, routing: dense }),
    decode: addon.createSession({ config, weights: params, batch: 1, maxLen: decodeLen, routing: dense }),
  };
}
