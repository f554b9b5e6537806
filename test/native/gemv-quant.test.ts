// The decode GEMV over quantized weights (native/kernels/cpu/gemv.cc, gemv_quant_avx512.cc; formats in
// native/kernels/cpu/quant.h), dequantizeRows and the fp16 conversions (native/core/half.h).
//   I8: int8 q [rows, k] + fp32 scale [rows]:                  w = q · scale[row]
//   Q4: bytes [rows, k/2] (column 2c in the low nibble, 2c+1 in the high one) + fp16 scale [rows, k/32]:
//       w = (code − 8) · scale[row, col/32]; k a multiple of 32.
// Weights are quantized by the converter's quantizers (src/checkpoint/quant.ts); the GEMV is compared
// with a double-precision reference over the DEQUANTIZED weights (each an fp32 product, as the kernels
// form it): only fp32 summation error remains, so the fp32 bar FP32_TOL = 1e-5 (norm-wise relative error, relError)
// applies. Awkward sizes (k around the kernels' 16/32-column steps, Q4 around their 16-group scale
// chunks), empty experts and 1..6 rows per expert (blocks of 1–4 activation rows), every ISA and
// thread counts 1..4. With AVX-512 VNNI (and k a multiple of 64) decode rounds the activations to int8
// (gemv_quant_vnni.cc); those rows are checked against the reference over the same rounded activations
// (FP32_TOL) and within the rounding bound of the exact ones. Quantized weights have no CUDA kernels
// (native/cuda/README.md), so there is no CUDA row.
import { addon, expectNativeError, FP32_TOL, forEachConfig, fromBf16, randArray, relError, rng, toBf16 }
  from '../helpers';
import { groupedGemmRef } from '../reference/gemm';
import { quantizeI8 as convertI8, quantizeQ4 as convertQ4 } from '../../src/checkpoint/quant';

// ---- fp16, written independently of the native bit arithmetic (exact double arithmetic) ----------------

function halfToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function roundHalfEven(v: number): number {
  const f = Math.floor(v), d = v - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
}

function f32ToHalf(f: number): number {
  if (Number.isNaN(f)) return 0x7e00;
  const sign = f < 0 || Object.is(f, -0) ? 0x8000 : 0, a = Math.abs(f);
  if (a === Infinity) return sign | 0x7c00;
  if (a < 2 ** -14) return sign | roundHalfEven(a * 2 ** 24); // subnormal (1024 = the smallest normal)
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  let q = roundHalfEven((a / 2 ** e - 1) * 1024);
  if (q === 1024) { q = 0; e++; }
  if (e > 15) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | q;
}

// ---- the quantizers (the converter's) and a reference dequantizer written here ---------------------------

interface Quantized { dtype: 'I8' | 'Q4'; w: Int8Array | Uint8Array; scales: Float32Array | Uint16Array }

/**
 * The converter's quantizers (src/checkpoint/quant.ts: what `dsmoe convert` writes). Row 0 of an int8
 * matrix also gets the codes −128 and 127, valid in the format though the converter never writes −128.
 */
function quantizeI8(w: Float32Array, rows: number, k: number): Quantized {
  const { q, scale } = convertI8(w, rows, k);
  if (rows > 0 && k > 1) { q[0] = -128; q[1] = 127; }
  return { dtype: 'I8', w: q, scales: scale };
}

function quantizeQ4(w: Float32Array, rows: number, k: number): Quantized {
  const { q, scale } = convertQ4(w, rows, k);
  return { dtype: 'Q4', w: q, scales: scale };
}

/** The dequantized weights [rows, k], each one fp32 product. */
function dequantize(qz: Quantized, rows: number, k: number): Float32Array {
  const out = new Float32Array(rows * k);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < k; j++)
      if (qz.dtype === 'I8') out[r * k + j] = qz.w[r * k + j] * qz.scales[r];
      else {
        const b = qz.w[(r * k + j) >> 1], code = j % 2 === 0 ? b & 0xf : b >> 4;
        out[r * k + j] = (code - 8) * halfToF32(qz.scales[r * (k / 32) + (j >> 5)]);
      }
  return out;
}

function quantize(dtype: 'I8' | 'Q4', w: Float32Array, rows: number, k: number): Quantized {
  return dtype === 'I8' ? quantizeI8(w, rows, k) : quantizeQ4(w, rows, k);
}

