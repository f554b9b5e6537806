// Quantized weight formats (native/kernels/cpu/quant.h) and fp16 conversions (native/core/half.h).

/** Weight storage types: F32, BF16 (Uint16Array), I8 (Int8Array + fp32 row scales), Q4 (Uint8Array + fp16 scales). */
export type WeightDType = 'F32' | 'BF16' | 'I8' | 'Q4';

export interface DequantizeRowsArgs {
  dtype: WeightDType;
  /** [·, k] (Q4: [·, k/2] bytes), at least row0 + rows rows */
  w: Float32Array | Uint16Array | Int8Array | Uint8Array;
  /** I8: Float32Array, one per row; Q4: Uint16Array of fp16, k/32 per row; unused for F32 and BF16 */
  scales?: Float32Array | Uint16Array;
  /** first row to dequantize (default 0) */
  row0?: number;
  rows: number;
  /** columns (a multiple of 32 for Q4) */
  k: number;
}

export interface QuantFunctions {
  /** Rows [row0, row0 + rows) of the dequantized matrix, [rows, k] fp32. */
  dequantizeRows(args: DequantizeRowsArgs): Float32Array;
  /** fp16 bit patterns to floats (exact). */
  halfToFloat(args: { h: Uint16Array }): Float32Array;
  /** Floats to fp16 bit patterns (round to nearest even; overflow to ±inf, NaN stays NaN). */
  floatToHalf(args: { x: Float32Array }): Uint16Array;
}
