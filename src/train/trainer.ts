// The training loop behind `dsmoe train`: config, data, the schedule, steps through the engine's
// trainer, evaluation, checkpoints, Ctrl-C and divergence. TS owns the run; each step, eval batch
// and initialisation is one call into the engine (DESIGN §2), which owns the parameters, gradients
// and AdamW moments on the chosen device: a checkpoint is streamed into it and out of it one tensor
// at a time, so no copy of the model is ever held in JavaScript.
//
// The trainer comes from a ModelBackend (the addon by default); tests inject a fake one. The run
// returns data (why it ended, where the checkpoint is); the command line chooses exit codes and
// hints (src/cli/exit-codes.ts, src/cli/hints.ts).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  openCheckpoint, readCheckpointTensors, saveCheckpoint, type CheckpointSlot, type LossRecord, type OpenedCheckpoint,
  type TrainerState,
} from '../checkpoint/checkpoint';
import { BUILTIN_CORPUS } from '../data/corpus';
import { loadDataset, resolveInputs, trainTokenCount, type Dataset, type DataProgress } from '../data/dataset';
import { BatchSampler, ShardSampler, countEvalWindows, evalBatches } from '../data/sampler';
import {
  ConfigError, DEFAULT_PRESET, buildConfig, describeShape, getPreset, paramCount, sameShape, shapeDifferences,
  validateConfig,
  type ConfigOverrides, type ModelConfig, type ParamCount,
} from '../model/config';
import { layoutDifferences, layoutFromConfig, type TensorLayout } from '../model/layout';
import { calibrateInPlace, type CalibrateResult } from '../convert/calibrate';
import { evaluateTokens, reuseSessions, type EngineModel } from '../infer/eval';
import type { Routing } from '../model/routing';
import type { TrainingMode } from '../model/model-config';
import type { ModelFunctions, StepStats } from '../native/types/model';
import type { NativeTrainer } from '../native/types/trainer';
import { defaultTokenizer } from '../tokenizer/default';
import { loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer';
import { envThreads } from '../util/env';
import { allGatherDigests, digest48, type ProcessGroup } from '../parallel/group';
import { defaultWarmup, lrAt, type LrSchedule } from './schedule';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { version: DSMOE_VERSION } = require('../../package.json') as { version: string };

/** AdamW as in the paper (DESIGN §1.2). */
export const ADAM_BETA1 = 0.9;
export const ADAM_BETA2 = 0.95;
export const ADAM_EPS = 1e-8;
export const DEFAULT_WEIGHT_DECAY = 0.01;
export const DEFAULT_CLIP = 1.0;
export const DEFAULT_VAL_SHARE = 0.05;
/** Steps timed before a --time budget fixes the run's length (and the cosine schedule's horizon). */
export const TIME_PROBE_STEPS = 3;

/**
 * The engine's training state as the loop uses it. createSession (an inference session over the
 * live parameters) may be absent (test fakes): evaluations then report no routed perplexity and
 * active share (those fields are null).
 */
export type TrainerHandle = Omit<NativeTrainer, 'createSession'> & Partial<Pick<NativeTrainer, 'createSession'>>;

/** What the training loop needs from the native side. */
export interface ModelBackend extends Pick<ModelFunctions, 'modelLayout'> {
  /**
   * The training state of `config` on `device` ('cpu', 'cuda', 'cuda:N'); throws naming the reason
   * when the device is not usable.
   */
  createTrainer(args: { config: ModelConfig; device?: string }): TrainerHandle;
  /** Sets the kernel thread count; returns it. */
  setThreads?(threads: number): number;
  /** Versions recorded in trainer_state.json (e.g. the addon's ISA and build system). */
  versions?(): Record<string, string>;
}

/** The engine refused the device asked for (no GPU, no CUDA build, no such index): its message says why. */
export class DeviceUnusableError extends Error {
  constructor(message: string, readonly device: string) {
    super(message);
    this.name = 'DeviceUnusableError';
  }
}

export interface TrainOptions {
  preset?: string;
  mode?: string;
  /** A config.json (full or partial) deep-merged over the preset. */
  configFile?: string;
  overrides?: ConfigOverrides;
  /** Inputs for loadDataset; default the built-in corpus. */
  data?: string[];
  /** tokenizer.json; default the built-in default tokenizer (or the checkpoint's when resuming). */
  tokenizer?: string;
  steps?: number;
  tokens?: number;
  /** Wall-clock budget of this session, seconds. */
  timeS?: number;
  batchSize?: number;
  gradAccum?: number;
  lr?: number;
  minLr?: number;
  warmup?: number;
  weightDecay?: number;
  clip?: number;
  seed?: number;
  /** Evaluate every N steps (0: only at the end). Default: 10 times per run. */
  evalInterval?: number;
  /** Validation batches per evaluation (default 20). */
  evalBatches?: number;
  /** Save every N steps (0: only at the end). Default: 10 times per run. */
  saveInterval?: number;
  /** Checkpoint folder; default runs/<preset>-<mode>, or the resumed folder. */
  out?: string;
  /** Checkpoint folder to continue from. */
  resume?: string;
  threads?: number;
  valShare?: number;
  /** Cache folder for tokens and the default tokenizer. */
  cacheDir?: string;
  /**
   * At the end of the run, choose threshold:ε per layer kind so that this share (0, 1] of expert
   * parameters is active on held-out text (dsmoe convert --calibrate's code) and store it as the
   * checkpoint's default routing.
   */
  targetActive?: number;
  /** Calibrate (--target-active) also after an abort (bench reproduce's time cap is one). */
  calibrateWhenInterrupted?: boolean;
  /** Aborting finishes the current step, saves and returns with reason 'interrupted'. */
  signal?: AbortSignal;
  /** Where the training state lives: 'cpu' (default), 'cuda', 'cuda:N'. */
  device?: string;
  /**
   * Data-parallel training (docs/distributed.md): this process is one rank of the group. Each rank
   * trains on its share of every global batch (batch × ranks × grad-accum), the gradients are
   * averaged by the engine's gradient-reduction hook, rank 0 writes the checkpoints.
   */
  group?: ProcessGroup;
}

export interface RunInfo {
  config: ModelConfig;
  params: ParamCount;
  outDir: string;
  preset: string;
  resumedFrom?: string;
  startStep: number;
  /** null while unknown (--time). */
  totalSteps: number | null;
  tokensPerStep: number;
  batchSize: number;
  /** Micro-batches per optimizer step over all ranks (per rank × ranks). */
  gradAccum: number;
  /** Data-parallel ranks (1 in one process). */
  ranks: number;
  seqLen: number;
  threads: number;
  trainTokens: number;
  valTokens: number;
  timeBudgetS?: number;
  notes: string[];
}

export interface StepRecord {
  type: 'step';
  step: number;
  total_steps: number | null;
  loss: number;
  lm_loss: number;
  aux_loss: number;
  att_entropy: number;
  att_cond_entropy: number;
  mlp_entropy: number;
  mlp_cond_entropy: number;
  grad_norm: number;
  lr: number;
  tokens_seen: number;
  tokens_per_s: number;
  elapsed_s: number;
  /** Estimated seconds left (null when unknown). */
  eta_s: number | null;
}

export interface EvalRecord {
  type: 'eval';
  step: number;
  /** Mean total loss (LM + auxiliary) over the evaluated tokens. */
  loss: number;
  lm_loss: number;
  ppl: number;
  att_entropy: number;
  att_cond_entropy: number;
  mlp_entropy: number;
  mlp_cond_entropy: number;
  batches: number;
  tokens: number;
  /**
   * The same windows through the inference engine under the checkpoint's default routing (null for
   * a dense model, or when the backend has no engine): what `dsmoe eval` would report.
   */
  routing: Routing | null;
  /** Perplexity under the default routing. */
  routed_ppl: number | null;
  /** Perplexity under dense routing (every expert). */
  dense_ppl: number | null;
  /** Share of expert parameters active per token under the default routing (DESIGN §1.3). */
  active_expert_share: number | null;
  att_active_share: number | null;
  mlp_active_share: number | null;
}

export type DataPhase = { kind: 'tokenizer'; text: string } | { kind: 'data'; progress: DataProgress }
  | { kind: 'model'; text: string };

export interface TrainHooks {
  /** Preparation progress (tokenizer, data, model set-up): for a spinner. */
  onPrepare?(p: DataPhase): void;
  /** Once, after preparation, before the first step. */
  onStart?(info: RunInfo): void;
  onStep?(r: StepRecord): void;
  onEval?(r: EvalRecord): void;
  onSave?(dir: string, step: number): void;
  /** Informational lines (notes, warnings). */
  onLog?(line: string): void;
}

export interface TrainResult {
  /** 'budget' when the budget was reached, 'interrupted' after an abort (the state so far is saved). */
  reason: 'budget' | 'interrupted';
  step: number;
  tokensSeen: number;
  outDir: string;
  /** The checkpoint step on disk in outDir (null when nothing was saved). */
  savedStep: number | null;
  finalEval: EvalRecord | null;
  /** --target-active: the thresholds chosen and the perplexity before/after on unseen held-out text. */
  calibration: CalibrateResult | null;
  /** The preset name the run was set up from (default small). */
  preset: string;
  mode: TrainingMode;
  /** The checkpoint folder the run continued from (null for a fresh run). */
  resumedFrom: string | null;
}

/** The loss became NaN or infinite: nothing after the last good checkpoint was saved. */
export class TrainingDivergedError extends Error {
  constructor(message: string, readonly step: number) {
    super(message);
    this.name = 'TrainingDivergedError';
  }
}

/** The addon's trainer, or a clear error when this build has none. */
export function addonBackend(): ModelBackend {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { loadAddon } = require('../native/addon') as typeof import('../native/addon');
  const addon = loadAddon() as unknown as Partial<ModelBackend> & {
    setThreads(a: { threads: number }): number;
    runtimeInfo(): { isa: string; buildSystem: string; threads: number };
  };
  const missing = (['modelLayout', 'createTrainer'] as const).filter((k) => typeof addon[k] !== 'function');
  if (missing.length > 0)
    throw new Error(`this build of the native addon has no trainer yet (${missing.join(', ')} missing), `
      + 'so it cannot train.\n'
      + 'Rebuild it once native/model is in the tree: npm run build:addon');
  return {
    modelLayout: (c) => addon.modelLayout!(c),
    createTrainer: (a) => addon.createTrainer!(a),
    setThreads: (threads) => addon.setThreads({ threads }),
    versions: () => {
      const info = addon.runtimeInfo();
      return { addon_isa: info.isa, addon_build: info.buildSystem };
    },
  };
}

function readConfigFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (e as Error).message;
    throw new Error(`cannot read the config file ${file}: ${why}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

function positiveInt(v: number | undefined, flag: string, min = 1): void {
  if (v !== undefined && (!Number.isSafeInteger(v) || v < min))
    throw new RangeError(`${flag} must be an integer ≥ ${min}, got ${v}`);
}

function nonNegative(v: number | undefined, flag: string, strict = false): void {
  if (v !== undefined && (!Number.isFinite(v) || (strict ? v <= 0 : v < 0)))
    throw new RangeError(`${flag} must be a ${strict ? 'positive' : 'non-negative'} number, got ${v}`);
}

function checkOptions(o: TrainOptions): void {
  positiveInt(o.steps, '--steps');
  positiveInt(o.tokens, '--tokens');
  nonNegative(o.timeS, '--time', true);
  positiveInt(o.batchSize, '--batch-size');
  positiveInt(o.gradAccum, '--grad-accum');
  nonNegative(o.lr, '--lr', true);
  nonNegative(o.minLr, '--min-lr');
  positiveInt(o.warmup, '--warmup', 0);
  nonNegative(o.weightDecay, '--weight-decay');
  nonNegative(o.clip, '--clip');
  positiveInt(o.evalInterval, '--eval-interval', 0);
  positiveInt(o.evalBatches, '--eval-batches');
  positiveInt(o.saveInterval, '--save-interval', 0);
  positiveInt(o.threads, '--threads');
  if (o.targetActive !== undefined && !(o.targetActive > 0 && o.targetActive <= 1))
    throw new RangeError(`--target-active must be a share in (0, 1] such as 0.35 or 35%, got ${o.targetActive}`);
  if (o.seed !== undefined && (!Number.isSafeInteger(o.seed) || o.seed < 0))
    throw new RangeError(`--seed must be a non-negative integer, got ${o.seed}`);
  if (o.lr !== undefined && o.minLr !== undefined && o.minLr > o.lr)
    throw new RangeError(`--min-lr (${o.minLr}) is larger than --lr (${o.lr})`);
  const budgets = [o.steps, o.tokens, o.timeS].filter((x) => x !== undefined).length;
  if (budgets > 1) throw new RangeError('give one budget: --steps, --tokens or --time');
}

const SHAPE_OVERRIDES: Array<keyof ConfigOverrides> = ['d_model', 'n_layers', 'att_experts', 'att_heads', 'kv_heads',
  'head_dim', 'mlp_experts', 'expert_dim', 'tie_embeddings'];

function shapeRequested(o: TrainOptions): boolean {
  return o.preset !== undefined || o.configFile !== undefined
    || SHAPE_OVERRIDES.some((k) => o.overrides?.[k] !== undefined);
}

/** Reads the tokenizer (when none is given: the checkpoint's, else the default one). */
function resolveTokenizer(
  o: TrainOptions, ck: OpenedCheckpoint | undefined, hooks: TrainHooks,
): { tokenizer: Tokenizer; file: string } {
  let file = o.tokenizer;
  if (file === undefined && ck?.tokenizerPath) file = ck.tokenizerPath;
  if (file === undefined) {
    hooks.onPrepare?.({
      kind: 'tokenizer', text: 'preparing the default tokenizer (trained once on the built-in corpus, then cached)',
    });
    file = defaultTokenizer({ cacheDir: o.cacheDir });
  } else hooks.onPrepare?.({ kind: 'tokenizer', text: `loading the tokenizer ${file}` });
  return { tokenizer: loadTokenizer(file), file };
}

/** Mean of StepStats over eval batches, weighted by tokens. */
async function evaluate(
  trainer: TrainerHandle, ds: Dataset, seqLen: number, batchSize: number, maxBatches: number, step: number,
  group?: ProcessGroup,
): Promise<EvalRecord | null> {
  if (countEvalWindows(ds.val.length, seqLen) === 0) return null;
  let w = 0, batches = 0;
  const sum = { loss: 0, lm: 0, ae: 0, ace: 0, me: 0, mce: 0 };
  let i = 0;
  for (const b of evalBatches(ds.val, { batchSize, seqLen, maxBatches, name: 'validation data' })) {
    // Data-parallel: batch i is rank (i mod ranks)'s; the sums are added up across ranks below.
    if (group && i++ % group.size !== group.rank) continue;
    const s = await trainer.evaluateAsync({ tokens: b.inputs, targets: b.targets, batch: b.batchSize, seq: seqLen });
    const n = s.tokens > 0 ? s.tokens : b.batchSize * seqLen;
    sum.loss += s.loss * n; sum.lm += s.lmLoss * n;
    sum.ae += s.attEntropy * n; sum.ace += s.attCondEntropy * n;
    sum.me += s.mlpEntropy * n; sum.mce += s.mlpCondEntropy * n;
    w += n;
    batches++;
  }
  if (group) {
    const v = await group.sum(Float64Array.of(sum.loss, sum.lm, sum.ae, sum.ace, sum.me, sum.mce, w, batches));
    [sum.loss, sum.lm, sum.ae, sum.ace, sum.me, sum.mce, w, batches] = v;
  }
  const lm = sum.lm / w;
  return {
    type: 'eval', step, loss: sum.loss / w, lm_loss: lm, ppl: Math.exp(lm),
    att_entropy: sum.ae / w, att_cond_entropy: sum.ace / w, mlp_entropy: sum.me / w, mlp_cond_entropy: sum.mce / w,
    batches, tokens: w,
    routing: null, routed_ppl: null, dense_ppl: null, active_expert_share: null, att_active_share: null,
    mlp_active_share: null,
  };
}

/** The routing that the training forward computes (dsmoe: every expert; smoe: top-k; dense: one expert). */
function trainingForwardRouting(c: ModelConfig): Routing {
  return c.training.mode === 'smoe' ? { attention: `topk:${c.training.top_k}`, mlp: `topk:${c.training.top_k}` }
    : { attention: 'dense', mlp: 'dense' };
}

const sameRouting = (a: Routing, b: Routing) => a.attention === b.attention && a.mlp === b.mlp;

/**
 * Adds to an evaluation what inference will see: the same windows through the engine under the
 * default routing, over the live parameters. The dense-routing perplexity is the training
 * forward's when that forward is dense routing (dsmoe mode: every expert weighted by S), else one
 * more engine pass.
 */
async function addRoutedEval(
  r: EvalRecord, engine: EngineModel, ds: Dataset, seqLen: number, batchSize: number, maxBatches: number,
): Promise<EvalRecord> {
  const c = engine.config;
  const forward = trainingForwardRouting(c);
  const opts = { seqLen, batchSize, maxWindows: maxBatches * batchSize };
  const run = (routing: Routing) =>
    evaluateTokens(engine, ds.val, { ...opts, routing }, { source: 'held-out', inputs: [] });
  const routing = { attention: c.routing.attention, mlp: c.routing.mlp };
  const routed = await run(routing);
  const dense: Routing = { attention: 'dense', mlp: 'dense' };
  const densePpl = sameRouting(dense, forward) ? r.ppl
    : sameRouting(dense, routing) ? routed.ppl : (await run(dense)).ppl;
  const u = routed.usage;
  return {
    ...r, routing, routed_ppl: routed.ppl, dense_ppl: densePpl,
    active_expert_share: u.activeExpertShare,
    att_active_share: u.attExpertsPerToken / c.attention.n_experts,
    mlp_active_share: u.mlpExpertsPerToken / c.mlp.n_experts,
  };
}

const finite = (x: number) => typeof x === 'number' && Number.isFinite(x);

/** backend.createTrainer; the engine's refusal of a device becomes a DeviceUnusableError (its message unchanged). */
function createTrainer(backend: ModelBackend, config: ModelConfig, device: string): TrainerHandle {
  try {
    return backend.createTrainer({ config, device });
  } catch (e) {
    // The engine says "createTrainer: device cuda:0 is not usable: <why> (use --device cpu, ...)":
    // its words, without the name of the binding.
    const m = /^(?:createTrainer: )?(device [^]*)$/.exec(e instanceof Error ? e.message : String(e));
    if (device !== 'cpu' && m) throw new DeviceUnusableError(m[1], device);
    throw e;
  }
}

/**
 * Connects the trainer's gradient-reduction hook to the group, then checks that every rank runs the
 * same code on the same config and data (an all-gather of digests): a rank that differs is refused.
 */
async function joinTrainer(
  group: ProcessGroup, trainer: TrainerHandle, parts: { version: string; config: string; data: string },
): Promise<void> {
  if (group.native) {
    if (!trainer.setCommunicator)
      throw new Error('this build of the native addon cannot reduce gradients across ranks; rebuild it');
    trainer.setCommunicator({ communicator: group.native });
  }
  const names = ['code version', 'config or options', 'data'] as const;
  const mine = [digest48(parts.version), digest48(parts.config), digest48(parts.data)];
  const all = await allGatherDigests(group, mine);
  for (let r = 1; r < all.length; r++)
    for (let k = 0; k < names.length; k++)
      if (all[r][k] !== all[0][k])
        throw new Error(`rank ${r} was refused: its ${names[k]} differ${names[k] === 'data' ? '' : 's'} from rank 0's `
          + `(digest ${all[r][k].toString(16)} vs ${all[0][k].toString(16)}); every rank must run the same dsmoe `
          + 'build with the same options on the same data');
}

