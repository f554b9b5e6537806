// Plain references for the routing kernels, written for clarity, in double precision (JS numbers).
// They follow DESIGN.md §1.2–1.3 directly and do not assume the token-major order the kernels use.

/** A list of (token, expert, weight) pairs. */
export interface Pairs {
  token: number[];
  expert: number[];
  weight: number[];
}

/** Row-wise softmax of logits [T, E]. */
export function softmaxRef(T: number, E: number, logits: ArrayLike<number>): Float64Array {
  const p = new Float64Array(T * E);
  for (let t = 0; t < T; t++) {
    let mx = -Infinity;
    for (let e = 0; e < E; e++) mx = Math.max(mx, logits[t * E + e]);
    let sum = 0;
    for (let e = 0; e < E; e++) sum += (p[t * E + e] = Math.exp(logits[t * E + e] - mx));
    for (let e = 0; e < E; e++) p[t * E + e] /= sum;
  }
  return p;
}

/** dlogits = p ⊙ (dp − Σ p·dp) per row. */
export function softmaxBackwardRef(T: number, E: number, p: ArrayLike<number>, dp: ArrayLike<number>): Float64Array {
  const out = new Float64Array(T * E);
  for (let t = 0; t < T; t++) {
    let dot = 0;
    for (let e = 0; e < E; e++) dot += p[t * E + e] * dp[t * E + e];
    for (let e = 0; e < E; e++) out[t * E + e] = p[t * E + e] * (dp[t * E + e] - dot);
  }
  return out;
}

/** Experts of token t, best first: descending score, ties to the lower index, NaN last. */
export function rankExperts(E: number, probs: ArrayLike<number>, t: number): number[] {
  const key = (e: number) => (Number.isNaN(probs[t * E + e]) ? -Infinity : probs[t * E + e]);
  return Array.from({ length: E }, (_, e) => e).sort((a, b) => key(b) - key(a) || a - b);
}

/** The first `counts[t]` ranked experts of every token, token by token. */
function pairsFromCounts(E: number, probs: ArrayLike<number>, counts: number[]): Pairs {
  const out: Pairs = { token: [], expert: [], weight: [] };
  counts.forEach((c, t) => {
    for (const e of rankExperts(E, probs, t).slice(0, c)) {
      out.token.push(t);
      out.expert.push(e);
      out.weight.push(probs[t * E + e]);
    }
  });
  return out;
}

export function topkRef(T: number, E: number, probs: ArrayLike<number>, k: number): Pairs {
  return pairsFromCounts(E, probs, new Array<number>(T).fill(k));
}

/** Number of experts of token t with E·S_e > eps, at least 1. */
export function thresholdCountRef(E: number, probs: ArrayLike<number>, t: number, eps: number): number {
  let c = 0;
  for (let e = 0; e < E; e++) if (E * probs[t * E + e] > eps) c++;
  return Math.max(c, 1);
}

export function thresholdRef(T: number, E: number, probs: ArrayLike<number>, eps: number): Pairs {
  return pairsFromCounts(E, probs, Array.from({ length: T }, (_, t) => thresholdCountRef(E, probs, t, eps)));
}

/** K = round(mean threshold count), half up, in [1, E]; then top-K. */
export function thresholdTopkRef(T: number, E: number, probs: ArrayLike<number>,
  eps: number): { K: number; pairs: Pairs } {
  let sum = 0;
  for (let t = 0; t < T; t++) sum += thresholdCountRef(E, probs, t, eps);
  const K = T === 0 ? 1 : Math.min(E, Math.max(1, Math.floor(sum / T + 0.5)));
  return { K, pairs: topkRef(T, E, probs, K) };
}

/** Stable grouping of pairs by expert. */
export function groupByExpertRef(E: number,
  pairExpert: ArrayLike<number>): { offsets: number[]; order: number[]; position: number[] } {
  const order: number[] = [];
  const offsets = [0];
  for (let e = 0; e < E; e++) {
    for (let p = 0; p < pairExpert.length; p++) if (pairExpert[p] === e) order.push(p);
    offsets.push(order.length);
  }
  const position = new Array<number>(order.length);
  order.forEach((p, i) => (position[p] = i));
  return { offsets, order, position };
}

/** xg[i] = x[pairToken[order[i]]] */
export function gatherRowsRef(D: number, x: ArrayLike<number>, pairToken: ArrayLike<number>,
  order: ArrayLike<number>): Float64Array {
  const xg = new Float64Array(order.length * D);
  for (let i = 0; i < order.length; i++)
    for (let d = 0; d < D; d++) xg[i * D + d] = x[pairToken[order[i]] * D + d];
  return xg;
}

