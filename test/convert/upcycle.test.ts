// Upcycling a dense checkpoint into DS-MoE (dsmoe convert --from-dense): the same logits at
// initialisation (with the head regrouping that keeps each query head's kv head), a resumable
// checkpoint whose further training lowers the loss and specialises the routers, and bad input.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadCheckpoint } from '../../src/checkpoint/checkpoint';
import { runConvert } from '../../src/cli/commands/convert';
import { denseHeadOf, upcycleCheckpoint, upcycledConfig, upcycleParams } from '../../src/convert/upcycle';
import { layoutFromConfig } from '../../src/model/layout';
import { train, type StepRecord } from '../../src/train/trainer';
import { logits, nativeModel, trainTiny, windows, SEQ, type Trained } from './trained';

let t: Trained;
beforeAll(async () => {
  t = await trainTiny();
});
const out = (name: string) => path.join(t.fx.dir, name);

function relDiff(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(a[i])); }
  return d / m;
}

describe('upcycling a dense checkpoint', () => {
  test('head regrouping: a bijection that keeps every query head on its kv head', () => {
    for (const [Ht, G, N] of [[8, 2, 4], [8, 2, 2], [8, 2, 1], [32, 4, 8], [32, 2, 16], [12, 3, 2], [6, 1, 3]]) {
      const H = Ht / N, seen = new Set<number>();
      for (let e = 0; e < N; e++) for (let j = 0; j < H; j++) {
        const h = denseHeadOf(e, j, H, G, Ht);
        expect(Math.floor(h / (Ht / G))).toBe(Math.floor(j / (H / G))); // dense g(h) = expert g(j)
        seen.add(h);
      }
      expect(seen.size).toBe(Ht);
      expect(Math.max(...seen)).toBe(Ht - 1);
    }
  });

  test.each([[4, 4], [2, 4], [4, 1], [1,
    8]])('%i attention × %i MLP experts: the same logits as the dense checkpoint', (N, M) => {
    const dst = out(`up-${N}-${M}`);
    const r = upcycleCheckpoint(t.dense, dst, { attExperts: N, mlpExperts: M });
    const dense = loadCheckpoint(t.dense), up = loadCheckpoint(dst, { requireTraining: true });
    expect(up.kind).toBe('training');
    expect(up.optimizer).toBeUndefined();
    expect(up.trainerState!.step).toBe(0);
    expect(up.config.training.mode).toBe('dsmoe');
    expect(up.config.attention).toEqual({ n_experts: N, n_heads: 8 / N, n_kv_heads: 2, head_dim: 8 });
    expect(up.config.mlp).toMatchObject({ n_experts: M, expert_dim: 256 / M });
    expect(r.headsPermuted).toBe(N > 1);
    for (const tl of up.layout.tensors) if (tl.name.includes('router')) expect(up.params.subarray(tl.offset, tl.offset +
      tl.size).every((x) => x === 0)).toBe(true);
    const w = windows(t.fx, 4);
    const diff = relDiff(logits(dense, w.tokens, 4, SEQ), logits(up, w.tokens, 4, SEQ));
    console.log(`upcycled ${N}×${M}: max |Δlogit| / max |logit| = ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(1e-5);
  });

  test('two-layer routers (--router-hidden): zero output, seeded random hidden weights, the same logits', () => {
    const dst = out('up-rh');
    const s = { write: () => true } as unknown as NodeJS.WritableStream;
    runConvert([dst], { fromDense: t.dense, attentionExperts: 4, mlpExperts: 2, routerHidden: 12 }, s);
    const dense = loadCheckpoint(t.dense), up = loadCheckpoint(dst, { requireTraining: true });
    expect(up.config.router_hidden).toBe(12);
    const routers = up.layout.tensors.filter((x) => x.name.includes('router'));
    const perLayer = ['attn.router.hidden', 'attn.router.output', 'mlp.router.hidden', 'mlp.router.output'];
    expect(routers.map((x) => x.name)).toEqual([0, 1].flatMap((l) => perLayer.map((n) => `layers.${l}.${n}.weight`)));
    for (const tl of routers) {
      const v = up.params.subarray(tl.offset, tl.offset + tl.size);
      if (tl.name.endsWith('output.weight')) expect(v.every((x) => x === 0)).toBe(true);
      else expect(Math.abs(Math.sqrt(v.reduce((a, x) => a + x * x, 0) / v.length) * 8 - 1)).toBeLessThan(0.1); // 1/√D
    }
    const w = windows(t.fx, 4);
    expect(relDiff(logits(dense, w.tokens, 4, SEQ), logits(up, w.tokens, 4, SEQ))).toBeLessThan(1e-5);
    // Seeded: the same seed gives the same weights, another seed other hidden weights.
    const cfg = upcycledConfig(dense.config, { attExperts: 4, mlpExperts: 2, routerHidden: 12 });
    expect(upcycleParams(dense.config, dense.params, cfg)).toEqual(up.params);
    expect(upcycleParams(dense.config, dense.params, cfg, 2)).not.toEqual(up.params);
    expect(() => upcycledConfig(dense.config, { attExperts: 4, mlpExperts: 2, routerHidden: -1 }))
      .toThrow(/--router-hidden must be an integer ≥ 0/);
    expect(() => runConvert([t.dsmoe, out('z')], { routerHidden: 8 })).toThrow(/--router-hidden go with --from-dense/);
  });

  test('a contiguous head split would change the function (the regrouping matters when G > 1)', () => {
    const dense = loadCheckpoint(t.dense);
    const cfg = upcycledConfig(dense.config, { attExperts: 4, mlpExperts: 4 });
    const good = upcycleParams(dense.config, dense.params, cfg);
    // Same weights with heads assigned contiguously: expert e, head j ← dense head e·H + j.
    const bad = Float32Array.from(good);
    const Ld = layoutFromConfig(dense.config), Lm = layoutFromConfig(cfg);
    const D = 64, dh = 8, H = 2, Ht = 8, N = 4;
    for (const tl of Lm.tensors) {
      const src = Ld.tensors.find((x) => x.name === tl.name)!;
      if (tl.name.endsWith('q_proj.weight'))
        bad.set(dense.params.subarray(src.offset, src.offset + src.size), tl.offset);
      if (tl.name.endsWith('o_proj.weight'))
        for (let e = 0; e < N; e++) for (let j = 0; j < H; j++) for (let r = 0; r < D; r++) for (let k = 0; k < dh; k++)
          bad[tl.offset + e * D * H * dh + r * H * dh + j * dh + k] = N * dense.params[src.offset + r * Ht * dh +
            (e * H + j) * dh + k];
    }
    const w = windows(t.fx, 2);
    const ref = logits(dense, w.tokens, 2, SEQ);
    expect(relDiff(ref, logits({ config: cfg, params: good }, w.tokens, 2, SEQ))).toBeLessThan(1e-5);
    expect(relDiff(ref, logits({ config: cfg, params: bad }, w.tokens, 2, SEQ))).toBeGreaterThan(1e-3);
  });

  test('dsmoe train --resume continues it: a fresh AdamW, the loss falls and the routers specialise', async () => {
    const dst = out('up-train');
    upcycleCheckpoint(t.dense, dst, { attExperts: 4, mlpExperts: 4 });
    const w = windows(t.fx, 8);
    const stats = (dir: string) => {
      const ck = loadCheckpoint(dir);
      return nativeModel(ck.config, ck.params).evaluate({ tokens: w.tokens, targets: w.targets, batch: 8, seq: SEQ });
    };
    const before = stats(dst);
    expect(before.attCondEntropy).toBeCloseTo(Math.log(4), 5); // uniform routers
    expect(before.mlpCondEntropy).toBeCloseTo(Math.log(4), 5);
    const steps: StepRecord[] = [];
    const logs: string[] = [];
    await train({ resume: dst, steps: 40, cacheDir: t.fx.cacheDir, threads: 2 },
      { onStep: (s) => steps.push(s), onLog: (l) => logs.push(l) });
    expect(logs.some((l) => /no optimizer state \(step 0\): starting a fresh AdamW/.test(l))).toBe(true);
    expect(steps[0].step).toBe(1);
    expect(steps).toHaveLength(40);
    const after = stats(dst);
    const ck = loadCheckpoint(dst, { requireTraining: true });
    expect(ck.trainerState!.step).toBe(40);
    expect(ck.optimizer).toBeDefined();
    console.log(`upcycled 4×4, 40 dsmoe steps: held-out LM loss ${before.lmLoss.toFixed(4)} → ` +
      `${after.lmLoss.toFixed(4)}; `
      + `H(e|X) att ${before.attCondEntropy.toFixed(4)} → ${after.attCondEntropy.toFixed(4)}, mlp ` +
        `${before.mlpCondEntropy.toFixed(4)} → ${after.mlpCondEntropy.toFixed(4)} (log 4 = ${Math.log(4).toFixed(4)})`);
    expect(after.lmLoss).toBeLessThan(before.lmLoss);
    expect(after.attCondEntropy).toBeLessThan(before.attCondEntropy - 0.005);
    expect(after.mlpCondEntropy).toBeLessThan(before.mlpCondEntropy - 0.01);
  });

  // h = D = 64: AdamW moves each weight by about lr per step, so the router logits move about as fast
  // as through a linear router's D inputs only when h ≈ D (h = 16 moved H(e|X) 5–10× less in 30 steps).
  test('with two-layer routers, training from the upcycled checkpoint specialises the routers', async () => {
    const dst = out('up-rh-train');
    upcycleCheckpoint(t.dense, dst, { attExperts: 4, mlpExperts: 4, routerHidden: 64 });
    const w = windows(t.fx, 8);
    const stats = (dir: string) => {
      const ck = loadCheckpoint(dir);
      return nativeModel(ck.config, ck.params).evaluate({ tokens: w.tokens, targets: w.targets, batch: 8, seq: SEQ });
    };
    const before = stats(dst);
    expect(before.mlpCondEntropy).toBeCloseTo(Math.log(4), 5); // zero output weights: uniform
    await train({ resume: dst, steps: 30, cacheDir: t.fx.cacheDir, threads: 2 });
    const after = stats(dst);
    expect(loadCheckpoint(dst).config.router_hidden).toBe(64);
    console.log(`upcycled 4×4 with router_hidden 64, 30 dsmoe steps: held-out LM loss ${before.lmLoss.toFixed(4)} → `
      + `${after.lmLoss.toFixed(4)}; H(e|X) att ${after.attCondEntropy.toFixed(4)}, `
      + `mlp ${after.mlpCondEntropy.toFixed(4)}`);
    expect(after.lmLoss).toBeLessThan(before.lmLoss);
    expect(after.attCondEntropy).toBeLessThan(before.attCondEntropy - 0.005);
    expect(after.mlpCondEntropy).toBeLessThan(before.mlpCondEntropy - 0.005);
  });

  test('bad input: indivisible counts, kv heads, a non-dense checkpoint, out exists, missing folder', () => {
    const up = (N: number, M: number, o = out('bad'), from = t.dense) => () => upcycleCheckpoint(from, o,
      { attExperts: N, mlpExperts: M });
    expect(up(3, 4)).toThrow(/--attention-experts 3: the 8 query heads of .* cannot be split into 3 equal experts/);
    expect(up(8, 4)).toThrow(new RegExp(String.raw`--attention-experts 8: each expert would have 1 query heads, ` +
      String.raw`not a multiple of the 2 shared kv heads.*\(8 must divide 4\)`));
    expect(up(4, 3)).toThrow(/--mlp-experts 3: the MLP width 256 .* cannot be split into 3 equal experts/);
    expect(up(1, 1)).toThrow(/both 1/);
    expect(up(0, 4)).toThrow(/--attention-experts must be an integer ≥ 1, got 0/);
    expect(up(4, 4, out('bad'),
      t.dsmoe)).toThrow(/--from-dense needs a dense checkpoint .* has 4 attention and 4 MLP experts \(mode dsmoe\)/);
    expect(up(4, 4, out('bad'), out('missing'))).toThrow(/checkpoint folder not found/);
    expect(fs.existsSync(out('bad'))).toBe(false);
    upcycleCheckpoint(t.dense, out('twice'), { attExperts: 2, mlpExperts: 2 });
    expect(up(2, 2, out('twice'))).toThrow(/already exists; add --force/);
    expect(() => runConvert([out('twice')], { fromDense: t.dense,
      attentionExperts: 4 })).toThrow(/needs --attention-experts N and --mlp-experts M/);
    expect(() => runConvert([out('twice')], { fromDense: t.dense, attentionExperts: 4, mlpExperts: 4,
      dtype: 'bf16' })).toThrow(/--dtype does not apply/);
    expect(() => runConvert([t.dense, out('twice')], { fromDense: t.dense, attentionExperts: 4,
      mlpExperts: 4 })).toThrow(/--from-dense takes one folder/);
    const r = runConvert([out('twice')], { fromDense: t.dense, attentionExperts: 4, mlpExperts: 4, force: true },
      { write: () => true } as unknown as NodeJS.WritableStream);
    expect(loadCheckpoint(r.out).config.attention.n_experts).toBe(4);
  });
});
