// `dsmoe eval`'s logic on a tiny trained checkpoint: dense routing against the training model's
// evaluate on the same windows, the recorded held-out split against the trainer's own last eval,
// bf16 / f16 copies against fp32, sparse routing and the expert-usage counters.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadCheckpoint, saveCheckpoint } from '../../src/checkpoint/checkpoint';
import { evalBatches } from '../../src/data/sampler';
import { evalData, evaluateCheckpoint, evaluateTokens } from '../../src/infer/eval';
import { loadInferenceModel, type InferenceModel } from '../../src/infer/load';
import type { Dtype } from '../../src/checkpoint/safetensors';
import { addon } from '../helpers';
import { openTinyModel, type TinyCheckpoint } from './checkpoint';

let ck: TinyCheckpoint, model: InferenceModel;
beforeAll(async () => { ({ ck, model } = await openTinyModel()); });
afterAll(() => fs.rmSync(ck.dir, { recursive: true, force: true }));

const dense = { attention: 'dense', mlp: 'dense' };

/** A copy of the checkpoint with model.safetensors in another dtype (inference checkpoint). */
function copyAs(dtype: Dtype): string {
  const src = loadCheckpoint(ck.checkpoint, { optimizer: false });
  const dir = path.join(ck.dir, `ck-${dtype}`);
  saveCheckpoint(dir, {
    config: src.config, params: src.params, tokenizerJson: fs.readFileSync(src.tokenizerPath!, 'utf8'), dtype,
  });
  return dir;
}

