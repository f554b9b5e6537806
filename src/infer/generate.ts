// The generation loop: one batched prefill of all prompts, then one batched decode step per token,
// sampling in TypeScript over the logits the engine returns (DESIGN.md §2: one coarse native call
// per step). Text is streamed per sequence as soon as it is safe to show:
//   - decoded incrementally with a sliding window of tokens (so tokenizers whose decoders look at
//     neighbours still give the same text), holding back a trailing U+FFFD: a multi-byte character
//     split across tokens is emitted only once complete;
//   - text that could be the beginning of a stop string is held back until it is known not to be.
// A sequence ends at EOS (not shown), at a stop string (cut before it), after maxTokens, or when its
// cache fills the context. In a batch every row decodes every step (finished rows are fed EOS and
// ignored); the batch ends when all rows are finished or the longest row fills the context.
import { Rng } from '../data/rng';
import type { InferStats } from '../native/addon';
import type { InferenceModel } from './load';
import type { Routing } from './routing';
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

/** Generates a completion for every prompt, as one batch. */
export async function generate(model: InferenceModel, prompts: string[], o: GenerateOptions): Promise<GenerateResult> {
  checkSampling(o);
  if (!(Number.isInteger(o.maxTokens) && o.maxTokens >= 1)) throw new RangeError(`--max-tokens must be an integer ≥ 1, got ${o.maxTokens}`);
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
  const ids = encodePrompts(model, prompts);
  const B = ids.length, V = model.config.vocab_size, maxLen = model.config.max_seq_len;
  const eos = model.tokenizer.eosId;
  const session = model.createSession({ batch: B, maxLen, routing: o.routing });
  const rngs = ids.map((_, i) => new Rng(seed + i));
  const decodeText = (x: number[]) => model.tokenizer.decode(x);
  const streams = ids.map(() => new TextStream(decodeText, o.stop ?? []));
  const completions: Completion[] = prompts.map((prompt, i) => ({ prompt, text: '', promptTokens: ids[i].length, tokens: [], finish: 'length' }));
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

  // Prefill: right-padded [B, len].
  const len = Math.max(...lens);
  const tokens = new Int32Array(B * len);
  ids.forEach((x, b) => tokens.set(x, b * len));
  const logits = new Float32Array(B * V);
  const t0 = now();
  await session.prefillAsync({ tokens, batch: B, len, lengths: Int32Array.from(lens), logits });
  const prefillSeconds = now() - t0;
  for (let i = 0; i < B; i++) take(i, logits.subarray(i * V, (i + 1) * V));
  const ttftSeconds = now() - t0;

  // Decode.
  const step = new Int32Array(B);
  let decodeSeconds = 0, decodeSampled = 0;
  for (;;) {
    if (done.every(Boolean)) break;
    if (o.signal?.aborted) {
      for (let i = 0; i < B; i++) if (!done[i]) { completions[i].finish = 'interrupted'; done[i] = true; }
      break;
    }
    // Room for one more position in every row (all rows advance together).
    const cached = session.lengths();
    if (cached.some((n) => n >= maxLen)) {
      for (let i = 0; i < B; i++) if (!done[i]) { completions[i].finish = 'context'; done[i] = true; }
      break;
    }
    for (let i = 0; i < B; i++) {
      const c = completions[i];
      step[i] = done[i] ? eos : c.tokens[c.tokens.length - 1];
    }
    const active = done.map((d) => !d);
    const t1 = now();
    await session.decodeAsync({ tokens: step, logits });
    decodeSeconds += now() - t1;
    for (let i = 0; i < B; i++) if (active[i]) { take(i, logits.subarray(i * V, (i + 1) * V)); decodeSampled++; }
  }
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
    ttftSeconds, stats: session.stats(),
  };
}