/**
 * The training and held-out tokens' identity, for the start-up check across ranks. A shard folder is
 * named by its manifest's shard list (token counts and whole-file sha256, checked against the files'
 * sampled blocks when they were opened): hashing gigabytes of mapped shards at start-up is not needed.
 */
function dataDigest(ds: Dataset): string {
  const bytes = (a: Dataset['train']) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  if (ds.shards) {
    const m = ds.shards.manifest;
    const list = [...m.shards, ...(m.val ? [m.val] : [])].map((e) => `${e.file}:${e.tokens}:${e.sha256}`).join(',');
    return `shards/${ds.shards.trainTokens}/${ds.val.length}/${digest48(new TextEncoder().encode(list))}`;
  }
  return `${ds.train.length}/${ds.val.length}/${digest48(bytes(ds.train))}/${digest48(bytes(ds.val))}`;
}

/** The fields of StepStats that are means over micro-batches (averaged over ranks like grad-accum does). */
const MEAN_STATS = ['lmLoss', 'auxLoss', 'attEntropy', 'attCondEntropy', 'mlpEntropy', 'mlpCondEntropy'] as const;

/**
 * One data-parallel step: forward + backward of this rank's micro-batches, the gradient all-reduce
 * (the engine's hook: mean over ranks), one all-reduce of the statistics (mean over ranks, like
 * the mean over micro-batches of --grad-accum; tokens summed), the stop flags and rank 0's clock,
 * then the optimizer, with the reduced loss, identical on every rank.
 */
