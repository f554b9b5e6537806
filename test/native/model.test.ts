// The native DS-MoE model: gradients against finite differences for every parameter kind in all
// three training modes (and two-layer routers), auxiliary losses, the dense/MoE equivalence,
// learning, determinism and bad input.
import type { ModelConfig, NativeModel, TrainingMode } from '../../src/native/addon';
import { topkMargin, trainingForwardRef } from '../reference/training';
import { addon, expectNativeError, randn, relError } from '../helpers';
import { tinyConfig } from './tiny-config';

interface Built {
  model: NativeModel; params: Float32Array; grads: Float32Array; layout: ReturnType<typeof addon.modelLayout>;
}

function build(config: ModelConfig, seed = 3, weightScale = 1): Built {
  const layout = addon.modelLayout(config);
  const n = layout.totalParams;
  const params = new Float32Array(n), grads = new Float32Array(n);
  addon.initParams({ config, params, seed });
  // Larger weights than the 0.02 initialisation give gradients well above finite-difference noise.
  for (const t of layout.tensors) {
    if (t.decay) for (let i = t.offset; i < t.offset + t.size; i++) params[i] *= weightScale;
  }
  const model = addon.createModel({ config, params, grads, adamM: new Float32Array(n), adamV: new Float32Array(n) });
  return { model, params, grads, layout };
}

const B = 2, T = 5;
const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % 17);
const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 5 + 1) % 17);

describe('model layout', () => {
  test('names, shapes and order follow DESIGN.md §3; routers absent with one expert', () => {
    const L = addon.modelLayout(tinyConfig('dsmoe'));
    const names = L.tensors.map((t) => t.name);
    expect(names.slice(0, 11)).toEqual([
      'embed.weight', 'layers.0.attn_norm.weight', 'layers.0.attn.router.weight', 'layers.0.attn.q_proj.weight',
      'layers.0.attn.k_proj.weight', 'layers.0.attn.v_proj.weight', 'layers.0.attn.o_proj.weight',
      'layers.0.mlp_norm.weight', 'layers.0.mlp.router.weight', 'layers.0.mlp.up_proj.weight',
      'layers.0.mlp.down_proj.weight']);
    expect(names.slice(-2)).toEqual(['final_norm.weight', 'lm_head.weight']);
    const shape = (n: string) => L.tensors.find((t) => t.name === n)!.shape;
    expect(shape('layers.1.attn.q_proj.weight')).toEqual([3, 8, 8]);
    expect(shape('layers.1.attn.k_proj.weight')).toEqual([4, 8]);
    expect(shape('layers.1.attn.o_proj.weight')).toEqual([3, 8, 8]);
    expect(shape('layers.1.mlp.up_proj.weight')).toEqual([3, 6, 8]);
    expect(shape('layers.1.mlp.down_proj.weight')).toEqual([3, 8, 6]);
    let offset = 0;
    for (const t of L.tensors) {
      expect(t.offset).toBe(offset);
      expect(t.size).toBe(t.shape.reduce((a, b) => a * b, 1));
      offset += t.size;
    }
    expect(L.totalParams).toBe(offset);
    expect(L.nonEmbeddingParams).toBe(offset - 2 * 17 * 8);
    const dense = addon.modelLayout(tinyConfig('dense', { tie_embeddings: true }));
    expect(dense.tensors.some((t) => t.name.includes('router'))).toBe(false);
    expect(dense.tensors.some((t) => t.name === 'lm_head.weight')).toBe(false);
  });

  test('router_hidden: a two-layer router (hidden [h, D], output [E, h]) where router.weight was', () => {
    const lin = addon.modelLayout(tinyConfig('dsmoe'));
    expect(addon.modelLayout(tinyConfig('dsmoe', { router_hidden: 0 }))).toEqual(lin);  // 0 = absent = linear
    const L = addon.modelLayout(tinyConfig('dsmoe', { router_hidden: 5 }));
    expect(L.tensors.map((t) => t.name).slice(0, 13)).toEqual([
      'embed.weight', 'layers.0.attn_norm.weight',
      'layers.0.attn.router.hidden.weight', 'layers.0.attn.router.output.weight',
      'layers.0.attn.q_proj.weight', 'layers.0.attn.k_proj.weight', 'layers.0.attn.v_proj.weight',
      'layers.0.attn.o_proj.weight', 'layers.0.mlp_norm.weight',
      'layers.0.mlp.router.hidden.weight', 'layers.0.mlp.router.output.weight',
      'layers.0.mlp.up_proj.weight', 'layers.0.mlp.down_proj.weight']);
    const shape = (n: string) => L.tensors.find((x) => x.name === n)!.shape;
    for (const kind of ['attn', 'mlp'])
      expect([shape(`layers.1.${kind}.router.hidden.weight`), shape(`layers.1.${kind}.router.output.weight`)])
        .toEqual([[5, 8], [3, 5]]);
    expect(L.tensors.filter((x) => x.name.includes('router')).every((x) => x.decay)).toBe(true);
    expect(L.tensors.some((x) => x.name.endsWith('router.weight'))).toBe(false);
    // Per layer and kind the linear E·D = 24 becomes h·D + E·h = 40 + 15.
    expect(L.totalParams - lin.totalParams).toBe(2 * 2 * (55 - 24));
    // One expert: no router, whatever router_hidden says.
    expect(addon.modelLayout(tinyConfig('dense', { router_hidden: 5 })))
      .toEqual(addon.modelLayout(tinyConfig('dense')));
  });

  test('initialisation: linear unchanged by router_hidden 0; two-layer: hidden N(0, 1/D), output N(0, 0.02²)', () => {
    const a = build(tinyConfig('dsmoe'), 9).params, b = build(tinyConfig('dsmoe', { router_hidden: 0 }), 9).params;
    expect(b).toEqual(a);
    const { params, layout } = build(tinyConfig('dsmoe', { router_hidden: 64, d_model: 32 }), 9);
    for (const t of layout.tensors.filter((x) => x.name.includes('router'))) {
      const v = params.subarray(t.offset, t.offset + t.size);
      const std = Math.sqrt(v.reduce((s, x) => s + x * x, 0) / v.length);
      const want = t.name.endsWith('hidden.weight') ? 1 / Math.sqrt(32) : 0.02;
      expect(Math.abs(std / want - 1)).toBeLessThan(0.15);
    }
  });
});

