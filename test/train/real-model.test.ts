// The training loop with the real native model (tiny preset, a generated corpus): exact resume in
// every mode, a real process stopped by SIGINT, and the saved checkpoint's meaning.
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { loadCheckpoint } from '../../src/checkpoint/checkpoint';
import { train, type StepRecord, type TrainOptions } from '../../src/train/trainer';
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
    expect(r1).toMatchObject({ exitCode: 130, step: 4 });
    const second: StepRecord[] = [];
    await train({ resume: out, cacheDir: fx.cacheDir }, { onStep: (s) => second.push(s) });
    expect([...first, ...second].map(key)).toEqual(full.map(key));
    const a = loadCheckpoint(path.join(fx.dir, `full-${mode}`)), b = loadCheckpoint(out);
    expect(Buffer.from(b.params.buffer).equals(Buffer.from(a.params.buffer))).toBe(true);
    expect(b.config.training.mode).toBe(mode);
  });

  test('a real process stopped by SIGINT saves a loadable checkpoint and exits with 130', async () => {
    const out = path.join(fx.dir, 'sigint-real');
    const bin = path.join(__dirname, '..', '..', 'bin', 'dsmoe.js');
    const child = spawn(process.execPath, [bin, 'train', '--preset', 'tiny', '--data', fx.corpus, '--tokenizer', fx.tokenizer,
      '--seq-len', '16', '--batch-size', '4', '--steps', '100000', '--save-interval', '0', '--eval-interval', '0', '--json',
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
});
