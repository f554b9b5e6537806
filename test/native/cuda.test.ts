// The CUDA backend against the CPU kernels (themselves tested against double references), on seeded
// random data with awkward sizes (1, primes, sizes that straddle the 128x128 GEMM tiles, the 16-query
// and 32-key attention tiles and the 256-pair group-by chunks, empty expert groups).
//
// Without a usable GPU the kernel suites are skipped, visibly: one test always runs and logs
// "CUDA tests skipped: <reason>", and checks that the kernels throw that reason instead of running.
// The suite runs unchanged on a GPU machine (scripts/gpu-check.sh).
//
// DSMOE_CUDA_TEST_WITH_CPU=1 runs the kernel suites with each cudaXxx replaced by its CPU kernel: it
// checks this file's own plumbing (argument names, sizes, comparisons) on machines without a GPU; it
// says nothing about the CUDA kernels.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addon, expectNativeError, randArray, randn, relError, toBf16 } from '../helpers';
import type { AttentionForwardArgs, CudaKernels, CudaFunctions, GroupedGemmArgs } from '../../src/native/addon';

const info = addon.cudaInfo();
const withCpu = process.env.DSMOE_CUDA_TEST_WITH_CPU === '1';
const runKernels = info.available || withCpu;

type Cuda = Pick<CudaKernels, keyof CudaKernels> & Pick<CudaFunctions, 'cudaCrossEntropy'>;
const cuda: Cuda = withCpu
  ? {
    cudaGemm: (a) => addon.gemm(a),
    cudaGroupedGemm: (a) => addon.groupedGemm(a),
    cudaRouterSoftmax: (a) => addon.routerSoftmax(a),
    cudaRouteTopk: (a) => addon.routeTopk(a),
    cudaGroupByExpert: (a) => addon.groupByExpert(a),
    cudaGatherRows: (a) => addon.gatherRows(a),
    cudaCombine: (a) => addon.combine(a),
    cudaRmsnormForward: (a) => addon.rmsnormForward(a),
    cudaRmsnormBackward: (a) => addon.rmsnormBackward(a),
    cudaRopeForward: (a) => addon.ropeForward(a),
    cudaGeluForward: (a) => addon.geluForward(a),
    cudaGeluBackward: (a) => addon.geluBackward(a),
    cudaAdamwUpdate: (a) => addon.adamwUpdate(a),
    cudaAttentionForward: (a) => addon.attentionForward(a),
    cudaCrossEntropy: (a) => addon.crossEntropy(a),
  }
  : addon;

function nvccOnPath(): boolean {
  if (process.env.CUDACXX && fs.existsSync(process.env.CUDACXX)) return true;
  const dirs = (process.env.PATH ?? '').split(path.delimiter).concat(['/usr/local/cuda/bin']);
  return dirs.some((d) => d && fs.existsSync(path.join(d, 'nvcc')));
}

describe('CUDA build', () => {
  test('the addon reports whether CUDA was compiled in, as the build option and nvcc say', () => {
    // DSMOE_CUDA=on fails the build without nvcc; auto builds CUDA exactly when nvcc is found; off (also
    // the sanitizer build's default and every node-gyp build) never does.
    const expected = process.env.DSMOE_EXPECT_CUDA !== undefined
      ? process.env.DSMOE_EXPECT_CUDA === '1'
      : info.buildOption === 'on' || (info.buildOption === 'auto' && nvccOnPath());
    expect(info.compiled).toBe(expected);
    if (info.compiled) expect(info.architectures).toMatch(/90a/);
    if (!info.available) expect(info.reason).toBeTruthy();
  });

  test(runKernels ? 'CUDA kernels run (see the suites below)' : 'CUDA tests skipped: no usable device', () => {
    if (info.available) {
      expect(info.deviceCount).toBeGreaterThan(0);
      console.log(`CUDA tests on ${info.name} (compute capability ${info.computeCapability})`);
      return;
    }
    console.warn(`CUDA tests skipped: ${info.reason}` + (withCpu ? ' (running the suites with CPU stand-ins)' : ''));
    // The kernels say why instead of running.
    const c = new Float32Array(1);
    expectNativeError(() => addon.cudaGemm({ m: 1, n: 1, k: 1, a: c, b: c, c }), 'Error',
      /^cudaGemm: no usable CUDA device: .+/);
    expectNativeError(() => addon.cudaBenchMemcpy({ bytes: 1024 }), 'Error', /^cudaBenchMemcpy: no usable CUDA device/);
  });
});

