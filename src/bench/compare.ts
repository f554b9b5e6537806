// `dsmoe bench <checkpoint…>`: every checkpoint under every routing strategy of a sweep, on the
// same held-out token windows: perplexity, mean active parameters per token, the active share of
// expert parameters, prefill and decode tokens/s, and the speed-up over the model's dense routing.
// The numbers come from the one evaluation loop (infer/eval.ts) over each checkpoint's weights
// opened once (infer/load.ts), and the engine's own counters. Charts: svg.ts.
//
// Which text: `--data` files (all their tokens) when given; otherwise the checkpoints' recorded
// held-out split when they all share one tokenizer and one recorded split (inputs, seed, share);
// otherwise the held-out split of the built-in corpus, tokenized with the first checkpoint's
// tokenizer. The result says which.
//
// Routing sweep items (comma-separated): a strategy (`dense`, `topk:K`, `threshold:ε`,
// `threshold-topk:ε`) applied to both layer kinds, or `mlp-only:<strategy>` (attention dense).
// Per model, a strategy is resolved per layer kind: a layer with one expert, `topk:K` with K ≥ E and
// `threshold:0` all compute exactly what `dense` computes and are written `dense`; then equal
// pairs are merged. `dense` is always evaluated (the speed-up baseline).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TrainerState } from '../checkpoint/checkpoint';
import { BUILTIN_CORPUS } from '../data/corpus';
import { loadDataset } from '../data/dataset';
import { countEvalWindows, type TokenArray } from '../data/sampler';
import { DEFAULT_THRESHOLD, paramCount } from '../model/config';
import { loadAddon, type InferenceSession, type ModelConfig, type NativeAddon, type Routing } from '../native/addon';
import { evaluateTokens, reuseSessions, type EvalResult, type UsageStats } from '../infer/eval';
import { openCheckpointWeights } from '../infer/load';
import { loadTokenizer } from '../tokenizer/tokenizer';
import { renderTable } from '../util/table';
import { routingLabel, strategyError } from '../model/routing';
import { perplexityChart, usageHeatmap, type ChartSeries, type HeatmapPanel } from './svg';

export const DEFAULT_THRESHOLDS = [0.1, 0.2, 0.3, 0.48, 0.6, 0.8, 1.0];
export const DEFAULT_MAX_WINDOWS = 32;
export const DEFAULT_EVAL_BATCH = 8;
export const DEFAULT_DECODE_PROMPTS = 2;
export const DEFAULT_DECODE_TOKENS = 16;
export const DEFAULT_ROUNDS = 3;
export const DEFAULT_HEATMAP_ROUTING = `threshold:${DEFAULT_THRESHOLD}`;

// ---------------------------------------------------------------------------------------------
// Routing sweeps

/** One sweep item as written: a strategy for both kinds, or for the MLP only. */
export interface SweepItem {
  strategy: string;
  mlpOnly: boolean;
}

/** A routing resolved for one model: per-kind strategies and a label. */
export interface ResolvedRouting extends Routing {
  label: string;
}

const ITEM_RE = /^(mlp-only:)?(.+)$/;
/** The sweep item that stands for each checkpoint's own default routing (config.json, e.g. calibrated). */
export const DEFAULT_ITEM = 'default';

/** Parses `dense,topk:2,threshold:0.48,mlp-only:topk:1`; throws naming the bad item. */
export function parseSweep(text: string): SweepItem[] {
  const items = text.split(',').map((s) => s.trim());
  if (items.length === 0 || items.every((s) => s === '')) {
    throw new Error('--routing-sweep is empty; give e.g. dense,topk:2,threshold:0.48');
  }
  return items.map((raw) => {
    if (raw === '') throw new Error(`--routing-sweep "${text}" has an empty item`);
    if (raw === DEFAULT_ITEM) return { strategy: DEFAULT_ITEM, mlpOnly: false };
    const m = ITEM_RE.exec(raw)!;
    const strategy = m[2];
    // K is checked against the model later (and capped); here only the syntax and K ≥ 1.
    const err = strategyError(strategy, Number.MAX_SAFE_INTEGER);
    if (err) {
      throw new Error(`--routing-sweep item "${raw}": ${err}; ` +
        'items are dense, topk:K, threshold:ε, threshold-topk:ε, ' +
        "optionally prefixed by mlp-only:, or default (config.json's)");
    }
    return { strategy, mlpOnly: m[1] !== undefined };
  });
}

