// nn kernels (RMSNorm, RoPE, GELU, cross-entropy, AdamW, gradient norms) against the double
// references, finite differences, on every ISA and thread count 1..4.
import { addon, expectNativeError, finiteDiff, FP32_TOL, forEachBackend, randArray, randn as randnFresh, relError,
  rng } from '../helpers';
import {
  adamwRef, crossEntropyRef, geluGradRef, geluRef, globalNormRef, rmsnormBackwardRef, rmsnormRef, ropeRef,
} from '../reference/nn';

// Finite differences of fp32 kernels: x ± h with h = 2^-10 is exact in fp32 for |x| < 2^13, and the
// forward's own fp32 rounding (~6e-8 relative per output) divided by 2h leaves ~1e-4 of noise in
// each difference quotient, so these comparisons use FD_TOL, not FP32_TOL.
const H = 2 ** -10;
const FD_TOL = 2e-3;

function fail(what: string, err: number, tol: number): void {
  if (!(err <= tol)) throw new Error(`${what}: rel err ${err} > ${tol}`);
}

/** randn, generated once per (n, seed, scale) and copied: the sweeps over ISAs and thread counts
 * would otherwise spend most of their time making the same normal samples again. */
const randnCache = new Map<string, Float32Array>();
function randn(n: number, seed: number, scale = 1): Float32Array {
  const key = `${n}/${seed}/${scale}`;
  let a = randnCache.get(key);
  if (!a) randnCache.set(key, (a = randnFresh(n, seed, scale)));
  return a.slice();
}

/** Bitwise equality of two fp32 arrays (jest's toEqual is slow on large typed arrays). */
function expectSame(got: Float32Array, want: Float32Array): void {
  const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  if (!bytes(got).equals(bytes(want))) {
    const i = got.findIndex((v, k) => !Object.is(v, want[k]));
    throw new Error(`arrays differ (length ${got.length} vs ${want.length}; first at ${i}: ${got[i]} vs ${want[i]})`);
  }
}

/** Σ a·b in double. */
function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

