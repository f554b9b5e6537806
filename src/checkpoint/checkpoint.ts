// Checkpoint folders (DESIGN.md §3):
//
//   config.json             the model config (validated on load)
//   model.safetensors       weights, named and shaped as the layout of config.json implies
//   tokenizer.json          the tokenizer the model was trained with (optional)
//   optimizer.safetensors   AdamW moments: "m.<tensor>" and "v.<tensor>", F32 (training checkpoints)
//   trainer_state.json      step, tokens seen, sampler state, schedule, … (training checkpoints)
//
// Saving is atomic at folder level: everything is written into a sibling temporary folder and
// fsynced, then the old folder is renamed to `<dir>.old-<pid>`, the new one renamed into place and
// the old one removed. A crash at any point leaves a loadable checkpoint: the old folder, the new
// one, or (between the two renames) `<dir>.old-<pid>`, which loadCheckpoint and saveCheckpoint move
// back into place.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { SamplerState } from '../data/sampler';
import { sameShape, shapeDifferences, validateConfig, type ModelConfig } from '../model/config';
import { layoutFromConfig, type ModelLayout, type TensorLayout } from '../model/layout';
import { fsyncDir, writeAll, writeFileSynced } from './fsutil';
import { SafetensorsReader, writeSafetensorsFd, type Dtype, type TensorToWrite } from './safetensors';

export const CONFIG_FILE = 'config.json';
export const MODEL_FILE = 'model.safetensors';
export const TOKENIZER_FILE = 'tokenizer.json';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const TRAINER_STATE_FILE = 'trainer_state.json';
export const TRAINER_STATE_VERSION = 1;

export interface LossRecord {
  step: number;
  loss: number;
  lm_loss: number;
  aux_loss: number;
}

/** trainer_state.json: what a resumed run needs to continue exactly. */
export interface TrainerState {
  format_version: number;
  /** Optimizer steps done. */
  step: number;
  tokens_seen: number;
  /** Training seconds so far (all sessions). */
  elapsed_s: number;
  /** Seed of initialisation and of the batch sampler. */
  seed: number;
  data: {
    inputs: string[];
    /** Seed of the train/validation split. */
    seed: number;
    val_share: number;
    train_tokens: number;
    val_tokens: number;
  };
  sampler: SamplerState;
  schedule: {
    lr: number; min_lr: number; warmup: number;
    /** null while unknown (a --time budget before it is estimated) */
    total_steps: number | null;
  };
  optimizer: { beta1: number; beta2: number; eps: number; weight_decay: number; clip: number };
  batch: { batch_size: number; grad_accum: number; seq_len: number };
  eval: { interval: number; batches: number };
  last_losses: LossRecord[];
  last_eval: { step: number; loss: number; ppl: number } | null;
  threads: number;
  versions: Record<string, string>;
}

/**
 * Values of every tensor of a layout: one flat Float32Array in the layout's order, or a function
 * that returns one tensor's values (its layout size) when the save writes it, so that a model held
 * elsewhere (the engine's trainer) is written one tensor at a time, never copied whole.
 */
export type TensorSource = Float32Array | ((t: TensorLayout) => Float32Array);

export interface CheckpointContents {
  config: ModelConfig;
  /** Parameters in the layout of `config`. */
  params: TensorSource;
  /** tokenizer.json text. */
  tokenizerJson?: string;
  optimizer?: { m: TensorSource; v: TensorSource };
  trainerState?: TrainerState;
  /** dtype of model.safetensors (default F32). */
  dtype?: Dtype;
  /** Extra safetensors metadata for model.safetensors. */
  metadata?: Record<string, string>;
  /** model.safetensors' tensors when they are not `params` in `dtype` (a quantized checkpoint). */
  modelTensors?: TensorToWrite[];
}

/** Points where a test can make saveCheckpoint stop as if the process had died. */
export type SaveCrashPoint = 'after-model' | 'before-swap' | 'mid-swap';

export interface SaveOptions {
  /** For tests: stop at this point without any clean-up, as a crash would. */
  crashAt?: SaveCrashPoint;
}

