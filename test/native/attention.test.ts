// Causal MoA attention against the double reference, on every ISA and thread count 1..4.
import type { AttentionShapeArgs } from '../../src/native/types/attention';
import type { NativeAddon } from '../../src/native/addon';
import {
  addon, expectNativeError, finiteDiff, FP32_TOL, forEachBackend, randArray, randn, relError,
} from '../helpers';
import { attentionBackwardRef, attentionForwardRef } from '../reference/attention';

// (experts E, heads per expert H, kv heads G): plain MHA, GQA, DS-MoE-like G = H, and many
// experts over one kv head.
const EHG: Array<[number, number, number]> = [[1, 1, 1], [1, 4, 2], [3, 2, 2], [4, 2, 1]];

function shape(batch: number, tq: number, tk: number, [E, H, G]: [number, number, number], headDim: number,
  scale?: number): AttentionShapeArgs {
  return { batch, tq, tk, nHeads: E * H, headsPerExpert: H, kvHeads: G, headDim,
    ...(scale === undefined ? {} : { scale }) };
}

const sizes = (s: AttentionShapeArgs) => ({
  q: s.batch * s.tq * s.nHeads * s.headDim,
  kv: s.batch * s.tk * s.kvHeads * s.headDim,
  lse: s.batch * s.nHeads * s.tq,
});

/**
 * max|got − ref| / max|mag|: the error relative to the magnitude of the summed terms. Used for dq
 * and dk, where dS = P ⊙ (dP − D) cancels (D = dO·O): when dP_ij ≈ D_i for every key (few keys,
 * similar values), |dq| is tiny while fp32 rounding of dP, D and the stored O stays ~1e-7 of
 * |P|·(|dP| + |D|). relError against |dq| itself then reached 6e-5 on some seeds (tk = 2, dh ≤ 2),
 * an ill-conditioned result, not a kernel error; the double reference has the same inputs.
 */
function termRelError(got: ArrayLike<number>, ref: ArrayLike<number>, mag: ArrayLike<number>): number {
  let maxDiff = 0, maxMag = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i] - ref[i]);
    if (!(d <= maxDiff)) maxDiff = Number.isNaN(d) ? Infinity : d;
    maxMag = Math.max(maxMag, mag[i]);
  }
  return maxMag === 0 ? maxDiff : maxDiff / maxMag;
}

/** Random inputs for a shape (q, k of unit normal scale so the softmax is neither flat nor one-hot). */
function inputs(s: AttentionShapeArgs, seed: number) {
  const n = sizes(s);
  return {
    q: randn(n.q, seed), k: randn(n.kv, seed + 1), v: randArray(n.kv, seed + 2), dout: randArray(n.q, seed + 3),
  };
}

/** Runs forward and backward natively; outputs start as NaN so anything left unwritten shows. */
function runNative(kernels: NativeAddon, s: AttentionShapeArgs, x: ReturnType<typeof inputs>) {
  const n = sizes(s);
  const out = new Float32Array(n.q).fill(NaN), lse = new Float32Array(n.lse).fill(NaN);
  kernels.attentionForward({ ...s, q: x.q, k: x.k, v: x.v, out, lse });
  const dq = new Float32Array(n.q).fill(NaN), dk = new Float32Array(n.kv).fill(NaN),
    dv = new Float32Array(n.kv).fill(NaN);
  kernels.attentionBackward({ ...s, q: x.q, k: x.k, v: x.v, out, lse, dout: x.dout, dq, dk, dv });
  return { out, lse, dq, dk, dv };
}