/**
 * The default sweep of a model: dense, topk:K for K in {1, 2, E/4, E/2}, threshold:ε (DEFAULT_THRESHOLDS).
 * E = the larger expert count.
 */
export function defaultSweep(config: ModelConfig): SweepItem[] {
  const E = Math.max(config.attention.n_experts, config.mlp.n_experts);
  if (E === 1) return [{ strategy: 'dense', mlpOnly: false }];
  const ks = [...new Set([1, 2, Math.floor(E / 4), Math.floor(E / 2)])]
    .filter((k) => k >= 1 && k <= E).sort((a, b) => a - b);
  return [
    { strategy: 'dense', mlpOnly: false },
    ...ks.map((k) => ({ strategy: `topk:${k}`, mlpOnly: false })),
    ...DEFAULT_THRESHOLDS.map((e) => ({ strategy: `threshold:${e}`, mlpOnly: false })),
  ];
}

/** The strategy a layer with E experts actually computes ('dense' for equivalent forms). */
export function resolveStrategy(strategy: string, experts: number): string {
  if (experts === 1 || strategy === 'dense') return 'dense';
  const k = /^topk:(\d+)$/.exec(strategy);
  if (k) return Number(k[1]) >= experts ? 'dense' : `topk:${Number(k[1])}`;
  const t = /^(threshold|threshold-topk):(.+)$/.exec(strategy);
  if (t) {
    const eps = Number(t[2]);
    if (t[1] === 'threshold' && eps === 0) return 'dense';
    return `${t[1]}:${eps}`;
  }
  return strategy;
}

export { routingLabel };

/** A checkpoint's default routing (config.json) as the per-kind strategies its layers compute. */
export function defaultRoutingOf(config: ModelConfig): [attention: string, mlp: string] {
  return [
    resolveStrategy(config.routing.attention, config.attention.n_experts),
    resolveStrategy(config.routing.mlp, config.mlp.n_experts),
  ];
}

