// Held-out loss and perplexity of a checkpoint under any routing, with the inference engine:
// sequential non-overlapping windows of seqLen + 1 tokens (the trainer's evalBatches), a batched
// prefill given the next-token targets that returns −log p(target) per position (no logits cross
// into TypeScript), summed here in float64 in position order.
//
// This is the one evaluation loop: `dsmoe eval`, `dsmoe bench` (compare.ts, and so `bench
// reproduce`), calibration (convert/calibrate.ts) and the trainer's routed evaluations use it.
//
// Data: --data files (all their tokens), else the held-out split recorded in trainer_state.json
// (same inputs, split seed, share and sequence length, so the same documents), else the held-out
// split of the built-in corpus (seed 0, 5 %) — both through loadDataset with the checkpoint's
// tokenizer.
//
// Router statistics: the engine counts, per layer and expert, the tokens that activated it, and
// sums the router probabilities (Σ_x S_e(x)) and their entropies (Σ_x H(S(x))). From those, per
// layer: p(e) = mean S_e, H(e) = −Σ p log p, H(e|X) = mean H(S(x)), and the MI loss −H(e) + H(e|X)
// (DESIGN.md §1.2) over all evaluated tokens. (Training computes it per micro-batch: H(e|X) is the
// same mean; H(e) over the whole set is ≥ the per-batch average, since entropy is concave.)
import { BUILTIN_CORPUS } from '../data/corpus';
import { loadDataset, type DataProgress, type TokenArray } from '../data/dataset';
import { countEvalWindows, evalBatches } from '../data/sampler';
import type { InferenceSession, InferStats } from '../native/addon';
import type { InferenceModel } from './load';
import type { Routing } from '../model/routing';

export const DEFAULT_EVAL_VAL_SHARE = 0.05;

/** MI loss terms of one layer kind (nats); the means are over layers. */
export interface KindMi {
  loss: number;
  entropy: number;
  condEntropy: number;
  perLayer: Array<{ loss: number; entropy: number; condEntropy: number }>;
}

export interface MiStats {
  /** null for a layer kind with one expert (no router) */
  attention: KindMi | null;
  mlp: KindMi | null;
}

export interface EvalOptions {
  data?: string[];
  seqLen?: number;
  maxWindows?: number;
  batchSize?: number;
  routing: Routing;
  cacheDir?: string;
  onData?: (p: DataProgress) => void;
  onProgress?: (windowsDone: number, windowsTotal: number) => void;
  signal?: AbortSignal;
}

export interface EvalData {
  /** 'files': --data; 'held-out': the checkpoint's recorded split; 'builtin-held-out': the built-in corpus's */
  source: 'files' | 'held-out' | 'builtin-held-out';
  inputs: string[];
  tokens: TokenArray;
}

/** The engine's counters (InferStats) over all evaluated tokens: per-token means weighted by tokens, usage summed. */
export type UsageStats = Omit<InferStats, 'attRouter' | 'mlpRouter' | 'routing'>;

export interface EvalResult {
  loss: number;
  ppl: number;
  /** predicted tokens */
  tokens: number;
  windows: number;
  seqLen: number;
  batchSize: number;
  routing: Routing;
  data: { source: EvalData['source']; inputs: string[]; tokens: number };
  usage: UsageStats;
  /** the MI loss per layer kind over the evaluated tokens (see the file comment) */
  mi: MiStats;
  seconds: number;
  tokensPerS: number;
  /** seconds inside the engine's prefill calls alone, and predicted tokens / that */
  prefillSeconds: number;
  prefillTokensPerS: number;
  interrupted: boolean;
  notes: string[];
}

/** The tokens to evaluate on (see the file comment). */
export async function evalData(
  model: InferenceModel, o: Pick<EvalOptions, 'data' | 'seqLen' | 'cacheDir' | 'onData'>,
): Promise<EvalData> {
  const tokenizer = model.tokenizer;
  if (o.data !== undefined) {
    if (o.data.length === 0) throw new Error('--data needs at least one file or folder');
    const ds = await loadDataset(o.data, { tokenizer, valShare: 0, cacheDir: o.cacheDir, onProgress: o.onData });
    return { source: 'files', inputs: ds.files, tokens: ds.train };
  }
  const state = model.trainerState();
  if (state) {
    let ds;
    try {
      ds = await loadDataset(state.data.inputs, {
        tokenizer, seed: state.data.seed, valShare: state.data.val_share, seqLen: state.batch.seq_len,
        cacheDir: o.cacheDir, onProgress: o.onData,
      });
    } catch (e) {
      throw new Error(`cannot rebuild the held-out split recorded in ${model.dir}/trainer_state.json: ` +
        `${(e as Error).message}; give the text with --data`);
    }
    return { source: 'held-out', inputs: state.data.inputs, tokens: ds.val };
  }
  const seqLen = o.seqLen ?? model.config.max_seq_len;
  const ds = await loadDataset([BUILTIN_CORPUS], {
    tokenizer, seed: 0, valShare: DEFAULT_EVAL_VAL_SHARE, seqLen, cacheDir: o.cacheDir, onProgress: o.onData,
  });
  return { source: 'builtin-held-out', inputs: [BUILTIN_CORPUS], tokens: ds.val };
}