forEachBackend((be) => describe('attention forward and backward', () => {
  // CUDA forward: the fused kernel (32-key tiles, online softmax rescaling), fp32 in another order than
  // the CPU; each output is a convex combination of V rows: a few ulp x log(tk), 3e-5 norm-wise.
  // CUDA backward: two fp32 passes (dq per query, dk/dv per key) in other summation orders than the
  // CPU, P recomputed from lse with expf: the same few-ulp x log(tk) error, within the same 3e-5.
  const tol = be.tol({ cpu: FP32_TOL, cuda: 3e-5 });

  // B ∈ {1,2}, T ∈ {1,2,7,33} (33 crosses the 16-query and 32-key blocks), dh ∈ {1,2,16,24}
  // (1, 2: only the scalar tail of the 8-wide dot; 16, 24: whole chunks), every (E,H,G), and
  // tq ∈ {tk, ceil(tk/2), 1}: training, a query suffix, and decode.
  type Ref = ReturnType<typeof attentionForwardRef> & ReturnType<typeof attentionBackwardRef>;
  const cases: Array<{ s: AttentionShapeArgs; x: ReturnType<typeof inputs>; ref: Ref }> = [];
  let seed = 1;
  for (const B of [1, 2])
    for (const T of [1, 2, 7, 33])
      for (const dh of [1, 2, 16, 24])
        for (const ehg of EHG)
          for (const tq of [...new Set([T, Math.ceil(T / 2), 1])]) {
            const s = shape(B, tq, T, ehg, dh), x = inputs(s, (seed += 4));
            cases.push({ s, x, ref: { ...attentionForwardRef(s, x.q, x.k, x.v),
              ...attentionBackwardRef(s, x.q, x.k, x.v, x.dout) } });
          }

  test(`forward (out, lse) alone matches the reference on ${cases.length} shapes (outputs start as NaN)`, () => {
    for (const { s, x, ref } of cases) {
      const n = sizes(s), out = new Float32Array(n.q).fill(NaN), lse = new Float32Array(n.lse).fill(NaN);
      be.addon.attentionForward({ ...s, q: x.q, k: x.k, v: x.v, out, lse });
      const errs = { out: relError(out, ref.out), lse: relError(lse, ref.lse) };
      for (const [key, err] of Object.entries(errs))
        if (!(err <= tol)) throw new Error(`${JSON.stringify(s)} ${key}: rel err ${err}`);
    }
  });

  be.test(
    `forward (out, lse) and backward (dq, dk, dv) match the reference on ${cases.length} shapes`,
    ['attentionBackward'],
    () => {
      be.forEachConfig((isa, threads) => {
        for (const { s, x, ref } of cases) {
          const got = runNative(be.addon, s, x);
          const errs = {
            out: relError(got.out, ref.out), lse: relError(got.lse, ref.lse), dv: relError(got.dv, ref.dv),
            dq: termRelError(got.dq, ref.dq, ref.dqMag), dk: termRelError(got.dk, ref.dk, ref.dkMag),
          };
          for (const [key, err] of Object.entries(errs))
            if (!(err <= tol)) throw new Error(`${isa} t=${threads} ${JSON.stringify(s)} ${key}: rel err ${err}`);
        }
      });
    });

  be.test('an explicit scale is used instead of 1/sqrt(dh)', ['attentionBackward'], () => {
    const s = shape(2, 5, 8, [2, 2, 1], 6, 0.7), x = inputs(s, 900);
    const got = runNative(be.addon, s, x), ref = attentionForwardRef(s, x.q, x.k, x.v),
      bref = attentionBackwardRef(s, x.q, x.k, x.v, x.dout);
    expect(relError(got.out, ref.out)).toBeLessThanOrEqual(tol);
    expect(relError(got.lse, ref.lse)).toBeLessThanOrEqual(tol);
    expect(termRelError(got.dq, bref.dq, bref.dqMag)).toBeLessThanOrEqual(tol);
    expect(termRelError(got.dk, bref.dk, bref.dkMag)).toBeLessThanOrEqual(tol);
    expect(relError(got.dv, bref.dv)).toBeLessThanOrEqual(tol);
  });

  be.test(
    'decode (tq = 1, tk = 9) equals the last query row of the full tq = tk = 9 computation',
    ['attentionBackward'],
    () => {
      be.forEachConfig(() => {
        for (const ehg of EHG) {
          const full = shape(2, 9, 9, ehg, 16), dec = { ...full, tq: 1 };
          const x = inputs(full, 300);
          // The decode query is the full computation's last query: slice q and dout to it.
          const last = (a: Float32Array, s: AttentionShapeArgs) => {
            const row = s.nHeads * s.headDim, r = new Float32Array(s.batch * row);
            for (let b = 0; b < s.batch; b++) r.set(a.subarray((b * s.tq + s.tq - 1) * row, (b * s.tq + s.tq) * row),
              b * row);
            return r;
          };
          const lastLse = (a: Float32Array, s: AttentionShapeArgs) =>
            Float32Array.from({ length: s.batch * s.nHeads }, (_, bh) => a[bh * s.tq + s.tq - 1]);
          const f = runNative(be.addon, full, x);
          const d = runNative(be.addon, dec, { ...x, q: last(x.q, full), dout: last(x.dout, full) });
          // Exact: each query row is computed on its own, by the same code, in the same order.
          expect(d.out).toEqual(last(f.out, full));
          expect(d.lse).toEqual(lastLse(f.lse, full));
          expect(d.dq).toEqual(last(f.dq, full));
        }
      }, [1, 3]);
    });

  be.test('backward matches central finite differences of loss = Σ out·R', ['attentionBackward'], () => {
    be.forEachConfig(() => {
      for (const ehg of [[2, 2, 1], [1, 4, 2]] as Array<[number, number, number]>) {
        const s = shape(2, 4, 6, ehg, 3), n = sizes(s);
        const x = inputs(s, 500), R = x.dout;
        const out = new Float32Array(n.q), lse = new Float32Array(n.lse);
        const loss = () => {
          be.addon.attentionForward({ ...s, q: x.q, k: x.k, v: x.v, out, lse });
          let acc = 0;
          for (let i = 0; i < n.q; i++) acc += out[i] * R[i];
          return acc;
        };
        loss();
        const dq = new Float32Array(n.q), dk = new Float32Array(n.kv), dv = new Float32Array(n.kv);
        be.addon.attentionBackward({ ...s, q: x.q, k: x.k, v: x.v, out, lse, dout: R, dq, dk, dv });
        for (const [name, arr, grad] of [['q', x.q, dq], ['k', x.k, dk], ['v', x.v, dv]] as const) {
          const fd = Array.from(arr, (_, i) => finiteDiff(loss, arr, i));
          // 1e-3 norm-wise: the loss is an fp32 forward (rounding ~1e-7 of a loss of size ~1-10)
          // divided by 2h = 2e-3, i.e. ~1e-4 noise per difference, plus O(h²) truncation.
          const err = relError(grad, fd);
          if (!(err <= 1e-3)) throw new Error(`d${name}: rel err ${err} against finite differences`);
        }
      }
    }, [1, 2]);
  });

  be.test('dq, dk, dv (and the forward) are bit-identical for every thread count', ['attentionBackward'], () => {
    // Within one instruction set: the AVX-512 build vectorises the sums differently from the
    // baseline build, so bits are compared across thread counts per ISA.
    for (const [tq, tk] of [[70, 70], [45, 70]]) {
      const s = shape(2, tq, tk, [4, 2, 1], 24), x = inputs(s, 700);
      const bases = new Map<string, ReturnType<typeof runNative>>();
      be.forEachConfig((isa, threads) => {
        const got = runNative(be.addon, s, x);
        const base = bases.get(isa);
        if (!base) bases.set(isa, got);
        else for (const key of ['out', 'lse', 'dq', 'dk', 'dv'] as const)
          if (!got[key].every((v, i) => Object.is(v, base[key][i]))) throw new Error(`${isa} t=${threads} tq=${tq}: ` +
            `${key} differs`);
      });
    }
  });

  be.test(
    'MoA: E experts at once equal each expert\'s H heads run separately over the same shared k/v',
    ['attentionBackward'],
    () => {
      be.forEachConfig(() => {
        const [E, H, G] = [3, 4, 2], B = 2, tq = 5, tk = 11, dh = 8;
        const s = shape(B, tq, tk, [E, H, G], dh), x = inputs(s, 800);
        const all = runNative(be.addon, s, x);
        // Expert e's heads of a [B, Tq, E·H, dh] tensor, as [B, Tq, H, dh].
        const heads = (a: Float32Array, e: number) => {
          const r = new Float32Array(B * tq * H * dh);
          for (let bt = 0; bt < B * tq; bt++)
            r.set(a.subarray((bt * E + e) * H * dh, (bt * E + e + 1) * H * dh), bt * H * dh);
          return r;
        };
        const dkSum = new Float64Array(all.dk.length), dvSum = new Float64Array(all.dv.length);
        for (let e = 0; e < E; e++) {
          const one = shape(B, tq, tk, [1, H, G], dh);
          const got = runNative(be.addon, one, { ...x, q: heads(x.q, e), dout: heads(x.dout, e) });
          // Forward and dq of one expert's heads are computed exactly the same way either way.
          expect(got.out).toEqual(heads(all.out, e));
          expect(got.dq).toEqual(heads(all.dq, e));
          const lseOfE = new Float32Array(B * H * tq);  // expert e's rows of lse [B, E·H, Tq]
          for (let b = 0; b < B; b++) lseOfE.set(all.lse.subarray((b * E + e) * H * tq, (b * E + e + 1) * H * tq),
            b * H * tq);
          expect(got.lse).toEqual(lseOfE);
          got.dk.forEach((v, i) => (dkSum[i] += v));
          got.dv.forEach((v, i) => (dvSum[i] += v));
        }
        // Shared k/v gradients sum over all experts (in a different order here, hence a tolerance).
        expect(relError(all.dk, dkSum)).toBeLessThanOrEqual(tol);
        expect(relError(all.dv, dvSum)).toBeLessThanOrEqual(tol);
      }, [1, 2]);
    });

  be.test('async variants give the same results', ['attentionBackward'], async () => {
    const s = shape(2, 20, 40, [2, 2, 2], 16), x = inputs(s, 1000), n = sizes(s);
    const sync = runNative(be.addon, s, x);
    const out = new Float32Array(n.q), lse = new Float32Array(n.lse);
    await be.addon.attentionForwardAsync({ ...s, q: x.q, k: x.k, v: x.v, out, lse });
    const dq = new Float32Array(n.q), dk = new Float32Array(n.kv), dv = new Float32Array(n.kv);
    await be.addon.attentionBackwardAsync({ ...s, q: x.q, k: x.k, v: x.v, out, lse, dout: x.dout, dq, dk, dv });
    expect({ out, lse, dq, dk, dv }).toEqual(sync);
  });
}));

