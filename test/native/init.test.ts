// initParams (native/model/init.cc): every tensor of the layout is filled, norms with exactly 1,
// weights N(0, σ²) with σ by kind — 0.02; the output projections (o_proj, down_proj) scaled by
// 1/√(2·n_layers); two-layer router hidden weights 1/√D — checked by sample statistics (mean,
// standard deviation, the normal's 1σ/2σ masses), independence between tensors, layers and the
// 4096-value chunks each filled by its own stream, seeds, odd sizes and bad buffers.
import type { ModelConfig, ModelLayout } from '../../src/native/addon';
import { addon, expectNativeError } from '../helpers';

function config(over: Partial<ModelConfig> = {}): ModelConfig {
  return {
    format_version: 1, vocab_size: 256, d_model: 128, n_layers: 3, max_seq_len: 16, norm_eps: 1e-5,
    rope_theta: 10000, tie_embeddings: false,
    attention: { n_experts: 4, n_heads: 2, n_kv_heads: 2, head_dim: 16 },
    mlp: { n_experts: 4, expert_dim: 64, activation: 'gelu' },
    training: { mode: 'dsmoe', mi_alpha_att: 0.01, mi_alpha_mlp: 0.01, top_k: 2, switch_alpha: 0.01 },
    routing: { attention: 'dense', mlp: 'dense' },
    ...over,
  };
}

/** Initialised parameters; the buffer starts as NaN so that an element left unwritten shows. */
function init(c: ModelConfig, seed: number): { layout: ModelLayout; params: Float32Array } {
  const layout = addon.modelLayout(c);
  const params = new Float32Array(layout.totalParams).fill(NaN);
  addon.initParams({ config: c, params, seed });
  return { layout, params };
}

/** σ each tensor should have, from its name (DESIGN: GPT-2 style initialisation). */
function wantStd(name: string, c: ModelConfig): number | 'ones' {
  if (name.endsWith('norm.weight')) return 'ones';
  if (name.endsWith('router.hidden.weight')) return 1 / Math.sqrt(c.d_model);
  if (name.endsWith('o_proj.weight') || name.endsWith('down_proj.weight')) return 0.02 / Math.sqrt(2 * c.n_layers);
  return 0.02;
}

/** Problems of one tensor's values as a sample of N(0, σ²); bounds are 5 standard errors. */
function normalProblems(v: Float32Array, sigma: number): string[] {
  const n = v.length, out: string[] = [];
  let sum = 0, sq = 0, in1 = 0, in2 = 0, maxAbs = 0;
  for (const x of v) {
    if (!Number.isFinite(x)) return [`a non-finite value ${x}`];
    sum += x; sq += x * x;
    if (Math.abs(x) < sigma) in1++;
    if (Math.abs(x) < 2 * sigma) in2++;
    maxAbs = Math.max(maxAbs, Math.abs(x));
  }
  const mean = sum / n, sd = Math.sqrt(sq / n);
  if (Math.abs(mean) > 5 * sigma / Math.sqrt(n)) out.push(`mean ${mean.toExponential(3)}`);
  if (Math.abs(sd / sigma - 1) > 5 / Math.sqrt(2 * n)) out.push(`std ${sd.toExponential(4)}, want ` +
    `${sigma.toExponential(4)}`);
  for (const [got, p] of [[in1 / n, 0.682689], [in2 / n, 0.954500]])
    if (Math.abs(got - p) > 5 * Math.sqrt(p * (1 - p) / n)) out.push(`mass within ${p > 0.9 ? 2 : 1}σ ` +
      `${got.toFixed(4)}, want ${p}`);
  if (maxAbs > 6.5 * sigma) out.push(`max |x| ${maxAbs} beyond 6.5σ`);
  return out;
}

/** Pearson correlation of two equal-length samples. */
function corr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0, mb = 0;
  for (let i = 0; i < n; i++) { ma += a[i] / n; mb += b[i] / n; }
  let sab = 0, saa = 0, sbb = 0;
  for (let i = 0; i < n; i++) { sab += (a[i] - ma) * (b[i] - mb); saa += (a[i] - ma) ** 2; sbb += (b[i] - mb) ** 2; }
  return sab / Math.sqrt(saa * sbb);
}

const tensor = (l: ModelLayout, p: Float32Array, name: string) => {
  const t = l.tensors.find((x) => x.name === name);
  if (!t) throw new Error(`no tensor ${name}`);
  return p.subarray(t.offset, t.offset + t.size);
};

