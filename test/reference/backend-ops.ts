// Plain references for the Backend ops bound in native/bindings/bind_backend_ops.cc, written for
// clarity from backend.h's contracts, accumulating in double (JS numbers). Outputs that the op
// accumulates into start from a copy of the given array.

/** y + x. */
export function addInplaceRef(y: ArrayLike<number>, x: ArrayLike<number>): Float64Array {
  return Float64Array.from(y, (v, i) => v + x[i]);
}

/** out[i] = table[tokens[i]], rows of d. */
export function embeddingForwardRef(d: number, tokens: ArrayLike<number>, table: ArrayLike<number>): Float64Array {
  const out = new Float64Array(tokens.length * d);
  for (let i = 0; i < tokens.length; i++)
    for (let j = 0; j < d; j++) out[i * d + j] = table[tokens[i] * d + j];
  return out;
}

/** dtable + Σ over i with tokens[i] = v of dy[i], for every row v. */
export function embeddingBackwardRef(d: number, tokens: ArrayLike<number>, dy: ArrayLike<number>,
  dtable: ArrayLike<number>): Float64Array {
  const out = Float64Array.from(dtable);
  for (let i = 0; i < tokens.length; i++)
    for (let j = 0; j < d; j++) out[tokens[i] * d + j] += dy[i * d + j];
  return out;
}

/** weights = probs on the pairs, 0 elsewhere; mask = 1 on the pairs. */
export function pairWeightsRef(T: number, E: number, pairToken: ArrayLike<number>, pairExpert: ArrayLike<number>,
  probs: ArrayLike<number>): { weights: Float64Array; mask: Uint8Array } {
  const weights = new Float64Array(T * E), mask = new Uint8Array(T * E);
  for (let p = 0; p < pairToken.length; p++) {
    const i = pairToken[p] * E + pairExpert[p];
    weights[i] = probs[i];
    mask[i] = 1;
  }
  return { weights, mask };
}

export interface MaskScores { ds: Float64Array; pairExpert: number[] }

/** ds with 0 where the mask is 0; the experts of the mask in token-major order. */
export function maskScoresRef(T: number, E: number, mask: ArrayLike<number>, ds: ArrayLike<number>): MaskScores {
  const out = Float64Array.from(ds), pairExpert: number[] = [];
  for (let t = 0; t < T; t++)
    for (let e = 0; e < E; e++) {
      if (mask[t * E + e] !== 0) pairExpert.push(e);
      else out[t * E + e] = 0;
    }
  return { ds: out, pairExpert };
}

/** The pair-head slices' index arguments. */
export interface PairHeads {
  hd: number;
  qd: number;
  order: ArrayLike<number>;
  pairToken: ArrayLike<number>;
  pairExpert: ArrayLike<number>;
}

/** dst [t, qd] with row i of src [P, hd] written at pair order[i]'s slice; the rest as given. */
export function scatterPairHeadsRef(h: PairHeads, src: ArrayLike<number>, dst: ArrayLike<number>): Float64Array {
  const out = Float64Array.from(dst);
  for (let i = 0; i < h.order.length; i++) {
    const p = h.order[i], at = h.pairToken[p] * h.qd + h.pairExpert[p] * h.hd;
    for (let j = 0; j < h.hd; j++) out[at + j] = src[i * h.hd + j];
  }
  return out;
}

/** [P, hd]: row i is pair order[i]'s slice of src [t, qd]. */
export function gatherPairHeadsRef(h: PairHeads, src: ArrayLike<number>): Float64Array {
  const out = new Float64Array(h.order.length * h.hd);
  for (let i = 0; i < h.order.length; i++) {
    const p = h.order[i], at = h.pairToken[p] * h.qd + h.pairExpert[p] * h.hd;
    for (let j = 0; j < h.hd; j++) out[i * h.hd + j] = src[at + j];
  }
  return out;
}

export interface RouterStatistics { probSum: Float64Array; entropySum: number }

/** Column sums of probs [T, E] and the summed row entropies −Σ p log p (0 at p = 0). */
export function routerStatisticsRef(T: number, E: number, probs: ArrayLike<number>): RouterStatistics {
  const probSum = new Float64Array(E);
  let entropySum = 0;
  for (let t = 0; t < T; t++)
    for (let e = 0; e < E; e++) {
      const p = probs[t * E + e];
      probSum[e] += p;
      if (p > 0) entropySum -= p * Math.log(p);
    }
  return { probSum, entropySum };
}

/** p [N, E·K]: p[:, e·K ..] = dy [N, D] · W[e] [D, K]. */
export function expertInputGradRef(N: number, E: number, D: number, K: number, dy: ArrayLike<number>,
  w: ArrayLike<number>): Float64Array {
  const p = new Float64Array(N * E * K);
  for (let i = 0; i < N; i++)
    for (let e = 0; e < E; e++)
      for (let c = 0; c < K; c++) {
        let acc = 0;
        for (let j = 0; j < D; j++) acc += dy[i * D + j] * w[e * D * K + j * K + c];
        p[i * E * K + e * K + c] = acc;
      }
  return p;
}

/** dw [E, D, K] + (s[:, e] ⊙ dy)ᵀ · X_e, X_e [N, K] at x + e·xStride with rows ldx apart. */
export function expertWeightedWeightGradRef(N: number, E: number, D: number, K: number, dy: ArrayLike<number>,
  x: ArrayLike<number>, ldx: number, xStride: number, s: ArrayLike<number>, dw: ArrayLike<number>): Float64Array {
  const out = Float64Array.from(dw);
  for (let e = 0; e < E; e++)
    for (let j = 0; j < D; j++)
      for (let c = 0; c < K; c++) {
        let acc = 0;
        for (let i = 0; i < N; i++) acc += s[i * E + e] * dy[i * D + j] * x[e * xStride + i * ldx + c];
        out[e * D * K + j * K + c] += acc;
      }
  return out;
}