describe('the training forward against the double-precision reference (test/reference/training.ts)', () => {
  // The model's own evaluate() is the judge of the finite-difference checks below; this is the judge
  // of evaluate() itself: logits, LM loss, auxiliary loss and router entropies from an independent
  // forward. smoe: top-k by raw S (not renormalised) and the switch loss E·Σ f_e·P_e weighted by
  // switch_alpha; dsmoe: every expert by S and α·L_MI. All α are set here, none from a preset.
  const cases: [string, ModelConfig][] = [
    ['smoe, top-2 of 3', tinyConfig('smoe')],
    ['smoe, top-1 of 3', tinyConfig('smoe', {
      training: { mode: 'smoe', mi_alpha_att: 0.05, mi_alpha_mlp: 0.07, top_k: 1, switch_alpha: 0.03 },
    })],
    ['smoe, top-2 of 4 MLP experts, top-2 of 2 attention experts, two-layer routers (h 5)', tinyConfig('smoe', {
      router_hidden: 5,
      attention: { n_experts: 2, n_heads: 2, n_kv_heads: 1, head_dim: 4 },
      mlp: { n_experts: 4, expert_dim: 6, activation: 'gelu_tanh' },
      training: { mode: 'smoe', mi_alpha_att: 0, mi_alpha_mlp: 0, top_k: 2, switch_alpha: 0.5 } })],
    ['dsmoe', tinyConfig('dsmoe')],
    ['dsmoe, two-layer routers (h 5)', tinyConfig('dsmoe', { router_hidden: 5 })],
    ['dense', tinyConfig('dense')],
  ];
  test.each(cases)('%s: logits, LM loss, auxiliary loss and entropies = the reference', (_, cfg) => {
    const { model, params, layout } = build(cfg, 13, 4);
    const seqs = [Array.from(tokens.subarray(0, T)), Array.from(tokens.subarray(T))];
    const tgts = [Array.from(targets.subarray(0, T)), Array.from(targets.subarray(T))];
    const ref = trainingForwardRef(cfg, layout, params, seqs, tgts);
    if (cfg.training.mode === 'smoe') {
      // A near-tie between the k-th and (k+1)-th expert could flip between fp32 and double.
      expect(topkMargin(ref.attProbs, Math.min(cfg.training.top_k, cfg.attention.n_experts))).toBeGreaterThan(1e-4);
      expect(topkMargin(ref.mlpProbs, Math.min(cfg.training.top_k, cfg.mlp.n_experts))).toBeGreaterThan(1e-4);
    }
    const logits = new Float32Array(B * T * cfg.vocab_size);
    model.forward({ tokens, batch: B, seq: T, logits });
    expect(relError(logits, Float64Array.from(ref.logits.flat(2)))).toBeLessThan(1e-5);
    const s = model.evaluate({ tokens, targets, batch: B, seq: T });
    const rel = (got: number, want: number) => Math.abs(got - want) / Math.max(Math.abs(want), 1e-12);
    expect(rel(s.lmLoss, ref.lmLoss)).toBeLessThan(1e-5);
    if (cfg.training.mode === 'dense') expect(s.auxLoss).toBe(0);
    else {
      expect(ref.auxLoss).not.toBe(0);
      expect(rel(s.auxLoss, ref.auxLoss)).toBeLessThan(1e-4);
    }
    expect(rel(s.loss, ref.lmLoss + ref.auxLoss)).toBeLessThan(1e-5);
    for (const k of ['attEntropy', 'attCondEntropy', 'mlpEntropy', 'mlpCondEntropy'] as const)
      expect(Math.abs(s[k] - ref[k])).toBeLessThan(1e-5);
  });

  test('smoe differs from dsmoe on the same weights (the top-k mask is applied), ' +
    'and agrees with dense routing at top-k = E', () => {
    const d = build(tinyConfig('dsmoe'), 13, 4), sm = build(tinyConfig('smoe'), 13, 4);
    expect(sm.params).toEqual(d.params);
    const ld = new Float32Array(B * T * 17), ls = new Float32Array(B * T * 17), lk = new Float32Array(B * T * 17);
    d.model.forward({ tokens, batch: B, seq: T, logits: ld });
    sm.model.forward({ tokens, batch: B, seq: T, logits: ls });
    expect(relError(ls, ld)).toBeGreaterThan(1e-2);
    const all = build(tinyConfig('smoe', {
      training: { mode: 'smoe', mi_alpha_att: 0, mi_alpha_mlp: 0, top_k: 3, switch_alpha: 0.03 },
    }), 13, 4);
    all.model.forward({ tokens, batch: B, seq: T, logits: lk });
    expect(relError(lk, ld)).toBeLessThan(1e-6);
  });
});

