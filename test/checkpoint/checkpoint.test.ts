// Checkpoint folders: round trip, inference checkpoints, shape/tensor checks, and atomic saves that
// survive a crash at every point.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  CONFIG_FILE, MODEL_FILE, OPTIMIZER_FILE, SimulatedCrash, TRAINER_STATE_FILE, loadCheckpoint, openCheckpoint,
  readCheckpointTensors,
  saveCheckpoint, type CheckpointSlot, type TrainerState,
} from '../../src/checkpoint/checkpoint';
import { SafetensorsReader, writeSafetensors } from '../../src/checkpoint/safetensors';
import { buildConfig, getPreset } from '../../src/model/config';
import { layoutFromConfig } from '../../src/model/layout';
import { bf16NearestEvenRef, f32FromBits } from '../reference/bf16';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-ckpt-'));
const config = () => buildConfig({ preset: 'tiny', tokenizerVocab: 50 });

function filled(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(i * 0.37 + seed);
  return a;
}

function state(step: number): TrainerState {
  return {
    format_version: 1, step, tokens_seen: step * 256, elapsed_s: 1.5, seed: 7,
    data: { inputs: ['a.txt'], seed: 0, val_share: 0.05, train_tokens: 1000, val_tokens: 100 },
    sampler: { rng: [1, 2, 3, 4], step, tokens: 1000, batchSize: 4, seqLen: 64 },
    schedule: { lr: 1e-3, min_lr: 1e-4, warmup: 2, total_steps: 10 },
    optimizer: { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.01, clip: 1 },
    batch: { batch_size: 4, grad_accum: 1, seq_len: 64 }, eval: { interval: 5, batches: 2 },
    last_losses: [{ step, loss: 3, lm_loss: 2.9, aux_loss: 0.1 }], last_eval: null, threads: 2,
    versions: { dsmoe: 'test' },
  };
}

function save(dir: string, step: number, opts = {}) {
  const c = config();
  const n = layoutFromConfig(c).totalParams;
  saveCheckpoint(dir, {
    config: c, params: filled(n, step), optimizer: { m: filled(n, step + 100), v: filled(n, step + 200) },
    trainerState: state(step), tokenizerJson: '{"fake": true}',
  }, opts);
}