describe('attention bad arguments are JavaScript errors naming the argument', () => {
  // A valid forward call: B=1, tq=2, tk=3, Hq=4 (E=2, H=2), G=1, dh=2.
  const ok = () => ({
    batch: 1, tq: 2, tk: 3, nHeads: 4, headsPerExpert: 2, kvHeads: 1, headDim: 2,
    q: new Float32Array(16), k: new Float32Array(6), v: new Float32Array(6), out: new Float32Array(16),
    lse: new Float32Array(8),
  });
  const okBack = () => ({ ...ok(), dout: new Float32Array(16), dq: new Float32Array(16), dk: new Float32Array(6),
    dv: new Float32Array(6) });
  const fwd = (over: object) => () => addon.attentionForward({ ...ok(), ...over });
  const back = (over: object) => () => addon.attentionBackward({ ...okBack(), ...over });

  test('a valid call passes', () => {
    fwd({})();
    back({})();
  });

  test.each([
    ['no argument object', () => (addon.attentionForward as unknown as () => void)(), 'TypeError',
      /object of named arguments/],
    ['missing batch', fwd({ batch: undefined }), 'TypeError', /attentionForward: batch is missing/],
    ['batch 0', fwd({ batch: 0 }), 'RangeError', /attentionForward: batch must be in/],
    ['tq 0', fwd({ tq: 0 }), 'RangeError', /attentionForward: tq must be in/],
    ['tq not an integer', fwd({ tq: 1.5 }), 'TypeError', /attentionForward: tq must be an integer/],
    ['tk < tq', fwd({ tk: 1 }), 'RangeError', /attentionForward: tk \(1\) must be at least tq \(2\)/],
    ['nHeads 0', fwd({ nHeads: 0 }), 'RangeError', /attentionForward: nHeads must be in/],
    ['headsPerExpert does not divide nHeads', fwd({ headsPerExpert: 3 }), 'RangeError',
      /attentionForward: headsPerExpert \(3\) must divide nHeads \(4\)/],
    ['kvHeads does not divide headsPerExpert', fwd({ kvHeads: 4 }), 'RangeError',
      /attentionForward: kvHeads \(4\) must divide headsPerExpert \(2\)/],
    ['kvHeads 0', fwd({ kvHeads: 0 }), 'RangeError', /attentionForward: kvHeads must be in/],
    ['headDim 0', fwd({ headDim: 0 }), 'RangeError', /attentionForward: headDim must be in/],
    ['NaN scale', fwd({ scale: NaN }), 'RangeError', /attentionForward: scale must be finite/],
    ['scale beyond fp32', fwd({ scale: 1e300 }), 'RangeError', /attentionForward: scale must be finite in fp32/],
    ['q too short', fwd({ q: new Float32Array(15) }), 'RangeError',
      /attentionForward: q has 15 elements but needs at least 16/],
    ['k wrong type', fwd({ k: [0, 0, 0, 0, 0, 0] }), 'TypeError', /attentionForward: k must be a Float32Array/],
    ['v too short', fwd({ v: new Float32Array(5) }), 'RangeError', /attentionForward: v has 5/],
    ['out missing', fwd({ out: undefined }), 'TypeError', /attentionForward: out is missing/],
    ['lse too short', fwd({ lse: new Float32Array(7) }), 'RangeError', /attentionForward: lse has 7/],
    ['huge sizes overflow', fwd({ batch: 2 ** 31 - 1, tq: 2 ** 31 - 1, tk: 2 ** 31 - 1, nHeads: 2 ** 31 - 1,
      headsPerExpert: 1, headDim: 2 ** 31 - 1 }),
    'RangeError', /attentionForward: q is too large/],
    ['backward tk < tq', back({ tk: 1 }), 'RangeError', /attentionBackward: tk \(1\) must be at least tq/],
    ['backward dout missing', back({ dout: undefined }), 'TypeError', /attentionBackward: dout is missing/],
    ['backward lse too short', back({ lse: new Float32Array(3) }), 'RangeError', /attentionBackward: lse has 3/],
    ['backward dq too short', back({ dq: new Float32Array(15) }), 'RangeError', /attentionBackward: dq has 15/],
    ['backward dk too short', back({ dk: new Float32Array(5) }), 'RangeError', /attentionBackward: dk has 5/],
    ['backward dv wrong type', back({ dv: new Float64Array(6) }), 'TypeError',
      /attentionBackward: dv must be a Float32Array/],
  ] as const)('%s', (_name, call, type, message) => {
    expectNativeError(call, type, message);
  });

  test('async variants reject bad arguments synchronously with the same error', () => {
    expectNativeError(() => addon.attentionForwardAsync({ ...ok(), tk: 1 }), 'RangeError',
      /attentionForward: tk \(1\) must be at least tq/);
    expectNativeError(() => addon.attentionBackwardAsync({ ...okBack(), dk: new Float32Array(1) }), 'RangeError',
      /attentionBackward: dk has 1/);
  });
});
