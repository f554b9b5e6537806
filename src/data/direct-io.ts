// Writes that go around the page cache (O_DIRECT), for the token files `dsmoe tokenize` writes.
//
// A buffered write copies every byte into the page cache, on the writing thread: on the 2-core VM
// measured here that copy cost 1.3-1.9 s of CPU per 560 MB (pages new to the host), against 0.05-0.1 s
// with O_DIRECT, where the disk takes the bytes from our buffer (0.35 s wall). With two workers on two
// cores, that CPU came off the workers'. O_DIRECT wants the memory, the file position and the length
// aligned (4096 bytes covers the usual logical block sizes); JavaScript cannot align memory, the addon
// can. Where anything is missing (no addon, no O_DIRECT on this platform or file system, a stricter
// alignment) the writes go through the page cache as before: the bytes on disk are the same.
import * as fs from 'node:fs';
import { writeAll } from '../checkpoint/fsutil';

export const DIRECT_ALIGNMENT = 4096;

/** `bytes` of memory aligned to DIRECT_ALIGNMENT (the addon's alignedBuffer), or null without the addon. */
export function alignedMemory(bytes: number): ArrayBuffer | null {
  // Loaded here, not at the top: tokenizing runs without the addon too.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { tryLoadAddon } = require('../native/addon') as typeof import('../native/addon');
  const addon = tryLoadAddon();
  if (typeof addon?.alignedBuffer !== 'function') return null; // none, or one built before alignedBuffer
  return addon.alignedBuffer({ bytes, alignment: DIRECT_ALIGNMENT });
}

/** `file` (which exists) opened for writing with O_DIRECT, or null where that is not possible. */
export function openDirect(file: string): number | null {
  const flag = fs.constants.O_DIRECT;
  if (flag === undefined) return null; // not Linux
  try {
    return fs.openSync(file, fs.constants.O_WRONLY | flag);
  } catch {
    return null; // a file system without direct I/O (EINVAL), or anything else: the buffered path says what is wrong
  }
}

/**
 * A file written at explicit positions: with O_DIRECT while every write is aligned (memory from
 * alignedMemory, positions and lengths multiples of DIRECT_ALIGNMENT), through the page cache from the
 * first one that is not (a file's last bytes) or that the direct path refuses. A refused write is
 * written again through the page cache, at the same position: an error that is not about direct I/O
 * (a full disk) comes back from there.
 */
export class PositionedWriter {
  private direct: number | null;

  /** `fd`: the file opened for writing; `tryDirect`: whether to open it a second time with O_DIRECT. */
  constructor(readonly file: string, readonly fd: number, tryDirect: boolean) {
    this.direct = tryDirect ? openDirect(file) : null;
  }

  /** Whether writes still go around the page cache. */
  get isDirect(): boolean {
    return this.direct !== null;
  }

  write(bytes: Uint8Array, pos: number): void {
    if (this.direct !== null) {
      if (bytes.length % DIRECT_ALIGNMENT === 0 && pos % DIRECT_ALIGNMENT === 0) {
        try {
          writeAll(this.direct, bytes, pos);
          return;
        } catch {
          // EINVAL (a stricter alignment, memory that is not aligned, a short write that left the rest
          // unaligned), EOPNOTSUPP on some FUSE and network file systems, or a real error that the
          // buffered write below reports.
        }
      }
      this.closeDirect();
    }
    writeAll(this.fd, bytes, pos);
  }

  close(): void {
    this.closeDirect();
    fs.closeSync(this.fd);
  }

  private closeDirect(): void {
    if (this.direct === null) return;
    fs.closeSync(this.direct);
    this.direct = null;
  }
}