/** Resolves sweep items for a model, dense first, duplicates (same per-kind strategies) merged. */
export function resolveSweep(items: SweepItem[], config: ModelConfig): ResolvedRouting[] {
  const out: ResolvedRouting[] = [];
  const seen = new Set<string>();
  const add = (attention: string, mlp: string) => {
    const key = `${attention}|${mlp}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ attention, mlp, label: routingLabel({ attention, mlp }) });
  };
  add('dense', 'dense');
  for (const it of items) {
    if (it.strategy === DEFAULT_ITEM) add(...defaultRoutingOf(config));
    else {
      add(it.mlpOnly ? 'dense' : resolveStrategy(it.strategy, config.attention.n_experts),
        resolveStrategy(it.strategy, config.mlp.n_experts));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The evaluation text

export type DataSource = 'files' | 'checkpoint-split' | 'builtin-split';

export interface EvalText {
  source: DataSource;
  /** One line for the output: which text, and why. */
  description: string;
  tokens: TokenArray;
  /** Warnings about comparability. */
  notes: string[];
}

function fileHash(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** What choosing the text needs of a checkpoint. */
export interface TextSource {
  config: ModelConfig;
  tokenizerPath?: string;
  trainerState?: TrainerState;
}

function splitKey(ck: TextSource): string | undefined {
  const s = ck.trainerState;
  if (!s) return undefined;
  return JSON.stringify([s.data.inputs, s.data.seed, s.data.val_share, s.batch.seq_len]);
}

/** Chooses and tokenizes the held-out text (see the file comment). */
export async function selectEvalText(
  cks: TextSource[], names: string[], opts: { data?: string[]; cacheDir?: string; log?: (l: string) => void },
): Promise<EvalText> {
  const first = cks[0];
  const notes: string[] = [];
  const hashes = cks.map((c) => (c.tokenizerPath ? fileHash(c.tokenizerPath) : undefined));
  const sharedTokenizer = hashes.every((h) => h !== undefined && h === hashes[0]);
  const noTok = names.filter((_, i) => hashes[i] === undefined);
  if (!sharedTokenizer) {
    notes.push(noTok.length > 0
      ? `no tokenizer.json in ${noTok.join(', ')}`
      : 'the checkpoints have different tokenizers');
    notes.push(`all text is tokenized with ${names[0]}'s tokenizer: ` +
      'perplexities of models with another tokenizer are not comparable');
  }
  const tokenizer = first.tokenizerPath ? loadTokenizer(first.tokenizerPath) : undefined;
  if (opts.data && opts.data.length > 0) {
    if (!tokenizer && !opts.data.every((d) => d.endsWith('.bin')))
      throw new Error(`${names[0]} has no tokenizer.json, so text files cannot be tokenized; ` +
        'give .bin token files with --data');
    const ds = await loadDataset(opts.data, {
      tokenizer, vocabSize: first.config.vocab_size, valShare: 0, cacheDir: opts.cacheDir,
    });
    return {
      source: 'files',
      description: `--data ${opts.data.join(' ')} (all ${ds.train.length} tokens), ` +
        `tokenized with ${names[0]}'s tokenizer`,
      tokens: ds.train, notes,
    };
  }
  if (!tokenizer) {
    throw new Error(`${names[0]} has no tokenizer.json: give the evaluation text as .bin token files with --data`);
  }
  const keys = cks.map(splitKey);
  if (sharedTokenizer && keys[0] !== undefined && keys.every((k) => k === keys[0])) {
    const s = first.trainerState!;
    opts.log?.(`tokenizing the recorded held-out split (${s.data.inputs.join(', ')})`);
    const ds = await loadDataset(s.data.inputs, {
      tokenizer, seed: s.data.seed, valShare: s.data.val_share, seqLen: s.batch.seq_len, cacheDir: opts.cacheDir,
    });
    if (ds.val.length !== s.data.val_tokens) {
      notes.push(`the recorded held-out split had ${s.data.val_tokens} tokens, the inputs now give ${ds.val.length} ` +
        '(the data files changed?)');
    }
    return {
      source: 'checkpoint-split', tokens: ds.val, notes,
      description: `the checkpoints' recorded held-out split of ${s.data.inputs.join(', ')} ` +
        `(seed ${s.data.seed}, share ${s.data.val_share}; ${ds.val.length} tokens)`,
    };
  }
  const why = !sharedTokenizer ? 'the checkpoints do not share a tokenizer'
    : keys.some((k) => k === undefined)
      ? 'not every checkpoint records its training data (inference checkpoints)'
      : 'the checkpoints were trained on different data or splits';
  if (sharedTokenizer) {
    notes.push('the built-in corpus\'s held-out split may overlap the training data of some of these models');
  }
  opts.log?.('tokenizing the built-in corpus');
  const ds = await loadDataset([BUILTIN_CORPUS], { tokenizer, seed: 0, valShare: 0.05, cacheDir: opts.cacheDir });
  return {
    source: 'builtin-split', tokens: ds.val, notes,
    description: `the built-in corpus's held-out split (seed 0, share 0.05; ${ds.val.length} tokens), ` +
      `tokenized with ${names[0]}'s tokenizer, because ${why}`,
  };
}

// ---------------------------------------------------------------------------------------------
// The comparison

export interface CompareOptions {
  checkpoints: string[];
  data?: string[];
  /** Comma list (parseSweep); default: defaultSweep per model. */
  sweep?: string;
  maxWindows?: number;
  /** Window length; default the smallest training sequence length (else max_seq_len) of the checkpoints. */
  seqLen?: number;
  batch?: number;
  decodePrompts?: number;
  decodeTokens?: number;
  /** The routing of the expert-usage heat maps (default threshold:0.48). */
  heatmapRouting?: string;
  /** Timing rounds per routing (best kept; default 3). */
  rounds?: number;
  threads?: number;
  cacheDir?: string;
  /** Progress lines (stderr in the CLI). */
  log?: (line: string) => void;
  addon?: NativeAddon;
}

export interface CompareModel {
  name: string;
  dir: string;
  mode: string;
  attExperts: number;
  mlpExperts: number;
  layers: number;
  totalParams: number;
  nonEmbeddingParams: number;
  /** Non-embedding parameters a token touches under dense routing (norms excluded, as the engine counts). */
  denseActiveParams: number;
  expertParams: number;
  trainedSteps: number | null;
  trainedTokens: number | null;
}

/** [layers][E]: the share of the evaluated tokens that activated (were routed to) each expert. */
export interface ExpertShares {
  attShare: number[][];
  mlpShare: number[][];
}