forEachBackend((be) => describe('rmsnorm', () => {
  // CUDA: block per row, sums of squares in double like the CPU (another order): within the fp32 bound.
  const tol = be.tol({ cpu: FP32_TOL, cuda: FP32_TOL });

  const SHAPES: Array<[number, number]> = [[1, 1], [1, 7], [7, 13], [13, 97], [97, 33], [130, 300], [3, 255],
    [200, 17]];
  // dim 1: dx = rstd·w·dy·eps/(x² + eps), two O(1) terms cancelling to O(eps), which no fp32
  // formula gets to 1e-5 of itself; a large eps keeps that case's result O(1) so it still checks.
  const epsFor = (dim: number) => (dim === 1 ? 0.5 : 1e-5);

  test('forward matches the reference (y and rstd), in place too', () => {
    const eps = 1e-5;
    be.forEachConfig((isa, threads) => {
      let seed = 1;
      for (const [rows, dim] of SHAPES) {
        const x = randn(rows * dim, seed++), w = randArray(dim, seed++, 2);
        const y = new Float32Array(rows * dim), rstd = new Float32Array(rows);
        be.addon.rmsnormForward({ rows, dim, x, w, eps, y, rstd });
        const ref = rmsnormRef(rows, dim, x, w, eps);
        fail(`${isa} t=${threads} ${rows}x${dim} y`, relError(y, ref.y), tol);
        fail(`${isa} t=${threads} ${rows}x${dim} rstd`, relError(rstd, ref.rstd), tol);
        be.addon.rmsnormForward({ rows, dim, x, w, eps, y: x }); // in place, no rstd
        expectSame(x, y);
      }
    });
  });

  test('backward matches the reference; dw accumulates; dx may overwrite dy', () => {
    be.forEachConfig((isa, threads) => {
      let seed = 50;
      for (const [rows, dim] of SHAPES) {
        const eps = epsFor(dim);
        const x = randn(rows * dim, seed++), w = randArray(dim, seed++, 2), dy = randn(rows * dim, seed++);
        const rstd = new Float32Array(rows);
        be.addon.rmsnormForward({ rows, dim, x, w, eps, y: new Float32Array(rows * dim), rstd });
        const dx = new Float32Array(rows * dim), dw = new Float32Array(dim).fill(NaN);
        be.addon.rmsnormBackward({ rows, dim, x, w, rstd, dy, dx, dw });
        const ref = rmsnormBackwardRef(rows, dim, x, w, eps, dy);
        fail(`${isa} t=${threads} ${rows}x${dim} dx`, relError(dx, ref.dx), tol);
        fail(`${isa} t=${threads} ${rows}x${dim} dw`, relError(dw, ref.dw), tol);
        be.addon.rmsnormBackward({ rows, dim, x, w, rstd, dy, dx: new Float32Array(rows * dim), dw,
          accumulateDw: true });
        fail(`${isa} t=${threads} ${rows}x${dim} dw accumulated`, relError(dw, ref.dw.map((v) => 2 * v)), tol);
        const dw2 = new Float32Array(dim);
        be.addon.rmsnormBackward({ rows, dim, x, w, rstd, dy, dx: dy, dw: dw2 });
        expectSame(dy, dx);
        expectSame(dw2, dw.map((v) => v / 2));
      }
    });
  });

  test('backward against finite differences of the forward (dx and dw)', () => {
    for (const [rows, dim] of [[1, 1], [3, 7], [5, 33]] as Array<[number, number]>) {
      const eps = epsFor(dim);
      const x = randn(rows * dim, 7), w = randArray(dim, 8, 2), dy = randn(rows * dim, 9);
      const y = new Float32Array(rows * dim), rstd = new Float32Array(rows);
      const f = () => {
        be.addon.rmsnormForward({ rows, dim, x, w, eps, y });
        return dot(dy, y);
      };
      be.addon.rmsnormForward({ rows, dim, x, w, eps, y, rstd });
      const dx = new Float32Array(rows * dim), dw = new Float32Array(dim);
      be.addon.rmsnormBackward({ rows, dim, x, w, rstd, dy, dx, dw });
      const fdx = Array.from(x, (_, i) => finiteDiff(f, x, i, H));
      const fdw = Array.from(w, (_, i) => finiteDiff(f, w, i, H));
      fail(`${rows}x${dim} dx vs FD`, relError(dx, fdx), FD_TOL); // FD_TOL: fp32 forward noise / 2h
      fail(`${rows}x${dim} dw vs FD`, relError(dw, fdw), FD_TOL);
    }
  });

  test('dw is bit-identical for every thread count (several fixed row chunks)', () => {
    const rows = 300, dim = 77, eps = 1e-5;
    const x = randn(rows * dim, 1), w = randArray(dim, 2), dy = randn(rows * dim, 3), rstd = new Float32Array(rows);
    be.addon.rmsnormForward({ rows, dim, x, w, eps, y: new Float32Array(rows * dim), rstd });
    const results: Float32Array[] = [];
    be.forEachConfig(() => {
      const dw = new Float32Array(dim), dx = new Float32Array(rows * dim);
      be.addon.rmsnormBackward({ rows, dim, x, w, rstd, dy, dx, dw });
      results.push(dw, dx);
    });
    for (let i = 2; i < results.length; i++) expectSame(results[i], results[i % 2]);
  });

  test('async variant gives the same result', async () => {
    const rows = 40, dim = 64, eps = 1e-5, x = randn(rows * dim, 4), w = randArray(dim, 5);
    const y1 = new Float32Array(rows * dim), y2 = new Float32Array(rows * dim);
    be.addon.rmsnormForward({ rows, dim, x, w, eps, y: y1 });
    await be.addon.rmsnormForwardAsync({ rows, dim, x, w, eps, y: y2 });
    expectSame(y2, y1);
  });
}));