/** Random weights whose rows differ in scale (1..5×), one row all zero, a few rows 1e-6× (fp16 subnormal d). */
function weights(rows: number, k: number, seed: number): Float32Array {
  const w = randArray(rows * k, seed);
  for (let r = 0; r < rows; r++) {
    const f = r === 1 ? 0 : r % 7 === 3 ? 1e-6 : 1 + (r % 5);
    for (let j = 0; j < k; j++) w[r * k + j] *= f;
  }
  return w;
}

function offsetsFrom(sizes: number[]): Int32Array {
  const off = new Int32Array(sizes.length + 1);
  sizes.forEach((s, e) => (off[e + 1] = off[e] + s));
  return off;
}

const GROUPS = [[1], [0, 3, 0, 1], [2, 0, 5, 6, 1], [4, 4, 0]];
// Q4 under VNNI reads 128-column superblocks, 16 groups of scales at a time, and a last 64-column block:
// k = 64, 128, 192, 576 (4 superblocks + a block), 1088 (one whole chunk of 16 groups and more).
const KS = { I8: [1, 31, 63, 64, 65, 257], Q4: [32, 64, 96, 128, 192, 288, 544, 576, 1088] };
const NS = [1, 3, 17];

interface Case {
  label: string; E: number; n: number; k: number; off: Int32Array; x: Float32Array; qz: Quantized; ref: Float64Array;
}

function makeCases(dtype: 'I8' | 'Q4'): Case[] {
  const cases: Case[] = [];
  let seed = dtype === 'I8' ? 1000 : 2000;
  const add = (sizes: number[], n: number, k: number) => {
    const off = offsetsFrom(sizes), E = sizes.length, rows = off[E];
    const x = randArray(rows * k, seed++), qz = quantize(dtype, weights(E * n, k, seed++), E * n, k);
    const ref = groupedGemmRef(off, x, dequantize(qz, E * n, k), n, k);
    cases.push({ label: `${dtype} groups=${sizes} n=${n} k=${k}`, E, n, k, off, x, qz, ref });
  };
  for (const sizes of GROUPS)
    for (const k of KS[dtype])
      for (const n of NS) add(sizes, n, k);
  // Several 32 KiB weight blocks per expert (tasks), and row counts past the kernels' 4-row blocks.
  add([3, 0, 1], dtype === 'I8' ? 300 : 601, dtype === 'I8' ? 257 : 288);
  return cases;
}

/** Runs fn with the VNNI int8 dot product forbidden (the fp32 kernels) or allowed; restores it. */
function withInt8Dot<T>(allowed: boolean, fn: () => T): T {
  addon.setInt8Dot({ enabled: allowed });
  try { return fn(); } finally { addon.setInt8Dot({ enabled: true }); }
}

// ---- activations rounded to int8 as quantize_activations does (native/kernels/cpu/quant.h), in fp32 steps --

/** x as the VNNI path sees it: each value q · s (I8: s per 64 columns; Q4: per row), and those scales. */
function quantizedX(dtype: 'I8' | 'Q4', x: Float32Array, rows: number, k: number):
{ xq: Float64Array; s: Float64Array } {
  const f = Math.fround, xq = new Float64Array(rows * k), s = new Float64Array(rows * k);
  const block = dtype === 'I8' ? 64 : k;
  for (let i = 0; i < rows; i++)
    for (let b = 0; b < k; b += block) {
      let amax = 0;
      for (let j = b; j < b + block; j++) amax = Math.max(amax, Math.abs(x[i * k + j]));
      const inv = amax > 0 ? f(127 / amax) : 0, scale = f(amax / 127);
      for (let j = b; j < b + block; j++) {
        const q = Math.min(127, Math.max(-127, roundHalfEven(f(x[i * k + j] * inv))));
        xq[i * k + j] = q * scale;
        s[i * k + j] = scale;
      }
    }
  return { xq, s };
}

