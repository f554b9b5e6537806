// Plain references for the nn kernels, written for clarity, in double precision (JS numbers).
type Arr = ArrayLike<number>;

export function rmsnormRef(rows: number, dim: number, x: Arr, w: Arr,
  eps: number): { y: Float64Array; rstd: Float64Array } {
  const y = new Float64Array(rows * dim), rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let j = 0; j < dim; j++) ss += x[r * dim + j] ** 2;
    const s = 1 / Math.sqrt(ss / dim + eps);
    rstd[r] = s;
    for (let j = 0; j < dim; j++) y[r * dim + j] = x[r * dim + j] * s * w[j];
  }
  return { y, rstd };
}

/** Gradients of Σ dy⊙y with y = rmsnorm(x, w), from the analytic formula. */
export function rmsnormBackwardRef(rows: number, dim: number, x: Arr, w: Arr, eps: number,
  dy: Arr): { dx: Float64Array; dw: Float64Array } {
  const { rstd } = rmsnormRef(rows, dim, x, w, eps);
  const dx = new Float64Array(rows * dim), dw = new Float64Array(dim);
  for (let r = 0; r < rows; r++) {
    const s = rstd[r];
    let dot = 0;
    for (let j = 0; j < dim; j++) dot += dy[r * dim + j] * w[j] * x[r * dim + j];
    for (let j = 0; j < dim; j++) {
      const i = r * dim + j;
      dx[i] = s * w[j] * dy[i] - (x[i] * s ** 3 * dot) / dim;
      dw[j] += dy[i] * x[i] * s;
    }
  }
  return { dx, dw };
}

/** Rotate-half RoPE by +angle (sign 1) or −angle (sign −1). */
export function ropeRef(rows: number, heads: number, headDim: number, theta: number, positions: Arr, x: Arr,
  sign = 1): Float64Array {
  const half = headDim / 2, out = new Float64Array(rows * heads * headDim);
  for (let r = 0; r < rows; r++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < half; i++) {
        const a = positions[r] * Math.pow(theta, (-2 * i) / headDim);
        const c = Math.cos(a), s = sign * Math.sin(a);
        const base = (r * heads + h) * headDim;
        const u = x[base + i], v = x[base + i + half];
        out[base + i] = u * c - v * s;
        out[base + i + half] = v * c + u * s;
      }
  return out;
}

/** erf to ~1e-15 (Maclaurin series near 0, continued fraction of erfc beyond). */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let term = ax, sum = ax;
    for (let n = 1; n < 200; n++) {
      term *= (-ax * ax) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(x) = exp(−x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))) evaluated bottom-up.
  let f = ax;
  for (let n = 60; n >= 1; n--) f = ax + n / 2 / f;
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI), C = 0.044715;

export function geluRef(x: number, kind: 'erf' | 'tanh' = 'erf'): number {
  if (kind === 'tanh') return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + C * x ** 3)));
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

export function geluGradRef(x: number, kind: 'erf' | 'tanh' = 'erf'): number {
  if (kind === 'tanh') {
    const t = Math.tanh(SQRT_2_OVER_PI * (x + C * x ** 3));
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * C * x * x);
  }
  return 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
}

/** Mean softmax cross-entropy over targets ≥ 0, per-row losses and the scaled gradient. */
export function crossEntropyRef(rows: number, vocab: number, logits: Arr, targets: Arr,
  gradScale = 1): { loss: number; losses: Float64Array; dlogits: Float64Array } {
  const losses = new Float64Array(rows), dlogits = new Float64Array(rows * vocab);
  let nValid = 0;
  for (let r = 0; r < rows; r++) if (targets[r] >= 0) nValid++;
  let total = 0;
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t < 0) continue;
    let mx = -Infinity;
    for (let j = 0; j < vocab; j++) mx = Math.max(mx, logits[r * vocab + j]);
    let sum = 0;
    for (let j = 0; j < vocab; j++) sum += Math.exp(logits[r * vocab + j] - mx);
    const lse = mx + Math.log(sum);
    losses[r] = lse - logits[r * vocab + t];
    total += losses[r];
    for (let j = 0; j < vocab; j++)
      dlogits[r * vocab + j] = (gradScale * (Math.exp(logits[r * vocab + j] - lse) - (j === t ? 1 : 0))) / nValid;
  }
  return { loss: nValid ? total / nValid : 0, losses, dlogits };
}

export interface AdamwState { param: Float64Array; m: Float64Array; v: Float64Array }

/** One AdamW step in place on double state. */
export function adamwRef(s: AdamwState, grad: Arr,
  o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number }): void {
  const bc1 = 1 - o.beta1 ** o.step, bc2 = 1 - o.beta2 ** o.step;
  for (let i = 0; i < s.param.length; i++) {
    const g = grad[i];
    s.m[i] = o.beta1 * s.m[i] + (1 - o.beta1) * g;
    s.v[i] = o.beta2 * s.v[i] + (1 - o.beta2) * g * g;
    const mh = s.m[i] / bc1, vh = s.v[i] / bc2;
    s.param[i] -= o.lr * (mh / (Math.sqrt(vh) + o.eps) + o.weightDecay * s.param[i]);
  }
}

export function globalNormRef(tensors: Arr[]): number {
  let ss = 0;
  for (const t of tensors) for (let i = 0; i < t.length; i++) ss += t[i] * t[i];
  return Math.sqrt(ss);
}
