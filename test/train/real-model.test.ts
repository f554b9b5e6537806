// The training loop with the real native model (tiny preset, a generated corpus): exact resume in
// every mode, a real process stopped by SIGINT, and the saved checkpoint's meaning.
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { loadCheckpoint } from '../../src/checkpoint/checkpoint';
import { evalData, evaluateTokens } from '../../src/infer/eval';
import { loadInferenceModel } from '../../src/infer/load';
import { buildConfig } from '../../src/model/config';
import { layoutFromConfig } from '../../src/model/layout';
import { train, type EvalRecord, type StepRecord, type TrainOptions } from '../../src/train/trainer';
import { addon } from '../helpers';
import { makeFixture, type Fixture } from './fixtures';

let fx: Fixture;
beforeAll(() => {
  fx = makeFixture();
});

const base = (out: string, extra: Partial<TrainOptions> = {}): TrainOptions => ({
  preset: 'tiny', data: [fx.corpus], tokenizer: fx.tokenizer, cacheDir: fx.cacheDir, out,
  overrides: { seq_len: 16 }, batchSize: 4, steps: 10, lr: 3e-3, warmup: 2, evalInterval: 5, evalBatches: 2,
  saveInterval: 0, seed: 5, threads: 2, ...extra,
});

const key = (s: StepRecord) => [s.step, s.loss, s.lm_loss, s.aux_loss, s.grad_norm, s.lr];

