// nn kernels (native/kernels/cpu/nn.h): RMSNorm, RoPE, GELU, fused cross-entropy, AdamW, gradient
// norms. All fp32, row-major; outputs are caller-allocated. Results are bit-identical for any thread
// count (reductions add their parts in a fixed order).
//
// Return values: the kernels that only write buffers return void and also exist as `…Async`.
// crossEntropy, gradNorm and clipGradNorm return a number and are synchronous only: the
// `crossEntropyAsync`, `gradNormAsync` and `clipGradNormAsync` names that the WithAsync mapping in
// ../types.ts derives for them do not exist at run time.

import type { OnDevice } from './gemm';

export interface RmsnormForwardArgs extends OnDevice {
  rows: number;
  /** ≥ 1 */
  dim: number;
  /** [rows, dim] */
  x: Float32Array;
  /** [dim] */
  w: Float32Array;
  /** > 0, added to mean(x²) */
  eps: number;
  /** [rows, dim] = x · rstd · w; may be x itself */
  y: Float32Array;
  /** [rows] = 1/√(mean(x²) + eps); kept for the backward, may be omitted for inference */
  rstd?: Float32Array;
}

export interface RmsnormBackwardArgs extends OnDevice {
  rows: number;
  dim: number;
  /** [rows, dim] the forward's input */
  x: Float32Array;
  /** [dim] */
  w: Float32Array;
  /** [rows] from rmsnormForward */
  rstd: Float32Array;
  /** [rows, dim] */
  dy: Float32Array;
  /** [rows, dim]; may be dy or x itself */
  dx: Float32Array;
  /** [dim] = Σ_rows dy ⊙ x · rstd (overwritten, or added to when accumulateDw) */
  dw: Float32Array;
  accumulateDw?: boolean;
}

interface RopeShapeArgs extends OnDevice {
  rows: number;
  heads: number;
  /** even, ≥ 2; dimension i pairs with i + headDim/2 (rotate-half) */
  headDim: number;
  /** base, > 0: the angle of pair i at position p is p · theta^(−2i/headDim) */
  theta: number;
  /** [rows] absolute positions, ≥ 0 */
  positions: Int32Array;
}

export interface RopeForwardArgs extends RopeShapeArgs {
  /** [rows, heads, headDim]; rotated in place unless `out` is given */
  x: Float32Array;
  /** [rows, heads, headDim] */
  out?: Float32Array;
}

export interface RopeBackwardArgs extends RopeShapeArgs {
  /** [rows, heads, headDim]; rotated back (by −angle) in place unless `dx` is given */
  dy: Float32Array;
  /** [rows, heads, headDim] */
  dx?: Float32Array;
}

/** 'erf' (default): 0.5·x·(1 + erf(x/√2)); 'tanh': 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))) */
export type GeluApproximate = 'erf' | 'tanh';

export interface GeluForwardArgs extends OnDevice {
  n: number;
  /** [n] */
  x: Float32Array;
  /** [n]; may be x itself */
  y: Float32Array;
  approximate?: GeluApproximate;
}

export interface GeluBackwardArgs extends OnDevice {
  n: number;
  /** [n] the forward's input */
  x: Float32Array;
  /** [n] */
  dy: Float32Array;
  /** [n] = dy · gelu'(x); may be dy itself */
  dx: Float32Array;
  approximate?: GeluApproximate;
}

export interface CrossEntropyArgs extends OnDevice {
  rows: number;
  /** ≥ 1 */
  vocab: number;
  /** [rows, vocab] */
  logits: Float32Array;
  /** [rows] target ids < vocab; negative = ignored (no loss, zero gradient) */
  targets: Int32Array;
  /**
   * [rows, vocab] = gradScale · (softmax − onehot) / nValid, nValid = targets ≥ 0 (all zero when
   * nValid = 0). May be `logits` itself; omit it for the loss only.
   */
  dlogits?: Float32Array;
  /** [rows] per-row loss (0 for ignored rows) */
  losses?: Float32Array;
  /** default 1 */
  gradScale?: number;
}

export interface AdamwUpdateArgs extends OnDevice {
  n: number;
  /** [n] updated in place */
  param: Float32Array;
  /** [n] */
  grad: Float32Array;
  /** [n] first moment, updated in place (zeros before step 1) */
  m: Float32Array;
  /** [n] second moment, updated in place (zeros before step 1) */
  v: Float32Array;
  /** ≥ 0 */
  lr: number;
  /** in [0, 1) */
  beta1: number;
  /** in [0, 1) */
  beta2: number;
  /** > 0 */
  eps: number;
  /** ≥ 0, decoupled: p −= lr·wd·p; default 0 */
  weightDecay?: number;
  /** 1-based step count for the bias corrections, ≥ 1 */
  step: number;
}

export interface GradNormArgs extends OnDevice {
  /** every buffer whole (its full length counts) */
  tensors: Float32Array[];
}

export interface ClipGradNormArgs extends GradNormArgs {
  /** > 0 */
  maxNorm: number;
}

export interface NnKernels {
  /** RMSNorm: y = x · rstd · w, rstd = 1/√(mean(x²) + eps) per row */
  rmsnormForward(args: RmsnormForwardArgs): void;
  /** dx = rstd·w⊙dy − x·rstd³/dim·Σ(dy⊙w⊙x);  dw (+)= Σ_rows dy⊙x·rstd */
  rmsnormBackward(args: RmsnormBackwardArgs): void;
  /** out[i] = x[i]cos − x[i+h]sin, out[i+h] = x[i+h]cos + x[i]sin (h = headDim/2) */
  ropeForward(args: RopeForwardArgs): void;
  /** The transpose: rotation by −angle */
  ropeBackward(args: RopeBackwardArgs): void;
  geluForward(args: GeluForwardArgs): void;
  geluBackward(args: GeluBackwardArgs): void;
  /** Fused, stable softmax cross-entropy; returns the mean loss over non-ignored rows (0 if none). Sync only. */
  crossEntropy(args: CrossEntropyArgs): number;
  /** AdamW with bias correction and decoupled weight decay, in place */
  adamwUpdate(args: AdamwUpdateArgs): void;
  /** Global L2 norm over all tensors (summed in double, in a fixed order). Sync only. */
  gradNorm(args: GradNormArgs): number;
  /**
   * Scales every tensor by maxNorm/norm when the global norm exceeds maxNorm; returns the norm
   * before clipping. A non-finite norm is returned without touching the tensors. Sync only.
   */
  clipGradNorm(args: ClipGradNormArgs): number;
}
