// `dsmoe bench <checkpoint…>` on tiny checkpoints trained here for a few steps: perplexity against
// the training model's evaluate, active parameters against hand counts, sweep parsing and dedupe,
// well-formed charts, and clear errors.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadCheckpoint } from '../../src/checkpoint/checkpoint';
import {
  defaultSweep, formatCompare, modelNames, parseSweep, resolveSweep, runCompare, selectEvalText, writeCompareOutputs,
  type CompareResult,
} from '../../src/bench/compare';
import { evalBatches } from '../../src/data/sampler';
import { perplexityChart, usageHeatmap } from '../../src/bench/svg';
import { getPreset, paramCount } from '../../src/model/config';
import { train } from '../../src/train/trainer';
import { makeFixture, type Fixture } from '../train/fixtures';
import { addon } from '../helpers';
import { parseXml } from './xml';

let fx: Fixture;
let moeDir: string, denseDir: string;
let result: CompareResult;

const trainTiny = (mode: string, out: string) => train({
  preset: 'tiny', mode, data: [fx.corpus], tokenizer: fx.tokenizer, cacheDir: fx.cacheDir, out,
  overrides: { seq_len: 16 }, batchSize: 4, steps: 6, lr: 3e-3, warmup: 2, evalInterval: 0, evalBatches: 2,
  saveInterval: 0, seed: 3, threads: 2,
});

const opts = () => ({ cacheDir: fx.cacheDir, maxWindows: 8, batch: 4, decodePrompts: 1, decodeTokens: 2, rounds: 1 });

beforeAll(async () => {
  fx = makeFixture();
  moeDir = path.join(fx.dir, 'tiny-moe');
  denseDir = path.join(fx.dir, 'tiny-dense');
  await trainTiny('dsmoe', moeDir);
  await trainTiny('dense', denseDir);
  result = await runCompare({ checkpoints: [moeDir, denseDir], sweep: 'dense,topk:1,threshold:0.48', ...opts() });
});

describe('routing sweeps', () => {
  const tiny = getPreset('tiny').config; // 4 attention and 4 MLP experts

  test('default sweep: dense, topk:{1, 2, E/4, E/2} deduplicated and ≤ E, ' +
    'the thresholds; dense models get only dense', () => {
    expect(defaultSweep(tiny).map((s) => s.strategy)).toEqual(['dense', 'topk:1', 'topk:2', 'threshold:0.1',
      'threshold:0.2', 'threshold:0.3',
      'threshold:0.48', 'threshold:0.6', 'threshold:0.8', 'threshold:1']);
    const big = { ...tiny, attention: { ...tiny.attention, n_experts: 8 }, mlp: { ...tiny.mlp, n_experts: 16 } };
    expect(defaultSweep(big).filter((s) => s.strategy.startsWith('topk')).map((s) => s.strategy)).toEqual(['topk:1',
      'topk:2', 'topk:4', 'topk:8']);
    // topk:8 covers all 8 attention experts: attention computes dense there.
    expect(resolveSweep(defaultSweep(big), big).map((r) => r.label)).toContain('att dense · mlp topk:8');
    const dense = getPreset('dense-1b').config;
    expect(resolveSweep(defaultSweep(dense), dense).map((r) => r.label)).toEqual(['dense']);
  });

  test('equivalent strategies collapse to dense and duplicates merge; dense always comes first', () => {
    const r = resolveSweep(parseSweep('topk:2,topk:4,topk:9,threshold:0,topk:2,mlp-only:topk:1,threshold:.5'), tiny);
    expect(r.map((x) => x.label)).toEqual(['dense', 'topk:2', 'att dense · mlp topk:1', 'threshold:0.5']);
    expect(r[2]).toMatchObject({ attention: 'dense', mlp: 'topk:1' });
  });

  test('bad sweep strings are clear errors', () => {
    expect(() => parseSweep('')).toThrow(/empty/);
    expect(() => parseSweep('dense,,topk:1')).toThrow(/empty item/);
    expect(() => parseSweep('topk:0')).toThrow(/"topk:0".*K must be/);
    expect(() => parseSweep('dense,fastest')).toThrow(/item "fastest": "fastest" is not a routing strategy/);
    expect(() => parseSweep('threshold:-1'))
      .toThrow(/item "threshold:-1": "threshold:-1": ε must be a finite number ≥ 0, got "-1"/);
  });

  test('model names: folder names, made unique', () => {
    expect(modelNames(['a/x', 'b/y'])).toEqual(['x', 'y']);
    expect(modelNames(['a/x', 'b/x', 'b/x'])).toEqual(['a/x', 'b/x', 'b/x#2']);
  });
});