forEachBackend((be) => describe('rope', () => {
  // CUDA: angle and rotation in double, rounded once (sin/cos within 2 ulp of glibc): the fp32 bound.
  const tol = be.tol({ cpu: FP32_TOL, cuda: FP32_TOL });

  // [rows, heads, headDim]
  const SHAPES: Array<[number, number, number]> = [[1, 1, 2], [7, 3, 2], [13, 2, 6], [5, 4, 34], [97, 1, 64],
    [3, 2, 130]];
  const theta = 10000;

  function positionsFor(rows: number, seed: number): Int32Array {
    const r = rng(seed), p = new Int32Array(rows);
    const special = [0, 1, 100000, 2 ** 31 - 1];
    for (let i = 0; i < rows; i++) p[i] = i < special.length ? special[i] : Math.floor(r() * 200000);
    return p;
  }

  test('forward and backward match the reference at positions 0, 1, 1e5, 2^31-1; in and out of place', () => {
    be.forEachConfig((isa, threads) => {
      let seed = 1;
      for (const [rows, heads, headDim] of SHAPES) {
        const n = rows * heads * headDim, positions = positionsFor(rows, seed++);
        const x = randn(n, seed++), out = new Float32Array(n);
        const args = { rows, heads, headDim, theta, positions };
        be.addon.ropeForward({ ...args, x, out });
        fail(`${isa} t=${threads} ${rows}x${heads}x${headDim} fwd`, relError(out,
          ropeRef(rows, heads, headDim, theta, positions, x)), tol);
        const dx = new Float32Array(n);
        be.addon.ropeBackward({ ...args, dy: x, dx });
        fail(`${isa} t=${threads} ${rows}x${heads}x${headDim} bwd`, relError(dx,
          ropeRef(rows, heads, headDim, theta, positions, x, -1)), tol);
        // Position 0 is the identity, exactly.
        expectSame(out.subarray(0, heads * headDim), x.subarray(0, heads * headDim));
        // In place (no out) equals out of place; backward undoes forward.
        const y = x.slice();
        be.addon.ropeForward({ ...args, x: y });
        expectSame(y, out);
        be.addon.ropeBackward({ ...args, dy: y });
        fail(`${isa} t=${threads} round trip`, relError(y, x), tol);
      }
    });
  });

  test('backward against finite differences (it is the transpose of the forward)', () => {
    const rows = 4, heads = 2, headDim = 6, n = rows * heads * headDim;
    const positions = Int32Array.of(0, 1, 100000, 37), x = randn(n, 3), dy = randn(n, 4), out = new Float32Array(n);
    const f = () => {
      be.addon.ropeForward({ rows, heads, headDim, theta, positions, x, out });
      return dot(dy, out);
    };
    const dx = new Float32Array(n);
    be.addon.ropeBackward({ rows, heads, headDim, theta, positions, dy, dx });
    const fd = Array.from(x, (_, i) => finiteDiff(f, x, i, H));
    fail('rope dx vs FD', relError(dx, fd),
      FD_TOL); // FD_TOL: fp32 forward noise / 2h (f is linear: no truncation error)
  });
}));

