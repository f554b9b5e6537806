// The generation loop: one batched prefill of all prompts, then one batched decode step per token,
// sampling in TypeScript over the logits the engine returns (DESIGN.md §2: one coarse native call
// per step). Text is streamed per sequence as soon as it is safe to show:
//   - decoded incrementally with a sliding window of tokens (so tokenizers whose decoders look at
//     neighbours still give the same text), holding back a trailing U+FFFD: a multi-byte character
//     split across tokens is emitted only once complete;
//   - text that could be the beginning of a stop string is held back until it is known not to be.
// A sequence ends at EOS (not shown), at a stop string (cut before it), after maxTokens, or when its
// cache fills the context. In a batch every row decodes every step (finished rows are fed EOS and
// ignored); when one row fills the context, the rows still generating go on in a new session (so
// a batch gives what each prompt alone gives, except under threshold-topk, whose K is per call).
import { Rng } from '../data/rng';
import type { InferenceSession, InferStats } from '../native/addon';
import type { InferenceModel } from './load';
import type { Routing } from '../model/routing';
import { checkSampling, sampleToken, type SamplingOptions } from './sample';

export interface GenerateOptions extends SamplingOptions {
  maxTokens: number;
  /** default: a random seed (reported in the result) */
  seed?: number;
  stop?: string[];
  routing: Routing;
  /** called with each new piece of text of sequence i, in order */
  onText?: (i: number, text: string) => void;
  /** stops after the current step */
  signal?: AbortSignal;
}

export type FinishReason = 'eos' | 'stop' | 'length' | 'context' | 'interrupted';

export interface Completion {
  prompt: string;
  text: string;
  promptTokens: number;
  /** tokens sampled (EOS and the tokens of a stop string included) */
  tokens: number[];
  finish: FinishReason;
}

export interface GenerateResult {
  completions: Completion[];
  seed: number;
  routing: Routing;
  promptTokens: number;
  generatedTokens: number;
  prefillSeconds: number;
  decodeSeconds: number;
  /** prompt tokens / prefill time */
  prefillTokensPerS: number;
  /** tokens sampled from decode steps / decode time (the first token of each sequence comes from the prefill) */
  decodeTokensPerS: number;
  /** seconds from the start of the prefill to the first sampled token */
  ttftSeconds: number;
  /** the engine's counters over prefill and decode */
  stats: InferStats;
}

/** Incremental detokenizer for one sequence (see the file comment). */
export class TextStream {
  private ids: number[] = [];
  private prefix = 0;
  private read = 0;
  /** text decoded and settled (possibly not yet emitted: stop-string hold-back) */
  private text = '';
  private emitted = 0;
  private readonly maxStop: number;
  stopped = false;

  constructor(private readonly decode: (ids: number[]) => string, private readonly stops: string[] = []) {
    this.maxStop = stops.reduce((m, s) => Math.max(m, s.length), 0);
  }

  /** Adds a token; returns the text that can be shown now ('' if none). */
  push(id: number): string {
    this.ids.push(id);
    const before = this.decode(this.ids.slice(this.prefix, this.read));
    const now = this.decode(this.ids.slice(this.prefix));
    if (now.length > before.length && !now.endsWith('\uFFFD')) {
      this.text += now.slice(before.length);
      this.prefix = this.read;
      this.read = this.ids.length;
    }
    return this.release(false);
  }

  /** Everything left (a trailing incomplete character shows as U+FFFD). */
  flush(): string {
    if (!this.stopped && this.read < this.ids.length) {
      const before = this.decode(this.ids.slice(this.prefix, this.read));
      const now = this.decode(this.ids.slice(this.prefix));
      this.text += now.startsWith(before) ? now.slice(before.length) : now;
      this.prefix = this.read = this.ids.length;
    }
    return this.release(true);
  }

  /** The final text (what was and will be emitted). */
  get value(): string {
    return this.text;
  }

