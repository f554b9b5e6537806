// safetensors files (https://github.com/huggingface/safetensors): an 8-byte little-endian header
// length N, N bytes of UTF-8 JSON, then the data section. The JSON maps each tensor name to
// {dtype, shape, data_offsets: [begin, end]} (byte offsets into the data section) and may hold a
// "__metadata__" map of strings to strings.
//
// Writing: tensors are laid out back to back in the order given (the format allows no gaps); the
// header is padded with spaces so the data section starts at a multiple of 64 bytes (the format
// asks for 8): tensors whose sizes are multiples of 64 bytes then start on cache lines, which the
// mapped weights' GEMV loads need to run at memory bandwidth.
// Reading: the header is validated before anything is allocated from its numbers: the length
// against the file size and MAX_HEADER_BYTES, the JSON, every dtype, shape and offset pair (integers,
// inside the data section, exactly dtype size × elements bytes, no two tensors overlapping).
// Every error names the file and the tensor or field at fault.
import * as fs from 'node:fs';
import { atomicWriteFile, writeAll } from './fsutil';

/** F32/F16/BF16 weights; I8 and U8 are quantized weights (docs/format.md), read as bytes. */
export type Dtype = 'F32' | 'F16' | 'BF16' | 'I8' | 'U8';

export const DTYPE_BYTES: Readonly<Record<Dtype, number>> = { F32: 4, F16: 2, BF16: 2, I8: 1, U8: 1 };

/** dtypes of the format that dsmoe does not read (a clearer error than "unknown"). */
const OTHER_DTYPES = new Set(['F64', 'F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F6_E2M3', 'F6_E3M2', 'F4', 'I64', 'I32', 'I16',
  'U64', 'U32', 'U16', 'BOOL', 'C64']);
const READ_DTYPES = 'F32, F16, BF16, I8 and U8';

/** Largest header accepted (the format's own readers use 100 MB too). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorEntry {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Byte offsets into the data section: [begin, end). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  file: string;
  /** Bytes of JSON (N). */
  headerLength: number;
  /** File offset of the data section (8 + N). */
  dataStart: number;
  /** Bytes in the data section (file size − 8 − N). */
  dataLength: number;
  /** The tensors in data order (for files written here: the header order). */
  tensors: TensorEntry[];
  metadata: Record<string, string>;
}

function assertLittleEndian(): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('safetensors data is little-endian; this ' +
    'machine is big-endian');
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Half-precision conversions

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** fp32 → bf16 bits, round to nearest even; NaN stays NaN. */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) return ((bits >>> 16) | 0x0040) & 0xffff;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0];
}

/** fp32 → IEEE fp16 bits, round to nearest even, overflow to ±Inf, NaN stays NaN. */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: ±0
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // may carry into the exponent (up to Inf): correct
  return sign | h;
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

function toHalfBits(src: Float32Array, dtype: 'F16' | 'BF16', out: Uint16Array): void {
  const conv = dtype === 'BF16' ? f32ToBf16Bits : f32ToF16Bits;
  for (let i = 0; i < src.length; i++) out[i] = conv(src[i]);
}