type RouterSums = InferStats['attRouter'];

/** Sums the engine's router statistics over batches; result() turns them into MI loss terms. */
class MiAccumulator {
  private tokens = 0;
  private att: { prob: number[][]; ent: number[] } | null = null;
  private mlp: { prob: number[][]; ent: number[] } | null = null;

  add(st: InferStats): void {
    this.tokens += st.tokens;
    const acc = (into: { prob: number[][]; ent: number[] } | null, r: RouterSums) => {
      if (!r) return null;
      if (!into) return { prob: r.probSum.map((row) => [...row]), ent: [...r.entropySum] };
      r.probSum.forEach((row, l) => row.forEach((v, e) => (into.prob[l][e] += v)));
      r.entropySum.forEach((v, l) => (into.ent[l] += v));
      return into;
    };
    this.att = acc(this.att, st.attRouter);
    this.mlp = acc(this.mlp, st.mlpRouter);
  }

  result(): MiStats {
    const kind = (k: { prob: number[][]; ent: number[] } | null): KindMi | null => {
      if (!k || this.tokens === 0) return null;
      const perLayer = k.prob.map((row, l) => {
        const entropy = -row.reduce((h, sum) => {
          const p = sum / this.tokens;
          return p > 0 ? h + p * Math.log(p) : h;
        }, 0);
        const condEntropy = k.ent[l] / this.tokens;
        return { loss: condEntropy - entropy, entropy, condEntropy };
      });
      const mean = (f: (x: { loss: number; entropy: number; condEntropy: number }) => number) =>
        perLayer.reduce((a, x) => a + f(x), 0) / perLayer.length;
      return {
        loss: mean((x) => x.loss), entropy: mean((x) => x.entropy), condEntropy: mean((x) => x.condEntropy), perLayer,
      };
    };
    return { attention: kind(this.att), mlp: kind(this.mlp) };
  }
}

class UsageAccumulator {
  private n = 0;
  private w = { params: 0, share: 0, att: 0, mlp: 0, bytes: 0 };
  private last?: InferStats;
  private att: number[][] = [];
  private mlp: number[][] = [];

  add(st: InferStats): void {
    const t = st.tokens;
    if (t === 0) return;
    this.n += t;
    this.w.params += st.activeParamsPerToken * t;
    this.w.share += st.activeExpertShare * t;
    this.w.att += st.attExpertsPerToken * t;
    this.w.mlp += st.mlpExpertsPerToken * t;
    this.w.bytes += st.activeWeightBytesPerToken * t;
    const addTo = (acc: number[][], u: number[][]) => u.forEach((row, l) => {
      acc[l] ??= new Array(row.length).fill(0);
      row.forEach((c, e) => { acc[l][e] += c; });
    });
    addTo(this.att, st.attUsage);
    addTo(this.mlp, st.mlpUsage);
    this.last = st;
  }