forEachBackend((be) => describe('gelu', () => {
  // CUDA: erff/tanhf/expf (2-4 ulp) instead of the CPU vector forms: twice the fp32 bound.
  const tol = be.tol({ cpu: FP32_TOL, cuda: 2e-5 });

  const SIZES = [1, 7, 13, 97, 1000, 40000];
  const SPECIAL = [0, -0, 1e-20, -1e-20, 5, -5, 10, -10, 30, -30];

  function inputs(n: number, seed: number): Float32Array {
    const x = randn(n, seed, 3);
    x.set(SPECIAL.slice(0, n));
    return x;
  }

  test.each(['erf', 'tanh'] as const)('%s forward and backward match the reference', (approximate) => {
    be.forEachConfig((isa, threads) => {
      let seed = 1;
      for (const n of SIZES) {
        const x = inputs(n, seed++), dy = randn(n, seed++), y = new Float32Array(n), dx = new Float32Array(n);
        be.addon.geluForward({ n, x, y, approximate });
        be.addon.geluBackward({ n, x, dy, dx, approximate });
        // float libm erf/tanh/exp are within a few ulp: tol holds norm-wise.
        fail(`${isa} t=${threads} ${approximate} n=${n} y`, relError(y, Array.from(x, (v) => geluRef(v, approximate))),
          tol);
        fail(`${isa} t=${threads} ${approximate} n=${n} dx`, relError(dx,
          Array.from(x, (v, i) => dy[i] * geluGradRef(v, approximate))), tol);
        // dx may overwrite dy; y may overwrite x.
        const d2 = dy.slice();
        be.addon.geluBackward({ n, x, dy: d2, dx: d2, approximate });
        expectSame(d2, dx);
        const x2 = x.slice();
        be.addon.geluForward({ n, x: x2, y: x2, approximate });
        expectSame(x2, y);
      }
    }, [1, 3]);
  });

  test('erf is the default', () => {
    const n = 50, x = randn(n, 9), y1 = new Float32Array(n), y2 = new Float32Array(n);
    be.addon.geluForward({ n, x, y: y1 });
    be.addon.geluForward({ n, x, y: y2, approximate: 'erf' });
    expectSame(y1, y2);
  });

  test.each(['erf', 'tanh'] as const)('%s backward against finite differences', (approximate) => {
    const n = 64, x = randn(n, 11, 2), y = new Float32Array(n), dy = new Float32Array(n).fill(1),
      dx = new Float32Array(n);
    be.addon.geluBackward({ n, x, dy, dx, approximate });
    // Element-wise: differentiate y[i] alone, so the fp32 noise is that of one output (~6e-8/2h).
    const fd = Array.from(x, (_, i) => finiteDiff(() => {
      be.addon.geluForward({ n, x, y, approximate });
      return y[i];
    }, x, i, H));
    fail(`${approximate} dx vs FD`, relError(dx, fd), FD_TOL);
  });
}));