/** Thrown by a simulated crash (SaveOptions.crashAt). */
export class SimulatedCrash extends Error {
  constructor(point: SaveCrashPoint) {
    super(`simulated crash at ${point}`);
    this.name = 'SimulatedCrash';
  }
}

function tensorsOf(layout: ModelLayout, src: TensorSource, prefix: string, dtype: Dtype): TensorToWrite[] {
  return layout.tensors.map((t) => ({
    name: prefix + t.name, dtype, shape: t.shape,
    data: typeof src === 'function' ? () => src(t) : src.subarray(t.offset, t.offset + t.size),
  }));
}

function oldDirs(dir: string): string[] {
  const parent = path.dirname(dir), base = path.basename(dir);
  if (!fs.existsSync(parent)) return [];
  return fs.readdirSync(parent)
    .filter((n) => n.startsWith(`${base}.old-`))
    .map((n) => path.join(parent, n))
    .filter((p) => fs.existsSync(path.join(p, CONFIG_FILE)))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
}

/**
 * Completes a save that was interrupted between its two renames: when `dir` is missing but a
 * `<dir>.old-*` folder exists, the newest is moved back. Stale old folders next to an existing
 * `dir` are removed. Returns the folder recovered from, if any.
 */
export function recoverInterruptedSave(dir: string): string | undefined {
  const abs = path.resolve(dir);
  const olds = oldDirs(abs);
  if (olds.length === 0) return undefined;
  if (fs.existsSync(abs)) {
    for (const o of olds) fs.rmSync(o, { recursive: true, force: true });
    return undefined;
  }
  fs.renameSync(olds[0], abs);
  fsyncDir(path.dirname(abs));
  return olds[0];
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes `<dir>.tmp-<pid>-*` folders left by crashed saves (this process's, or a dead process's). */
function removeStaleTemps(dir: string): void {
  const parent = path.dirname(dir), base = path.basename(dir);
  for (const n of fs.readdirSync(parent)) {
    const m = n.startsWith(`${base}.tmp-`) ? /^(\d+)-[0-9a-f]+$/.exec(n.slice(base.length + 5)) : null;
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || !pidAlive(pid)) fs.rmSync(path.join(parent, n), { recursive: true, force: true });
  }
}

