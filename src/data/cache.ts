// The on-disk cache shared by the data and tokenizer layers: where it lives, how keys are made,
// and atomic writes (a reader never sees a half-written file).
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { envCacheDir } from '../util/env';

/** `$DSMOE_CACHE_DIR` when set, else `~/.cache/dsmoe`. */
export function defaultCacheDir(): string {
  return envCacheDir() ?? path.join(os.homedir(), '.cache', 'dsmoe');
}

/** sha256 over the given parts (strings or bytes), each length-prefixed so parts cannot run together. */
export function hashParts(parts: Array<string | Uint8Array>): string {
  const h = crypto.createHash('sha256');
  for (const p of parts) {
    const bytes = typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
    h.update(`${bytes.length}:`);
    h.update(bytes);
  }
  return h.digest('hex');
}

/** sha256 of a file's content. */
export function hashFile(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/** Atomic write (temp file, fsync, rename): one implementation for the whole package. */
export { atomicWrite } from '../checkpoint/fsutil';

/** Reads a whole file into a fresh, 8-byte-aligned buffer (typed-array views can start at 0). */
export function readAligned(file: string): Uint8Array {
  const size = fs.statSync(file).size;
  const out = new Uint8Array(new ArrayBuffer(size));
  const fd = fs.openSync(file, 'r');
  try {
    let off = 0;
    while (off < size) {
      const n = fs.readSync(fd, out, off, Math.min(size - off, 1 << 30), off);
      if (n === 0) throw new Error(`${file}: file shrank while reading (${off} of ${size} bytes)`);
      off += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return out;
}