forEachBackend((be) => describe('cross-entropy', () => {
  // CUDA: block per row, exp sums in double (expf vs the CPU exp: ~1e-7): the fp32 bound.
  const tol = be.tol({ cpu: FP32_TOL, cuda: FP32_TOL });

  const SHAPES: Array<[number, number]> = [[1, 1], [1, 7], [7, 13], [13, 97], [33, 300], [5, 1000], [70, 3]];

  function targetsFor(rows: number, vocab: number, seed: number, ignoreEvery = 4): Int32Array {
    const r = rng(seed), t = new Int32Array(rows);
    for (let i = 0; i < rows; i++) t[i] = i % ignoreEvery === ignoreEvery - 1 ? -1 : Math.floor(r() * vocab);
    return t;
  }

  test('loss, per-row losses and dlogits match the reference, with ignored targets', () => {
    be.forEachConfig((isa, threads) => {
      let seed = 1;
      for (const [rows, vocab] of SHAPES)
        for (const gradScale of [1, 0.25]) {
          const logits = randn(rows * vocab, seed++, 3), targets = targetsFor(rows, vocab, seed++);
          const dlogits = new Float32Array(rows * vocab).fill(NaN), losses = new Float32Array(rows).fill(NaN);
          const loss = be.addon.crossEntropy({ rows, vocab, logits, targets, dlogits, losses, gradScale });
          const ref = crossEntropyRef(rows, vocab, logits, targets, gradScale);
          const what = `${isa} t=${threads} ${rows}x${vocab} scale ${gradScale}`;
          fail(`${what} loss`, Math.abs(loss - ref.loss) / Math.max(1e-30, Math.abs(ref.loss)), tol);
          fail(`${what} losses`, relError(losses, ref.losses), tol);
          fail(`${what} dlogits`, relError(dlogits, ref.dlogits), tol);
          // In place over the logits, and loss only.
          const inPlace = logits.slice();
          expect(be.addon.crossEntropy({ rows, vocab, logits: inPlace, targets, dlogits: inPlace, gradScale }))
            .toBe(loss);
          expectSame(inPlace, dlogits);
          expect(be.addon.crossEntropy({ rows, vocab, logits, targets })).toBe(loss);
        }
    }, [1, 2, 4]);
  });

  test('all targets ignored: loss 0, zero gradient, no NaN', () => {
    const rows = 9, vocab = 17, logits = randn(rows * vocab, 3);
    const dlogits = new Float32Array(rows * vocab).fill(NaN), losses = new Float32Array(rows).fill(NaN);
    const targets = new Int32Array(rows).fill(-1);
    const loss = be.addon.crossEntropy({ rows, vocab, logits, targets, dlogits, losses });
    expect(loss).toBe(0);
    expect(dlogits.every((v) => v === 0)).toBe(true);
    expect(losses.every((v) => v === 0)).toBe(true);
    expect(be.addon.crossEntropy({ rows: 0, vocab, logits: new Float32Array(0), targets: new Int32Array(0) })).toBe(0);
  });

  test('large logits are stable (max-subtracted)', () => {
    for (const scale of [1e4, 1e30]) {
      const rows = 11, vocab = 97, logits = randn(rows * vocab, 5, scale), targets = targetsFor(rows, vocab, 6);
      const dlogits = new Float32Array(rows * vocab);
      const loss = be.addon.crossEntropy({ rows, vocab, logits, targets, dlogits });
      const ref = crossEntropyRef(rows, vocab, logits, targets);
      expect(Number.isFinite(loss)).toBe(true);
      expect(dlogits.every(Number.isFinite)).toBe(true);
      fail(`scale ${scale} loss`, Math.abs(loss - ref.loss) / Math.abs(ref.loss), tol);
      fail(`scale ${scale} dlogits`, relError(dlogits, ref.dlogits), tol);
    }
  });

  test('dlogits against finite differences of the mean loss', () => {
    const rows = 6, vocab = 11, logits = randn(rows * vocab, 7, 2), targets = targetsFor(rows, vocab, 8, 3);
    const dlogits = new Float32Array(rows * vocab);
    be.addon.crossEntropy({ rows, vocab, logits, targets, dlogits });
    const f = () => be.addon.crossEntropy({ rows, vocab, logits, targets });
    const fd = Array.from(logits, (_, i) => finiteDiff(f, logits, i, H));
    // The loss is summed in double, so the only errors are the O(h²) truncation (~1e-7 here) and
    // fp32 rounding of the perturbed logit; FD_TOL is ample.
    fail('dlogits vs FD', relError(dlogits, fd), FD_TOL);
  });

  test('the mean loss is bit-identical for every thread count', () => {
    // Per ISA: the AVX-512 exp polynomial and libm's exp differ in the last bit, so results are
    // compared across thread counts within one instruction set.
    const rows = 500, vocab = 40, logits = randn(rows * vocab, 9, 4), targets = targetsFor(rows, vocab, 10);
    const losses = new Map<string, Set<number>>();
    be.forEachConfig((isa) => {
      if (!losses.has(isa)) losses.set(isa, new Set());
      losses.get(isa)!.add(be.addon.crossEntropy({ rows, vocab, logits, targets }));
    });
    for (const set of losses.values()) expect(set.size).toBe(1);
  });
}));