/**
 * A row: one model under one routing; the loss and the engine's per-token means (EvalResult,
 * UsageStats), the timings, and the speed-ups over the same model's dense routing.
 */
export interface CompareRow extends ExpertShares, Pick<EvalResult, 'loss' | 'ppl' | 'tokens'>,
  Pick<UsageStats, 'activeParamsPerToken' | 'activeExpertShare' | 'attExpertsPerToken' | 'mlpExpertsPerToken'> {
  model: string;
  mode: string;
  totalParams: number;
  routing: Routing;
  label: string;
  prefillTokensPerS: number;
  decodeTokensPerS: number;
  prefillSpeedup: number;
  decodeSpeedup: number;
}

export interface Heatmap extends ExpertShares {
  model: string;
  /** the routing label */
  routing: string;
}

export interface CompareResult {
  date: string;
  data: { source: DataSource; description: string; notes: string[]; seqLen: number; windows: number; tokens: number };
  decode: { prompts: number; promptLen: number; tokens: number };
  /** timing rounds (tokens/s are the best of them) */
  rounds: number;
  heatmapRouting: string;
  threads: number;
  models: CompareModel[];
  rows: CompareRow[];
  /** Per-layer expert usage of each model with experts under heatmapRouting. */
  heatmaps: Heatmap[];
}

function positive(v: number | undefined, what: string): void {
  if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) {
    throw new RangeError(`${what} must be a positive integer, got ${v}`);
  }
}

/** Folder names, made unique with the parent folder (then a counter) where two are equal. */
export function modelNames(dirs: string[]): string[] {
  const base = dirs.map((d) => path.basename(path.resolve(d)));
  const cand = base.map((b, i) => (base.filter((x) => x === b).length === 1
    ? b
    : `${path.basename(path.dirname(path.resolve(dirs[i])))}/${b}`));
  return cand.map((c, i) => {
    const before = cand.slice(0, i).filter((x) => x === c).length;
    return before === 0 ? c : `${c}#${before + 1}`;
  });
}