describe('expert GEMV (decode) over quantized weights', () => {
  for (const dtype of ['I8', 'Q4'] as const)
    test(`${dtype} weights, fp32 activations: match the reference over the dequantized weights (sizes, ISAs, ` +
      'threads)', () => {
      const cases = makeCases(dtype);
      withInt8Dot(false, () => forEachConfig((isa, threads) => {
        for (const c of cases) {
          const y = new Float32Array(c.off[c.E] * c.n).fill(NaN);
          addon.expertGemv({ experts: c.E, offsets: c.off, x: c.x, w: c.qz.w, scales: c.qz.scales, n: c.n, k: c.k, y });
          const err = relError(y, c.ref);
          if (!(err <= FP32_TOL)) throw new Error(`${isa} t=${threads} ${c.label}: ${err}`);
        }
      }));
    });

  // The VNNI path (k a multiple of 64, AVX-512 VNNI): integer products of the weight codes and the
  // activations rounded to int8. Against the reference over the SAME rounded activations only fp32
  // summation error remains (FP32_TOL); against the exact fp32 activations each output may differ by
  // at most the rounding bound Σ_j |w_j| · s_j / 2 (s_j: x_j's scale), plus that fp32 slack.
  for (const dtype of ['I8', 'Q4'] as const)
    test(`${dtype} weights, int8 activations (VNNI): the reference over the rounded activations, and within ` +
      'the rounding bound of the exact one', () => {
      if (!addon.runtimeInfo().avx512vnni) {
        console.log('VNNI rows skipped: this CPU has no AVX-512 VNNI');
        return;
      }
      const cases = makeCases(dtype).filter((c) => c.k % 64 === 0);
      expect(cases.length).toBeGreaterThan(10);
      let worst = 0;
      withInt8Dot(true, () => forEachConfig((isa, threads) => {
        for (const c of cases) {
          const P = c.off[c.E], y = new Float32Array(P * c.n).fill(NaN);
          addon.expertGemv({ experts: c.E, offsets: c.off, x: c.x, w: c.qz.w, scales: c.qz.scales, n: c.n, k: c.k, y });
          if (isa !== 'avx512') {  // no VNNI below AVX-512: the fp32 kernels
            const err = relError(y, c.ref);
            if (!(err <= FP32_TOL)) throw new Error(`${isa} t=${threads} ${c.label}: ${err}`);
            continue;
          }
          const { xq, s } = quantizedX(dtype, c.x, P, c.k);
          const wd = dequantize(c.qz, c.E * c.n, c.k);
          const refQ = groupedGemmRef(c.off, Float32Array.from(xq), wd, c.n, c.k);
          const errQ = relError(y, refQ);
          if (!(errQ <= FP32_TOL)) throw new Error(`${isa} t=${threads} ${c.label} vs rounded x: ${errQ}`);
          for (let e = 0; e < c.E; e++)
            for (let p = c.off[e]; p < c.off[e + 1]; p++)
              for (let r = 0; r < c.n; r++) {
                let bound = 0, mag = 0;
                for (let j = 0; j < c.k; j++) {
                  const w = Math.abs(wd[(e * c.n + r) * c.k + j]);
                  bound += (w * s[p * c.k + j]) / 2;
                  mag += w * Math.abs(c.x[p * c.k + j]);
                }
                const d = Math.abs(y[p * c.n + r] - c.ref[p * c.n + r]);
                if (!(d <= bound + 1e-5 * mag + 1e-30))
                  throw new Error(`${c.label} row ${p} out ${r}: |Δ| ${d} > bound ${bound}`);
                if (bound > 0) worst = Math.max(worst, d / bound);
              }
        }
      }, [1, 3]));
      console.log(`${dtype} VNNI: largest |Δ| against exact activations = ${worst.toFixed(3)} of the rounding bound`);
      expect(worst).toBeGreaterThan(0);  // the rounded path did run
    });

  test('results do not depend on the thread count (task sizes follow it; rows stay in the same 4-row blocks)', () => {
    const before = addon.runtimeInfo().threads;
    try {
      for (const dtype of ['I8', 'Q4'] as const)
        for (const m of [1, 3]) {  // activation rows per expert: 1-row and 4-row kernels
          const E = 3, n = 151, k = 1024, off = offsetsFrom([m, m, m]), x = randArray(3 * m * k, 5 + m);
          const qz = quantize(dtype, weights(E * n, k, 6), E * n, k);
          const run = (threads: number) => {
            addon.setThreads({ threads });
            const y = new Float32Array(3 * m * n);
            addon.expertGemv({ experts: E, offsets: off, x, w: qz.w, scales: qz.scales, n, k, y });
            return Buffer.from(y.buffer);
          };
          const one = run(1);
          for (const t of [2, 3, 4])
            expect({ dtype, m, t, same: run(t).equals(one) }).toEqual({ dtype, m, t, same: true });
        }
    } finally {
      addon.setThreads({ threads: before });
    }
  });

  test('tiny weights (fp16 subnormal Q4 scales, I8 scales ~1e-8) keep their relative accuracy', () => {
    for (const dtype of ['I8', 'Q4'] as const) {
      const E = 1, n = 5, k = 64, off = offsetsFrom([2]), x = randArray(2 * k, 77);
      const w = randArray(n * k, 78, 1e-6), qz = quantize(dtype, w, n, k);
      if (dtype === 'Q4') expect(Array.from(qz.scales as Uint16Array).some((h) => (h & 0x7c00) === 0)).toBe(true);
      const ref = groupedGemmRef(off, x, dequantize(qz, n, k), n, k);
      withInt8Dot(false, () => forEachConfig((isa, threads) => {  // the fp32 kernels (VNNI: the bound test)
        const y = new Float32Array(2 * n).fill(NaN);
        addon.expertGemv({ experts: E, offsets: off, x, w: qz.w, scales: qz.scales, n, k, y });
        const err = relError(y, ref);
        if (!(err <= FP32_TOL)) throw new Error(`${dtype} ${isa} t=${threads}: ${err}`);
      }, [1, 2]));
    }
  });

  test('async variant gives the same result; y rows past the groups untouched; k = 0 gives zeros', async () => {
    for (const dtype of ['I8', 'Q4'] as const) {
      const off = offsetsFrom([2, 0, 3]), n = 5, k = 96, x = randArray(5 * k, 7);
      const qz = quantize(dtype, weights(3 * n, k, 8), 3 * n, k);
      const a = new Float32Array(5 * n + 4).fill(NaN), b = new Float32Array(5 * n + 4).fill(NaN);
      addon.expertGemv({ experts: 3, offsets: off, x, w: qz.w, scales: qz.scales, n, k, y: a });
      await addon.expertGemvAsync({ experts: 3, offsets: off, x, w: qz.w, scales: qz.scales, n, k, y: b });
      expect(relError(b.subarray(0, 5 * n), a.subarray(0, 5 * n))).toBe(0);
      expect(Array.from(a.subarray(5 * n)).every(Number.isNaN)).toBe(true);
      const z = new Float32Array(5 * n).fill(NaN);
      const empty = dtype === 'I8' ? { w: new Int8Array(0), scales: new Float32Array(3 * n) }
        : { w: new Uint8Array(0), scales: new Uint16Array(0) };
      addon.expertGemv({ experts: 3, offsets: off, x: new Float32Array(0), ...empty, n, k: 0, y: z });
      expect(Array.from(z)).toEqual(new Array(5 * n).fill(0));
    }
  });
});