const describeCuda = runKernels ? describe : describe.skip;

// bf16 has an 8-bit significand: each input rounded to bf16 is off by at most 2^-9 ≈ 2e-3 relative.
// Over a K-long dot product of random-sign terms the error and the result both grow like √K, so the
// norm-wise relative error (max|diff| / max|ref|) stays a few × 2^-9 (about 3e-3 seen in analysis);
// fp32 accumulation adds nothing visible. 1.5e-2 leaves a ~5x margin and still catches any indexing
// bug (those give O(1) errors).
const BF16_TOL = 1.5e-2;
// Only A is rounded when B is already bf16 (so at most half the error): same bound, kept simple.

const SHAPES: Array<[number, number, number]> = [
  [1, 1, 1], [1, 17, 5], [7, 1, 13], [13, 31, 7], [16, 16, 16], [29, 47, 61], [97, 3, 101],
  [128, 128, 32], [129, 130, 33], [37, 300, 31], [200, 270, 9], [257, 131, 70],
];

describeCuda('cudaGemm and cudaGroupedGemm (bf16 tensor cores) against the CPU gemm', () => {
  test('all layouts, awkward sizes', () => {
    let seed = 1;
    for (const [m, n, k] of SHAPES)
      for (const transA of [false, true])
        for (const transB of [false, true]) {
          const a = randArray(m * k, seed++), b = randArray(k * n, seed++);
          const got = new Float32Array(m * n), ref = new Float32Array(m * n);
          cuda.cudaGemm({ transA, transB, m, n, k, a, b, c: got });
          addon.gemm({ transA, transB, m, n, k, a, b, c: ref });
          const err = relError(got, ref);
          if (!(err <= BF16_TOL)) throw new Error(`${m}x${n}x${k} tA=${transA} tB=${transB}: rel err ${err}`);
        }
  });

  test('bf16 B, alpha, beta, leading dimensions larger than the rows (gaps of C untouched)', () => {
    const m = 19, n = 150, k = 45, lda = 51, ldb = 47, ldc = 161;
    const a = randArray(m * lda, 11), b = toBf16(randArray(n * ldb, 12)), c0 = randArray(m * ldc, 13);
    const got = c0.slice(), ref = c0.slice();
    cuda.cudaGemm({ transB: true, m, n, k, alpha: 0.5, beta: -2, a, lda, b, ldb, c: got, ldc });
    addon.gemm({ transB: true, m, n, k, alpha: 0.5, beta: -2, a, lda, b, ldb, c: ref, ldc });
    // beta·C is exact-ish fp32 and dominates half the result; the product part has the bf16 error.
    expect(relError(got, ref)).toBeLessThanOrEqual(BF16_TOL);
    for (let i = 0; i < m; i++)
      for (let j = n; j < ldc && i * ldc + j < got.length; j++) expect(got[i * ldc + j]).toBe(c0[i * ldc + j]);
  });

  test('beta = 0 never reads C (NaN does not leak); K = 0 gives zeros', () => {
    const m = 33, n = 17, k = 40;
    const a = randArray(m * k, 21), b = randArray(n * k, 22);
    const got = new Float32Array(m * n).fill(NaN), ref = new Float32Array(m * n);
    cuda.cudaGemm({ transB: true, m, n, k, a, b, c: got });
    addon.gemm({ transB: true, m, n, k, a, b, c: ref });
    expect(relError(got, ref)).toBeLessThanOrEqual(BF16_TOL);
    const z = new Float32Array(m * n).fill(NaN);
    cuda.cudaGemm({ m, n, k: 0, a: new Float32Array(0), b: new Float32Array(0), c: z });
    expect(Array.from(z).every((v) => v === 0)).toBe(true);
  });

  test('grouped: variable groups including empty ones (first, middle, last), both weight layouts, bf16, beta', () => {
    const groupSets = [[5], [0, 1, 7, 0, 130, 3, 0], [0, 0, 0, 2], [129, 0, 128, 1, 0, 0, 31, 256]];
    let seed = 100;
    for (const groups of groupSets)
      for (const [n, k] of [[1, 1], [24, 40], [131, 67]] as const)
        for (const transW of [true, false])
          for (const bf16 of [false, true])
            for (const beta of [0, 1]) {
              const E = groups.length, offsets = new Int32Array(E + 1);
              groups.forEach((g, e) => { offsets[e + 1] = offsets[e] + g; });
              const R = offsets[E];
              const x = randArray(R * k, seed++), w32 = randArray(E * n * k, seed++);
              const w = bf16 ? toBf16(w32) : w32;
              const y0 = randArray(R * n, seed++);
              const args = (y: Float32Array): GroupedGemmArgs => ({ experts: E, offsets, x, w, n, k, transW, beta, y });
              const got = y0.slice(), ref = y0.slice();
              cuda.cudaGroupedGemm(args(got));
              addon.groupedGemm(args(ref));
              const err = relError(got, ref);
              if (!(err <= BF16_TOL))
                throw new Error(`groups ${groups} n=${n} k=${k} transW=${transW} bf16=${bf16} beta=${beta}: rel err ` +
                  `${err}`);
            }
  });

  test('the Async variant resolves with the same result', async () => {
    if (withCpu) return;
    const m = 40, n = 50, k = 60, a = randArray(m * k, 31), b = randArray(n * k, 32);
    const s = new Float32Array(m * n), as = new Float32Array(m * n);
    addon.cudaGemm({ transB: true, m, n, k, a, b, c: s });
    await addon.cudaGemmAsync({ transB: true, m, n, k, a, b, c: as });
    expect(Array.from(as)).toEqual(Array.from(s));  // the same kernel on the same data: bit-identical
  });

  test('bad arguments are JavaScript errors naming the argument', () => {
    if (withCpu) return;
    expectNativeError(() => addon.cudaGemm({ m: 4, n: 4, k: 4, a: new Float32Array(15), b: new Float32Array(16),
      c: new Float32Array(16) }), 'RangeError', /cudaGemm: a/);
    expectNativeError(() => addon.cudaGroupedGemm({ experts: 2, offsets: new Int32Array([0, 3, 2]),
      x: new Float32Array(12),
      w: new Float32Array(32), n: 4, k: 4, y: new Float32Array(8) }), 'RangeError',
    /cudaGroupedGemm: offsets must be non-decreasing/);
  });
});

