// Writes around the page cache (src/data/direct-io.ts): aligned writes go direct, the first unaligned
// one (a file's last bytes) or one the direct path refuses goes through the page cache from then on,
// and the file holds the same bytes either way. The tokenize tests (shards.test.ts) compare whole runs.
// What is checked of the direct path depends on the temporary folder's file system (directIoIn):
// where O_DIRECT cannot be opened nothing goes direct, and only where it is enforced does memory
// JavaScript allocated make the writer fall back.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DIRECT_ALIGNMENT, PositionedWriter, alignedMemory } from '../../src/data/direct-io';
import { addon, directIoIn } from '../helpers';
import { rng } from '../rng';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-direct-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const direct = directIoIn(tmp);

const randomBytes = (n: number, seed: number) => {
  const r = rng(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
};

describe('alignedBuffer (native)', () => {
  test('zeroed memory of the size asked; a bad size or alignment is named', () => {
    const ab = addon.alignedBuffer({ bytes: 3 * DIRECT_ALIGNMENT + 5 });
    expect(ab.byteLength).toBe(3 * DIRECT_ALIGNMENT + 5);
    expect(new Uint8Array(ab).every((b) => b === 0)).toBe(true);
    expect(addon.alignedBuffer({ bytes: 100, alignment: 1 << 20 }).byteLength).toBe(100);
    expect(() => addon.alignedBuffer({ bytes: 64, alignment: 96 }))
      .toThrow('alignedBuffer: alignment must be a power of two, got 96');
    expect(() => addon.alignedBuffer({ bytes: 64, alignment: 32 })).toThrow('alignedBuffer: alignment must be in');
    expect(() => addon.alignedBuffer({ bytes: 64, alignment: 2 << 20 })).toThrow('alignedBuffer: alignment must be in');
    expect(() => addon.alignedBuffer({ bytes: 0 })).toThrow('alignedBuffer: bytes must be in');
    expect(() => addon.alignedBuffer({ bytes: 1.5 })).toThrow('alignedBuffer: bytes');
  });

  if (direct === 'enforced')
    test('its memory is aligned: the file system that refuses unaligned memory takes it', () => {
      const file = path.join(tmp, 'probe.bin');
      fs.writeFileSync(file, '');
      const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_DIRECT);
      try {
        const mem = new Uint8Array(addon.alignedBuffer({ bytes: DIRECT_ALIGNMENT })).fill(5);
        expect(fs.writeSync(fd, mem, 0, mem.length, 0)).toBe(DIRECT_ALIGNMENT);
      } finally {
        fs.closeSync(fd);
      }
      expect(fs.readFileSync(file).every((b) => b === 5)).toBe(true);
    });
});

describe(`PositionedWriter (O_DIRECT here: ${direct})`, () => {
  test('aligned writes go direct; the tail goes through the page cache; the file holds every byte', () => {
    const file = path.join(tmp, 'a.bin');
    const w = new PositionedWriter(file, fs.openSync(file, 'w'), true);
    expect(w.isDirect).toBe(direct !== 'none');
    const mem = new Uint8Array(alignedMemory(2 * DIRECT_ALIGNMENT)!);
    for (let k = 0; k < 3; k++) { // blocks out of order: the positions say where
      mem.set(randomBytes(mem.length, k));
      w.write(mem, [2, 0, 1][k] * mem.length);
    }
    const expected = new Uint8Array(3 * mem.length);
    for (let k = 0; k < 3; k++) expected.set(randomBytes(mem.length, k), [2, 0, 1][k] * mem.length);
    expect(w.isDirect).toBe(direct !== 'none');
    const tail = randomBytes(1001, 9);
    w.write(tail, expected.length);
    expect(w.isDirect).toBe(false);
    w.close();
    expect(new Uint8Array(fs.readFileSync(file))).toEqual(Uint8Array.from([...expected, ...tail]));
  });

  test('after direct writes, memory JavaScript allocated (not aligned) still lands: the writer falls back', () => {
    const file = path.join(tmp, 'b.bin');
    const w = new PositionedWriter(file, fs.openSync(file, 'w'), true);
    const mem = new Uint8Array(alignedMemory(DIRECT_ALIGNMENT)!);
    mem.set(randomBytes(mem.length, 4));
    w.write(mem, 0);
    expect(w.isDirect).toBe(direct !== 'none');
    const data = Buffer.from(randomBytes(2 * DIRECT_ALIGNMENT + 1, 3)).subarray(1); // an odd address
    w.write(data, mem.length); // an aligned position and length: only the memory is not
    if (direct === 'enforced') expect(w.isDirect).toBe(false); // EINVAL from the direct write
    w.write(data, mem.length + data.length);
    w.close();
    expect(new Uint8Array(fs.readFileSync(file))).toEqual(Uint8Array.from([...mem, ...data, ...data]));
  });

  test('a write the page cache cannot take either is an error, not lost bytes', () => {
    const file = path.join(tmp, 'ro.bin');
    fs.writeFileSync(file, '');
    for (const tryDirect of [false, true]) {
      const w = new PositionedWriter(file, fs.openSync(file, 'r'), tryDirect); // read-only fd
      expect(() => w.write(randomBytes(100, 1), 0)).toThrow(/EBADF/);
      w.close();
    }
    expect(fs.statSync(file).size).toBe(0);
  });

  test('without tryDirect nothing goes direct', () => {
    const file = path.join(tmp, 'c.bin');
    const w = new PositionedWriter(file, fs.openSync(file, 'w'), false);
    expect(w.isDirect).toBe(false);
    const mem = new Uint8Array(alignedMemory(DIRECT_ALIGNMENT)!).fill(7);
    w.write(mem, 0);
    expect(w.isDirect).toBe(false);
    w.close();
    expect(fs.readFileSync(file).every((b) => b === 7)).toBe(true);
  });
});