forEachBackend((be) => describe('adamw', () => {
  // CUDA: the CPU fp32 formula; FMA contraction and sqrtf may differ by an ulp per step: twice the fp32 bound.
  const tol = be.tol({ cpu: FP32_TOL, cuda: 2e-5 });

  /** max|p − ref| / max(lr, max|ref − before|): the error relative to the step's scale. */
  function updateError(param: Float32Array, before: Float64Array, ref: Float64Array, lr: number): number {
    let err = 0, scale = lr;
    for (let i = 0; i < param.length; i++) {
      err = Math.max(err, Math.abs(param[i] - ref[i]));
      scale = Math.max(scale, Math.abs(ref[i] - before[i]));
    }
    return err / scale;
  }

  test('matches the reference over several steps (with and without weight decay)', () => {
    be.forEachConfig((isa, threads) => {
      let seed = 1;
      for (const n of [1, 7, 97, 1000, 70000])
        for (const weightDecay of [0, 0.1]) {
          const o = { lr: 0.05, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay };
          const param = randn(n, seed++), m = new Float32Array(n), v = new Float32Array(n);
          const run = { param: new Float64Array(param), m: new Float64Array(n), v: new Float64Array(n) };
          for (let step = 1; step <= 5; step++) {
            const what = `${isa} t=${threads} n=${n} wd=${weightDecay} step ${step}`;
            const grad = randn(n, seed++, step === 3 ? 1e-6 : 1); // a tiny gradient: eps matters
            // This step from the kernel's own state. The error of p is measured against the size of
            // the step, not of p (which would hide it): an Adam step is lr·O(1) per element, and
            // dividing by lr rather than by the step itself keeps a step whose decay and gradient
            // terms cancel from turning p's own fp32 rounding (half an ulp) into a large ratio.
            const before = new Float64Array(param);
            const ref = { param: new Float64Array(param), m: new Float64Array(m), v: new Float64Array(v) };
            be.addon.adamwUpdate({ n, param, grad, m, v, ...o, step });
            adamwRef(ref, grad, { ...o, step });
            adamwRef(run, grad, { ...o, step });
            fail(`${what} update`, updateError(param, before, ref.param, o.lr), tol);
            fail(`${what} m`, relError(m, ref.m), tol);
            fail(`${what} v`, relError(v, ref.v), tol);
          }
          // And the whole run against an independent double-precision run.
          for (const [name, got, want] of [['param', param, run.param], ['m', m, run.m], ['v', v, run.v]] as const)
            fail(`${isa} t=${threads} n=${n} wd=${weightDecay} 5 steps ${name}`, relError(got, want), tol);
        }
    }, [1, 3]); // no ISA-specific code; 70000 > one 65536-element chunk, so 3 threads split it
  });

  test('late steps (bias correction ~ 1) and lr 0', () => {
    const n = 33, o = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1000000 };
    const param = randn(n, 1), grad = randn(n, 2), m = randn(n, 3, 0.1), v = randArray(n, 4, 0.01).map(Math.abs);
    const ref = { param: new Float64Array(param), m: new Float64Array(m), v: new Float64Array(v) };
    const p0 = new Float64Array(param);
    be.addon.adamwUpdate({ n, param, grad, m, v, ...o });
    adamwRef(ref, grad, o);
    fail('late update', updateError(param, p0, ref.param, o.lr), tol);
    const frozen = param.slice();
    be.addon.adamwUpdate({ n, param, grad, m, v, ...o, lr: 0 });
    expectSame(param, frozen);
  });
}));

forEachBackend((be) => describe('gradient norm and clipping', () => {
  // CUDA: sum_squares in double over fixed 4096-element blocks, then a fixed-order sum: the fp32 bound.
  const tol = be.tol({ cpu: FP32_TOL, cuda: FP32_TOL });

  const sizes = [1, 7, 97, 70000, 200000];
  const make = (seed: number) => sizes.map((n, i) => randn(n, seed + i, 0.01));

  test('gradNorm matches the reference and is bit-identical for every thread count', () => {
    const tensors = make(1), ref = globalNormRef(tensors);
    const norms: number[] = [];
    be.forEachConfig(() => {
      norms.push(be.addon.gradNorm({ tensors }));
    });
    // Double accumulation in a different order than the reference: agreement to ~1e-14.
    expect(Math.abs(norms[0] - ref) / ref).toBeLessThan(1e-12);
    expect(new Set(norms).size).toBe(1);
    expect(be.addon.gradNorm({ tensors: [] })).toBe(0);
  });

  test('clipGradNorm scales all tensors to maxNorm only when the norm exceeds it', () => {
    be.forEachConfig(() => {
      const tensors = make(10), before = tensors.map((t) => t.slice());
      const norm = be.addon.gradNorm({ tensors });
      // Above the norm: untouched.
      expect(be.addon.clipGradNorm({ tensors, maxNorm: norm * 1.01 })).toBe(norm);
      tensors.forEach((t, i) => expectSame(t, before[i]));
      // Below: every tensor scaled by maxNorm/norm; the returned norm is the one before clipping.
      const maxNorm = norm / 3;
      expect(be.addon.clipGradNorm({ tensors, maxNorm })).toBe(norm);
      const s = Math.fround(maxNorm / norm);
      tensors.forEach((t, i) => expectSame(t, before[i].map((v) => v * s)));
      expect(Math.abs(be.addon.gradNorm({ tensors }) - maxNorm) / maxNorm).toBeLessThan(tol);
    }, [1, 3]);
  });

  test('a non-finite norm is returned and the tensors are left alone', () => {
    const a = randn(10, 1), b = Float32Array.of(1, Infinity, 2);
    const a0 = a.slice();
    expect(be.addon.clipGradNorm({ tensors: [a, b], maxNorm: 1 })).toBe(Infinity);
    expectSame(a, a0);
    expect(Number.isNaN(be.addon.gradNorm({ tensors: [Float32Array.of(NaN)] }))).toBe(true);
  });
}));