/** Writes a checkpoint folder atomically (see the file comment). */
export function saveCheckpoint(dir: string, c: CheckpointContents, opts: SaveOptions = {}): void {
  const abs = path.resolve(dir);
  const config = validateConfig(c.config, `config for ${dir}`);
  const layout = layoutFromConfig(config);
  // (A function's tensors are checked one by one as they are written.)
  const wrongLength = (src: TensorSource) => typeof src !== 'function' && src.length !== layout.totalParams;
  if (wrongLength(c.params))
    throw new Error(`saveCheckpoint ${dir}: params have ${(c.params as Float32Array).length} values, `
      + `the config's layout needs ${layout.totalParams}`);
  if (c.optimizer && (wrongLength(c.optimizer.m) || wrongLength(c.optimizer.v)))
    throw new Error(`saveCheckpoint ${dir}: optimizer moments must have ${layout.totalParams} values each`);
  if (c.trainerState) validateTrainerState(c.trainerState, `trainer state for ${dir}`);
  const parent = path.dirname(abs);
  fs.mkdirSync(parent, { recursive: true });
  recoverInterruptedSave(abs);
  removeStaleTemps(abs);
  const tmp = path.join(parent, `${path.basename(abs)}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  const crash = (p: SaveCrashPoint) => {
    if (opts.crashAt === p) throw new SimulatedCrash(p);
  };
  try {
    fs.mkdirSync(tmp);
    const writeJson = (name: string, value: unknown) =>
      writeFileSynced(path.join(tmp, name), (fd) => writeAll(fd, Buffer.from(JSON.stringify(value, null, 2) + '\n')));
    writeJson(CONFIG_FILE, config);
    const dtype = c.dtype ?? 'F32';
    writeFileSynced(path.join(tmp, MODEL_FILE), (fd) => writeSafetensorsFd(fd,
      c.modelTensors ?? tensorsOf(layout, c.params, '', dtype),
      { format: 'pt', producer: 'dsmoe', ...(c.metadata ?? {}) }));
    crash('after-model');
    if (c.tokenizerJson !== undefined)
      writeFileSynced(path.join(tmp, TOKENIZER_FILE), (fd) => writeAll(fd, Buffer.from(c.tokenizerJson!, 'utf8')));
    if (c.optimizer) {
      const { m, v } = c.optimizer;
      writeFileSynced(path.join(tmp, OPTIMIZER_FILE), (fd) => writeSafetensorsFd(fd,
        [...tensorsOf(layout, m, 'm.', 'F32'), ...tensorsOf(layout, v, 'v.', 'F32')],
        { producer: 'dsmoe', optimizer: 'adamw' }));
    }
    if (c.trainerState) writeJson(TRAINER_STATE_FILE, c.trainerState);
    fsyncDir(tmp);
    crash('before-swap');
    if (fs.existsSync(abs)) {
      const old = `${abs}.old-${process.pid}`;
      fs.rmSync(old, { recursive: true, force: true });
      fs.renameSync(abs, old);
      crash('mid-swap');
      fs.renameSync(tmp, abs);
      fsyncDir(parent);
      fs.rmSync(old, { recursive: true, force: true });
    } else {
      fs.renameSync(tmp, abs);
      fsyncDir(parent);
    }
  } catch (e) {
    if (e instanceof SimulatedCrash) throw e;
    fs.rmSync(tmp, { recursive: true, force: true });
    if (!fs.existsSync(abs)) recoverInterruptedSave(abs);
    throw new Error(`could not save checkpoint ${dir}: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Loading

export interface LoadedCheckpoint {
  dir: string;
  config: ModelConfig;
  layout: ModelLayout;
  params: Float32Array;
  /** Path of tokenizer.json when the checkpoint has one. */
  tokenizerPath?: string;
  optimizer?: { m: Float32Array; v: Float32Array };
  trainerState?: TrainerState;
  /** 'training' when it has trainer state and optimizer state (or is at step 0, where a fresh optimizer starts). */
  kind: 'training' | 'inference';
  /** model.safetensors metadata. */
  metadata: Record<string, string>;
  /** Set when an interrupted save was completed from this `.old-*` folder. */
  recoveredFrom?: string;
}

export interface LoadOptions {
  /** Load optimizer.safetensors when present (default true). */
  optimizer?: boolean;
  /** Require a training checkpoint (optimizer and trainer state). */
  requireTraining?: boolean;
  /** The run's config: the checkpoint must have the same shape. */
  expectShape?: ModelConfig;
}

/** Allocates a Float32Array, with a clear error when the model does not fit one. */
export function allocParams(n: number, what: string): Float32Array {
  try {
    return new Float32Array(n);
  } catch (e) {
    throw new Error(`cannot allocate ${what}: ${n} fp32 values (${(n * 4 / 2 ** 30).toFixed(1)} GiB): `
      + `${(e as Error).message}`);
  }
}

/** Largest config.json / trainer_state.json read (they are a few KB; a bigger one is not ours). */
export const MAX_JSON_BYTES = 16 << 20;

/** Reads a JSON file (size-checked before reading); errors name the file. */
export function readJsonFile(file: string, what: string): unknown {
  let text: string;
  try {
    const size = fs.statSync(file).size;
    if (size > MAX_JSON_BYTES)
      throw new Error(`${size} bytes, more than the ${MAX_JSON_BYTES}-byte limit for this file`);
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ${what} ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message.replace(/\s+/g, ' ')})`);
  }
}

/** Checks that a safetensors file holds exactly the layout's tensors (with `prefixes`), shapes equal. */
export function checkTensors(
  r: SafetensorsReader, layout: ModelLayout, prefixes: string[], file: string, onlyF32: boolean,
): void {
  const expected = new Set<string>();
  const quantized = r.header.tensors.find((t) => t.dtype === 'I8' || t.dtype === 'U8');
  if (quantized) {
    throw new Error(`${file} is quantized (tensor "${quantized.name}" is ${quantized.dtype}): a quantized checkpoint ` +
      'is for inference only (eval, generate, bench, serve); train and convert need F32, BF16 or F16 weights');
  }
  for (const p of prefixes) {
    for (const t of layout.tensors) {
      const name = p + t.name;
      expected.add(name);
      if (!r.has(name)) throw new Error(`${file}: tensor "${name}" is missing (config.json's layout needs it)`);
      const e = r.entry(name);
      if (e.shape.join(',') !== t.shape.join(','))
        throw new Error(`${file}: tensor "${name}" has shape [${e.shape.join(', ')}], `
          + `config.json's layout needs [${t.shape.join(', ')}]`);
      if (onlyF32 && e.dtype !== 'F32')
        throw new Error(`${file}: tensor "${name}" is ${e.dtype}; optimizer state must be F32`);
    }
  }
  for (const n of r.names)
    if (!expected.has(n)) throw new Error(`${file}: unexpected tensor "${n}" (not in the layout of config.json)`);
}

