// The inference engine: dense routing against the training forward, sparse routing against a
// double-precision reference with zeroed scores, decode against prefill, routing statistics and
// active parameters, bf16 weights (native dot and fallback), the mmap path, two-layer routers
// (router_hidden) and bad input.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { InferenceSession, ModelConfig, ModelLayout } from '../../src/native/addon';
import { benchModelConfig } from '../../src/bench/decode';
import { readSafetensorsHeader } from '../../src/checkpoint/safetensors';
import { referenceForward } from '../reference/infer';
import { addon, expectNativeError, fromBf16, relError, toBf16 } from '../helpers';

function tinyConfig(over: Partial<ModelConfig> = {}): ModelConfig {
  return benchModelConfig({
    vocab_size: 19, d_model: 16, n_layers: 2, max_seq_len: 12,
    attention: { n_experts: 4, n_heads: 2, n_kv_heads: 1, head_dim: 4 },
    mlp: { n_experts: 4, expert_dim: 8, activation: 'gelu' },
    ...over,
  });
}
// A dense model (one expert per layer kind, no routers) with GQA, tied embeddings and gelu_tanh.
const denseConfig = tinyConfig({
  tie_embeddings: true, attention: { n_experts: 1, n_heads: 4, n_kv_heads: 2, head_dim: 4 },
  mlp: { n_experts: 1, expert_dim: 24, activation: 'gelu_tanh' },
});

interface Built { config: ModelConfig; layout: ModelLayout; params: Float32Array }
/** Initialised weights scaled ×scale so the routers are far from uniform. */
function build(config: ModelConfig, seed = 5, scale = 6): Built {
  const layout = addon.modelLayout(config);
  const params = new Float32Array(layout.totalParams);
  addon.initParams({ config, params, seed });
  for (const t of layout.tensors) if (t.decay) for (let i = t.offset; i < t.offset + t.size; i++) params[i] *= scale;
  return { config, layout, params };
}

/** Right-padded [B, len] tokens and lengths from sequences. */
function pad(seqs: number[][]): { tokens: Int32Array; lengths: Int32Array; len: number } {
  const len = Math.max(...seqs.map((s) => s.length));
  const tokens = new Int32Array(seqs.length * len).fill(-1);
  seqs.forEach((s, b) => tokens.set(s, b * len));
  return { tokens, lengths: Int32Array.from(seqs.map((s) => s.length)), len };
}

/** Prefill of all sequences; returns the logits of every valid position, flattened sequence-major. */
function prefillAll(s: InferenceSession, V: number, seqs: number[][]): { all: Float32Array; last: Float32Array } {
  const { tokens, lengths, len } = pad(seqs);
  const B = seqs.length;
  const logits = new Float32Array(B * V), allLogits = new Float32Array(B * len * V);
  s.prefill({ tokens, batch: B, len, lengths, logits, allLogits });
  const all: number[] = [];
  seqs.forEach((q, b) => {
    for (let p = 0; p < q.length; p++) all.push(...allLogits.subarray((b * len + p) * V, (b * len + p + 1) * V));
  });
  return { all: Float32Array.from(all), last: logits };
}

function seqsOf(B: number, T: number, V: number, salt = 0): number[][] {
  return Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, i) => (i * 7 + b * 5 + 3 + salt) % V));
}

const flat = (x: number[][][]) => Float64Array.from(x.flat(2));
const routings = ['dense', 'topk:1', 'topk:2', 'threshold:0.9', 'threshold-topk:0.9'];

