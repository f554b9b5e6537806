// `dsmoe bench reproduce`: the paper's central comparison (Pan et al. 2024, Table 3) in miniature.
// Three models on the same data (the built-in corpus by default), the same tokenizer, seed and batch
// order, and an equal share of the wall-clock budget each:
//
//   dense  the preset's dense counterpart (one attention expert with E·H heads, one MLP of E·F)
//   smoe   top-2 sparse training with the switch loss; the preset's shape with 2× the expert width
//          (F → 2F): 2× the MLP parameters — the paper's finding is that a sparse-trained MoE needs
//          about that much to match DS-MoE. Doubling the width rather than the expert count keeps E,
//          so top-2 touches the same share of the experts as it would in the preset's shape.
//   dsmoe  the preset (dense training, MI loss), the dense model's size
//
// Equal time: before each model trains, a probe (one warm-up step and three timed steps on random
// tokens, same shape and batch) measures its step time, and the model trains for the number of
// steps that fit its share, so that its learning-rate schedule runs its full course. (The
// trainer's own --time estimate includes the slow first step and tends to end runs early.) On a
// shared machine the speed drifts, so the share is also a hard cap: a run still going when its
// share is over is stopped after the current step (as Ctrl-C would) and evaluated as it is. The
// table reports the steps, tokens and seconds each model actually trained.
//
// The DS-MoE run ends with `dsmoe train --target-active` (default 35 %): thresholds per layer kind
// calibrated on the first half of its held-out windows and stored as its default routing.
//
// Then all three are evaluated on the same held-out windows through the inference engine
// (compare.ts): dense under dense routing, smoe under its training routing (top-2), DS-MoE under
// dense routing, under threshold:ε with ε fixed in advance (0.48, the paper's layer-use threshold,
// not tuned on these results) and under its calibrated routing. Every model is also evaluated
// under the other strategies (in the JSON and the chart).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildConfig, getPreset, paramCount, type ConfigOverrides, type ModelConfig } from '../model/config';
import { loadAddon } from '../native/addon';
import { defaultTokenizer } from '../tokenizer/default';
import { loadTokenizer } from '../tokenizer/tokenizer';
import { formatDuration } from '../train/schedule';
import { train, type TrainResult } from '../train/trainer';
import { renderTable } from '../util/table';
import { defaultRoutingOf, formatCompare, routingLabel, runCompare, writeCompareOutputs, type CompareResult,
  type CompareRow, type WrittenFiles } from './compare';

export const DEFAULT_REPRODUCE_BUDGET_S = 600;
export const DEFAULT_REPRODUCE_TARGET_ACTIVE = 0.35;
export const REPRODUCE_MODES = ['dense', 'smoe', 'dsmoe'] as const;
export type ReproduceMode = (typeof REPRODUCE_MODES)[number];

export interface ReproduceOptions {
  /** Total training seconds, split evenly over the three models. */
  budgetS: number;
  /** The DS-MoE shape (default small). */
  preset?: string;
  /** ε of the DS-MoE sparse row (default 0.48). */
  threshold?: number;
  /** Share of expert parameters the DS-MoE's calibrated routing activates (default 0.35). */
  targetActive?: number;
  maxWindows?: number;
  seed?: number;
  threads?: number;
  /** Output folder: checkpoints dense/, smoe/, dsmoe/, reproduce.json, bench.json, charts. */
  out: string;
  /** Default: the built-in corpus. */
  data?: string[];
  /** Default: the default tokenizer. */
  tokenizer?: string;
  cacheDir?: string;
  /** Applied to all three (e.g. seq_len); smoe doubles expert_dim on top. */
  overrides?: ConfigOverrides;
  batchSize?: number;
  /** Evaluation knobs passed to the comparison (small values for tests). */
  decodeTokens?: number;
  decodePrompts?: number;
  log?: (line: string) => void;
}

