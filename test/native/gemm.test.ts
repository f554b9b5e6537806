// GEMM family against the double references, on every ISA and thread count 1..4.
import {
  addon, expectNativeError, FP32_TOL, forEachBackend, fromBf16, randArray, relError, toBf16,
} from '../helpers';
import { expertWeightedGemmRef, gemmRef, groupedGemmRef, groupedWeightGradRef } from '../reference/gemm';

// Sizes: 1, primes, non-multiples of every vector width (8, 16) and micro-tile (14x32, 6x16, 4x16),
// and sizes that cross the cache blocks (kc = 256, nc = 256, mc = 168).
const SHAPES: Array<[number, number, number]> = [
  [1, 1, 1], [1, 17, 5], [7, 1, 13], [13, 31, 7], [14, 32, 16], [15, 33, 17], [29, 47, 61],
  [97, 3, 101], [170, 40, 260], [37, 300, 31], [200, 270, 9],
];
// On CUDA also sizes at and across the 128x128x32 block tile.
const TILE_SHAPES: Array<[number, number, number]> = [[16, 16, 16], [128, 128, 32], [129, 130, 33], [257, 131, 70]];

forEachBackend((be) => describe('gemm', () => {
  // CPU: fp32 against the double reference. CUDA: fp32 A and B are rounded to bf16 for the tensor
  // cores (2^-9 relative per input); over a K-long dot product of random-sign terms the norm-wise error
  // stays a few × 2^-9 (~3e-3 seen in analysis), so 1.5e-2 keeps a 5x margin and still catches any
  // indexing bug (those give O(1) errors). With a bf16 B only A is rounded: the same bound.
  const tol = be.tol({ cpu: FP32_TOL, cuda: 1.5e-2 });

  test('matches the reference for all layouts, awkward sizes, ISAs and thread counts', () => {
    be.forEachConfig((isa, threads) => {
      let seed = 1;
      for (const [m, n, k] of be.device === 'cpu' ? SHAPES : [...SHAPES, ...TILE_SHAPES])
        for (const transA of [false, true])
          for (const transB of [false, true]) {
            const a = randArray(m * k, seed++), b = randArray(k * n, seed++);
            const c = new Float32Array(m * n);
            be.addon.gemm({ transA, transB, m, n, k, a, b, c });
            const ref = gemmRef({ transA, transB, m, n, k, a, b, c: new Float32Array(m * n) });
            const err = relError(c, ref);
            if (!(err <= tol))
              throw new Error(`${isa} t=${threads} ${m}x${n}x${k} tA=${transA} tB=${transB}: rel err ${err}`);
          }
    });
  });

  test('alpha, beta and leading dimensions larger than the rows (the gaps of C untouched)', () => {
    be.forEachConfig(() => {
      const m = 19, n = 23, k = 29, lda = 31, ldb = 37, ldc = 41;
      const a = randArray(m * lda, 11), b = randArray(n * ldb, 12), c = randArray(m * ldc, 13), c0 = c.slice();
      const ref = gemmRef({ transB: true, m, n, k, alpha: 0.5, beta: -2, a, lda, b, ldb, c, ldc });
      be.addon.gemm({ transB: true, m, n, k, alpha: 0.5, beta: -2, a, lda, b, ldb, c, ldc });
      expect(relError(c, ref)).toBeLessThanOrEqual(tol);
      for (let i = 0; i < m; i++)
        for (let j = n; j < ldc && i * ldc + j < c.length; j++) expect(c[i * ldc + j]).toBe(c0[i * ldc + j]);
    }, [1, 3]);
  });

  test('beta = 0 never reads C (NaN in C does not leak), K = 0 gives beta·C', () => {
    const m = 9, n = 35, k = 11;
    const a = randArray(m * k, 1), b = randArray(k * n, 2);
    const c = new Float32Array(m * n).fill(NaN);
    be.addon.gemm({ m, n, k, a, b, c });
    expect(relError(c, gemmRef({ m, n, k, a, b, c: new Float32Array(m * n) }))).toBeLessThanOrEqual(tol);
    const c2 = new Float32Array(m * n).fill(3);
    be.addon.gemm({ m, n, k: 0, a: new Float32Array(0), b: new Float32Array(0), c: c2, beta: 0.5 });
    expect(Array.from(c2).every((v) => v === 1.5)).toBe(true);
  });

  test('m = 0 or n = 0: nothing is written (C buffers longer than needed keep every sentinel)', () => {
    be.forEachConfig(() => {
      for (const [m, n] of [[0, 5], [5, 0], [0, 0]]) {
        for (const transB of [false, true]) {
          const k = 3, a = randArray(Math.max(m, 1) * k, 21), b = randArray(k * Math.max(n, 1), 22);
          const c = new Float32Array(16).fill(7);
          be.addon.gemm({ transB, m, n, k, a, b, c, beta: 0 });
          expect({ m, n, transB, c: Array.from(c) }).toEqual({ m, n, transB, c: new Array(16).fill(7) });
          const cb = new Float32Array(16).fill(7);
          be.addon.gemm({ transB: true, m, n, k, a, b: toBf16(b), c: cb, beta: 0 });
          expect({ m, n, bf16: true, c: Array.from(cb) }).toEqual({ m, n, bf16: true, c: new Array(16).fill(7) });
        }
      }
    }, [1, 2]);
  });

  test('bf16 weights equal fp32 GEMM on the bf16-rounded weights', () => {
    be.forEachConfig(() => {
      const m = 21, n = 45, k = 67;
      const a = randArray(m * k, 5), w = randArray(n * k, 6);
      const wb = toBf16(w);
      const c = new Float32Array(m * n);
      be.addon.gemm({ transB: true, m, n, k, a, b: wb, c });
      const ref = gemmRef({ transB: true, m, n, k, a, b: fromBf16(wb), c: new Float32Array(m * n) });
      expect(relError(c, ref)).toBeLessThanOrEqual(tol);
    }, [1, 2]);
  });

  test('async variant gives the same result', async () => {
    const m = 64, n = 48, k = 80;
    const a = randArray(m * k, 7), b = randArray(k * n, 8);
    const c1 = new Float32Array(m * n), c2 = new Float32Array(m * n);
    be.addon.gemm({ m, n, k, a, b, c: c1 });
    await be.addon.gemmAsync({ m, n, k, a, b, c: c2 });
    expect(c2).toEqual(c1);
  });
}));

