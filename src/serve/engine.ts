// The engine loop of one served model: continuous batching over one session of `maxBatch` slots.
//
// Requests wait in a bounded queue. Each step of the loop
//   1. frees the slots of finished and cancelled requests (a client that went away, a timeout),
//   2. admits queued requests into free slots: resetSequence, the request's own routing, and one
//      prefill of all the newcomers together (the running sequences take no tokens in it),
//   3. runs one batched decode of every running sequence — each weight read serves all of them.
// Sequences with different routings share the calls (the session routes each as it would alone),
// and rows are computed independently, so a greedy request gets the text it gets alone; the one
// exception is threshold-topk, whose K is taken over the sequences sharing it (DESIGN.md §1.3).
//
// The native calls are asynchronous (worker threads), so the HTTP side stays responsive while a
// step runs. Sampling and text (stop strings, incremental UTF-8) are generate's, per request.
import { Rng } from '../data/rng';
import type { InferStats, InferenceSession } from '../native/addon';
import type { InferenceModel } from '../infer/load';
import { TextStream } from '../infer/generate';
import { sampleToken, type SamplingOptions } from '../infer/sample';
import type { Routing } from '../model/routing';

export type FinishReason = 'stop' | 'length';

export interface EngineRequest {
  promptIds: number[];
  /** tokens to generate at most (the context may end the sequence sooner: finish 'length') */
  maxTokens: number;
  sampling: SamplingOptions;
  seed: number;
  stop: string[];
  routing: Routing;
  /** go on past EOS until maxTokens (benchmarks: fixed lengths) */
  ignoreEos?: boolean;
  /** each new piece of text, in order (streaming) */
  onText?: (text: string) => void;
  /** aborted: the request leaves at the next step and its promise rejects with the signal's reason */
  signal?: AbortSignal;
}

export interface EngineResult {
  text: string;
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
  /** the sequence's own counters: tokens, expert usage, active parameters per token */
  stats: InferStats;
  /** seconds from admission to the request's queue entry, to its first token, to its end */
  queueSeconds: number;
  firstTokenSeconds: number;
  totalSeconds: number;
}

/** The queue is full (HTTP 429). */
export class QueueFullError extends Error {
  constructor(readonly limit: number) {
    super(`the server is busy: ${limit} requests are already waiting (--max-queue); retry later`);
  }
}

/** The engine stopped (shutdown) before the request finished (HTTP 503). */
export class EngineClosedError extends Error {}

interface Pending {
  req: EngineRequest;
  resolve: (r: EngineResult) => void;
  reject: (e: unknown) => void;
  enqueued: number;
}

interface Running extends Pending {
  rng: Rng;
  text: TextStream;
  tokens: number[];
  admitted: number;
  firstToken: number;
  finish?: FinishReason;
}

/** Counters for /metrics, summed over the engine's life. */
export interface EngineCounters {
  promptTokens: number;
  generatedTokens: number;
  steps: number;
}

const now = () => performance.now() / 1e3;
const RATE_WINDOW_S = 10;

export class ModelEngine {
  readonly session: InferenceSession;
  private readonly slots: (Running | null)[];
  private readonly queue: Pending[] = [];
  private readonly logits: Float32Array;
  private wake: (() => void) | null = null;
  private closed = false;
  private readonly loop: Promise<void>;
  private readonly recent: [number, number][] = [];  // [time, tokens] of recent steps
  readonly counters: EngineCounters = { promptTokens: 0, generatedTokens: 0, steps: 0 };
  /** called with an error a step could not recover from (the requests of the step fail with it) */
  onError?: (e: unknown) => void;

  /** stepDelayMs: a pause after each step (tests: DSMOE_SERVE_STEP_DELAY_MS) */
  constructor(readonly model: InferenceModel, readonly maxBatch: number, readonly maxQueue: number,
    defaultRouting: Routing, private readonly stepDelayMs = 0) {
    this.session = model.createSession({ batch: maxBatch, routing: defaultRouting });
    this.slots = new Array<Running | null>(maxBatch).fill(null);
    this.logits = new Float32Array(maxBatch * model.config.vocab_size);
    this.loop = this.run();
  }

  get queueDepth(): number { return this.queue.filter((p) => !p.req.signal?.aborted).length; }
  get running(): number { return this.slots.filter((s) => s !== null).length; }
  get idle(): boolean { return this.queue.length === 0 && this.running === 0; }

  /** Queues a request; throws QueueFullError at once when the queue is full. */
  submit(req: EngineRequest): Promise<EngineResult> {
    if (this.closed) return Promise.reject(new EngineClosedError('the server is shutting down'));
    if (req.signal?.aborted) return Promise.reject(req.signal.reason);
    // Requests cancelled while waiting leave at the next step; they do not hold a place meanwhile.
    if (this.queueDepth >= this.maxQueue) throw new QueueFullError(this.maxQueue);
    return new Promise<EngineResult>((resolve, reject) => {
      const p: Pending = { req, resolve, reject, enqueued: now() };
      this.queue.push(p);
      req.signal?.addEventListener('abort', () => this.poke(), { once: true });
      this.poke();
    });
  }

  /** Stops the loop: every queued and running request rejects with EngineClosedError. */
  async close(reason = 'the server is shutting down'): Promise<void> {
    this.closed = true;
    this.poke();
    await this.loop;
    const err = new EngineClosedError(reason);
    for (const p of this.queue.splice(0)) p.reject(err);
    this.slots.forEach((s, i) => { if (s) { s.reject(err); this.slots[i] = null; } });
  }

