// Routing kernels against the double references (test/reference/routing.ts), on every ISA and thread
// count 1..4; backward kernels also against central finite differences; bad arguments.
import { addon, expectNativeError, finiteDiff, FP32_TOL, forEachBackend, randArray, randn, relError,
  rng } from '../helpers';
import type { NativeAddon } from '../../src/native/addon';
import {
  combineBackwardRef, expertScoresBackwardRef, gatherRowsRef, groupByExpertRef, miLossRef, type Pairs, rankExperts,
  softmaxBackwardRef, softmaxRef, sumPairsRef, switchLossRef, thresholdCountRef, thresholdRef, thresholdTopkRef,
  topkRef,
} from '../reference/routing';

const TS = [1, 2, 7, 97];
const ES = [1, 2, 3, 8, 13];
const DS = [1, 5, 33];
const EPS = [-1, 0, 0.48, 1, 2.5, 100];

/**
 * Rounds to multiples of q = 2^-16. Finite differences then step by a power of two (2^-10 or
 * 2^-14) exactly in fp32, so the step the function sees is the step we divide by.
 */
function quantize(a: Float32Array, q = 2 ** -16): Float32Array {
  return a.map((v) => Math.round(v / q) * q);
}

/** The addon of the backend whose suite is running (set by each forEachBackend block's beforeAll):
 * the op helpers below (topk, threshold, thresholdTopk, group, miLoss) run on it; input generators
 * (softmax, sparsePairs) stay on the CPU. */
let k: NativeAddon = addon;

function softmax(T: number, E: number, seed: number, scale = 2): Float32Array {
  const probs = new Float32Array(T * E);
  addon.routerSoftmax({ t: T, experts: E, logits: randn(T * E, seed, scale), probs });
  return probs;
}

/** Native pair lists as plain arrays (the first P entries). */
interface NativePairs { P: number; token: Int32Array; expert: Int32Array; weight: Float32Array }
function pairsOf(n: number) {
  return { pairToken: new Int32Array(n), pairExpert: new Int32Array(n), pairWeight: new Float32Array(n) };
}
function trim(o: ReturnType<typeof pairsOf>, P: number): NativePairs {
  return { P, token: o.pairToken.slice(0, P), expert: o.pairExpert.slice(0, P), weight: o.pairWeight.slice(0, P) };
}
function topk(T: number, E: number, probs: Float32Array, kk: number, kernels = k): NativePairs {
  const o = pairsOf(T * kk);
  kernels.routeTopk({ t: T, experts: E, probs, k: kk, ...o });
  return trim(o, T * kk);
}
function threshold(T: number, E: number, probs: Float32Array, eps: number, kernels = k): NativePairs {
  const o = pairsOf(T * E), out = new Int32Array(1);
  kernels.routeThreshold({ t: T, experts: E, probs, eps, out, ...o });
  return trim(o, out[0]);
}
function thresholdTopk(T: number, E: number, probs: Float32Array, eps: number): { K: number; pairs: NativePairs } {
  const o = pairsOf(T * E), out = new Int32Array(1);
  k.routeThresholdTopk({ t: T, experts: E, probs, eps, out, ...o });
  return { K: out[0], pairs: trim(o, T * out[0]) };
}
function group(E: number, pairExpert: Int32Array) {
  const P = pairExpert.length;
  const g = { offsets: new Int32Array(E + 1), order: new Int32Array(P), position: new Int32Array(P) };
  k.groupByExpert({ pairs: P, experts: E, pairExpert, ...g });
  return g;
}

function expectPairs(got: NativePairs, ref: Pairs, what: string): void {
  const same = got.P === ref.token.length && Array.from(got.token).every((v, i) => v === ref.token[i]) &&
    Array.from(got.expert).every((v, i) => v === ref.expert[i]) && Array.from(got.weight).every((v,
    i) => v === ref.weight[i]);
  if (!same) throw new Error(`${what}: pairs differ\n got ` +
    `${JSON.stringify([Array.from(got.token), Array.from(got.expert)])}\n ref ` +
      `${JSON.stringify([ref.token, ref.expert])}`);
}

/** Scores with many ties: values from a few levels (routing does not need them to sum to 1). */
function tiedScores(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => [0.125, 0.25, 0.5][Math.floor(r() * 3)]);
}

