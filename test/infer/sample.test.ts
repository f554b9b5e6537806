// Sampling beyond greedy (src/infer/sample.ts): the distribution of many seeded draws from known
// logits against probabilities worked out by hand — temperature scaling, the top-k support (ties at
// its boundary to the lower id), the top-p cutoff, and the two together. Logits are ln of small
// weights, so each expected distribution is a ratio of small numbers written in the test.
import { Rng } from '../../src/data/rng';
import { argmax, checkSampling, sampleToken, type SamplingOptions } from '../../src/infer/sample';

/** Counts of N draws. */
function draw(logits: number[], o: SamplingOptions, n: number, seed: number): number[] {
  const rng = new Rng(seed), row = Float32Array.from(logits), counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < n; i++) counts[sampleToken(row, o, rng)]++;
  return counts;
}

/** Normalises weights by id into probabilities (ids not listed: 0). */
function dist(V: number, w: Record<number, number>): number[] {
  const total = Object.values(w).reduce((a, b) => a + b, 0);
  return Array.from({ length: V }, (_, i) => (w[i] ?? 0) / total);
}

/**
 * Every id with p = 0 is never drawn; every other count is within 5 standard deviations of N·p
 * (binomial). Seeded, so it either always passes or always fails; 5σ leaves room for the seed's
 * luck while a wrong distribution (off by a token, or by a temperature factor) is far outside.
 */
function expectDistribution(counts: number[], p: number[]): void {
  const n = counts.reduce((a, b) => a + b, 0);
  const bad: string[] = [];
  counts.forEach((c, i) => {
    if (p[i] === 0) { if (c !== 0) bad.push(`id ${i}: drawn ${c} times, outside the support`); return; }
    const sd = Math.sqrt(n * p[i] * (1 - p[i]));
    if (Math.abs(c - n * p[i]) > 5 * sd + 1) {
      bad.push(`id ${i}: ${c} draws, expected ${(n * p[i]).toFixed(0)} ± ${(5 * sd).toFixed(0)}`);
    }
  });
  expect(bad).toEqual([]);
}

const N = 20000;
// weights by id: 1, 8, 2, 4, 0.5, 16 (unsorted on purpose); total 31.5
const W = [1, 8, 2, 4, 0.5, 16];
const logits = W.map(Math.log);
const V = W.length;

