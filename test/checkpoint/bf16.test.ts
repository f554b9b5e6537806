// fp32 → bf16 rounding, convert's default output: round to nearest, ties to even, on values that
// need rounding — a hand-made table of bit patterns (ties both ways, carries into the exponent, the
// largest finite values, subnormals, signs) and random patterns against the value-based reference
// in test/reference/bf16.ts. Checked for the converter (src/checkpoint/safetensors.ts) and for the
// tests' own helper (test/helpers.ts toBf16, the judge of the native bf16 kernels).
import { bf16BitsToF32, f32ToBf16Bits } from '../../src/checkpoint/safetensors';
import { bf16NearestEvenRef, f32Bits, f32FromBits } from '../reference/bf16';
import { fromBf16, rng, toBf16 } from '../helpers';

const hex = (n: number, w = 4) => `0x${(n >>> 0).toString(16).padStart(w, '0')}`;

// [fp32 bits, bf16 bits, why]
const TABLE: [number, number, string][] = [
  [0x3f800000, 0x3f80, '1 is exact'],
  [0x40490000, 0x4049, '3.140625 is exact'],
  [0x3f808000, 0x3f80, '1 + 2^-8: a tie, to the even 1.0'],
  [0x3f818000, 0x3f82, '1 + 3·2^-8: a tie, to the even 1 + 2^-6 (up)'],
  [0xbf818000, 0xbf82, '−(1 + 3·2^-8): ties to even by magnitude'],
  [0xbf808000, 0xbf80, '−(1 + 2^-8): tie down in magnitude'],
  [0x3f808001, 0x3f81, 'just above a tie: up'],
  [0x3f807fff, 0x3f80, 'just below a tie: down'],
  [0x3f80ffff, 0x3f81, 'far above the tie: up'],
  [0x40490fdb, 0x4049, 'π: down'],
  [0x3dcccccd, 0x3dcd, '0.1: up'],
  [0x3f7fffff, 0x3f80, '1 − 2^-24: the carry reaches the exponent (1.0)'],
  [0x3f7f8000, 0x3f80, '1 − 2^-9: a tie whose even neighbour is 1.0'],
  [0x7f7f0000, 0x7f7f, 'the largest finite bf16 is exact'],
  [0x7f7f7fff, 0x7f7f, 'just below the tie above the largest finite bf16: stays finite'],
  [0x7f7f8000, 0x7f80, 'the tie above the largest finite bf16: to the even neighbour, which is +Inf'],
  [0x7f7fffff, 0x7f80, 'the largest finite fp32 rounds to +Inf'],
  [0xff7fffff, 0xff80, 'the most negative finite fp32 rounds to −Inf'],
  [0x7f7e8000, 0x7f7e, 'a tie near the top: to the even 0x7f7e'],
  [0x7f7d8000, 0x7f7e, 'a tie near the top: to the even 0x7f7e (up)'],
  [0x00800000, 0x0080, 'the smallest normal is exact'],
  [0x007fffff, 0x0080, 'the largest subnormal rounds up to the smallest normal'],
  [0x00008000, 0x0000, 'a subnormal tie: to the even zero'],
  [0x00018000, 0x0002, 'a subnormal tie: to the even 0x0002'],
  [0x00008001, 0x0001, 'a subnormal just above a tie'],
  [0x00000001, 0x0000, 'the smallest subnormal rounds to zero'],
  [0x80000001, 0x8000, '… and keeps its sign'],
  [0x00000000, 0x0000, '+0'],
  [0x80000000, 0x8000, '−0'],
  [0x7f800000, 0x7f80, '+Inf'],
  [0xff800000, 0xff80, '−Inf'],
];

const isBf16NaN = (h: number) => (h & 0x7f80) === 0x7f80 && (h & 0x007f) !== 0;

