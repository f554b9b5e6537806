// Reads and validates a safetensors header (8-byte little-endian length, JSON, data) without
// reading the data: the native engine maps the file and re-checks each range it uses.
import * as fs from 'node:fs';
import type { FileTensorEntry } from '../native/addon';

export interface SafetensorsHeader {
  /** byte offset of the data section in the file (8 + header length) */
  dataOffset: number;
  /** every tensor, ranges relative to the data section */
  tensors: FileTensorEntry[];
  metadata: Record<string, string>;
}

const BYTES: Record<string, number> = { F32: 4, BF16: 2, F16: 2, F64: 8, I32: 4, I64: 8, U8: 1, I8: 1, U16: 2, I16: 2, BOOL: 1 };
const MAX_HEADER = 100 * 1024 * 1024;

export function readSafetensorsHeader(file: string): SafetensorsHeader {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const bad = (why: string): never => { throw new Error(`${file}: not a valid safetensors file: ${why}`); };
    if (size < 8) bad('shorter than its 8-byte header length');
    const lenBuf = Buffer.alloc(8);
    fs.readSync(fd, lenBuf, 0, 8, 0);
    const len = Number(lenBuf.readBigUInt64LE(0));
    if (len > MAX_HEADER || 8 + len > size) bad(`header length ${len} is past the end of the file (${size} bytes)`);
    const json = Buffer.alloc(len);
    fs.readSync(fd, json, 0, len, 8);
    let header: unknown;
    try { header = JSON.parse(json.toString('utf8')); } catch (e) { bad(`header is not JSON (${(e as Error).message})`); }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) bad('header is not a JSON object');
    const dataOffset = 8 + len, dataSize = size - dataOffset;
    const tensors: FileTensorEntry[] = [];
    let metadata: Record<string, string> = {};
    for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') { metadata = (v ?? {}) as Record<string, string>; continue; }
      const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof t !== 'object' || t === null) bad(`${name} is not an object`);
      if (typeof t.dtype !== 'string' || !(t.dtype in BYTES)) bad(`${name} has an unknown dtype ${String(t.dtype)}`);
      const shape = t.shape, offs = t.data_offsets;
      if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) bad(`${name} has a bad shape`);
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0)) bad(`${name} has bad data_offsets`);
      const [begin, end] = offs as number[];
      const bytes = (shape as number[]).reduce((a, b) => a * b, 1) * BYTES[t.dtype as string];
      if (end < begin || end - begin !== bytes) bad(`${name} spans ${end - begin} bytes, its shape and dtype need ${bytes}`);
      if (end > dataSize) bad(`${name} ends at data byte ${end}, past the end of the file (${dataSize} data bytes)`);
      tensors.push({ name, dtype: t.dtype as string, shape: shape as number[], begin, end });
    }
    return { dataOffset, tensors, metadata };
  } finally {
    fs.closeSync(fd);
  }
}