forEachBackend((be) => describe('router softmax', () => {
  beforeAll(() => { k = be.addon; });
  // CUDA: warp per token, sums in double (expf vs the CPU exp: 2 ulp): the fp32 bound.
  const tol = be.tol({ cpu: FP32_TOL, cuda: FP32_TOL });

  test('forward and backward match the reference for all sizes and thread counts', () => {
    be.forEachConfig((isa, threads) => {
      let seed = 1;
      for (const T of TS)
        for (const E of ES) {
          const logits = randn(T * E, seed++, 3), probs = new Float32Array(T * E);
          be.addon.routerSoftmax({ t: T, experts: E, logits, probs });
          const err = relError(probs, softmaxRef(T, E, logits));
          const dprobs = randn(T * E, seed++), dlogits = new Float32Array(T * E);
          be.addon.routerSoftmaxBackward({ t: T, experts: E, probs, dprobs, dlogits });
          const errB = relError(dlogits, softmaxBackwardRef(T, E, probs, dprobs));
          if (!(err <= tol && errB <= tol))
            throw new Error(`${isa} t=${threads} T=${T} E=${E}: forward ${err}, backward ${errB}`);
        }
    });
  });

  test('is stable for huge logits and rows sum to 1', () => {
    const T = 3, E = 5;
    const logits = Float32Array.from([1e30, 0, -1e30, 88, 89, 1000, 1000, 1000, 1000, 1000, -1e4, -1e4 + 1, -1e4, -1e4,
      -1e4]);
    const probs = new Float32Array(T * E);
    be.addon.routerSoftmax({ t: T, experts: E, logits, probs });
    expect(relError(probs, softmaxRef(T, E, logits))).toBeLessThanOrEqual(tol);
    for (let t = 0; t < T; t++) expect(Math.abs(probs.slice(t * E, t * E + E).reduce((a, b) => a +
      b) - 1)).toBeLessThan(1e-6);
  });

  test('backward against finite differences of a double-precision loss Σ c·softmax(x)', () => {
    const T = 7, E = 8;
    const x = quantize(randn(T * E, 5, 2)), c = randn(T * E, 6);
    const loss = () => softmaxRef(T, E, x).reduce((a, p, i) => a + c[i] * p, 0);
    const probs = new Float32Array(T * E), dlogits = new Float32Array(T * E);
    be.addon.routerSoftmax({ t: T, experts: E, logits: x, probs });
    be.addon.routerSoftmaxBackward({ t: T, experts: E, probs, dprobs: c, dlogits });
    const fd = Array.from(x, (_, i) => finiteDiff(loss, x, i, 2 ** -10));
    // Central differences err by h²/6·|f'''| ≈ 2e-7 relative here; the kernel adds fp32 rounding.
    expect(relError(dlogits, fd)).toBeLessThanOrEqual(1e-5);
  });
}));

forEachBackend((be) => describe('selection', () => {
  beforeAll(() => { k = be.addon; });
  // Selection is comparisons and copies: exact (no tolerance) on every backend, the threshold routings
  // included (CUDA: integer counts and scan, pairs placed by rank; routing_extra.cu).

  test('top-k for every k, all sizes, random and tied scores, every thread count', () => {
    be.forEachConfig((isa, threads) => {
      let seed = 10;
      for (const T of TS)
        for (const E of ES)
          for (const probs of [softmax(T, E, seed++), tiedScores(T * E, seed++)])
            for (let k = 1; k <= E; k++)
              expectPairs(topk(T, E, probs, k), topkRef(T, E, probs, k), `${isa} t=${threads} T=${T} E=${E} k=${k}`);
    });
  });

  test('ties go to the lower expert index; NaN scores rank last', () => {
    const probs = Float32Array.from([0.25, 0.5, 0.25, 0.5, /* */ NaN, 0.1, NaN, 0.1]);
    const p = topk(2, 4, probs, 4);
    expect(Array.from(p.expert)).toEqual([1, 3, 0, 2, 1, 3, 0, 2]);
    expect(Array.from(p.token)).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
  });

  test('top-k with k = E is dense: every expert of every token, weighted by its raw probability', () => {
    const T = 7, E = 13, probs = softmax(T, E, 3);
    const p = topk(T, E, probs, E);
    for (let t = 0; t < T; t++) {
      const experts = Array.from(p.expert.slice(t * E, (t + 1) * E));
      expect([...experts].sort((a, b) => a - b)).toEqual(Array.from({ length: E }, (_, e) => e));
      experts.forEach((e, j) => expect(p.weight[t * E + j]).toBe(probs[t * E + e]));
    }
  });

  be.test('threshold matches the reference for all sizes, eps and thread counts', ['routeThreshold'], () => {
    be.forEachConfig((isa, threads) => {
      let seed = 20;
      for (const T of TS)
        for (const E of ES)
          for (const probs of [softmax(T, E, seed++), tiedScores(T * E, seed++)])
            for (const eps of EPS)
              expectPairs(threshold(T, E, probs, eps), thresholdRef(T, E, probs, eps),
                `${isa} t=${threads} T=${T} E=${E} eps=${eps}`);
    });
  });

  be.test('threshold selects exactly the experts with E·S_e > eps, at least the best one', ['routeThreshold'],
    () => {
      const T = 97, E = 8, probs = softmax(T, E, 30, 3);
      for (const eps of [0.3, 0.48, 1, 3]) {
        const p = threshold(T, E, probs, eps);
        for (let t = 0; t < T; t++) {
          const chosen = Array.from(p.expert.filter((_, i) => p.token[i] === t)).sort((a, b) => a - b);
          const above = Array.from({ length: E }, (_, e) => e).filter((e) => E * probs[t * E + e] > eps);
          expect(chosen).toEqual(above.length > 0 ? above : [rankExperts(E, probs, t)[0]]);
        }
      }
      // Strictly greater: E·S = 1 does not pass eps = 1, so only the best (lowest index on a tie) is kept.
      const flat = new Float32Array(8).fill(0.25);
      expect(Array.from(threshold(2, 4, flat, 1).expert)).toEqual([0, 0]);
      expect(threshold(2, 4, flat, 0.999).P).toBe(8);
    });

  be.test('threshold:0 is dense (positive scores)', ['routeThreshold'], () => {
    const T = 7, E = 13, probs = softmax(T, E, 31);
    expectPairs(threshold(T, E, probs, 0), topkRef(T, E, probs, E), 'threshold:0');
  });

  be.test('threshold-topk: K = round(mean threshold count), half up, clamped to [1, E]', ['routeThresholdTopk'],
    () => {
      be.forEachConfig(() => {
        let seed = 40;
        for (const T of TS)
          for (const E of ES)
            for (const eps of EPS) {
              const probs = softmax(T, E, seed++);
              const got = thresholdTopk(T, E, probs, eps), ref = thresholdTopkRef(T, E, probs, eps);
              expect(got.K).toBe(ref.K);
              expectPairs(got.pairs, ref.pairs, `T=${T} E=${E} eps=${eps}`);
            }
      }, [1, 3]);
      // counts 2 and 1: mean 1.5 rounds up to 2; counts 1, 1, 2: mean 1.33 rounds to 1.
      const two = Float32Array.from([0.4, 0.4, 0.1, 0.1, 0.7, 0.1, 0.1, 0.1]);
      expect([0, 1].map((t) => thresholdCountRef(4, two, t, 1))).toEqual([2, 1]);
      expect(thresholdTopk(2, 4, two, 1).K).toBe(2);
      const three = Float32Array.from([0.7, 0.1, 0.1, 0.1, 0.1, 0.7, 0.1, 0.1, 0.4, 0.4, 0.1, 0.1]);
      expect(thresholdTopk(3, 4, three, 1).K).toBe(1);
      expect(thresholdTopk(3, 4, three, -1).K).toBe(4);
      expect(thresholdTopk(3, 4, three, 100).K).toBe(1);
    });
}));