describe('model gradients', () => {
  // Central differences of the fp32 forward with h = 1e-3: rounding of a loss ≈ 3 gives ≈ 1e-4
  // absolute noise in the difference quotient, hence the absolute floor; h is small enough that no
  // top-k choice flips in smoe mode (a flip is a real discontinuity of that loss).
  const H = 1e-3, ABS = 3e-4, REL = 2e-2;
  test.each(['dsmoe', 'smoe', 'dense'] as const)('%s: every element of every tensor matches ' +
    'finite differences', (mode) => {
    const { model, params, grads, layout } = build(tinyConfig(mode), 3, 8);
    const base = model.lossAndGrad({ tokens, targets, batch: B, seq: T });
    expect(Number.isFinite(base.loss)).toBe(true);
    const g = Float32Array.from(grads);
    const lossAt = () => model.evaluate({ tokens, targets, batch: B, seq: T }).loss;
    const failures: string[] = [];
    for (const t of layout.tensors)
      for (let j = 0; j < t.size; j++) {
        const i = t.offset + j, old = params[i];
        params[i] = old + H; const lp = lossAt();
        params[i] = old - H; const lm = lossAt();
        params[i] = old;
        const fd = (lp - lm) / (2 * H);
        if (!(Math.abs(fd - g[i]) <= ABS + REL * Math.abs(fd))) {
          failures.push(`${t.name}[${j}]: grad ${g[i]} vs fd ${fd}`);
        }
      }
    expect(failures).toEqual([]);
  });

  // Element-wise differences are noisy (ABS, REL above). Per tensor, the derivative along a unit
  // direction v sums the whole gradient: (L(θ + s·v) − L(θ − s·v)) / 2s with Richardson
  // extrapolation over s and s/2 (error O(s⁴)), against g·Δθ for the Δθ actually stored in fp32.
  // Along v = g/|g| it is |g|, the largest signal, so small relative errors of a whole tensor's
  // gradient (a wrong scale, a missing term) show; a seeded random v checks other directions.
  // smoe's loss jumps where a token's top-k set changes: on this data a step of 1e-2 along layer
  // 0's attention router crosses such a boundary, 5e-3 does not (smaller steps drown in fp32 noise).
  const DIR_S = 2e-2, DIR_S_SMOE = 5e-3, DIR_ABS = 2e-5, DIR_REL = 1e-3;
  test.each(['dsmoe', 'smoe', 'dense'] as const)('%s: every tensor\'s gradient matches directional ' +
    'finite differences within 0.1 %%', (mode) => {
    const { model, params, grads, layout } = build(tinyConfig(mode), 3, 8);
    model.lossAndGrad({ tokens, targets, batch: B, seq: T });
    const g = Float32Array.from(grads);
    const lossAt = () => model.evaluate({ tokens, targets, batch: B, seq: T }).loss;
    const failures: string[] = [];
    const lines: string[] = [];
    let seed = 1;
    for (const t of layout.tensors) {
      const gt = g.subarray(t.offset, t.offset + t.size);
      const gn = Math.sqrt(gt.reduce((a, x) => a + x * x, 0));
      const r = randn(t.size, seed++), rn = Math.sqrt(r.reduce((a, x) => a + x * x, 0));
      for (const [name, v] of [['g/|g|', gt.map((x) => x / gn)], ['random', r.map((x) => x / rn)]] as const) {
        if (name === 'g/|g|' && gn === 0) continue;
        const at = (s: number) => {
          const old = params.slice(t.offset, t.offset + t.size);
          let pred = 0;
          for (let i = 0; i < t.size; i++) params[t.offset + i] = old[i] + s * v[i];
          const lp = lossAt();
          for (let i = 0; i < t.size; i++) pred += gt[i] * (params[t.offset + i] - old[i]);
          for (let i = 0; i < t.size; i++) params[t.offset + i] = old[i] - s * v[i];
          const lm = lossAt();
          for (let i = 0; i < t.size; i++) pred -= gt[i] * (params[t.offset + i] - old[i]);
          params.set(old, t.offset);
          return { fd: (lp - lm) / (2 * s), pred: pred / (2 * s) };
        };
        const step = mode === 'smoe' ? DIR_S_SMOE : DIR_S;
        const a = at(step), b = at(step / 2);
        const fd = (4 * b.fd - a.fd) / 3, pred = (4 * b.pred - a.pred) / 3;
        lines.push(`${t.name} ${name}: fd ${fd.toExponential(6)} pred ${pred.toExponential(6)} ` +
          `rel ${((fd - pred) / Math.abs(fd)).toExponential(2)}`);
        if (!(Math.abs(fd - pred) <= DIR_ABS + DIR_REL * Math.abs(fd))) {
          failures.push(`${t.name} along ${name}: g·v ${pred} vs fd ${fd}`);
        }
      }
    }
    if (process.env.DSMOE_TEST_VERBOSE) console.log(lines.join('\n'));
    expect(failures).toEqual([]);
  });

  // Two-layer routers (router_hidden = 5, an awkward width): every element of layer 0's router
  // tensors and three of every other tensor. The MLP uses gelu_tanh so that the router's exact-erf
  // GELU is not the MLP's. The hidden weight keeps its N(0, 1/D) initialisation (×8 would saturate
  // the GELU) and the output weight gets 4× more (std 0.64): with the 0.16 of the other weights the
  // router gradients sit near the finite-difference noise floor, and the check would say little.
  test.each(['dsmoe', 'smoe', 'dense'] as const)('%s, router_hidden 5: gradients match finite differences', (m) => {
    const cfg = tinyConfig(m, { router_hidden: 5 });
    cfg.mlp.activation = 'gelu_tanh';
    const { model, params, grads, layout } = build(cfg, 4, 8);
    for (const t of layout.tensors.filter((x) => x.name.includes('router')))
      for (let i = t.offset; i < t.offset + t.size; i++) params[i] *= t.name.endsWith('hidden.weight') ? 1 / 8 : 4;
    expect(layout.tensors.filter((t) => t.name.includes('router')).length).toBe(m === 'dense' ? 0 : 8);
    const base = model.lossAndGrad({ tokens, targets, batch: B, seq: T });
    expect(Number.isFinite(base.loss)).toBe(true);
    const g = Float32Array.from(grads);
    const lossAt = () => model.evaluate({ tokens, targets, batch: B, seq: T }).loss;
    const failures: string[] = [];
    let routerChecks = 0, routerNonZero = 0;
    for (const t of layout.tensors) {
      const all = t.name.startsWith('layers.0.') && t.name.includes('router');
      for (const j of all ? Array.from({ length: t.size }, (_, k) => k) : [0, Math.floor(t.size / 3), t.size - 1]) {
        const i = t.offset + j, old = params[i];
        params[i] = old + H; const lp = lossAt();
        params[i] = old - H; const lm = lossAt();
        params[i] = old;
        const fd = (lp - lm) / (2 * H);
        if (!(Math.abs(fd - g[i]) <= ABS + REL * Math.abs(fd))) failures.push(`${t.name}[${j}]: ${g[i]} vs fd ${fd}`);
        if (all) { routerChecks++; if (Math.abs(fd) > 3 * ABS) routerNonZero++; }
      }
    }
    expect(failures).toEqual([]);
    if (m !== 'dense') {
      expect(routerChecks).toBe(2 * (5 * 8 + 3 * 5));
      // The comparison means something only if most router gradients are well above the noise floor.
      expect(routerNonZero).toBeGreaterThan(routerChecks / 2);
    }
  });

  test('the auxiliary loss is α times the MI loss −H(e) + H(e|X) summed over layers', () => {
    const cfg = tinyConfig('dsmoe');
    const { model } = build(cfg, 5, 8);
    const s = model.evaluate({ tokens, targets, batch: B, seq: T });
    const L = cfg.n_layers;
    const expected = cfg.training.mi_alpha_att * L * (s.attCondEntropy - s.attEntropy) +
      cfg.training.mi_alpha_mlp * L * (s.mlpCondEntropy - s.mlpEntropy);
    expect(s.auxLoss).toBeCloseTo(expected, 10);
    expect(s.loss).toBeCloseTo(s.lmLoss + s.auxLoss, 12);
    // H(e|X) ≤ H(e) ≤ log E for any router (conditioning cannot raise entropy).
    expect(s.attCondEntropy).toBeLessThanOrEqual(s.attEntropy + 1e-9);
    expect(s.attEntropy).toBeLessThanOrEqual(Math.log(3) + 1e-9);
    const none = build({ ...cfg, training: { ...cfg.training, mi_alpha_att: 0, mi_alpha_mlp: 0 } }, 5, 8).model;
    const s0 = none.evaluate({ tokens, targets, batch: B, seq: T });
    expect(s0.auxLoss).toBe(0);
    expect(s0.lmLoss).toBeCloseTo(s.lmLoss, 12);
  });

  test('gradient accumulation over micro-batches equals the mean of their gradients', () => {
    const { model, grads } = build(tinyConfig('dsmoe'), 7, 4);
    const tok2 = Int32Array.from([...tokens, ...tokens.map((x) => (x + 3) % 17)]);
    const tgt2 = Int32Array.from([...targets, ...targets.map((x) => (x + 5) % 17)]);
    const both = model.lossAndGrad({ tokens: tok2, targets: tgt2, batch: B, seq: T, micro: 2 });
    const gBoth = Float32Array.from(grads);
    const a = model.lossAndGrad({
      tokens: tok2.subarray(0, B * T), targets: tgt2.subarray(0, B * T), batch: B, seq: T,
    });
    const gA = Float32Array.from(grads);
    const b = model.lossAndGrad({ tokens: tok2.subarray(B * T), targets: tgt2.subarray(B * T), batch: B, seq: T });
    expect(both.loss).toBeCloseTo((a.loss + b.loss) / 2, 6);
    for (let i = 0; i < grads.length; i++) expect(gBoth[i]).toBeCloseTo((gA[i] + grads[i]) / 2, 6);
  });
});

