// The tests' seeded PRNG, in its own module so that suites which do not need the native addon
// (tokenizer, data) can use it without loading test/helpers.ts (which loads the addon).

/** mulberry32: a small seeded PRNG so every test sees the same data on every run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
