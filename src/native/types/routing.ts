// Routing kernels (native/kernels/cpu/routing.h).
//
// t tokens, experts E, P (token, expert) pairs. Pair lists are token-major: the pairs of token i are
// contiguous, pairToken is non-decreasing, and within a token experts come in descending score
// order (ties to the lower expert index). Results with a value (a count, a loss) are written into
// a small `out` array so the Async variants return them too.

import type { OnDevice } from './gemm';

/** Scores of t tokens over E experts. */
interface ScoreShape extends OnDevice {
  t: number;
  experts: number;
}

export interface RouterSoftmaxArgs extends ScoreShape {
  /** [t, E] */
  logits: Float32Array;
  /** [t, E] output (may be the same array as logits) */
  probs: Float32Array;
}

export interface RouterSoftmaxBackwardArgs extends ScoreShape {
  /** [t, E] */
  probs: Float32Array;
  /** [t, E] */
  dprobs: Float32Array;
  /** [t, E] output: p ⊙ (dp − Σ p·dp) */
  dlogits: Float32Array;
}

/** Output pair lists, token-major. */
export interface PairOutputs {
  /** [P] token of each pair */
  pairToken: Int32Array;
  /** [P] expert of each pair */
  pairExpert: Int32Array;
  /** [P] raw router probability of each pair (not renormalised) */
  pairWeight: Float32Array;
}

export interface RouteTopkArgs extends ScoreShape, PairOutputs {
  /** [t, E] */
  probs: Float32Array;
  /** 1..E; pair arrays need t·k elements. k = E is dense routing. */
  k: number;
}

export interface RouteThresholdArgs extends ScoreShape, PairOutputs {
  /** [t, E] */
  probs: Float32Array;
  /** Select experts with E·S_e > eps (finite). Pair arrays need t·E elements (the worst case). */
  eps: number;
  /** [1] output: routeThreshold writes P; routeThresholdTopk writes K (P = t·K). */
  out: Int32Array;
}

export interface GroupByExpertArgs extends OnDevice {
  pairs: number;
  experts: number;
  /** [P] values in [0, E) */
  pairExpert: Int32Array;
  /** [E + 1] output: expert e's pairs occupy sorted positions [offsets[e], offsets[e+1]) */
  offsets: Int32Array;
  /** [P] output: the pair at each sorted position (stable) */
  order: Int32Array;
  /** [P] output: the sorted position of each pair (order's inverse) */
  position: Int32Array;
}

export interface GatherRowsArgs extends OnDevice {
  t: number;
  pairs: number;
  d: number;
  /** [t, d] */
  x: Float32Array;
  /** [P] token-major */
  pairToken: Int32Array;
  /** [P] values in [0, P) */
  order: Int32Array;
  /** [P, d] output: xg[i] = x[pairToken[order[i]]] */
  xg: Float32Array;
}

export interface GatherRowsBackwardArgs extends OnDevice {
  t: number;
  pairs: number;
  d: number;
  /** [P, d] */
  dxg: Float32Array;
  /** [P] token-major */
  pairToken: Int32Array;
  /** [P] a permutation of [0, P) */
  position: Int32Array;
  /** [t, d] output: dx[i] = beta·dx[i] + Σ_{pairs p of i} dxg[position[p]] */
  dx: Float32Array;
  /** default 0 (dx not read) */
  beta?: number;
}

export interface CombineArgs extends OnDevice {
  t: number;
  pairs: number;
  n: number;
  /** [P, n] expert outputs in grouped order */
  yg: Float32Array;
  /** [P] token-major */
  pairToken: Int32Array;
  /** [P] */
  pairWeight: Float32Array;
  /** [P] a permutation of [0, P) */
  position: Int32Array;
  /** [t, n] output: y[i] = beta·y[i] + Σ_{pairs p of i} w_p·yg[position[p]] */
  y: Float32Array;
  /** default 0 (y not read) */
  beta?: number;
}

