// Batches of (inputs, targets) windows over a flat token array: random windows for training with a
// resumable seeded RNG, and sequential non-overlapping windows for evaluation; and random windows
// over token shards, each a pure function of (seed, draw, row).
import * as crypto from 'node:crypto';
import { Rng, type RngState } from './rng';

export type TokenArray = Uint16Array | Uint32Array;

export interface Batch {
  /** [batchSize, seqLen] row-major token ids. */
  inputs: Int32Array;
  /** inputs shifted left by one: targets[b, t] = tokens[start_b + t + 1]. */
  targets: Int32Array;
  batchSize: number;
  seqLen: number;
  /** Start offset of each row in the token array. */
  starts: number[];
}

export interface SamplerState {
  rng: RngState;
  /** Batches drawn so far. */
  step: number;
  /** Checked on setState: the state belongs to a sampler over this many tokens and this shape. */
  tokens: number;
  batchSize: number;
  seqLen: number;
}

export interface SamplerOptions {
  batchSize: number;
  seqLen: number;
  seed?: number;
  /** Names the data in errors (e.g. the input paths). */
  name?: string;
}

function checkShape(batchSize: number, seqLen: number): void {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batch size must be a positive integer, ` +
    `got ${batchSize}`);
  if (!Number.isInteger(seqLen) || seqLen < 1) throw new RangeError(`sequence length must be a positive integer, got ` +
    `${seqLen}`);
}

function checkLength(tokens: TokenArray, seqLen: number, name: string): void {
  if (tokens.length === 0) throw new Error(`${name} is empty: no tokens`);
  if (tokens.length < seqLen + 1)
    throw new Error(`${name} has ${tokens.length} tokens, fewer than one window needs (sequence length ${seqLen} + 1 ` +
      `= ${seqLen + 1})`);
}

function fill(tokens: TokenArray, starts: number[], seqLen: number): Batch {
  const B = starts.length;
  const inputs = new Int32Array(B * seqLen), targets = new Int32Array(B * seqLen);
  for (let b = 0; b < B; b++) {
    const s = starts[b];
    inputs.set(tokens.subarray(s, s + seqLen), b * seqLen);
    targets.set(tokens.subarray(s + 1, s + seqLen + 1), b * seqLen);
  }
  return { inputs, targets, batchSize: B, seqLen, starts };
}

/** Random training windows: every batch draws batchSize uniform window starts in [0, N − T − 1]. */
export class BatchSampler {
  readonly batchSize: number;
  readonly seqLen: number;
  /** Number of distinct window starts (N − T). */
  readonly windows: number;
  private rng: Rng;
  private steps = 0;

  constructor(private readonly tokens: TokenArray, opts: SamplerOptions) {
    checkShape(opts.batchSize, opts.seqLen);
    checkLength(tokens, opts.seqLen, opts.name ?? 'training data');
    this.batchSize = opts.batchSize;
    this.seqLen = opts.seqLen;
    this.windows = tokens.length - opts.seqLen;
    this.rng = new Rng(opts.seed ?? 0);
  }

  get step(): number {
    return this.steps;
  }

  next(): Batch {
    return fill(this.tokens, this.drawStarts(), this.seqLen);
  }

  /** Moves on by one batch without reading it (a data-parallel rank skipping another rank's batch). */
  skip(): void {
    this.drawStarts();
  }

  private drawStarts(): number[] {
    const starts = new Array<number>(this.batchSize);
    for (let b = 0; b < this.batchSize; b++) starts[b] = this.rng.nextInt(this.windows);
    this.steps++;
    return starts;
  }

  *[Symbol.iterator](): Iterator<Batch> {
    for (;;) yield this.next();
  }

  /** A JSON-serialisable state; setState() on a sampler over the same data continues exactly. */
  getState(): SamplerState {
    return { rng: this.rng.getState(), step: this.steps, tokens: this.tokens.length, batchSize: this.batchSize,
      seqLen: this.seqLen };
  }

  setState(state: SamplerState): void {
    if (!state || typeof state !== 'object') throw new TypeError('sampler state must be an object');
    if (state.tokens !== this.tokens.length || state.batchSize !== this.batchSize || state.seqLen !== this.seqLen)
      throw new Error(`sampler state is for ${state.tokens} tokens, batch ${state.batchSize} × ${state.seqLen}; `
        + `this sampler has ${this.tokens.length} tokens, batch ${this.batchSize} × ${this.seqLen}`);
    if (!Number.isInteger(state.step) || state.step < 0) throw new TypeError(`sampler state step must be a ` +
      `non-negative integer, got ${state.step}`);
    this.rng.setState(state.rng);
    this.steps = state.step;
  }
}

/** Number of sequential, non-overlapping windows of seqLen (+1 target) in n tokens. */
export function countEvalWindows(n: number, seqLen: number): number {
  return n < seqLen + 1 ? 0 : Math.floor((n - 1) / seqLen);
}

export interface EvalOptions {
  batchSize: number;
  seqLen: number;
  /** Stop after this many batches. */
  maxBatches?: number;
  name?: string;
}

/**
 * Sequential validation batches: windows start at 0, T, 2T, … (each needs T + 1 tokens); the last
 * batch may have fewer rows. Deterministic, no RNG.
 */
export function* evalBatches(tokens: TokenArray, opts: EvalOptions): Generator<Batch> {
  checkShape(opts.batchSize, opts.seqLen);
  checkLength(tokens, opts.seqLen, opts.name ?? 'validation data');
  const total = countEvalWindows(tokens.length, opts.seqLen);
  const max = opts.maxBatches ?? Infinity;
  let done = 0;
  for (let w = 0; w < total && done < max; done++) {
    const starts: number[] = [];
    for (; starts.length < opts.batchSize && w < total; w++) starts.push(w * opts.seqLen);
    yield fill(tokens, starts, opts.seqLen);
  }
}

/**
 * The window drawn for row `row` of batch number `draw` (0-based), among `windows` windows: a pure
 * function of (seed, draw, row), so that any process (a data-parallel rank) can compute any batch
 * without the ones before it. Uniform: sha256 of "seed:draw:row:attempt", its first 48 bits, with
 * rejection of the biased tail (attempt counts the rejections).
 */
export function windowAt(seed: number, draw: number, row: number, windows: number): number {
  if (!(windows >= 1) || !Number.isSafeInteger(windows) || windows > 2 ** 48)
    throw new RangeError(`windowAt: the window count must be an integer in [1, 2^48], got ${windows}`);
  const limit = Math.floor(2 ** 48 / windows) * windows;
  for (let attempt = 0; ; attempt++) {
    const h = crypto.createHash('sha256').update(`${seed}:${draw}:${row}:${attempt}`).digest();
    const x = h.readUIntBE(0, 6);
    if (x < limit) return x % windows;
  }
}

export interface ShardSamplerOptions extends SamplerOptions {
  /** Token ids must be below this (checked on every window read). */
  vocabSize?: number;
  /** Shard names for errors, in the order of the shards. */
  shardNames?: string[];
}

/**
 * Random training windows over several token arrays (memory-mapped shards): a window lies inside one
 * shard (shard i has length_i − T windows); batch number d, row b is window windowAt(seed, d, b, total).
 * Only the windows drawn are read, so the shards' pages come in as they are used. The state is the
 * number of batches drawn (the rng field is the seed's, for the checkpoint format).
 */
export class ShardSampler {
  readonly batchSize: number;
  readonly seqLen: number;
  readonly windows: number;
  readonly tokens: number;
  private readonly cum: number[];
  private readonly seed: number;
  private steps = 0;

  constructor(private readonly shards: TokenArray[], private readonly opts: ShardSamplerOptions) {
    checkShape(opts.batchSize, opts.seqLen);
    this.batchSize = opts.batchSize;
    this.seqLen = opts.seqLen;
    this.seed = opts.seed ?? 0;
    this.cum = [0];
    for (const s of shards) this.cum.push(this.cum[this.cum.length - 1] + Math.max(0, s.length - opts.seqLen));
    this.windows = this.cum[this.cum.length - 1];
    this.tokens = shards.reduce((n, s) => n + s.length, 0);
    if (this.windows === 0)
      throw new Error(`${opts.name ?? 'training data'}: no shard holds one window (sequence length ` +
        `${opts.seqLen} + 1 ` +
        'tokens)');
  }

  get step(): number {
    return this.steps;
  }

  /** The shard and offset of global window w. */
  locate(w: number): { shard: number; offset: number } {
    let lo = 0, hi = this.shards.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.cum[mid] <= w) lo = mid;
      else hi = mid - 1;
    }
    return { shard: lo, offset: w - this.cum[lo] };
  }

  /** Batch number `draw` (pure: does not move the sampler). */
  batchAt(draw: number): Batch {
    const B = this.batchSize, T = this.seqLen;
    const inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
    const starts: number[] = [];
    for (let b = 0; b < B; b++) {
      const { shard, offset } = this.locate(windowAt(this.seed, draw, b, this.windows));
      const src = this.shards[shard].subarray(offset, offset + T + 1);
      const V = this.opts.vocabSize;
      if (V !== undefined) {
        for (let i = 0; i < src.length; i++) {
          if (src[i] >= V)
            throw new Error(`${this.opts.shardNames?.[shard] ?? `shard ${shard}`}: token id ${src[i]} at index ` +
              `${offset + i} is out of range for vocabulary size ${V}`);
        }
      }
      inputs.set(src.subarray(0, T), b * T);
      targets.set(src.subarray(1), b * T);
      starts.push(offset);
    }
    return { inputs, targets, batchSize: B, seqLen: T, starts };
  }

  next(): Batch {
    return this.batchAt(this.steps++);
  }

  /** Moves on by one batch without reading it (a data-parallel rank skipping another rank's batch). */
  skip(): void {
    this.steps++;
  }

  getState(): SamplerState {
    return { rng: new Rng(this.seed).getState(), step: this.steps, tokens: this.tokens, batchSize: this.batchSize,
      seqLen: this.seqLen };
  }

  /** Continues at state.step (the batch shape may differ: windows depend only on seed, draw and row). */
  setState(state: SamplerState): void {
    if (!state || typeof state !== 'object') throw new TypeError('sampler state must be an object');
    if (state.tokens !== this.tokens)
      throw new Error(`sampler state is for ${state.tokens} tokens; these shards hold ${this.tokens}`);
    if (!Number.isInteger(state.step) || state.step < 0) throw new TypeError(`sampler state step must be a ` +
      `non-negative integer, got ${state.step}`);
    this.steps = state.step;
  }
}