describe('dense and MoE compute the same function when they should', () => {
  test('a dense model equals a dsmoe model whose experts are copies and whose routers are uniform', () => {
    const E = 3;
    const denseCfg = tinyConfig('dense');
    const moeCfg = tinyConfig('dsmoe', {
      attention: { n_experts: E, n_heads: 2, n_kv_heads: 1, head_dim: 4 },
      mlp: { n_experts: E, expert_dim: 6, activation: 'gelu' },
    });
    const d = build(denseCfg, 11, 4), m = build(moeCfg, 12, 1);
    const get = (b: Built, name: string) => {
      const t = b.layout.tensors.find((x) => x.name === name)!;
      return b.params.subarray(t.offset, t.offset + t.size);
    };
    for (const t of m.layout.tensors) {
      const dst = get(m, t.name);
      if (t.name.includes('router')) dst.fill(0); // softmax(0) = uniform 1/E, and Σ_e (1/E)·y = y
      else if (/q_proj|o_proj|up_proj|down_proj/.test(t.name)) {
        const src = get(d, t.name);
        for (let e = 0; e < E; e++) dst.set(src, e * src.length); // every expert a copy of the dense one
      } else dst.set(get(d, t.name));
    }
    const V = denseCfg.vocab_size;
    const ld = new Float32Array(B * T * V), lm = new Float32Array(B * T * V);
    d.model.forward({ tokens, batch: B, seq: T, logits: ld });
    m.model.forward({ tokens, batch: B, seq: T, logits: lm });
    let maxDiff = 0, maxAbs = 0;
    for (let i = 0; i < ld.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(ld[i] - lm[i]));
      maxAbs = Math.max(maxAbs, Math.abs(ld[i]));
    }
    expect(maxDiff / maxAbs).toBeLessThan(1e-5);
  });

  test('so does one whose two-layer routers have a zero output weight and a random hidden weight (upcycling)', () => {
    const E = 3;
    const d = build(tinyConfig('dense'), 11, 4), m = build(tinyConfig('dsmoe', { router_hidden: 6 }), 12, 4);
    const get = (b: Built, name: string) => {
      const t = b.layout.tensors.find((x) => x.name === name)!;
      return b.params.subarray(t.offset, t.offset + t.size);
    };
    for (const t of m.layout.tensors) {
      const dst = get(m, t.name);
      if (t.name.endsWith('router.output.weight')) dst.fill(0);
      else if (t.name.endsWith('router.hidden.weight')) expect(dst.some((x) => x !== 0)).toBe(true);
      else if (/q_proj|o_proj|up_proj|down_proj/.test(t.name)) {
        const src = get(d, t.name);
        for (let e = 0; e < E; e++) dst.set(src, e * src.length);
      } else dst.set(get(d, t.name));
    }
    const V = 17, ld = new Float32Array(B * T * V), lm = new Float32Array(B * T * V);
    d.model.forward({ tokens, batch: B, seq: T, logits: ld });
    m.model.forward({ tokens, batch: B, seq: T, logits: lm });
    let maxDiff = 0, maxAbs = 0;
    for (let i = 0; i < ld.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(ld[i] - lm[i]));
      maxAbs = Math.max(maxAbs, Math.abs(ld[i]));
    }
    expect(maxDiff / maxAbs).toBeLessThan(1e-5);
  });

  test('a zero output weight still gets a gradient from a random hidden weight, not from a zero one', () => {
    // Upcycled experts differ, so their outputs pull S apart: dL/dWout = dsᵀ·gelu(x·Whᵀ), which is
    // zero when Wh = 0 (gelu(0) = 0), and dL/dWh goes through Wout = 0 in any case.
    const maxAbs = (b: Built, suffix: string) => Math.max(...b.layout.tensors.filter((t) => t.name.endsWith(suffix))
      .flatMap((t) => Array.from(b.grads.subarray(t.offset, t.offset + t.size), Math.abs)));
    const run = (zeroHidden: boolean) => {
      const b = build(tinyConfig('dsmoe', { router_hidden: 6 }), 12, 4);
      for (const t of b.layout.tensors)
        if (t.name.endsWith('router.output.weight') || (zeroHidden && t.name.endsWith('router.hidden.weight')))
          b.params.fill(0, t.offset, t.offset + t.size);
      b.model.lossAndGrad({ tokens, targets, batch: B, seq: T });
      return b;
    };
    const random = run(false), zero = run(true);
    expect(maxAbs(random, 'router.output.weight')).toBeGreaterThan(1e-4);
    expect(maxAbs(random, 'router.hidden.weight')).toBe(0);
    expect(maxAbs(zero, 'router.output.weight')).toBe(0);
  });
});