export async function runCompare(o: CompareOptions): Promise<CompareResult> {
  if (o.checkpoints.length === 0) throw new Error('give at least one checkpoint folder: dsmoe bench <checkpoint…>');
  positive(o.maxWindows, '--max-windows');
  positive(o.seqLen, '--seq-len');
  positive(o.batch, '--batch');
  positive(o.decodePrompts, '--decode-prompts');
  positive(o.decodeTokens, '--decode-tokens');
  positive(o.rounds, '--rounds');
  const rounds = o.rounds ?? DEFAULT_ROUNDS;
  const items = o.sweep !== undefined ? parseSweep(o.sweep) : undefined;
  const heatItem = parseSweep(o.heatmapRouting ?? DEFAULT_HEATMAP_ROUTING);
  if (heatItem.length !== 1) throw new Error('--heatmap-routing takes one strategy');
  for (const d of o.checkpoints) if (!fs.existsSync(d)) throw new Error(`checkpoint folder not found: ${d}`);
  const log = o.log ?? (() => undefined);
  const addon = o.addon ?? loadAddon();
  const threads = o.threads !== undefined ? addon.setThreads({ threads: o.threads }) : addon.runtimeInfo().threads;

  const names = modelNames(o.checkpoints);
  const cks = o.checkpoints.map((d) => {
    const w = openCheckpointWeights(d);
    return { ...w, trainerState: w.trainerState() };
  });
  const text = await selectEvalText(cks, names, { data: o.data, cacheDir: o.cacheDir, log });
  const seqLen = o.seqLen ?? Math.min(...cks.map((c) => c.trainerState?.batch.seq_len ?? c.config.max_seq_len));
  for (let i = 0; i < cks.length; i++) {
    if (seqLen > cks[i].config.max_seq_len) {
      throw new RangeError(`--seq-len ${seqLen} is longer than ${names[i]}'s max_seq_len ${cks[i].config.max_seq_len}`);
    }
  }
  const maxWindows = o.maxWindows ?? DEFAULT_MAX_WINDOWS;
  const available = countEvalWindows(text.tokens.length, seqLen);
  if (available === 0) {
    throw new Error(`the evaluation text has ${text.tokens.length} tokens, fewer than one window of ${seqLen} + 1`);
  }
  const batch = Math.max(1, Math.min(o.batch ?? DEFAULT_EVAL_BATCH, maxWindows, available));
  // Whole batches only (batch ≤ the window count, so at least one).
  const windows = Math.min(available, maxWindows) - (Math.min(available, maxWindows) % batch);
  const used = text.tokens.subarray(0, windows * seqLen + 1);
  let maxTok = 0;
  for (const t of used) if (t > maxTok) maxTok = t;
  cks.forEach((c, i) => {
    if (maxTok >= c.config.vocab_size) {
      throw new Error(`the evaluation text has token id ${maxTok}, outside ${names[i]}'s vocabulary ` +
        `of ${c.config.vocab_size}`);
    }
  });
  const promptLen = Math.max(1, Math.min(16, Math.floor(seqLen / 2)));
  const decodeSteps = Math.min(o.decodeTokens ?? DEFAULT_DECODE_TOKENS,
    ...cks.map((c) => c.config.max_seq_len - promptLen));
  const decodePrompts = o.decodePrompts ?? DEFAULT_DECODE_PROMPTS;
  const decodeOpts = { prompts: Math.min(decodePrompts, windows), promptLen, seqLen, steps: decodeSteps };
  log(`evaluation text: ${text.description}`);
  for (const n of text.notes) log(`note: ${n}`);
  log(`${windows} windows of ${seqLen} tokens (batch ${batch}); ` +
    `decode: ${decodeOpts.prompts} prompts of ${promptLen} tokens + ${decodeSteps} greedy steps`);

  const models: CompareModel[] = [];
  const rows: CompareRow[] = [];
  const heatmaps: Heatmap[] = [];
  for (let i = 0; i < cks.length; i++) {
    const ck = cks[i], cfg = ck.config, name = names[i];
    const pc = paramCount(cfg);
    models.push({
      name, dir: ck.dir, mode: cfg.training.mode, attExperts: cfg.attention.n_experts, mlpExperts: cfg.mlp.n_experts,
      layers: cfg.n_layers,
      totalParams: pc.total, nonEmbeddingParams: pc.nonEmbedding, denseActiveParams: pc.attention + pc.mlp,
      expertParams: pc.expertParams,
      trainedSteps: ck.trainerState?.step ?? null, trainedTokens: ck.trainerState?.tokens_seen ?? null,
    });
    const routings = resolveSweep([...(items ?? defaultSweep(cfg)), ...heatItem], cfg);
    // The heat-map routing is evaluated even when the sweep lacks it (it is then not a table row).
    const heatCandidates = resolveSweep(heatItem, cfg);
    const heat = cfg.attention.n_experts === 1 && cfg.mlp.n_experts === 1
      ? undefined
      : heatCandidates[heatCandidates.length - 1];
    const inTable = new Set(resolveSweep(items ?? defaultSweep(cfg), cfg).map((r) => r.label));
    // One prefill session (batch rows) and one batch-1 decode session over the weights opened once.
    const engine = reuseSessions(ck);
    const decoder = ck.createSession({
      batch: 1, maxLen: promptLen + decodeSteps, routing: { attention: 'dense', mlp: 'dense' },
    });
    const evaluate = (rt: Routing, count: number) => evaluateTokens(engine, used,
      { routing: { attention: rt.attention, mlp: rt.mlp }, seqLen, batchSize: batch, maxWindows: count },
      { source: text.source === 'files' ? 'files' : 'held-out', inputs: [] });
    // Warm-up (allocations, page faults), not timed.
    await evaluate(routings[0], batch);
    await greedyDecode(decoder, cfg, used, routings[0], {
      ...decodeOpts, prompts: 1, steps: Math.min(2, decodeSteps),
    });
    // Quality and routing counters: every window once. Speed, over this pass and `rounds - 1`
    // more interleaved rounds (one batch of windows + the decode prompts each), so that a noisy
    // neighbour on a shared machine hits every routing alike: prefill tokens/s is the best pass,
    // decode tokens/s is 1 / the median decode-call time over all rounds.
    const measured = routings.filter((rt) => inTable.has(rt.label) || rt.label === heat?.label);
    const evals: Array<{ rt: ResolvedRouting; ev: EvalResult; prefill: number; calls: number[] }> = [];
    for (let r = 0; r < measured.length; r++) {
      const rt = measured[r];
      const t0 = performance.now();
      const ev = await evaluate(rt, windows);
      const dec = await greedyDecode(decoder, cfg, used, rt, decodeOpts);
      evals.push({ rt, ev, prefill: ev.prefillTokensPerS, calls: dec.callSeconds });
      log(`${name}: ${rt.label.padEnd(16)} ppl ${ev.ppl.toFixed(2)}, `
        + `active ${(ev.usage.activeParamsPerToken / 1e6).toFixed(3)}M/token `
        + `(${(100 * ev.usage.activeExpertShare).toFixed(0)}% of experts), `
        + `${((performance.now() - t0) / 1000).toFixed(1)}s  [${r + 1}/${measured.length}]`);
    }
    for (let round = 1; round < rounds; round++) {
      log(`${name}: timing round ${round + 1}/${rounds}`);
      for (const e of evals) {
        const p = await evaluate(e.rt, batch);
        const d = await greedyDecode(decoder, cfg, used, e.rt, decodeOpts);
        e.prefill = Math.max(e.prefill, p.prefillTokensPerS);
        e.calls.push(...d.callSeconds);
      }
    }
    const decodeRate = (calls: number[]) => 1 / median(calls);
    const dense = { prefill: evals[0].prefill, decode: decodeRate(evals[0].calls) };
    for (const { rt, ev, prefill, calls } of evals) {
      const decode = decodeRate(calls), u = ev.usage;
      const row: CompareRow = {
        model: name, mode: cfg.training.mode, totalParams: pc.total, routing: { attention: rt.attention, mlp: rt.mlp },
        label: rt.label,
        activeParamsPerToken: u.activeParamsPerToken, activeExpertShare: u.activeExpertShare,
        attExpertsPerToken: u.attExpertsPerToken, mlpExpertsPerToken: u.mlpExpertsPerToken,
        loss: ev.loss, ppl: ev.ppl, tokens: ev.tokens, prefillTokensPerS: prefill, decodeTokensPerS: decode,
        prefillSpeedup: prefill / dense.prefill, decodeSpeedup: decode / dense.decode,
        attShare: u.attUsage.map((x) => x.map((c) => c / ev.tokens)),
        mlpShare: u.mlpUsage.map((x) => x.map((c) => c / ev.tokens)),
      };
      if (inTable.has(rt.label)) rows.push(row);
      if (rt.label === heat?.label) {
        heatmaps.push({ model: name, routing: rt.label, attShare: row.attShare, mlpShare: row.mlpShare });
      }
    }
  }
  return {
    date: new Date().toISOString(),
    data: {
      source: text.source, description: text.description, notes: text.notes, seqLen, windows, tokens: windows * seqLen,
    },
    decode: { prompts: decodeOpts.prompts, promptLen, tokens: decodeSteps },
    rounds,
    heatmapRouting: o.heatmapRouting ?? DEFAULT_HEATMAP_ROUTING,
    threads, models, rows, heatmaps,
  };
}