/**
 * y[t] = beta·y0[t] + Σ_{p: pairToken[p] = t} w_p·rows[position[p]] (w = 1 when weight is omitted):
 * combine, and (unweighted) the gather backward.
 */
export function sumPairsRef(T: number, N: number, rows: ArrayLike<number>, pairToken: ArrayLike<number>,
  position: ArrayLike<number>, weight?: ArrayLike<number>, beta = 0, y0?: ArrayLike<number>): Float64Array {
  const y = new Float64Array(T * N);
  if (beta !== 0 && y0) for (let i = 0; i < T * N; i++) y[i] = beta * y0[i];
  for (let p = 0; p < pairToken.length; p++)
    for (let n = 0; n < N; n++)
      y[pairToken[p] * N + n] += (weight ? weight[p] : 1) * rows[position[p] * N + n];
  return y;
}

/** Gradients of combine: dyg[position[p]] = w_p·dy[t], dweight[p] = dy[t]·yg[position[p]]. */
export function combineBackwardRef(N: number, dy: ArrayLike<number>, yg: ArrayLike<number>,
  pairToken: ArrayLike<number>,
  weight: ArrayLike<number>, position: ArrayLike<number>): { dyg: Float64Array; dweight: Float64Array } {
  const P = pairToken.length;
  const dyg = new Float64Array(P * N), dweight = new Float64Array(P);
  for (let p = 0; p < P; p++)
    for (let n = 0; n < N; n++) {
      dyg[position[p] * N + n] = weight[p] * dy[pairToken[p] * N + n];
      dweight[p] += dy[pairToken[p] * N + n] * yg[position[p] * N + n];
    }
  return { dyg, dweight };
}

/** ds[t,e] = Σ_f pe·g, dg = s·pe (pe, g [T, E, F]). */
export function expertScoresBackwardRef(T: number, E: number, F: number, s: ArrayLike<number>, pe: ArrayLike<number>,
  g: ArrayLike<number>): { ds: Float64Array; dg: Float64Array } {
  const ds = new Float64Array(T * E), dg = new Float64Array(T * E * F);
  for (let r = 0; r < T * E; r++)
    for (let f = 0; f < F; f++) {
      ds[r] += pe[r * F + f] * g[r * F + f];
      dg[r * F + f] = s[r] * pe[r * F + f];
    }
  return { ds, dg };
}

const xlogx = (v: number) => (v > 0 ? v * Math.log(v) : 0);

/** Mutual-information loss, DESIGN.md §1.2, and its gradient (logs clamped at FLT_MIN like the kernel). */
export function miLossRef(T: number, E: number,
  probs: ArrayLike<number>): { loss: number; hE: number; hEX: number; grad: Float64Array } {
  const pMean = new Float64Array(E);
  let hEX = 0;
  for (let t = 0; t < T; t++)
    for (let e = 0; e < E; e++) {
      pMean[e] += probs[t * E + e];
      hEX -= xlogx(probs[t * E + e]);
    }
  for (let e = 0; e < E; e++) pMean[e] /= T;
  hEX /= T;
  let hE = 0;
  for (let e = 0; e < E; e++) hE -= xlogx(pMean[e]);
  const FLT_MIN = 2 ** -126;
  const grad = new Float64Array(T * E);
  for (let t = 0; t < T; t++)
    for (let e = 0; e < E; e++)
      grad[t * E + e] = (Math.log(Math.max(pMean[e], FLT_MIN)) - Math.log(Math.max(probs[t * E + e], FLT_MIN))) / T;
  return { loss: -hE + hEX, hE, hEX, grad };
}

/** Switch loss E·Σ f_e·P_e and its gradient through P_e. */
export function switchLossRef(T: number, E: number, probs: ArrayLike<number>,
  pairExpert: ArrayLike<number>): { loss: number; grad: Float64Array } {
  const P = pairExpert.length;
  const f = new Float64Array(E);
  for (let p = 0; p < P; p++) f[pairExpert[p]] += 1 / P;
  let loss = 0;
  for (let t = 0; t < T; t++) for (let e = 0; e < E; e++) loss += (E * f[e] * probs[t * E + e]) / T;
  const grad = new Float64Array(T * E);
  for (let t = 0; t < T; t++) for (let e = 0; e < E; e++) grad[t * E + e] = (E * f[e]) / T;
  return { loss, grad };
}
