// Sequences joining and leaving a running session (what continuous batching needs): a slot reset
// and prefilled alone while the others wait, decode of only the active slots. Each sequence must get
// exactly what it gets alone in its own session.
import type { InferenceSession, ModelConfig } from '../../src/native/addon';
import { addon, expectNativeError } from '../helpers';
import { tinyConfig } from './tiny-config';

const config: ModelConfig = tinyConfig('dsmoe', {
  vocab_size: 29, max_seq_len: 24, routing: { attention: 'topk:2', mlp: 'threshold:0.5' },
});
const V = config.vocab_size;
const params = new Float32Array(addon.modelLayout(config).totalParams);
addon.initParams({ config, params, seed: 21 });
for (let i = 0; i < params.length; i++) params[i] *= 8;  // peaked routers: routing differs per token
const weights = addon.openWeightsFromBuffer({ config, weights: params });

/** Greedy continuation of one prompt alone: the logits after the prompt and after each of `steps` tokens. */
function alone(prompt: number[], steps: number): Float32Array[] {
  const s = weights.createSession({ batch: 1 });
  const logits = new Float32Array(V);
  s.prefill({ tokens: Int32Array.from(prompt), batch: 1, len: prompt.length, logits });
  const out = [logits.slice()];
  for (let i = 0; i < steps; i++) {
    s.decode({ tokens: Int32Array.of(argmax(logits)), logits });
    out.push(logits.slice());
  }
  return out;
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** Prefills `prompt` into slot `b` of a 2-slot session, the other slot taking no tokens. */
function prefillSlot(s: InferenceSession, b: number, prompt: number[], logits: Float32Array): void {
  const len = prompt.length, tokens = new Int32Array(2 * len), lengths = new Int32Array(2);
  tokens.set(prompt, b * len);
  lengths[b] = len;
  s.prefill({ tokens, batch: 2, len, lengths, logits });
}

const row = (x: Float32Array, b: number) => Array.from(x.subarray(b * V, (b + 1) * V));
const same = (a: number[], b: Float32Array) => expect(a).toEqual(Array.from(b));

// With several threads a decode step attends a lone sequence parallel over its heads and a batch one
// task per sequence (cpu_backend.cc): each sequence's logits must not depend on which.
test.each([1, 3])('a sequence joins a running batch, another finishes and its slot is reused: each as alone ' +
  '(threads: %i)', (threads) => {
  const before = addon.runtimeInfo().threads;
  addon.setThreads({ threads });
  try {
    joinLeaveReuse();
  } finally {
    addon.setThreads({ threads: before });
  }
});

function joinLeaveReuse(): void {
  const A = [3, 1, 4, 1, 5], B = [9, 2, 6], C = [5, 3, 5, 8, 9, 7, 9];
  const refA = alone(A, 6), refB = alone(B, 3), refC = alone(C, 2);
  const s = weights.createSession({ batch: 2 });
  const logits = new Float32Array(2 * V).fill(NaN);
  prefillSlot(s, 0, A, logits);
  same(row(logits, 0), refA[0]);
  expect(row(logits, 1).every(Number.isNaN)).toBe(true);  // slot 1 took no tokens: its row untouched
  const tokens = new Int32Array(2);
  for (let i = 1; i <= 2; i++) {  // A alone in the batch
    tokens[0] = argmax(refA[i - 1]);
    s.decode({ tokens, logits, active: Uint8Array.of(1, 0) });
    same(row(logits, 0), refA[i]);
  }
  s.resetSequence({ index: 1 });
  prefillSlot(s, 1, B, logits);  // B joins while A waits one step
  same(row(logits, 1), refB[0]);
  same(row(logits, 0), refA[2]);
  for (let i = 1; i <= 3; i++) {  // both decode together
    tokens[0] = argmax(refA[i + 1]);
    tokens[1] = argmax(refB[i - 1]);
    s.decode({ tokens, logits });
    same(row(logits, 0), refA[i + 2]);
    same(row(logits, 1), refB[i]);
  }
  s.resetSequence({ index: 1 });  // B is done; C takes its slot
  prefillSlot(s, 1, C, logits);
  same(row(logits, 1), refC[0]);
  tokens[0] = argmax(refA[5]);
  tokens[1] = argmax(refC[0]);
  s.decode({ tokens, logits });
  same(row(logits, 0), refA[6]);
  same(row(logits, 1), refC[1]);
  expect(s.lengths()).toEqual([A.length + 6, C.length + 1]);
}

test('sequences with different routings in one batch: each gets its own routing, logits and counters', () => {
  // threshold-topk's K is taken over the neighbouring sequences that share it (DESIGN.md: per batch);
  // sequence 2 has no such neighbour, so it too gets what it gets alone.
  const routings = [
    { attention: 'dense', mlp: 'dense' }, { attention: 'topk:1', mlp: 'threshold:0.9' },
    { attention: 'threshold-topk:0.8', mlp: 'threshold-topk:1.2' }, { attention: 'topk:1', mlp: 'threshold:0.9' },
  ];
  const prompts = [[3, 1, 4, 1, 5], [9, 2, 6], [5, 3, 5, 8, 9, 7, 9], [2, 7]];
  const steps = 4, B = prompts.length;
  const refs = prompts.map((p, b) => {
    const s = weights.createSession({ batch: 1, routing: routings[b] });
    const logits = new Float32Array(V);
    s.prefill({ tokens: Int32Array.from(p), batch: 1, len: p.length, logits });
    const out = [logits.slice()];
    for (let i = 0; i < steps; i++) {
      s.decode({ tokens: Int32Array.of(argmax(logits)), logits });
      out.push(logits.slice());
    }
    return { out, stats: s.stats() };
  });
  const s = weights.createSession({ batch: B });
  routings.forEach((r, index) => s.setRouting({ ...r, index }));
  const len = Math.max(...prompts.map((p) => p.length)), tokens = new Int32Array(B * len);
  prompts.forEach((p, b) => tokens.set(p, b * len));
  const logits = new Float32Array(B * V);
  s.prefill({ tokens, batch: B, len, lengths: Int32Array.from(prompts, (p) => p.length), logits });
  for (let i = 0; i <= steps; i++) {
    for (let b = 0; b < B; b++) same(row(logits, b), refs[b].out[i]);
    if (i < steps) s.decode({ tokens: Int32Array.from(refs, (r) => argmax(r.out[i])), logits });
  }
  let tokensSum = 0;
  refs.forEach((ref, index) => {
    const st = s.stats({ index });
    expect(st.routing).toEqual(routings[index]);
    expect(st.tokens).toBe(ref.stats.tokens);
    expect(st.attUsage).toEqual(ref.stats.attUsage);
    expect(st.mlpUsage).toEqual(ref.stats.mlpUsage);
    expect(st.activeParamsPerToken).toBeCloseTo(ref.stats.activeParamsPerToken, 6);
    expect(st.attRouter).toBeNull();
    tokensSum += st.tokens;
  });
  expect(s.stats().tokens).toBe(tokensSum);
  // Sparser routings use fewer parameters; a reset slot starts its counters again.
  expect(s.stats({ index: 1 }).activeParamsPerToken).toBeLessThan(s.stats({ index: 0 }).activeParamsPerToken);
  s.resetSequence({ index: 2 });
  expect(s.stats({ index: 2 }).tokens).toBe(0);
  expect(s.stats({ index: 2 }).mlpUsage.flat().every((n) => n === 0)).toBe(true);
  expectNativeError(() => s.setRouting({ attention: 'topk:9', mlp: 'dense', index: 0 }), 'RangeError', /attention/);
  expectNativeError(() => s.stats({ index: B }), 'RangeError', /index/);
});

test('bad slot use is a clear error', () => {
  const s = weights.createSession({ batch: 2 });
  const logits = new Float32Array(2 * V);
  const none = Int32Array.of(0, 0);
  expectNativeError(() => s.prefill({ tokens: new Int32Array(4), batch: 2, len: 2, lengths: none, logits }),
    'RangeError', /every length is 0/);
  prefillSlot(s, 0, [1, 2], logits);
  expectNativeError(() => s.decode({ tokens: new Int32Array(2), logits }), 'RangeError',
    /sequence 1 has no prompt: prefill it first/);
  expectNativeError(() => s.resetSequence({ index: 2 }), 'RangeError', /index/);
  s.decode({ tokens: new Int32Array(2), logits, active: Uint8Array.of(1, 0) });
  expect(s.lengths()).toEqual([3, 0]);
});

describe('scored prefill and opened weights', () => {
  // Long enough that a sequence spans more than one 256-row chunk of the LM head.
  const long: ModelConfig = tinyConfig('dsmoe', { vocab_size: 31, max_seq_len: 300 });
  const p = new Float32Array(addon.modelLayout(long).totalParams);
  addon.initParams({ config: long, params: p, seed: 5 });
  const opened = addon.openWeightsFromBuffer({ config: long, weights: p });
  const W = long.vocab_size;

  test('losses are −log softmax(logits)[target] of every scored position, on ragged lengths', () => {
    const B = 3, len = 300, lengths = Int32Array.of(300, 1, 257);
    const tokens = Int32Array.from({ length: B * len }, (_, i) => (i * 7 + 3) % W);
    const targets = Int32Array.from({ length: B * len }, (_, i) => (i % 11 === 5 ? -1 : (i * 5 + 2) % W));
    const all = new Float32Array(B * len * W), logits = new Float32Array(B * W);
    opened.createSession({ batch: B }).prefill({ tokens, batch: B, len, lengths, logits, allLogits: all });
    const losses = new Float32Array(B * len).fill(NaN);
    opened.createSession({ batch: B }).prefill({ tokens, batch: B, len, lengths, logits, targets, losses });
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < len; i++) {
        const at = b * len + i;
        if (i >= lengths[b] || targets[at] < 0) { expect(losses[at]).toBe(0); continue; }
        const z = all.subarray(at * W, (at + 1) * W);
        let max = -Infinity, sum = 0;
        for (const v of z) max = Math.max(max, v);
        for (const v of z) sum += Math.exp(v - max);
        const ref = max + Math.log(sum) - z[targets[at]];
        expect(Math.abs(losses[at] - ref)).toBeLessThan(1e-5 * Math.max(1, Math.abs(ref)));
      }
    }
  });

  test('bad input: targets without losses, a target outside the vocabulary, short buffers, bad files', () => {
    const s = opened.createSession({ batch: 1 });
    const tokens = Int32Array.of(1, 2, 3), logits = new Float32Array(W);
    expectNativeError(() => s.prefill({ tokens, batch: 1, len: 3, logits, targets: Int32Array.of(1, 2, 3) }),
      'TypeError', /targets and losses come together/);
    expectNativeError(() => s.prefill({
      tokens, batch: 1, len: 3, logits, targets: Int32Array.of(1, 31, 3), losses: new Float32Array(3),
    }), 'RangeError', /targets\[1\] = 31 is outside the vocabulary \[0, 31\)/);
    expectNativeError(() => s.prefill({
      tokens, batch: 1, len: 3, logits, targets: Int32Array.of(1, 2, 3), losses: new Float32Array(2),
    }), 'RangeError', /losses/);
    expectNativeError(() => addon.openWeightsFromBuffer({ config: long, weights: new Float32Array(10) }),
      'RangeError', /weights/);
    expectNativeError(() => addon.openWeights({ config: long, path: '/nonexistent/model.safetensors', tensors: [],
      dataOffset: 8 }), 'Error', /cannot open '\/nonexistent\/model\.safetensors': No such file/);
    const detached = opened.createSession;
    expectNativeError(() => detached.call({}, { batch: 1 }), 'TypeError', /openWeights returned/);
  });
});