/** Scores with ties and a NaN, so the ranking rules (ties to the lower index, NaN last) are exercised. */
function probsWithTies(T: number, E: number, seed: number): Float32Array {
  const p = randArray(T * E, seed);
  for (let i = 0; i < p.length; i++) p[i] = Math.abs(p[i]);
  for (let t = 0; t < T; t += 3) p[t * E + (t % E)] = p[t * E + ((t + 1) % E)];  // a tie
  if (T * E > 4) p[2 * E - 1 < p.length ? 2 * E - 1 : 0] = NaN;
  return p;
}

describeCuda('CUDA routing against the CPU', () => {
  test('routerSoftmax', () => {
    for (const [T, E] of [[1, 1], [3, 2], [37, 7], [100, 64], [5, 130]]) {
      const logits = randn(T * E, T + E, 3);
      const got = new Float32Array(T * E), ref = new Float32Array(T * E);
      cuda.cudaRouterSoftmax({ t: T, experts: E, logits, probs: got });
      addon.routerSoftmax({ t: T, experts: E, logits, probs: ref });
      // fp32 exp on both sides (CUDA expf vs the CPU's exp: ≤ 2 ulp apart), sum in double: ~1e-7.
      expect(relError(got, ref)).toBeLessThanOrEqual(1e-6);
    }
  });

  test('routeTopk: identical pairs (ranking is exact: comparisons only)', () => {
    for (const [T, E, k] of [[1, 1, 1], [7, 5, 2], [50, 8, 8], [33, 32, 3], [10, 64, 1]]) {
      const probs = probsWithTies(T, E, T * 7 + E);
      const g = { t: new Int32Array(T * k), e: new Int32Array(T * k), w: new Float32Array(T * k) };
      const r = { t: new Int32Array(T * k), e: new Int32Array(T * k), w: new Float32Array(T * k) };
      cuda.cudaRouteTopk({ t: T, experts: E, probs, k, pairToken: g.t, pairExpert: g.e, pairWeight: g.w });
      addon.routeTopk({ t: T, experts: E, probs, k, pairToken: r.t, pairExpert: r.e, pairWeight: r.w });
      expect(Array.from(g.t)).toEqual(Array.from(r.t));
      expect(Array.from(g.e)).toEqual(Array.from(r.e));
      expect(Array.from(g.w)).toEqual(Array.from(r.w));  // the raw probabilities, copied (NaN equals NaN here)
    }
  });

  test('groupByExpert: identical offsets, order and position (a stable counting sort is unique)', () => {
    let seed = 500;
    for (const [P, E] of [[0, 3], [1, 1], [1, 5], [255, 4], [256, 4], [257, 7], [1000, 64], [5003, 32]]) {
      const r = randArray(P, seed++);
      // Skewed and with empty experts: only even experts below E/2 (and expert E-1 once).
      const pe = new Int32Array(P);
      for (let i = 0; i < P; i++) pe[i] = Math.min(E - 1, 2 * Math.floor(Math.abs(r[i]) * Math.max(1, E / 4)));
      if (P > 0) pe[P - 1] = E - 1;
      const g = { off: new Int32Array(E + 1).fill(-1), ord: new Int32Array(P), pos: new Int32Array(P) };
      const c = { off: new Int32Array(E + 1), ord: new Int32Array(P), pos: new Int32Array(P) };
      cuda.cudaGroupByExpert({ pairs: P, experts: E, pairExpert: pe, offsets: g.off, order: g.ord, position: g.pos });
      addon.groupByExpert({ pairs: P, experts: E, pairExpert: pe, offsets: c.off, order: c.ord, position: c.pos });
      expect(Array.from(g.off)).toEqual(Array.from(c.off));
      expect(Array.from(g.ord)).toEqual(Array.from(c.ord));
      expect(Array.from(g.pos)).toEqual(Array.from(c.pos));
    }
  });

  test('gatherRows (exact copy) and combine', () => {
    for (const [T, E, k, D] of [[1, 1, 1, 1], [13, 5, 2, 17], [70, 8, 3, 64], [9, 4, 4, 1]]) {
      const probs = probsWithTies(T, E, T + D).map((v) => (Number.isNaN(v) ? 0.5 : v));
      const P = T * k, pt = new Int32Array(P), pe = new Int32Array(P), pw = new Float32Array(P);
      addon.routeTopk({ t: T, experts: E, probs, k, pairToken: pt, pairExpert: pe, pairWeight: pw });
      const offsets = new Int32Array(E + 1), order = new Int32Array(P), position = new Int32Array(P);
      addon.groupByExpert({ pairs: P, experts: E, pairExpert: pe, offsets, order, position });
      const x = randArray(T * D, T * 3 + D);
      const xg = new Float32Array(P * D), xgRef = new Float32Array(P * D);
      cuda.cudaGatherRows({ t: T, pairs: P, d: D, x, pairToken: pt, order, xg });
      addon.gatherRows({ t: T, pairs: P, d: D, x, pairToken: pt, order, xg: xgRef });
      expect(Array.from(xg)).toEqual(Array.from(xgRef));
      for (const beta of [0, 1, 0.5]) {
        const yg = randArray(P * D, D + 9), y0 = randArray(T * D, D + 10);
        const y = y0.slice(), yRef = y0.slice();
        cuda.cudaCombine({ t: T, pairs: P, n: D, yg, pairToken: pt, pairWeight: pw, position, y, beta });
        addon.combine({ t: T, pairs: P, n: D, yg, pairToken: pt, pairWeight: pw, position, y: yRef, beta });
        // Same fp32 sums in the same (pair) order; nvcc may fuse w·yg + acc into one FMA (one rounding
        // fewer per term): a few ulp of the result.
        expect(relError(y, yRef)).toBeLessThanOrEqual(1e-6);
      }
    }
  });
});

