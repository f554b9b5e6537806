// Fuzzing checkpoint loading: random corruptions of a small valid checkpoint (truncation, flipped
// header and data bytes, huge header lengths, wrong or overlapping offsets, wrong dtypes and shapes,
// random bytes and values in config.json and trainer_state.json, a corrupt optimizer file). Every
// load must either succeed with finite data of the config's layout, or throw an Error that names
// the checkpoint's file — never crash, hang or throw a non-Error. Seeded and bounded by a count:
// every run covers the same cases, every corruption kind many times; time is only a cap (a run
// that reaches it fails, it never quietly covers less). A few corrupted checkpoints also go
// through `dsmoe info` and `dsmoe convert` in a child process: exit code 1 with a one-line message
// (0 for info where only weight bytes changed: info reads no weights). Some cases start from an
// int8 checkpoint; every case is also opened by the inference loader (openCheckpointWeights), which
// must open it or throw the same kind of clear Error.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CONFIG_FILE, MODEL_FILE, OPTIMIZER_FILE, TRAINER_STATE_FILE, loadCheckpoint, saveCheckpoint,
  type TrainerState } from '../../src/checkpoint/checkpoint';
import { checkpointInfo } from '../../src/checkpoint/info';
import { quantizedTensors } from '../../src/checkpoint/quant';
import { openCheckpointWeights } from '../../src/infer/load';
import { validateConfig, type ModelConfig } from '../../src/model/config';
import { layoutFromConfig } from '../../src/model/layout';
import { rng } from '../helpers';

const ITERATIONS = 400;
/** Each corruption kind is drawn at least this often in the ITERATIONS cases (seeded: a fixed count). */
const MIN_PER_KIND = 25;
/** A cap, not a budget: reaching it fails the test. */
const TIME_CAP_MS = 90_000;
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-fuzz-'));

const config: ModelConfig = validateConfig({
  format_version: 1, vocab_size: 20, d_model: 8, n_layers: 1, max_seq_len: 16, norm_eps: 1e-5, rope_theta: 10000,
  tie_embeddings: false,
  attention: { n_experts: 2, n_heads: 2, n_kv_heads: 1, head_dim: 4 },
  mlp: { n_experts: 2, expert_dim: 6, activation: 'gelu' },
  training: { mode: 'dsmoe', mi_alpha_att: 1e-3, mi_alpha_mlp: 1e-3, top_k: 2, switch_alpha: 0.01 },
  routing: { attention: 'threshold:0.48', mlp: 'topk:1' },
});
const state: TrainerState = {
  format_version: 1, step: 3, tokens_seen: 768, elapsed_s: 1.5, seed: 7,
  data: { inputs: ['a.txt'], seed: 0, val_share: 0.05, train_tokens: 1000, val_tokens: 100 },
  sampler: { rng: [1, 2, 3, 4], step: 3, tokens: 1000, batchSize: 4, seqLen: 16 },
  schedule: { lr: 1e-3, min_lr: 1e-4, warmup: 2, total_steps: 10 },
  optimizer: { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.01, clip: 1 },
  batch: { batch_size: 4, grad_accum: 1, seq_len: 16 }, eval: { interval: 5, batches: 2 },
  last_losses: [{ step: 3, loss: 3, lm_loss: 2.9, aux_loss: 0.1 }], last_eval: null, threads: 2,
  versions: { dsmoe: 'test' },
};

/** The valid checkpoints every case starts from: training (fp32), bf16 inference, int8 inference. */
function makeValid(dir: string, kind: 'training' | 'inference' | 'int8'): string {
  const layout = layoutFromConfig(config), n = layout.totalParams;
  const f = (s: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + s));
  const training = kind === 'training';
  saveCheckpoint(dir, {
    config, params: f(1), tokenizerJson: '{"model": {}}', dtype: training ? 'F32' : 'BF16',
    ...(training ? { optimizer: { m: f(2), v: f(3).map(Math.abs) }, trainerState: state } : {}),
    ...(kind === 'int8' ? { modelTensors: quantizedTensors(layout, f(1), 'int8').tensors } : {}),
  });
  return dir;
}
const validTraining = makeValid(path.join(root, 'valid-training'), 'training');
const validInference = makeValid(path.join(root, 'valid-inference'), 'inference');
const validInt8 = makeValid(path.join(root, 'valid-int8'), 'int8');

// ---- corruptions ---------------------------------------------------------------------------