/** A token-major pair list where some experts and some tokens get no pairs at all. */
function sparsePairs(T: number, E: number, seed: number): NativePairs {
  const probs = softmax(T, E, seed, 2);
  const skew = probs.map((p, i) => (i % E) % 3 === 1 ? 0 : p);  // experts 1, 4, 7, … never chosen
  const all = threshold(T, E, skew, 0.9, addon);
  const keep = Array.from(all.token, (t) => t % 3 !== 2);  // tokens 2, 5, 8, … have no pairs
  const pick = <A extends Int32Array | Float32Array>(a: A) => a.filter((_, i) => keep[i]) as A;
  return { P: keep.filter(Boolean).length, token: pick(all.token), expert: pick(all.expert), weight: pick(all.weight) };
}

forEachBackend((be) => describe('grouping, gather and combine', () => {
  beforeAll(() => { k = be.addon; });
  // CUDA: gathers are exact copies; combine sums in pair order (nvcc may fuse w·yg + acc into one FMA),
  // combine backward dots in double: the fp32 bound.
  const tol = be.tol({ cpu: FP32_TOL, cuda: FP32_TOL });

  test('group by expert: stable, offsets, inverse; empty groups', () => {
    be.forEachConfig(() => {
      let seed = 50;
      for (const T of TS)
        for (const E of ES) {
          for (const pairs of [sparsePairs(T, E, seed++), topk(T, E, softmax(T, E, seed++), Math.min(2, E))]) {
            const g = group(E, pairs.expert), ref = groupByExpertRef(E, pairs.expert);
            expect(Array.from(g.offsets)).toEqual(ref.offsets);
            expect(Array.from(g.order)).toEqual(ref.order);
            expect(Array.from(g.position)).toEqual(ref.position);
          }
        }
    }, [1, 4]);
    const g = group(5, Int32Array.from([3, 0, 3, 3, 0]));
    expect(Array.from(g.offsets)).toEqual([0, 2, 2, 2, 5, 5]);  // experts 1, 2 and 4 are empty
    expect(Array.from(g.order)).toEqual([1, 4, 0, 2, 3]);
    expect(Array.from(g.position)).toEqual([2, 0, 3, 4, 1]);
    expect(Array.from(group(3, new Int32Array(0)).offsets)).toEqual([0, 0, 0, 0]);
  });

  test('gather, gather backward and combine match the reference (beta 0, 1, 0.5; tokens without pairs)', () => {
    be.forEachConfig((isa, threads) => {
      let seed = 60;
      for (const T of TS)
        for (const E of ES)
          for (const D of DS) {
            const pr = sparsePairs(T, E, seed++), P = pr.P;
            const { order, position } = group(E, pr.expert);
            const where = `${isa} t=${threads} T=${T} E=${E} D=${D} P=${P}`;
            const x = randArray(T * D, seed++), xg = new Float32Array(P * D);
            be.addon.gatherRows({ t: T, pairs: P, d: D, x, pairToken: pr.token, order, xg });
            if (relError(xg, gatherRowsRef(D, x, pr.token, order)) !== 0) throw new Error(`${where}: gather`);
            for (const beta of [0, 1, 0.5]) {
              const dx0 = beta === 0 ? new Float32Array(T * D).fill(NaN) : randArray(T * D, seed++);
              const dx = dx0.slice(), dxg = randArray(P * D, seed++);
              be.addon.gatherRowsBackward({ t: T, pairs: P, d: D, dxg, pairToken: pr.token, position, dx, beta });
              const e1 = relError(dx, sumPairsRef(T, D, dxg, pr.token, position, undefined, beta, dx0));
              const y0 = beta === 0 ? new Float32Array(T * D).fill(NaN) : randArray(T * D, seed++);
              const y = y0.slice(), yg = randArray(P * D, seed++);
              be.addon.combine({ t: T, pairs: P, n: D, yg, pairToken: pr.token, pairWeight: pr.weight, position, y,
                beta });
              const e2 = relError(y, sumPairsRef(T, D, yg, pr.token, position, pr.weight, beta, y0));
              if (!(e1 <= tol && e2 <= tol)) throw new Error(`${where} beta=${beta}: backward ${e1}, ` +
                `combine ${e2}`);
            }
          }
    });
  });

  test('combine backward matches the reference', () => {
    be.forEachConfig((isa, threads) => {
      let seed = 70;
      for (const T of TS)
        for (const E of ES)
          for (const N of DS) {
            const pr = sparsePairs(T, E, seed++), P = pr.P;
            const { position } = group(E, pr.expert);
            const dy = randArray(T * N, seed++), yg = randArray(P * N, seed++);
            const dyg = new Float32Array(P * N).fill(NaN), dweight = new Float32Array(P).fill(NaN);
            be.addon.combineBackward({ t: T, pairs: P, n: N, dy, yg, pairToken: pr.token, pairWeight: pr.weight,
              position, dyg, dweight });
            const ref = combineBackwardRef(N, dy, yg, pr.token, pr.weight, position);
            const e1 = relError(dyg, ref.dyg), e2 = relError(dweight, ref.dweight);
            if (!(e1 <= tol && e2 <= tol)) throw new Error(`${isa} t=${threads} T=${T} E=${E} N=${N}: dyg ` +
              `${e1}, dweight ${e2}`);
          }
    });
  });

  test('route → group → gather → per-expert op → combine equals the dense mixture when k = E', () => {
    const T = 97, E = 8, D = 33;
    const probs = softmax(T, E, 80), x = randArray(T * D, 81);
    const pr = topk(T, E, probs, E), P = pr.P;
    const { order, position } = group(E, pr.expert);
    const xg = new Float32Array(P * D);
    be.addon.gatherRows({ t: T, pairs: P, d: D, x, pairToken: pr.token, order, xg });
    // "expert e" multiplies its rows by e + 1
    for (let i = 0; i < P; i++) for (let d = 0; d < D; d++) xg[i * D + d] *= pr.expert[order[i]] + 1;
    const y = new Float32Array(T * D);
    be.addon.combine({ t: T, pairs: P, n: D, yg: xg, pairToken: pr.token, pairWeight: pr.weight, position, y });
    const ref = new Float64Array(T * D);
    for (let t = 0; t < T; t++)
      for (let e = 0; e < E; e++) for (let d = 0; d < D; d++) ref[t * D + d] += probs[t * E + e] * (e + 1) * x[t * D +
        d];
    expect(relError(y, ref)).toBeLessThanOrEqual(tol);
  });

  test('gather and combine backward against finite differences of double-precision losses', () => {
    const T = 7, E = 3, D = 5;
    const pr = sparsePairs(T, E, 90), P = pr.P;
    const { order, position } = group(E, pr.expert);
    const weight = quantize(pr.weight);
    // gather: L(x) = Σ c ⊙ gather(x)
    const x = quantize(randArray(T * D, 91)), c = randArray(P * D, 92);
    const lossG = () => gatherRowsRef(D, x, pr.token, order).reduce((a, v, i) => a + c[i] * v, 0);
    const dx = new Float32Array(T * D);
    be.addon.gatherRowsBackward({ t: T, pairs: P, d: D, dxg: c, pairToken: pr.token, position, dx });
    // L is linear in x: central differences are exact up to double rounding.
    expect(relError(dx, Array.from(x, (_, i) => finiteDiff(lossG, x, i, 2 ** -10)))).toBeLessThanOrEqual(tol);
    // combine: L(yg, w) = Σ dy ⊙ combine(yg, w)
    const yg = quantize(randArray(P * D, 93)), dy = randArray(T * D, 94);
    const lossC = () => sumPairsRef(T, D, yg, pr.token, position, weight).reduce((a, v, i) => a + dy[i] * v, 0);
    const dyg = new Float32Array(P * D), dweight = new Float32Array(P);
    be.addon.combineBackward({ t: T, pairs: P, n: D, dy, yg, pairToken: pr.token, pairWeight: weight, position, dyg,
      dweight });
    // L is linear in each of yg and w separately: exact up to double rounding.
    expect(relError(dyg, Array.from(yg, (_, i) => finiteDiff(lossC, yg, i, 2 ** -10)))).toBeLessThanOrEqual(tol);
    expect(relError(dweight, Array.from(weight, (_, i) => finiteDiff(lossC, weight, i,
      2 ** -10)))).toBeLessThanOrEqual(tol);
  });
}));