function fromHalfBits(src: Uint16Array, dtype: 'F16' | 'BF16', out: Float32Array): void {
  if (dtype === 'BF16') {
    const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
    for (let i = 0; i < src.length; i++) o[i] = src[i] << 16;
  } else {
    for (let i = 0; i < src.length; i++) out[i] = f16BitsToF32(src[i]);
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

export type TensorData = Float32Array | Uint16Array | Int8Array | Uint8Array;

export interface TensorToWrite {
  name: string;
  dtype: Dtype;
  shape: readonly number[];
  /**
   * Float32Array (converted to the dtype) or, for F16/BF16, their raw 16-bit patterns; or a function
   * called once, when the tensor's bytes are written, that returns them (so that a file of many
   * tensors can be written from one tensor in memory at a time: the header needs only the shapes).
   */
  data: TensorData | (() => TensorData);
}

// By tag, not instanceof: arrays made by the addon belong to another realm under a test runner's
// vm context, where `instanceof Float32Array` is false for a real Float32Array.
const tagOf = (x: unknown) => Object.prototype.toString.call(x);
const isU16 = (x: unknown): x is Uint16Array => tagOf(x) === '[object Uint16Array]';
const isF32 = (x: unknown): x is Float32Array => tagOf(x) === '[object Float32Array]';
const isBytes = (x: unknown): x is Int8Array | Uint8Array =>
  tagOf(x) === '[object Int8Array]' || tagOf(x) === '[object Uint8Array]';

/** Checks a tensor's data against its entry (length, type). */
function checkData(t: TensorToWrite, data: TensorData, n: number): void {
  if (data.length !== n)
    throw new Error(`tensor "${t.name}": shape [${t.shape.join(', ')}] has ${n} elements but the data has ` +
      `${data.length}`);
  if (isU16(data) && t.dtype === 'F32') throw new Error(`tensor "${t.name}": 16-bit data cannot be ` +
    `written as F32`);
  if ((t.dtype === 'I8' || t.dtype === 'U8') !== isBytes(data)) {
    throw new TypeError(`tensor "${t.name}": ${t.dtype} data must be ${t.dtype === 'I8' ? 'an Int8Array'
      : t.dtype === 'U8' ? 'a Uint8Array' : 'a Float32Array or Uint16Array'}`);
  }
  if (!isU16(data) && !isF32(data) && !isBytes(data))
    throw new TypeError(`tensor "${t.name}": data must be a Float32Array or Uint16Array`);
}

const CONVERT_CHUNK = 1 << 20;

/** Where the data section starts: a multiple of this many bytes (a cache line). */
export const DATA_ALIGN = 64;

/** Checks the tensors and builds the header; returns the header bytes (padded) and the data size. */
export function safetensorsHeaderBytes(tensors: readonly TensorToWrite[], metadata: Record<string,
  string> = {}): { header: Uint8Array; dataBytes: number } {
  const seen = new Set<string>();
  const parts: string[] = [];
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new TypeError(`safetensors metadata value for "${k}" must be a string, got ` +
      `${typeof v}`);
    meta[k] = v;
  }
  if (Object.keys(meta).length > 0) parts.push(`"__metadata__":${JSON.stringify(meta)}`);
  let offset = 0;
  for (const t of tensors) {
    if (typeof t.name !== 'string' || t.name.length === 0 || t.name === '__metadata__') throw new Error(`invalid ` +
      `tensor name ${JSON.stringify(t.name)}`);
    if (seen.has(t.name)) throw new Error(`duplicate tensor name "${t.name}"`);
    seen.add(t.name);
    if (!(t.dtype in DTYPE_BYTES)) throw new Error(`tensor "${t.name}": unsupported dtype ` +
      `${JSON.stringify(t.dtype)} (${READ_DTYPES})`);
    if (!Array.isArray(t.shape) || t.shape.some((d) => !Number.isSafeInteger(d) || d < 0))
      throw new Error(`tensor "${t.name}": shape must be a list of non-negative integers, got ` +
        `${JSON.stringify(t.shape)}`);
    const n = numel(t.shape);
    // Data given by a function is checked when it is produced (writeSafetensorsFd).
    if (typeof t.data !== 'function') checkData(t, t.data, n);
    const bytes = n * DTYPE_BYTES[t.dtype];
    const entry = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    parts.push(`${JSON.stringify(t.name)}:${JSON.stringify(entry)}`);
    offset += bytes;
  }
  // Built by hand: JSON.stringify of an object would move integer-like names ("0") to the front.
  let json = `{${parts.join(',')}}`;
  const raw = Buffer.from(json, 'utf8');
  const pad = (DATA_ALIGN - ((8 + raw.length) % DATA_ALIGN)) % DATA_ALIGN;
  json += ' '.repeat(pad);
  const body = Buffer.from(json, 'utf8');
  const header = new Uint8Array(8 + body.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(body.length), true);
  header.set(body, 8);
  return { header, dataBytes: offset };
}

/**
 * Writes a safetensors file to an open fd (at its current position). Tensors whose data is a
 * function are produced one at a time, in order, as their bytes are written.
 */
export function writeSafetensorsFd(fd: number, tensors: readonly TensorToWrite[], metadata: Record<string,
  string> = {}): void {
  assertLittleEndian();
  const { header } = safetensorsHeaderBytes(tensors, metadata);
  writeAll(fd, header);
  let scratch: Uint16Array | undefined;
  for (const t of tensors) {
    let data: TensorData;
    if (typeof t.data === 'function') {
      data = t.data();
      checkData(t, data, numel(t.shape));
    } else data = t.data;
    if (t.dtype === 'F32' || isU16(data) || isBytes(data)) {
      writeAll(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      continue;
    }
    scratch ??= new Uint16Array(CONVERT_CHUNK);
    for (let i = 0; i < data.length; i += CONVERT_CHUNK) {
      const src = data.subarray(i, Math.min(data.length, i + CONVERT_CHUNK));
      const dst = scratch.subarray(0, src.length);
      toHalfBits(src as Float32Array, t.dtype as 'F16' | 'BF16', dst);
      writeAll(fd, new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength));
    }
  }
}

/** Writes a safetensors file atomically (temporary file, fsync, rename). */
export function writeSafetensors(file: string, tensors: readonly TensorToWrite[], metadata: Record<string,
  string> = {}): void {
  safetensorsHeaderBytes(tensors, metadata); // check before creating anything
  atomicWriteFile(file, (fd) => writeSafetensorsFd(fd, tensors, metadata));
}

// ---------------------------------------------------------------------------------------------
// Reading

function readExact(fd: number, dst: Uint8Array, position: number, file: string): void {
  let off = 0;
  while (off < dst.byteLength) {
    const n = fs.readSync(fd, dst, off, Math.min(dst.byteLength - off, 1 << 30), position + off);
    if (n === 0) throw new Error(`${file}: file ended early (it changed while being read?)`);
    off += n;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Reads and validates the header of an open safetensors file. */
export function readSafetensorsHeaderFd(fd: number, file: string): SafetensorsHeader {
  const size = fs.fstatSync(fd).size;
  if (size < 8) throw new Error(`${file}: not a safetensors file: ${size} bytes, too short for the 8-byte header ` +
    `length`);
  const lenBytes = new Uint8Array(8);
  readExact(fd, lenBytes, 0, file);
  const n64 = new DataView(lenBytes.buffer).getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES))
    throw new Error(`${file}: header length ${n64} is larger than the ${MAX_HEADER_BYTES}-byte limit (corrupt file ` +
      `or not safetensors)`);
  const n = Number(n64);
  if (8 + n > size) throw new Error(`${file}: header length ${n} runs past the end of the file (${size} bytes): the ` +
    `file is truncated or corrupt`);
  if (n < 2) throw new Error(`${file}: header length ${n} is too small for a JSON header`);
  const headerBytes = new Uint8Array(n);
  readExact(fd, headerBytes, 8, file);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new Error(`${file}: header is not valid UTF-8`);
  }
  if (!text.startsWith('{')) throw new Error(`${file}: header does not start with '{' (not a safetensors file?)`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: header is not valid JSON (${(e as Error).message.replace(/\s+/g, ' ')})`);
  }
  if (!isObject(json)) throw new Error(`${file}: header is not a JSON object`);
  const dataStart = 8 + n;
  const dataLength = size - dataStart;
  const metadata: Record<string, string> = {};
  const tensors: TensorEntry[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isObject(value)) throw new Error(`${file}: "__metadata__" must be an object of strings`);
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') throw new Error(`${file}: "__metadata__"."${k}" must be a string, got ` +
          `${JSON.stringify(v)}`);
        metadata[k] = v;
      }
      continue;
    }
    const where = `${file}: tensor "${name}"`;
    if (!isObject(value)) throw new Error(`${where}: entry must be an object with dtype, shape, data_offsets`);
    const { dtype, shape, data_offsets: offsets } = value;
    if (typeof dtype !== 'string') throw new Error(`${where}: "dtype" is missing or not a string`);
    if (!(dtype in DTYPE_BYTES)) {
      throw new Error(OTHER_DTYPES.has(dtype)
        ? `${where}: dtype ${dtype} is not supported (dsmoe reads ${READ_DTYPES})`
        : `${where}: unknown dtype ${JSON.stringify(dtype)} (dsmoe reads ${READ_DTYPES})`);
    }
    if (shape === undefined) throw new Error(`${where}: "shape" is missing`);
    if (offsets === undefined) throw new Error(`${where}: "data_offsets" is missing`);
    if (!Array.isArray(shape) || shape.some((d) => typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0))
      throw new Error(`${where}: "shape" must be a list of non-negative integers, got ${JSON.stringify(shape)}`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || offsets.some((o) => typeof o !== 'number' ||
      !Number.isSafeInteger(o) || o < 0))
      throw new Error(`${where}: "data_offsets" must be two non-negative integers, got ${JSON.stringify(offsets)}`);
    const [begin, end] = offsets as number[];
    if (end < begin) throw new Error(`${where}: data_offsets [${begin}, ${end}] end before they begin`);
    if (end > dataLength)
      throw new Error(`${where}: data_offsets [${begin}, ${end}] lie outside the data section (${dataLength} bytes): ` +
        `the file is truncated or corrupt`);
    const el = DTYPE_BYTES[dtype as Dtype];
    const count = (shape as number[]).reduce((a, d) => a * d, 1);
    if (!Number.isSafeInteger(count * el) || count * el !== end - begin)
      throw new Error(`${where}: data_offsets [${begin}, ${end}] span ${end - begin} bytes but ` +
        `${dtype} [${(shape as number[]).join(', ')}] needs ${count * el}`);
    tensors.push({ name, dtype: dtype as Dtype, shape: shape as number[], begin, end });
  }
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let prev: TensorEntry | undefined;
  for (const t of tensors) {
    if (t.begin === t.end) continue; // empty tensors take no bytes
    if (prev && t.begin < prev.end)
      throw new Error(`${file}: tensors "${prev.name}" [${prev.begin}, ${prev.end}] and "${t.name}" [${t.begin}, ` +
        `${t.end}] overlap`);
    prev = t;
  }
  return { file, headerLength: n, dataStart, dataLength, tensors, metadata };
}

/** Reads and validates a safetensors header. */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  const fd = openOrThrow(file);
  try {
    return readSafetensorsHeaderFd(fd, file);
  } finally {
    fs.closeSync(fd);
  }
}

function openOrThrow(file: string): number {
  try {
    return fs.openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `safetensors file not found: ${file}`
      : `cannot open ${file}: ${(e as Error).message}`);
  }
}

/** An open, validated safetensors file; read tensors by name. Call close() when done. */
export class SafetensorsReader {
  readonly header: SafetensorsHeader;
  private readonly byName: Map<string, TensorEntry>;
  private fd: number | undefined;

  private constructor(fd: number, readonly file: string) {
    this.fd = fd;
    this.header = readSafetensorsHeaderFd(fd, file);
    this.byName = new Map(this.header.tensors.map((t) => [t.name, t]));
  }

  static open(file: string): SafetensorsReader {
    assertLittleEndian();
    const fd = openOrThrow(file);
    try {
      return new SafetensorsReader(fd, file);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  get names(): string[] {
    return this.header.tensors.map((t) => t.name);
  }

  get metadata(): Record<string, string> {
    return this.header.metadata;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  entry(name: string): TensorEntry {
    const t = this.byName.get(name);
    if (!t) throw new Error(`${this.file}: no tensor "${name}"`);
    return t;
  }

  private handle(): number {
    if (this.fd === undefined) throw new Error(`${this.file}: reader is closed`);
    return this.fd;
  }

  /** The tensor's bytes as stored (a fresh copy). */
  readRaw(name: string): Uint8Array {
    const t = this.entry(name);
    const out = new Uint8Array(new ArrayBuffer(t.end - t.begin));
    readExact(this.handle(), out, this.header.dataStart + t.begin, this.file);
    return out;
  }

  /** A BF16 or F16 tensor's raw 16-bit patterns. */
  readHalfBits(name: string): Uint16Array {
    const t = this.entry(name);
    if (DTYPE_BYTES[t.dtype] !== 2) throw new Error(`${this.file}: tensor "${name}" is ${t.dtype}, not a 16-bit type`);
    const raw = this.readRaw(name);
    return new Uint16Array(raw.buffer, 0, raw.byteLength / 2);
  }

  /** The tensor as fp32 (F16/BF16 converted). */
  readFloat32(name: string): Float32Array {
    const out = new Float32Array(numel(this.entry(name).shape));
    this.readFloat32Into(name, out);
    return out;
  }

  /** Reads the tensor as fp32 straight into `dst` (which must have exactly its element count). */
  readFloat32Into(name: string, dst: Float32Array): void {
    const t = this.entry(name);
    const n = numel(t.shape);
    if (dst.length !== n) throw new Error(`${this.file}: tensor "${name}" has ${n} elements; the destination has ` +
      `${dst.length}`);
    if (t.dtype === 'I8' || t.dtype === 'U8') {
      throw new Error(`${this.file}: tensor "${name}" is ${t.dtype} (a quantized weight): read it with its scale ` +
        '(src/checkpoint/quant.ts), not as fp32');
    }
    const fd = this.handle();
    const pos = this.header.dataStart + t.begin;
    if (t.dtype === 'F32') {
      readExact(fd, new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength), pos, this.file);
      return;
    }
    const chunk = new Uint16Array(Math.min(n, CONVERT_CHUNK));
    for (let i = 0; i < n; i += CONVERT_CHUNK) {
      const m = Math.min(CONVERT_CHUNK, n - i);
      const bits = chunk.subarray(0, m);
      readExact(fd, new Uint8Array(bits.buffer, 0, m * 2), pos + i * 2, this.file);
      fromHalfBits(bits, t.dtype, dst.subarray(i, i + m));
    }
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

export interface LoadedTensor {
  dtype: Dtype;
  shape: number[];
  data: Float32Array;
}

/** Reads a whole safetensors file, every tensor converted to fp32, in data order. */
export function readSafetensors(file: string): { metadata: Record<string, string>; tensors: Map<string,
  LoadedTensor> } {
  const r = SafetensorsReader.open(file);
  try {
    const tensors = new Map<string, LoadedTensor>();
    for (const t of r.header.tensors) tensors.set(t.name, { dtype: t.dtype, shape: t.shape,
      data: r.readFloat32(t.name) });
    return { metadata: r.metadata, tensors };
  } finally {
    r.close();
  }
}