async function parallelStep(
  group: ProcessGroup, trainer: TrainerHandle, batch: Parameters<TrainerHandle['lossAndGradAsync']>[0],
  optim: Omit<Parameters<TrainerHandle['applyOptimizer']>[0], 'loss'>, stop: boolean, clockS: number,
): Promise<{ stats: StepStats; stop: boolean; clock0: number }> {
  const local = await trainer.lossAndGradAsync(batch);
  if (trainer.reduceGradientsAsync) await trainer.reduceGradientsAsync();
  else trainer.reduceGradients();
  const n = MEAN_STATS.length;
  const v = new Float64Array(n + 3);
  MEAN_STATS.forEach((k, i) => { v[i] = local[k]; });
  v[n] = local.tokens;
  v[n + 1] = stop ? 1 : 0;
  v[n + 2] = group.rank === 0 ? clockS : 0;
  await group.sum(v);
  const stats: StepStats = { ...local };
  MEAN_STATS.forEach((k, i) => { stats[k] = v[i] / group.size; });
  stats.tokens = v[n];
  // As the engine's finish_stats: the total is the LM loss plus the auxiliary loss.
  stats.loss = stats.lmLoss + stats.auxLoss;
  stats.gradNorm = trainer.applyOptimizer({ ...optim, loss: stats.loss }).gradNorm;
  return { stats, stop: v[n + 1] > 0, clock0: v[n + 2] };
}

