// `dsmoe generate` and `dsmoe eval` from the command line: bad input through a real process
// (exit code 1, one clear line, no stack trace), stdin and --prompts-file, --json, and the
// handlers in-process.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { INFERENCE_ON_CUDA, runEval } from '../../src/cli/commands/eval';
import { runGenerate, type GenerateCliOptions } from '../../src/cli/commands/generate';
import { makeTinyCheckpoint, type TinyCheckpoint } from '../infer/checkpoint';
import { addon, runCli } from '../helpers';

let ck: TinyCheckpoint;
beforeAll(async () => {
  ck = await makeTinyCheckpoint();
});
afterAll(() => fs.rmSync(ck.dir, { recursive: true, force: true }));

function dsmoe(args: string[], input = '') {
  return runCli(args, { cwd: ck.dir, cacheDir: ck.cacheDir, input });
}

function sink(): NodeJS.WriteStream & { text: () => string } {
  const s = new PassThrough();
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return Object.assign(s as unknown as NodeJS.WriteStream, { isTTY: false,
    text: () => Buffer.concat(chunks).toString('utf8') });
}

const base: GenerateCliOptions = { maxTokens: 8, temperature: 0 };

describe('dsmoe generate / eval: bad input is one clear line and exit code 1 (child process)', () => {
  test.each<[string, () => string[], RegExp]>([
    ['missing checkpoint', () => ['generate', 'nope', 'the'], /^dsmoe: checkpoint folder not found: nope$/],
    ['folder without config', () => ['generate', ck.dir, 'the'], /has no config\.json/],
    ['malformed routing', () => ['generate', ck.checkpoint, 'the', '--routing', 'attention=top2'],
      /--routing attention=top2: "top2" is not a routing strategy/],
    ['unknown layer kind', () => ['generate', ck.checkpoint, 'the', '--routing', 'moe=dense'],
      /--routing: unknown layer kind "moe"/],
    ['K > E', () => ['generate', ck.checkpoint, 'the', '--routing', 'mlp=topk:9'],
      /--routing mlp=topk:9: "topk:9": K = 9 is more than the 4 MLP experts/],
    ['empty prompt', () => ['generate', ck.checkpoint, ''], /the prompt is empty/],
    ['empty stdin', () => ['generate', ck.checkpoint], /the prompt is empty/],
    ['too-long prompt', () => ['generate', ck.checkpoint, 'the model '.repeat(40)],
      /the prompt is \d+ tokens long, longer than the model's context of 32 tokens/],
    ['two prompt sources', () => ['generate', ck.checkpoint, 'the', '--prompt-file', 'x.txt'],
      /give one prompt source/],
    ['missing prompt file', () => ['generate', ck.checkpoint, '--prompt-file', 'x.txt'],
      /--prompt-file: file not found: x\.txt/],
    ['eval: seq-len too long', () => ['eval', ck.checkpoint, '--seq-len', '64'],
      /--seq-len 64 is longer than the model's context \(max_seq_len 32\)/],
    ['eval: missing data', () => ['eval', ck.checkpoint, '--data', 'nope.txt'], /data input not found: nope\.txt/],
  ])('%s', (_, args, re) => {
    const r = dsmoe(args());
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(re);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  test('--device cuda: inference runs on the CPU backend for now, exit code 2 (bad usage of the machine)', () => {
    const info = addon.cudaInfo();
    for (const cmd of [
      ['generate', ck.checkpoint, 'the', '--device', 'cuda'],
      ['eval', ck.checkpoint, '--device', 'cuda'],
    ]) {
      const r = dsmoe(cmd);
      expect(r.code).toBe(2);
      // No GPU: why; a GPU: what is missing (the weights are not loaded into device memory yet).
      expect(r.stderr).toBe(info.available ? `dsmoe: ${INFERENCE_ON_CUDA}\n`
        : `dsmoe: --device cuda: no usable CUDA device: ${info.reason}\n`);
      expect(r.stdout).toBe('');
    }
    expect(dsmoe(['eval', ck.checkpoint, '--device', 'tpu']).stderr).toMatch(/unknown device "tpu"/);
  });

  test('a corrupt model.safetensors is named in the error', () => {
    const dir = path.join(ck.dir, 'corrupt');
    fs.cpSync(ck.checkpoint, dir, { recursive: true });
    const f = path.join(dir, 'model.safetensors');
    fs.truncateSync(f, fs.statSync(f).size - 100);
    for (const cmd of [['generate', dir, 'the'], ['eval', dir]]) {
      const r = dsmoe(cmd);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/model\.safetensors.*(truncated|past the end|outside the data section)/);
    }
    fs.writeFileSync(path.join(dir, 'config.json'), '{"vocab_size": 3');
    expect(dsmoe(['generate', dir, 'the']).stderr).toMatch(/^dsmoe: .*config\.json: not valid JSON/);
  });

  test.each([['--temperature', '-1'], ['--max-tokens', '0'], ['--top-p', '2'],
    ['--top-k', 'x']])('bad option value %s %s', (flag, v) => {
    const r = dsmoe(['generate', ck.checkpoint, 'the', flag, v]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`${flag} expects`));
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('dsmoe generate (child process)', () => {
  test('the prompt from stdin streams the text to stdout and the numbers to stderr', () => {
    const a = dsmoe(['generate', ck.checkpoint, '--temperature', '0', '--max-tokens', '8'], 'the model\n');
    const b = dsmoe(['generate', ck.checkpoint, 'the model', '--temperature', '0', '--max-tokens', '8']);
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    expect(a.stderr).toMatch(/prompt tokens, \d+ generated .*prefill .* tok\/s, decode .* tok\/s, time to first token/);
    expect(a.stderr).toMatch(/active parameters per token \(\d+(\.\d)?% of the/);
    expect(a.stderr).toMatch(/embedding 19\.2K, LM head 19\.2K/);
  });

  test('--prompts-file runs a batch and labels each completion in order; --json is one object', () => {
    const file = path.join(ck.dir, 'prompts.txt');
    fs.writeFileSync(file, 'the model\n\nkey of the\ndense\n');
    const r = dsmoe(['generate', ck.checkpoint, '--prompts-file', file, '--temperature', '0', '--max-tokens', '6',
      '--routing', 'mlp=topk:1']);
    expect(r.code).toBe(0);
    expect(r.stdout)
      .toMatch(/^--- 1\/3: "the model" ---\n[^]*\n--- 2\/3: "key of the" ---\n[^]*\n--- 3\/3: "dense" ---\n/);
    expect(r.stderr).toMatch(/in a batch of 3/);
    const j = dsmoe(['generate', ck.checkpoint, '--prompts-file', file, '--temperature', '0', '--max-tokens', '6',
      '--json', '--routing', 'mlp=topk:1']);
    expect(j.code).toBe(0);
    const o = JSON.parse(j.stdout);
    expect(j.stdout.trim().split('\n')).toHaveLength(1);
    expect(o.completions.map((c: { prompt: string }) => c.prompt)).toEqual(['the model', 'key of the', 'dense']);
    expect(o.routing).toEqual({ attention: 'threshold:0.48', mlp: 'topk:1' });
    expect(o.mlp_experts_per_token).toBe(1);
    for (const k of ['prompt_tokens', 'generated_tokens', 'prefill_tokens_per_s', 'decode_tokens_per_s', 'ttft_ms',
      'active_params_per_token',
      'active_expert_share', 'att_experts_per_token', 'embedding_params', 'lm_head_params',
      'seed']) expect(typeof o[k]).toBe('number');
    // The labelled texts are the JSON texts.
    o.completions.forEach((c: { text: string },
      i: number) => expect(r.stdout).toContain(`---\n${c.text}\n${i < 2 ? '---' : ''}`));
  });
});

describe('dsmoe bench decode (child process)', () => {
  test('is a bench subcommand next to kernels and train, with its options', () => {
    const top = dsmoe(['bench', '--help']);
    expect(top.stdout).toMatch(/kernels[^]*train[^]*decode/);
    const h = dsmoe(['bench', 'decode', '--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/--routings <list>[^]*--prompt-len <n>[^]*--decode-tokens <n>/);
    const bad = dsmoe(['bench', 'decode', '--rounds', '0']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--rounds expects an integer ≥ 1, got "0"/);
  });
});

describe('handlers in-process', () => {
  test('runGenerate: streamed stdout equals the JSON text; same seed, same text', async () => {
    const out = sink(), err = sink();
    expect(await runGenerate(ck.checkpoint, 'the router', { ...base, temperature: 1, seed: 7 },
      { stdout: out, stderr: err })).toBe(0);
    const js = sink();
    await runGenerate(ck.checkpoint, 'the router', { ...base, temperature: 1, seed: 7, json: true },
      { stdout: js, stderr: sink() });
    const o = JSON.parse(js.text());
    expect(out.text()).toBe(o.completions[0].text + '\n');
    expect(o.seed).toBe(7);
  });

  test('runGenerate reads stdin when no prompt is given and it is not a TTY', async () => {
    const out = sink();
    const stdin = Object.assign(Readable.from([Buffer.from('the model\n')]), { isTTY: false });
    await runGenerate(ck.checkpoint, undefined, base, { stdout: out, stderr: sink(), stdin });
    const ref = sink();
    await runGenerate(ck.checkpoint, 'the model', base, { stdout: ref, stderr: sink() });
    expect(out.text()).toBe(ref.text());
    const tty = Object.assign(Readable.from([]), { isTTY: true });
    await expect(runGenerate(ck.checkpoint, undefined, base, { stdout: sink(), stderr: sink(),
      stdin: tty })).rejects.toThrow(/no prompt/);
  });

  test('runEval --json: loss, ppl, usage per layer and expert, MI loss terms per layer kind', async () => {
    const out = sink();
    expect(await runEval(ck.checkpoint, { batchSize: 4, maxWindows: 4, json: true,
      routing: 'attention=dense,mlp=topk:2' },
    { stdout: out, stderr: sink(), cacheDir: ck.cacheDir })).toBe(0);
    const o = JSON.parse(out.text());
    expect(o.windows).toBe(4);
    expect(o.data.source).toBe('held-out');
    expect(o.ppl).toBeCloseTo(Math.exp(o.loss), 8);
    expect(o.usage.attention).toHaveLength(2);
    expect(o.usage.mlp[0]).toHaveLength(4);
    expect(o.mlp_experts_per_token).toBe(2);
    for (const kind of [o.mi.attention, o.mi.mlp]) {
      expect(kind.loss).toBeCloseTo(kind.condEntropy - kind.entropy, 10);
      expect(kind.perLayer).toHaveLength(o.usage.attention.length);
    }
    const txt = sink();
    await runEval(ck.checkpoint, { batchSize: 4, maxWindows: 2 }, { stdout: txt, stderr: sink(),
      cacheDir: ck.cacheDir });
    expect(txt.text()).toMatch(/loss \d+\.\d+, perplexity \d+\.\d+/);
    expect(txt.text()).toMatch(/MI loss −H\(e\) \+ H\(e\|X\) \(nats, mean over layers\): attention -?\d/);
    expect(txt.text()).toMatch(/attention expert usage/);
  });
});
