// Durable file writes: write into a temporary file beside the target, fsync it, rename it into place,
// fsync the folder. A crash at any point leaves either the old file or the new one, never a mix.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** fsyncs a folder so that renames inside it are durable (a no-op where folders cannot be opened). */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Some platforms and file systems do not allow fsync on a directory; the rename is still atomic.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Writes all of `bytes` at `pos`, or at the fd's current position when `pos` is not given. */
export function writeAll(fd: number, bytes: Uint8Array, pos?: number): void {
  let off = 0;
  while (off < bytes.byteLength)
    off += fs.writeSync(fd, bytes, off, bytes.byteLength - off, pos === undefined ? null : pos + off);
}

/**
 * Writes `file` atomically: `write(fd)` fills a temporary file in the same folder, which is then
 * fsynced and renamed over `file`; the folder is fsynced after. On error the temporary file is removed
 * and `file` is untouched. Creates the folder when needed.
 */
export function atomicWriteFile(file: string, write: (fd: number) => void): void {
  const dir = path.dirname(path.resolve(file));
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.tmp`);
  const fd = fs.openSync(tmp, 'wx');
  try {
    write(fd);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  try {
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(dir);
}

/** atomicWriteFile for a string or byte chunks. */
export function atomicWrite(file: string, data: string | Uint8Array | Uint8Array[]): void {
  atomicWriteFile(file, (fd) => {
    const chunks = typeof data === 'string' ? [Buffer.from(data, 'utf8')] : Array.isArray(data) ? data : [data];
    for (const c of chunks) writeAll(fd, c);
  });
}

/** Writes a file (not atomically; for files inside a folder that is itself swapped in atomically) and fsyncs it. */
export function writeFileSynced(file: string, write: (fd: number) => void): void {
  const fd = fs.openSync(file, 'w');
  try {
    write(fd);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