describe('nn bad arguments are JavaScript errors naming the argument', () => {
  const f = (n: number) => new Float32Array(n);
  const rms = () => ({ rows: 2, dim: 3, x: f(6), w: f(3), eps: 1e-5, y: f(6), rstd: f(2) });
  const rmsB = () => ({ rows: 2, dim: 3, x: f(6), w: f(3), rstd: f(2), dy: f(6), dx: f(6), dw: f(3) });
  const rope = () => ({ rows: 2, heads: 1, headDim: 4, theta: 10000, positions: Int32Array.of(0, 1), x: f(8) });
  const ce = () => ({ rows: 2, vocab: 5, logits: f(10), targets: Int32Array.of(1, -1), dlogits: f(10) });
  const adam = () => ({ n: 3, param: f(3), grad: f(3), m: f(3), v: f(3), lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8,
    step: 1 });
  test.each([
    ['rmsnorm eps 0', () => addon.rmsnormForward({ ...rms(), eps: 0 }), 'RangeError',
      /rmsnormForward: eps must be > 0/],
    ['rmsnorm dim 0', () => addon.rmsnormForward({ ...rms(), dim: 0 }), 'RangeError', /rmsnormForward: dim must be in/],
    ['rmsnorm x short', () => addon.rmsnormForward({ ...rms(), x: f(5) }), 'RangeError',
      /rmsnormForward: x has 5 elements/],
    ['rmsnorm rstd short', () => addon.rmsnormForward({ ...rms(), rstd: f(1) }), 'RangeError',
      /rmsnormForward: rstd has 1/],
    ['rmsnormBackward rstd missing', () => addon.rmsnormBackward({ ...rmsB(),
      rstd: undefined as unknown as Float32Array }), 'TypeError', /rmsnormBackward: rstd is missing/],
    ['rmsnormBackward dw short', () => addon.rmsnormBackward({ ...rmsB(), dw: f(2) }), 'RangeError',
      /rmsnormBackward: dw has 2/],
    ['rope odd headDim', () => addon.ropeForward({ ...rope(), headDim: 3 }), 'RangeError',
      /ropeForward: headDim must be even/],
    ['rope headDim 0', () => addon.ropeBackward({ ...rope(), headDim: 0, dy: f(8) }), 'RangeError',
      /ropeBackward: headDim must be in/],
    ['rope negative position', () => addon.ropeForward({ ...rope(), positions: Int32Array.of(0, -3) }), 'RangeError',
      /ropeForward: positions\[1\] must be >= 0/],
    ['rope positions wrong type', () => addon.ropeForward({ ...rope(), positions: f(2) as unknown as Int32Array }),
      'TypeError', /ropeForward: positions must be a/],
    ['rope theta 0', () => addon.ropeForward({ ...rope(), theta: 0 }), 'RangeError', /ropeForward: theta must be > 0/],
    ['rope out short', () => addon.ropeForward({ ...rope(), out: f(7) }), 'RangeError', /ropeForward: out has 7/],
    ['gelu bad approximate', () => addon.geluForward({ n: 2, x: f(2), y: f(2), approximate: 'none' as 'erf' }),
      'RangeError', /geluForward: approximate must be 'erf' or 'tanh'/],
    ['gelu approximate not a string', () => addon.geluBackward({ n: 2, x: f(2), dy: f(2), dx: f(2),
      approximate: 1 as unknown as 'erf' }), 'TypeError', /geluBackward: approximate must be a string/],
    ['gelu dx short', () => addon.geluBackward({ n: 2, x: f(2), dy: f(2), dx: f(1) }), 'RangeError',
      /geluBackward: dx has 1/],
    ['ce target >= vocab', () => addon.crossEntropy({ ...ce(), targets: Int32Array.of(0, 5) }), 'RangeError',
      /crossEntropy: targets\[1\] = 5 is out of range for vocab 5/],
    ['ce vocab 0', () => addon.crossEntropy({ ...ce(), vocab: 0 }), 'RangeError', /crossEntropy: vocab must be in/],
    ['ce dlogits short', () => addon.crossEntropy({ ...ce(), dlogits: f(9) }), 'RangeError',
      /crossEntropy: dlogits has 9/],
    ['ce targets short', () => addon.crossEntropy({ ...ce(), targets: Int32Array.of(1) }), 'RangeError',
      /crossEntropy: targets has 1/],
    ['adamw lr < 0', () => addon.adamwUpdate({ ...adam(), lr: -1 }), 'RangeError', /adamwUpdate: lr must be >= 0/],
    ['adamw lr missing', () => addon.adamwUpdate({ ...adam(), lr: undefined as unknown as number }), 'TypeError',
      /adamwUpdate: lr is missing/],
    ['adamw beta1 1', () => addon.adamwUpdate({ ...adam(), beta1: 1 }), 'RangeError',
      /adamwUpdate: beta1 must be in \[0, 1\)/],
    ['adamw beta2 < 0', () => addon.adamwUpdate({ ...adam(), beta2: -0.1 }), 'RangeError',
      /adamwUpdate: beta2 must be in \[0, 1\)/],
    ['adamw eps 0', () => addon.adamwUpdate({ ...adam(), eps: 0 }), 'RangeError', /adamwUpdate: eps must be > 0/],
    ['adamw step 0', () => addon.adamwUpdate({ ...adam(), step: 0 }), 'RangeError', /adamwUpdate: step must be in/],
    ['adamw weightDecay < 0', () => addon.adamwUpdate({ ...adam(), weightDecay: -0.1 }), 'RangeError',
      /adamwUpdate: weightDecay must be >= 0/],
    ['adamw v short', () => addon.adamwUpdate({ ...adam(), v: f(2) }), 'RangeError', /adamwUpdate: v has 2/],
    ['gradNorm tensors not an array', () => addon.gradNorm({ tensors: f(3) as unknown as Float32Array[] }), 'TypeError',
      /gradNorm: tensors must be an array of Float32Array/],
    ['gradNorm tensors[1] wrong type', () => addon.gradNorm({ tensors: [f(1),
      new Float64Array(1) as unknown as Float32Array] }), 'TypeError', /gradNorm: tensors\[1\] must be a Float32Array/],
    ['clipGradNorm maxNorm 0', () => addon.clipGradNorm({ tensors: [f(1)], maxNorm: 0 }), 'RangeError',
      /clipGradNorm: maxNorm must be > 0/],
  ] as const)('%s', (_name, call, type, message) => {
    expectNativeError(call, type, message);
  });

  test('async variant rejects bad arguments synchronously with the same error', () => {
    expectNativeError(() => addon.ropeForwardAsync({ ...rope(), headDim: 5 }), 'RangeError',
      /ropeForward: headDim must be even/);
  });
});