describe('inference matches the training forward', () => {
  test.each([['moe', tinyConfig()], ['dense', denseConfig]] as const)('%s: dense routing = ' +
    'createModel().forward', (_, config) => {
    const { params, layout } = build(config);
    const n = layout.totalParams, V = config.vocab_size, B = 2, T = 7;
    const model = addon.createModel({
      config, params, grads: new Float32Array(n), adamM: new Float32Array(n), adamV: new Float32Array(n),
    });
    const seqs = seqsOf(B, T, V);
    const ref = new Float32Array(B * T * V);
    model.forward({ tokens: Int32Array.from(seqs.flat()), batch: B, seq: T, logits: ref });
    const s = addon.createSession({ config, weights: params, batch: B, routing: { attention: 'dense', mlp: 'dense' } });
    const { all, last } = prefillAll(s, V, seqs);
    expect(relError(all, ref)).toBeLessThan(1e-5);
    for (let b = 0; b < B; b++) {
      expect(relError(last.subarray(b * V, (b + 1) * V), ref.subarray((b * T + T - 1) * V, (b * T + T) * V)))
        .toBeLessThan(1e-5);
    }
    // The double reference agrees too (it is the judge of the sparse cases below).
    const denseRef = referenceForward(config, layout, params, seqs, { attention: 'dense', mlp: 'dense' });
    expect(relError(all, flat(denseRef.logits))).toBeLessThan(1e-5);
  });

  test('threshold:0 and topk:E compute exactly what dense computes', () => {
    const { config, params } = build(tinyConfig());
    const V = config.vocab_size, seqs = seqsOf(2, 6, V);
    const run = (attention: string, mlp: string) =>
      prefillAll(addon.createSession({ config, weights: params, batch: 2, routing: { attention, mlp } }), V, seqs).all;
    const dense = run('dense', 'dense');
    expect(run('threshold:0', 'threshold:0')).toEqual(dense);
    expect(run('topk:4', 'topk:4')).toEqual(dense);
  });

  test.each(routings.flatMap((a) => ['topk:1', 'threshold:0.9', 'threshold-topk:1.2'].map((m) => [a, m])))(
    'attention %s, mlp %s = the forward with unselected scores zeroed', (attention, mlp) => {
      const { config, layout, params } = build(tinyConfig());
      const V = config.vocab_size, seqs = [seqsOf(1, 7, V)[0], seqsOf(1, 4, V, 2)[0]];
      const s = addon.createSession({ config, weights: params, batch: 2, routing: { attention, mlp } });
      const got = prefillAll(s, V, seqs).all;
      const ref = referenceForward(config, layout, params, seqs, { attention, mlp });
      expect(relError(got, flat(ref.logits))).toBeLessThan(1e-5);
      const st = s.stats();
      expect(st.attUsage).toEqual(ref.attUsage);
      expect(st.mlpUsage).toEqual(ref.mlpUsage);
    });
});

describe('decode with the KV cache', () => {
  // threshold-topk's K is a per-call (per-batch) choice, so its decode differs from a prefill of
  // the same tokens by design; it is checked separately below.
  test.each(['dense', 'topk:1', 'topk:2', 'threshold:0.9', 'threshold:0.48'])('%s: decode = prefill of the whole ' +
    'sequence, batch 3 with different lengths', (r) => {
    const { config, params } = build(tinyConfig());
    const V = config.vocab_size, routing = { attention: r, mlp: r };
    const prompts = [seqsOf(1, 5, V)[0], seqsOf(1, 2, V, 4)[0], seqsOf(1, 7, V, 9)[0]];
    const s = addon.createSession({ config, weights: params, batch: 3, routing });
    prefillAll(s, V, prompts);
    const seqs = prompts.map((p) => p.slice());
    const logits = new Float32Array(3 * V);
    for (let step = 0; step < 4; step++) {
      const next = seqs.map((q, b) => (q[q.length - 1] * 3 + b + step) % V);
      next.forEach((t, b) => seqs[b].push(t));
      s.decode({ tokens: Int32Array.from(next), logits });
      const fresh = addon.createSession({ config, weights: params, batch: 3, routing });
      const ref = prefillAll(fresh, V, seqs).last;
      expect(relError(logits, ref)).toBeLessThan(1e-5);
    }
    expect(s.lengths()).toEqual([9, 6, 11]);
    expect(s.stats().tokens).toBe(14 + 12);
  });

  test('threshold-topk decode at batch 1 selects the token\'s own threshold set (K = its count)', () => {
    const { config, params } = build(tinyConfig());
    const V = config.vocab_size, prompt = seqsOf(1, 5, V)[0];
    const run = (r: string) => {
      const s = addon.createSession({
        config, weights: params, batch: 1, routing: { attention: 'threshold:0.9', mlp: 'threshold:0.9' },
      });
      prefillAll(s, V, [prompt]);
      s.setRouting({ attention: r, mlp: r });
      const logits = new Float32Array(V);
      s.decode({ tokens: Int32Array.of(3), logits });
      s.decode({ tokens: Int32Array.of(8), logits });
      return logits;
    };
    expect(run('threshold-topk:0.9')).toEqual(run('threshold:0.9'));
  });

  test('async calls give the same logits; an overlapping call is refused', async () => {
    const { config, params } = build(tinyConfig());
    const V = config.vocab_size, { tokens, lengths, len } = pad(seqsOf(2, 5, V));
    const a = addon.createSession({
      config, weights: params, batch: 2, routing: { attention: 'topk:2', mlp: 'topk:1' },
    });
    const b = addon.createSession({
      config, weights: params, batch: 2, routing: { attention: 'topk:2', mlp: 'topk:1' },
    });
    const la = new Float32Array(2 * V), lb = new Float32Array(2 * V);
    a.prefill({ tokens, batch: 2, len, lengths, logits: la });
    const p = b.prefillAsync({ tokens, batch: 2, len, lengths, logits: lb });
    expectNativeError(() => b.decode({ tokens: Int32Array.of(1, 2), logits: lb }), 'Error', /busy/);
    await p;
    expect(lb).toEqual(la);
    a.decode({ tokens: Int32Array.of(1, 2), logits: la });
    await b.decodeAsync({ tokens: Int32Array.of(1, 2), logits: lb });
    expect(lb).toEqual(la);
  });
});