type Rand = () => number;
const int = (r: Rand, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[int(r, xs.length)];

/** The model file's header and data; undefined when an earlier corruption already broke it. */
function readHeader(file: string): { json: Record<string, unknown>; data: Buffer } | undefined {
  try {
    const buf = fs.readFileSync(file);
    const n = Number(buf.readBigUInt64LE(0));
    const json = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
    if (json === null || typeof json !== 'object' || Array.isArray(json)) return undefined;
    for (const [k, v] of Object.entries(json)) if (k !== '__metadata__' &&
      (v === null || typeof v !== 'object')) return undefined;
    return { json, data: buf.subarray(8 + n) };
  } catch {
    return undefined;
  }
}
function writeHeader(file: string, json: unknown, data: Buffer, lengthOverride?: bigint): void {
  const body = Buffer.from(JSON.stringify(json), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(body.length));
  fs.writeFileSync(file, Buffer.concat([len, body, data]));
}
const WEIRD: unknown[] = [-1, 0, 1, 2.5, 1e308, -1e308, 2 ** 53, 2 ** 31, 4097, '', 'x', 'F64', 'BF16', null, true, [],
  {}, [1, 2], [-1], ['a'], NaN];

const CORRUPTIONS: Record<string, (dir: string, r: Rand) => void> = {
  truncate(dir, r) {
    const file = path.join(dir, pick(r, [MODEL_FILE, MODEL_FILE, CONFIG_FILE, TRAINER_STATE_FILE, OPTIMIZER_FILE]));
    if (!fs.existsSync(file)) return;
    fs.truncateSync(file, int(r, fs.statSync(file).size));
  },
  flipHeaderBytes(dir, r) {
    const file = path.join(dir, MODEL_FILE);
    const buf = fs.readFileSync(file);
    const n = Math.min(buf.length, 8 + Number(buf.readBigUInt64LE(0)));
    for (let k = 1 + int(r, 4); k > 0; k--) buf[int(r, n)] ^= 1 << int(r, 8);
    fs.writeFileSync(file, buf);
  },
  hugeHeaderLength(dir, r) {
    const file = path.join(dir, MODEL_FILE);
    const buf = fs.readFileSync(file);
    const v = pick(r, [2n ** 64n - 1n, 2n ** 63n, BigInt(Number.MAX_SAFE_INTEGER) + 2n, 100_000_001n,
      BigInt(buf.length), BigInt(buf.length - 7), 0n, 1n]);
    buf.writeBigUInt64LE(v, 0);
    fs.writeFileSync(file, buf);
  },
  badOffsets(dir, r) {
    const file = path.join(dir, MODEL_FILE);
    const h = readHeader(file);
    if (!h) return;
    const { json, data } = h;
    const names = Object.keys(json).filter((k) => k !== '__metadata__');
    const e = json[pick(r, names)] as { data_offsets: unknown[] };
    const other = json[pick(r, names)] as { data_offsets: number[] };
    const choice = int(r, 5);
    if (choice === 0) e.data_offsets = [...other.data_offsets]; // overlap (or itself)
    else if (choice === 1) e.data_offsets = [(e.data_offsets[0] as number) + 4, (e.data_offsets[1] as number) +
      4]; // shifted into the next
    else if (choice === 2) e.data_offsets = [e.data_offsets[1], e.data_offsets[0]]; // reversed
    else if (choice === 3) e.data_offsets = [0, data.length + 4 * int(r, 100)]; // past the end
    else e.data_offsets = pick(r, WEIRD) as unknown[];
    writeHeader(file, json, data);
  },
  badDtypeOrShape(dir, r) {
    const file = path.join(dir, MODEL_FILE);
    const h = readHeader(file);
    if (!h) return;
    const { json, data } = h;
    const names = Object.keys(json).filter((k) => k !== '__metadata__');
    const e = json[pick(r, names)] as Record<string, unknown>;
    const what = int(r, 4);
    if (what === 0) e.dtype = pick(r, ['F16', 'BF16', 'F64', 'I8', 'U8', 'BOOL', 'f32', '', 7]);
    else if (what === 1) e.shape = (e.shape as number[]).slice().reverse().concat(int(r, 2) ? [1] : []);
    else if (what === 2) e.shape = pick(r, WEIRD);
    else { delete e[pick(r, ['dtype', 'shape', 'data_offsets'])]; }
    writeHeader(file, json, data);
  },
  renameOrDropTensor(dir, r) {
    const file = path.join(dir, MODEL_FILE);
    const h = readHeader(file);
    if (!h) return;
    const { json, data } = h;
    const names = Object.keys(json).filter((k) => k !== '__metadata__');
    const name = pick(r, names);
    const e = json[name];
    delete json[name];
    if (int(r, 2)) json[name.replace(/\d/, '7')] = e;
    if (int(r, 3) === 0) json.__metadata__ = pick(r, WEIRD);
    writeHeader(file, json, data);
  },
  flipDataBytes(dir, r) {
    const file = path.join(dir, pick(r, [MODEL_FILE, MODEL_FILE, OPTIMIZER_FILE]));
    if (!fs.existsSync(file)) return;
    const buf = fs.readFileSync(file);
    const start = 8 + Number(buf.readBigUInt64LE(0));
    for (let k = 1 + int(r, 8); k > 0; k--) {
      const i = start + int(r, buf.length - start);
      buf[i] = int(r, 2) ? int(r, 256) : 0xff; // 0xff in a high byte: NaN
    }
    fs.writeFileSync(file, buf);
  },
  randomConfigBytes(dir, r) {
    const file = path.join(dir, CONFIG_FILE);
    const buf = fs.readFileSync(file);
    for (let k = 1 + int(r, 6); k > 0; k--) buf[int(r, buf.length)] = int(r, 256);
    fs.writeFileSync(file, buf);
  },
  randomConfigValue(dir, r) {
    const file = path.join(dir, CONFIG_FILE);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    let c: any;
    try { c = JSON.parse(fs.readFileSync(file, 'utf8')); } catch { return; }
    if (c === null || typeof c !== 'object') return;
    const top = pick(r, Object.keys(c));
    const value = pick(r, [...WEIRD, 3, 16, 64, 4096, 2 ** 20, 'dense', 'topk:9', 'threshold:-1', 'gelu', 'relu']);
    if (typeof c[top] === 'object' && c[top] !== null && int(r, 4) > 0) c[top][pick(r, Object.keys(c[top]))] = value;
    else if (int(r, 8) === 0) delete c[top];
    else c[top] = value;
    fs.writeFileSync(file, JSON.stringify(c));
  },
  randomTrainerState(dir, r) {
    const file = path.join(dir, TRAINER_STATE_FILE);
    if (!fs.existsSync(file)) return;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    let s: any;
    try { s = JSON.parse(fs.readFileSync(file, 'utf8')); } catch { return; }
    if (s === null || typeof s !== 'object') return;
    const top = pick(r, Object.keys(s));
    const value = pick(r, WEIRD);
    if (typeof s[top] === 'object' && s[top] !== null && !Array.isArray(s[top]) &&
      int(r, 3) > 0) s[top][pick(r, Object.keys(s[top]))] = value;
    else if (Array.isArray(s[top]) && s[top].length > 0) s[top][0] = value;
    else s[top] = value;
    fs.writeFileSync(file, JSON.stringify(s));
  },
  removeFile(dir, r) {
    fs.rmSync(path.join(dir, pick(r, [MODEL_FILE, CONFIG_FILE, OPTIMIZER_FILE, TRAINER_STATE_FILE])), { force: true });
  },
};

// ---- the properties ---------------------------------------------------------------------------

/** Loads the folder; returns undefined when all is well, else what went wrong. */
function checkLoad(dir: string): string | undefined {
  const clear = (e: unknown): string | undefined => {
    if (!(e instanceof Error)) return `threw a non-Error: ${String(e)}`;
    if (!e.message.includes(dir)) return `message does not name the checkpoint's file: ${e.message}`;
    if (/undefined|\[object Object\]|Cannot read prop/.test(e.message)) return `unhelpful message: ${e.message}`;
    if (e.message.includes('\n')) return `message of several lines: ${e.message}`;
    return undefined;
  };
  try {
    const ck = loadCheckpoint(dir);
    const layout = layoutFromConfig(ck.config);
    if (ck.params.length !== layout.totalParams) return `loaded ${ck.params.length} params, layout has ` +
      `${layout.totalParams}`;
    if (!ck.params.every(Number.isFinite)) return 'loaded non-finite params';
    if (ck.optimizer && !(ck.optimizer.m.every(Number.isFinite) &&
      ck.optimizer.v.every(Number.isFinite))) return 'loaded non-finite moments';
  } catch (e) {
    const p = clear(e);
    if (p) return p;
  }
  try {
    const w = openCheckpointWeights(dir);
    if (w.config.vocab_size !== config.vocab_size && w.layout.totalParams !== layoutFromConfig(w.config).totalParams) {
      return 'the inference loader opened an inconsistent layout';
    }
  } catch (e) {
    const p = clear(e);
    if (p) return `inference loader: ${p}`;
  }
  try {
    const info = checkpointInfo(dir);
    const c = validateConfig(JSON.parse(fs.readFileSync(path.join(dir, CONFIG_FILE), 'utf8')));
    if (info.params.total !== layoutFromConfig(c).totalParams) return 'info counts disagree with config.json';
  } catch (e) {
    const p = clear(e);
    if (p) return `info: ${p}`;
  }
  return undefined;
}

describe('checkpoint fuzzing', () => {
  test(`${ITERATIONS} random corruptions, every kind ≥ ${MIN_PER_KIND} times: ` +
    `load or a clear Error naming the file`, () => {
    const r = rng(20240611);
    const t0 = Date.now();
    const problems: string[] = [];
    const counts: Record<string, number> = {};
    let i = 0, loaded = 0;
    for (; i < ITERATIONS; i++) {
      if (Date.now() - t0 > TIME_CAP_MS) break;  // (then the count below fails, saying how far it got)
      const dir = path.join(root, `case-${i}`);
      const start = int(r, 4);
      fs.cpSync(start === 0 ? validInference : start === 1 ? validInt8 : validTraining, dir, { recursive: true });
      const kinds = Array.from({ length: 1 + (int(r, 4) === 0 ? 1 : 0) }, () => pick(r, Object.keys(CORRUPTIONS)));
      for (const k of kinds) {
        counts[k] = (counts[k] ?? 0) + 1;
        try {
          CORRUPTIONS[k](dir, r);
        } catch {
          // (a second corruption that cannot apply to what the first left, e.g. a removed file)
        }
      }
      const p = checkLoad(dir);
      if (p) problems.push(`case ${i} (${kinds.join(' + ')}): ${p}`);
      else {
        try { loadCheckpoint(dir); loaded++; } catch { /* a clean rejection */ }
      }
      fs.rmSync(dir, { recursive: true, force: true });
    }
    console.log(`fuzz: ${i} cases in ${Date.now() - t0} ms, ${loaded} still loaded (finite, consistent); ` +
      `${JSON.stringify(counts)}`);
    expect(problems).toEqual([]);
    expect(`${i} cases in ${Date.now() - t0} ms`).toMatch(new RegExp(`^${ITERATIONS} cases`));
    const few = Object.keys(CORRUPTIONS).filter((k) => !((counts[k] ?? 0) >= MIN_PER_KIND));
    expect(few.map((k) => `${k}: ${counts[k] ?? 0}`)).toEqual([]);
    // Both outcomes occur: some corruptions are harmless (a flipped mantissa bit), most are caught.
    expect(loaded).toBeGreaterThan(0);
    expect(loaded).toBeLessThan(i);
  });

  test('the valid checkpoints load', () => {
    expect(checkLoad(validTraining)).toBeUndefined();
    expect(loadCheckpoint(validInference).kind).toBe('inference');
    // loadCheckpoint refuses it (clearly); the inference loader opens it.
    expect(checkLoad(validInt8)).toBeUndefined();
    expect(openCheckpointWeights(validInt8).dtype).toBe('int8');
  });
});

describe('dsmoe info and convert on corrupted checkpoints (child process)', () => {
  const bin = path.join(__dirname, '..', '..', 'bin', 'dsmoe.js');
  const dsmoe = (...args: string[]) => spawnSync(process.execPath, [bin, ...args],
    { encoding: 'utf8', env: { ...process.env, DSMOE_THREADS: '2', DSMOE_DEBUG: '' } });
  test.each(['truncate', 'hugeHeaderLength', 'badOffsets', 'randomConfigBytes', 'badDtypeOrShape',
    'flipDataBytes'])('%s: exit code 1 and one line naming the folder ' +
    '(info: 0 where only weight bytes changed)', (kind) => {
    const r = rng(kind.length * 7919);
    // Corrupt until loading fails (some corruptions, e.g. a flipped mantissa bit, are harmless).
    let dir = '';
    for (let k = 0; k < 50; k++) {
      dir = path.join(root, `cli-${kind}-${k}`);
      fs.cpSync(validTraining, dir, { recursive: true });
      CORRUPTIONS[kind](dir, r);
      try { loadCheckpoint(dir); } catch { break; }
    }
    expect(() => loadCheckpoint(dir)).toThrow();
    // info reads config.json, the headers and trainer_state.json, no weights: flipped weight bytes
    // leave it working (exit 0, a full report); every other corruption here breaks what it reads.
    const infoWorks = kind === 'flipDataBytes';
    if (infoWorks) expect(checkpointInfo(dir).params.total).toBe(layoutFromConfig(config).totalParams);
    else expect(() => checkpointInfo(dir)).toThrow();
    for (const args of [['info', dir], ['info', dir, '--json'], ['convert', dir, path.join(root, `cli-out-${kind}`)]]) {
      const p = dsmoe(...args);
      const want = infoWorks && args[0] === 'info' ? 0 : 1;
      const what = args[0] + (args.includes('--json') ? ' --json' : '');
      expect({ what, code: p.status, signal: p.signal }).toEqual({ what, code: want, signal: null });
      if (want === 0) {
        expect(p.stderr).toBe('');
        if (args[2] === '--json') expect(JSON.parse(p.stdout).params.total).toBe(layoutFromConfig(config).totalParams);
        else expect(p.stdout).toContain(dir);
      }
      if (p.status !== 0) {
        const lines = p.stderr.trim().split('\n');
        expect(lines).toHaveLength(1);
        expect(lines[0]).toMatch(/^dsmoe: .+/);
        expect(lines[0]).toContain(dir);
      }
    }
    expect(fs.existsSync(path.join(root, `cli-out-${kind}`))).toBe(false);
  });
});
