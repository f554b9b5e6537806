// The native inference engine (native/infer): sessions that prefill prompts and decode token by
// token with a KV cache, computing only the experts the routing strategy selects
// (DESIGN.md §1.3). Weights come from a typed array laid out by modelLayout (fp32 or bf16) or
// from a memory-mapped safetensors file.
import type { ModelConfig } from './model';

/** 'dense' | 'topk:K' | 'threshold:ε' | 'threshold-topk:ε' */
export type RoutingStrategy = string;

export interface Routing {
  attention: RoutingStrategy;
  mlp: RoutingStrategy;
}

export interface SessionOptions {
  config: ModelConfig;
  /** sequences served together (rows of prefill / decode) */
  batch: number;
  /** cache positions per sequence; default and maximum config.max_seq_len */
  maxLen?: number;
  /** default: config.routing, else dense */
  routing?: Partial<Routing>;
}

/** One tensor of a safetensors file: byte range [begin, end) of the data section. */
export interface FileTensorEntry {
  name: string;
  dtype: 'F32' | 'BF16' | string;
  shape: number[];
  begin: number;
  end: number;
}

export interface PrefillArgs {
  /** [batch, len] token ids; row b holds lengths[b] tokens, the rest is padding (not read) */
  tokens: Int32Array;
  batch: number;
  len: number;
  /**
   * [batch] prompt lengths, each in [0, len], at least one > 0; default all len. 0: the sequence
   * takes no tokens in this call and its logits rows are left as they were — how a sequence joins a
   * running batch (resetSequence, then a prefill of that slot alone).
   */
  lengths?: Int32Array;
  /** out: [batch, vocab] logits at each sequence's last prompt token */
  logits: Float32Array;
  /** out (optional): [batch, len, vocab] logits at every position; padding positions are 0 */
  allLogits?: Float32Array;
  /**
   * in (optional): [batch, len] next-token targets (< 0: not scored). With `losses`, the engine
   * scores every prompt position itself and no [batch, len, vocab] logits cross the boundary.
   */
  targets?: Int32Array;
  /** out (optional, with targets): [batch, len] −log p(target) per position; 0 where not scored */
  losses?: Float32Array;
}

export interface DecodeArgs {
  /** [batch] the next token of each sequence */
  tokens: Int32Array;
  /** out: [batch, vocab]; rows of inactive sequences are left as they were */
  logits: Float32Array;
  /** [batch] 1: the sequence takes a token now; 0: it waits (finished, or not yet prefilled). Default all 1. */
  active?: Uint8Array;
}

export interface InferStats {
  /** tokens processed since the last reset (prefill + decode) */
  tokens: number;
  /** mean active experts per token per layer */
  attExpertsPerToken: number;
  mlpExpertsPerToken: number;
  /** routers + k/v + active q/o + active up/down, mean per token (norms, embedding, LM head excluded) */
  activeParamsPerToken: number;
  /** mean active expert (q/o/up/down) parameters / all expert parameters */
  activeExpertShare: number;
  /** bytes of weights a token reads: the active parameters in their stored dtypes plus the LM head */
  activeWeightBytesPerToken: number;
  /** all q/o/up/down parameters */
  expertParams: number;
  /** routers + k/v, touched by every token */
  sharedParams: number;
  embeddingParams: number;
  /** 0 when tied */
  lmHeadParams: number;
  /** [layers][E]: tokens that activated each expert */
  attUsage: number[][];
  mlpUsage: number[][];
  /**
   * Router sums for the MI loss (null with one expert):
   * probSum [layers][E] = Σ_x S_e(x), entropySum [layers] = Σ_x H(S(x))
   */
  attRouter: { probSum: number[][]; entropySum: number[] } | null;
  mlpRouter: { probSum: number[][]; entropySum: number[] } | null;
  routing: Routing;
}