describe('routing statistics and active parameters', () => {
  test('threshold:ε activates exactly the experts with E·S_e > ε (at least one); ' +
    'threshold-topk uses K = round(mean count)', () => {
    const { config, layout, params } = build(tinyConfig());
    const V = config.vocab_size, seqs = seqsOf(3, 6, V), E = 4;
    for (const eps of [0.48, 0.9, 1.5]) {
      const s = addon.createSession({
        config, weights: params, batch: 3, routing: { attention: `threshold:${eps}`, mlp: `threshold:${eps}` },
      });
      prefillAll(s, V, seqs);
      const ref = referenceForward(config, layout, params, seqs,
        { attention: `threshold:${eps}`, mlp: `threshold:${eps}` });
      // Counts computed here from the reference's router probabilities, not from its selection.
      const count = (probs: number[][][]) => probs.map((layer) => {
        const u = new Array(E).fill(0);
        for (const p of layer) {
          const best = p.indexOf(Math.max(...p));
          p.forEach((v, e) => { if (E * v > eps || e === best) u[e]++; });
        }
        return u;
      });
      const st = s.stats();
      expect(st.attUsage).toEqual(count(ref.attProbs));
      expect(st.mlpUsage).toEqual(count(ref.mlpProbs));
      // threshold-topk: every token gets K = round(mean threshold count) experts, per layer.
      s.reset();
      s.setRouting({ attention: `threshold-topk:${eps}`, mlp: `threshold-topk:${eps}` });
      prefillAll(s, V, seqs);
      const st2 = s.stats(), T = 18;
      const K = (u: number[]) => Math.min(E, Math.max(1, Math.floor(u.reduce((a, b) => a + b, 0) / T + 0.5)));
      st2.attUsage.forEach((u, l) => expect(u.reduce((a, b) => a + b, 0)).toBe(T * K(st.attUsage[l])));
      st2.mlpUsage.forEach((u, l) => expect(u.reduce((a, b) => a + b, 0)).toBe(T * K(st.mlpUsage[l])));
    }
  });

  test('active parameters equal a hand count (dense and topk:1)', () => {
    // D 16, 2 layers. Per layer: routers 2·(4·16) = 128, k + v = 2·(4·16) = 128;
    // an attention expert q + o = 2·(8·16) = 256; an MLP expert up + down = 2·(8·16) = 256.
    // dense:  2·(128 + 128 + 4·256 + 4·256) = 4608;  topk:1: 2·(128 + 128 + 256 + 256) = 1536.
    // All expert parameters: 2·(4·256 + 4·256) = 4096; topk:1 touches 2·512 / 4096 = 25 % of them.
    const { config, params } = build(tinyConfig());
    const V = config.vocab_size, seqs = seqsOf(2, 5, V);
    const dense = addon.createSession({
      config, weights: params, batch: 2, routing: { attention: 'dense', mlp: 'dense' },
    });
    prefillAll(dense, V, seqs);
    dense.decode({ tokens: Int32Array.of(1, 2), logits: new Float32Array(2 * V) });
    const d = dense.stats();
    expect(d.tokens).toBe(12);
    expect(d.activeParamsPerToken).toBe(4608);
    expect(d.activeExpertShare).toBe(1);
    expect(d.expertParams).toBe(4096);
    expect(d.sharedParams).toBe(512);
    expect(d.attExpertsPerToken).toBe(4);
    expect(d.embeddingParams).toBe(19 * 16);
    expect(d.lmHeadParams).toBe(19 * 16);
    // fp32: 4608·4 bytes of layer weights + the LM head 19·16·4.
    expect(d.activeWeightBytesPerToken).toBe(4608 * 4 + 19 * 16 * 4);
    const top1 = addon.createSession({
      config, weights: params, batch: 2, routing: { attention: 'topk:1', mlp: 'topk:1' },
    });
    prefillAll(top1, V, seqs);
    const t = top1.stats();
    expect(t.activeParamsPerToken).toBe(1536);
    expect(t.activeExpertShare).toBe(0.25);
    expect(t.mlpExpertsPerToken).toBe(1);
    expect(t.attUsage.map((u) => u.reduce((a, b) => a + b, 0))).toEqual([10, 10]);
    expect(t.routing).toEqual({ attention: 'topk:1', mlp: 'topk:1' });
    // resetStats keeps the cache: decode continues, counting only itself.
    top1.resetStats();
    top1.decode({ tokens: Int32Array.of(1, 2), logits: new Float32Array(2 * V) });
    expect(top1.stats().tokens).toBe(2);
    expect(top1.lengths()).toEqual([6, 6]);
  });
});