/** A NaN or infinite value is an error naming the tensor (a corrupt file). */
function checkFinite(file: string, name: string, part: Float32Array): void {
  for (let i = 0; i < part.length; i++)
    if (!Number.isFinite(part[i]))
      throw new Error(`${file}: tensor "${name}" holds ${part[i]} at element ${i} (a corrupt or diverged checkpoint)`);
}

/** Reads the layout's tensors into `dst`, each checked to be finite. */
function readInto(layout: ModelLayout, prefix: string, dst: Float32Array, r: SafetensorsReader): void {
  for (const t of layout.tensors) {
    const part = dst.subarray(t.offset, t.offset + t.size);
    r.readFloat32Into(prefix + t.name, part);
    checkFinite(r.file, prefix + t.name, part);
  }
}

/** A checkpoint whose files are checked (headers against the layout) but whose tensors are not read yet. */
export interface OpenedCheckpoint extends Omit<LoadedCheckpoint, 'params' | 'optimizer'> {
  /** optimizer.safetensors is present and its header was checked (readCheckpointTensors reads 'adamM'/'adamV'). */
  hasOptimizer: boolean;
}

/** Which array of the training state a checkpoint tensor belongs to (the engine's slot names). */
export type CheckpointSlot = 'param' | 'adamM' | 'adamV';

/**
 * Streams one slot of a checkpoint opened with openCheckpoint, tensor by tensor in layout order:
 * each is read (fs.readSync) into one reused buffer, converted to fp32, checked to be finite and
 * handed to `fn`. The view is valid only during the call: a consumer copies it (the engine's
 * loadTensor does). At most one tensor of the model is in memory here, never the whole model.
 */
export function readCheckpointTensors(
  ck: OpenedCheckpoint, slot: CheckpointSlot, fn: (name: string, data: Float32Array) => void,
): void {
  if (slot !== 'param' && !ck.hasOptimizer) throw new Error(`checkpoint ${ck.dir} has no ${OPTIMIZER_FILE}`);
  const file = path.join(ck.dir, slot === 'param' ? MODEL_FILE : OPTIMIZER_FILE);
  const prefix = slot === 'param' ? '' : slot === 'adamM' ? 'm.' : 'v.';
  const r = SafetensorsReader.open(file);
  try {
    // Checked again: the file may have changed since openCheckpoint.
    checkTensors(r, ck.layout, slot === 'param' ? [''] : ['m.', 'v.'], file, slot !== 'param');
    let largest = 0;
    for (const t of ck.layout.tensors) largest = Math.max(largest, t.size);
    const buf = allocParams(largest, 'a checkpoint tensor');
    for (const t of ck.layout.tensors) {
      const part = buf.subarray(0, t.size);
      r.readFloat32Into(prefix + t.name, part);
      checkFinite(file, prefix + t.name, part);
      fn(t.name, part);
    }
  } finally {
    r.close();
  }
}

/**
 * Opens and checks a checkpoint folder like loadCheckpoint, without reading its tensors: config,
 * trainer state and the safetensors headers are checked; readCheckpointTensors streams the data.
 */
export function openCheckpoint(dir: string, opts: LoadOptions = {}): OpenedCheckpoint {
  const { params: _p, optimizer: _o, ...rest } = loadOrOpen(dir, opts, false);
  return rest;
}

/** Loads and checks a checkpoint folder (training or inference). */
export function loadCheckpoint(dir: string, opts: LoadOptions = {}): LoadedCheckpoint {
  const { hasOptimizer: _h, params, ...rest } = loadOrOpen(dir, opts, true);
  return { ...rest, params: params! };
}

