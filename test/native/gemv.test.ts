// The decode GEMV (native/kernels/cpu/gemv*.cc) against the grouped-GEMM reference on awkward sizes:
// K below, at and across the 64-wide blocks of the AVX-512 kernels, empty expert groups, 1..6 rows
// per expert (the kernels block 1–4 activation rows), every ISA and thread counts 1..4, fp32 and
// bf16 weights, with the AVX512-BF16 dot product and with the widening fallback.
import { addon, expectNativeError, FP32_TOL, forEachConfig, fromBf16, randArray, relError, toBf16 } from '../helpers';
import { groupedGemmRef } from '../reference/gemm';

function offsetsFrom(sizes: number[]): Int32Array {
  const off = new Int32Array(sizes.length + 1);
  sizes.forEach((s, e) => (off[e + 1] = off[e] + s));
  return off;
}

const GROUPS = [[1], [0, 3, 0, 1], [2, 0, 5, 6, 1], [4, 4, 0]];
const KS = [1, 2, 31, 63, 64, 65, 130, 257];
const NS = [1, 3, 17];

describe('expert GEMV (decode)', () => {
  test('fp32 weights match the reference for awkward sizes, ISAs and thread counts', () => {
    forEachConfig((isa, threads) => {
      let seed = 1;
      for (const sizes of GROUPS)
        for (const k of KS)
          for (const n of NS) {
            const off = offsetsFrom(sizes), E = sizes.length, rows = off[E];
            const x = randArray(rows * k, seed++), w = randArray(E * n * k, seed++);
            const y = new Float32Array(rows * n).fill(NaN);
            addon.expertGemv({ experts: E, offsets: off, x, w, n, k, y });
            const err = relError(y, groupedGemmRef(off, x, w, n, k));
            if (!(err <= FP32_TOL)) throw new Error(`${isa} t=${threads} groups=${sizes} n=${n} k=${k}: ${err}`);
          }
    });
  });

  test('bf16 weights: the widening path is exact on the rounded weights; the native dot also rounds x', () => {
    const wasNative = addon.setBf16Dot({ enabled: true });
    try {
      for (const native of [false, true]) {
        const active = addon.setBf16Dot({ enabled: native });
        if (native && !active) continue; // this CPU has no AVX512-BF16
        forEachConfig((isa, threads) => {
          let seed = 100;
          for (const sizes of GROUPS)
            for (const k of KS) {
              const n = 17, off = offsetsFrom(sizes), E = sizes.length, rows = off[E];
              const x = randArray(rows * k, seed++), wb = toBf16(randArray(E * n * k, seed++));
              const y = new Float32Array(rows * n).fill(NaN);
              addon.expertGemv({ experts: E, offsets: off, x, w: wb, n, k, y });
              const usesDot = addon.setBf16Dot({ enabled: native }) && isa === 'avx512';
              // vdpbf16ps multiplies bf16(x) by the bf16 weights exactly and sums in fp32, so the
              // reference rounds x too; the fallback uses x as given. Either way only fp32 summation
              // error remains: FP32_TOL.
              const xr = usesDot ? fromBf16(toBf16(x)) : x;
              const err = relError(y, groupedGemmRef(off, xr, fromBf16(wb), n, k));
              if (!(err <= FP32_TOL)) throw new Error(`native=${native} ${isa} t=${threads} groups=${sizes} k=${k}: ` +
                `${err}`);
            }
        }, [1, 3]);
      }
    } finally {
      addon.setBf16Dot({ enabled: wasNative });
    }
  });

  test('bad arguments name the argument', () => {
    const base = { experts: 2, offsets: Int32Array.of(0, 1, 2), x: new Float32Array(6), w: new Float32Array(12), n: 2,
      k: 3, y: new Float32Array(4) };
    expectNativeError(() => addon.expertGemv({ ...base, offsets: Int32Array.of(0, 2, 1) }), 'RangeError',
      /expertGemv: offsets must be non-decreasing/);
    expectNativeError(() => addon.expertGemv({ ...base, w: new Float32Array(11) }), 'RangeError',
      /expertGemv: w has 11 elements but needs at least 12/);
    expectNativeError(() => addon.expertGemv({ ...base, transW: false } as never), 'RangeError', /transW true/);
  });
});
