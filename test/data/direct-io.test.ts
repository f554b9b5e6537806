// Writes around the page cache (src/data/direct-io.ts): aligned writes go direct, the first unaligned
// one (a file's last bytes) or one the file system refuses goes through the page cache from then on,
// and the file holds the same bytes either way. The tokenize tests (shards.test.ts) compare whole runs.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DIRECT_ALIGNMENT, PositionedWriter, alignedMemory } from '../../src/data/direct-io';
import { addon } from '../helpers';
import { rng } from '../rng';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-direct-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const randomBytes = (n: number, seed: number) => {
  const r = rng(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
};

describe('alignedBuffer (native)', () => {
  test('zeroed memory of the size asked; a bad alignment is named', () => {
    const ab = addon.alignedBuffer({ bytes: 3 * DIRECT_ALIGNMENT + 5 });
    expect(ab.byteLength).toBe(3 * DIRECT_ALIGNMENT + 5);
    expect(new Uint8Array(ab).every((b) => b === 0)).toBe(true);
    expect(() => addon.alignedBuffer({ bytes: 64, alignment: 96 }))
      .toThrow('alignedBuffer: alignment must be a power of two, got 96');
    expect(() => addon.alignedBuffer({ bytes: 0 })).toThrow('alignedBuffer: bytes must be in');
  });
});

describe('PositionedWriter', () => {
  test('aligned writes go direct (Linux); the tail goes through the page cache; the file holds every byte', () => {
    const file = path.join(tmp, 'a.bin');
    const w = new PositionedWriter(file, fs.openSync(file, 'w'), true);
    if (process.platform === 'linux') expect(w.isDirect).toBe(true);
    const mem = new Uint8Array(alignedMemory(2 * DIRECT_ALIGNMENT)!);
    for (let k = 0; k < 3; k++) { // blocks out of order: the positions say where
      mem.set(randomBytes(mem.length, k));
      w.write(mem, [2, 0, 1][k] * mem.length);
    }
    const expected = new Uint8Array(3 * mem.length);
    for (let k = 0; k < 3; k++) expected.set(randomBytes(mem.length, k), [2, 0, 1][k] * mem.length);
    if (process.platform === 'linux') expect(w.isDirect).toBe(true);
    const tail = randomBytes(1001, 9);
    w.write(tail, expected.length);
    expect(w.isDirect).toBe(false);
    w.close();
    expect(new Uint8Array(fs.readFileSync(file))).toEqual(Uint8Array.from([...expected, ...tail]));
  });

  test('memory JavaScript allocated (not aligned) still lands: the writer falls back to the page cache', () => {
    const file = path.join(tmp, 'b.bin');
    const w = new PositionedWriter(file, fs.openSync(file, 'w'), true);
    const data = Buffer.from(randomBytes(2 * DIRECT_ALIGNMENT + 1, 3)).subarray(1); // an odd address
    w.write(data, 0);
    expect(w.isDirect).toBe(false); // EINVAL from the direct write
    w.write(data, data.length);
    w.close();
    expect(new Uint8Array(fs.readFileSync(file))).toEqual(Uint8Array.from([...data, ...data]));
  });

  test('without tryDirect nothing goes direct', () => {
    const file = path.join(tmp, 'c.bin');
    const w = new PositionedWriter(file, fs.openSync(file, 'w'), false);
    expect(w.isDirect).toBe(false);
    const mem = new Uint8Array(alignedMemory(DIRECT_ALIGNMENT)!).fill(7);
    w.write(mem, 0);
    w.close();
    expect(fs.readFileSync(file).every((b) => b === 7)).toBe(true);
  });
});