describe('dsmoe bench on trained checkpoints', () => {
  test('the evaluation text is the recorded held-out split (shared tokenizer and split)', () => {
    expect(result.data.source).toBe('checkpoint-split');
    expect(result.data.description).toMatch(/recorded held-out split/);
    expect(result.data.seqLen).toBe(16);
    expect(result.data.windows).toBeGreaterThan(0);
    expect(result.data.windows % 4).toBe(0);
  });

  test('dense-routing perplexity equals createModel(...).evaluate on the same windows', async () => {
    const cks = [moeDir, denseDir].map((d) => loadCheckpoint(d, { optimizer: false }));
    const text = await selectEvalText(cks, ['tiny-moe', 'tiny-dense'], { cacheDir: fx.cacheDir });
    // --max-windows 8 in whole batches of 4: the first windows of 16 + 1 tokens, here as one batch.
    const count = result.data.windows;
    expect(count).toBeLessThanOrEqual(8);
    const [b] = [...evalBatches(text.tokens.subarray(0, count * 16 + 1), { batchSize: count, seqLen: 16 })];
    for (const ck of cks) {
      const n = ck.layout.totalParams;
      const model = addon.createModel({ config: ck.config, params: ck.params, grads: new Float32Array(n),
        adamM: new Float32Array(n), adamV: new Float32Array(n) });
      const s = model.evaluate({ tokens: b.inputs, targets: b.targets, batch: count, seq: 16 });
      const row = result.rows.find((r) => r.model === path.basename(ck.dir) && r.label === 'dense')!;
      expect(Math.abs(row.ppl - Math.exp(s.lmLoss)) / Math.exp(s.lmLoss)).toBeLessThan(1e-4);
      expect(row.tokens).toBe(count * 16);
    }
  });

  test('active parameters: dense = the config count, topk:1 = a hand count; speed-ups are relative to dense', () => {
    const c = loadCheckpoint(moeDir, { optimizer: false }).config;
    const pc = paramCount(c), l = pc.perLayer, L = c.n_layers;
    const rows = result.rows.filter((r) => r.model === 'tiny-moe');
    expect(rows.map((r) => r.label)).toEqual(['dense', 'topk:1', 'threshold:0.48']);
    const dense = rows[0], top1 = rows[1];
    expect(dense.activeParamsPerToken).toBeCloseTo(pc.attention + pc.mlp, 6);
    expect(dense.activeExpertShare).toBeCloseTo(1, 12);
    const hand = L * (l.attnRouter + l.mlpRouter + l.kProj + l.vProj + (l.qProj + l.oProj) / c.attention.n_experts +
      (l.upProj + l.downProj) / c.mlp.n_experts);
    expect(top1.activeParamsPerToken).toBeCloseTo(hand, 6);
    expect(top1.activeExpertShare).toBeCloseTo(0.25, 12);
    expect(top1.attExpertsPerToken).toBeCloseTo(1, 12);
    expect(dense.decodeSpeedup).toBe(1);
    expect(dense.prefillSpeedup).toBe(1);
    // Usage shares: under topk:1 every token picks exactly one expert per layer.
    for (const layer of [...top1.attShare, ...top1.mlpShare]) expect(layer.reduce((a, b) => a + b, 0)).toBeCloseTo(1,
      12);
    const d = result.rows.filter((r) => r.model === 'tiny-dense');
    expect(d.map((r) => r.label)).toEqual(['dense']);
    for (const r of result.rows) {
      expect(r.prefillTokensPerS).toBeGreaterThan(0);
      expect(r.decodeTokensPerS).toBeGreaterThan(0);
      expect(Number.isFinite(r.ppl)).toBe(true);
    }
  });

  test('the table and the files: bench.json, a chart with both models, a heat map for the MoE model', () => {
    const table = formatCompare(result);
    expect(table).toMatch(/tiny-moe\s+dsmoe\s+\S+\s+topk:1/);
    expect(table).toMatch(/tiny-dense\s+dense/);
    const out = path.join(fx.dir, 'bench-out');
    const files = writeCompareOutputs(result, out);
    expect(JSON.parse(fs.readFileSync(files.json, 'utf8')).rows).toHaveLength(result.rows.length);
    const chart = parseXml(fs.readFileSync(files.chart, 'utf8'));
    expect(chart.filter((e) => e.attrs.class === 'legend-entry')).toHaveLength(2);
    expect(files.heatmaps).toEqual([path.join(out, 'experts-tiny-moe.svg')]);
    const heat = parseXml(fs.readFileSync(files.heatmaps[0], 'utf8'));
    expect(heat.filter((e) => e.attrs.class === 'cell')).toHaveLength(2 * 4 + 2 * 4);
  });

  test('--data files replace the held-out split', async () => {
    const r = await runCompare({ checkpoints: [denseDir], data: [fx.corpus], ...opts(), maxWindows: 4 });
    expect(r.data.source).toBe('files');
    expect(r.data.description).toMatch(/corpus\.txt/);
    expect(r.rows).toHaveLength(1);
  });

  test('bad input: no checkpoints, a missing folder, a bad sweep, bad numbers', async () => {
    await expect(runCompare({ checkpoints: [] })).rejects.toThrow(/at least one checkpoint/);
    await expect(runCompare({ checkpoints: [path.join(fx.dir,
      'nope')] })).rejects.toThrow(/checkpoint folder not found: .*nope/);
    await expect(runCompare({ checkpoints: [moeDir],
      sweep: 'dense,topk' })).rejects.toThrow(/--routing-sweep item "topk"/);
    await expect(runCompare({ checkpoints: [moeDir],
      maxWindows: 0 })).rejects.toThrow(/--max-windows must be a positive integer/);
    fs.mkdirSync(path.join(fx.dir, 'empty'), { recursive: true });
    await expect(runCompare({ checkpoints: [path.join(fx.dir, 'empty')] })).rejects.toThrow(/has no config\.json/);
  });
});