describeCuda('CUDA nn kernels against the CPU', () => {
  test('rmsnormForward and rmsnormBackward', () => {
    for (const [rows, dim] of [[1, 1], [3, 7], [64, 257], [5, 2048]]) {
      const x = randn(rows * dim, rows + dim), w = randn(dim, dim, 0.5), dy = randn(rows * dim, rows * dim + 1);
      const y = new Float32Array(rows * dim), rstd = new Float32Array(rows);
      const yR = new Float32Array(rows * dim), rstdR = new Float32Array(rows);
      cuda.cudaRmsnormForward({ rows, dim, x, w, eps: 1e-5, y, rstd });
      addon.rmsnormForward({ rows, dim, x, w, eps: 1e-5, y: yR, rstd: rstdR });
      // Sum of squares in double on both sides (different order): the results differ by ~1 ulp.
      expect(relError(y, yR)).toBeLessThanOrEqual(1e-6);
      expect(relError(rstd, rstdR)).toBeLessThanOrEqual(1e-6);
      const dw0 = randn(dim, 77);
      for (const accumulateDw of [false, true]) {
        const dx = new Float32Array(rows * dim), dxR = new Float32Array(rows * dim);
        const dw = dw0.slice(), dwR = dw0.slice();
        cuda.cudaRmsnormBackward({ rows, dim, x, w, rstd: rstdR, dy, dx, dw, accumulateDw });
        addon.rmsnormBackward({ rows, dim, x, w, rstd: rstdR, dy, dx: dxR, dw: dwR, accumulateDw });
        // dx = a difference of two fp32 terms (cancellation can lose a few bits): 1e-5 norm-wise.
        expect(relError(dx, dxR)).toBeLessThanOrEqual(1e-5);
        expect(relError(dw, dwR)).toBeLessThanOrEqual(1e-6);  // double sums over rows, rounded once
      }
    }
  });

  test('ropeForward (angles in double, positions up to 1e5)', () => {
    for (const [rows, heads, headDim] of [[1, 1, 2], [7, 3, 16], [33, 4, 64], [5, 2, 130]]) {
      const positions = new Int32Array(rows).map((_, i) => (i * 7919) % 100003);
      const x = randn(rows * heads * headDim, rows + headDim);
      const out = new Float32Array(x.length), outR = new Float32Array(x.length);
      cuda.cudaRopeForward({ rows, heads, headDim, theta: 10000, positions, x, out });
      addon.ropeForward({ rows, heads, headDim, theta: 10000, positions, x, out: outR });
      // Both rotate in double and round once; CUDA's double sin/cos are within 2 ulp of glibc's.
      expect(relError(out, outR)).toBeLessThanOrEqual(1e-6);
    }
  });

  test('geluForward and geluBackward, erf and tanh', () => {
    const n = 10007, x = randn(n, 5, 3), dy = randn(n, 6);
    for (const approximate of ['erf', 'tanh'] as const) {
      const y = new Float32Array(n), yR = new Float32Array(n), dx = new Float32Array(n), dxR = new Float32Array(n);
      cuda.cudaGeluForward({ n, x, y, approximate });
      addon.geluForward({ n, x, y: yR, approximate });
      cuda.cudaGeluBackward({ n, x, dy, dx, approximate });
      addon.geluBackward({ n, x, dy, dx: dxR, approximate });
      // CUDA's erff/tanhf/expf (≤ 2-4 ulp) against the CPU's vectorised versions: a few 1e-7.
      expect(relError(y, yR)).toBeLessThanOrEqual(1e-5);
      expect(relError(dx, dxR)).toBeLessThanOrEqual(1e-5);
    }
  });

  test('crossEntropy with ignored rows', () => {
    for (const [rows, vocab] of [[1, 1], [5, 3], [37, 1001], [8, 50257]]) {
      const logits = randn(rows * vocab, rows + vocab, 2);
      const targets = new Int32Array(rows).map((_, i) => (i % 4 === 3 ? -1 : (i * 31) % vocab));
      const d = new Float32Array(rows * vocab), dR = new Float32Array(rows * vocab);
      const l = new Float32Array(rows), lR = new Float32Array(rows);
      const loss = cuda.cudaCrossEntropy({ rows, vocab, logits, targets, dlogits: d, losses: l, gradScale: 0.5 });
      const lossR = addon.crossEntropy({ rows, vocab, logits, targets, dlogits: dR, losses: lR, gradScale: 0.5 });
      // exp sums in double on both sides; expf (CUDA) vs the CPU's exp: ~1e-7 relative.
      expect(Math.abs(loss - lossR)).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(lossR)));
      expect(relError(l, lR)).toBeLessThanOrEqual(1e-6);
      expect(relError(d, dR)).toBeLessThanOrEqual(1e-5);
    }
  });

  test('adamwUpdate over several steps', () => {
    const n = 4099;
    const p = randn(n, 1), m = new Float32Array(n), v = new Float32Array(n);
    const pR = p.slice(), mR = m.slice(), vR = v.slice();
    for (let step = 1; step <= 5; step++) {
      const grad = randn(n, 10 + step);
      const h = { lr: 3e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.01, step, n };
      cuda.cudaAdamwUpdate({ ...h, param: p, grad, m, v });
      addon.adamwUpdate({ ...h, param: pR, grad, m: mR, v: vR });
    }
    // The same fp32 formula; FMA contraction and sqrtf rounding differ by an ulp per step.
    expect(relError(p, pR)).toBeLessThanOrEqual(1e-6);
    expect(relError(m, mR)).toBeLessThanOrEqual(1e-6);
    expect(relError(v, vR)).toBeLessThanOrEqual(1e-6);
  });
});