describe('initParams', () => {
  test.each<[string, ModelConfig]>([
    ['linear routers, untied', config()],
    ['two-layer routers (h 96), tied embeddings, 5 layers', config({ router_hidden: 96, tie_embeddings: true,
      n_layers: 5 })],
    ['dense (no routers)', config({ attention: { n_experts: 1, n_heads: 8, n_kv_heads: 2, head_dim: 16 },
      mlp: { n_experts: 1, expert_dim: 256, activation: 'gelu' }, training: { mode: 'dense', mi_alpha_att: 0,
        mi_alpha_mlp: 0, top_k: 2, switch_alpha: 0.01 } })],
  ])('%s: norms 1; weights N(0, σ²) with σ 0.02, 0.02/√(2L) on o_proj/down_proj, 1/√D on router hidden', (_, c) => {
    const { layout, params } = init(c, 7);
    const problems: string[] = [];
    const kinds = new Set<string>();
    for (const t of layout.tensors) {
      const v = params.subarray(t.offset, t.offset + t.size), want = wantStd(t.name, c);
      kinds.add(String(want));
      if (want === 'ones') {
        if (!v.every((x) => x === 1)) problems.push(`${t.name}: not all 1`);
        expect(t.decay).toBe(false);
        continue;
      }
      expect(t.decay).toBe(true);
      for (const p of normalProblems(v, want)) problems.push(`${t.name} [${t.shape}]: ${p}`);
    }
    expect(problems).toEqual([]);
    // every element of the buffer belongs to a tensor and was written
    expect(params.every(Number.isFinite)).toBe(true);
    expect(kinds.size).toBe(c.router_hidden ? 4 : 3);
  });

  test('tensors, layers and 4096-value chunks are independent streams; a seed repeats, another seed differs', () => {
    const c = config();
    const { layout, params } = init(c, 7);
    const T = (n: string) => tensor(layout, params, n);
    const pairs: [string, Float32Array, Float32Array][] = [
      ['k_proj vs v_proj (same layer, same shape)', T('layers.0.attn.k_proj.weight'), T('layers.0.attn.v_proj.weight')],
      ['up_proj of layers 0 and 1', T('layers.0.mlp.up_proj.weight'), T('layers.1.mlp.up_proj.weight')],
      ['embed vs lm_head', T('embed.weight'), T('lm_head.weight')],
      ['chunks 0 and 1 of up_proj', T('layers.0.mlp.up_proj.weight').subarray(0, 4096),
        T('layers.0.mlp.up_proj.weight').subarray(4096, 8192)],
      ['chunks 0 and 7 of embed', T('embed.weight').subarray(0, 4096), T('embed.weight').subarray(7 * 4096, 8 * 4096)],
    ];
    const bad = pairs.map(([what, a, b]) => [what, corr(a, b)] as const).filter(([,
      r]) => !(Math.abs(r) < 5 / Math.sqrt(4096)));
    expect(bad).toEqual([]);
    // same seed: the same bits; another seed: other values, uncorrelated
    expect(Buffer.from(init(c, 7).params.buffer).equals(Buffer.from(params.buffer))).toBe(true);
    const other = init(c, 8).params;
    const up = layout.tensors.find((t) => t.name === 'layers.0.mlp.up_proj.weight')!;
    const a = params.subarray(up.offset, up.offset + up.size), b = other.subarray(up.offset, up.offset + up.size);
    expect(Math.abs(corr(a, b))).toBeLessThan(5 / Math.sqrt(up.size));
  });

  test('odd sizes and sizes that are not a multiple of the chunk: every element is drawn', () => {
    // up/down [3, 63, 129]: 24381 values, odd, 5 chunks and a 3853-value tail
    const c = config({ d_model: 129, mlp: { n_experts: 3, expert_dim: 63, activation: 'gelu' }, vocab_size: 97 });
    const { layout, params } = init(c, 3);
    const up = tensor(layout, params, 'layers.2.mlp.up_proj.weight');
    expect(up.length).toBe(24381);
    expect(params.every(Number.isFinite)).toBe(true);
    expect(normalProblems(up, 0.02)).toEqual([]);
    // the last values (the tail of the last chunk, the odd one out) are draws, not zeros or copies
    const tail = Array.from(up.subarray(-4));
    expect(tail.every((x) => x !== 0 && Math.abs(x) < 6.5 * 0.02)).toBe(true);
    expect(new Set(tail).size).toBe(4);
  });

  test('a buffer of the wrong length is a RangeError', () => {
    const c = config();
    const n = addon.modelLayout(c).totalParams;
    expectNativeError(() => addon.initParams({ config: c, params: new Float32Array(n - 1), seed: 1 }), 'RangeError',
      new RegExp(`${n}`));
  });
});