export interface ReproduceModel {
  mode: ReproduceMode;
  dir: string;
  config: ModelConfig;
  totalParams: number;
  /** non-embedding ("hidden") parameters */
  hiddenParams: number;
  mlpParams: number;
  steps: number;
  tokensSeen: number;
  trainSeconds: number;
  /** measured seconds per step before training (the step count = share / this) */
  probeStepSeconds: number;
  plannedSteps: number;
  /** stopped by the time cap before plannedSteps */
  capped: boolean;
  /** the trainer's own final validation (its eval batches) */
  trainerValPpl: number | null;
}

export interface ReproduceRow {
  model: ReproduceMode;
  routing: string;
  totalParams: number;
  hiddenParams: number;
  activeParamsPerToken: number;
  /** active / the model's dense-routing active count (its hidden parameters, norms excluded) */
  activeShareOfHidden: number;
  /** share of the expert parameters (q/o, up/down) active per token (DESIGN §1.3) */
  activeExpertShare: number;
  /** mean share of attention / MLP experts a token activates */
  attActiveShare: number;
  mlpActiveShare: number;
  ppl: number;
  decodeSpeedup: number;
}

export interface ReproduceResult {
  date: string;
  budgetS: number;
  shareS: number;
  preset: string;
  threshold: number;
  targetActive: number;
  /** the DS-MoE's calibrated routing label (as in the table) */
  calibratedRouting: string;
  wallSeconds: number;
  models: ReproduceModel[];
  table: ReproduceRow[];
  findings: string[];
  compare: CompareResult;
  files: WrittenFiles & { reproduce: string };
}

/** The three training setups (preset, mode, overrides) of a reproduce run. */
export function reproduceSetups(preset: string,
  overrides: ConfigOverrides = {}): Array<{ mode: ReproduceMode; overrides: ConfigOverrides }> {
  const base = buildConfig({ preset, overrides });
  return [
    { mode: 'dense', overrides: { ...overrides } },
    { mode: 'smoe', overrides: { ...overrides, expert_dim: 2 * base.mlp.expert_dim } },
    { mode: 'dsmoe', overrides: { ...overrides } },
  ];
}

