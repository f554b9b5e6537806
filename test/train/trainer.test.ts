// The training loop with a fake model: exact resume, Ctrl-C, divergence, budgets, schedule and the
// errors a user can make. The real model's numerics are tested in native suites.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadCheckpoint, saveCheckpoint, SimulatedCrash } from '../../src/checkpoint/checkpoint';
import { defaultWarmup, formatDuration, lrAt, parseDuration } from '../../src/train/schedule';
import { trainNextSteps } from '../../src/cli/hints';
import { layoutFromConfig } from '../../src/model/layout';
import {
  DeviceUnusableError, TrainingDivergedError, train, type EvalRecord, type StepRecord, type TrainOptions,
} from '../../src/train/trainer';
import { fakeBackend, type FakeClock } from './fake-model';
import { makeFixture, type Fixture } from './fixtures';

let fx: Fixture;
beforeAll(() => {
  fx = makeFixture();
});

const base = (out: string, extra: Partial<TrainOptions> = {}): TrainOptions => ({
  preset: 'tiny', data: [fx.corpus], tokenizer: fx.tokenizer, cacheDir: fx.cacheDir, out,
  overrides: { seq_len: 16 }, batchSize: 2, steps: 10, lr: 1e-2, warmup: 2, evalInterval: 5, evalBatches: 2,
  saveInterval: 0, seed: 3,
  ...extra,
});

/**
 * Runs f with performance.now() reading a virtual clock that only the fake model's steps advance:
 * --time runs are then sized by step counts, not by how fast this machine happens to be. Real time
 * is only capped (by jest's timeout).
 */
async function withFakeClock<T>(f: (clock: FakeClock) => Promise<T>): Promise<T> {
  const clock: FakeClock = { now: 1000 };
  const spy = jest.spyOn(performance, 'now').mockImplementation(() => clock.now);
  try {
    return await f(clock);
  } finally {
    spy.mockRestore();
  }
}

function collect() {
  const steps: StepRecord[] = [], evals: EvalRecord[] = [], saves: number[] = [];
  return {
    steps, evals, saves,
    hooks: {
      onStep: (r: StepRecord) => steps.push(r), onEval: (r: EvalRecord) => evals.push(r),
      onSave: (_d: string, s: number) => saves.push(s),
    },
  };
}