function offsetsFrom(sizes: number[]): Int32Array {
  const off = new Int32Array(sizes.length + 1);
  sizes.forEach((s, e) => (off[e + 1] = off[e] + s));
  return off;
}

const GROUPINGS: Record<string, number[]> = {
  'one expert': [37],
  'empty groups': [0, 5, 0, 0, 17, 1, 0],
  'all empty': [0, 0, 0],
  'skewed': [120, 1, 3, 0, 40, 2, 15, 0, 9],
  'primes': [2, 3, 5, 7, 11, 13, 17],
};
// On CUDA also groups at and across the 128-row tiles.
const TILE_GROUPINGS: Record<string, number[]> = { 'tiles': [129, 0, 128, 1, 0, 0, 31, 256] };

forEachBackend((be) => describe('grouped expert GEMM', () => {
  // CUDA: the same bf16 tensor-core GEMM (grouped, weight gradient, one GEMM per expert for the
  // weighted form): the bf16 bound of gemm above.
  const tol = be.tol({ cpu: FP32_TOL, cuda: 1.5e-2 });

  test('forward (W [E,n,k] and [E,k,n]) matches per-expert reference, with empty groups', () => {
    be.forEachConfig((isa, threads) => {
      let seed = 100;
      for (const [name, sizes] of Object.entries(be.device === 'cpu' ? GROUPINGS : { ...GROUPINGS, ...TILE_GROUPINGS }))
        for (const [n, k] of [[1, 1], [33, 19], [64, 70]])
          for (const transW of [true, false]) {
            const off = offsetsFrom(sizes), E = sizes.length, rows = off[E];
            const x = randArray(rows * k, seed++), w = randArray(E * n * k, seed++);
            const y = new Float32Array(rows * n).fill(NaN);
            be.addon.groupedGemm({ experts: E, offsets: off, x, w, n, k, transW, y });
            const err = relError(y, groupedGemmRef(off, x, w, n, k, transW));
            if (!(err <= tol)) throw new Error(`${isa} t=${threads} ${name} n=${n} k=${k}: ${err}`);
          }
    });
  });

  test('bf16 expert weights', () => {
    const sizes = [3, 0, 9, 4], off = offsetsFrom(sizes), n = 20, k = 36, E = 4;
    const x = randArray(off[E] * k, 1), w = randArray(E * n * k, 2), wb = toBf16(w);
    const y = new Float32Array(off[E] * n);
    be.addon.groupedGemm({ experts: E, offsets: off, x, w: wb, n, k, y });
    expect(relError(y, groupedGemmRef(off, x, fromBf16(wb), n, k))).toBeLessThanOrEqual(tol);
  });

  test('weight gradient, overwrite and accumulate; experts without rows get zeros', () => {
    be.forEachConfig(() => {
      const sizes = [4, 0, 13, 1, 0, 30], off = offsetsFrom(sizes), E = sizes.length, n = 17, k = 23;
      const rows = off[E];
      const dy = randArray(rows * n, 3), x = randArray(rows * k, 4);
      const dw = new Float32Array(E * n * k).fill(NaN);
      be.addon.groupedGemmWeightGrad({ experts: E, offsets: off, dy, x, n, k, dw });
      const ref = groupedWeightGradRef(off, dy, x, n, k);
      expect(relError(dw, ref)).toBeLessThanOrEqual(tol);
      be.addon.groupedGemmWeightGrad({ experts: E, offsets: off, dy, x, n, k, dw, beta: 1 });
      expect(relError(dw, ref.map((v) => 2 * v))).toBeLessThanOrEqual(tol);
    }, [1, 4]);
  });

  test('dense-training weighted form, shared input and per-expert inputs', () => {
    be.forEachConfig(() => {
      for (const [t, E, n, k] of [[1, 1, 1, 1], [23, 4, 19, 29], [50, 7, 33, 70]]) {
        const s = randArray(t * E, 9).map(Math.abs);
        const w = randArray(E * n * k, 10);
        // shared x [t, k]
        const xs = randArray(t * k, 11);
        const y1 = new Float32Array(t * n);
        be.addon.expertWeightedGemm({ t, experts: E, n, k, x: xs, w, s, y: y1 });
        expect(relError(y1, expertWeightedGemmRef(t, E, n, k, xs, k, 0, w, s))).toBeLessThanOrEqual(tol);
        // per-expert x laid out [t, E, k] (row stride E·k, expert stride k)
        const xe = randArray(t * E * k, 12);
        const y2 = new Float32Array(t * n);
        be.addon.expertWeightedGemm({ t, experts: E, n, k, x: xe, ldx: E * k, xExpertStride: k, w, s, y: y2 });
        expect(relError(y2, expertWeightedGemmRef(t, E, n, k, xe, E * k, k, w, s))).toBeLessThanOrEqual(tol);
      }
    }, [1, 2]);
  });
}));