describe('bf16 weights', () => {
  // bf16 keeps 8 significant bits: each weight carries a relative rounding error ≤ u = 2^-9 ≈ 2e-3.
  // Independent roundings mostly cancel inside a dot product, but RMSNorm, the router softmax and
  // the residual stream pass each layer's error on; measured norm-wise logit errors against fp32
  // are 2.5e-3..5.6e-3 (≈ 1.5–3 u) on this model over 6 seeds, so 2e-2 (≈ 10 u) bounds them with
  // margin while a wrong conversion (an O(1) error) still fails. This holds for dense routing:
  // under sparse routing a rounding can move a token across a top-k/threshold boundary and select
  // another expert (a real discontinuity, seen with seed 1: 0.17), so sparse paths are compared
  // against fp32 on the *same rounded* weights instead: the widening fallback is exact there
  // (fp32 tolerance), and the native dot adds only the rounding of activations to bf16 (≈ 1–1.5 u
  // measured; bound 1e-2).
  const BF16_TOL = 2e-2;
  // Each case runs under the ISA its title names; one this CPU lacks is skipped, and says so.
  const cpu = addon.runtimeInfo();
  const runnable = (isa: string) => ({
    avx512: ['avx512'], avx2: ['avx512', 'avx2'], generic: ['avx512', 'avx2', 'generic'],
  }[isa] ?? []).includes(cpu.bestIsa);
  const cases = ([['native bf16 dot (avx512)', 'avx512', true], ['widening fallback (avx512)', 'avx512', false],
    ['avx2 ISA', 'avx2', false], ['generic ISA', 'generic', false]] as const)
    .map(([name, isa, dot]) => {
      const lack = !runnable(isa) ? `this CPU's best ISA is ${cpu.bestIsa}`
        : dot && !cpu.avx512bf16 ? 'this CPU has no AVX512-BF16' : '';
      return [lack ? `${name} (skipped: ${lack})` : name, isa, dot, lack] as const;
    });
  test.each(cases.filter((c) => !c[3]))('%s: fp32 prefill and decode = the double reference, ' +
    'bf16 within tolerance of fp32', (_, isa, dot) => {
    const before = addon.runtimeInfo();
    try {
      addon.setIsa({ isa });
      expect(addon.runtimeInfo().isa).toBe(isa);
      expect(addon.setBf16Dot({ enabled: dot })).toBe(dot);
      const { config, layout, params } = build(tinyConfig({ d_model: 40 }));  // k = 40: a masked tail in every dot
      const V = config.vocab_size, dense = { attention: 'dense', mlp: 'dense' };
      const sparse = { attention: 'topk:2', mlp: 'threshold:0.9' };
      const bf = toBf16(params), rounded = fromBf16(bf);
      const run = (weights: Float32Array | Uint16Array, routing: typeof dense) => {
        const s = addon.createSession({ config, weights, batch: 2, routing });
        const out = prefillAll(s, V, seqsOf(2, 5, V)).all;
        const dec = new Float32Array(2 * V), decs: number[] = [];
        for (let i = 0; i < 3; i++) { s.decode({ tokens: Int32Array.of(i, i + 4), logits: dec }); decs.push(...dec); }
        return { prefill: out, decode: Float32Array.from(decs) };
      };
      // fp32 under this ISA is itself judged by the double reference (a kernel bug of this ISA would
      // otherwise cancel out of the bf16-vs-fp32 comparisons below): prefill, and decode (the
      // logits of the positions the three decode steps append).
      const seqs = seqsOf(2, 5, V);
      const refOf = (weights: Float32Array, routing: typeof dense) => {
        const full = seqs.map((q, b) => [...q, ...[0, 1, 2].map((i) => i + 4 * b)]);
        const r = referenceForward(config, layout, weights, full, routing).logits;
        return {
          prefill: flat(r.map((q) => q.slice(0, 5))),
          decode: Float64Array.from([0, 1, 2].flatMap((i) => [...r[0][5 + i], ...r[1][5 + i]])),
        };
      };
      const f32 = run(params, dense), b16 = run(bf, dense);
      const ref = refOf(params, dense);
      expect(relError(f32.prefill, ref.prefill)).toBeLessThan(1e-5);
      expect(relError(f32.decode, ref.decode)).toBeLessThan(1e-5);
      expect(relError(b16.prefill, f32.prefill)).toBeLessThan(BF16_TOL);
      expect(relError(b16.decode, f32.decode)).toBeLessThan(BF16_TOL);
      const r32s = run(rounded, sparse), b16s = run(bf, sparse);
      const refs = refOf(rounded, sparse);
      expect(relError(r32s.prefill, refs.prefill)).toBeLessThan(1e-5);
      expect(relError(r32s.decode, refs.decode)).toBeLessThan(1e-5);
      // Prefill widens bf16 while packing: exact products, as fp32 on the rounded weights.
      expect(relError(b16s.prefill, r32s.prefill)).toBeLessThan(1e-5);
      expect(relError(b16s.decode, r32s.decode)).toBeLessThan(dot ? 1e-2 : 1e-5);
    } finally {
      addon.setIsa({ isa: before.isa });
      addon.setBf16Dot({ enabled: true });
    }
  });
  for (const c of cases.filter((x) => x[3])) {
    test.skip(`${c[0]}: fp32 prefill and decode = the double reference, bf16 within tolerance of fp32`, () => {});
  }
});