forEachBackend((be) => describe('dense-training expert scores backward', () => {
  beforeAll(() => { k = be.addon; });
  // CUDA: warp per (token, expert), dot in double: the fp32 bound.
  const tol = be.tol({ cpu: FP32_TOL, cuda: FP32_TOL });

  test('matches the reference; dg may be the same array as pe', () => {
    be.forEachConfig((isa, threads) => {
      let seed = 100;
      for (const T of TS)
        for (const E of ES)
          for (const F of DS) {
            const s = softmax(T, E, seed++), pe = randArray(T * E * F, seed++), g = randArray(T * E * F, seed++);
            const ds = new Float32Array(T * E), dg = new Float32Array(T * E * F);
            be.addon.expertScoresBackward({ t: T, experts: E, f: F, s, pe, g, ds, dg });
            const ref = expertScoresBackwardRef(T, E, F, s, pe, g);
            const e1 = relError(ds, ref.ds), e2 = relError(dg, ref.dg);
            const inPlace = pe.slice(), ds2 = new Float32Array(T * E);
            be.addon.expertScoresBackward({ t: T, experts: E, f: F, s, pe: inPlace, g, ds: ds2, dg: inPlace });
            if (!(e1 <= tol && e2 <= tol) || relError(inPlace, dg) !== 0 || relError(ds2, ds) !== 0)
              throw new Error(`${isa} t=${threads} T=${T} E=${E} F=${F}: ds ${e1}, dg ${e2}, or in-place differs`);
          }
    });
  });

  test('against finite differences of L(s, g) = Σ s[t,e]·pe[t,e]·g[t,e]', () => {
    const T = 7, E = 3, F = 5;
    const s = quantize(softmax(T, E, 110)), pe = randArray(T * E * F, 111), g = quantize(randArray(T * E * F, 112));
    const loss = () => {
      let l = 0;
      for (let r = 0; r < T * E; r++) for (let f = 0; f < F; f++) l += s[r] * pe[r * F + f] * g[r * F + f];
      return l;
    };
    const ds = new Float32Array(T * E), dg = new Float32Array(T * E * F);
    be.addon.expertScoresBackward({ t: T, experts: E, f: F, s, pe, g, ds, dg });
    // L is linear in s and in g separately: exact up to double rounding.
    expect(relError(ds, Array.from(s, (_, i) => finiteDiff(loss, s, i, 2 ** -10)))).toBeLessThanOrEqual(tol);
    expect(relError(dg, Array.from(g, (_, i) => finiteDiff(loss, g, i, 2 ** -10)))).toBeLessThanOrEqual(tol);
  });
}));