describe('checkpoint folders', () => {
  test('round trip of a training checkpoint', () => {
    const dir = path.join(tmp(), 'run');
    save(dir, 3);
    expect(fs.readdirSync(dir).sort()).toEqual([CONFIG_FILE, MODEL_FILE, OPTIMIZER_FILE, 'tokenizer.json',
      TRAINER_STATE_FILE].sort());
    const ck = loadCheckpoint(dir, { requireTraining: true });
    const n = ck.layout.totalParams;
    expect(ck.kind).toBe('training');
    expect(ck.config).toEqual(config());
    expect(Array.from(ck.params)).toEqual(Array.from(filled(n, 3)));
    expect(Array.from(ck.optimizer!.m)).toEqual(Array.from(filled(n, 103)));
    expect(Array.from(ck.optimizer!.v)).toEqual(Array.from(filled(n, 203)));
    expect(ck.trainerState!.step).toBe(3);
    expect(fs.readFileSync(ck.tokenizerPath!, 'utf8')).toBe('{"fake": true}');
    expect(fs.readdirSync(path.dirname(dir))).toEqual(['run']); // no temporary or old folders left
    // overwrite in place
    save(dir, 4);
    expect(loadCheckpoint(dir).trainerState!.step).toBe(4);
    expect(fs.readdirSync(path.dirname(dir))).toEqual(['run']);
  });

  test('inference checkpoints (BF16, no optimizer) load; resuming them is a clear error', () => {
    const dir = path.join(tmp(), 'inf');
    const c = config();
    const n = layoutFromConfig(c).totalParams;
    saveCheckpoint(dir, { config: c, params: filled(n, 1), dtype: 'BF16' });
    const ck = loadCheckpoint(dir);
    expect(ck.kind).toBe('inference');
    expect(ck.optimizer).toBeUndefined();
    // Every weight is the fp32 one rounded to the nearest bf16, ties to even (truncation, which is
    // also within 2^-8 of these values, would fail here).
    const ref = filled(n, 1);
    let wrong = 0, changed = 0;
    for (let i = 0; i < n; i++) {
      if (ck.params[i] !== f32FromBits(bf16NearestEvenRef(ref[i]) << 16)) wrong++;
      if (ck.params[i] !== ref[i]) changed++;
    }
    expect(wrong).toBe(0);
    expect(changed).toBeGreaterThan(n / 2);
    expect(() => loadCheckpoint(dir,
      { requireTraining: true }))
      .toThrow(/not a training checkpoint \(missing optimizer.safetensors and trainer_state.json\)/);
  });

  test('a different shape, a missing or extra tensor, wrong shapes and bad configs are clear errors', () => {
    const dir = path.join(tmp(), 'run');
    save(dir, 1);
    const other = buildConfig({ preset: 'tiny', overrides: { d_model: 32 }, tokenizerVocab: 50 });
    expect(() => loadCheckpoint(dir,
      { expectShape: other })).toThrow(/different model shape than this run: d_model 64 \(checkpoint\) vs 32/);

    const c = config();
    const L = layoutFromConfig(c);
    const params = filled(L.totalParams, 0);
    const tensors = L.tensors.map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape,
      data: params.subarray(t.offset, t.offset + t.size) }));
    const model = path.join(dir, MODEL_FILE);
    writeSafetensors(model, tensors.slice(1));
    expect(() => loadCheckpoint(dir)).toThrow(/model.safetensors: tensor "embed.weight" is missing/);
    writeSafetensors(model, [...tensors, { name: 'extra', dtype: 'F32', shape: [1], data: new Float32Array(1) }]);
    expect(() => loadCheckpoint(dir)).toThrow(/unexpected tensor "extra"/);
    const bad = tensors.map((t) => (t.name === 'final_norm.weight' ? { ...t, shape: [8, 8] } : t));
    writeSafetensors(model, bad);
    expect(() => loadCheckpoint(dir))
      .toThrow(/tensor "final_norm.weight" has shape \[8, 8\], config.json's layout needs \[64\]/);
    writeSafetensors(model, tensors);
    expect(() => loadCheckpoint(dir)).not.toThrow();

    fs.writeFileSync(path.join(dir, TRAINER_STATE_FILE), JSON.stringify({ ...state(1), step: -1 }));
    expect(() => loadCheckpoint(dir)).toThrow(/trainer_state.json: step: must be a non-negative integer/);
    fs.rmSync(path.join(dir, TRAINER_STATE_FILE));
    expect(() => loadCheckpoint(dir)).toThrow(/incomplete: it has optimizer.safetensors but no trainer_state.json/);
    fs.writeFileSync(path.join(dir, CONFIG_FILE), JSON.stringify({ ...c, attention: { ...c.attention, n_heads: 3 } }));
    expect(() => loadCheckpoint(dir)).toThrow(/config.json: attention.n_heads/);
    fs.writeFileSync(path.join(dir, CONFIG_FILE), '{oops');
    expect(() => loadCheckpoint(dir)).toThrow(/config.json: not valid JSON/);
    expect(() => loadCheckpoint(path.join(dir, 'nope'))).toThrow(/checkpoint folder not found/);
  });

  test('two-layer routers (router_hidden) round-trip; a linear checkpoint without the field loads unchanged', () => {
    const root = tmp();
    const c = buildConfig({ preset: 'tiny', tokenizerVocab: 50, overrides: { router_hidden: 12 } });
    const L = layoutFromConfig(c), n = L.totalParams;
    saveCheckpoint(path.join(root, 'rh'), {
      config: c, params: filled(n, 2), optimizer: { m: filled(n, 3), v: filled(n, 4) }, trainerState: state(2),
    });
    const file = JSON.parse(fs.readFileSync(path.join(root, 'rh', CONFIG_FILE), 'utf8'));
    expect(file.router_hidden).toBe(12);
    const ck = loadCheckpoint(path.join(root, 'rh'), { requireTraining: true, expectShape: c });
    expect(ck.config).toEqual(c);
    expect(Array.from(ck.params)).toEqual(Array.from(filled(n, 2)));
    expect(Array.from(ck.optimizer!.v)).toEqual(Array.from(filled(n, 4)));
    const r = SafetensorsReader.open(path.join(root, 'rh', MODEL_FILE));
    try {
      expect(r.names.filter((x) => x.startsWith('layers.0.') && x.includes('router')).sort()).toEqual([
        'layers.0.attn.router.hidden.weight', 'layers.0.attn.router.output.weight',
        'layers.0.mlp.router.hidden.weight', 'layers.0.mlp.router.output.weight']);
      expect(r.header.tensors.find((t) => t.name === 'layers.1.mlp.router.output.weight')!.shape).toEqual([4, 12]);
    } finally {
      r.close();
    }
    // Resuming with linear routers (or the other way round) is a shape mismatch naming router_hidden.
    expect(() => loadCheckpoint(path.join(root, 'rh'), { expectShape: config() }))
      .toThrow(/different model shape than this run: router_hidden 12 \(checkpoint\) vs 0/);
    // A checkpoint written before router_hidden existed: no field in config.json, router.weight tensors.
    const old = path.join(root, 'old');
    save(old, 1);
    const oldCfg = JSON.parse(fs.readFileSync(path.join(old, CONFIG_FILE), 'utf8'));
    expect('router_hidden' in oldCfg).toBe(false);
    const lin = loadCheckpoint(old, { expectShape: config() });
    const routerNames = lin.layout.tensors.filter((t) => t.name.includes('router')).map((t) => t.name);
    expect(routerNames.every((n) => n.endsWith('.router.weight'))).toBe(true);
    // Its tensors do not satisfy a two-layer config: the first router tensor is named as missing.
    fs.writeFileSync(path.join(old, CONFIG_FILE), JSON.stringify({ ...oldCfg, router_hidden: 12 }));
    expect(() => loadCheckpoint(old)).toThrow(/safetensors: tensor "layers.0.attn.router.hidden.weight" is missing/);
  });

  test('optimizer state of the wrong shape or dtype is refused', () => {
    const dir = path.join(tmp(), 'run');
    save(dir, 1);
    const L = layoutFromConfig(config());
    const z = new Float32Array(L.totalParams);
    const opt = (dtype: 'F32' | 'BF16', skip = '') => [
      ...L.tensors.filter((t) => `m.${t.name}` !== skip).map((t) => ({ name: `m.${t.name}`, dtype, shape: t.shape,
        data: z.subarray(t.offset, t.offset + t.size) })),
      ...L.tensors.map((t) => ({ name: `v.${t.name}`, dtype, shape: t.shape,
        data: z.subarray(t.offset, t.offset + t.size) })),
    ];
    writeSafetensors(path.join(dir, OPTIMIZER_FILE), opt('BF16'));
    expect(() => loadCheckpoint(dir))
      .toThrow(/optimizer.safetensors: tensor "m.embed.weight" is BF16; optimizer state must be F32/);
    writeSafetensors(path.join(dir, OPTIMIZER_FILE), opt('F32', 'm.final_norm.weight'));
    expect(() => loadCheckpoint(dir)).toThrow(/tensor "m.final_norm.weight" is missing/);
    expect(() => loadCheckpoint(dir, { optimizer: false })).not.toThrow();
  });
});