describe('training with the native model', () => {
  test.each(['dsmoe', 'smoe', 'dense'])('%s: resume reproduces the uninterrupted run bit for bit', async (mode) => {
    const full: StepRecord[] = [];
    await train(base(path.join(fx.dir, `full-${mode}`), { mode }), { onStep: (s) => full.push(s) });
    expect(full[full.length - 1].lm_loss).toBeLessThan(full[0].lm_loss);

    const out = path.join(fx.dir, `split-${mode}`);
    const ac = new AbortController();
    const first: StepRecord[] = [];
    const r1 = await train(base(out, { mode, signal: ac.signal }), {
      onStep: (s) => { first.push(s); if (s.step === 4) ac.abort(); },
    });
    expect(r1).toMatchObject({ reason: 'interrupted', step: 4 });
    const second: StepRecord[] = [];
    await train({ resume: out, cacheDir: fx.cacheDir }, { onStep: (s) => second.push(s) });
    expect([...first, ...second].map(key)).toEqual(full.map(key));
    const a = loadCheckpoint(path.join(fx.dir, `full-${mode}`)), b = loadCheckpoint(out);
    expect(Buffer.from(b.params.buffer).equals(Buffer.from(a.params.buffer))).toBe(true);
    expect(Buffer.from(b.optimizer!.m.buffer).equals(Buffer.from(a.optimizer!.m.buffer))).toBe(true);
    expect(Buffer.from(b.optimizer!.v.buffer).equals(Buffer.from(a.optimizer!.v.buffer))).toBe(true);
    expect(b.config.training.mode).toBe(mode);
  });

  test('the engine\'s trainer: tensors by name in and out of every slot; '
    + 'a wrong size is a RangeError naming the tensor', () => {
    const config = buildConfig({ preset: 'tiny', tokenizerVocab: 300 });
    const layout = layoutFromConfig(config);
    const t = addon.createTrainer({ config });
    expect(t.device).toBe('cpu');
    expect(t.totalParams).toBe(layout.totalParams);
    t.init({ seed: 3 });
    const norm = layout.tensors.find((x) => x.name === 'final_norm.weight')!;
    expect(Array.from(t.readTensor({ name: norm.name }))).toEqual(new Array(norm.size).fill(1));
    for (const slot of ['param', 'adamM', 'adamV'] as const) {
      const data = Float32Array.from({ length: norm.size }, (_, i) => i + 0.5);
      t.loadTensor({ name: norm.name, slot, data });
      expect(Array.from(t.readTensor({ name: norm.name, slot }))).toEqual(Array.from(data));
    }
    for (const n of [norm.size - 1, norm.size + 1, 0])
      expect(() => t.loadTensor({ name: norm.name, data: new Float32Array(n) })).toThrow(expect.objectContaining({
        name: 'RangeError', message: expect.stringContaining('final_norm.weight'),
      }));
    expect(() => t.loadTensor({ name: 'layers.99.mlp.up.weight', data: new Float32Array(4) }))
      .toThrow(/layers\.99\.mlp\.up\.weight/);
  });

  test('a real process stopped by SIGINT saves a loadable checkpoint and exits with 130', async () => {
    const out = path.join(fx.dir, 'sigint-real');
    const bin = path.join(__dirname, '..', '..', 'bin', 'dsmoe.js');
    const child = spawn(process.execPath, [bin, 'train', '--preset', 'tiny', '--data', fx.corpus,
      '--tokenizer', fx.tokenizer,
      '--seq-len', '16', '--batch-size', '4', '--steps', '100000', '--save-interval', '0', '--eval-interval', '0',
      '--json',
      '--out', out], { env: { ...process.env, DSMOE_CACHE_DIR: fx.cacheDir, DSMOE_THREADS: '2' } });
    let stdout = '', sent = false;
    const code = await new Promise<number | null>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        // Once: a second Ctrl-C means "quit now, without saving".
        if (!sent && /"type":"step","step":3\b/.test(stdout)) { sent = true; child.kill('SIGINT'); }
      });
      child.on('exit', (c) => resolve(c));
    });
    expect(code).toBe(130);
    const ck = loadCheckpoint(out, { requireTraining: true });
    expect(ck.trainerState!.step).toBeGreaterThanOrEqual(3);
    expect(ck.trainerState!.step).toBeLessThan(100000);
    expect(ck.params.every(Number.isFinite)).toBe(true);
  });

  test.each(['dsmoe', 'smoe'])('%s: each evaluation reports what dsmoe eval computes under the default and dense '
    + 'routing', async (mode) => {
    const out = path.join(fx.dir, `routed-${mode}`);
    const evals: EvalRecord[] = [];
    await train(base(out, { mode, steps: 6, evalInterval: 3 }), { onEval: (r) => evals.push(r) });
    expect(evals.map((e) => e.step)).toEqual([3, 6]);
    const last = evals[evals.length - 1];
    const model = loadInferenceModel(out);
    expect(last.routing).toEqual(model.config.routing);
    // The same windows as the trainer's evaluation, through the inference engine of `dsmoe eval`.
    const tokens = (await evalData(model, { cacheDir: fx.cacheDir })).tokens;
    const opts = { seqLen: 16, batchSize: 4, maxWindows: 2 * 4 };
    const source = { source: 'held-out' as const, inputs: [] };
    const routed = await evaluateTokens(model, tokens, { ...opts, routing: model.config.routing }, source);
    const dense = await evaluateTokens(model, tokens, { ...opts, routing: { attention: 'dense', mlp: 'dense' } },
      source);
    expect(routed.tokens).toBe(last.tokens);
    expect(last.routed_ppl! / routed.ppl - 1).toBeCloseTo(0, 6);
    expect(last.dense_ppl! / dense.ppl - 1).toBeCloseTo(0, 5);
    expect(last.active_expert_share).toBeCloseTo(routed.usage.activeExpertShare, 9);
    expect(last.att_active_share).toBeCloseTo(routed.usage.attExpertsPerToken / model.config.attention.n_experts, 9);
    expect(last.mlp_active_share).toBeCloseTo(routed.usage.mlpExpertsPerToken / model.config.mlp.n_experts, 9);
    if (mode === 'smoe') expect(last.mlp_active_share).toBeCloseTo(2 / model.config.mlp.n_experts, 9);  // top-2
    // dsmoe trains with every expert: its training evaluation is the dense-routing perplexity.
    if (mode === 'dsmoe') expect(last.dense_ppl).toBe(last.ppl);
  });

  test('--target-active calibrates the thresholds at the end and stores them as the default routing', async () => {
    const out = path.join(fx.dir, 'target-active');
    const logs: string[] = [];
    const r = await train(base(out, { steps: 6, targetActive: 0.4 }), { onLog: (l) => logs.push(l) });
    expect(r.calibration).not.toBeNull();
    const cal = r.calibration!;
    expect(cal.routing.attention).toMatch(/^threshold:[\d.]+$/);
    expect(cal.routing.mlp).toMatch(/^threshold:[\d.]+$/);
    expect(Math.abs(cal.mlp!.share - 0.4)).toBeLessThan(0.1);
    const stored = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(stored.routing).toEqual(cal.routing);
    // Still a training checkpoint that resumes, now with the calibrated routing as its default.
    expect(loadCheckpoint(out, { requireTraining: true }).config.routing).toEqual(cal.routing);
    expect(logs.some((l) => /calibrating threshold routing for 40\.0 %/.test(l))).toBe(true);
  });

  test('--target-active is refused for a dense model and outside (0, 1]', async () => {
    await expect(train(base(path.join(fx.dir, 'ta-dense'), { mode: 'dense', targetActive: 0.4 })))
      .rejects.toThrow(/--target-active calibrates the routing of experts, but this is a dense model/);
    await expect(train(base(path.join(fx.dir, 'ta-bad'), { targetActive: 1.5 })))
      .rejects.toThrow(/--target-active must be a share in \(0, 1\]/);
  });
});