describe('eval', () => {
  test('dense routing: the loss equals createModel().evaluate on the same windows (1e-4)', async () => {
    const seqLen = 24, batchSize = 3, maxWindows = 7;
    const r = await evaluateCheckpoint(model, {
      data: [ck.corpus], seqLen, batchSize, maxWindows, routing: dense, cacheDir: ck.cacheDir,
    });
    expect(r.windows).toBe(7);
    expect(r.tokens).toBe(7 * seqLen);
    // The training model on the same windows.
    const loaded = loadCheckpoint(ck.checkpoint, { optimizer: false });
    const n = loaded.params.length;
    const m = addon.createModel({
      config: loaded.config, params: loaded.params, grads: new Float32Array(n), adamM: new Float32Array(n),
      adamV: new Float32Array(n),
    });
    const { tokens } = await evalData(model, { data: [ck.corpus], cacheDir: ck.cacheDir });
    let sum = 0, count = 0;
    for (const b of evalBatches(tokens.subarray(0, maxWindows * seqLen + 1), { batchSize, seqLen })) {
      const s = m.evaluate({ tokens: b.inputs, targets: b.targets, batch: b.batchSize, seq: seqLen });
      sum += s.lmLoss * b.batchSize * seqLen;
      count += b.batchSize * seqLen;
    }
    expect(Math.abs(r.loss - sum / count)).toBeLessThan(1e-4);
    expect(r.ppl).toBeCloseTo(Math.exp(r.loss), 10);
    // Dense: every token activates every expert of every layer.
    expect(r.usage.activeExpertShare).toBe(1);
    for (const row of [...r.usage.attUsage, ...r.usage.mlpUsage]) expect(row).toEqual(row.map(() => r.tokens));
    // MI terms: H(e|X) is the mean per-token router entropy, the same as the training model's
    // evaluate (averaged over equal batches); H(e) over all tokens ≥ the per-batch average (concavity).
    let attCond = 0, mlpCond = 0, attEnt = 0, rows = 0;
    for (const b of evalBatches(tokens.subarray(0, maxWindows * seqLen + 1), { batchSize, seqLen })) {
      const s = m.evaluate({ tokens: b.inputs, targets: b.targets, batch: b.batchSize, seq: seqLen });
      attCond += s.attCondEntropy * b.batchSize; mlpCond += s.mlpCondEntropy * b.batchSize;
      attEnt += s.attEntropy * b.batchSize; rows += b.batchSize;
    }
    const batches = rows;
    expect(r.mi.attention!.condEntropy).toBeCloseTo(attCond / batches, 4);
    expect(r.mi.mlp!.condEntropy).toBeCloseTo(mlpCond / batches, 4);
    expect(r.mi.attention!.entropy).toBeGreaterThanOrEqual(attEnt / batches - 1e-6);
    expect(r.mi.attention!.loss).toBeCloseTo(r.mi.attention!.condEntropy - r.mi.attention!.entropy, 12);
  });

  test('default data: the held-out split recorded in trainer_state.json (= the trainer\'s last eval)', async () => {
    const state = model.trainerState()!;
    const r = await evaluateCheckpoint(model, {
      routing: dense, batchSize: 8, maxWindows: 8, seqLen: state.batch.seq_len, cacheDir: ck.cacheDir,
    });
    expect(r.data.source).toBe('held-out');
    expect(r.data.tokens).toBe(state.data.val_tokens);
    // The trainer evaluated one batch of 8 windows (evalBatches 1) with the training forward.
    expect(Math.abs(r.loss - state.last_eval!.loss)).toBeLessThan(1e-4);
  });

  test.each(['BF16', 'F16'] as const)('a %s copy is within 1 %% perplexity of fp32', async (dtype) => {
    const dir = copyAs(dtype);
    const m16 = loadInferenceModel(dir);
    expect(m16.dtype).toBe(dtype);
    expect(m16.inMemory).toBe(dtype === 'F16');
    if (dtype === 'F16') expect(m16.notes.join()).toMatch(/F16 .* converted once to fp32 in memory/);
    const o = { data: [ck.corpus], seqLen: 32, batchSize: 4, maxWindows: 16, routing: dense, cacheDir: ck.cacheDir };
    const a = await evaluateCheckpoint(model, o), b = await evaluateCheckpoint(m16, o);
    expect(Math.abs(b.ppl / a.ppl - 1)).toBeLessThan(0.01);
    expect(m16.trainerState()).toBeUndefined();
  });

  test('sparse routing: fewer active parameters, usage counts add up, and threshold:0 = dense', async () => {
    const { tokens } = await evalData(model, { data: [ck.corpus], cacheDir: ck.cacheDir });
    const o = { seqLen: 32, batchSize: 4, maxWindows: 8 };
    const src = { source: 'files' as const, inputs: [ck.corpus] };
    const d = await evaluateTokens(model, tokens, { ...o, routing: dense }, src);
    const z = await evaluateTokens(model, tokens,
      { ...o, routing: { attention: 'threshold:0', mlp: 'threshold:0' } }, src);
    expect(z.loss).toBe(d.loss);
    const s = await evaluateTokens(model, tokens, { ...o, routing: { attention: 'topk:2', mlp: 'topk:1' } }, src);
    expect(s.usage.activeParamsPerToken).toBeLessThan(d.usage.activeParamsPerToken);
    expect(s.usage.mlpExpertsPerToken).toBe(1);
    for (const row of s.usage.mlpUsage) expect(row.reduce((a, b) => a + b, 0)).toBe(s.tokens);
    for (const row of s.usage.attUsage) expect(row.reduce((a, b) => a + b, 0)).toBe(2 * s.tokens);
    expect(Number.isFinite(s.loss)).toBe(true);
  });

  test('a batch size beyond the windows is their count, and the result is the same', async () => {
    const { tokens } = await evalData(model, { data: [ck.corpus], cacheDir: ck.cacheDir });
    const src = { source: 'files' as const, inputs: [ck.corpus] };
    const a = await evaluateTokens(model, tokens, { seqLen: 32, batchSize: 5, maxWindows: 10, routing: dense }, src);
    const b = await evaluateTokens(model, tokens, { seqLen: 32, batchSize: 1e6, maxWindows: 10, routing: dense }, src);
    expect(b.batchSize).toBe(10);
    expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-6);
    await expect(evaluateTokens(model, tokens, { seqLen: 33, routing: dense }, src))
      .rejects.toThrow(/--seq-len must be in 1\.\.32/);
  });
});
