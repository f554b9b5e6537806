// The OpenBLAS peer of `dsmoe bench kernels` (loaded with dlopen only when a benchmark asks): its
// sgemm binding against the double reference, and the benchmark's use of it (every row carries
// OpenBLAS's GFLOP/s and ours / theirs). Runs only where OpenBLAS is installed; elsewhere those
// tests are skipped with the reason in their title, and what is checked is the clear error.
import { runKernelBench } from '../../src/bench/kernels';
import { gemmRef } from '../reference/gemm';
import { addon, expectNativeError, FP32_TOL, randArray, relError } from '../helpers';

const ob = addon.openblasLoad();
const why = 'OpenBLAS is not installed here (no libopenblas.so.0; apt-get install libopenblas0 runs them)';
const withPeer = (title: string) => (ob.loaded ? test : test.skip)(ob.loaded ? title : `${title} (skipped: ${why})`,
  () => {});
if (!ob.loaded) console.log(`bench kernels peer tests skipped: ${why}`);

describe('bench kernels: the OpenBLAS peer', () => {
  if (ob.loaded) {
    test('openblasSgemm (row-major; transA, transB) = the double reference', () => {
      expect(ob.library).toMatch(/libopenblas/);
      const m = 37, n = 29, k = 41;
      for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]]) {
        const a = randArray(m * k, 1), b = randArray(k * n, 2), c = new Float32Array(m * n).fill(NaN);
        for (const threads of [1, 2]) {
          addon.openblasSgemm({ threads, transA, transB, m, n, k, a, b, c });
          const ref = gemmRef({ transA, transB, m, n, k, a, b, c: new Float32Array(m * n) });
          expect({ transA, transB, threads, ok: relError(c, ref) <= FP32_TOL }).toEqual({ transA, transB, threads,
            ok: true });
        }
      }
    });

    test('bench kernels --quick with the peer: every row has OpenBLAS GFLOP/s and ours/theirs', () => {
      const r = runKernelBench({ threads: [1], quick: true });
      expect(r.openblas).toMatchObject({ loaded: true, library: ob.library });
      expect(r.square.length).toBeGreaterThan(0);
      for (const s of r.square) {
        expect(s.openblasGflops).toBeGreaterThan(0);
        expect(s.vsOpenblas).toBeCloseTo(s.dsmoeGflops / s.openblasGflops!, 12);
      }
      for (const row of r.moe) expect(row.openblasLoopGflops).toBeGreaterThan(0);
      // --no-peer leaves it out
      const none = runKernelBench({ threads: [1], quick: true, noPeer: true });
      expect(none.openblas).toMatchObject({ loaded: false, note: 'skipped (--no-peer)' });
      expect(none.square.every((s) => s.openblasGflops === null && s.vsOpenblas === null)).toBe(true);
    });
  } else {
    withPeer('openblasSgemm (row-major; transA, transB) = the double reference');
    withPeer('bench kernels --quick with the peer: every row has OpenBLAS GFLOP/s and ours/theirs');
    test('without OpenBLAS: openblasLoad says so, and openblasSgemm is a clear error', () => {
      expect(ob.loaded).toBe(false);
      const a = new Float32Array(4);
      expectNativeError(() => addon.openblasSgemm({ threads: 1, m: 2, n: 2, k: 2, a, b: a, c: new Float32Array(4) }),
        'TypeError',
        /OpenBLAS is not loaded/);
    });
  }
});