describe('dequantizeRows', () => {
  test('equals the TS dequantization exactly (I8, Q4, with row0), F32 copies and BF16 widens', () => {
    for (const [dtype, k] of [['I8', 65], ['I8', 1], ['Q4', 32], ['Q4', 544]] as const) {
      const rows = 23, qz = quantize(dtype, weights(rows, k, 31 + k), rows, k), full = dequantize(qz, rows, k);
      for (const [row0, n] of [[0, rows], [5, 11], [22, 1], [7, 0]]) {
        const got = addon.dequantizeRows({ dtype, w: qz.w, scales: qz.scales, row0, rows: n, k });
        expect({ dtype, k, row0, n, same: Buffer.from(got.buffer).equals(
          Buffer.from(full.slice(row0 * k, (row0 + n) * k).buffer)) }).toEqual({ dtype, k, row0, n, same: true });
      }
    }
    // Enough rows for several parallel tasks.
    const big = quantize('Q4', weights(700, 64, 5), 700, 64);
    const got = addon.dequantizeRows({ dtype: 'Q4', w: big.w, scales: big.scales, rows: 700, k: 64 });
    expect(Buffer.from(got.buffer).equals(Buffer.from(dequantize(big, 700, 64).buffer))).toBe(true);
    const f = randArray(6 * 10, 3);
    expect(Array.from(addon.dequantizeRows({ dtype: 'F32', w: f, row0: 2, rows: 3, k: 10 })))
      .toEqual(Array.from(f.subarray(20, 50)));
    const b = toBf16(f);
    expect(Array.from(addon.dequantizeRows({ dtype: 'BF16', w: b, rows: 6, k: 10 }))).toEqual(Array.from(fromBf16(b)));
  });
});