describe('bf16 rounding: nearest, ties to even', () => {
  test('the reference agrees with the hand-made table (so it can judge the rest)', () => {
    const wrong = TABLE.filter(([b, want]) => bf16NearestEvenRef(f32FromBits(b)) !== want)
      .map(([b, want, why]) => `${hex(b, 8)} (${why}): reference ${hex(bf16NearestEvenRef(f32FromBits(b)))}, table ` +
        `${hex(want)}`);
    expect(wrong).toEqual([]);
  });

  const converters: [string, (bits: Uint32Array) => Uint16Array][] = [
    ['f32ToBf16Bits (convert, safetensors writer)', (bits) => Uint16Array.from(new Float32Array(bits.buffer),
      f32ToBf16Bits)],
    ['test/helpers toBf16 (judge of the native bf16 kernels)', (bits) => toBf16(new Float32Array(bits.buffer))],
  ];

  test.each(converters)('%s: values that round, ties both ways, carries, the largest finite values, subnormals', (_,
    conv) => {
    const got = conv(Uint32Array.from(TABLE.map(([b]) => b)));
    const wrong = TABLE.flatMap(([b, want, why], i) => (got[i] === want ? []
      : [`${hex(b, 8)} (${why}): got ${hex(got[i])}, want ${hex(want)}`]));
    expect(wrong).toEqual([]);
  });

  test.each(converters)('%s: 200k random fp32 patterns, half of them at or next to a tie, = the reference', (_,
    conv) => {
    const r = rng(0xbf16);
    const n = 200_000, bits = new Uint32Array(n);
    const low = [0x7fff, 0x8000, 0x8001, 0x0000, 0xffff];
    for (let i = 0; i < n; i++) {
      let b: number;
      do {
        b = Math.floor(r() * 2 ** 32) >>> 0;
        if (i % 2 === 0) b = ((b & 0xffff0000) | low[(b >>> 3) % low.length]) >>> 0;
      } while ((b & 0x7f800000) === 0x7f800000);  // finite values only (NaN and Inf have their own test)
      bits[i] = b;
    }
    const got = conv(bits);
    const wrong: string[] = [];
    let ties = 0, roundedUp = 0;
    for (let i = 0; i < n; i++) {
      const want = bf16NearestEvenRef(f32FromBits(bits[i]));
      if ((bits[i] & 0xffff) === 0x8000) ties++;
      if ((want & 0x7fff) > ((bits[i] >>> 16) & 0x7fff)) roundedUp++;
      if (got[i] !== want && wrong.length < 10) wrong.push(`${hex(bits[i], 8)}: got ${hex(got[i])}, want ${hex(want)}`);
    }
    expect(wrong).toEqual([]);
    expect(ties).toBeGreaterThan(n / 20);       // the sample really holds ties …
    expect(roundedUp).toBeGreaterThan(n / 5);   // … and values that round up in magnitude
  });

  test('NaN stays NaN (never ±Inf or ±0), and bf16 → fp32 is exact', () => {
    expect(isBf16NaN(f32ToBf16Bits(NaN))).toBe(true);
    const nans = Uint32Array.from([0x7fc00000, 0xffc00000, 0x7fffffff, 0xffffffff]);
    for (const h of toBf16(new Float32Array(nans.buffer))) expect(hex(h) +
      (isBf16NaN(h) ? ' NaN' : '')).toMatch(/ NaN$/);
    // Every bf16 pattern widens to the fp32 with the same top half and a zero bottom half.
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const wide = fromBf16(all);
    for (let h = 0; h < 65536; h++) {
      if (isBf16NaN(h)) { expect(Number.isNaN(bf16BitsToF32(h))).toBe(true); continue; }
      if (f32Bits(wide[h]) !== h << 16 >>> 0 || f32Bits(bf16BitsToF32(h)) !== h << 16 >>> 0)
        throw new Error(`bf16 ${hex(h)} widens to ${hex(f32Bits(wide[h]), 8)} / ${hex(f32Bits(bf16BitsToF32(h)), 8)}`);
    }
  });
});
