// Quantized inference weights (docs/format.md "Quantized weights"): int8 with one F32 scale per
// output row, q4 in groups of 32 inputs with an F16 scale per group (llama.cpp's Q4_0 numbers).
// The quantizers and their exact inverses, which tensors are quantized, and the checks a reader
// applies to a quantized file.
import type { ModelLayout } from '../model/layout';
import { f16BitsToF32, f32ToF16Bits, type SafetensorsHeader, type TensorToWrite } from './safetensors';

export type QuantKind = 'int8' | 'q4';
export const QUANT_KINDS: readonly QuantKind[] = ['int8', 'q4'];
export const Q4_GROUP = 32;

/**
 * The tensors quantized: the projections, the LM head and the embedding (its rows are dequantized
 * as tokens look them up). Norms and routers stay BF16: small, and routing decisions should not move.
 */
export function isQuantizable(name: string): boolean {
  return /^layers\.\d+\.(attn\.[qkvo]_proj|mlp\.(up|down)_proj)\.weight$/.test(name) || name === 'lm_head.weight' ||
    name === 'embed.weight';
}

export const scaleName = (name: string) => `${name}_scale`;

/** Rounds half away from zero (C's roundf), as llama.cpp's quantizers do. */
const roundAway = (x: number) => Math.sign(x) * Math.round(Math.abs(x));

/** int8, symmetric per row: q = round(w / s), s = max|w| / 127 (s = 0: all zero). */
export function quantizeI8(w: Float32Array, rows: number, k: number): { q: Int8Array; scale: Float32Array } {
  const q = new Int8Array(rows * k), scale = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let amax = 0;
    for (let j = 0; j < k; j++) amax = Math.max(amax, Math.abs(w[r * k + j]));
    const s = Math.fround(amax / 127);
    scale[r] = s;
    if (s === 0) continue;
    for (let j = 0; j < k; j++) q[r * k + j] = Math.max(-127, Math.min(127, roundAway(w[r * k + j] / s)));
  }
  return { q, scale };
}

export function dequantizeI8(q: Int8Array, scale: Float32Array, rows: number, k: number, out: Float32Array): void {
  for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) out[r * k + j] = Math.fround(q[r * k + j] * scale[r]);
}

/**
 * q4 per group of 32 (Q4_0): d = m / −8 with m the group's value of largest magnitude, rounded to
 * F16; code = clamp(round(w / d) + 8, 0, 15); codes packed two per byte, even column low.
 */
export function quantizeQ4(w: Float32Array, rows: number, k: number): { q: Uint8Array; scale: Uint16Array } {
  if (k % Q4_GROUP !== 0) throw new RangeError(`q4 needs an input dimension divisible by ${Q4_GROUP}, got ${k}`);
  const groups = k / Q4_GROUP;
  const q = new Uint8Array((rows * k) / 2), scale = new Uint16Array(rows * groups);
  const codes = new Uint8Array(Q4_GROUP);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const at = r * k + g * Q4_GROUP;
      let m = 0;
      for (let j = 0; j < Q4_GROUP; j++) if (Math.abs(w[at + j]) > Math.abs(m)) m = w[at + j];
      const bits = f32ToF16Bits(m / -8);
      const d = f16BitsToF32(bits);
      scale[r * groups + g] = bits;
      for (let j = 0; j < Q4_GROUP; j++) {
        codes[j] = d === 0 ? 8 : Math.max(0, Math.min(15, roundAway(w[at + j] / d) + 8));
      }
      for (let j = 0; j < Q4_GROUP; j += 2) q[(at + j) / 2] = codes[j] | (codes[j + 1] << 4);
    }
  }
  return { q, scale };
}

export function dequantizeQ4(q: Uint8Array, scale: Uint16Array, rows: number, k: number, out: Float32Array): void {
  const groups = k / Q4_GROUP;
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < k; j++) {
      const byte = q[(r * k + j) >> 1];
      const code = (j & 1) === 0 ? byte & 15 : byte >> 4;
      out[r * k + j] = Math.fround((code - 8) * f16BitsToF32(scale[r * groups + Math.floor(j / Q4_GROUP)]));
    }
}

/** rows = the product of all dimensions but the last; k = the last. */
const rowsAndK = (shape: readonly number[]) => ({ k: shape[shape.length - 1],
  rows: shape.slice(0, -1).reduce((a, d) => a * d, 1) });

/**
 * The tensors of a quantized model.safetensors: the quantizable ones as weight + scale pairs
 * (produced one at a time, when written), the rest BF16. Notes name the tensors that had to stay
 * BF16 (q4 with k not divisible by 32).
 */