describe('sampling distributions from known logits', () => {
  test('temperature 1: softmax of the logits, p = w / 31.5', () => {
    expectDistribution(draw(logits, { temperature: 1 }, N, 1), dist(V, { 0: 1, 1: 8, 2: 2, 3: 4, 4: 0.5, 5: 16 }));
  });

  test('temperature 2 flattens (p ∝ √w) and temperature 0.5 sharpens (p ∝ w²)', () => {
    expectDistribution(draw(logits, { temperature: 2 }, N, 2),
      dist(V, Object.fromEntries(W.map((w, i) => [i, Math.sqrt(w)]))));
    expectDistribution(draw(logits, { temperature: 0.5 }, N, 3),
      dist(V, { 0: 1, 1: 64, 2: 4, 3: 16, 4: 0.25, 5: 256 }));
  });

  test('top-k 3 keeps exactly the three most likely tokens (16, 8, 4), renormalised', () => {
    expectDistribution(draw(logits, { temperature: 1, topK: 3 }, N, 4), dist(V, { 5: 16, 1: 8, 3: 4 }));
    expectDistribution(draw(logits, { temperature: 1, topK: 2 }, N, 5), dist(V, { 5: 16, 1: 8 }));
    // K ≥ V is no limit
    expectDistribution(draw(logits, { temperature: 1, topK: 6 }, N, 6),
      dist(V, { 0: 1, 1: 8, 2: 2, 3: 4, 4: 0.5, 5: 16 }));
    expectDistribution(draw(logits, { temperature: 1, topK: 60 }, N, 6),
      dist(V, { 0: 1, 1: 8, 2: 2, 3: 4, 4: 0.5, 5: 16 }));
  });

  test('top-k: equal logits at the boundary go to the lower ids', () => {
    // ids 1, 2, 3 tie; top-2 keeps 1 and 2, half each, never 3
    expectDistribution(draw([0, 1, 1, 1, -1], { temperature: 1, topK: 2 }, N, 7), dist(5, { 1: 1, 2: 1 }));
  });

  test('top-p keeps the shortest most-likely prefix whose mass reaches p', () => {
    // sorted masses 16, 8, 4, 2, 1, 0.5 (/31.5): cumulative 0.508, 0.762, 0.889, 0.952, 0.984, 1
    expectDistribution(draw(logits, { temperature: 1, topP: 0.5 }, N, 8), dist(V, { 5: 1 }));
    expectDistribution(draw(logits, { temperature: 1, topP: 0.7 }, N, 9), dist(V, { 5: 16, 1: 8 }));
    expectDistribution(draw(logits, { temperature: 1, topP: 0.8 }, N, 10), dist(V, { 5: 16, 1: 8, 3: 4 }));
    expectDistribution(draw(logits, { temperature: 1, topP: 0.96 }, N, 11), dist(V, { 5: 16, 1: 8, 3: 4, 2: 2, 0: 1 }));
  });

  test('top-p is measured on the tempered distribution, and within the top-k', () => {
    // T = 0.5: masses ∝ 256, 64, 16, 4, 1, 0.25 (/341.25): cumulative 0.750, 0.938, … → top-p 0.9 keeps two
    expectDistribution(draw(logits, { temperature: 0.5, topP: 0.9 }, N, 12), dist(V, { 5: 256, 1: 64 }));
    // T = 2: masses ∝ 4, 2.83, 2, 1.41, 1, 0.71 (/11.95): cumulative 0.335, 0.571, 0.738 → top-p 0.7 keeps three
    expectDistribution(draw(logits, { temperature: 2, topP: 0.7 }, N, 13), dist(V, { 5: 4, 1: Math.sqrt(8), 3: 2 }));
    // top-k 3 first (16, 8, 4 → 4/7, 2/7, 1/7), then top-p 0.8 of that: 0.571, 0.857 → two
    expectDistribution(draw(logits, { temperature: 1, topK: 3, topP: 0.8 }, N, 14), dist(V, { 5: 16, 1: 8 }));
  });

  test('the seed decides: the same seed repeats its draws, another seed gives others', () => {
    const seq = (seed: number) => {
      const r = new Rng(seed), row = Float32Array.from(logits);
      return Array.from({ length: 50 }, () => sampleToken(row, { temperature: 1 }, r));
    };
    expect(seq(42)).toEqual(seq(42));
    expect(seq(43)).not.toEqual(seq(42));
  });
});

describe('greedy and option checks', () => {
  test('temperature 0 takes the largest logit, the lowest id among equals, whatever the rng', () => {
    const r = new Rng(1);
    expect(sampleToken(Float32Array.from(logits), { temperature: 0 }, r)).toBe(5);
    expect(sampleToken(Float32Array.from([1, 3, 3, 2]), { temperature: 0 }, r)).toBe(1);
    expect(sampleToken(Float32Array.from([-Infinity, -2, -Infinity]), { temperature: 0, topK: 2, topP: 0.5 }, r))
      .toBe(1);
    expect(argmax(Float32Array.from([0.5, -1, 7, 7.0001, 7]))).toBe(3);
    expect(() => argmax(Float32Array.from([NaN, NaN]))).toThrow(/NaN logits/);
  });

  test('bad options are RangeErrors naming the flag', () => {
    expect(() => checkSampling({ temperature: -1 })).toThrow(/--temperature must be a number ≥ 0/);
    expect(() => checkSampling({ temperature: 1, topK: 1.5 })).toThrow(/--top-k must be an integer ≥ 0/);
    expect(() => checkSampling({ temperature: 1, topP: 0 })).toThrow(/--top-p must be in \(0, 1\]/);
    expect(() => checkSampling({ temperature: 1, topP: 1.01 })).toThrow(/--top-p must be in \(0, 1\]/);
  });
});
