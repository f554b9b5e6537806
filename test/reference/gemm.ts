// Plain references for the GEMM family, written for clarity, accumulating in double (JS numbers).

/** C = alpha·op(A)·op(B) + beta·C with the same storage conventions as the native gemm. */
export function gemmRef(o: {
  transA?: boolean; transB?: boolean; m: number; n: number; k: number; alpha?: number; beta?: number;
  a: ArrayLike<number>; lda?: number; b: ArrayLike<number>; ldb?: number; c: ArrayLike<number>; ldc?: number;
}): Float64Array {
  const { m, n, k } = o;
  const alpha = o.alpha ?? 1, beta = o.beta ?? 0;
  const lda = o.lda ?? (o.transA ? m : k), ldb = o.ldb ?? (o.transB ? k : n), ldc = o.ldc ?? n;
  const A = (i: number, p: number) => (o.transA ? o.a[p * lda + i] : o.a[i * lda + p]);
  const B = (p: number, j: number) => (o.transB ? o.b[j * ldb + p] : o.b[p * ldb + j]);
  const out = Float64Array.from(o.c);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) acc += A(i, p) * B(p, j);
      const prev = beta === 0 ? 0 : beta * o.c[i * ldc + j];
      out[i * ldc + j] = alpha * acc + prev;
    }
  return out;
}

/** Grouped GEMM: per expert e, Y[rows] = X[rows]·W[e]ᵀ (transW) or X[rows]·W[e]. */
export function groupedGemmRef(offsets: Int32Array, x: ArrayLike<number>, w: ArrayLike<number>,
  n: number, k: number, transW = true): Float64Array {
  const E = offsets.length - 1, rows = offsets[E];
  const y = new Float64Array(rows * n);
  for (let e = 0; e < E; e++)
    for (let r = offsets[e]; r < offsets[e + 1]; r++)
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let p = 0; p < k; p++)
          acc += x[r * k + p] * (transW ? w[e * n * k + j * k + p] : w[e * k * n + p * n + j]);
        y[r * n + j] = acc;
      }
  return y;
}

/** dW[e] = dY[rows of e]ᵀ · X[rows of e]. */
export function groupedWeightGradRef(offsets: Int32Array, dy: ArrayLike<number>, x: ArrayLike<number>,
  n: number, k: number): Float64Array {
  const E = offsets.length - 1;
  const dw = new Float64Array(E * n * k);
  for (let e = 0; e < E; e++)
    for (let r = offsets[e]; r < offsets[e + 1]; r++)
      for (let i = 0; i < n; i++)
        for (let p = 0; p < k; p++) dw[e * n * k + i * k + p] += dy[r * n + i] * x[r * k + p];
  return dw;
}

/** y[t] = Σ_e s[t,e]·x_e[t]·w[e]ᵀ with x_e = x + e·xStride, rows ldx apart. */
export function expertWeightedGemmRef(t: number, E: number, n: number, k: number, x: ArrayLike<number>,
  ldx: number, xStride: number, w: ArrayLike<number>, s: ArrayLike<number>): Float64Array {
  const y = new Float64Array(t * n);
  for (let i = 0; i < t; i++)
    for (let e = 0; e < E; e++)
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let p = 0; p < k; p++) acc += x[e * xStride + i * ldx + p] * w[e * n * k + j * k + p];
        y[i * n + j] += s[i * E + e] * acc;
      }
  return y;
}