// ---------------------------------------------------------------------------------------------
// Decode timing

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const a = xs.slice().sort((x, y) => x - y), m = a.length >> 1;
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
}

/**
 * Greedy decode at batch 1: for each prompt (the first promptLen tokens of the first windows of
 * seqLen), prefill it, then decode `steps` tokens, each the argmax of the previous logits. Returns
 * the seconds of each decode call (only those are timed). `session` must have batch 1 and room for
 * promptLen + steps.
 */
export async function greedyDecode(
  session: InferenceSession, config: ModelConfig, tokens: TokenArray, routing: Routing,
  o: { prompts: number; promptLen: number; seqLen: number; steps: number },
): Promise<{ callSeconds: number[] }> {
  const V = config.vocab_size;
  session.setRouting({ attention: routing.attention, mlp: routing.mlp });
  const logits = new Float32Array(V), next = new Int32Array(1);
  const callSeconds: number[] = [];
  for (let p = 0; p < o.prompts; p++) {
    session.reset();
    const prompt = Int32Array.from(tokens.subarray(p * o.seqLen, p * o.seqLen + o.promptLen));
    await session.prefillAsync({ tokens: prompt, batch: 1, len: o.promptLen, logits });
    for (let i = 0; i < o.steps; i++) {
      let best = 0;
      for (let v = 1; v < V; v++) if (logits[v] > logits[best]) best = v;
      next[0] = best;
      const t0 = performance.now();
      session.decode({ tokens: next, logits });
      callSeconds.push((performance.now() - t0) / 1000);
    }
  }
  session.reset();
  return { callSeconds };
}

