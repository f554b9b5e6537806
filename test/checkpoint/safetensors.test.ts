// safetensors: round trips (F32, BF16, F16, metadata) and every kind of corruption → a clear error.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  SafetensorsReader, bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, readSafetensors,
  readSafetensorsHeader, writeSafetensors, MAX_HEADER_BYTES,
} from '../../src/checkpoint/safetensors';
import { bf16NearestEvenRef, f32FromBits } from '../reference/bf16';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-st-'));

/** A file with a hand-made header (JSON text) and a data section of `dataBytes` bytes. */
function rawFile(dir: string, header: string, dataBytes: number, lengthOverride?: bigint): string {
  const body = Buffer.from(header, 'utf8');
  const buf = Buffer.alloc(8 + body.length + dataBytes);
  buf.writeBigUInt64LE(lengthOverride ?? BigInt(body.length), 0);
  body.copy(buf, 8);
  const file = path.join(dir, `f${Math.random().toString(36).slice(2)}.safetensors`);
  fs.writeFileSync(file, buf);
  return file;
}

describe('safetensors round trip', () => {
  test('F32, BF16 and F16 tensors with metadata', () => {
    const dir = tmp();
    const file = path.join(dir, 'a.safetensors');
    const a = Float32Array.from({ length: 12 }, (_, i) => (i - 5) * 0.37);
    // Values that need rounding to bf16, two ties among them: 1 + 2^-8 goes down to 1 and
    // 1 + 3·2^-8 up to 1 + 2^-6 (to the even neighbour both times).
    const b = Float32Array.from([0.1, -1.2345678, 1 + 3 * 2 ** -8, Math.PI, -7e-3, 1 + 2 ** -8]);
    const c = Float32Array.from({ length: 5 }, (_, i) => i / 3);
    writeSafetensors(file, [
      { name: 'w.a', dtype: 'F32', shape: [3, 4], data: a },
      { name: 'w.b', dtype: 'BF16', shape: [2, 3], data: b },
      { name: '0', dtype: 'F16', shape: [5], data: c },
      { name: 'empty', dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
    ], { format: 'pt', note: 'hi' });
    const size = fs.statSync(file).size;
    const h = readSafetensorsHeader(file);
    expect(h.dataStart % 64).toBe(0); // cache-line aligned data (the format asks for 8)
    expect(h.dataStart + h.dataLength).toBe(size);
    expect(h.tensors.map((t) => t.name)).toEqual(['w.a', 'w.b', '0', 'empty']); // header order = data order
    expect(h.metadata).toEqual({ format: 'pt', note: 'hi' });
    const { tensors } = readSafetensors(file);
    expect(Array.from(tensors.get('w.a')!.data)).toEqual(Array.from(a));
    expect(tensors.get('w.a')!.shape).toEqual([3, 4]);
    // BF16: each value is the nearest bf16, ties to even (the value-based reference, not the writer's function).
    expect(Array.from(tensors.get('w.b')!.data)).toEqual(Array.from(b,
      (x) => f32FromBits(bf16NearestEvenRef(x) << 16)));
    expect([tensors.get('w.b')!.data[2], tensors.get('w.b')!.data[5]]).toEqual([1 + 2 ** -6, 1]);
    expect(Array.from(b).every((x, i) => tensors.get('w.b')!.data[i] !== x)).toBe(true);  // all of them were rounded
    // F16 keeps 11 bits: relative error ≤ 2^-11.
    tensors.get('0')!.data.forEach((v, i) => expect(Math.abs(v - c[i])).toBeLessThanOrEqual(Math.abs(c[i]) * 2 ** -11 +
      1e-7));
    expect(tensors.get('empty')!.data.length).toBe(0);
    const r = SafetensorsReader.open(file);
    expect(Array.from(r.readHalfBits('w.b'))).toEqual(Array.from(b, bf16NearestEvenRef));
    const into = new Float32Array(12);
    r.readFloat32Into('w.a', into);
    expect(Array.from(into)).toEqual(Array.from(a));
    expect(() => r.readFloat32Into('w.a', new Float32Array(11))).toThrow(/12 elements; the destination has 11/);
    expect(() => r.entry('nope')).toThrow(/no tensor "nope"/);
    r.close();
  });

  test('raw 16-bit patterns are written as given', () => {
    const dir = tmp();
    const file = path.join(dir, 'raw.safetensors');
    const bits = Uint16Array.from([0x3f80, 0xbf80, 0x7fc0, 0x0000]);
    writeSafetensors(file, [{ name: 'x', dtype: 'BF16', shape: [4], data: bits }]);
    const r = SafetensorsReader.open(file);
    expect(Array.from(r.readHalfBits('x'))).toEqual(Array.from(bits));
    const f = r.readFloat32('x');
    expect([f[0], f[1], f[3]]).toEqual([1, -1, 0]);
    expect(Number.isNaN(f[2])).toBe(true);
    r.close();
  });

  test('half conversions: rounding, subnormals, overflow, NaN', () => {
    expect(f16BitsToF32(f32ToF16Bits(1))).toBe(1);
    expect(f16BitsToF32(f32ToF16Bits(65504))).toBe(65504);
    expect(f16BitsToF32(f32ToF16Bits(1e6))).toBe(Infinity);
    expect(f16BitsToF32(f32ToF16Bits(-1e6))).toBe(-Infinity);
    expect(f16BitsToF32(f32ToF16Bits(2 ** -24))).toBe(2 ** -24); // smallest subnormal
    expect(f16BitsToF32(f32ToF16Bits(2 ** -26))).toBe(0);
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN)))).toBe(true);
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(bf16BitsToF32(f32ToBf16Bits(3.140625))).toBe(3.140625);
    expect(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(NaN)))).toBe(true);
    expect(bf16BitsToF32(f32ToBf16Bits(-Infinity))).toBe(-Infinity);
  });

  test('writer rejects bad tensors before creating the file', () => {
    const dir = tmp();
    const file = path.join(dir, 'bad.safetensors');
    expect(() => writeSafetensors(file, [{ name: 'a', dtype: 'F32', shape: [2, 2],
      data: new Float32Array(3) }])).toThrow(/"a".*4 elements but the data has 3/);
    expect(() => writeSafetensors(file, [{ name: 'a', dtype: 'F32', shape: [1], data: new Float32Array(1) },
      { name: 'a', dtype: 'F32', shape: [1], data: new Float32Array(1) }])).toThrow(/duplicate tensor name "a"/);
    expect(() => writeSafetensors(file, [{ name: 'a', dtype: 'I16' as never, shape: [1],
      data: new Float32Array(1) }])).toThrow(/unsupported dtype/);
    expect(() => writeSafetensors(file, [{ name: 'a', dtype: 'I8', shape: [1],
      data: new Float32Array(1) }])).toThrow(/tensor "a": I8 data must be an Int8Array/);
    expect(() => writeSafetensors(file, [{ name: 'a', dtype: 'BF16', shape: [1],
      data: new Uint8Array(1) }])).toThrow(/tensor "a": BF16 data must be a Float32Array or Uint16Array/);
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

describe('safetensors corruption → clear errors naming the file and field', () => {
  const dir = tmp();
  const good = () => {
    const file = path.join(dir, `g${Math.random().toString(36).slice(2)}.safetensors`);
    writeSafetensors(file, [
      { name: 'a', dtype: 'F32', shape: [4], data: new Float32Array(4) },
      { name: 'b', dtype: 'F32', shape: [2], data: new Float32Array(2) },
    ]);
    return file;
  };

  test('missing file and too-short file', () => {
    expect(() => readSafetensorsHeader(path.join(dir, 'none.safetensors'))).toThrow(/not found: .*none\.safetensors/);
    const f = path.join(dir, 'short.safetensors');
    fs.writeFileSync(f, Buffer.alloc(5));
    expect(() => readSafetensorsHeader(f)).toThrow(/short\.safetensors.*5 bytes, too short/);
  });

  test('truncated data section', () => {
    const f = good();
    fs.truncateSync(f, fs.statSync(f).size - 4);
    expect(() => readSafetensorsHeader(f)).toThrow(/tensor "b".*outside the data section.*truncated/);
  });

  test('truncated header', () => {
    const f = good();
    fs.truncateSync(f, 20);
    expect(() => readSafetensorsHeader(f)).toThrow(/header length \d+ runs past the end of the file \(20 bytes\)/);
  });

  test('huge header length is refused without allocating it', () => {
    const f = rawFile(dir, '{}', 0, 1n << 62n);
    expect(() => readSafetensorsHeader(f)).toThrow(new RegExp(`larger than the ${MAX_HEADER_BYTES}-byte limit`));
  });

  test('bad JSON, non-object JSON, bad UTF-8', () => {
    expect(() => readSafetensorsHeader(rawFile(dir, '{"a": {', 0))).toThrow(/header is not valid JSON/);
    expect(() => readSafetensorsHeader(rawFile(dir, '[1,2]', 0))).toThrow(/does not start with '\{'/);
    const f = rawFile(dir, '{"a":1}', 0);
    const buf = fs.readFileSync(f);
    buf[10] = 0xff;
    fs.writeFileSync(f, buf);
    expect(() => readSafetensorsHeader(f)).toThrow(/not valid UTF-8/);
  });

  test('unknown and unsupported dtypes', () => {
    expect(() => readSafetensorsHeader(rawFile(dir, '{"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}',
      4))).toThrow(/tensor "w": unknown dtype "F33"/);
    expect(() => readSafetensorsHeader(rawFile(dir, '{"w":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}',
      4))).toThrow(/tensor "w": dtype I32 is not supported/);
    expect(() => readSafetensorsHeader(rawFile(dir, '{"w":{"shape":[1],"data_offsets":[0,4]}}',
      4))).toThrow(/tensor "w": "dtype" is missing/);
  });

  test('bad shapes and offsets', () => {
    const t = (entry: string, data: number) => () => readSafetensorsHeader(rawFile(dir, `{"w":${entry}}`, data));
    expect(t('{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}',
      4)).toThrow(/tensor "w": "shape" must be a list of non-negative integers/);
    expect(t('{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}', 4)).toThrow(/"shape"/);
    expect(t('{"dtype":"F32","shape":[1],"data_offsets":[0.5,4]}',
      4)).toThrow(/tensor "w": "data_offsets" must be two non-negative integers/);
    expect(t('{"dtype":"F32","shape":[1],"data_offsets":[0]}', 4)).toThrow(/"data_offsets"/);
    expect(t('{"dtype":"F32","shape":[1],"data_offsets":["0",4]}', 4)).toThrow(/"data_offsets"/);
    expect(t('{"dtype":"F32","shape":[1],"data_offsets":[4,0]}', 4)).toThrow(/end before they begin/);
    expect(t('{"dtype":"F32","shape":[1],"data_offsets":[4,8]}', 4)).toThrow(/outside the data section \(4 bytes\)/);
    expect(t('{"dtype":"F32","shape":[2],"data_offsets":[0,4]}', 8)).toThrow(/span 4 bytes but F32 \[2\] needs 8/);
    expect(t('{"dtype":"F32","shape":[1e300],"data_offsets":[0,4]}', 4)).toThrow(/"shape"/);
    expect(t('{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}', 4)).toThrow(/needs/);
    expect(t('5', 4)).toThrow(/tensor "w": entry must be an object/);
  });

  test('overlapping tensors', () => {
    const f = rawFile(dir,
      '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}',
      12);
    expect(() => readSafetensorsHeader(f)).toThrow(/tensors "a" \[0, 8\] and "b" \[4, 12\] overlap/);
  });

  test('bad metadata', () => {
    expect(() => readSafetensorsHeader(rawFile(dir, '{"__metadata__":{"k":1}}',
      0))).toThrow(/"__metadata__"."k" must be a string/);
    expect(() => readSafetensorsHeader(rawFile(dir, '{"__metadata__":[]}',
      0))).toThrow(/"__metadata__" must be an object/);
  });
});