export interface CombineBackwardArgs extends OnDevice {
  t: number;
  pairs: number;
  n: number;
  /** [t, n] */
  dy: Float32Array;
  /** [P, n] */
  yg: Float32Array;
  /** [P] token-major */
  pairToken: Int32Array;
  /** [P] */
  pairWeight: Float32Array;
  /** [P] a permutation of [0, P) */
  position: Int32Array;
  /** [P, n] output: dyg[position[p]] = w_p·dy[token of p] */
  dyg: Float32Array;
  /** [P] output: dweight[p] = dy[token of p] · yg[position[p]] */
  dweight: Float32Array;
}

export interface ExpertScoresBackwardArgs extends ScoreShape {
  f: number;
  /** [t, E] router scores */
  s: Float32Array;
  /** [t, E, f] dY·W[e] per token and expert */
  pe: Float32Array;
  /** [t, E, f] expert inputs */
  g: Float32Array;
  /** [t, E] output: ds[i,e] = Σ_f pe·g */
  ds: Float32Array;
  /** [t, E, f] output: dg = s ⊙ pe (may be the same array as pe) */
  dg: Float32Array;
}

/** Auxiliary-loss gradient options. */
interface LossGrad {
  /** Multiplies the gradient (the loss weight α); default 1. */
  gradScale?: number;
  /** [t, E] output: d loss / d probs, times gradScale; omitted: value only. */
  dprobs?: Float32Array;
  /** Add to dprobs instead of overwriting it; default false. */
  accumulate?: boolean;
}

export interface MiLossArgs extends ScoreShape, LossGrad {
  /** [t, E] */
  probs: Float32Array;
  /** [3] output: [L = −H(e) + H(e|X), H(e), H(e|X)] */
  out: Float64Array;
}

export interface SwitchLossArgs extends ScoreShape, LossGrad {
  /** [t, E] */
  probs: Float32Array;
  pairs: number;
  /** [P] values in [0, E): the routed (token, slot) assignments */
  pairExpert: Int32Array;
  /** [1] output: E·Σ_e f_e·P_e */
  out: Float64Array;
}

export interface RoutingKernels {
  /** probs = softmax(logits) per token (max-subtracted) */
  routerSoftmax(args: RouterSoftmaxArgs): void;
  /** dlogits = p ⊙ (dp − Σ p·dp) */
  routerSoftmaxBackward(args: RouterSoftmaxBackwardArgs): void;
  /** topk:k — t·k pairs */
  routeTopk(args: RouteTopkArgs): void;
  /** threshold:eps — experts with E·S_e > eps, at least one per token; out[0] = P */
  routeThreshold(args: RouteThresholdArgs): void;
  /** threshold-topk:eps — K = round(mean threshold count) in [1, E], then topk:K; out[0] = K */
  routeThresholdTopk(args: RouteThresholdArgs): void;
  /** Stable counting sort of pairs by expert */
  groupByExpert(args: GroupByExpertArgs): void;
  /** xg[i] = x[pairToken[order[i]]] */
  gatherRows(args: GatherRowsArgs): void;
  /** dx[i] = beta·dx[i] + Σ_{p of i} dxg[position[p]] */
  gatherRowsBackward(args: GatherRowsBackwardArgs): void;
  /** y[i] = beta·y[i] + Σ_{p of i} w_p·yg[position[p]] */
  combine(args: CombineArgs): void;
  /** Gradients of combine with respect to yg and the pair weights */
  combineBackward(args: CombineBackwardArgs): void;
  /** Dense-training combine backward: ds = Σ_f pe·g, dg = s·pe */
  expertScoresBackward(args: ExpertScoresBackwardArgs): void;
  /** Mutual-information loss (and its gradient) over one layer's tokens */
  miLoss(args: MiLossArgs): void;
  /** Switch load-balancing loss (gradient through the mean probabilities only) */
  switchLoss(args: SwitchLossArgs): void;
}
