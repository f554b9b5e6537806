// `dsmoe train` and `dsmoe tokenizer train` from the command line: argument errors through a real
// process, and the whole command in-process with the fake model (JSON records, plain progress,
// Ctrl-C → 130).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { loadCheckpoint } from '../../src/checkpoint/checkpoint';
import { runTrain, type TrainCliOptions } from '../../src/cli/commands/train';
import { tokenizerTrain } from '../../src/cli/commands/tokenizer';
import { main } from '../../src/cli/index';
import { fakeBackend } from '../train/fake-model';
import { makeFixture, type Fixture } from '../train/fixtures';
import { addon, runCli } from '../helpers';
import { EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, exitCodeFor } from '../../src/cli/exit-codes';
import { displayPath, trainNextSteps } from '../../src/cli/hints';

let fx: Fixture;
beforeAll(() => {
  fx = makeFixture();
});

const dsmoe = (...args: string[]) => runCli(args, { cwd: fx.dir, cacheDir: fx.cacheDir });

/** A stream that collects what is written (not a TTY). */
function sink(): NodeJS.WriteStream & { text: () => string } {
  const s = new PassThrough();
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return Object.assign(s as unknown as NodeJS.WriteStream, { isTTY: false,
    text: () => Buffer.concat(chunks).toString('utf8') });
}

const cli = (out: string, extra: Partial<TrainCliOptions> = {}): TrainCliOptions => ({
  preset: 'tiny', data: [fx.corpus], tokenizer: fx.tokenizer, out, seqLen: 16, batchSize: 2, steps: 8, evalInterval: 4,
  evalBatches: 2,
  device: 'cpu', ...extra,
});

describe('dsmoe train: argument errors (child process)', () => {
  test('help lists the new commands and teaches with examples', () => {
    const top = dsmoe('--help');
    expect(top.stdout).toMatch(/train/);
    expect(top.stdout).toMatch(/tokenizer/);
    const h = dsmoe('train', '--help');
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/Examples:/);
    expect(h.stdout).toMatch(/--resume runs\/small-dsmoe/);
  });

  test.each<[string, string[], RegExp]>([
    ['unknown preset', ['--preset', 'huge'], /unknown preset "huge" \(available: tiny, small/],
    ['unknown mode', ['--mode', 'moe'], /unknown mode "moe"/],
    ['heads not divisible', ['--preset', 'tiny', '--att-heads', '3'],
      /attention.n_heads \(--att-heads\): 3 query heads per expert cannot be shared evenly over 2 kv heads/],
    ['odd head dim', ['--head-dim', '15'], /attention.head_dim \(--head-dim\): must be even/],
    ['top-k above experts', ['--preset', 'tiny', '--mode', 'smoe', '--top-k', '9'],
      /training.top_k \(--top-k\): 9 is more than the 4 attention experts/],
    ['dense preset in dsmoe mode', ['--preset', 'dense-1b', '--mode', 'dsmoe'],
      /mode dsmoe needs experts.*use ds-moe-1b/],
    ['zero experts', ['--mlp-experts', '0'], /--mlp-experts expects an integer ≥ 1, got "0"/],
    ['bad number', ['--lr', 'fast'], /--lr expects a positive number, got "fast"/],
    ['bad duration', ['--time', '10 parsecs'], /cannot read the duration "10 parsecs"/],
    ['two budgets', ['--steps', '5', '--time', '1m'], /give one budget/],
    ['unknown device', ['--device', 'tpu'], /unknown device "tpu" \(expected one of cpu, cuda, auto\)/],
    ['missing data', ['--data', 'nope.txt'], /data input not found: nope.txt/],
    ['unsupported data', ['--data', 'tokenizer.json'], /unsupported data file extension ".json"/],
    ['missing config file', ['--config', 'nope.json'], /cannot read the config file nope.json: not found/],
  ])('%s', (_what, args, re) => {
    const r = dsmoe('train', ...args);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(re);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  // Never a silent CPU run: the engine refuses the device with its reason (no usable GPU here, or a
  // build without the CUDA backend), exit code 2. Where CUDA is usable the run would train there.
  const gpu = addon.cudaInfo().available;
  const cudaTitle = '--device cuda: the engine\'s reason, exit code 2'
    + `${gpu ? ' (skipped: a CUDA device is usable here)' : ''}`;
  (gpu ? test.skip : test)(cudaTitle, () => {
    const r = dsmoe('train', '--device', 'cuda', '--preset', 'tiny', '--data', fx.corpus, '--tokenizer', fx.tokenizer,
      '--steps', '1', '--out', path.join(fx.dir, 'cuda-run'));
    expect(r.stderr).toMatch(new RegExp('^dsmoe: device cuda:0( is not usable: .+|: this dsmoe was built without '
      + 'the CUDA backend)', 'm'));
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.code).toBe(EXIT_USAGE);
    expect(fs.existsSync(path.join(fx.dir, 'cuda-run'))).toBe(false);
  });

  test('empty data file', () => {
    fs.writeFileSync(path.join(fx.dir, 'empty.txt'), '');
    const r = dsmoe('train', '--data', 'empty.txt');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/data file .*empty.txt is empty/);
  });

  test('in-process main() returns the code and prints one line', async () => {
    const err = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await main(['node', 'dsmoe', 'train', '--preset', 'tiny', '--kv-heads', '3'])).toBe(1);
      expect(err.mock.calls.map((c) => String(c[0])).join('')).toMatch(new RegExp(
        String.raw`attention.n_heads \(--att-heads\): 2 query heads ` +
        String.raw`per expert cannot be shared evenly over 3 kv heads`));
    } finally {
      err.mockRestore();
    }
  });
});