  result(): UsageStats {
    const n = this.n || 1, s = this.last;
    return {
      tokens: this.n, activeParamsPerToken: this.w.params / n, activeExpertShare: this.w.share / n,
      attExpertsPerToken: this.w.att / n, mlpExpertsPerToken: this.w.mlp / n,
      activeWeightBytesPerToken: this.w.bytes / n,
      expertParams: s?.expertParams ?? 0, sharedParams: s?.sharedParams ?? 0,
      embeddingParams: s?.embeddingParams ?? 0, lmHeadParams: s?.lmHeadParams ?? 0,
      attUsage: this.att, mlpUsage: this.mlp,
    };
  }
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

/**
 * What evaluation needs of a model: its config and sessions (a checkpoint's opened weights, or a trainer's live
 * weights).
 */
export interface EngineModel {
  config: InferenceModel['config'];
  createSession(opts: { batch: number; maxLen?: number; routing: Routing }): InferenceSession;
}

/**
 * The same model, but one session per (batch, maxLen) kept for every later call (its KV cache and
 * workspace reused; the routing set on each call), for callers that evaluate many times.
 */
export function reuseSessions(model: EngineModel): EngineModel {
  const sessions = new Map<string, InferenceSession>();
  return {
    config: model.config,
    createSession(opts) {
      const key = `${opts.batch}x${opts.maxLen ?? model.config.max_seq_len}`;
      const s = sessions.get(key);
      if (s) { s.setRouting(opts.routing); return s; }
      const created = model.createSession(opts);
      sessions.set(key, created);
      return created;
    },
  };
}

/** Loss and perplexity over the tokens, in windows of seqLen, under the given routing. */
export async function evaluateTokens(
  model: EngineModel, tokens: TokenArray, o: EvalOptions, data: Omit<EvalData, 'tokens'>,
): Promise<EvalResult> {
  const { config } = model;
  const V = config.vocab_size, notes: string[] = [];
  const seqLen = o.seqLen ?? config.max_seq_len;
  if (!(Number.isInteger(seqLen) && seqLen >= 1 && seqLen <= config.max_seq_len))
    throw new RangeError(`--seq-len must be in 1..${config.max_seq_len} (the model's max_seq_len), got ${seqLen}`);
  const requested = o.batchSize ?? 8;
  if (!(Number.isInteger(requested) && requested >= 1)) {
    throw new RangeError(`--batch-size must be an integer ≥ 1, got ${requested}`);
  }
  const where = data.source === 'files'
    ? `the data (${data.inputs.join(', ')})`
    : `the held-out data (${data.inputs.join(', ')})`;
  const available = countEvalWindows(tokens.length, seqLen);
  if (available === 0)
    throw new Error(`${where} has ${tokens.length} tokens, fewer than one window of ${seqLen} + 1; ` +
      'give a smaller --seq-len or more data');
  const windows = o.maxWindows !== undefined ? Math.min(o.maxWindows, available) : available;
  const batchSize = Math.min(requested, windows);  // no session larger than the windows need
  const used = tokens.subarray(0, windows * seqLen + 1);

  const sessions = new Map<number, InferenceSession>();
  const sessionFor = (b: number) => {
    let s = sessions.get(b);
    if (!s) { s = model.createSession({ batch: b, maxLen: seqLen, routing: o.routing }); sessions.set(b, s); }
    return s;
  };
  sessionFor(batchSize);  // bad routing / file problems before any work
  const usage = new UsageAccumulator();
  const mi = new MiAccumulator();
  let sum = 0, count = 0, done = 0, interrupted = false, prefillSeconds = 0;
  const t0 = now();
  let logits = new Float32Array(0), losses = new Float32Array(0);
  for (const b of evalBatches(used, { batchSize, seqLen, name: where })) {
    if (o.signal?.aborted) { interrupted = true; break; }
    const B = b.batchSize;
    if (losses.length !== B * seqLen) { losses = new Float32Array(B * seqLen); logits = new Float32Array(B * V); }
    const s = sessionFor(B);
    s.reset();
    const p0 = now();
    await s.prefillAsync({ tokens: b.inputs, batch: B, len: seqLen, logits, targets: b.targets, losses });
    prefillSeconds += now() - p0;
    const st = s.stats();
    usage.add(st);
    mi.add(st);
    for (let r = 0; r < losses.length; r++) sum += losses[r];  // float64, in position order
    count += b.targets.length;
    done += B;
    o.onProgress?.(done, windows);
  }
  const seconds = now() - t0;
  if (count === 0) throw new Error('evaluation was interrupted before the first batch');
  const loss = sum / count;
  if (!Number.isFinite(loss)) {
    throw new Error(`the loss is not finite (${loss}): the checkpoint's weights may be corrupt`);
  }
  return {
    loss, ppl: Math.exp(loss), tokens: count, windows: done, seqLen, batchSize, routing: o.routing,
    data: { source: data.source, inputs: data.inputs, tokens: tokens.length }, usage: usage.result(),
    mi: mi.result(), seconds, tokensPerS: count / seconds, prefillSeconds, prefillTokensPerS: count / prefillSeconds,
    interrupted, notes,
  };
}

/** evalData + evaluateTokens. */
export async function evaluateCheckpoint(model: InferenceModel, o: EvalOptions): Promise<EvalResult> {
  const d = await evalData(model, o);
  return evaluateTokens(model, d.tokens, o, { source: d.source, inputs: d.inputs });
}