function loadOrOpen(
  dir: string, opts: LoadOptions, readTensors: boolean,
): Omit<LoadedCheckpoint, 'params'> & { params?: Float32Array; hasOptimizer: boolean } {
  const abs = path.resolve(dir);
  const recoveredFrom = recoverInterruptedSave(abs);
  if (!fs.existsSync(abs)) throw new Error(`checkpoint folder not found: ${dir}`);
  if (!fs.statSync(abs).isDirectory()) throw new Error(`checkpoint ${dir} is not a folder`);
  const cfgFile = path.join(abs, CONFIG_FILE);
  if (!fs.existsSync(cfgFile)) throw new Error(`checkpoint ${dir} has no ${CONFIG_FILE}`);
  const config = validateConfig(readJsonFile(cfgFile, 'config'), cfgFile);
  if (opts.expectShape && !sameShape(config, opts.expectShape))
    throw new Error(`checkpoint ${dir} has a different model shape than this run: `
      + `${shapeDifferences(config, opts.expectShape).join(', ')}`);
  const layout = layoutFromConfig(config);

  const modelFile = path.join(abs, MODEL_FILE);
  if (!fs.existsSync(modelFile)) throw new Error(`checkpoint ${dir} has no ${MODEL_FILE}`);
  let metadata: Record<string, string>;
  let params: Float32Array | undefined;
  const r = SafetensorsReader.open(modelFile);
  try {
    // The header is checked against the layout (and the file's size) before anything is allocated
    // from config.json's numbers: a config that claims a huge model fails here, not in an allocation.
    checkTensors(r, layout, [''], modelFile, false);
    if (readTensors) {
      params = allocParams(layout.totalParams, 'the model parameters');
      readInto(layout, '', params, r);
    }
    metadata = r.metadata;
  } finally {
    r.close();
  }

  const optFile = path.join(abs, OPTIMIZER_FILE);
  const stateFile = path.join(abs, TRAINER_STATE_FILE);
  const hasOpt = fs.existsSync(optFile), hasState = fs.existsSync(stateFile);
  let trainerState: TrainerState | undefined;
  if (hasState) trainerState = validateTrainerState(readJsonFile(stateFile, 'trainer state'), stateFile);
  // A checkpoint at step 0 (e.g. `dsmoe convert --from-dense`) may have no optimizer state: resuming
  // it starts a fresh AdamW, which is exactly what zero moments at step 0 would give.
  const freshOptimizer = !hasOpt && trainerState?.step === 0;
  if (opts.requireTraining && !freshOptimizer && (!hasOpt || !hasState))
    throw new Error(`checkpoint ${dir} is not a training checkpoint (missing `
      + `${[!hasOpt && OPTIMIZER_FILE, !hasState && TRAINER_STATE_FILE].filter(Boolean).join(' and ')}); `
      + 'it cannot be resumed');
  if (hasOpt !== hasState && !freshOptimizer)
    throw new Error(`checkpoint ${dir} is incomplete: it has ${hasOpt ? OPTIMIZER_FILE : TRAINER_STATE_FILE} `
      + `but no ${hasOpt ? TRAINER_STATE_FILE : OPTIMIZER_FILE}`);
  let optimizer: LoadedCheckpoint['optimizer'];
  const hasOptimizer = hasOpt && (opts.optimizer ?? true);
  if (hasOptimizer) {
    const o = SafetensorsReader.open(optFile);
    try {
      checkTensors(o, layout, ['m.', 'v.'], optFile, true);
      if (readTensors) {
        const m = allocParams(layout.totalParams, 'AdamW m'), v = allocParams(layout.totalParams, 'AdamW v');
        optimizer = { m, v };
        readInto(layout, 'm.', m, o);
        readInto(layout, 'v.', optimizer.v, o);
      }
    } finally {
      o.close();
    }
  }
  const tokFile = path.join(abs, TOKENIZER_FILE);
  return {
    dir: abs, config, layout, params, optimizer, hasOptimizer, trainerState, metadata, recoveredFrom,
    tokenizerPath: fs.existsSync(tokFile) ? tokFile : undefined,
    kind: hasState && (hasOpt || freshOptimizer) ? 'training' : 'inference',
  };
}