function miLoss(T: number, E: number, probs: Float32Array,
  extra: { gradScale?: number; dprobs?: Float32Array; accumulate?: boolean } = {}) {
  const out = new Float64Array(3);
  k.miLoss({ t: T, experts: E, probs, out, ...extra });
  return { loss: out[0], hE: out[1], hEX: out[2] };
}

function switchLoss(T: number, E: number, probs: Float32Array, pairExpert: Int32Array,
  extra: { gradScale?: number; dprobs?: Float32Array; accumulate?: boolean } = {}): number {
  const out = new Float64Array(1);
  k.switchLoss({ t: T, experts: E, probs, pairs: pairExpert.length, pairExpert, out, ...extra });
  return out[0];
}

forEachBackend((be) => describe('auxiliary losses', () => {
  beforeAll(() => { k = be.addon; });
  // CUDA: column sums and entropies in double, gradient on the device: the fp32 bound.
  const tol = be.tol({ cpu: FP32_TOL, cuda: FP32_TOL });

  test('MI loss: value, entropies and gradient match a direct computation', () => {
    be.forEachConfig((isa, threads) => {
      let seed = 120;
      for (const T of [...TS, 1000])  // 1000 tokens: several reduction chunks
        for (const E of ES) {
          const probs = softmax(T, E, seed++), dprobs = new Float32Array(T * E).fill(NaN);
          const v = miLoss(T, E, probs, { dprobs, gradScale: 0.5 });
          const ref = miLossRef(T, E, probs);
          // Both sum the same fp32 inputs in double, in different orders: agree to ~1e-15.
          const close = [[v.loss, ref.loss], [v.hE, ref.hE], [v.hEX, ref.hEX]].every(([a,
            b]) => Math.abs(a - b) <= 1e-12);
          const err = relError(dprobs, ref.grad.map((g) => 0.5 * g));
          if (!close || !(err <= tol)) throw new Error(`${isa} t=${threads} T=${T} E=${E}: ` +
            `${JSON.stringify(v)} vs ${JSON.stringify(ref)}, grad ${err}`);
        }
    });
  });

  test('MI loss: uniform scores give H(e) = H(e|X) = log E and L = 0; one-hot balanced gives L = −log E', () => {
    const E = 4;
    const uniform = miLoss(2, E, new Float32Array(8).fill(0.25));
    expect(uniform.hE).toBeCloseTo(Math.log(E), 6);
    expect(uniform.hEX).toBeCloseTo(Math.log(E), 6);
    expect(uniform.loss).toBeCloseTo(0, 6);
    const onehot = new Float32Array(16);
    for (let t = 0; t < 4; t++) onehot[t * E + t] = 1;
    const dprobs = new Float32Array(16);
    const v = miLoss(4, E, onehot, { dprobs });
    expect(v.loss).toBeCloseTo(-Math.log(E), 12);  // S·log S = 0 at S = 0
    expect(dprobs.every(Number.isFinite)).toBe(true);  // the log clamp keeps the zeros' gradient finite
    expect(dprobs[1]).toBeCloseTo((Math.log(0.25) - Math.log(2 ** -126)) / 4, 3);
  });

  test('MI loss gradient against finite differences; gradScale and accumulate', () => {
    const T = 7, E = 5;
    // Away from 0 so the steps stay inside the domain; they need not sum to 1 (free variables).
    const probs = quantize(randArray(T * E, 130).map((v) => 0.3 + 0.25 * v));
    const dprobs = new Float32Array(T * E);
    miLoss(T, E, probs, { dprobs });
    const fd = Array.from(probs, (_, i) => finiteDiff(() => miLoss(T, E, probs).loss, probs, i, 2 ** -14));
    // The loss comes back in double; h²/6·|f'''| with S ≥ 0.05 is < 1e-7 relative.
    expect(relError(dprobs, fd)).toBeLessThanOrEqual(1e-5);
    const acc = randArray(T * E, 131), acc0 = acc.slice();
    miLoss(T, E, probs, { dprobs: acc, gradScale: 3, accumulate: true });
    expect(relError(acc, Array.from(acc0, (v, i) => v + 3 * dprobs[i]))).toBeLessThanOrEqual(tol);
  });

  test('switch loss: value and gradient match a direct computation and finite differences', () => {
    be.forEachConfig((isa, threads) => {
      let seed = 140;
      for (const T of [...TS, 1000])
        for (const E of ES) {
          const probs = softmax(T, E, seed++);
          const pr = topk(T, E, probs, Math.min(2, E));
          const dprobs = new Float32Array(T * E).fill(NaN);
          const loss = switchLoss(T, E, probs, pr.expert, { dprobs, gradScale: 0.01 });
          const ref = switchLossRef(T, E, probs, pr.expert);
          const err = relError(dprobs, ref.grad.map((g) => 0.01 * g));
          if (!(Math.abs(loss - ref.loss) <= 1e-12) || !(err <= tol))
            throw new Error(`${isa} t=${threads} T=${T} E=${E}: ${loss} vs ${ref.loss}, grad ${err}`);
        }
    }, [1, 4]);
    // Balanced one-hot routing with uniform probabilities: E·Σ (1/E)(1/E) = 1.
    expect(switchLoss(4, 4, new Float32Array(16).fill(0.25), Int32Array.from([0, 1, 2, 3]))).toBeCloseTo(1, 12);
    expect(switchLoss(4, 4, new Float32Array(16).fill(0.25), new Int32Array(0))).toBe(0);
    // Finite differences with the assignments held fixed (f is a count): L is linear in probs.
    const T = 7, E = 5, probs = quantize(softmax(T, E, 150)), pe = topk(T, E, probs, 2).expert;
    const dprobs = new Float32Array(T * E);
    switchLoss(T, E, probs, pe, { dprobs });
    const fd = Array.from(probs, (_, i) => finiteDiff(() => switchLoss(T, E, probs, pe), probs, i, 2 ** -14));
    expect(relError(dprobs, fd)).toBeLessThanOrEqual(tol);
    const acc = new Float32Array(T * E).fill(1);
    switchLoss(T, E, probs, pe, { dprobs: acc, accumulate: true, gradScale: 2 });
    expect(relError(acc, Array.from(dprobs, (g) => 1 + 2 * g))).toBeLessThanOrEqual(tol);
  });
}));