/** Seconds per optimizer step of `config` (median of 3 timed steps after a warm-up, random tokens). */
export async function probeStepSeconds(config: ModelConfig, batchSize: number, gradAccum: number,
  seed = 0): Promise<number> {
  const model = loadAddon().createTrainer({ config });
  model.init({ seed });
  const T = config.max_seq_len, N = batchSize * gradAccum * T;
  const tokens = new Int32Array(N), targets = new Int32Array(N);
  for (let i = 0; i < N; i++) {
    tokens[i] = (i * 7919 + 13) % config.vocab_size;
    targets[i] = (i * 104729 + 7) % config.vocab_size;
  }
  const times: number[] = [];
  for (let s = 0; s < 4; s++) {
    const t0 = performance.now();
    await model.trainStepAsync({ tokens, targets, batch: batchSize, seq: T, micro: gradAccum, lr: 1e-4, beta1: 0.9,
      beta2: 0.95, eps: 1e-8, weightDecay: 0, clip: 1, step: s + 1 });
    if (s > 0) times.push((performance.now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  return times[1];
}

function row(mode: ReproduceMode, r: CompareRow, m: ReproduceModel, denseActive: number): ReproduceRow {
  const c = m.config;
  return {
    model: mode, routing: r.label, totalParams: m.totalParams, hiddenParams: m.hiddenParams,
    activeParamsPerToken: r.activeParamsPerToken,
    activeShareOfHidden: r.activeParamsPerToken / denseActive, activeExpertShare: r.activeExpertShare,
    attActiveShare: r.attExpertsPerToken / c.attention.n_experts,
    mlpActiveShare: r.mlpExpertsPerToken / c.mlp.n_experts,
    ppl: r.ppl, decodeSpeedup: r.decodeSpeedup,
  };
}

export async function runReproduce(o: ReproduceOptions): Promise<ReproduceResult> {
  if (!(o.budgetS > 0)) throw new RangeError(`--budget must be positive, got ${o.budgetS}`);
  const preset = o.preset ?? 'small';
  const eps = o.threshold ?? 0.48;
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new RangeError(`--threshold must be a non-negative number, got ` +
    `${eps}`);
  const targetActive = o.targetActive ?? DEFAULT_REPRODUCE_TARGET_ACTIVE;
  if (!(targetActive > 0 && targetActive <= 1)) throw new RangeError(`--target-active must be a share in (0, 1], got ` +
    `${targetActive}`);
  const log = o.log ?? (() => undefined);
  const setups = reproduceSetups(preset, o.overrides);
  const share = o.budgetS / setups.length;
  const t0 = performance.now();
  const models: ReproduceModel[] = [];
  const tokenizerFile = o.tokenizer ?? defaultTokenizer({ cacheDir: o.cacheDir });
  const vocab = loadTokenizer(tokenizerFile).vocabSize;
  const presetTrain = getPreset(preset).train;
  const batchSize = o.batchSize ?? presetTrain.batchSize;
  if (o.threads !== undefined) loadAddon().setThreads({ threads: o.threads });
  for (const s of setups) {
    const dir = path.join(o.out, s.mode);
    const cfg0 = buildConfig({ preset, mode: s.mode, overrides: s.overrides, tokenizerVocab: vocab });
    const perStep = await probeStepSeconds(cfg0, batchSize, presetTrain.gradAccum, o.seed ?? 0);
    const steps = Math.max(1, Math.floor(share / perStep));
    log(`training ${s.mode} for ${formatDuration(share)}: ${perStep.toFixed(2)}s/step → ${steps} steps → ${dir}`);
    let lastLog = performance.now(), trainStart = 0, trainEnd = 0;
    let info: { config: ModelConfig } | undefined;
    const ac = new AbortController();
    let cap: NodeJS.Timeout | undefined;
    const r: TrainResult = await train({
      signal: ac.signal,
      preset, mode: s.mode, overrides: s.overrides, data: o.data, tokenizer: tokenizerFile, cacheDir: o.cacheDir, steps,
      seed: o.seed ?? 0, out: dir, evalInterval: 0, evalBatches: 4, saveInterval: 0, threads: o.threads, batchSize,
      targetActive: s.mode === 'dsmoe' ? targetActive : undefined, calibrateWhenInterrupted: true,
    }, {
      onPrepare: (p) => { if (p.kind !== 'data') log(`  ${p.text}`); },
      onLog: (l) => { if (l.startsWith('calibrat')) log(`  ${s.mode}: ${l}`); },
      onStart: (i) => {
        info = i;
        trainStart = performance.now();
        cap = setTimeout(() => ac.abort(), share * 1000);
        log(`  ${s.mode}: ${(i.params.total / 1e6).toFixed(2)}M params (${(i.params.nonEmbedding / 1e6).toFixed(2)}M ` +
          `non-embedding), ${i.tokensPerStep} tokens/step`);
      },
      onStep: (st) => {
        trainEnd = performance.now();
        if (performance.now() - lastLog > 15000) {
          lastLog = performance.now();
          log(`  ${s.mode}: step ${st.step}${st.total_steps ? `/${st.total_steps}` : ''}, loss ` +
            `${st.lm_loss.toFixed(3)}, ${Math.round(st.tokens_per_s)} tok/s`);
        }
      },
    });
    clearTimeout(cap);
    if (r.reason === 'interrupted') log(`  ${s.mode}: its ${formatDuration(share)} share ran out at step ` +
      `${r.step} of ${steps}`);
    // The calibrated routing is stored in the checkpoint after training: read it back from there.
    const cfg = r.calibration ? { ...info!.config, routing: r.calibration.routing } : info!.config;
    const pc = paramCount(cfg);
    models.push({
      mode: s.mode, dir: r.outDir, config: cfg, totalParams: pc.total, hiddenParams: pc.nonEmbedding, mlpParams: pc.mlp,
      probeStepSeconds: perStep, plannedSteps: steps, capped: r.reason === 'interrupted', steps: r.step,
      tokensSeen: r.tokensSeen, trainSeconds: ((trainEnd || performance.now()) - trainStart) / 1000,
      trainerValPpl: r.finalEval?.ppl ?? null,
    });
    log(`  ${s.mode}: ${r.step} steps in ${formatDuration(models[models.length - 1].trainSeconds)}, ` +
      `${r.tokensSeen} tokens, validation ppl ${r.finalEval ? r.finalEval.ppl.toFixed(2) : '—'}`);
  }

  log('evaluating the three models on the same held-out windows');
  const compare = await runCompare({
    checkpoints: models.map((m) => m.dir), sweep: `dense,topk:2,threshold:${eps},default`,
    heatmapRouting: `threshold:${eps}`,
    maxWindows: o.maxWindows ?? 32, threads: o.threads, cacheDir: o.cacheDir, decodeTokens: o.decodeTokens,
    decodePrompts: o.decodePrompts,
    log: (l) => log(`  ${l}`),
  });
  const files = writeCompareOutputs(compare, o.out);
  const pick = (mode: ReproduceMode,
    label: string) => compare.rows.find((r) => r.model === path.basename(models.find((m) => m.mode === mode)!.dir) &&
      r.label === label);
  const denseActive = (mode: ReproduceMode) =>
    compare.models.find((m) => m.name === path.basename(models.find((x) => x.mode === mode)!.dir))!.denseActiveParams;
  const table: ReproduceRow[] = [];
  const add = (mode: ReproduceMode, label: string) => {
    const r = pick(mode, label);
    if (r) table.push(row(mode, r, models.find((m) => m.mode === mode)!, denseActive(mode)));
  };
  add('dense', 'dense');
  add('smoe', 'topk:2');
  add('dsmoe', 'dense');
  add('dsmoe', `threshold:${eps}`);
  const dsmoeConfig = models.find((m) => m.mode === 'dsmoe')!.config;
  const [ca, cm] = defaultRoutingOf(dsmoeConfig);
  const calibrated = routingLabel({ attention: ca, mlp: cm });
  if (calibrated !== `threshold:${eps}` && calibrated !== 'dense') add('dsmoe', calibrated);

  const findings: string[] = [];
  const get = (m: ReproduceMode, label: string) => table.find((t) => t.model === m && t.routing === label);
  const d = get('dense', 'dense'), sm = get('smoe', 'topk:2'), dsd = get('dsmoe', 'dense'),
    dst = get('dsmoe', `threshold:${eps}`);
  const dsc = get('dsmoe', calibrated);
  const rel = (a: number, b: number) => `${a < b ? '' : '+'}${(100 * (a / b - 1)).toFixed(1)}%`;
  if (d && dst) findings.push(`DS-MoE under threshold:${eps}: perplexity ${dst.ppl.toFixed(2)} vs dense ` +
    `${d.ppl.toFixed(2)} (${rel(dst.ppl, d.ppl)}), `
    + `${(100 * dst.activeExpertShare).toFixed(0)}% of its expert parameters and ` +
      `${(100 * dst.activeShareOfHidden).toFixed(0)}% of its hidden parameters active `
    + '(paper, 1B–6B: matches dense at 29–41% of the hidden parameters).');
  if (d && dsc) findings.push(`DS-MoE calibrated for ${(100 * targetActive).toFixed(0)}% (${calibrated}): perplexity ` +
    `${dsc.ppl.toFixed(2)} vs dense ${d.ppl.toFixed(2)} `
    + `(${rel(dsc.ppl, d.ppl)}), ${(100 * dsc.activeExpertShare).toFixed(0)}% of its expert parameters active.`);
  if (dsd && dst) findings.push(`DS-MoE dense routing → threshold:${eps}: perplexity ${dsd.ppl.toFixed(2)} → ` +
    `${dst.ppl.toFixed(2)} (${rel(dst.ppl, dsd.ppl)}).`);
  if (dst) findings.push(`DS-MoE under threshold:${eps}: ${(100 * dst.attActiveShare).toFixed(0)}% of attention ` +
    `experts and ${(100 * dst.mlpActiveShare).toFixed(0)}% of MLP experts active per token (paper: attention > 60%, ` +
      `MLP much sparser).`);
  if (sm && d) findings.push(`SMoE (top-2, 2× MLP parameters): perplexity ${sm.ppl.toFixed(2)} vs dense ` +
    `${d.ppl.toFixed(2)} (${rel(sm.ppl, d.ppl)})${dst ? ` and DS-MoE threshold ${dst.ppl.toFixed(2)}` : ''}, `
    + `${(100 * sm.activeShareOfHidden).toFixed(0)}% of its hidden parameters active.`);
  const steps = models.map((m) => `${m.mode} ${m.steps}${m.capped ? ` of ${m.plannedSteps} planned (time cap)` : ''} ` +
    `steps / ${(m.tokensSeen / 1e6).toFixed(2)}M tokens in ${m.trainSeconds.toFixed(0)}s`).join(', ');
  findings.push(`Equal time (${share.toFixed(0)}s share each), not equal tokens: ${steps}. These are tiny models ` +
    `trained for minutes; the paper's models saw 100B+ tokens.`);

  const result: ReproduceResult = {
    date: new Date().toISOString(), budgetS: o.budgetS, shareS: share, preset, threshold: eps, targetActive,
    calibratedRouting: calibrated,
    wallSeconds: (performance.now() - t0) / 1000, models, table, findings, compare,
    files: { ...files, reproduce: path.join(o.out, 'reproduce.json') },
  };
  fs.writeFileSync(result.files.reproduce, JSON.stringify(result, null, 2) + '\n');
  return result;
}

const M = (x: number) => `${(x / 1e6).toFixed(2)}M`;

export function formatReproduce(r: ReproduceResult): string {
  const m = (mode: string) => r.models.find((x) => x.mode === mode)!;
  return [
    `DS-MoE reproduction in miniature: preset ${r.preset}, ${formatDuration(r.shareS)} of training each, ` +
      `${formatDuration(r.wallSeconds)} in all`,
    `Evaluation: ${r.compare.data.windows} held-out windows × ${r.compare.data.seqLen} tokens ` +
      `(${r.compare.data.description})`,
    '',
    renderTable(['model', 'routing', 'steps', 'train s', 'train tokens', 'total params', 'hidden params',
      'active hidden', 'active %', 'active experts',
      'att experts', 'MLP experts', 'val ppl', 'decode speed-up'],
    r.table.map((t) => [t.model, t.routing, m(t.model).steps, Math.round(m(t.model).trainSeconds),
      M(m(t.model).tokensSeen), M(t.totalParams), M(t.hiddenParams),
      M(t.activeParamsPerToken), `${(100 * t.activeShareOfHidden).toFixed(0)}%`,
      `${(100 * t.activeExpertShare).toFixed(0)}%`,
      `${(100 * t.attActiveShare).toFixed(0)}%`, `${(100 * t.mlpActiveShare).toFixed(0)}%`,
      Number(t.ppl.toFixed(3)), `${t.decodeSpeedup.toFixed(2)}x`])),
    '',
    'hidden = non-embedding parameters; active hidden = mean per token (routers, k/v, active experts; norms excluded);',
    'active % = active hidden / the model\'s dense-routing count; active experts = share of expert parameters active ' +
      'per token;',
    'att/MLP experts = mean share of experts active per token.',
    '',
    'Findings:',
    ...r.findings.map((f) => `  - ${f}`),
    '',
    'All evaluated routings:',
    formatCompare(r.compare),
  ].join('\n');
}