/** A value in an error message (a missing field says so, not "undefined"). */
const show = (v: unknown): string => (v === undefined ? 'nothing (the field is missing)' : JSON.stringify(v));

/** Checks trainer_state.json's fields; errors name the field. */
export function validateTrainerState(value: unknown, source: string): TrainerState {
  const fail = (field: string, msg: string): never => {
    throw new Error(`${source}: ${field}: ${msg}`);
  };
  const obj = (v: unknown, field: string): Record<string, unknown> => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(field, 'must be an object');
    return v as Record<string, unknown>;
  };
  const s = obj(value, 'trainer state');
  const nonNeg = (o: Record<string, unknown>, k: string, prefix = '', integer = true) => {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (integer && !Number.isInteger(v)))
      fail(prefix + k, `must be a non-negative ${integer ? 'integer' : 'number'}, got ${show(v)}`);
  };
  nonNeg(s, 'format_version');
  if ((s.format_version as number) > TRAINER_STATE_VERSION)
    fail('format_version', `${s.format_version} is newer than this dsmoe understands`);
  nonNeg(s, 'step');
  nonNeg(s, 'tokens_seen');
  nonNeg(s, 'elapsed_s', '', false);
  if (!Number.isSafeInteger(s.seed)) fail('seed', `must be an integer, got ${show(s.seed)}`);
  const data = obj(s.data, 'data');
  if (!Array.isArray(data.inputs) || data.inputs.some((x) => typeof x !== 'string'))
    fail('data.inputs', 'must be a list of paths');
  for (const k of ['train_tokens', 'val_tokens']) nonNeg(data, k, 'data.');
  nonNeg(data, 'val_share', 'data.', false);
  if (!Number.isSafeInteger(data.seed)) fail('data.seed', 'must be an integer');
  const sampler = obj(s.sampler, 'sampler');
  if (!Array.isArray(sampler.rng) || sampler.rng.length !== 4 || sampler.rng.some((x) => !Number.isInteger(x)))
    fail('sampler.rng', 'must be four 32-bit integers');
  for (const k of ['step', 'tokens', 'batchSize', 'seqLen']) nonNeg(sampler, k, 'sampler.');
  const sch = obj(s.schedule, 'schedule');
  for (const k of ['lr', 'min_lr']) nonNeg(sch, k, 'schedule.', false);
  nonNeg(sch, 'warmup', 'schedule.');
  if (sch.total_steps !== null) nonNeg(sch, 'total_steps', 'schedule.');
  const opt = obj(s.optimizer, 'optimizer');
  for (const k of ['beta1', 'beta2', 'eps', 'weight_decay', 'clip']) nonNeg(opt, k, 'optimizer.', false);
  const batch = obj(s.batch, 'batch');
  for (const k of ['batch_size', 'grad_accum', 'seq_len']) nonNeg(batch, k, 'batch.');
  const ev = obj(s.eval, 'eval');
  for (const k of ['interval', 'batches']) nonNeg(ev, k, 'eval.');
  if (!Array.isArray(s.last_losses)) fail('last_losses', 'must be a list');
  (s.last_losses as unknown[]).forEach((r, i) => {
    const rec = obj(r, `last_losses[${i}]`);
    for (const k of ['step', 'loss', 'lm_loss', 'aux_loss'])
      if (typeof rec[k] !== 'number' || !Number.isFinite(rec[k]))
        fail(`last_losses[${i}].${k}`, `must be a finite number, got ${show(rec[k])}`);
  });
  if (s.last_eval !== null) {
    const le = obj(s.last_eval, 'last_eval');
    // (ppl may be null: JSON has no Infinity)
    for (const k of ['step', 'loss', 'ppl'])
      if (typeof le[k] !== 'number' && !(k === 'ppl' && le[k] === null))
        fail(`last_eval.${k}`, `must be a number, got ${show(le[k])}`);
  }
  nonNeg(s, 'threads');
  obj(s.versions, 'versions');
  return JSON.parse(JSON.stringify(s)) as TrainerState;
}