describe('training', () => {
  test('loss falls on a small repeated corpus, and the same seed gives the same losses', async () => {
    const cfg = tinyConfig('dsmoe', { vocab_size: 17 });
    const text = Int32Array.from({ length: 400 }, (_, i) => [1, 2, 3, 5, 8, 13, 4, 9, 16, 7][i % 10]);
    const run = async () => {
      const { model } = build(cfg, 21);
      const losses: number[] = [];
      for (let step = 1; step <= 150; step++) {
        const start = (step * 37) % (text.length - T - 1);
        const tk = Int32Array.from({ length: B * T }, (_, i) => text[start + i + Math.floor(i / T)]);
        const tg = Int32Array.from({ length: B * T }, (_, i) => text[start + i + Math.floor(i / T) + 1]);
        const s = await model.trainStepAsync({ tokens: tk, targets: tg, batch: B, seq: T, lr: 1e-2, beta1: 0.9,
          beta2: 0.95, eps: 1e-8, weightDecay: 0.01, clip: 1, step });
        losses.push(s.lmLoss);
      }
      return losses;
    };
    const a = await run();
    expect(a[a.length - 1]).toBeLessThan(0.3 * a[0]);
    expect(await run()).toEqual(a);
  });

  test('a non-finite loss leaves the weights untouched', async () => {
    const { model, params } = build(tinyConfig('dsmoe'), 2);
    params[5] = NaN; // a poisoned embedding value
    const before = Float32Array.from(params);
    const s = await model.trainStepAsync({
      tokens, targets, batch: B, seq: T, lr: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8,
      weightDecay: 0.01, clip: 1, step: 1,
    });
    expect(Number.isFinite(s.loss)).toBe(false);
    expect(Buffer.from(params.buffer).equals(Buffer.from(before.buffer))).toBe(true);
  });

  test('a model refuses a second call while one is running', async () => {
    const { model } = build(tinyConfig('dsmoe'), 2);
    const p = model.evaluateAsync({ tokens, targets, batch: B, seq: T });
    expectNativeError(() => model.evaluate({ tokens, targets, batch: B, seq: T }), 'Error', /busy/);
    await p;
    expect(Number.isFinite(model.evaluate({ tokens, targets, batch: B, seq: T }).loss)).toBe(true);
  });
});

