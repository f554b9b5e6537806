// Batch sampling: deterministic random windows, targets shifted by one, exact resume through
// getState/setState, sequential eval windows, and the seeded RNG underneath.
import { Rng, shuffledIndices } from '../../src/data/rng';
import { BatchSampler, countEvalWindows, evalBatches } from '../../src/data/sampler';

const tokens = Uint16Array.from({ length: 1000 }, (_, i) => i % 997);

describe('BatchSampler', () => {
  test('yields [B, T] inputs with targets shifted by one, from valid windows', () => {
    const s = new BatchSampler(tokens, { batchSize: 4, seqLen: 16, seed: 3 });
    expect(s.windows).toBe(984);
    for (let k = 0; k < 50; k++) {
      const b = s.next();
      expect(b.inputs).toBeInstanceOf(Int32Array);
      expect(b.inputs.length).toBe(64);
      expect(b.targets.length).toBe(64);
      for (let r = 0; r < 4; r++) {
        const st = b.starts[r];
        expect(st).toBeGreaterThanOrEqual(0);
        expect(st + 16).toBeLessThan(tokens.length);
        for (let t = 0; t < 16; t++) {
          expect(b.inputs[r * 16 + t]).toBe(tokens[st + t]);
          expect(b.targets[r * 16 + t]).toBe(tokens[st + t + 1]);
        }
      }
    }
    expect(s.step).toBe(50);
  });

  test('is deterministic for a seed and differs between seeds', () => {
    const run = (seed: number) => {
      const s = new BatchSampler(tokens, { batchSize: 2, seqLen: 8, seed });
      return Array.from({ length: 10 }, () => s.next().starts).flat();
    };
    expect(run(5)).toEqual(run(5));
    expect(run(5)).not.toEqual(run(6));
  });

  test('skip() moves on by one batch as next() does, without filling it', () => {
    const a = new BatchSampler(tokens, { batchSize: 3, seqLen: 10, seed: 5 });
    const b = new BatchSampler(tokens, { batchSize: 3, seqLen: 10, seed: 5 });
    a.next();
    b.skip();
    expect(b.step).toBe(1);
    expect(b.next()).toEqual(a.next());
  });

  test('resumes exactly from a saved state (through JSON)', () => {
    const a = new BatchSampler(tokens, { batchSize: 3, seqLen: 10, seed: 42 });
    for (let i = 0; i < 7; i++) a.next();
    const saved = JSON.parse(JSON.stringify(a.getState()));
    const expected = Array.from({ length: 5 }, () => a.next());
    const b = new BatchSampler(tokens, { batchSize: 3, seqLen: 10, seed: 999 });
    b.setState(saved);
    expect(b.step).toBe(7);
    for (const e of expected) {
      const got = b.next();
      expect(Array.from(got.inputs)).toEqual(Array.from(e.inputs));
      expect(Array.from(got.targets)).toEqual(Array.from(e.targets));
    }
  });

  test('rejects a state from another shape or data', () => {
    const a = new BatchSampler(tokens, { batchSize: 3, seqLen: 10 });
    const b = new BatchSampler(tokens, { batchSize: 4, seqLen: 10 });
    expect(() => b.setState(a.getState())).toThrow('sampler state is for 1000 tokens, batch 3 × 10; this sampler has ' +
      '1000 tokens, batch 4 × 10');
    expect(() => a.setState({ ...a.getState(), rng: [0, 0, 0, 0] })).toThrow('RNG state must not be all zeros');
  });

  test('errors when the data is shorter than one window or empty, naming it', () => {
    expect(() => new BatchSampler(new Uint16Array(16), { batchSize: 1, seqLen: 16, name: 'train.bin' }))
      .toThrow('train.bin has 16 tokens, fewer than one window needs (sequence length 16 + 1 = 17)');
    expect(() => new BatchSampler(new Uint32Array(0), { batchSize: 1, seqLen: 4,
      name: 'corpus/' })).toThrow('corpus/ is empty: no tokens');
    expect(() => new BatchSampler(tokens, { batchSize: 0, seqLen: 4 })).toThrow('batch size must be a positive ' +
      'integer, got 0');
    // exactly one window is enough
    const one = new BatchSampler(Uint16Array.from([1, 2, 3, 4, 5]), { batchSize: 2, seqLen: 4 });
    expect(Array.from(one.next().targets)).toEqual([2, 3, 4, 5, 2, 3, 4, 5]);
  });
});

describe('evalBatches', () => {
  test('walks non-overlapping windows in order; the last batch may be short', () => {
    const seqLen = 32;
    const n = countEvalWindows(tokens.length, seqLen);
    expect(n).toBe(31); // floor(999 / 32)
    const batches = [...evalBatches(tokens, { batchSize: 8, seqLen })];
    expect(batches.map((b) => b.batchSize)).toEqual([8, 8, 8, 7]);
    const starts = batches.flatMap((b) => b.starts);
    expect(starts).toEqual(Array.from({ length: 31 }, (_, i) => i * seqLen));
    const last = batches[3];
    expect(last.targets[last.targets.length - 1]).toBe(tokens[30 * seqLen + seqLen]);
    expect([...evalBatches(tokens, { batchSize: 8, seqLen, maxBatches: 2 })]).toHaveLength(2);
    expect(() => [...evalBatches(new Uint16Array(3), { batchSize: 1, seqLen: 8,
      name: 'val' })]).toThrow('val has 3 tokens');
  });
});

describe('Rng', () => {
  test('nextInt stays in range and covers it; state round-trips', () => {
    const r = new Rng(11);
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const x = r.nextInt(10);
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThan(10);
      seen.add(x);
    }
    expect(seen.size).toBe(10);
    const big = r.nextInt(2 ** 40);
    expect(big).toBeLessThan(2 ** 40);
    const st = r.getState();
    const a = [r.nextU32(), r.nextFloat()];
    const q = new Rng(0);
    q.setState(st);
    expect([q.nextU32(), q.nextFloat()]).toEqual(a);
  });

  test('shuffledIndices is a seeded permutation', () => {
    const p = shuffledIndices(100, new Rng(1));
    expect(Array.from(p).sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(Array.from(shuffledIndices(100, new Rng(1)))).toEqual(Array.from(p));
    expect(Array.from(shuffledIndices(100, new Rng(2)))).not.toEqual(Array.from(p));
  });
});