describe('dsmoe train with the fake model (in-process)', () => {
  test('--json prints one record per step and eval on stdout; people read stderr', async () => {
    const out = path.join(fx.dir, 'cli-json');
    const stdout = sink(), stderr = sink();
    const code = await runTrain(cli(out, { json: true }), { backend: fakeBackend(), stdout, stderr });
    expect(code).toBe(0);
    const records = stdout.text().trim().split('\n').map((l) => JSON.parse(l));
    const types = records.map((r) => r.type);
    expect(types[0]).toBe('start');
    expect(types.filter((t) => t === 'step')).toHaveLength(8);
    expect(types.filter((t) => t === 'eval')).toHaveLength(2);
    expect(types[types.length - 1]).toBe('done');
    const step = records.find((r) => r.type === 'step');
    for (const k of ['step', 'loss', 'lm_loss', 'aux_loss', 'att_entropy', 'att_cond_entropy', 'mlp_entropy',
      'mlp_cond_entropy', 'grad_norm', 'lr', 'tokens_per_s'])
      expect(typeof step[k]).toBe('number');
    expect(records[0]).toMatchObject({ total_params: expect.any(Number), non_embedding_params: expect.any(Number) });
    expect(records[records.length - 1]).toMatchObject({ reason: 'budget', step: 8, exit_code: 0,
      val_ppl: expect.any(Number) });
    const human = stderr.text();
    expect(human).toMatch(/parameters, .* non-embedding/);
    expect(human).toMatch(/validation loss [\d.]+, perplexity [\d.]+/);
    expect(human).toMatch(/what to run next:/);
  });

  test('with the real model, evaluations and the summary show the sparsity of the default routing; ' +
    '--target-active calibrates', async () => {
    const out = path.join(fx.dir, 'cli-sparsity');
    const stdout = sink(), stderr = sink();
    expect(await runTrain(cli(out, { targetActive: 0.5 }), { stdout, stderr })).toBe(0);
    const text = stdout.text();
    const pct = '[\\d.]+ % of expert parameters active, perplexity [\\d.]+ \\(dense routing [\\d.]+\\)';
    expect(text).toMatch(new RegExp(`^ {2}under threshold:0\\.48: ${pct}$`, 'm'));  // after each eval line
    expect(text).toMatch(new RegExp(`^under threshold:0\\.48: ${pct}$`, 'm'));      // the end-of-run summary
    expect(text).toMatch(new RegExp(String.raw`^calibrated for 50\.0 % active expert parameters: default ` +
      String.raw`routing now attention=threshold:[\d.]+,mlp=threshold:[\d.]+$`, 'm'));
    expect(text).toMatch(new RegExp(String.raw`^ {2}on \d+ held-out tokens not used for calibration: [\d.]+ ` +
      String.raw`% active, perplexity [\d.]+ \(dense routing [\d.]+\)$`, 'm'));

    const json = sink();
    expect(await runTrain(cli(path.join(fx.dir, 'cli-sparsity-json'), { json: true, quiet: true }),
      { stdout: json, stderr: sink() })).toBe(0);
    const records = json.text().trim().split('\n').map((l) => JSON.parse(l));
    const ev = records.filter((r) => r.type === 'eval');
    for (const r of ev) {
      expect(r.routing).toEqual({ attention: 'threshold:0.48', mlp: 'threshold:0.48' });
      for (const k of ['routed_ppl', 'dense_ppl', 'active_expert_share', 'att_active_share',
        'mlp_active_share']) expect(typeof r[k]).toBe('number');
    }
    expect(records[records.length - 1]).toMatchObject({ type: 'done',
      active_expert_share: ev[ev.length - 1].active_expert_share, calibration: null });
  });

  test('--device auto: the CPU with the reason in one line when no GPU is usable, else cuda', async () => {
    const out = path.join(fx.dir, 'cli-auto');
    const stdout = sink(), stderr = sink();
    const code = await runTrain(cli(out, { device: 'auto', steps: 2, evalInterval: 0 }),
      { backend: fakeBackend(), stdout, stderr });
    if (!addon.cudaInfo().available) {
      expect(code).toBe(0);
      expect(stderr.text()).toMatch(/^dsmoe: no usable GPU \(.+\); using the CPU\n/);
      expect(stderr.text().match(/using the CPU/g)).toHaveLength(1);
    } else {
      // auto chose cuda: the fake engine (no GPU) refuses it with its reason, exit code 2.
      expect(code).toBe(EXIT_USAGE);
      expect(stderr.text()).toBe('dsmoe: device cuda:0 is not usable: the fake engine has no GPU (use --device cpu)\n');
    }
  });

  test('--device cuda refused by the engine: its message on stderr, exit code 2, nothing trained', async () => {
    const out = path.join(fx.dir, 'cli-cuda');
    const stdout = sink(), stderr = sink();
    const fake = fakeBackend();
    expect(await runTrain(cli(out, { device: 'cuda' }), { backend: fake, stdout, stderr })).toBe(EXIT_USAGE);
    expect(stderr.text()).toBe('dsmoe: device cuda:0 is not usable: the fake engine has no GPU (use --device cpu)\n');
    expect(fake.steps).toBe(0);
    expect(fs.existsSync(out)).toBe(false);
  });

  test('plain progress lines when stdout is not a TTY', async () => {
    const out = path.join(fx.dir, 'cli-plain');
    const stdout = sink(), stderr = sink();
    expect(await runTrain(cli(out), { backend: fakeBackend(), stdout, stderr })).toBe(0);
    const text = stdout.text();
    expect(text).toMatch(/model: tiny \(dsmoe\) — [\d.]+K parameters, [\d.]+K non-embedding/);
    expect(text).toMatch(/^step 1\/8 {2}loss [\d.]+ \(lm [\d.]+ mi /m);
    expect(text).toMatch(/^step 8\/8 /m);
    expect(text).toMatch(/eval @ step 4: val loss [\d.]+, perplexity [\d.]+ \(2 batches\) {2}H\(e\) att 1.30/);
    expect(text).toMatch(/done: 8 steps, .*validation loss [\d.]+, perplexity [\d.]+/);
    expect(text).not.toMatch(/\x1b\[/); // no terminal control codes
    expect(stderr.text()).toBe('');
  });

  test('Ctrl-C (SIGINT) finishes the step, saves and returns 130', async () => {
    const out = path.join(fx.dir, 'cli-sigint');
    const stdout = sink(), stderr = sink();
    const others = process.listeners('SIGINT');
    for (const l of others) process.removeListener('SIGINT', l);
    try {
      const fake = fakeBackend({ stepMs: 5 });
      const run = runTrain(cli(out, { steps: 1000, evalInterval: 0, saveInterval: 0 }),
        { backend: fake, stdout, stderr });
      while (fake.steps < 3) await new Promise((r) => setTimeout(r, 5));
      process.emit('SIGINT');
      expect(await run).toBe(130);
      expect(process.listenerCount('SIGINT')).toBe(0); // the handler removed itself
      const saved = loadCheckpoint(out).trainerState!.step;
      expect(saved).toBeGreaterThanOrEqual(3);
      expect(saved).toBeLessThan(1000);
      expect(fake.steps).toBe(saved);
      expect(stdout.text()).toMatch(/Ctrl-C: finishing the current step/);
      expect(stdout.text()).toMatch(/interrupted at step \d+; checkpoint saved/);
      expect(stdout.text()).toMatch(/dsmoe train --resume/);
    } finally {
      for (const l of others) process.on('SIGINT', l);
    }
  });
});

describe('exit codes and what to run next', () => {
  test('codes', () => {
    expect([EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED]).toEqual([0, 2, 130]);
    expect([exitCodeFor('budget'), exitCodeFor('interrupted')]).toEqual([0, 130]);
  });

  const result = {
    reason: 'budget' as const, outDir: path.join(process.cwd(), 'runs', 'x'), step: 30, savedStep: 30,
    mode: 'dsmoe' as const,
    preset: 'tiny', resumedFrom: null,
  };
  test('after a finished fresh dsmoe run: resume, generate, eval, where the files are, the dense baseline', () => {
    expect(trainNextSteps(result, { data: ['a.txt', 'b/'], tokenizer: 't.json' })).toEqual([
      'train longer (same run):    dsmoe train --resume runs/x --steps 60',
      'generate text sparsely:     dsmoe generate runs/x "Once upon a time" --max-tokens 40',
      'perplexity vs sparsity:     dsmoe eval runs/x --routing threshold:0.48   (or dense, topk:2)',
      'the checkpoint is in runs/x/ (config.json, model.safetensors, tokenizer.json; optimizer state for resuming)',
      'compare with the dense baseline: dsmoe train --preset tiny --mode dense --data a.txt b/ --tokenizer t.json',
    ]);
    // No baseline suggestion for a resumed run or another mode.
    expect(trainNextSteps({ ...result, resumedFrom: '/x' })).toHaveLength(4);
    expect(trainNextSteps({ ...result, mode: 'smoe' })).toHaveLength(4);
    expect(trainNextSteps({ ...result, step: 0 })[0]).toMatch(/--steps 1$/);
  });

  test('after an interrupt: continue; before anything was saved: nothing', () => {
    expect(trainNextSteps({ ...result, reason: 'interrupted' }))
      .toEqual(['continue where it stopped:  dsmoe train --resume runs/x']);
    expect(trainNextSteps({ ...result, reason: 'interrupted', savedStep: null })).toEqual([]);
  });

  test('paths: relative below the current folder, absolute above it', () => {
    expect(displayPath('/a/b/c', '/a')).toBe('b/c');
    expect(displayPath('/a', '/a')).toBe('.');
    expect(displayPath('/x/y', '/a/b')).toBe('/x/y');
  });
});

describe('dsmoe tokenizer train', () => {
  test('writes a loadable tokenizer.json', () => {
    const out = path.join(fx.dir, 'tok', 'tokenizer.json');
    const r = dsmoe('tokenizer', 'train', '--data', fx.corpus, '--vocab-size', '280', '--out', out);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/wrote .*tokenizer.json: vocabulary 280/);
    expect(JSON.parse(fs.readFileSync(out, 'utf8')).model.type).toBe('BPE');
  });

  test('errors: no data, too small a vocabulary, token files', () => {
    expect(dsmoe('tokenizer', 'train', '--vocab-size',
      '300').stderr).toMatch(/required option '--data <paths...>' not specified/);
    expect(dsmoe('tokenizer', 'train', '--data', fx.corpus, '--vocab-size',
      '100').stderr).toMatch(/--vocab-size expects an integer ≥ 257/);
    const binFile = path.join(fx.dir, 'x.bin');
    fs.writeFileSync(binFile, Buffer.alloc(8));
    expect(() => tokenizerTrain({ data: [binFile], vocabSize: 300, out: path.join(fx.dir, 't.json') },
      sink())).toThrow(/\.bin token files hold no text/);
  });
});