describeCuda('cudaAttentionForward (fused, online softmax) against the CPU', () => {
  // [E, H, G]: dense GQA, MoA with shared kv heads; dh: 1, 24 (< a warp), 64, 96, 130 (> 4 lanes' worth).
  const EHG: Array<[number, number, number]> = [[1, 1, 1], [1, 4, 2], [2, 4, 4], [3, 2, 1]];
  function run(B: number, tq: number, tk: number, [E, H, G]: [number, number, number], dh: number, seed: number): void {
    const s = { batch: B, tq, tk, nHeads: E * H, headsPerExpert: H, kvHeads: G, headDim: dh };
    const q = randn(B * tq * E * H * dh, seed), k = randn(B * tk * G * dh, seed + 1),
      v = randn(B * tk * G * dh, seed + 2);
    const args = (out: Float32Array, lse: Float32Array): AttentionForwardArgs => ({ ...s, q, k, v, out, lse });
    const out = new Float32Array(q.length), lse = new Float32Array(B * E * H * tq);
    const outR = new Float32Array(q.length), lseR = new Float32Array(B * E * H * tq);
    cuda.cudaAttentionForward(args(out, lse));
    addon.attentionForward(args(outR, lseR));
    // fp32 on both sides, different summation orders (CUDA: per 32-key tile with online rescaling by
    // exp(m_old − m_new); CPU: its own blocking). Each output is a convex combination of V rows, so the
    // error stays a few ulp × log(tk): 2e-5 norm-wise.
    const eo = relError(out, outR), el = relError(lse, lseR);
    if (!(eo <= 2e-5 && el <= 2e-5))
      throw new Error(`B=${B} tq=${tq} tk=${tk} EHG=${E},${H},${G} dh=${dh}: out ${eo}, lse ${el}`);
  }

  test('training shapes (tq = tk) and query suffixes (tq < tk), awkward sizes', () => {
    let seed = 1;
    for (const B of [1, 2])
      for (const T of [1, 7, 33, 100])
        for (const dh of [1, 24, 64, 130])
          for (const ehg of EHG)
            for (const tq of [...new Set([T, Math.ceil(T / 2)])]) run(B, tq, T, ehg, dh, (seed += 3));
  });

  test('decode: tq = 1 against a long cache', () => {
    let seed = 1000;
    for (const tk of [1, 31, 32, 33, 517])
      for (const dh of [64, 96, 128])
        for (const ehg of EHG) run(2, 1, tk, ehg, dh, (seed += 3));
  });
});
