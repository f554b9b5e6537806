// Plain reference of fp32 → bf16 rounding (round to nearest, ties to even), from the values rather
// than from bit tricks: the two bf16 neighbours of x, the nearer one, on a tie the one whose last
// kept mantissa bit is 0. bf16 keeps fp32's exponent range and 8 significant bits (7 stored).

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The bits of an fp32 value (x is rounded to fp32 first). */
export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0];
}

/** The fp32 value of a bit pattern. */
export function f32FromBits(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0];
}

/** The bf16 bit pattern nearest to fp32 x, ties to even; ±Inf when that is 2^128 or beyond; NaN → a quiet NaN. */
export function bf16NearestEvenRef(x: number): number {
  const v = Math.fround(x);
  if (Number.isNaN(v)) return 0x7fc0;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === Infinity) return sign | 0x7f80;
  if (a === 0) return sign;
  // ulp of bf16 at a: 2^(e − 7) for normal a (2^e ≤ a < 2^(e+1)), 2^-133 below 2^-126 (subnormal).
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(e, -126) - 7);
  const n = Math.floor(a / ulp);  // exact: a / ulp is a power-of-two scaling
  const lo = n * ulp, hi = (n + 1) * ulp;
  const dLo = a - lo, dHi = hi - a;
  const pick = dLo < dHi ? lo : dHi < dLo ? hi : n % 2 === 0 ? lo : hi;
  if (pick >= 2 ** 128) return sign | 0x7f80;
  const bits = f32Bits(pick);
  if ((bits & 0xffff) !== 0) throw new Error(`bf16 reference: ${pick} is not a bf16 value`);
  return sign | (bits >>> 16);
}
