// Backend ops without a kernel family of their own (native/bindings/bind_backend_ops.cc): the pieces the
// model and the inference session compose — element-wise add, the embedding, the training pair
// weights and score mask, the MoA pair-head slices, router statistics, the dense-training expert
// gradients. Exported so that every op can be tested on every backend (`device`); all fp32 row-major,
// outputs caller-allocated. Each also exists as `…Async`.

import type { OnDevice, WeightArray } from './gemm';

export interface AddInplaceArgs extends OnDevice {
  n: number;
  /** [n] y += x */
  y: Float32Array;
  /** [n] */
  x: Float32Array;
}

/** n token ids in [0, vocab), rows of d. */
interface EmbeddingShape extends OnDevice {
  n: number;
  d: number;
  /** ≥ 1 */
  vocab: number;
  /** [n] values in [0, vocab); an id may repeat */
  tokens: Int32Array;
}

export interface EmbeddingForwardArgs extends EmbeddingShape {
  /** [vocab, d] fp32, or bf16 bit patterns (widened exactly) */
  table: WeightArray;
  /** [n, d] output: out[i] = table[tokens[i]] */
  out: Float32Array;
}

export interface EmbeddingBackwardArgs extends EmbeddingShape {
  /** [n, d] */
  dy: Float32Array;
  /** [vocab, d] accumulated: dtable[tokens[i]] += dy[i] (repeated ids add every row) */
  dtable: Float32Array;
}

export interface PairWeightsArgs extends OnDevice {
  t: number;
  experts: number;
  pairs: number;
  /** [P] values in [0, t) */
  pairToken: Int32Array;
  /** [P] values in [0, E) */
  pairExpert: Int32Array;
  /** [t, E] */
  probs: Float32Array;
  /** [t, E] output: probs on the pairs, 0 elsewhere */
  weights: Float32Array;
  /** [t, E] output: 1 on the pairs, 0 elsewhere */
  mask: Uint8Array;
}

export interface MaskScoresArgs extends OnDevice {
  t: number;
  experts: number;
  /** [t, E] nonzero = kept */
  mask: Uint8Array;
  /** [t, E] in place: set to 0 where the mask is 0 */
  ds: Float32Array;
  /** [t·E] output: the first P entries are the experts of the mask, token-major */
  pairExpert: Int32Array;
  /** [1] output: P */
  out: Int32Array;
}

/**
 * The MoA pair-head slices: pair p's slice is row pairToken[p], columns pairExpert[p]·hd .. + hd of
 * a [t, qd] per-token layout; the [P, hd] side is in grouped order (row i holds pair order[i]).
 */
interface PairHeadsShape extends OnDevice {
  t: number;
  experts: number;
  pairs: number;
  /** the width of one expert's heads */
  hd: number;
  /** the per-token row width; default and minimum experts·hd */
  qd?: number;
  /** [P] a permutation of [0, P) */
  order: Int32Array;
  /** [P] token-major (non-decreasing) values in [0, t) */
  pairToken: Int32Array;
  /** [P] values in [0, E); each (token, expert) at most once */
  pairExpert: Int32Array;
}

export interface ScatterPairHeadsArgs extends PairHeadsShape {
  /** [P, hd] */
  src: Float32Array;
  /** [t, qd] output: the pairs' slices written, the rest untouched */
  dst: Float32Array;
}

export interface GatherPairHeadsArgs extends PairHeadsShape {
  /** [t, qd] */
  src: Float32Array;
  /** [P, hd] output */
  dst: Float32Array;
}

export interface RouterStatisticsArgs extends OnDevice {
  t: number;
  experts: number;
  /** [t, E] */
  probs: Float32Array;
  /** [E] accumulated: probSum[e] += Σ_t probs[t, e] */
  probSum: Float64Array;
  /** [1] accumulated: += Σ_t −Σ_e p·log p (0 at p = 0) */
  entropySum: Float64Array;
}

export interface ExpertInputGradArgs extends OnDevice {
  t: number;
  experts: number;
  d: number;
  k: number;
  /** [t, d] */
  dy: Float32Array;
  /** [experts, d, k] */
  w: Float32Array;
  /** [t, experts·k] output: p[:, e·k ..] = dy · w[e] */
  p: Float32Array;
}

export interface ExpertWeightedWeightGradArgs extends OnDevice {
  t: number;
  experts: number;
  d: number;
  k: number;
  /** [t, d] */
  dy: Float32Array;
  /** Expert e's input rows [t, k] start at x[e * xExpertStride] and are ldx apart (stride 0: shared). */
  x: Float32Array;
  /** default k */
  ldx?: number;
  /** default 0 */
  xExpertStride?: number;
  /** [t, experts] router scores */
  s: Float32Array;
  /** [experts, d, k] accumulated: dw[e] += (s[:, e] ⊙ dy)ᵀ · x_e */
  dw: Float32Array;
}

export interface BackendOpKernels {
  addInplace(args: AddInplaceArgs): void;
  embeddingForward(args: EmbeddingForwardArgs): void;
  embeddingBackward(args: EmbeddingBackwardArgs): void;
  pairWeights(args: PairWeightsArgs): void;
  maskScores(args: MaskScoresArgs): void;
  scatterPairHeads(args: ScatterPairHeadsArgs): void;
  gatherPairHeads(args: GatherPairHeadsArgs): void;
  routerStatistics(args: RouterStatisticsArgs): void;
  expertInputGrad(args: ExpertInputGradArgs): void;
  expertWeightedWeightGrad(args: ExpertWeightedWeightGradArgs): void;
}
