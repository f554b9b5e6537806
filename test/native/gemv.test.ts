// The decode GEMV (Backend::gemv_batch: on the CPU native/kernels/cpu/gemv*.cc) on every backend
// (forEachBackend) against the grouped-GEMM reference on awkward sizes: K below, at and across the
// 64-wide blocks of the AVX-512 kernels, empty expert groups, 1..6 rows per expert (the kernels block
// 1–4 activation rows), fp32 and bf16 weights. The CPU row adds every ISA and thread counts 1..4, and
// the AVX512-BF16 dot product against the widening fallback.
import { addon, expectNativeError, FP32_TOL, forEachBackend, fromBf16, randArray, relError, toBf16 } from '../helpers';
import { groupedGemmRef } from '../reference/gemm';

function offsetsFrom(sizes: number[]): Int32Array {
  const off = new Int32Array(sizes.length + 1);
  sizes.forEach((s, e) => (off[e + 1] = off[e] + s));
  return off;
}

const GROUPS = [[1], [0, 3, 0, 1], [2, 0, 5, 6, 1], [4, 4, 0]];
const KS = [1, 2, 31, 63, 64, 65, 130, 257];
const NS = [1, 3, 17];

forEachBackend((be) => describe('expert GEMV (decode)', () => {
  // CUDA runs each job as a grouped GEMM on the tensor cores, x and fp32 weights rounded to bf16
  // (native/cuda/README.md): the GEMM tolerance of gemm.test.ts.
  const tol = be.tol({ cpu: FP32_TOL, cuda: 1.5e-2 });

  test('fp32 weights match the reference for awkward sizes, ISAs and thread counts', () => {
    be.forEachConfig((isa, threads) => {
      let seed = 1;
      for (const sizes of GROUPS)
        for (const k of KS)
          for (const n of NS) {
            const off = offsetsFrom(sizes), E = sizes.length, rows = off[E];
            const x = randArray(rows * k, seed++), w = randArray(E * n * k, seed++);
            const y = new Float32Array(rows * n).fill(NaN);
            be.addon.expertGemv({ experts: E, offsets: off, x, w, n, k, y });
            const err = relError(y, groupedGemmRef(off, x, w, n, k));
            if (!(err <= tol)) throw new Error(`${isa} t=${threads} groups=${sizes} n=${n} k=${k}: ${err}`);
          }
    });
  });

  test('bf16 weights: the widening path is exact on the rounded weights; the native dot also rounds x', () => {
    // setBf16Dot is the CPU kernels' switch (the plain addon: it takes no device); other backends run once.
    const wasNative = addon.setBf16Dot({ enabled: true });
    try {
      for (const native of be.device === 'cpu' ? [false, true] : [false]) {
        const active = addon.setBf16Dot({ enabled: native });
        if (native && !active) continue; // this CPU has no AVX512-BF16
        be.forEachConfig((isa, threads) => {
          let seed = 100;
          for (const sizes of GROUPS)
            for (const k of KS) {
              const n = 17, off = offsetsFrom(sizes), E = sizes.length, rows = off[E];
              const x = randArray(rows * k, seed++), wb = toBf16(randArray(E * n * k, seed++));
              const y = new Float32Array(rows * n).fill(NaN);
              be.addon.expertGemv({ experts: E, offsets: off, x, w: wb, n, k, y });
              const usesDot = be.device === 'cpu' && addon.setBf16Dot({ enabled: native }) && isa === 'avx512';
              // vdpbf16ps multiplies bf16(x) by the bf16 weights exactly and sums in fp32, so the
              // reference rounds x too; the fallback uses x as given. Either way only fp32 summation
              // error remains: FP32_TOL (CUDA: the GEMM tolerance, x rounded to bf16 on the tensor cores).
              const xr = usesDot ? fromBf16(toBf16(x)) : x;
              const err = relError(y, groupedGemmRef(off, xr, fromBf16(wb), n, k));
              if (!(err <= tol)) throw new Error(`native=${native} ${isa} t=${threads} groups=${sizes} k=${k}: ` +
                `${err}`);
            }
        }, [1, 3]);
      }
    } finally {
      addon.setBf16Dot({ enabled: wasNative });
    }
  });

  test('async variant gives the same result; y rows past the groups untouched', async () => {
    const off = offsetsFrom([2, 0, 3]), n = 5, k = 70, x = randArray(5 * k, 7), w = randArray(3 * n * k, 8);
    const a = new Float32Array(5 * n + 4).fill(NaN), b = new Float32Array(5 * n + 4).fill(NaN);
    be.addon.expertGemv({ experts: 3, offsets: off, x, w, n, k, y: a });
    await be.addon.expertGemvAsync({ experts: 3, offsets: off, x, w, n, k, y: b });
    expect(relError(b.subarray(0, 5 * n), a.subarray(0, 5 * n))).toBe(0);
    expect(Array.from(a.subarray(5 * n)).every(Number.isNaN)).toBe(true);
  });
}));

describe('expert GEMV bad arguments', () => {
  test('bad arguments name the argument', () => {
    const base = { experts: 2, offsets: Int32Array.of(0, 1, 2), x: new Float32Array(6), w: new Float32Array(12), n: 2,
      k: 3, y: new Float32Array(4) };
    expectNativeError(() => addon.expertGemv({ ...base, offsets: Int32Array.of(0, 2, 1) }), 'RangeError',
      /expertGemv: offsets must be non-decreasing/);
    expectNativeError(() => addon.expertGemv({ ...base, w: new Float32Array(11) }), 'RangeError',
      /expertGemv: w has 11 elements but needs at least 12/);
    expectNativeError(() => addon.expertGemv({ ...base, transW: false } as never), 'RangeError', /transW true/);
    expectNativeError(() => addon.expertGemv({ ...base, device: 'gpu' }), 'RangeError',
      /^expertGemv: device: unknown device "gpu"/);
    if (!addon.cudaInfo().available)
      expectNativeError(() => addon.expertGemv({ ...base, device: 'cuda' }), 'Error',
        /^expertGemv: device cuda:0 is not usable/);
  });
});
