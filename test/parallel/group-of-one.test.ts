// The data-parallel step path of the training loop (lossAndGrad → reduceGradients → one statistics
// all-reduce → applyOptimizer, sharded evaluation, agreed stop) with a group of one rank whose
// all-reduce is the identity: it must give bit for bit what trainStepAsync gives in one process.
// Needs no collective library, so it runs in every build.
import * as path from 'node:path';
import { readSafetensors } from '../../src/checkpoint/safetensors';
import { train, type EvalRecord, type StepRecord, type TrainOptions } from '../../src/train/trainer';
import type { ProcessGroup } from '../../src/parallel/group';
import { makeFixture, type Fixture } from '../train/fixtures';

let fx: Fixture;
beforeAll(() => {
  fx = makeFixture();
});

const base = (out: string, extra: Partial<TrainOptions> = {}): TrainOptions => ({
  preset: 'tiny', data: [fx.corpus], tokenizer: fx.tokenizer, cacheDir: fx.cacheDir, out: path.join(fx.dir, out),
  overrides: { seq_len: 16 }, batchSize: 2, gradAccum: 2, steps: 6, evalInterval: 3, evalBatches: 2, saveInterval: 0,
  seed: 3, threads: 2, ...extra,
});

test.each(['dsmoe', 'smoe', 'dense'])('%s: a group of one rank equals the single-process loop', async (mode) => {
  const sums: number[] = [];
  const group: ProcessGroup = { rank: 0, size: 1, sum: async (v) => { sums.push(v.length); return v; } };
  const runs: Array<{ steps: StepRecord[]; evals: EvalRecord[] }> = [];
  for (const [out, extra] of [[`plain-${mode}`, {}], [`group-${mode}`, { group }]] as const) {
    const steps: StepRecord[] = [], evals: EvalRecord[] = [];
    await train(base(out, { mode, ...extra }), { onStep: (s) => steps.push(s), onEval: (e) => evals.push(e) });
    runs.push({ steps, evals });
  }
  const key = (s: StepRecord) => [s.step, s.loss, s.lm_loss, s.aux_loss, s.grad_norm, s.lr, s.tokens_seen,
    s.att_entropy, s.mlp_cond_entropy];
  expect(runs[1].steps.map(key)).toEqual(runs[0].steps.map(key));
  const ekey = (e: EvalRecord) => [e.step, e.loss, e.lm_loss, e.batches, e.tokens, e.mlp_entropy];
  expect(runs[1].evals.map(ekey)).toEqual(runs[0].evals.map(ekey));
  // The start-up digests, one statistics vector per step, one per evaluation.
  expect(sums.length).toBe(1 + 6 + runs[1].evals.length);
  for (const file of ['model.safetensors', 'optimizer.safetensors']) {
    const a = readSafetensors(path.join(fx.dir, `plain-${mode}`, file)).tensors;
    const b = readSafetensors(path.join(fx.dir, `group-${mode}`, file)).tensors;
    const bytes = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
    for (const [name, t] of a)
      expect(Buffer.compare(bytes(t.data as Float32Array), bytes(b.get(name)!.data as Float32Array))).toBe(0);
  }
});
