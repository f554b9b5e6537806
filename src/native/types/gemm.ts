// GEMM family (native/kernels/cpu/gemm.h).

/**
 * The `device` argument every kernel of gemm.ts, routing.ts, nn.ts and attention.ts takes: the backend
 * that runs the op (native/backend, native/bindings/stage.h). 'cpu' (default) runs on the arrays as they
 * are; 'cuda' / 'cuda:N' copies them to that GPU, runs the op there and copies the outputs back (an
 * unusable device or an op the backend lacks is an Error that says why).
 */
export interface OnDevice {
  device?: string;
}

/** Weights may be fp32 or bf16 (a Uint16Array of bf16 bit patterns). */
export type WeightArray = Float32Array | Uint16Array;

export interface GemmArgs extends OnDevice {
  /** op(A) is [m, k]: A stored [m, k], or [k, m] when transA. */
  transA?: boolean;
  /** op(B) is [k, n]: B stored [k, n], or [n, k] (the [out, in] weight layout) when transB. */
  transB?: boolean;
  m: number;
  n: number;
  k: number;
  alpha?: number;
  /** 0 (default) overwrites C without reading it. */
  beta?: number;
  a: Float32Array;
  lda?: number;
  b: WeightArray;
  ldb?: number;
  c: Float32Array;
  ldc?: number;
}

export interface GroupedGemmArgs extends OnDevice {
  experts: number;
  /** [experts + 1]: rows of expert e are [offsets[e], offsets[e+1]). */
  offsets: Int32Array;
  /** [rows, k] */
  x: Float32Array;
  /** [experts, n, k] when transW (default), else [experts, k, n]. */
  w: WeightArray;
  n: number;
  k: number;
  transW?: boolean;
  beta?: number;
  /** [rows, n] */
  y: Float32Array;
}

export interface GroupedGemmWeightGradArgs extends OnDevice {
  experts: number;
  offsets: Int32Array;
  /** [rows, n] */
  dy: Float32Array;
  /** [rows, k] */
  x: Float32Array;
  n: number;
  k: number;
  /** 0 overwrites (experts without rows get zeros), 1 accumulates. */
  beta?: number;
  /** [experts, n, k] */
  dw: Float32Array;
}

export interface ExpertWeightedGemmArgs extends OnDevice {
  t: number;
  experts: number;
  n: number;
  k: number;
  /** Expert e's input rows start at x[e * xExpertStride] and are ldx apart (xExpertStride 0: shared). */
  x: Float32Array;
  ldx?: number;
  xExpertStride?: number;
  /** [experts, n, k] */
  w: Float32Array;
  /** [t, experts] router scores */
  s: Float32Array;
  beta?: number;
  /** [t, n] */
  y: Float32Array;
}

export interface GemmKernels {
  /** C = alpha · op(A)·op(B) + beta · C */
  gemm(args: GemmArgs): void;
  /** Per expert e: Y[rows of e] = X[rows of e] · W[e]ᵀ (or · W[e]) */
  groupedGemm(args: GroupedGemmArgs): void;
  /** Per expert e: dW[e] = beta·dW[e] + dY[rows of e]ᵀ · X[rows of e] */
  groupedGemmWeightGrad(args: GroupedGemmWeightGradArgs): void;
  /** y[t] = beta·y[t] + Σ_e s[t,e] · x_e[t] · w[e]ᵀ (dense-training expert combine) */
  expertWeightedGemm(args: ExpertWeightedGemmArgs): void;
}