forEachBackend((be) => describe('determinism and async', () => {
  beforeAll(() => { k = be.addon; });
  be.test('results are bit-identical for 1..4 threads on sizes that split into many tasks', ['routeThreshold'],
    () => {
      const T = 997, E = 13, D = 65;
      const logits = randn(T * E, 160, 2), x = randArray(T * D, 161);
      const run = () => {
        const probs = new Float32Array(T * E);
        be.addon.routerSoftmax({ t: T, experts: E, logits, probs });
        const pr = threshold(T, E, probs, 0.48), P = pr.P;
        const { order, position } = group(E, pr.expert);
        const xg = new Float32Array(P * D), y = new Float32Array(T * D), dx = new Float32Array(T * D);
        be.addon.gatherRows({ t: T, pairs: P, d: D, x, pairToken: pr.token, order, xg });
        be.addon.combine({ t: T, pairs: P, n: D, yg: xg, pairToken: pr.token, pairWeight: pr.weight, position, y });
        be.addon.gatherRowsBackward({ t: T, pairs: P, d: D, dxg: xg, pairToken: pr.token, position, dx });
        const dprobs = new Float32Array(T * E);
        const mi = miLoss(T, E, probs, { dprobs });
        // Bytes, so "identical" means bit for bit (and the comparison stays fast).
        return Buffer.concat([probs, pr.expert, xg, y, dx, dprobs, Float64Array.of(mi.loss, mi.hE, mi.hEX)]
          .map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength)));
      };
      const results: Buffer[] = [];
      be.forEachConfig(() => results.push(run()));
      for (const r of results.slice(1)) expect(r.equals(results[0])).toBe(true);
    });

  be.test('async variants give the same results, including the out values', ['routeThresholdTopk'], async () => {
    const T = 97, E = 8, probs = softmax(T, E, 170);
    const sync = thresholdTopk(T, E, probs, 0.48);
    const o = pairsOf(T * E), out = new Int32Array(1);
    await be.addon.routeThresholdTopkAsync({ t: T, experts: E, probs, eps: 0.48, out, ...o });
    expect(out[0]).toBe(sync.K);
    expectPairs(trim(o, T * out[0]), { token: Array.from(sync.pairs.token), expert: Array.from(sync.pairs.expert),
      weight: Array.from(sync.pairs.weight) }, 'async');
    const mi = new Float64Array(3);
    await be.addon.miLossAsync({ t: T, experts: E, probs, out: mi });
    expect(Array.from(mi)).toEqual(Object.values(miLoss(T, E, probs)));
  });
}));