/**
 * Runs training. Resolves with how it ended (the budget reached, or an abort after saving); throws on
 * bad options, bad data, an unusable device (DeviceUnusableError), a failed save or a diverged loss
 * (TrainingDivergedError).
 */
export async function train(
  o: TrainOptions, hooks: TrainHooks = {}, deps: { backend?: ModelBackend | (() => ModelBackend) } = {},
): Promise<TrainResult> {
  checkOptions(o);
  const group = o.group;
  const ranks = group?.size ?? 1;
  const rank = group?.rank ?? 0;
  // Rank 0 writes checkpoints and calibrates; every rank computes the same (reduced) numbers.
  const isMain = rank === 0;
  const notes: string[] = [];
  const log = (line: string) => {
    notes.push(line);
    hooks.onLog?.(line);
  };

  // 1. Cheap checks first, so that mistakes are reported before anything slow happens.
  if (o.preset !== undefined) getPreset(o.preset);
  const fileConfig = o.configFile !== undefined ? readConfigFile(o.configFile) : undefined;
  buildConfig({ preset: o.preset, mode: o.mode, file: fileConfig, fileName: o.configFile, overrides: o.overrides });
  if (o.data !== undefined) {
    if (o.data.length === 0) throw new Error('--data needs at least one file or folder');
    for (const f of resolveInputs(o.data))
      if (f.kind !== 'builtin' && f.size === 0) throw new Error(`data file ${f.path} is empty`);
  }

  // 2. The checkpoint to resume (checked now, its tensors streamed into the engine later), then the
  // native backend.
  let ck: OpenedCheckpoint | undefined;
  let state: TrainerState | undefined;
  if (o.resume !== undefined) {
    hooks.onPrepare?.({ kind: 'model', text: `loading the checkpoint ${o.resume}` });
    ck = openCheckpoint(o.resume, { requireTraining: true });
    state = ck.trainerState!;
    if (ck.recoveredFrom) log(`completed an interrupted save: restored ${ck.recoveredFrom} as ${ck.dir}`);
  }
  const backend = typeof deps.backend === 'function' ? deps.backend() : deps.backend ?? addonBackend();

  // 3. Tokenizer and config.
  const { tokenizer, file: tokenizerFile } = resolveTokenizer(o, ck, hooks);
  let config: ModelConfig;
  const presetName = o.preset ?? DEFAULT_PRESET;
  if (ck) {
    config = ck.config;
    if (shapeRequested(o)) {
      const asked = buildConfig({
        preset: o.preset, mode: o.mode, file: fileConfig, fileName: o.configFile, overrides: o.overrides,
        tokenizerVocab: ck.config.vocab_size,
      });
      if (!sameShape(ck.config, asked))
        throw new Error(`cannot resume ${o.resume}: it has a different model shape than the one asked for: `
          + `${shapeDifferences(ck.config, asked).join(', ')}`);
    }
    if (tokenizer.vocabSize > config.vocab_size)
      throw new Error(`the tokenizer ${tokenizerFile} has ${tokenizer.vocabSize} tokens, `
        + `more than the checkpoint's vocab_size ${config.vocab_size}`);
    const t = { ...config.training };
    if (o.mode !== undefined && o.mode !== t.mode) {
      if (o.mode === 'dense' || t.mode === 'dense')
        throw new ConfigError('training.mode',
          `cannot resume a ${t.mode} checkpoint in mode ${o.mode} (the shapes differ)`);
      t.mode = o.mode as typeof t.mode;
      log(`switching the training mode from ${config.training.mode} to ${o.mode}`);
    }
    if (o.overrides?.mi_alpha_att !== undefined) t.mi_alpha_att = o.overrides.mi_alpha_att;
    if (o.overrides?.mi_alpha_mlp !== undefined) t.mi_alpha_mlp = o.overrides.mi_alpha_mlp;
    if (o.overrides?.top_k !== undefined) t.top_k = o.overrides.top_k;
    if (o.overrides?.seq_len !== undefined && o.overrides.seq_len !== state!.batch.seq_len)
      throw new Error(`cannot resume with --seq-len ${o.overrides.seq_len}: `
        + `the checkpoint trains on sequences of ${state!.batch.seq_len}`);
    config = validateConfig({ ...config, training: t }, `${o.resume}/config.json`);
  } else {
    config = buildConfig({
      preset: o.preset, mode: o.mode, file: fileConfig, fileName: o.configFile, overrides: o.overrides,
      tokenizerVocab: tokenizer.vocabSize,
    });
  }
  if (o.targetActive !== undefined && config.attention.n_experts === 1 && config.mlp.n_experts === 1)
    throw new Error('--target-active calibrates the routing of experts, '
      + 'but this is a dense model (one expert per layer)');
  const preset = getPreset(presetName);
  const layout = layoutFromConfig(config);
  const counts = paramCount(config);
  const nativeLayout = backend.modelLayout(config);
  const diff = layoutDifferences(layout, nativeLayout);
  if (diff.length > 0)
    throw new Error(`the native model's parameter layout does not match the checkpoint format: ${diff.join('; ')}`);
  // The engine's training state on the device asked for: a device that cannot be used fails here,
  // with the engine's reason, before the data are read.
  const trainer = createTrainer(backend, config, o.device ?? 'cpu');

  // 4. Data.
  const seqLen = state?.batch.seq_len ?? config.max_seq_len;
  const batchSize = o.batchSize ?? state?.batch.batch_size ?? preset.train.batchSize;
  // Data-parallel: --grad-accum is per rank; a checkpoint records the micro-batches of a step over
  // all ranks, so a resume with another number of ranks keeps the global batch when it divides.
  let gradAccum: number;
  if (o.gradAccum !== undefined) gradAccum = o.gradAccum;
  else if (state) {
    if (state.batch.grad_accum % ranks !== 0)
      throw new Error(`cannot resume ${o.resume} on ${ranks} ranks with the same global batch: its steps accumulate `
        + `${state.batch.grad_accum} micro-batches, which ${ranks} ranks cannot share equally; `
        + 'give --grad-accum (micro-batches per rank)');
    gradAccum = state.batch.grad_accum / ranks;
  } else gradAccum = preset.train.gradAccum;
  const globalAccum = gradAccum * ranks;
  if (state && (batchSize !== state.batch.batch_size || globalAccum !== state.batch.grad_accum))
    log(`batch shape changed from ${state.batch.batch_size}×${state.batch.grad_accum} to ${batchSize}×${globalAccum}: `
      + 'the run no longer continues exactly');
  const seed = state?.seed ?? o.seed ?? 0;
  // Stored absolute, so that a resume from another folder finds the same files.
  const inputs = (o.data ?? state?.data.inputs ?? [BUILTIN_CORPUS])
    .map((i) => (i === BUILTIN_CORPUS ? i : path.resolve(i)));
  const valShare = state?.data.val_share ?? o.valShare ?? DEFAULT_VAL_SHARE;
  const dataSeed = state?.data.seed ?? seed;
  const ds = await loadDataset(inputs, {
    tokenizer, seed: dataSeed, valShare, seqLen, cacheDir: o.cacheDir,
    onProgress: (p) => hooks.onPrepare?.({ kind: 'data', progress: p }),
  });
  // (Data-parallel ranks go on: they stop together after the first step, when they agree to.)
  if (o.signal?.aborted && !group) {
    return {
      reason: 'interrupted', step: state?.step ?? 0, tokensSeen: state?.tokens_seen ?? 0,
      outDir: path.resolve(o.out ?? o.resume ?? '.'), savedStep: null, finalEval: null, calibration: null,
      preset: presetName, mode: config.training.mode, resumedFrom: ck?.dir ?? null,
    };
  }
  const trainTokens = trainTokenCount(ds);
  const dataName = `training data (${inputs.join(', ')})`;
  // Token shards: windows drawn as a pure function of (seed, draw, row), read from the mapped shards.
  const sampler = ds.shards
    ? new ShardSampler(ds.shards.train, {
      batchSize, seqLen, seed, name: dataName, vocabSize: config.vocab_size,
      shardNames: ds.shards.manifest.shards.map((s) => path.join(ds.shards!.dir, s.file)),
    })
    : new BatchSampler(ds.train, { batchSize, seqLen, seed, name: dataName });
  if (state) {
    if (state.sampler.tokens !== trainTokens)
      throw new Error(`cannot resume ${o.resume}: its training data had ${state.sampler.tokens} tokens, `
        + `these inputs give ${trainTokens} `
        + `(${inputs.join(', ')}); resume with the same --data and tokenizer`);
    if (state.sampler.batchSize === batchSize && state.sampler.seqLen === seqLen) sampler.setState(state.sampler);
    else {
      // A new batch size: keep the RNG stream, but the sampler state's shape no longer fits.
      sampler.setState({ ...state.sampler, batchSize, seqLen });
    }
  }

  // 5. The parameters: initialised in the engine, or the checkpoint's streamed into it.
  if (group) await joinTrainer(group, trainer, {
    version: JSON.stringify({ dsmoe: DSMOE_VERSION, ...(backend.versions?.() ?? {}) }),
    config: JSON.stringify({
      config, batchSize, gradAccum, seqLen, seed, resume: state?.step ?? null,
      options: [o.steps, o.tokens, o.timeS, o.lr, o.minLr, o.warmup, o.weightDecay, o.clip, o.evalInterval,
        o.evalBatches, o.saveInterval, o.targetActive],
    }),
    data: dataDigest(ds),
  });
  hooks.onPrepare?.({ kind: 'model', text: `setting up the model (${describeShape(config)})` });
  const threads = o.threads !== undefined ? (backend.setThreads?.(o.threads) ?? o.threads)
    : envThreads() ?? os.availableParallelism();
  if (state && state.threads !== threads)
    log(`thread count changed from ${state.threads} to ${threads}: `
      + 'sums may differ in the last bits from an uninterrupted run');
  if (ck) {
    const load = (slot: CheckpointSlot) =>
      readCheckpointTensors(ck!, slot, (name, data) => trainer.loadTensor({ name, slot, data }));
    load('param');
    // A step-0 checkpoint without optimizer state (an upcycled one) starts a fresh AdamW (the
    // engine's moments start at zero).
    if (ck.hasOptimizer) {
      load('adamM');
      load('adamV');
    } else log(`${ck.dir} has no optimizer state (step 0): starting a fresh AdamW`);
  } else trainer.init({ seed });

  // 6. Schedule and budget.
  const tokensPerStep = batchSize * seqLen * globalAccum;
  const startStep = state?.step ?? 0;
  let totalSteps: number | null;
  if (o.steps !== undefined) totalSteps = o.steps;
  else if (o.tokens !== undefined) totalSteps = Math.ceil(o.tokens / tokensPerStep);
  else if (state) totalSteps = state.schedule.total_steps;
  else if (o.timeS !== undefined) totalSteps = null;
  else totalSteps = preset.train.steps;
  if (state && totalSteps !== null && totalSteps <= startStep)
    throw new Error(`the checkpoint ${o.resume} is already at step ${startStep}; `
      + `ask for more (e.g. --steps ${startStep * 2})`);
  if (state && state.schedule.total_steps !== null && totalSteps !== state.schedule.total_steps)
    log(`run length changed from ${state.schedule.total_steps} to ${totalSteps} steps: `
      + 'the learning-rate schedule is stretched from here on');
  const peak = o.lr ?? state?.schedule.lr ?? preset.train.lr;
  const schedule: LrSchedule = {
    lr: peak,
    minLr: o.minLr ?? (o.lr === undefined ? state?.schedule.min_lr : undefined) ?? 0.1 * peak,
    warmup: o.warmup ?? state?.schedule.warmup ?? defaultWarmup(totalSteps),
    totalSteps,
  };
  if (schedule.minLr > schedule.lr)
    throw new RangeError(`--min-lr (${schedule.minLr}) is larger than the learning rate (${schedule.lr})`);
  const optim = {
    beta1: ADAM_BETA1, beta2: ADAM_BETA2, eps: ADAM_EPS,
    weightDecay: o.weightDecay ?? state?.optimizer.weight_decay ?? DEFAULT_WEIGHT_DECAY,
    clip: o.clip ?? state?.optimizer.clip ?? DEFAULT_CLIP,
  };
  const plannedSteps = () => schedule.totalSteps ?? startStep + 1000;
  const evalInterval = o.evalInterval ?? state?.eval.interval
    ?? Math.max(1, Math.round((plannedSteps() - startStep) / 10));
  const evalMax = o.evalBatches ?? state?.eval.batches ?? 20;
  const saveInterval = o.saveInterval ?? Math.max(1, Math.round((plannedSteps() - startStep) / 10));
  const outDir = path.resolve(o.out ?? o.resume ?? path.join('runs', `${presetName}-${config.training.mode}`));
  const tokenizerJson = fs.readFileSync(tokenizerFile, 'utf8');
  const versions: Record<string, string> = {
    dsmoe: DSMOE_VERSION, node: process.version, ...(backend.versions?.() ?? {}),
  };

  hooks.onStart?.({
    config, params: counts, outDir, preset: presetName, resumedFrom: ck?.dir, startStep,
    totalSteps: schedule.totalSteps,
    tokensPerStep, batchSize, gradAccum: globalAccum, ranks, seqLen, threads, trainTokens,
    valTokens: ds.val.length,
    timeBudgetS: o.timeS, notes: [...notes],
  });

  // 7. The loop.
  let step = startStep;
  let tokensSeen = state?.tokens_seen ?? 0;
  const elapsedBefore = state?.elapsed_s ?? 0;
  const lastLosses: LossRecord[] = [...(state?.last_losses ?? [])];
  let lastEval: EvalRecord | null = null;
  let lastEvalState = state?.last_eval ?? null;
  let savedStep: number | null = ck && path.resolve(ck.dir) === outDir ? startStep : null;
  const t0 = performance.now();
  const sessionS = () => (performance.now() - t0) / 1000;
  let firstStepEndS = 0;

  const trainerState = (): TrainerState => ({
    format_version: 1, step, tokens_seen: tokensSeen, elapsed_s: elapsedBefore + sessionS(), seed,
    data: { inputs, seed: dataSeed, val_share: valShare, train_tokens: trainTokens, val_tokens: ds.val.length },
    sampler: sampler.getState(),
    schedule: { lr: schedule.lr, min_lr: schedule.minLr, warmup: schedule.warmup, total_steps: schedule.totalSteps },
    optimizer: {
      beta1: optim.beta1, beta2: optim.beta2, eps: optim.eps, weight_decay: optim.weightDecay, clip: optim.clip,
    },
    batch: { batch_size: batchSize, grad_accum: globalAccum, seq_len: seqLen },
    eval: { interval: evalInterval, batches: evalMax },
    last_losses: lastLosses.slice(-20),
    last_eval: lastEvalState,
    threads, versions,
  });
  // Streamed from the engine one tensor at a time (saving never holds a copy of the model).
  const tensor = (slot: CheckpointSlot) => (t: TensorLayout) => trainer.readTensor({ name: t.name, slot });
  const save = () => {
    if (!isMain) {
      savedStep = step;
      return;
    }
    saveCheckpoint(outDir, {
      config, params: tensor('param'), tokenizerJson, optimizer: { m: tensor('adamM'), v: tensor('adamV') },
      trainerState: trainerState(),
      metadata: { step: String(step) },
    });
    savedStep = step;
    hooks.onSave?.(outDir, step);
  };
  const hasExperts = config.attention.n_experts > 1 || config.mlp.n_experts > 1;
  // One session per batch shape for the whole run (its KV cache and workspace are reused by every
  // evaluation; a new one each time would hold native memory until the garbage collector runs).
  const engine: EngineModel | null = trainer.createSession && hasExperts && isMain
    ? reuseSessions({ config, createSession: (opts) => trainer.createSession!(opts) })
    : null;
  const runEval = async () => {
    let r = await evaluate(trainer, ds, seqLen, batchSize, evalMax, step, group);
    if (r !== null && engine && finite(r.loss)) r = await addRoutedEval(r, engine, ds, seqLen, batchSize, evalMax);
    if (r === null) {
      if (!notes.some((l) => l.startsWith('no validation')))
        log(`no validation windows (the held-out part has ${ds.val.length} tokens, fewer than ${seqLen + 1}); `
          + 'skipping evaluation');
      return;
    }
    if (!finite(r.loss))
      throw new TrainingDivergedError(divergedMessage(`the validation loss is ${r.loss}`, step), step);
    lastEval = r;
    lastEvalState = { step, loss: r.lm_loss, ppl: r.ppl };
    hooks.onEval?.(r);
  };
  const divergedMessage = (what: string, at: number) =>
    `training diverged: ${what} at step ${at}. Nothing after step ${savedStep ?? startStep} was saved`
    + `${savedStep !== null ? `; the last good checkpoint is ${outDir} (step ${savedStep})`
      : '; no checkpoint was written by this run'}`
    + `${ck && savedStep === null ? ` (the run started from ${ck.dir}, step ${startStep})` : ''}.`
    + ' Try a lower --lr, a longer --warmup or a smaller --clip.';

  const tokens = new Int32Array(gradAccum * batchSize * seqLen);
  const targets = new Int32Array(gradAccum * batchSize * seqLen);
  const per = batchSize * seqLen;
  let reason: TrainResult['reason'] = 'budget';
  // Data-parallel: whether to stop (Ctrl-C, --time) is agreed on after every step, from the sum of
  // the ranks' stop flags and rank 0's clock, so that every rank stops after the same step.
  let stopAgreed = false;
  let clock0 = 0;
  const clockS = () => (group ? clock0 : sessionS());
  for (;;) {
    if (group ? stopAgreed : o.signal?.aborted) { reason = 'interrupted'; break; }
    if (schedule.totalSteps !== null && step >= schedule.totalSteps) break;
    if (o.timeS !== undefined && clockS() >= o.timeS) break;
    // The global step's micro-batches in order; rank r trains on its consecutive share of them, so
    // N ranks see the same tokens as one process accumulating N times as many.
    for (let i = 0; i < globalAccum; i++) {
      const j = i - rank * gradAccum;
      if (j < 0 || j >= gradAccum) {  // another rank's micro-batch: not read (mapped shards stay untouched)
        sampler.skip();
        continue;
      }
      const b = sampler.next();
      tokens.set(b.inputs, j * per);
      targets.set(b.targets, j * per);
    }
    const lr = lrAt(step + 1, schedule);
    const ts = performance.now();
    const optArgs = {
      lr, beta1: optim.beta1, beta2: optim.beta2, eps: optim.eps, weightDecay: optim.weightDecay, clip: optim.clip,
      step: step + 1,
    };
    let stats: StepStats;
    if (group) {
      const r = await parallelStep(group, trainer, { tokens, targets, batch: batchSize, seq: seqLen, micro: gradAccum },
        optArgs, o.signal?.aborted ?? false, sessionS());
      stats = r.stats;
      stopAgreed = r.stop;
      clock0 = r.clock0;
    } else {
      stats = await trainer.trainStepAsync({
        tokens, targets, batch: batchSize, seq: seqLen, micro: gradAccum, ...optArgs,
      });
    }
    const dt = (performance.now() - ts) / 1000;
    if (!finite(stats.loss) || !finite(stats.lmLoss) || !finite(stats.gradNorm)) {
      const what = !finite(stats.loss) || !finite(stats.lmLoss)
        ? `the loss is ${finite(stats.loss) ? stats.lmLoss : stats.loss}` : `the gradient norm is ${stats.gradNorm}`;
      throw new TrainingDivergedError(divergedMessage(what, step + 1), step + 1);
    }
    step++;
    const stepTokens = stats.tokens > 0 ? stats.tokens : tokensPerStep;
    tokensSeen += stepTokens;
    lastLosses.push({ step, loss: stats.loss, lm_loss: stats.lmLoss, aux_loss: stats.auxLoss });
    if (lastLosses.length > 20) lastLosses.shift();
    if (step - startStep === 1) firstStepEndS = clockS();
    // The first step of a session is slow (workspace allocation, page faults): the per-step time
    // that sizes a --time run comes from the steps after it.
    if (schedule.totalSteps === null && o.timeS !== undefined && step - startStep >= TIME_PROBE_STEPS + 1) {
      const perStep = (clockS() - firstStepEndS) / (step - startStep - 1);
      schedule.totalSteps = Math.max(step, startStep + 1 + Math.floor((o.timeS - firstStepEndS) / perStep));
      log(`time budget ${o.timeS}s at ${perStep.toFixed(2)}s/step: about ${schedule.totalSteps - startStep} steps; `
        + `the learning rate decays to step ${schedule.totalSteps}`);
    }
    const sess = clockS();
    const done = step - startStep;
    const eta = schedule.totalSteps !== null ? (sess / done) * (schedule.totalSteps - step)
      : o.timeS !== undefined ? Math.max(0, o.timeS - sess) : null;
    hooks.onStep?.({
      type: 'step', step, total_steps: schedule.totalSteps,
      loss: stats.loss, lm_loss: stats.lmLoss, aux_loss: stats.auxLoss,
      att_entropy: stats.attEntropy, att_cond_entropy: stats.attCondEntropy,
      mlp_entropy: stats.mlpEntropy, mlp_cond_entropy: stats.mlpCondEntropy,
      grad_norm: stats.gradNorm, lr, tokens_seen: tokensSeen, tokens_per_s: dt > 0 ? stepTokens / dt : 0,
      elapsed_s: elapsedBefore + sess,
      eta_s: eta === null ? null : Math.min(eta, o.timeS !== undefined ? Math.max(0, o.timeS - sess) : Infinity),
    });
    const atEnd = schedule.totalSteps !== null && step >= schedule.totalSteps;
    if (evalInterval > 0 && step % evalInterval === 0 && !atEnd) await runEval();
    if (saveInterval > 0 && step % saveInterval === 0 && !atEnd) save();
  }

  // 8. The end: evaluate (unless interrupted), save (the command line says what to do next).
  if (reason === 'budget' && step > startStep) await runEval();
  if (savedStep !== step) save();
  // --target-active: calibrate on the saved checkpoint (convert --calibrate's code), then store the
  // thresholds as its default routing.
  let calibration: CalibrateResult | null = null;
  if (isMain && o.targetActive !== undefined && (reason === 'budget' || o.calibrateWhenInterrupted)) {
    log(`calibrating threshold routing for ${(100 * o.targetActive).toFixed(1)} % active expert parameters `
      + 'on held-out text');
    calibration = await calibrateInPlace(outDir, {
      targetActive: o.targetActive, cacheDir: o.cacheDir, log: (l) => log(`calibrate: ${l}`),
    });
    config = { ...config, routing: { ...calibration.routing } };
  }
  return {
    reason, step, tokensSeen, outDir, savedStep, finalEval: lastEval, calibration,
    preset: presetName, mode: config.training.mode, resumedFrom: ck?.dir ?? null,
  };
}