describe('training loop', () => {
  test('runs to the budget, evaluates, saves, and reports', async () => {
    const out = path.join(fx.dir, 'run-basic');
    const c = collect();
    const fake = fakeBackend();
    let info: unknown;
    const r = await train(base(out, { threads: 2 }), { ...c.hooks, onStart: (i) => (info = i) }, { backend: fake });
    expect(r).toMatchObject({
      reason: 'budget', step: 10, savedStep: 10, preset: 'tiny', mode: 'dsmoe', resumedFrom: null,
    });
    expect(c.steps.map((s) => s.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(c.evals.map((e) => e.step)).toEqual([5, 10]);
    expect(c.evals[1].ppl).toBeCloseTo(Math.exp(c.evals[1].lm_loss), 10);
    expect(c.saves).toEqual([10]);
    expect(fake.threads).toBe(2);
    expect(info).toMatchObject({ startStep: 0, totalSteps: 10, tokensPerStep: 32, seqLen: 16, batchSize: 2 });
    expect(c.steps[0].lr).toBeCloseTo(5e-3, 12); // warm-up 1/2
    expect(c.steps[9].lr).toBeCloseTo(1e-3, 12); // cosine down to min_lr = 0.1·lr
    expect(c.steps.every((s) => s.tokens_seen === s.step * 32)).toBe(true);
    expect(trainNextSteps(r).join('\n')).toMatch(/dsmoe train --resume .*run-basic --steps 20/);
    // The checkpoint was streamed out of the engine one tensor at a time, each slot once.
    const names = layoutFromConfig(ck0(out)).tensors.map((t) => t.name);
    expect(fake.read).toEqual(everySlot(names));
    expect(fake.loaded).toEqual([]);  // a fresh run: init, nothing loaded
    const ck = loadCheckpoint(out, { requireTraining: true });
    expect(ck.trainerState).toMatchObject({ step: 10, tokens_seen: 320, threads: 2, seed: 3, last_eval: { step: 10 } });
    expect(ck.trainerState!.versions).toMatchObject({ addon_isa: 'fake', node: process.version });
    expect(ck.config.max_seq_len).toBe(16);
    expect(fs.readFileSync(ck.tokenizerPath!, 'utf8')).toBe(fs.readFileSync(fx.tokenizer, 'utf8'));
  });

  test('resume continues exactly: every later loss equals the uninterrupted run', async () => {
    const full = collect();
    await train(base(path.join(fx.dir, 'run-full'), { gradAccum: 2 }), full.hooks, { backend: fakeBackend() });

    const outB = path.join(fx.dir, 'run-split');
    const ac = new AbortController();
    const first = collect();
    const r1 = await train(base(outB, { gradAccum: 2, signal: ac.signal }), {
      ...first.hooks, onStep: (s) => { first.steps.push(s); if (s.step === 6) ac.abort(); },
    }, { backend: fakeBackend() });
    expect(r1).toMatchObject({ reason: 'interrupted', step: 6, savedStep: 6 });
    expect(trainNextSteps(r1)[0]).toMatch(/--resume/);

    const second = collect();
    const resumed = fakeBackend();
    const r2 = await train({ resume: outB, cacheDir: fx.cacheDir }, second.hooks, { backend: resumed });
    expect(r2).toMatchObject({ reason: 'budget', step: 10, resumedFrom: outB });
    // Every tensor of the checkpoint was streamed into the engine: parameters and both moments.
    const names = layoutFromConfig(ck0(outB)).tensors.map((t) => t.name);
    expect(resumed.loaded).toEqual(everySlot(names));
    expect(second.steps.map((s) => s.step)).toEqual([7, 8, 9, 10]);
    const key = (s: StepRecord) => [s.step, s.loss, s.lm_loss, s.aux_loss, s.grad_norm, s.lr, s.tokens_seen];
    expect([...first.steps, ...second.steps].map(key)).toEqual(full.steps.map(key));
    expect(second.evals.map((e) => [e.step, e.loss]))
      .toEqual(full.evals.filter((e) => e.step > 6).map((e) => [e.step, e.loss]));
    const a = loadCheckpoint(path.join(fx.dir, 'run-full')), b = loadCheckpoint(outB);
    expect(Buffer.from(b.params.buffer).equals(Buffer.from(a.params.buffer))).toBe(true);
    expect(Buffer.from(b.optimizer!.v.buffer).equals(Buffer.from(a.optimizer!.v.buffer))).toBe(true);
  });

  test('a NaN loss stops with a clear message and keeps the last good checkpoint', async () => {
    const out = path.join(fx.dir, 'run-nan');
    const c = collect();
    let err: unknown;
    try {
      await train(base(out, { saveInterval: 2, evalInterval: 0 }), c.hooks, { backend: fakeBackend({ nanAtStep: 5 }) });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TrainingDivergedError);
    expect((err as Error).message).toMatch(new RegExp(String.raw`training diverged: the loss is NaN at step 5\. `
      + String.raw`Nothing after step 4 was saved; the last good checkpoint is .*run-nan \(step 4\)`));
    expect(c.saves).toEqual([2, 4]);
    const ck = loadCheckpoint(out);
    expect(ck.trainerState!.step).toBe(4);
    expect(ck.params.every(Number.isFinite)).toBe(true);
  });

  test('a NaN before any save says no checkpoint was written', async () => {
    const out = path.join(fx.dir, 'run-nan-early');
    await expect(train(base(out), {}, { backend: fakeBackend({ nanAtStep: 1 }) }))
      .rejects.toThrow(/at step 1\. .*no checkpoint was written by this run/);
    expect(fs.existsSync(out)).toBe(false);
  });

  test('an interrupted save during training keeps the previous checkpoint loadable', async () => {
    const out = path.join(fx.dir, 'run-crash');
    await train(base(out, { steps: 4 }), {}, { backend: fakeBackend() });
    const ck = loadCheckpoint(out);
    expect(() => saveCheckpoint(out, {
      config: ck.config, params: new Float32Array(ck.params.length).fill(7), optimizer: ck.optimizer,
      trainerState: { ...ck.trainerState!, step: 5 },
    }, { crashAt: 'mid-swap' })).toThrow(SimulatedCrash);
    const again = await train({ resume: out, steps: 6, cacheDir: fx.cacheDir }, {}, { backend: fakeBackend() });
    expect(again.step).toBe(6); // resumed from step 4 (the good one), not the half-saved step 5
    expect(loadCheckpoint(out).trainerState!.step).toBe(6);
  });

  test('budgets: --tokens rounds up to whole steps; --time fixes the horizon after a few steps', async () => {
    const t = collect();
    const r = await train(base(path.join(fx.dir, 'run-tokens'), { steps: undefined, tokens: 100, evalInterval: 0 }),
      t.hooks, { backend: fakeBackend() });
    expect(r.step).toBe(4); // 100 / 32 → 4 steps
    const logs: string[] = [];
    const c = collect();
    // Steps of 1/32 s on a virtual clock (binary fractions: exact arithmetic): the first 4 steps
    // measure 1/32 s per step after the first, so (1.5 − 1/32) / (1/32) = 47 more steps fit: 48.
    const fake = await withFakeClock(async (clock) => {
      const b = fakeBackend({ stepMs: 31.25, clock });
      const r2 = await train(
        base(path.join(fx.dir, 'run-time'), { steps: undefined, timeS: 1.5, warmup: 0, evalInterval: 0 }),
        { ...c.hooks, onLog: (l) => logs.push(l) }, { backend: b });
      expect(r2).toMatchObject({ reason: 'budget', step: 48 });
      return b;
    });
    expect(fake.steps).toBe(48);
    expect(c.steps.map((s) => s.total_steps)).toEqual([null, null, null, ...new Array(45).fill(48)]);
    expect(c.steps[47].elapsed_s).toBe(1.5);
    expect(logs.join('\n'))
      .toMatch(/time budget 1.5s at 0.03s\/step: about 48 steps; the learning rate decays to step 48/);
  });

  test('--time sizes the run from the steps after the slow first one', async () => {
    const c = collect();
    // First step 0.5 s (warm-up), then 1/32 s steps on a virtual clock, budget 1.25 s: the rate comes
    // from steps 2–4, so 1 + (1.25 − 0.5) / (1/32) = 25 steps. An estimate that counted the first
    // step (0.59 s / 4 steps) would plan 1 + 0.75 / 0.148 ≈ 6.
    await withFakeClock(async (clock) => {
      const r = await train(
        base(path.join(fx.dir, 'run-time-warm'), { steps: undefined, timeS: 1.25, warmup: 0, evalInterval: 0 }),
        c.hooks, { backend: fakeBackend({ stepMs: 31.25, firstStepMs: 500, clock }) });
      expect(r).toMatchObject({ reason: 'budget', step: 25 });
    });
    expect(c.steps.map((s) => s.total_steps)).toEqual([null, null, null, ...new Array(22).fill(25)]);
    expect(c.steps[24].elapsed_s).toBe(1.25);
  });

  test('user errors are clear and happen before any work', async () => {
    const out = path.join(fx.dir, 'never');
    const fake = fakeBackend();
    await expect(train(base(out, { preset: 'huge' }), {}, { backend: fake })).rejects.toThrow(/unknown preset "huge"/);
    await expect(train(base(out, { overrides: { att_heads: 3 } }), {}, { backend: fake }))
      .rejects.toThrow(/attention.n_heads \(--att-heads\)/);
    await expect(train(base(out, { data: [path.join(fx.dir, 'missing.txt')] }), {}, { backend: fake }))
      .rejects.toThrow(/data input not found: .*missing.txt/);
    const empty = path.join(fx.dir, 'empty.txt');
    fs.writeFileSync(empty, '');
    await expect(train(base(out, { data: [empty] }), {}, { backend: fake }))
      .rejects.toThrow(/data file .*empty.txt is empty/);
    const blank = path.join(fx.dir, 'blank.txt');
    fs.writeFileSync(blank, '\n  \n\n');
    await expect(train(base(out, { data: [blank] }), {}, { backend: fake }))
      .rejects.toThrow(/blank.txt is empty \(no documents\)/);
    await expect(train(base(out, { steps: 5, tokens: 10 }), {}, { backend: fake })).rejects.toThrow(/give one budget/);
    await expect(train(base(out, { batchSize: 0 }), {}, { backend: fake }))
      .rejects.toThrow(/--batch-size must be an integer ≥ 1/);
    await expect(train(base(out, { lr: 1e-3, minLr: 1e-2 }), {}, { backend: fake }))
      .rejects.toThrow(/--min-lr .* larger than --lr/);
    await expect(train(base(out, { configFile: path.join(fx.dir, 'nope.json') }), {}, { backend: fake }))
      .rejects.toThrow(/cannot read the config file .*nope.json: not found/);
    expect(fake.steps).toBe(0);
    expect(fs.existsSync(out)).toBe(false);
  });

  test('resume errors: other shape, other data, already finished, not a training checkpoint', async () => {
    const out = path.join(fx.dir, 'run-resume-errors');
    await train(base(out, { steps: 3 }), {}, { backend: fakeBackend() });
    const resume = { resume: out, cacheDir: fx.cacheDir };
    await expect(train({ ...resume, preset: 'tiny', overrides: { d_model: 32 }, steps: 6 }, {},
      { backend: fakeBackend() }))
      .rejects.toThrow(/different model shape .*d_model 64 \(checkpoint\) vs 32/);
    await expect(train({ resume: out, steps: 3, cacheDir: fx.cacheDir }, {}, { backend: fakeBackend() }))
      .rejects.toThrow(/already at step 3; ask for more \(e.g. --steps 6\)/);
    const other = path.join(fx.dir, 'other.txt');
    fs.writeFileSync(other,
      'the model is a mixture of experts.\n\nthe router picks experts for each token of the layer.\n'.repeat(20));
    await expect(train({ resume: out, steps: 6, data: [other], cacheDir: fx.cacheDir }, {}, { backend: fakeBackend() }))
      .rejects.toThrow(/its training data had \d+ tokens, these inputs give \d+/);
    fs.rmSync(path.join(out, 'optimizer.safetensors'));
    fs.rmSync(path.join(out, 'trainer_state.json'));
    await expect(train({ resume: out, steps: 6, cacheDir: fx.cacheDir }, {}, { backend: fakeBackend() }))
      .rejects.toThrow(/not a training checkpoint/);
  });

  test('a device the engine cannot use fails with its reason, before any data are read', async () => {
    const out = path.join(fx.dir, 'run-cuda');
    const fake = fakeBackend();
    const logs: string[] = [];
    const err = await train(base(out, { device: 'cuda' }), {
      onPrepare: (p) => logs.push(p.kind),
    }, { backend: fake }).catch((e) => e);
    expect(err).toBeInstanceOf(DeviceUnusableError);
    expect(err).toMatchObject({
      device: 'cuda', message: 'device cuda:0 is not usable: the fake engine has no GPU (use --device cpu)',
    });
    expect(logs).not.toContain('data');
    expect(fake.steps).toBe(0);
    expect(fs.existsSync(out)).toBe(false);
  });

  test('a step-0 checkpoint without optimizer state resumes with a fresh AdamW (parameters streamed)', async () => {
    const out = path.join(fx.dir, 'run-step0');
    await train(base(out, { steps: 2 }), {}, { backend: fakeBackend() });
    const ck = loadCheckpoint(out);
    fs.rmSync(out, { recursive: true });
    saveCheckpoint(out, { config: ck.config, params: ck.params, tokenizerJson: fs.readFileSync(fx.tokenizer, 'utf8'),
      trainerState: { ...ck.trainerState!, step: 0, tokens_seen: 0, last_losses: [], last_eval: null } });
    const fake = fakeBackend();
    const logs: string[] = [];
    const r = await train({ resume: out, steps: 3, cacheDir: fx.cacheDir }, { onLog: (l) => logs.push(l) },
      { backend: fake });
    expect(r.step).toBe(3);
    expect(fake.loaded.every((l) => l.startsWith('param:'))).toBe(true);
    expect(fake.loaded).toHaveLength(ck.layout.tensors.length);
    expect(logs.join('\n')).toMatch(/has no optimizer state \(step 0\): starting a fresh AdamW/);
  });

  test('the native layout must match the checkpoint layout', async () => {
    const fake = fakeBackend();
    const bad = {
      ...fake,
      modelLayout: (c: Parameters<typeof fake.modelLayout>[0]) => {
        const l = fake.modelLayout(c);
        return { ...l, tensors: [...l.tensors].reverse() };
      },
    };
    await expect(train(base(path.join(fx.dir, 'run-layout')), {}, { backend: bad })).rejects.toThrow(
      /native model's parameter layout does not match.*tensor 0 is "lm_head.weight", expected "embed.weight"/);
  });
});

/** Every slot's entries, in the order a checkpoint streams them: parameters, then AdamW m, then v. */
const everySlot = (names: string[]) => ['param', 'adamM', 'adamV'].flatMap((slot) => names.map((n) => `${slot}:${n}`));

/** The config of a checkpoint folder. */
const ck0 = (dir: string) => loadCheckpoint(dir).config;

describe('schedule and durations', () => {
  test('warm-up then cosine to min_lr', () => {
    const s = { lr: 1, minLr: 0.1, warmup: 4, totalSteps: 14 };
    expect([1, 2, 3, 4].map((k) => lrAt(k, s))).toEqual([0.25, 0.5, 0.75, 1]);
    expect(lrAt(9, s)).toBeCloseTo(0.55, 12);
    expect(lrAt(14, s)).toBeCloseTo(0.1, 12);
    expect(lrAt(20, s)).toBeCloseTo(0.1, 12);
    expect(lrAt(50, { ...s, totalSteps: null })).toBe(1);
    expect(lrAt(1, { lr: 2, minLr: 0, warmup: 0, totalSteps: 1 })).toBeCloseTo(0, 12);
    expect([defaultWarmup(10), defaultWarmup(1000), defaultWarmup(100000), defaultWarmup(null)])
      .toEqual([1, 50, 200, 20]);
  });

  test('durations', () => {
    expect(parseDuration('90s')).toBe(90);
    expect(parseDuration('10m')).toBe(600);
    expect(parseDuration('1h30m')).toBe(5400);
    expect(parseDuration('1.5h')).toBe(5400);
    expect(parseDuration('45')).toBe(45);
    expect(parseDuration('500ms')).toBe(0.5);
    for (const bad of ['', 'abc', '10x', '0s', '-5m', '5m junk'])
      expect(() => parseDuration(bad)).toThrow(/cannot read the duration/);
    expect([formatDuration(5), formatDuration(125), formatDuration(3725)]).toEqual(['5s', '2m05s', '1h02m']);
  });
});