export function quantizedTensors(
  layout: ModelLayout, params: Float32Array, kind: QuantKind,
): { tensors: TensorToWrite[]; notes: string[] } {
  const tensors: TensorToWrite[] = [];
  const kept: string[] = [];
  for (const t of layout.tensors) {
    const w = () => params.subarray(t.offset, t.offset + t.size);
    const { rows, k } = rowsAndK(t.shape);
    if (!isQuantizable(t.name) || (kind === 'q4' && k % Q4_GROUP !== 0)) {
      if (isQuantizable(t.name)) kept.push(t.name);
      tensors.push({ name: t.name, dtype: 'BF16', shape: t.shape, data: w });
      continue;
    }
    // The weight is quantized when it is written, its scale just after (the same quantization twice:
    // cheap next to writing, and only one tensor's worth of memory at a time).
    let cached: { q: Int8Array | Uint8Array; scale: Float32Array | Uint16Array } | undefined;
    const get = () => (cached ??= kind === 'int8' ? quantizeI8(w(), rows, k) : quantizeQ4(w(), rows, k));
    if (kind === 'int8') {
      tensors.push({ name: t.name, dtype: 'I8', shape: t.shape, data: () => get().q });
      tensors.push({ name: scaleName(t.name), dtype: 'F32', shape: t.shape.slice(0, -1), data: () => {
        const s = get().scale;
        cached = undefined;
        return s;
      } });
    } else {
      tensors.push({ name: t.name, dtype: 'U8', shape: [...t.shape.slice(0, -1), k / 2], data: () => get().q });
      tensors.push({ name: scaleName(t.name), dtype: 'F16', shape: [...t.shape.slice(0, -1), k / Q4_GROUP],
        data: () => {
          const s = get().scale;
          cached = undefined;
          return s;
        } });
    }
  }
  const notes = kept.length === 0 ? [] : [`${kept.length} tensor(s) stay BF16: their input dimension is not a ` +
    `multiple of ${Q4_GROUP} (q4 groups), e.g. ${kept[0]}`];
  return { tensors, notes };
}

/** What a file's quantized tensors are, once checked against the layout (or undefined: none). */
export interface QuantizedLayout {
  kind: QuantKind;
  /** names of the quantized weights */
  quantized: Set<string>;
}

/**
 * Checks a header whose tensors may be quantized against the layout: every layout tensor present,
 * quantized ones with the dtypes and shapes of docs/format.md and their scales, nothing else.
 * Errors name the file and the tensor.
 */
export function checkQuantizedHeader(h: SafetensorsHeader, layout: ModelLayout, file: string):
  QuantizedLayout | undefined {
  const byName = new Map(h.tensors.map((t) => [t.name, t]));
  const quantized = new Set<string>();
  const kinds = new Set<QuantKind>();
  const shapeText = (s: readonly number[]) => `[${s.join(', ')}]`;
  const expect = (name: string, dtypes: string[], shape: readonly number[]) => {
    const e = byName.get(name);
    if (!e) throw new Error(`${file}: tensor "${name}" is missing (config.json's layout needs it)`);
    if (!dtypes.includes(e.dtype)) {
      throw new Error(`${file}: tensor "${name}" is ${e.dtype}; expected ${dtypes.join(' or ')}`);
    }
    if (shapeText(e.shape) !== shapeText(shape)) {
      throw new Error(`${file}: tensor "${name}" has shape ${shapeText(e.shape)}, expected ${shapeText(shape)}`);
    }
  };
  const expected = new Set<string>();
  for (const t of layout.tensors) {
    expected.add(t.name);
    const e = byName.get(t.name);
    if (!e) throw new Error(`${file}: tensor "${t.name}" is missing (config.json's layout needs it)`);
    if (e.dtype !== 'I8' && e.dtype !== 'U8') {
      if (byName.has(scaleName(t.name))) {
        throw new Error(`${file}: tensor "${scaleName(t.name)}" is a scale, but "${t.name}" is ${e.dtype}, ` +
          'not quantized');
      }
      expect(t.name, ['F32', 'BF16', 'F16'], t.shape);
      continue;
    }
    if (!isQuantizable(t.name)) {
      throw new Error(`${file}: tensor "${t.name}" is ${e.dtype}, but only the embedding, the projections and the ` +
        'LM head may be ' +
        'quantized (docs/format.md)');
    }
    const { k } = rowsAndK(t.shape);
    const outer = t.shape.slice(0, -1);
    if (e.dtype === 'I8') {
      kinds.add('int8');
      expect(t.name, ['I8'], t.shape);
      expect(scaleName(t.name), ['F32'], outer);
    } else {
      kinds.add('q4');
      if (k % Q4_GROUP !== 0) {
        throw new Error(`${file}: tensor "${t.name}" is q4 (U8) but its input dimension ${k} is not a multiple of ` +
          `${Q4_GROUP}`);
      }
      expect(t.name, ['U8'], [...outer, k / 2]);
      expect(scaleName(t.name), ['F16'], [...outer, k / Q4_GROUP]);
    }
    quantized.add(t.name);
    expected.add(scaleName(t.name));
  }
  for (const t of h.tensors) {
    if (!expected.has(t.name)) {
      throw new Error(`${file}: unexpected tensor "${t.name}" (not in the layout of config.json)`);
    }
  }
  if (kinds.size === 0) return undefined;
  if (kinds.size > 1) throw new Error(`${file}: mixes int8 and q4 tensors; a checkpoint has one quantization`);
  return { kind: [...kinds][0], quantized };
}