  private release(final: boolean): string {
    if (this.stopped) return '';
    if (this.maxStop > 0) {
      const from = this.emitted;  // held-back tails guarantee no stop string starts earlier
      let cut = -1;
      for (const s of this.stops) {
        if (!s) continue;
        const at = this.text.indexOf(s, from);
        if (at >= 0 && (cut < 0 || at < cut)) cut = at;
      }
      if (cut >= 0) {
        this.text = this.text.slice(0, cut);
        this.stopped = true;
        const out = this.text.slice(this.emitted);
        this.emitted = this.text.length;
        return out;
      }
    }
    let end = this.text.length;
    if (!final && this.maxStop > 0) {
      // Hold back a tail that is a proper prefix of some stop string.
      for (let k = Math.min(this.maxStop - 1, this.text.length - this.emitted); k > 0; k--) {
        const tail = this.text.slice(this.text.length - k);
        if (this.stops.some((s) => s.startsWith(tail))) { end = this.text.length - k; break; }
      }
    }
    const out = this.text.slice(this.emitted, end);
    this.emitted = end;
    return out;
  }
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

/** Encodes and checks the prompts (errors name the prompt when there are several). */
export function encodePrompts(model: InferenceModel, prompts: string[]): number[][] {
  if (prompts.length === 0) throw new Error('no prompt given');
  const maxLen = model.config.max_seq_len;
  const name = (i: number) => (prompts.length > 1 ? `prompt ${i + 1}` : 'the prompt');
  return prompts.map((p, i) => {
    if (p.length === 0) throw new Error(`${name(i)} is empty`);
    const ids = Array.from(model.tokenizer.encode(p));
    if (ids.length === 0) throw new Error(`${name(i)} is empty (it encodes to no tokens)`);
    if (ids.length > maxLen)
      throw new Error(`${name(i)} is ${ids.length} tokens long, longer than the model's context of ${maxLen} tokens`);
    return ids;
  });
}

/** Prefill of right-padded sequences; returns the [rows, V] logits at each one's last token. */
async function prefillRows(session: InferenceSession, seqs: number[][], V: number): Promise<Float32Array> {
  const B = seqs.length, len = Math.max(...seqs.map((x) => x.length));
  const tokens = new Int32Array(B * len);
  seqs.forEach((x, b) => tokens.set(x, b * len));
  const logits = new Float32Array(B * V);
  await session.prefillAsync({ tokens, batch: B, len, lengths: Int32Array.from(seqs.map((x) => x.length)), logits });
  return logits;
}

/** The counters of several sessions as one: means weighted by tokens, usage summed. */
export function mergeStats(parts: InferStats[]): InferStats {
  if (parts.length === 1) return parts[0];
  const last = parts[parts.length - 1];
  const tokens = parts.reduce((a, p) => a + p.tokens, 0);
  const mean = (f: (p: InferStats) => number) => (tokens ? parts.reduce((a, p) => a + f(p) * p.tokens, 0) / tokens : 0);
  const sum = (f: (p: InferStats) => number[][]) =>
    f(last).map((row, l) => row.map((_, e) => parts.reduce((a, p) => a + (f(p)[l]?.[e] ?? 0), 0)));
  return {
    ...last, tokens,
    attExpertsPerToken: mean((p) => p.attExpertsPerToken), mlpExpertsPerToken: mean((p) => p.mlpExpertsPerToken),
    activeParamsPerToken: mean((p) => p.activeParamsPerToken), activeExpertShare: mean((p) => p.activeExpertShare),
    activeWeightBytesPerToken: mean((p) => p.activeWeightBytesPerToken),
    attUsage: sum((p) => p.attUsage), mlpUsage: sum((p) => p.mlpUsage),
  };
}

/** Generates a completion for every prompt, as one batch. */
export async function generate(model: InferenceModel, prompts: string[], o: GenerateOptions): Promise<GenerateResult> {
  checkSampling(o);
  if (!(Number.isInteger(o.maxTokens) && o.maxTokens >= 1)) {
    throw new RangeError(`--max-tokens must be an integer ≥ 1, got ${o.maxTokens}`);
  }
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
  const ids = encodePrompts(model, prompts);
  const B = ids.length, V = model.config.vocab_size, maxLen = model.config.max_seq_len;
  const eos = model.tokenizer.eosId;
  const first = model.createSession({ batch: B, maxLen, routing: o.routing });
  const rngs = ids.map((_, i) => new Rng(seed + i));
  const decodeText = (x: number[]) => model.tokenizer.decode(x);
  const streams = ids.map(() => new TextStream(decodeText, o.stop ?? []));
  const completions: Completion[] = prompts.map((prompt, i) => ({
    prompt, text: '', promptTokens: ids[i].length, tokens: [], finish: 'length',
  }));
  const done = new Array<boolean>(B).fill(false);
  const lens = ids.map((x) => x.length);

  const take = (i: number, row: Float32Array) => {
    const c = completions[i];
    const t = sampleToken(row, o, rngs[i]);
    c.tokens.push(t);
    let finish: FinishReason | undefined;
    if (t === eos) finish = 'eos';
    else {
      const piece = streams[i].push(t);
      if (piece) o.onText?.(i, piece);
      if (streams[i].stopped) finish = 'stop';
    }
    if (!finish && c.tokens.length >= o.maxTokens) finish = 'length';
    if (finish) { c.finish = finish; done[i] = true; }
  };

  const t0 = now();
  const logits = await prefillRows(first, ids, V);
  const prefillSeconds = now() - t0;
  for (let i = 0; i < B; i++) take(i, logits.subarray(i * V, (i + 1) * V));
  const ttftSeconds = now() - t0;

  // Decode. All rows of a session advance together; when one row fills the context, the rows
  // still generating continue in a fresh session that prefills their prompt and tokens so far
  // (the logits at its last position are what decode would have returned).
  let session = first, rows = ids.map((_, i) => i);
  let step = new Int32Array(B);
  const parts: InferStats[] = [];
  let decodeSeconds = 0, decodeSampled = 0;
  for (;;) {
    if (rows.every((i) => done[i])) break;
    if (o.signal?.aborted) {
      for (let i = 0; i < B; i++) if (!done[i]) { completions[i].finish = 'interrupted'; done[i] = true; }
      break;
    }
    const cached = session.lengths();
    if (cached.some((n) => n >= maxLen)) {
      const cont: number[] = [];
      rows.forEach((i, r) => {
        if (done[i]) return;
        if (cached[r] >= maxLen) { completions[i].finish = 'context'; done[i] = true; } else cont.push(i);
      });
      if (cont.length === 0) break;
      parts.push(session.stats());
      session = model.createSession({ batch: cont.length, maxLen, routing: o.routing });
      rows = cont;
      step = new Int32Array(cont.length);
      const t1 = now();
      const out = await prefillRows(session, cont.map((i) => [...ids[i], ...completions[i].tokens]), V);
      decodeSeconds += now() - t1;
      cont.forEach((i, r) => take(i, out.subarray(r * V, (r + 1) * V)));
      decodeSampled += cont.length;
      continue;
    }
    rows.forEach((i, r) => { const c = completions[i]; step[r] = done[i] ? eos : c.tokens[c.tokens.length - 1]; });
    const active = rows.map((i) => !done[i]);
    const logits = new Float32Array(rows.length * V);
    const t1 = now();
    await session.decodeAsync({ tokens: step, logits });
    decodeSeconds += now() - t1;
    rows.forEach((i, r) => { if (active[r]) { take(i, logits.subarray(r * V, (r + 1) * V)); decodeSampled++; } });
  }
  parts.push(session.stats());
  for (let i = 0; i < B; i++) {
    const rest = streams[i].flush();
    if (rest) o.onText?.(i, rest);
    completions[i].text = streams[i].value;
  }
  const promptTokens = lens.reduce((a, b) => a + b, 0);
  const generatedTokens = completions.reduce((a, c) => a + c.tokens.length, 0);
  return {
    completions, seed, routing: o.routing, promptTokens, generatedTokens, prefillSeconds, decodeSeconds,
    prefillTokensPerS: promptTokens / prefillSeconds,
    decodeTokensPerS: decodeSeconds > 0 ? decodeSampled / decodeSeconds : 0,
    ttftSeconds, stats: mergeStats(parts),
  };
}