describe('GEMM bad arguments are JavaScript errors naming the argument', () => {
  const ok = () => ({ m: 2, n: 3, k: 4, a: new Float32Array(8), b: new Float32Array(12), c: new Float32Array(6) });
  test.each([
    ['no argument object', () => (addon.gemm as unknown as () => void)(), 'TypeError', /object of named arguments/],
    ['missing m', () => addon.gemm({ ...ok(), m: undefined as unknown as number }), 'TypeError', /gemm: m is missing/],
    ['m not integer', () => addon.gemm({ ...ok(), m: 1.5 }), 'TypeError', /gemm: m must be an integer/],
    ['negative n', () => addon.gemm({ ...ok(), n: -1 }), 'RangeError', /gemm: n must be in/],
    ['a wrong type', () => addon.gemm({ ...ok(), a: [1, 2] as unknown as Float32Array }), 'TypeError',
      /gemm: a must be a Float32Array/],
    ['a too short', () => addon.gemm({ ...ok(), a: new Float32Array(7) }), 'RangeError',
      /gemm: a has 7 elements but needs at least 8/],
    ['c too short', () => addon.gemm({ ...ok(), c: new Float32Array(5) }), 'RangeError', /gemm: c has 5/],
    ['b Int32Array', () => addon.gemm({ ...ok(), b: new Int32Array(12) as unknown as Float32Array }), 'TypeError',
      /gemm: b must be a Float32Array or a Uint16Array/],
    ['lda < k', () => addon.gemm({ ...ok(), lda: 3 }), 'RangeError', /leading dimension 3 is smaller/],
    ['NaN alpha', () => addon.gemm({ ...ok(), alpha: NaN }), 'RangeError', /gemm: alpha must be finite/],
    ['huge sizes overflow', () => addon.gemm({ ...ok(), m: 2 ** 31 - 1, k: 2 ** 31 - 1, lda: 2 ** 31 - 1 }),
      'RangeError', /gemm: a/],
    ['offsets not starting at 0', () => addon.groupedGemm({ experts: 2, offsets: Int32Array.of(1, 2, 3),
      x: new Float32Array(9), w: new Float32Array(8), n: 2, k: 2, y: new Float32Array(9) }), 'RangeError',
    /groupedGemm: offsets\[0\] must be 0/],
    ['offsets decreasing', () => addon.groupedGemm({ experts: 2, offsets: Int32Array.of(0, 3, 2),
      x: new Float32Array(9), w: new Float32Array(8), n: 2, k: 2, y: new Float32Array(9) }), 'RangeError',
    /non-decreasing/],
    ['offsets too short', () => addon.groupedGemm({ experts: 3, offsets: Int32Array.of(0, 1, 2), x: new Float32Array(9),
      w: new Float32Array(12), n: 2, k: 2, y: new Float32Array(9) }), 'RangeError',
    /offsets has 3 elements but needs at least 4/],
    ['zero experts', () => addon.groupedGemm({ experts: 0, offsets: Int32Array.of(0), x: new Float32Array(0),
      w: new Float32Array(0), n: 2, k: 2, y: new Float32Array(0) }), 'RangeError', /experts must be in/],
    ['weighted s too short', () => addon.expertWeightedGemm({ t: 3, experts: 2, n: 2, k: 2, x: new Float32Array(6),
      w: new Float32Array(8), s: new Float32Array(5), y: new Float32Array(6) }), 'RangeError',
    /expertWeightedGemm: s has 5/],
  ] as const)('%s', (_name, call, type, message) => {
    expectNativeError(call, type, message);
  });

  test('device: an unknown one is a RangeError; cuda without a usable GPU an Error saying why', () => {
    expectNativeError(() => addon.gemm({ ...ok(), device: 'tpu' }), 'RangeError',
      /^gemm: device: unknown device "tpu" \(expected cpu, cuda or cuda:N\)/);
    expectNativeError(() => addon.gemm({ ...ok(), a: new Float32Array(1), device: 'cuda' }), 'RangeError',
      /gemm: a has 1 elements/);  // the argument checks come first
    const info = addon.cudaInfo();
    if (!info.available)
      expectNativeError(() => addon.gemm({ ...ok(), device: 'cuda' }), 'Error',
        /^gemm: device cuda:0 is not usable: .+/);
  });

  test('async variant rejects bad arguments synchronously with the same error', () => {
    expectNativeError(() => addon.gemmAsync({ ...ok(), a: new Float32Array(1) }), 'RangeError',
      /gemm: a has 1 elements/);
  });
});
