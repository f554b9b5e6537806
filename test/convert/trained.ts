// Tiny checkpoints trained with the real model (tiny preset, the generated fixture corpus), shared by
// the info / convert / upcycling tests, and helpers to run the model on them.
import * as path from 'node:path';
import type { LoadedCheckpoint } from '../../src/checkpoint/checkpoint';
import type { ModelConfig } from '../../src/model/config';
import { loadAddon } from '../../src/native/addon';
import type { NativeModel } from '../../src/native/types/model';
import { loadTokenizer } from '../../src/tokenizer/tokenizer';
import { train, type TrainOptions } from '../../src/train/trainer';
import { WORDS, makeFixture, type Fixture } from '../train/fixtures';

export const SEQ = 16;

export function trainOptions(fx: Fixture, out: string, extra: Partial<TrainOptions> = {}): TrainOptions {
  return {
    preset: 'tiny', data: [fx.corpus], tokenizer: fx.tokenizer, cacheDir: fx.cacheDir, out,
    overrides: { seq_len: SEQ }, batchSize: 4, steps: 30, lr: 3e-3, warmup: 2, evalInterval: 0, evalBatches: 2,
    saveInterval: 0, seed: 5, threads: 2, ...extra,
  };
}

export interface Trained {
  fx: Fixture;
  dsmoe: string;
  dense: string;
}

/** Trains a dsmoe and a dense tiny checkpoint (30 steps each, a few seconds). */
export async function trainTiny(): Promise<Trained> {
  const fx = makeFixture();
  const dsmoe = path.join(fx.dir, 'ds'), dense = path.join(fx.dir, 'dense');
  await train(trainOptions(fx, dsmoe));
  await train(trainOptions(fx, dense, { mode: 'dense' }));
  return { fx, dsmoe, dense };
}

export function nativeModel(config: ModelConfig, params: Float32Array): NativeModel {
  const addon = loadAddon();
  const n = params.length;
  return addon.createModel({ config, params, grads: new Float32Array(n), adamM: new Float32Array(n),
    adamV: new Float32Array(n) });
}

export function logits(ck: { config: ModelConfig; params: Float32Array }, tokens: Int32Array, batch: number,
  seq: number): Float32Array {
  const out = new Float32Array(batch * seq * ck.config.vocab_size);
  nativeModel(ck.config, ck.params).forward({ tokens, batch, seq, logits: out });
  return out;
}

/** Text the models never saw: new sentences over the fixture's words (another seed). */
export function heldOutText(seed = 777, paragraphs = 40): string {
  let s = seed;
  const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const paras: string[] = [];
  for (let p = 0; p < paragraphs; p++) {
    const n = 8 + Math.floor(rnd() * 20);
    paras.push(Array.from({ length: n }, () => WORDS[Math.floor(rnd() * WORDS.length)]).join(' ') + '.');
  }
  return paras.join('\n\n') + '\n';
}

/** `batch` windows of SEQ+1 tokens of held-out text (inputs, targets). */
export function windows(fx: Fixture, batch: number): { tokens: Int32Array; targets: Int32Array } {
  const ids = loadTokenizer(fx.tokenizer).encode(heldOutText());
  if (ids.length < batch * (SEQ + 1)) throw new Error('held-out text too short');
  const tokens = new Int32Array(batch * SEQ), targets = new Int32Array(batch * SEQ);
  for (let b = 0; b < batch; b++) {
    const start = b * (SEQ + 1);
    for (let t = 0; t < SEQ; t++) { tokens[b * SEQ + t] = ids[start + t]; targets[b * SEQ + t] = ids[start + t + 1]; }
  }
  return { tokens, targets };
}

/** Perplexity of a checkpoint's weights on windows (evaluate's LM loss). */
export function perplexity(ck: Pick<LoadedCheckpoint, 'config' | 'params'>,
  w: { tokens: Int32Array; targets: Int32Array }, batch: number): number {
  const s = nativeModel(ck.config, ck.params).evaluate({ tokens: w.tokens, targets: w.targets, batch, seq: SEQ });
  return Math.exp(s.lmLoss);
}