describe('SVG charts', () => {
  test('perplexity chart: well-formed, axis labels, one legend entry per model, escaped names', () => {
    const svg = perplexityChart([
      { name: 'a <&> "b"', points: [{ x: 2e6, y: 20, routing: 'dense' }, { x: 1e6, y: 22, routing: 'threshold:0.48' },
        { x: 0.5e6, y: 30, routing: 'topk:1' }] },
      { name: 'dense', points: [{ x: 2.1e6, y: 21, routing: 'dense' }] },
      { name: 'mixed', points: [{ x: 1.5e6, y: 500, routing: 'att dense · mlp topk:1' }] },
    ]);
    const els = parseXml(svg);
    expect(els[0]).toMatchObject({ name: 'svg' });
    expect(els[0].attrs.viewBox).toMatch(/^0 0 \d+ \d+$/);
    const texts = els.filter((e) => e.name === 'text').map((e) => e.text);
    expect(texts).toContain('active parameters per token (M)');
    expect(texts).toContain('perplexity (log scale)');
    expect(texts).toContain('a <&> "b"');
    expect(els.filter((e) => e.attrs.class === 'legend-entry')).toHaveLength(3);
    expect(els.filter((e) => e.attrs.class === 'marker').length).toBeGreaterThanOrEqual(5);
    // linear axis when the perplexities are close
    expect(parseXml(perplexityChart([{ name: 'm', points: [{ x: 1e6, y: 20, routing: 'dense' },
      { x: 0.5e6, y: 21, routing: 'topk:1' }] }]))
      .filter((e) => e.name === 'text').map((e) => e.text)).toContain('perplexity');
  });

  test('heat map: one rect per cell, panel titles, a colour scale', () => {
    const share = (L: number, E: number) => Array.from({ length: L }, (_, l) => Array.from({ length: E },
      (_, e) => ((l + e) % 5) / 4));
    const svg = usageHeatmap([{ title: 'attention (8 experts)', share: share(3, 8) },
      { title: 'MLP (32 experts)', share: share(3, 32) }], { title: 'usage <x>', subtitle: 's & t' });
    const els = parseXml(svg);
    expect(els.filter((e) => e.attrs.class === 'cell')).toHaveLength(3 * 8 + 3 * 32);
    const texts = els.filter((e) => e.name === 'text').map((e) => e.text);
    expect(texts).toEqual(expect.arrayContaining(['attention (8 experts)', 'MLP (32 experts)', 'usage <x>', 's & t',
      'share of tokens', '100%']));
    expect(els.filter((e) => e.attrs.class === 'scale-bar')).toHaveLength(1);
  });

  test('the checker rejects malformed XML', () => {
    expect(() => parseXml('<a><b></a>')).toThrow(/closes/);
    expect(() => parseXml('<a x=1/>')).toThrow(/not quoted/);
    expect(() => parseXml('<a>1 < 2</a>')).toThrow(/raw "<"|expected a name/);
    expect(() => parseXml('<a>&nbsp;</a>')).toThrow(/unknown entity/);
    expect(() => parseXml('<a/><b/>')).toThrow(/more than one root/);
    expect(() => parseXml('<a>')).toThrow(/unclosed/);
  });
});