describe('streaming: one tensor at a time in and out', () => {
  test('a save from per-tensor functions writes the same bytes as one from flat arrays', () => {
    const c = config();
    const L = layoutFromConfig(c);
    const n = L.totalParams;
    const flat = { p: filled(n, 5), m: filled(n, 105), v: filled(n, 205) };
    const a = path.join(tmp(), 'flat'), b = path.join(tmp(), 'streamed');
    const common = { config: c, trainerState: state(5), tokenizerJson: '{}', metadata: { step: '5' } };
    saveCheckpoint(a, { ...common, params: flat.p, optimizer: { m: flat.m, v: flat.v } });
    const calls: string[] = [];
    const from = (buf: Float32Array, what: string) => (t: { name: string; offset: number; size: number }) => {
      calls.push(`${what}.${t.name}`);
      return buf.slice(t.offset, t.offset + t.size);  // a fresh array per tensor, as readTensor gives
    };
    saveCheckpoint(b, { ...common, params: from(flat.p, 'p'), optimizer: { m: from(flat.m, 'm'),
      v: from(flat.v, 'v') } });
    for (const f of [MODEL_FILE, OPTIMIZER_FILE, CONFIG_FILE, TRAINER_STATE_FILE])
      expect(fs.readFileSync(path.join(b, f)).equals(fs.readFileSync(path.join(a, f)))).toBe(true);
    // Each tensor asked for once, in file order: parameters, then every m, then every v.
    expect(calls).toEqual([...L.tensors.map((t) => `p.${t.name}`), ...L.tensors.map((t) => `m.${t.name}`),
      ...L.tensors.map((t) => `v.${t.name}`)]);
  });

  test('a per-tensor function of the wrong size fails the save, naming the tensor, ' +
    'and leaves the old checkpoint', () => {
    const dir = path.join(tmp(), 'run');
    save(dir, 2);
    const c = config();
    const n = layoutFromConfig(c).totalParams;
    expect(() => saveCheckpoint(dir, { config: c, params: (t) => new Float32Array(t.name === 'final_norm.weight' ? 3
      : t.size),
    optimizer: { m: filled(n, 1), v: filled(n, 2) }, trainerState: state(3) }))
      .toThrow(new RegExp('could not save checkpoint .*tensor "final_norm.weight": ' +
        'shape \\[64\\] has 64 elements but the data has 3'));
    expect(loadCheckpoint(dir).trainerState!.step).toBe(2);
    expect(fs.readdirSync(path.dirname(dir))).toEqual(['run']);
  });

  test('openCheckpoint checks without reading; ' +
    'readCheckpointTensors streams every slot with the values loadCheckpoint gives', () => {
    const dir = path.join(tmp(), 'run');
    save(dir, 3);
    const full = loadCheckpoint(dir, { requireTraining: true });
    const ck = openCheckpoint(dir, { requireTraining: true });
    expect(ck).not.toHaveProperty('params');
    expect(ck).not.toHaveProperty('optimizer');
    expect(ck).toMatchObject({ kind: 'training', hasOptimizer: true, config: full.config,
      trainerState: full.trainerState });
    const want: Record<CheckpointSlot, Float32Array> = { param: full.params, adamM: full.optimizer!.m,
      adamV: full.optimizer!.v };
    for (const slot of ['param', 'adamM', 'adamV'] as const) {
      const got = new Float32Array(ck.layout.totalParams);
      const buffers = new Set<ArrayBufferLike>();
      const names: string[] = [];
      readCheckpointTensors(ck, slot, (name, data) => {
        const t = ck.layout.tensors.find((x) => x.name === name)!;
        expect(data.length).toBe(t.size);
        got.set(data, t.offset);
        buffers.add(data.buffer);
        names.push(name);
      });
      expect(names).toEqual(ck.layout.tensors.map((t) => t.name));
      expect(buffers.size).toBe(1);  // one reused buffer
      expect(Buffer.from(got.buffer).equals(Buffer.from(want[slot].buffer))).toBe(true);
    }
  });

  test('streaming finds a non-finite value and names the tensor; no optimizer file is a clear error', () => {
    const dir = path.join(tmp(), 'run');
    save(dir, 3);
    const ck = openCheckpoint(dir);
    const file = path.join(dir, MODEL_FILE);
    const r = SafetensorsReader.open(file);
    const e = r.entry('final_norm.weight');
    const at = r.header.dataStart + e.begin + 4 * 5;
    r.close();
    const bytes = fs.readFileSync(file);
    bytes.writeFloatLE(NaN, at);
    fs.writeFileSync(file, bytes);
    expect(() => readCheckpointTensors(ck, 'param',
      () => {})).toThrow(/model.safetensors: tensor "final_norm.weight" holds NaN at element 5/);
    fs.rmSync(path.join(dir, OPTIMIZER_FILE));
    fs.rmSync(path.join(dir, TRAINER_STATE_FILE));
    const inference = openCheckpoint(dir);
    expect(inference.hasOptimizer).toBe(false);
    expect(() => readCheckpointTensors(inference, 'adamM', () => {})).toThrow(/has no optimizer.safetensors/);
  });
});