/** A safetensors file: 8-byte LE header length, JSON header, data (offsets relative to the data). */
function writeSafetensors(
  file: string, tensors: { name: string; dtype: 'F32' | 'BF16'; shape: number[]; data: Float32Array }[], pad = 0,
): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const parts: Buffer[] = [];
  let off = pad;
  if (pad) parts.push(Buffer.alloc(pad));
  for (const t of tensors) {
    const bytes = t.dtype === 'F32'
      ? Buffer.from(Float32Array.from(t.data).buffer)
      : Buffer.from(toBf16(t.data).buffer);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + bytes.length] };
    parts.push(bytes);
    off += bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);  // data 8-aligned, as the reference writer does
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json), ...parts]));
}

describe('memory-mapped safetensors', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-infer-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { config, layout, params } = build(tinyConfig());
  const V = config.vocab_size, routing = { attention: 'topk:2', mlp: 'topk:1' }, seqs = seqsOf(2, 5, V);
  const tensorsOf = (dtype: (i: number) => 'F32' | 'BF16') => layout.tensors.map((t, i) => ({
    name: t.name, dtype: dtype(i), shape: t.shape, data: params.subarray(t.offset, t.offset + t.size),
  }));
  const decodeAll = (s: InferenceSession) => {
    const out = prefillAll(s, V, seqs).all, d = new Float32Array(2 * V);
    s.decode({ tokens: Int32Array.of(4, 7), logits: d });
    return [...out, ...d];
  };

  test.each([
    ['F32', () => 'F32' as const],
    ['BF16', () => 'BF16' as const],
    ['mixed', (i: number) => (i % 2 ? 'BF16' as const : 'F32' as const)],
  ])(
    '%s file = the in-memory weights', (_, dtype) => {
      const file = path.join(dir, `m-${_}.safetensors`);
      // A reversed tensor order in the file: ranges, not positions, locate the tensors.
      writeSafetensors(file, tensorsOf(dtype).reverse());
      const hdr = readSafetensorsHeader(file);
      const mapped = addon.createSessionFromFile({
        config, path: file, tensors: hdr.tensors, dataOffset: hdr.dataStart, batch: 2, routing,
      });
      // The in-memory equivalent: each tensor rounded to bf16 where the file stores bf16.
      const mem = params.slice();
      layout.tensors.forEach((t, i) => {
        if (dtype(i) === 'BF16') mem.set(fromBf16(toBf16(params.subarray(t.offset, t.offset + t.size))), t.offset);
      });
      const inMem = _ === 'BF16' ? toBf16(params) : mem;
      addon.setBf16Dot({ enabled: false });  // exact widening: fp32 and bf16 tensors compare at fp32 tolerance
      try {
        const ref = decodeAll(addon.createSession({ config, weights: inMem, batch: 2, routing }));
        expect(relError(decodeAll(mapped), ref)).toBeLessThan(1e-6);
      } finally {
        addon.setBf16Dot({ enabled: true });
      }
    });

  test('a wrong shape, range, dtype or missing tensor is a RangeError naming the tensor', () => {
    const file = path.join(dir, 'ok.safetensors');
    writeSafetensors(file, tensorsOf(() => 'F32'));
    const hdr = readSafetensorsHeader(file);
    const open = (edit: (t: typeof hdr.tensors) => void, dataOffset = hdr.dataStart) => {
      const tensors = hdr.tensors.map((t) => ({ ...t, shape: t.shape.slice() }));
      edit(tensors);
      return () => addon.createSessionFromFile({ config, path: file, tensors, dataOffset, batch: 1 });
    };
    const q = (t: typeof hdr.tensors) => t.find((x) => x.name === 'layers.1.attn.q_proj.weight')!;
    expect(() => open(() => undefined)()).not.toThrow();
    expectNativeError(open((t) => { q(t).shape = [4, 16, 8]; }), 'RangeError',
      /layers\.1\.attn\.q_proj\.weight has shape \[4, 16, 8\], the config needs \[4, 8, 16\]/);
    expectNativeError(open((t) => { q(t).end += 4; }), 'RangeError', /layers\.1\.attn\.q_proj\.weight spans bytes/);
    const last = hdr.tensors.reduce((a, b) => (a.end > b.end ? a : b));
    expectNativeError(open((t) => {
      const x = t.find((y) => y.name === last.name)!;
      x.begin += 8; x.end += 8;
    }), 'RangeError', new RegExp(`${last.name.replace(/\./g, '\\.')} ends at byte .* past the end of the file`));
    expectNativeError(open((t) => { q(t).dtype = 'F16'; }), 'RangeError', /q_proj\.weight has dtype F16/);
    expectNativeError(open((t) => { t.splice(t.indexOf(q(t)), 1); }), 'RangeError',
      /layers\.1\.attn\.q_proj\.weight is missing/);
    expectNativeError(open(() => undefined, 1 << 30), 'RangeError', /dataOffset/);
    expectNativeError(() => addon.createSessionFromFile({
      config, path: path.join(dir, 'nope'), tensors: hdr.tensors, dataOffset: 8, batch: 1,
    }), 'Error', /cannot open/);
    // The TS header reader rejects a truncated file before native code sees it.
    const cut = path.join(dir, 'cut.safetensors');
    fs.writeFileSync(cut, fs.readFileSync(file).subarray(0, fs.statSync(file).size - 10));
    expect(() => readSafetensorsHeader(cut)).toThrow(/truncated or corrupt/);
  });
});

