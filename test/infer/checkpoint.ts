// A tiny DS-MoE checkpoint trained for a few steps on the generated corpus (test/train/fixtures),
// shared by the inference tests. Training takes about a second on 2 cores.
import * as path from 'node:path';
import { loadInferenceModel, type InferenceModel } from '../../src/infer/load';
import { train } from '../../src/train/trainer';
import { makeFixture, type Fixture } from '../train/fixtures';

export interface TinyCheckpoint extends Fixture {
  checkpoint: string;
}

export async function makeTinyCheckpoint(mode = 'dsmoe', steps = 40): Promise<TinyCheckpoint> {
  const fx = makeFixture();
  const checkpoint = path.join(fx.dir, `ck-${mode}`);
  await train({
    preset: 'tiny', mode, data: [fx.corpus], tokenizer: fx.tokenizer, cacheDir: fx.cacheDir, out: checkpoint,
    overrides: { seq_len: 32 }, batchSize: 8, steps, lr: 3e-3, warmup: 2, evalInterval: 0, evalBatches: 1,
    saveInterval: 0, seed: 5, threads: 2,
  });
  return { ...fx, checkpoint };
}

/** The tiny checkpoint, opened for inference. */
export async function openTinyModel(): Promise<{ ck: TinyCheckpoint; model: InferenceModel }> {
  const ck = await makeTinyCheckpoint();
  return { ck, model: loadInferenceModel(ck.checkpoint) };
}