// ---------------------------------------------------------------------------------------------
// Output: table, JSON, charts

const M = (x: number) => `${(x / 1e6).toFixed(x < 1e7 ? 3 : 1)}M`;
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const times = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)}x` : '—');

export function formatCompare(r: CompareResult): string {
  const lines = [
    `Evaluation text: ${r.data.description}`,
    ...r.data.notes.map((n) => `Note: ${n}`),
    `${r.data.windows} windows × ${r.data.seqLen} tokens = ${r.data.tokens} predicted tokens per row; `
      + `decode: ${r.decode.prompts} prompt(s) of ${r.decode.promptLen} tokens + ${r.decode.tokens} greedy steps `
      + `at batch 1; ${r.threads} thread(s); prefill tok/s: best of ${r.rounds} interleaved rounds, `
      + 'decode tok/s: 1 / median step time',
    '',
    renderTable(
      ['model', 'mode', 'params', 'routing', 'active/token', 'active experts', 'ppl', 'prefill tok/s', 'decode tok/s',
        'speed-up (decode)'],
      r.rows.map((x) => [x.model, x.mode, M(x.totalParams), x.label, M(x.activeParamsPerToken),
        pct(x.activeExpertShare), Number(x.ppl.toFixed(3)),
        Math.round(x.prefillTokensPerS), Math.round(x.decodeTokensPerS), times(x.decodeSpeedup)])),
    '',
    'params: all parameters (embedding and LM head included). active/token: non-embedding parameters a token '
      + 'touches (routers, k/v,',
    'its active attention and MLP experts; norms excluded), mean over the evaluated tokens, as the engine counts '
      + 'them. active experts:',
    'the share of expert (q/o/up/down) parameters that are active. '
      + 'Speed-up: decode tokens/s over the same model\'s dense routing',
    '(timings on a shared machine are noisy; the JSON also has the prefill speed-up).',
  ];
  return lines.join('\n');
}

/** File-name-safe form of a model name. */
export function slug(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^_+|_+$/g, '') || 'model';
}

export interface WrittenFiles {
  json: string;
  chart: string;
  heatmaps: string[];
}

/** Writes bench.json, ppl-vs-active.svg and experts-<model>.svg into outDir. */
export function writeCompareOutputs(r: CompareResult, outDir: string): WrittenFiles {
  fs.mkdirSync(outDir, { recursive: true });
  const json = path.join(outDir, 'bench.json');
  fs.writeFileSync(json, JSON.stringify(r, null, 2) + '\n');
  const chart = path.join(outDir, 'ppl-vs-active.svg');
  const series: ChartSeries[] = r.models.map((m) => ({
    name: `${m.name} (${m.mode})`,
    points: r.rows.filter((x) => x.model === m.name)
      .map((x) => ({ x: x.activeParamsPerToken, y: x.ppl, routing: x.label })),
  }));
  fs.writeFileSync(chart, perplexityChart(series, {
    subtitle: `${r.data.windows} windows × ${r.data.seqLen} tokens of `
      + `${r.data.source === 'files' ? 'the --data files'
        : r.data.source === 'checkpoint-split' ? 'the recorded held-out split'
          : 'the built-in corpus held-out split'}`
      + '; active = non-embedding parameters per token',
  }));
  const heatmaps = r.heatmaps.map((h) => {
    const m = r.models.find((x) => x.name === h.model)!;
    const panels: HeatmapPanel[] = [];
    if (m.attExperts > 1) panels.push({ title: `attention (${m.attExperts} experts)`, share: h.attShare });
    if (m.mlpExperts > 1) panels.push({ title: `MLP (${m.mlpExperts} experts)`, share: h.mlpShare });
    const file = path.join(outDir, `experts-${slug(h.model)}.svg`);
    fs.writeFileSync(file, usageHeatmap(panels, {
      title: `Expert usage per layer: ${h.model} (${m.mode})`,
      subtitle: `share of ${r.data.tokens} held-out tokens routed to each expert under ${h.routing}`,
    }));
    return file;
  });
  return { json, chart, heatmaps };
}