describe('two-layer routers (router_hidden)', () => {
  // h = 5 (a width no kernel blocks evenly); the MLP uses gelu_tanh while routers always use the
  // exact erf GELU, so a router that took the MLP's activation would miss the reference.
  const cfg = tinyConfig({ router_hidden: 5, mlp: { n_experts: 4, expert_dim: 8, activation: 'gelu_tanh' } });
  /** Hidden weights at their N(0, 1/D) initialisation, output weights 4× larger again: peaked scores. */
  const build2 = (seed = 5): Built => {
    const b = build(cfg, seed);
    for (const t of b.layout.tensors.filter((x) => x.name.includes('router')))
      for (let i = t.offset; i < t.offset + t.size; i++) b.params[i] *= t.name.endsWith('hidden.weight') ? 1 / 6 : 4;
    return b;
  };
  const V = cfg.vocab_size;

  test('dense routing = createModel().forward = the double reference', () => {
    const { config, layout, params } = build2();
    const perLayer = ['attn.router.hidden', 'attn.router.output', 'mlp.router.hidden', 'mlp.router.output'];
    expect(layout.tensors.filter((t) => t.name.includes('router')).map((t) => t.name))
      .toEqual([0, 1].flatMap((l) => perLayer.map((n) => `layers.${l}.${n}.weight`)));
    const n = layout.totalParams, B = 2, T = 7;
    const model = addon.createModel({ config, params, grads: new Float32Array(n), adamM: new Float32Array(n),
      adamV: new Float32Array(n) });
    const seqs = seqsOf(B, T, V);
    const ref = new Float32Array(B * T * V);
    model.forward({ tokens: Int32Array.from(seqs.flat()), batch: B, seq: T, logits: ref });
    const dense = { attention: 'dense', mlp: 'dense' };
    const { all } = prefillAll(addon.createSession({ config, weights: params, batch: B, routing: dense }), V, seqs);
    expect(relError(all, ref)).toBeLessThan(1e-5);
    expect(relError(all, flat(referenceForward(config, layout, params, seqs, dense).logits))).toBeLessThan(1e-5);
  });

  test.each([['topk:1', 'topk:2'], ['threshold:0.9', 'threshold:0.48'], ['threshold-topk:1.2', 'topk:1']])(
    'attention %s, mlp %s = the reference, with the same experts selected', (attention, mlp) => {
      const { config, layout, params } = build2();
      const seqs = [seqsOf(1, 7, V)[0], seqsOf(1, 4, V, 2)[0]];
      const s = addon.createSession({ config, weights: params, batch: 2, routing: { attention, mlp } });
      const got = prefillAll(s, V, seqs).all;
      const ref = referenceForward(config, layout, params, seqs, { attention, mlp });
      expect(relError(got, flat(ref.logits))).toBeLessThan(1e-5);
      expect(s.stats().attUsage).toEqual(ref.attUsage);
      expect(s.stats().mlpUsage).toEqual(ref.mlpUsage);
      // The routers are peaked enough that thresholds select different numbers of experts per token.
      if (attention.startsWith('threshold:')) {
        const counts = new Set(ref.attProbs[0].map((p) => p.filter((x) => 4 * x > 0.9).length));
        expect(counts.size).toBeGreaterThan(1);
      }
    });

  test.each(['dense', 'topk:2', 'threshold:0.48'])('%s: decode (GEMV routers) = prefill of the whole sequence', (r) => {
    const { config, params } = build2();
    const routing = { attention: r, mlp: r }, prompts = [seqsOf(1, 5, V)[0], seqsOf(1, 2, V, 4)[0]];
    const s = addon.createSession({ config, weights: params, batch: 2, routing });
    prefillAll(s, V, prompts);
    const seqs = prompts.map((p) => p.slice()), logits = new Float32Array(2 * V);
    for (let step = 0; step < 3; step++) {
      const next = seqs.map((q, b) => (q[q.length - 1] * 3 + b + step) % V);
      next.forEach((t, b) => seqs[b].push(t));
      s.decode({ tokens: Int32Array.from(next), logits });
      const ref = prefillAll(addon.createSession({ config, weights: params, batch: 2, routing }), V, seqs).last;
      expect(relError(logits, ref)).toBeLessThan(1e-5);
    }
  });

  test('active parameters count h·D + E·h per router (hand count)', () => {
    // D 16, 2 layers, h 5, E 4: a router is 5·16 + 4·5 = 100 (linear: 64); k + v = 128 per layer.
    // shared = 2·(2·100 + 128) = 656; experts as in the linear hand count: 4096 in all, 512 per layer at topk:1.
    const { config, params } = build2();
    const seqs = seqsOf(2, 5, V);
    const session = (weights: Float32Array | Uint16Array, r: string) =>
      addon.createSession({ config, weights, batch: 2, routing: { attention: r, mlp: r } });
    const dense = session(params, 'dense');
    prefillAll(dense, V, seqs);
    const d = dense.stats();
    expect(d.sharedParams).toBe(656);
    expect(d.expertParams).toBe(4096);
    expect(d.activeParamsPerToken).toBe(656 + 4096);
    expect(d.activeWeightBytesPerToken).toBe((656 + 4096) * 4 + 19 * 16 * 4);
    const top1 = session(toBf16(params), 'topk:1');
    prefillAll(top1, V, seqs);
    const t = top1.stats();
    expect(t.activeParamsPerToken).toBe(656 + 2 * 512);
    expect(t.activeWeightBytesPerToken).toBe((656 + 2 * 512) * 2 + 19 * 16 * 2);  // bf16: 2 bytes a weight
  });

  test('bf16 weights, memory-mapped, = in-memory bf16 weights; a linear file does not load as two-layer', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-infer-rh-'));
    try {
      const { config, layout, params } = build2();
      const file = path.join(dir, 'm.safetensors');
      writeSafetensors(file, layout.tensors.map((t) => ({ name: t.name, dtype: 'BF16' as const, shape: t.shape,
        data: params.subarray(t.offset, t.offset + t.size) })));
      const hdr = readSafetensorsHeader(file), seqs = seqsOf(2, 5, V);
      const routing = { attention: 'topk:2', mlp: 'threshold:0.48' };
      const open = (c: ModelConfig, h: typeof hdr, f: string, batch = 1) => addon.createSessionFromFile(
        { config: c, path: f, tensors: h.tensors, dataOffset: h.dataStart, batch, routing });
      const mapped = open(config, hdr, file, 2);
      addon.setBf16Dot({ enabled: false });  // exact widening on both sides
      try {
        const mem = addon.createSession({ config, weights: toBf16(params), batch: 2, routing });
        expect(relError(prefillAll(mapped, V, seqs).all, prefillAll(mem, V, seqs).all)).toBeLessThan(1e-6);
      } finally {
        addon.setBf16Dot({ enabled: true });
      }
      // The same file read with a linear config: its router.weight tensors are missing.
      const linear = { ...config, router_hidden: 0 };
      expectNativeError(() => open(linear, hdr, file), 'RangeError', /layers\.0\.attn\.router\.weight is missing/);
      const lin = build(tinyConfig());
      const lfile = path.join(dir, 'linear.safetensors');
      writeSafetensors(lfile, lin.layout.tensors.map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape,
        data: lin.params.subarray(t.offset, t.offset + t.size) })));
      const lh = readSafetensorsHeader(lfile);
      expectNativeError(() => open(config, lh, lfile), 'RangeError', /layers\.0\.attn\.router\.hidden\.weight is miss/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('bad input is an error, never a crash', () => {
  const { config, params } = build(tinyConfig());
  const V = config.vocab_size;
  const make = (routing: { attention: string; mlp: string }, maxLen?: number) =>
    addon.createSession({ config, weights: params, batch: 2, routing, maxLen });

  test.each(['', 'topk', 'topk:', 'topk:0', 'topk:x', 'topk:1.5', 'topk:-1', 'threshold:', 'threshold:-1',
    'threshold:abc', 'threshold:inf', 'foo:1', 'dense:1', 'Dense'])('malformed routing %j', (r) => {
    expectNativeError(() => make({ attention: r, mlp: 'dense' }), 'RangeError', /routing\.attention: routing '.*'/);
    const s = make({ attention: 'dense', mlp: 'dense' });
    expectNativeError(() => s.setRouting({ attention: 'dense', mlp: r }), 'RangeError',
      /setRouting: mlp: routing '.*'/);
  });

  test('K > E, empty prompts, long prompts, bad tokens, decode before prefill or past the context', () => {
    expectNativeError(() => make({ attention: 'topk:5', mlp: 'dense' }), 'RangeError',
      /routing 'topk:5' needs 1 <= K <= E = 4/);
    expectNativeError(() => make({ attention: 'dense', mlp: 'topk:5' }), 'RangeError',
      /routing\.mlp: routing 'topk:5'/);
    const s = make({ attention: 'topk:2', mlp: 'topk:1' }, 8);
    const logits = new Float32Array(2 * V);
    expectNativeError(() => s.decode({ tokens: Int32Array.of(1, 2), logits }), 'Error', /call prefill before decode/);
    expectNativeError(() => s.prefill({ tokens: new Int32Array(0), batch: 2, len: 0, logits }), 'RangeError',
      /prompt is empty/);
    expectNativeError(() => s.prefill({
      tokens: new Int32Array(6), batch: 2, len: 3, lengths: Int32Array.of(3, -1), logits,
    }), 'RangeError', /lengths\[1\] = -1 must be in \[0, len = 3\]/);  // 0 is a slot taking no tokens
    expectNativeError(() => s.prefill({ tokens: new Int32Array(18), batch: 2, len: 9, logits }), 'RangeError',
      /prompt of 9 tokens is longer than the context \(maxLen 8\)/);
    expectNativeError(() => s.prefill({ tokens: Int32Array.of(1, 2, 3, 19), batch: 2, len: 2, logits }), 'RangeError',
      /tokens\[3\] = 19 is outside the vocabulary \[0, 19\)/);
    expectNativeError(() => s.prefill({ tokens: Int32Array.of(1, -2, 3, 4), batch: 2, len: 2, logits }), 'RangeError',
      /tokens\[1\] = -2/);
    expectNativeError(() => s.prefill({ tokens: Int32Array.of(1, 2, 3), batch: 2, len: 2, logits }), 'RangeError',
      /tokens has 3 elements/);
    expectNativeError(() => s.prefill({ tokens: Int32Array.of(1, 2), batch: 1, len: 2, logits }), 'RangeError',
      /batch is 1 but the session was made for batch 2/);
    expectNativeError(() => s.prefill({
      tokens: Int32Array.of(1, 2, 3, 4), batch: 2, len: 2, logits: new Float32Array(V),
    }), 'RangeError', /logits has/);
    s.prefill({ tokens: Int32Array.from({ length: 12 }, (_, i) => i), batch: 2, len: 6, logits });
    expectNativeError(() => s.prefill({ tokens: Int32Array.of(1, 2, 3, 4, 5, 6), batch: 2, len: 3, logits }),
      'RangeError', /after 6 cached ones is longer than the context/);
    expectNativeError(() => s.decode({ tokens: Int32Array.of(1, 99), logits }), 'RangeError',
      /decode: tokens\[1\] = 99/);
    s.decode({ tokens: Int32Array.of(1, 2), logits });
    s.decode({ tokens: Int32Array.of(1, 2), logits });
    expectNativeError(() => s.decode({ tokens: Int32Array.of(1, 2), logits }), 'RangeError',
      /already fills the context \(maxLen 8\)/);
    expect(s.lengths()).toEqual([8, 8]);
    s.reset();
    expect(s.lengths()).toEqual([0, 0]);
    expect(s.stats().tokens).toBe(0);
    expectNativeError(() => s.decode({ tokens: Int32Array.of(1, 2), logits }), 'Error', /call prefill before decode/);
  });

  test('bad session arguments', () => {
    expectNativeError(() => addon.createSession({ config, weights: params.subarray(1), batch: 1 }), 'RangeError',
      /createSession: weights has/);
    expectNativeError(() => addon.createSession({ config, weights: new Int32Array(10) as never, batch: 1 }),
      'TypeError', /weights must be a Float32Array or a Uint16Array/);
    expectNativeError(() => addon.createSession({ config, weights: params, batch: 0 }), 'RangeError',
      /batch must be in/);
    expectNativeError(() => addon.createSession({ config, weights: params, batch: 1, maxLen: 13 }), 'RangeError',
      /maxLen must be in \[1, 12\]/);
    expectNativeError(() => addon.createSession({ config: { ...config, d_model: 0 }, weights: params, batch: 1 }),
      'RangeError', /config\.d_model/);
    const s = make({ attention: 'dense', mlp: 'dense' });
    expectNativeError(() => (s.prefill as (a: unknown) => void).call({}, {}), 'TypeError',
      /session methods must be called on a session/);
  });
});