describe('routing bad arguments are JavaScript errors naming the argument', () => {
  const probs = () => new Float32Array(12).fill(0.25);  // t = 3, experts = 4
  const route = () => ({ t: 3, experts: 4, probs: probs(), ...pairsOf(12), out: new Int32Array(1) });
  const pairs = () => ({ t: 3, pairs: 4, pairToken: Int32Array.from([0, 0, 1, 2]),
    position: Int32Array.from([2, 0, 3, 1]) });
  test.each([
    ['k = 0', () => addon.routeTopk({ ...route(), k: 0 }), 'RangeError', /routeTopk: k must be in \[1, 4\]/],
    ['k > E', () => addon.routeTopk({ ...route(), k: 5 }), 'RangeError', /routeTopk: k must be in \[1, 4\]/],
    ['k not integer', () => addon.routeTopk({ ...route(), k: 1.5 }), 'TypeError', /routeTopk: k must be an integer/],
    ['zero experts', () => addon.routeTopk({ ...route(), experts: 0, k: 1 }), 'RangeError',
      /routeTopk: experts must be in/],
    ['topk output too short', () => addon.routeTopk({ ...route(), k: 2, pairExpert: new Int32Array(5) }), 'RangeError',
      /routeTopk: pairExpert has 5 elements but needs at least 6/],
    ['t·experts beyond int32', () => addon.routeTopk({ ...route(), t: 2 ** 31 - 1, experts: 2, k: 1 }), 'RangeError',
      /routeTopk: t·experts = 4294967294 exceeds/],
    ['eps NaN', () => addon.routeThreshold({ ...route(), eps: NaN }), 'RangeError',
      /routeThreshold: eps must be finite/],
    ['eps infinite', () => addon.routeThresholdTopk({ ...route(), eps: Infinity }), 'RangeError',
      /routeThresholdTopk: eps must be finite/],
    ['eps missing', () => addon.routeThreshold({ ...route(), eps: undefined as unknown as number }), 'TypeError',
      /routeThreshold: eps is missing/],
    ['threshold outputs sized t·k', () => addon.routeThreshold({ ...route(), eps: 1, pairWeight: new Float32Array(6) }),
      'RangeError', /routeThreshold: pairWeight has 6 elements but needs at least 12/],
    ['out missing', () => addon.routeThreshold({ ...route(), eps: 1, out: undefined as unknown as Int32Array }),
      'TypeError', /routeThreshold: out is missing/],
    ['probs wrong type', () => addon.routerSoftmax({ t: 3, experts: 4,
      logits: new Float64Array(12) as unknown as Float32Array, probs: probs() }), 'TypeError',
    /routerSoftmax: logits must be a Float32Array/],
    ['softmax backward short', () => addon.routerSoftmaxBackward({ t: 3, experts: 4, probs: probs(),
      dprobs: new Float32Array(11), dlogits: probs() }), 'RangeError', /routerSoftmaxBackward: dprobs has 11/],
    ['expert out of range', () => addon.groupByExpert({ pairs: 3, experts: 4, pairExpert: Int32Array.from([0, 1, 4]),
      offsets: new Int32Array(5), order: new Int32Array(3), position: new Int32Array(3) }), 'RangeError',
    /groupByExpert: pairExpert\[2\] = 4 is out of range \[0, 4\)/],
    ['negative expert', () => addon.groupByExpert({ pairs: 3, experts: 4, pairExpert: Int32Array.from([0, -1, 2]),
      offsets: new Int32Array(5), order: new Int32Array(3), position: new Int32Array(3) }), 'RangeError',
    /groupByExpert: pairExpert\[1\] = -1/],
    ['offsets too short', () => addon.groupByExpert({ pairs: 3, experts: 4, pairExpert: new Int32Array(3),
      offsets: new Int32Array(4), order: new Int32Array(3), position: new Int32Array(3) }), 'RangeError',
    /groupByExpert: offsets has 4 elements but needs at least 5/],
    ['token beyond t', () => addon.gatherRows({ ...pairs(), pairToken: Int32Array.from([0, 0, 1, 3]), d: 2,
      x: new Float32Array(6), order: Int32Array.from([0, 1, 2, 3]), xg: new Float32Array(8) }), 'RangeError',
    /gatherRows: pairToken\[3\] = 3 is out of range \[0, 3\)/],
    ['tokens decreasing', () => addon.gatherRows({ ...pairs(), pairToken: Int32Array.from([0, 1, 0, 2]), d: 2,
      x: new Float32Array(6), order: Int32Array.from([0, 1, 2, 3]), xg: new Float32Array(8) }), 'RangeError',
    /gatherRows: pairToken must be non-decreasing .*pairToken\[2\] = 0 < pairToken\[1\] = 1/],
    ['order out of range', () => addon.gatherRows({ ...pairs(), d: 2, x: new Float32Array(6),
      order: Int32Array.from([0, 1, 2, 4]), xg: new Float32Array(8) }), 'RangeError',
    /gatherRows: order\[3\] = 4 is out of range \[0, 4\)/],
    ['gather x too short', () => addon.gatherRows({ ...pairs(), d: 2, x: new Float32Array(5),
      order: Int32Array.from([0, 1, 2, 3]), xg: new Float32Array(8) }), 'RangeError', /gatherRows: x has 5/],
    ['position out of range', () => addon.gatherRowsBackward({ ...pairs(), position: Int32Array.from([0, 1, 2, 9]),
      d: 2, dxg: new Float32Array(8), dx: new Float32Array(6) }), 'RangeError',
    /gatherRowsBackward: position\[3\] = 9 is out of range/],
    ['position not a permutation', () => addon.combine({ ...pairs(), position: Int32Array.from([0, 1, 1, 2]), n: 2,
      yg: new Float32Array(8), pairWeight: new Float32Array(4), y: new Float32Array(6) }), 'RangeError',
    /combine: position must be a permutation of \[0, 4\): 1 appears twice/],
    ['combine beta NaN', () => addon.combine({ ...pairs(), n: 2, yg: new Float32Array(8),
      pairWeight: new Float32Array(4), y: new Float32Array(6), beta: NaN }), 'RangeError',
    /combine: beta must be finite/],
    ['combine backward tokens decreasing', () => addon.combineBackward({ ...pairs(),
      pairToken: Int32Array.from([1, 0, 1, 2]), n: 2, dy: new Float32Array(6), yg: new Float32Array(8),
      pairWeight: new Float32Array(4), dyg: new Float32Array(8), dweight: new Float32Array(4) }), 'RangeError',
    /combineBackward: pairToken must be non-decreasing/],
    ['combine backward dweight short', () => addon.combineBackward({ ...pairs(), n: 2, dy: new Float32Array(6),
      yg: new Float32Array(8), pairWeight: new Float32Array(4), dyg: new Float32Array(8),
      dweight: new Float32Array(3) }), 'RangeError', /combineBackward: dweight has 3/],
    ['pairs beyond int32', () => addon.combine({ ...pairs(), pairs: 2 ** 31, n: 2, yg: new Float32Array(8),
      pairWeight: new Float32Array(4), y: new Float32Array(6) }), 'RangeError', /combine: pairs must be in/],
    ['expert scores dg short', () => addon.expertScoresBackward({ t: 2, experts: 2, f: 3, s: new Float32Array(4),
      pe: new Float32Array(12), g: new Float32Array(12), ds: new Float32Array(4), dg: new Float32Array(11) }),
    'RangeError', /expertScoresBackward: dg has 11/],
    ['mi out wrong type', () => addon.miLoss({ t: 3, experts: 4, probs: probs(),
      out: new Float32Array(3) as unknown as Float64Array }), 'TypeError', /miLoss: out must be a Float64Array/],
    ['mi out too short', () => addon.miLoss({ t: 3, experts: 4, probs: probs(), out: new Float64Array(2) }),
      'RangeError', /miLoss: out has 2/],
    ['mi dprobs short', () => addon.miLoss({ t: 3, experts: 4, probs: probs(), dprobs: new Float32Array(4),
      out: new Float64Array(3) }), 'RangeError', /miLoss: dprobs has 4/],
    ['mi gradScale NaN', () => addon.miLoss({ t: 3, experts: 4, probs: probs(), gradScale: NaN,
      out: new Float64Array(3) }), 'RangeError', /miLoss: gradScale must be finite/],
    ['switch expert out of range', () => addon.switchLoss({ t: 3, experts: 4, probs: probs(), pairs: 2,
      pairExpert: Int32Array.from([0, 7]), out: new Float64Array(1) }), 'RangeError',
    /switchLoss: pairExpert\[1\] = 7 is out of range \[0, 4\)/],
    ['switch accumulate not boolean', () => addon.switchLoss({ t: 3, experts: 4, probs: probs(), pairs: 0,
      pairExpert: new Int32Array(0), accumulate: 1 as unknown as boolean, out: new Float64Array(1) }), 'TypeError',
    /switchLoss: accumulate must be a boolean/],
  ] as const)('%s', (_name, call, type, message) => {
    expectNativeError(call, type, message);
  });

  test('async variant rejects bad indices synchronously with the same error', () => {
    expectNativeError(() => addon.groupByExpertAsync({ pairs: 1, experts: 2, pairExpert: Int32Array.of(2),
      offsets: new Int32Array(3), order: new Int32Array(1), position: new Int32Array(1) }),
    'RangeError', /groupByExpert: pairExpert\[0\] = 2 is out of range/);
  });
});