describe('fp16 conversions', () => {
  test('all 65536 halves: halfToFloat is exact; back through floatToHalf identical (NaN stays NaN)', () => {
    const h = new Uint16Array(65536).map((_, i) => i);
    const f = addon.halfToFloat({ h });
    const back = addon.floatToHalf({ x: f });
    let nan = 0;
    for (let i = 0; i < 65536; i++) {
      const want = halfToF32(i);
      if (Number.isNaN(want)) {
        nan++;
        if (!Number.isNaN(f[i]) || (back[i] & 0x7c00) !== 0x7c00 || (back[i] & 0x3ff) === 0)
          throw new Error(`NaN half ${i.toString(16)}: ${f[i]}, back ${back[i].toString(16)}`);
        continue;
      }
      if (!Object.is(f[i], want)) throw new Error(`half ${i.toString(16)}: ${f[i]} != ${want}`);
      if (back[i] !== i) throw new Error(`half ${i.toString(16)} came back as ${back[i].toString(16)}`);
    }
    expect(nan).toBe(2 * 1023);
  });

  test('floats round to nearest even: known halves, the boundaries, and random floats against the TS rounding', () => {
    const known: [number, number][] = [
      [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [0.1, 0x2e66], [1 / 3, 0x3555], [65504, 0x7bff],
      [65519.996, 0x7bff], [65520, 0x7c00], [1e6, 0x7c00], [-Infinity, 0xfc00], [Infinity, 0x7c00],
      [2 ** -14, 0x0400], [2 ** -24, 0x0001], [2 ** -25, 0x0000], [-(2 ** -25), 0x8000], [1.5 * 2 ** -24, 0x0002],
      [2.5 * 2 ** -24, 0x0002], [1023.5 * 2 ** -24, 0x0400], [1022.5 * 2 ** -24, 0x03fe], [1e-10, 0x0000],
      [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [2049, 0x6800], [2051, 0x6802], [-1e-5, 0x80a8],
    ];
    const got = addon.floatToHalf({ x: Float32Array.from(known.map(([v]) => v)) });
    expect(Array.from(got).map((h) => h.toString(16))).toEqual(known.map(([, h]) => h.toString(16)));
    const nan = addon.floatToHalf({ x: Float32Array.of(NaN, -NaN) });
    expect(Array.from(nan).every((v) => (v & 0x7c00) === 0x7c00 && (v & 0x3ff) !== 0)).toBe(true);
    // Random bit patterns over every exponent, and random values near the half range.
    const r = rng(11), u = new Uint32Array(200000);
    for (let i = 0; i < u.length; i++) {
      const bits = (r() * 2 ** 32) >>> 0; // odd i: any float; even i: |x| in [2^-29, 2^17), either sign
      u[i] = i % 2 ? bits : ((bits % 0x17000000 + 0x31000000) | (r() < 0.5 ? 0x80000000 : 0)) >>> 0;
    }
    const x = new Float32Array(u.buffer);
    const hx = addon.floatToHalf({ x });
    for (let i = 0; i < x.length; i++)
      if (!Number.isNaN(x[i]) && hx[i] !== f32ToHalf(x[i]))
        throw new Error(`${x[i]} (0x${u[i].toString(16)}): ${hx[i].toString(16)} != ${f32ToHalf(x[i]).toString(16)}`);
  });
});

describe('quantized GEMV bad arguments', () => {
  test('bad arguments name the argument', () => {
    const off = Int32Array.of(0, 1, 2), x = new Float32Array(2 * 32), y = new Float32Array(4);
    const i8 = { experts: 2, offsets: off, x, w: new Int8Array(2 * 2 * 32), scales: new Float32Array(4), n: 2, k: 32,
      y };
    const q4 = { ...i8, w: new Uint8Array(2 * 2 * 16), scales: new Uint16Array(4) };
    expectNativeError(() => addon.setInt8Dot({ enabled: 1 as unknown as boolean }), 'TypeError',
      /^setInt8Dot: enabled must be a boolean/);
    addon.expertGemv(i8);
    addon.expertGemv(q4);
    expectNativeError(() => addon.expertGemv({ ...i8, scales: undefined }), 'TypeError',
      /^expertGemv: scales is missing \(expected a Float32Array\)/);
    expectNativeError(() => addon.expertGemv({ ...i8, scales: new Float32Array(3) }), 'RangeError',
      /^expertGemv: scales has 3 elements but needs at least 4/);
    expectNativeError(() => addon.expertGemv({ ...i8, scales: new Uint16Array(4) }), 'TypeError',
      /^expertGemv: scales must be a Float32Array/);
    expectNativeError(() => addon.expertGemv({ ...i8, w: new Int8Array(127) }), 'RangeError',
      /^expertGemv: w has 127 elements but needs at least 128/);
    expectNativeError(() => addon.expertGemv({ ...q4, w: new Uint8Array(63) }), 'RangeError',
      /^expertGemv: w has 63 elements but needs at least 64/);
    expectNativeError(() => addon.expertGemv({ ...q4, scales: new Uint16Array(3) }), 'RangeError',
      /^expertGemv: scales has 3 elements but needs at least 4/);
    expectNativeError(() => addon.expertGemv({ ...q4, scales: new Float32Array(4) }), 'TypeError',
      /^expertGemv: scales must be a Uint16Array/);
    expectNativeError(() => addon.expertGemv({ ...q4, k: 33, x: new Float32Array(66) }), 'RangeError',
      /^expertGemv: k must be a multiple of 32 for 4-bit weights \(w a Uint8Array\), got 33/);
    expectNativeError(() => addon.expertGemv({ ...i8, w: new Float32Array(128) }), 'RangeError',
      /^expertGemv: scales belongs to quantized weights/);
    expectNativeError(() => addon.expertGemv({ ...i8, w: new Int16Array(128) as never }), 'TypeError',
      /^expertGemv: w must be a Float32Array, a Uint16Array \(bf16\), an Int8Array \(I8, with scales\) or a Uint8/);
    expectNativeError(() => addon.expertGemv({ ...q4, device: 'cuda' }), 'RangeError',
      /^expertGemv: device: quantized weights \(Int8Array or Uint8Array w\) run on the cpu only/);
    expectNativeError(() => addon.expertGemv({ ...i8, y: new Float32Array(3) }), 'RangeError',
      /^expertGemv: y has 3 elements but needs at least 4/);
  });

  test('dequantizeRows checks dtype, types, sizes and k', () => {
    const base = { dtype: 'Q4' as const, w: new Uint8Array(4 * 16), scales: new Uint16Array(4), rows: 4, k: 32 };
    expect(addon.dequantizeRows(base).length).toBe(128);
    expectNativeError(() => addon.dequantizeRows({ ...base, dtype: 'Q8' as never }), 'RangeError',
      /^dequantizeRows: dtype must be 'F32', 'BF16', 'I8' or 'Q4', got 'Q8'/);
    expectNativeError(() => addon.dequantizeRows({ ...base, k: 48 }), 'RangeError',
      /^dequantizeRows: k must be a multiple of 32 for Q4, got 48/);
    expectNativeError(() => addon.dequantizeRows({ ...base, row0: 1 }), 'RangeError',
      /^dequantizeRows: w has 64 elements but needs at least 80/);
    expectNativeError(() => addon.dequantizeRows({ ...base, scales: new Uint16Array(3) }), 'RangeError',
      /^dequantizeRows: scales has 3 elements but needs at least 4/);
    expectNativeError(() => addon.dequantizeRows({ ...base, dtype: 'I8' }), 'TypeError',
      /^dequantizeRows: w must be an Int8Array/);
    expectNativeError(() => addon.dequantizeRows({ ...base, row0: -1 }), 'RangeError',
      /^dequantizeRows: row0 must be in/);
    expectNativeError(() => addon.halfToFloat({ h: new Float32Array(2) as never }), 'TypeError',
      /^halfToFloat: h must be a Uint16Array/);
  });
});