describe('model bad input', () => {
  const cfg = tinyConfig('dsmoe');
  test.each([
    ['odd head_dim', { ...cfg, attention: { ...cfg.attention, head_dim: 3 } }, /attention.head_dim must be even/],
    ['heads not a multiple of kv heads', { ...cfg, attention: { ...cfg.attention, n_heads: 3, n_kv_heads: 2 } },
      /n_heads \(3\) must be a multiple of attention.n_kv_heads \(2\)/],
    ['zero experts', { ...cfg, mlp: { ...cfg.mlp, n_experts: 0 } }, /mlp.n_experts must be in \[1/],
    ['unknown mode', { ...cfg, training: { ...cfg.training, mode: 'sparse' as TrainingMode } },
      /training.mode must be 'dsmoe', 'smoe' or 'dense'/],
    ['dense mode with experts', { ...cfg, training: { ...cfg.training, mode: 'dense' as TrainingMode } },
      /'dense' needs attention.n_experts = mlp.n_experts = 1/],
    ['unknown activation', { ...cfg, mlp: { ...cfg.mlp, activation: 'relu' as never } },
      /mlp.activation must be 'gelu' or 'gelu_tanh'/],
    ['negative router_hidden', { ...cfg, router_hidden: -1 }, /config.router_hidden must be in \[0, 65536\], got -1/],
    ['huge router_hidden', { ...cfg, router_hidden: 65537 }, /config.router_hidden must be in \[0, 65536\]/],
  ])('%s', (_n, bad, message) => {
    expectNativeError(() => addon.modelLayout(bad as ModelConfig), 'RangeError', message);
  });

  test('missing fields and wrong types name the field', () => {
    const { d_model: _drop, ...noWidth } = cfg;
    expectNativeError(() => addon.modelLayout(noWidth as ModelConfig), 'TypeError',
      /config.d_model must be an integer/);
    expectNativeError(() => addon.modelLayout({ ...cfg, attention: 5 } as unknown as ModelConfig), 'TypeError',
      /config.attention must be an object/);
    for (const bad of [2.5, '8'])
      expectNativeError(() => addon.modelLayout({ ...cfg, router_hidden: bad as number }), 'TypeError',
        /config.router_hidden must be an integer/);
  });

  test('token ids outside the vocabulary, sequences past max_seq_len and short buffers are RangeErrors', () => {
    const { model } = build(cfg);
    const bad = Int32Array.from(tokens); bad[4] = 17;
    expectNativeError(() => model.evaluate({ tokens: bad, targets, batch: B, seq: T }), 'RangeError',
      /tokens\[4\] = 17 is outside the vocabulary \[0, 17\)/);
    const badT = Int32Array.from(targets); badT[0] = 99;
    expectNativeError(() => model.evaluate({ tokens, targets: badT, batch: B, seq: T }), 'RangeError',
      /targets\[0\] = 99/);
    expectNativeError(() => model.evaluate({ tokens, targets, batch: 1, seq: 17 }), 'RangeError',
      /seq must be in \[1, 16\]/);
    expectNativeError(() => model.evaluate({ tokens: tokens.subarray(1), targets, batch: B, seq: T }), 'RangeError',
      /tokens has 9 elements but needs at least 10/);
    expectNativeError(() => addon.createModel({
      config: cfg, params: new Float32Array(3), grads: new Float32Array(3), adamM: new Float32Array(3),
      adamV: new Float32Array(3),
    }), 'RangeError', /createModel: params has 3 elements/);
    const call = (model.evaluate as unknown as (this: unknown, a: unknown) => unknown);
    expectNativeError(() => call.call({}, { tokens, targets, batch: B, seq: T }), 'TypeError',
      /must be called on a model/);
  });
});
