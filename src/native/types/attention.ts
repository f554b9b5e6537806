// Attention kernels (native/kernels/cpu/attention.h): causal attention for the MoA layout.

import type { OnDevice } from './gemm';

/**
 * Sizes shared by the forward and backward kernels. Hq = nHeads = experts · headsPerExpert query
 * heads; expert e owns heads e·H .. e·H+H−1. Query head h uses the shared kv head
 * (h % H) / (H / G). The tq queries are the LAST tq of the tk positions: query i sits at absolute
 * position tk − tq + i and attends to keys 0 .. tk − tq + i (tq = tk: training; tq = 1: decode).
 */
export interface AttentionShapeArgs extends OnDevice {
  /** B ≥ 1 */
  batch: number;
  /** Tq ≥ 1 queries */
  tq: number;
  /** Tk ≥ Tq keys/values (a KV cache during decode) */
  tk: number;
  /** Hq: query heads of all experts together, a multiple of headsPerExpert */
  nHeads: number;
  /** H: query heads per expert, a multiple of kvHeads */
  headsPerExpert: number;
  /** G: key/value heads shared by every expert */
  kvHeads: number;
  /** dh */
  headDim: number;
  /** Score scale; default 1/sqrt(headDim). */
  scale?: number;
}

export interface AttentionForwardArgs extends AttentionShapeArgs {
  /** [B, Tq, Hq, dh] */
  q: Float32Array;
  /** [B, Tk, G, dh] */
  k: Float32Array;
  /** [B, Tk, G, dh] */
  v: Float32Array;
  /** [B, Tq, Hq, dh], written */
  out: Float32Array;
  /** [B, Hq, Tq], written: log Σ_j exp(scale · q·k_j) per query, needed by the backward */
  lse: Float32Array;
}

export interface AttentionBackwardArgs extends AttentionShapeArgs {
  /** [B, Tq, Hq, dh] */
  q: Float32Array;
  /** [B, Tk, G, dh] */
  k: Float32Array;
  /** [B, Tk, G, dh] */
  v: Float32Array;
  /** [B, Tq, Hq, dh] from attentionForward */
  out: Float32Array;
  /** [B, Hq, Tq] from attentionForward */
  lse: Float32Array;
  /** [B, Tq, Hq, dh] gradient of the loss with respect to out */
  dout: Float32Array;
  /** [B, Tq, Hq, dh], overwritten */
  dq: Float32Array;
  /** [B, Tk, G, dh], overwritten: sums over every query head of every expert sharing the kv head */
  dk: Float32Array;
  /** [B, Tk, G, dh], overwritten, like dk */
  dv: Float32Array;
}

export interface AttentionKernels {
  /** out = softmax_causal(scale · q·kᵀ)·v per query head, and lse per query. */
  attentionForward(args: AttentionForwardArgs): void;
  /** dq, dk, dv of attentionForward given dout (bit-identical for any thread count). */
  attentionBackward(args: AttentionBackwardArgs): void;
}