export interface InferenceSession {
  prefill(args: PrefillArgs): void;
  prefillAsync(args: PrefillArgs): Promise<void>;
  decode(args: DecodeArgs): void;
  decodeAsync(args: DecodeArgs): Promise<void>;
  /** Empties the caches and zeroes the counters. */
  reset(): void;
  /** Zeroes the counters but keeps the caches (to measure decode apart from its prefill). */
  resetStats(): void;
  /**
   * Empties sequence `index`'s cache and zeroes its counters: its slot can take a new prompt while
   * the others keep theirs.
   */
  resetSequence(args: { index: number }): void;
  /**
   * Counters since the last reset / resetStats; with `index`, that sequence's alone since its
   * resetSequence (tokens and expert usage; attRouter / mlpRouter are null).
   */
  stats(args?: { index?: number }): InferStats;
  /** Cached positions per sequence. */
  lengths(): number[];
  /**
   * Every sequence's routing; with `index`, that sequence's alone. Sequences with different
   * routings run in the same prefill / decode call, each routed as it would be alone.
   */
  setRouting(routing: Routing & { index?: number }): void;
}

/**
 * A checkpoint's weights opened once (read into memory or mapped read-only, or an in-memory buffer
 * used in place).
 * Any number of sessions share them, each with its own KV cache, routing and counters.
 */
export interface OpenedWeights {
  readonly config: ModelConfig;
  /** bytes held for the file, read or mapped (0 for a buffer) */
  readonly mappedBytes: number;
  /** how a file was opened (absent for a buffer) */
  readonly load?: 'read' | 'mmap';
  createSession(args: Omit<SessionOptions, 'config'>): InferenceSession;
}

export interface ExpertGemvArgs {
  /** 'cpu' (default), 'cuda' or 'cuda:N': runs the backend's gemv_batch there */
  device?: string;
  experts: number;
  offsets: Int32Array;
  x: Float32Array;
  /**
   * [E, n, k]: Float32Array, Uint16Array (bf16), Int8Array (I8: w = q·scales[row]) or Uint8Array (Q4:
   * [E·n, k/2], two 4-bit codes a byte, column 2c in the low nibble, w = (code − 8)·scales[row, col/32];
   * k a multiple of 32). Quantized weights run on the cpu only.
   */
  w: Float32Array | Uint16Array | Int8Array | Uint8Array;
  /** Quantized weights' scales by weight row e·n + r: Float32Array [E·n] (I8), Uint16Array of fp16 [E·n, k/32] (Q4). */
  scales?: Float32Array | Uint16Array;
  n: number;
  k: number;
  y: Float32Array;
}

/** A safetensors file as validated from its header: tensor byte ranges of the data section at dataOffset. */
export interface FileWeightsArgs {
  config: ModelConfig;
  path: string;
  tensors: FileTensorEntry[];
  dataOffset: number;
  /**
   * 'read' (default): copied once into memory on huge pages, cache-line aligned (decode at full
   * bandwidth); 'mmap': the page cache's pages, shared between processes, paged in on first use.
   */
  load?: 'read' | 'mmap';
}

export interface InferFunctions {
  /** Maps a safetensors file once (tensors/dataOffset as validated from its header). */
  openWeights(args: FileWeightsArgs): OpenedWeights;
  /** The same over a Float32Array or Uint16Array (bf16) of modelLayout(config).totalParams, kept referenced. */
  openWeightsFromBuffer(args: { config: ModelConfig; weights: Float32Array | Uint16Array }): OpenedWeights;
  /** weights: Float32Array or Uint16Array (bf16) of modelLayout(config).totalParams, used in place. */
  createSession(args: SessionOptions & { weights: Float32Array | Uint16Array }): InferenceSession;
  /** Maps `path` read-only; tensors/dataOffset as validated from its safetensors header. */
  createSessionFromFile(args: SessionOptions & Omit<FileWeightsArgs, 'config'>): InferenceSession;
  /** Allows or forbids the AVX512-BF16 dot product in decode; returns whether it is in use. */
  setBf16Dot(args: { enabled: boolean }): boolean;
  /** Allows or forbids the AVX-512 VNNI int8 dot product (int8 / q4 weights) in decode; returns if it is in use. */
  setInt8Dot(args: { enabled: boolean }): boolean;
  /**
   * The decode GEMV alone: per expert e, y[rows of e] = x[rows of e] · w[e]ᵀ (w [E, n, k]);
   * experts without rows are not read.
   */
  expertGemv(args: ExpertGemvArgs): void;
  expertGemvAsync(args: ExpertGemvArgs): Promise<void>;
}