describe('atomic saves: a crash never destroys the last good checkpoint', () => {
  test.each(['after-model', 'before-swap'] as const)('crash %s: the previous checkpoint still loads', (point) => {
    const dir = path.join(tmp(), 'run');
    save(dir, 5);
    expect(() => save(dir, 6, { crashAt: point })).toThrow(SimulatedCrash);
    expect(loadCheckpoint(dir).trainerState!.step).toBe(5);
    // the next save cleans up and succeeds
    expect(fs.readdirSync(path.dirname(dir)).some((n) => n.startsWith('run.tmp-'))).toBe(true);
    save(dir, 7);
    expect(loadCheckpoint(dir).trainerState!.step).toBe(7);
    expect(fs.readdirSync(path.dirname(dir))).toEqual(['run']); // the crashed save's temporary folder is gone
  });

  test('crash between the renames: the old folder is moved back on load', () => {
    const parent = tmp();
    const dir = path.join(parent, 'run');
    save(dir, 5);
    expect(() => save(dir, 6, { crashAt: 'mid-swap' })).toThrow(SimulatedCrash);
    expect(fs.existsSync(dir)).toBe(false);
    const ck = loadCheckpoint(dir);
    expect(ck.trainerState!.step).toBe(5);
    expect(ck.recoveredFrom).toMatch(/run\.old-\d+$/);
    expect(fs.existsSync(dir)).toBe(true);
  });

  test('crash between the renames: the next save recovers first', () => {
    const dir = path.join(tmp(), 'run');
    save(dir, 5);
    expect(() => save(dir, 6, { crashAt: 'mid-swap' })).toThrow(SimulatedCrash);
    save(dir, 8);
    expect(loadCheckpoint(dir).trainerState!.step).toBe(8);
    expect(fs.readdirSync(path.dirname(dir)).filter((n) => n.includes('.old-'))).toEqual([]);
  });

  test('a failing save (bad input) leaves nothing behind', () => {
    const dir = path.join(tmp(), 'run');
    save(dir, 5);
    const c = getPreset('tiny').config;
    expect(() => saveCheckpoint(dir, { config: c, params: new Float32Array(3) })).toThrow(/params have 3 values/);
    expect(fs.readdirSync(path.dirname(dir))).toEqual(['run']);
    expect(loadCheckpoint(dir).trainerState!.step).toBe(5);
  });
});

describe('step-0 checkpoints without optimizer state', () => {
  test('load as training checkpoints (a fresh AdamW on resume); later steps still need the optimizer file', () => {
    const c = config();
    const n = layoutFromConfig(c).totalParams;
    const dir = path.join(tmp(), 'up');
    saveCheckpoint(dir, { config: c, params: filled(n, 1), trainerState: state(0) });
    const ck = loadCheckpoint(dir, { requireTraining: true });
    expect(ck.kind).toBe('training');
    expect(ck.optimizer).toBeUndefined();
    const later = path.join(tmp(), 'later');
    saveCheckpoint(later, { config: c, params: filled(n, 1), trainerState: state(5) });
    expect(() => loadCheckpoint(later))
      .toThrow(/is incomplete: it has trainer_state\.json but no optimizer\.safetensors/);
    expect(() => loadCheckpoint(later, { requireTraining: true })).toThrow(/missing optimizer\.safetensors/);
  });
});