  /** Resolves when nothing is queued or running (or the engine closed). */
  async drained(): Promise<void> {
    while (!this.idle && !this.closed) await new Promise((r) => setTimeout(r, 20));
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      this.dropCancelled();
      const joiners = this.admit();
      if (this.running === 0) {
        await new Promise<void>((r) => { this.wake = r; });
        continue;
      }
      try {
        await this.step(joiners);
        if (this.stepDelayMs > 0) await new Promise((r) => setTimeout(r, this.stepDelayMs));
      } catch (e) {
        // A failed native call: the requests in the batch fail, the session starts clean.
        this.onError?.(e);
        this.slots.forEach((s, i) => { if (s) { s.reject(e); this.slots[i] = null; } });
        this.session.reset();
      }
    }
  }

  /** Removes cancelled requests from the queue and the slots (their sequences are free again). */
  private dropCancelled(): void {
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const p = this.queue[i];
      if (p.req.signal?.aborted) { this.queue.splice(i, 1); p.reject(p.req.signal.reason); }
    }
    this.slots.forEach((s, i) => {
      if (s?.req.signal?.aborted) { this.slots[i] = null; s.reject(s.req.signal.reason); }
    });
  }

  /** Moves queued requests into free slots; returns the slots that joined. */
  private admit(): number[] {
    const joined: number[] = [];
    for (let i = 0; i < this.slots.length && this.queue.length > 0; i++) {
      if (this.slots[i]) continue;
      const p = this.queue.shift()!;
      this.session.resetSequence({ index: i });
      this.session.setRouting({ ...p.req.routing, index: i });
      const decode = (ids: number[]) => this.model.tokenizer.decode(ids);
      this.slots[i] = {
        ...p, rng: new Rng(p.req.seed), text: new TextStream(decode, p.req.stop), tokens: [], admitted: now(),
        firstToken: 0,
      };
      joined.push(i);
    }
    return joined;
  }

  private async step(joiners: number[]): Promise<void> {
    const V = this.model.config.vocab_size, B = this.maxBatch;
    let generated = 0;
    if (joiners.length > 0) {
      const len = Math.max(...joiners.map((i) => this.slots[i]!.req.promptIds.length));
      const tokens = new Int32Array(B * len), lengths = new Int32Array(B);
      for (const i of joiners) {
        const ids = this.slots[i]!.req.promptIds;
        tokens.set(ids, i * len);
        lengths[i] = ids.length;
        this.counters.promptTokens += ids.length;
      }
      await this.session.prefillAsync({ tokens, batch: B, len, lengths, logits: this.logits });
      for (const i of joiners) { this.take(i, this.logits.subarray(i * V, (i + 1) * V)); generated++; }
    }
    this.finishDone();
    // One decode of every running sequence that has room left in its cache.
    const active = new Uint8Array(B), tokens = new Int32Array(B);
    const lengths = this.session.lengths();
    let any = false;
    this.slots.forEach((s, i) => {
      if (!s || s.req.signal?.aborted) return;
      if (lengths[i] >= this.model.config.max_seq_len) { s.finish = 'length'; return; }  // context full
      active[i] = 1;
      tokens[i] = s.tokens[s.tokens.length - 1];
      any = true;
    });
    if (any) {
      await this.session.decodeAsync({ tokens, logits: this.logits, active });
      for (let i = 0; i < B; i++) {
        if (active[i] && this.slots[i]) { this.take(i, this.logits.subarray(i * V, (i + 1) * V)); generated++; }
      }
    }
    this.finishDone();
    this.counters.steps++;
    this.counters.generatedTokens += generated;
    this.noteRate(generated);
  }

  /** Samples slot i's next token from its logits row. */
  private take(i: number, row: Float32Array): void {
    const s = this.slots[i]!;
    const t = sampleToken(row, s.req.sampling, s.rng);
    if (s.tokens.length === 0) s.firstToken = now();
    s.tokens.push(t);
    if (t === this.model.tokenizer.eosId && !s.req.ignoreEos) { s.finish = 'stop'; return; }
    const piece = s.text.push(t);
    if (piece) s.req.onText?.(piece);
    if (s.text.stopped) s.finish = 'stop';
    else if (s.tokens.length >= s.req.maxTokens) s.finish = 'length';
  }

  /** Resolves the requests that finished and frees their slots. */
  private finishDone(): void {
    this.slots.forEach((s, i) => {
      if (!s?.finish) return;
      const rest = s.text.flush();
      if (rest) s.req.onText?.(rest);
      const end = now();
      s.resolve({
        text: s.text.value, finishReason: s.finish, promptTokens: s.req.promptIds.length,
        completionTokens: s.tokens.length, stats: this.session.stats({ index: i }),
        queueSeconds: s.admitted - s.enqueued, firstTokenSeconds: s.firstToken - s.enqueued,
        totalSeconds: end - s.enqueued,
      });
      this.slots[i] = null;
    });
  }

  private noteRate(tokens: number): void {
    const t = now();
    this.recent.push([t, tokens]);
    while (this.recent.length > 0 && this.recent[0][0] < t - RATE_WINDOW_S) this.recent.shift();
  }

  /** Generated tokens per second: the tokens of the last RATE_WINDOW_S seconds over that window. */
  tokensPerSecond(): number {
    const from = now() - RATE_WINDOW_S;
    return this.recent.reduce((a, [at, n]) => (at >= from ? a + n : a), 0) / RATE_WINDOW_S;
  }
}
