// The Backend ops bound in native/bindings/bind_backend_ops.cc, on every backend (forEachBackend),
// against the double references in test/reference/backend-ops.ts, on seeded random inputs of awkward
// sizes: 0 and 1, primes, repeated token ids, P = 0, experts without pairs. Copies and integer outputs
// are compared exactly; arithmetic with the per-backend tolerance written next to each op. Bad
// arguments are JavaScript errors naming the argument.
import { addon, expectNativeError, FP32_TOL, forEachBackend, fromBf16, randArray, relError, rng,
  toBf16 } from '../helpers';
import {
  addInplaceRef, embeddingBackwardRef, embeddingForwardRef, expertInputGradRef, expertWeightedWeightGradRef,
  gatherPairHeadsRef, maskScoresRef, type PairHeads, pairWeightsRef, routerStatisticsRef, scatterPairHeadsRef,
} from '../reference/backend-ops';

/** n ids in [0, vocab), seeded (small vocabularies repeat ids). */
function randIds(n: number, vocab: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: n }, () => Math.floor(r() * vocab));
}

/** Element-wise equality, naming the first difference (NaN equals NaN). */
function expectSame(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length} != ${want.length}`);
  for (let i = 0; i < want.length; i++)
    if (!Object.is(got[i], want[i]) && !(got[i] === want[i]))
      throw new Error(`${what}: [${i}] = ${got[i]}, expected ${want[i]}`);
}

/** Scores [T, E] that are probabilities (rows sum to 1), some of them exactly 0. */
function probsWithZeros(T: number, E: number, seed: number): Float32Array {
  const r = rng(seed), p = new Float32Array(T * E);
  for (let t = 0; t < T; t++) {
    let sum = 0;
    for (let e = 0; e < E; e++) sum += (p[t * E + e] = r() < 0.25 ? 0 : r());
    if (sum === 0) p[t * E] = sum = 1;
    for (let e = 0; e < E; e++) p[t * E + e] /= sum;
  }
  return p;
}

/**
 * Token-major pairs: each token a random subset of the E experts (some tokens none, so some experts
 * may have no pair), experts in random order within a token; order a random permutation of [0, P).
 */
function randPairs(T: number, E: number, seed: number): { pairToken: Int32Array; pairExpert: Int32Array;
  order: Int32Array } {
  const r = rng(seed), tok: number[] = [], exp: number[] = [];
  for (let t = 0; t < T; t++) {
    const experts = Array.from({ length: E }, (_, e) => e).filter(() => r() < 0.4);
    for (let i = experts.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [experts[i], experts[j]] = [experts[j], experts[i]];
    }
    for (const e of experts) { tok.push(t); exp.push(e); }
  }
  const order = Int32Array.from({ length: tok.length }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return { pairToken: Int32Array.from(tok), pairExpert: Int32Array.from(exp), order };
}

forEachBackend((be) => describe('element-wise and embedding', () => {
  test('addInplace: y + x rounded once (exact); elements past n untouched', () => {
    // 65537: the CPU splits at 65536-element chunks.
    let seed = 1;
    for (const n of [0, 1, 7, 65537]) {
      const x = randArray(n, seed++), y0 = randArray(n + 3, seed++, 4);
      const y = y0.slice();
      be.addon.addInplace({ n, y, x });
      const ref = addInplaceRef(y0.subarray(0, n), x);
      expectSame(y, [...Array.from(ref, Math.fround), ...y0.subarray(n)], `n=${n}`);
    }
  });

  test('embeddingForward copies rows exactly, fp32 and bf16 tables (widened exactly)', () => {
    let seed = 10;
    for (const vocab of [1, 5, 97])
      for (const d of [1, 7, 64])
        for (const n of [0, 1, 13]) {
          const tokens = randIds(n, vocab, seed++), table = randArray(vocab * d, seed++);
          const out = new Float32Array(n * d).fill(NaN);
          be.addon.embeddingForward({ n, d, vocab, tokens, table, out });
          expectSame(out, embeddingForwardRef(d, tokens, table), `f32 vocab=${vocab} d=${d} n=${n}`);
          const tb = toBf16(table), outB = new Float32Array(n * d).fill(NaN);
          be.addon.embeddingForward({ n, d, vocab, tokens, table: tb, out: outB });
          expectSame(outB, embeddingForwardRef(d, tokens, fromBf16(tb)), `bf16 vocab=${vocab} d=${d} n=${n}`);
        }
  });

  // CUDA adds a repeated id's rows with float atomics in no fixed order: a tolerance, not equality
  // (an id seen once is one add, exact on every backend). The CPU adds in token order, exactly as an
  // fp32 loop does.
  const tolEmbB = be.tol({ cpu: FP32_TOL, cuda: FP32_TOL });

  test('embeddingBackward accumulates every row of a repeated id', () => {
    let seed = 100;
    for (const [vocab, n] of [[1, 1], [3, 50], [7, 5], [97, 211], [5, 0]])
      for (const d of [1, 3, 33]) {
        const tokens = randIds(n, vocab, seed++), dy = randArray(n * d, seed++);
        const dtable0 = randArray(vocab * d, seed++), dtable = dtable0.slice();
        be.addon.embeddingBackward({ n, d, vocab, tokens, dy, dtable });
        const ref = embeddingBackwardRef(d, tokens, dy, dtable0);
        const err = relError(dtable, ref);
        if (!(err <= tolEmbB)) throw new Error(`vocab=${vocab} n=${n} d=${d}: ${err}`);
        const count = new Array<number>(vocab).fill(0);
        for (const t of tokens) count[t]++;
        for (let v = 0; v < vocab; v++) {
          if (count[v] > 1) continue;
          const row = (a: ArrayLike<number>) => Array.from(a).slice(v * d, v * d + d);
          expectSame(row(dtable), row(ref).map(Math.fround), `vocab=${vocab} n=${n} d=${d} row ${v} seen ${count[v]}×`);
        }
        if (be.device === 'cpu') {
          const seq = dtable0.slice();
          tokens.forEach((t, i) => { for (let j = 0; j < d; j++) seq[t * d + j] += dy[i * d + j]; });
          expectSame(dtable, seq, `cpu token order vocab=${vocab} n=${n} d=${d}`);
        }
      }
  });

  test('async variants give the same result', async () => {
    const n = 40, d = 9, vocab = 6, tokens = randIds(n, vocab, 7), dy = randArray(n * d, 8);
    const a = new Float32Array(vocab * d), b = new Float32Array(vocab * d);
    be.addon.embeddingBackward({ n, d, vocab, tokens, dy, dtable: a });
    await be.addon.embeddingBackwardAsync({ n, d, vocab, tokens, dy, dtable: b });
    expect(relError(b, a)).toBeLessThanOrEqual(tolEmbB);
    const x = randArray(5, 9), y = randArray(5, 10), y2 = y.slice();
    be.addon.addInplace({ n: 5, y, x });
    await be.addon.addInplaceAsync({ n: 5, y: y2, x });
    expectSame(y2, y, 'addInplaceAsync');
  });
}));

forEachBackend((be) => describe('training pair weights and score mask', () => {
  test('pairWeights: probs on the pairs, 0 elsewhere, mask 1 on the pairs (exact); P = 0 clears both', () => {
    let seed = 200;
    for (const T of [1, 2, 13])
      for (const E of [1, 3, 8]) {
        const probs = probsWithZeros(T, E, seed++);
        for (const { pairToken, pairExpert } of [randPairs(T, E, seed++), { pairToken: new Int32Array(0),
          pairExpert: new Int32Array(0) }]) {
          const P = pairToken.length;
          const weights = new Float32Array(T * E).fill(NaN), mask = new Uint8Array(T * E).fill(7);
          be.addon.pairWeights({ t: T, experts: E, pairs: P, pairToken, pairExpert, probs, weights, mask });
          const ref = pairWeightsRef(T, E, pairToken, pairExpert, probs);
          expectSame(weights, ref.weights, `weights T=${T} E=${E} P=${P}`);
          expectSame(mask, ref.mask, `mask T=${T} E=${E} P=${P}`);
        }
      }
  });

  be.test('maskScores: ds zeroed off the mask, the mask\'s experts token-major, their count (exact)',
    ['maskScores'], () => {
      let seed = 300;
      for (const T of [0, 1, 2, 13])
        for (const E of [1, 3, 8])
          for (const density of [0, 0.3, 1]) {
            const r = rng(seed++);
            const mask = Uint8Array.from({ length: T * E }, () => (r() < density ? 1 + Math.floor(r() * 3) : 0));
            const ds0 = randArray(T * E, seed++), ds = ds0.slice();
            const pairExpert = new Int32Array(T * E).fill(-1), out = new Int32Array(1).fill(-1);
            be.addon.maskScores({ t: T, experts: E, mask, ds, pairExpert, out });
            const ref = maskScoresRef(T, E, mask, ds0);
            const what = `T=${T} E=${E} density=${density}`;
            expect(out[0]).toBe(ref.pairExpert.length);
            expectSame(ds, ref.ds, `ds ${what}`);
            expectSame(pairExpert.subarray(0, out[0]), ref.pairExpert, `pairExpert ${what}`);
          }
    });
}));

forEachBackend((be) => describe('MoA pair-head slices', () => {
  const SHAPES: [number, number, number, number][] = [  // T, E, hd, extra columns of qd beyond E·hd
    [1, 1, 1, 0], [2, 3, 5, 0], [13, 4, 8, 3], [7, 8, 1, 0], [5, 2, 17, 1],
  ];

  test('scatterPairHeads writes each pair\'s slice, the rest untouched; gatherPairHeads reads them (exact)', () => {
    let seed = 400;
    for (const [T, E, hd, extra] of SHAPES) {
      const qd = E * hd + extra;
      for (const pairs of [randPairs(T, E, seed++), { pairToken: new Int32Array(0), pairExpert: new Int32Array(0),
        order: new Int32Array(0) }]) {
        const P = pairs.order.length, h: PairHeads = { hd, qd, ...pairs };
        const what = `T=${T} E=${E} hd=${hd} qd=${qd} P=${P}`;
        const args = { t: T, experts: E, pairs: P, hd, ...(extra ? { qd } : {}), ...pairs };
        const src = randArray(P * hd, seed++), dst0 = randArray(T * qd, seed++, 100), dst = dst0.slice();
        be.addon.scatterPairHeads({ ...args, src, dst });
        expectSame(dst, scatterPairHeadsRef(h, src, dst0), `scatter ${what}`);
        const back = new Float32Array(P * hd).fill(NaN);
        be.addon.gatherPairHeads({ ...args, src: dst, dst: back });
        expectSame(back, src, `gather of the scatter ${what}`);
        const other = randArray(T * qd, seed++), got = new Float32Array(P * hd).fill(NaN);
        be.addon.gatherPairHeads({ ...args, src: other, dst: got });
        expectSame(got, gatherPairHeadsRef(h, other), `gather ${what}`);
      }
    }
  });
}));

forEachBackend((be) => describe('router statistics', () => {
  // Sums in double on every backend: the CPU in the reference's order (a few ulp from Math.log vs
  // std::log); CUDA column sums per expert and entropies per token then summed, in double.
  const tol = be.tol({ cpu: 1e-13, cuda: 1e-11 });

  test('probSum and entropySum are added into, zeros count 0 to the entropy', () => {
    let seed = 500;
    for (const T of [0, 1, 2, 97])
      for (const E of [1, 3, 13]) {
        const probs = probsWithZeros(T, E, seed++);
        const before = Array.from({ length: E + 1 }, (_, i) => i + 0.5);
        const probSum = Float64Array.from(before.slice(0, E)), entropySum = Float64Array.of(before[E]);
        be.addon.routerStatistics({ t: T, experts: E, probs, probSum, entropySum });
        const ref = routerStatisticsRef(T, E, probs);
        const want = [...Array.from(ref.probSum, (v, e) => v + before[e]), ref.entropySum + before[E]];
        const err = relError([...probSum, entropySum[0]], want);
        if (!(err <= tol)) throw new Error(`T=${T} E=${E}: ${err}`);
      }
  });
}));

forEachBackend((be) => describe('dense-training expert gradients', () => {
  // GEMMs: CUDA rounds fp32 inputs to bf16 on the tensor cores (native/cuda/README.md), as in gemm.test.ts.
  const tol = be.tol({ cpu: FP32_TOL, cuda: 1.5e-2 });

  test('expertInputGrad: p[:, e·k..] = dy·w[e] (overwrites p), every ISA, 1 and 3 threads', () => {
    be.forEachConfig((isa, threads) => {
      let seed = 600;
      for (const N of [0, 1, 7, 33])
        for (const E of [1, 3])
          for (const [D, K] of [[1, 1], [5, 13], [17, 2], [64, 31]]) {
            const dy = randArray(N * D, seed++), w = randArray(E * D * K, seed++);
            const p = new Float32Array(N * E * K).fill(NaN);
            be.addon.expertInputGrad({ t: N, experts: E, d: D, k: K, dy, w, p });
            const err = relError(p, expertInputGradRef(N, E, D, K, dy, w));
            if (!(err <= tol)) throw new Error(`${isa} t=${threads} N=${N} E=${E} D=${D} K=${K}: ${err}`);
          }
    }, [1, 3]);
  });

  test('expertWeightedWeightGrad accumulates (s ⊙ dy)ᵀ·x_e, shared and per-expert inputs, 1 and 3 threads', () => {
    be.forEachConfig((isa, threads) => {
      let seed = 700;
      for (const N of [0, 1, 7, 33])
        for (const E of [1, 3])
          for (const [D, K] of [[1, 1], [5, 13], [17, 2]])
            for (const perExpert of [false, true]) {
              const ldx = perExpert ? E * K : K, xStride = perExpert ? K : 0;
              const dy = randArray(N * D, seed++), x = randArray(N * ldx, seed++), s = randArray(N * E, seed++);
              const dw = new Float32Array(E * D * K);
              const args = { t: N, experts: E, d: D, k: K, dy, x, s, dw,
                ...(perExpert ? { ldx, xExpertStride: K } : {}) };
              be.addon.expertWeightedWeightGrad(args);
              const ref = expertWeightedWeightGradRef(N, E, D, K, dy, x, ldx, xStride, s, new Float32Array(E * D * K));
              const err = relError(dw, ref);
              be.addon.expertWeightedWeightGrad(args);
              const err2 = relError(dw, ref.map((v) => 2 * v));
              if (!(err <= tol && err2 <= tol))
                throw new Error(`${isa} t=${threads} N=${N} E=${E} D=${D} K=${K} perExpert=${perExpert}: ${err}, ` +
                  `accumulated ${err2}`);
            }
    }, [1, 3]);
  });
}));

describe('backend ops: bad arguments are JavaScript errors naming the argument', () => {
  const f = (n: number) => new Float32Array(n), i = (...v: number[]) => Int32Array.from(v);
  const emb = () => ({ n: 2, d: 2, vocab: 3, tokens: i(0, 2), table: f(6), out: f(4), dy: f(4), dtable: f(6) });
  const heads = () => ({ t: 2, experts: 2, pairs: 3, hd: 2, order: i(2, 0, 1), pairToken: i(0, 0, 1),
    pairExpert: i(1, 0, 1), src: f(6), dst: f(8) });
  test.each([
    ['addInplace y too short', () => addon.addInplace({ n: 3, y: f(2), x: f(3) }), 'RangeError',
      /addInplace: y has 2 elements but needs at least 3/],
    ['embeddingForward token out of range', () => addon.embeddingForward({ ...emb(), tokens: i(0, 3) }), 'RangeError',
      /embeddingForward: tokens\[1\] = 3 is out of range \[0, 3\)/],
    ['embeddingForward table Int32Array', () => addon.embeddingForward({ ...emb(), table: i(1, 2, 3) as never }),
      'TypeError', /embeddingForward: table must be a Float32Array or a Uint16Array/],
    ['embeddingBackward negative token', () => addon.embeddingBackward({ ...emb(), tokens: i(-1, 0) }), 'RangeError',
      /embeddingBackward: tokens\[0\] = -1 is out of range/],
    ['embeddingBackward dtable too short', () => addon.embeddingBackward({ ...emb(), dtable: f(5) }), 'RangeError',
      /embeddingBackward: dtable has 5 elements but needs at least 6/],
    ['pairWeights mask Float32Array', () => addon.pairWeights({ t: 1, experts: 2, pairs: 1, pairToken: i(0),
      pairExpert: i(1), probs: f(2), weights: f(2), mask: f(2) as never }), 'TypeError',
    /pairWeights: mask must be a Uint8Array/],
    ['pairWeights expert out of range', () => addon.pairWeights({ t: 1, experts: 2, pairs: 1, pairToken: i(0),
      pairExpert: i(2), probs: f(2), weights: f(2), mask: new Uint8Array(2) }), 'RangeError',
    /pairWeights: pairExpert\[0\] = 2 is out of range \[0, 2\)/],
    ['maskScores out missing', () => addon.maskScores({ t: 1, experts: 2, mask: new Uint8Array(2), ds: f(2),
      pairExpert: i(0, 0) } as never), 'TypeError', /maskScores: out is missing/],
    ['maskScores pairExpert too short', () => addon.maskScores({ t: 2, experts: 2, mask: new Uint8Array(4), ds: f(4),
      pairExpert: i(0, 0, 0), out: i(0) }), 'RangeError', /maskScores: pairExpert has 3 elements but needs at least 4/],
    ['scatterPairHeads order not a permutation', () => addon.scatterPairHeads({ ...heads(), order: i(0, 0, 1) }),
      'RangeError', /scatterPairHeads: order must be a permutation of \[0, 3\): 0 appears twice/],
    ['scatterPairHeads a (token, expert) twice', () => addon.scatterPairHeads({ ...heads(), pairExpert: i(1, 1, 0) }),
      'RangeError', /scatterPairHeads: pairExpert: token 0 has expert 1 twice/],
    ['scatterPairHeads qd below experts·hd', () => addon.scatterPairHeads({ ...heads(), qd: 3 }), 'RangeError',
      /scatterPairHeads: qd must be in \[4,/],
    ['gatherPairHeads pairToken not token-major', () => addon.gatherPairHeads({ ...heads(), pairToken: i(1, 0, 0),
      src: f(8), dst: f(6) }), 'RangeError', /gatherPairHeads: pairToken must be non-decreasing/],
    ['gatherPairHeads dst too short', () => addon.gatherPairHeads({ ...heads(), src: f(8), dst: f(5) }), 'RangeError',
      /gatherPairHeads: dst has 5 elements but needs at least 6/],
    ['routerStatistics probSum Float32Array', () => addon.routerStatistics({ t: 1, experts: 2, probs: f(2),
      probSum: f(2) as never, entropySum: new Float64Array(1) }), 'TypeError',
    /routerStatistics: probSum must be a Float64Array/],
    ['routerStatistics probs too short', () => addon.routerStatistics({ t: 2, experts: 2, probs: f(3),
      probSum: new Float64Array(2), entropySum: new Float64Array(1) }), 'RangeError',
    /routerStatistics: probs has 3 elements but needs at least 4/],
    ['expertInputGrad p too short', () => addon.expertInputGrad({ t: 2, experts: 3, d: 2, k: 2, dy: f(4), w: f(12),
      p: f(11) }), 'RangeError', /expertInputGrad: p has 11 elements but needs at least 12/],
    ['expertWeightedWeightGrad x too short for its stride', () => addon.expertWeightedWeightGrad({ t: 2, experts: 2,
      d: 1, k: 2, dy: f(2), x: f(5), ldx: 4, xExpertStride: 2, s: f(4), dw: f(4) }), 'RangeError',
    /expertWeightedWeightGrad: x has 5 elements but needs at least 8/],
    ['expertWeightedWeightGrad zero experts', () => addon.expertWeightedWeightGrad({ t: 1, experts: 0, d: 1, k: 1,
      dy: f(1), x: f(1), s: f(0), dw: f(0) }), 'RangeError', /expertWeightedWeightGrad: experts must be in/],
  ] as const)('%s', (_name, call, type, message) => {
    expectNativeError(call, type, message);
  });

  test('device: an unknown one is a RangeError after the argument checks', () => {
    expectNativeError(() => addon.addInplace({ n: 1, y: f(1), x: f(1), device: 'tpu' }), 'RangeError',
      /^addInplace: device: unknown device "tpu"/);
    expectNativeError(() => addon.addInplace({ n: 2, y: f(1), x: f(2), device: 'cuda' }), 'RangeError',
      /addInplace: y has 1 elements/);
    if (!addon.cudaInfo().available)
      expectNativeError(() => addon.routerStatistics({ t: 1, experts: 1, probs: f(1), probSum: new Float64Array(1),
        entropySum: new Float64Array(1), device: 'cuda' }), 'Error', /^routerStatistics: device cuda:0 is not usable/);
  });
});
