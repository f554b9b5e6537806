// Memory-mapped files (native/bindings/bind_mmap.cc), for token shards read without copying them, and
// aligned memory for the shard writer's direct I/O.

export interface MmapFunctions {
  /**
   * Maps a file read-only (PROT_READ, MAP_SHARED) and returns its bytes as an external ArrayBuffer,
   * unmapped when the buffer is garbage-collected. Views of it must only be read: the pages are
   * read-only. Throws naming the file when it is missing or unreadable, not a regular file, empty, or
   * its size is not a multiple of elementSize (default 1, at most 8). `access` is a hint to the kernel
   * (madvise): 'random' reads only the pages touched (no read-around), 'sequential' reads ahead.
   */
  mapFile(args: { path: string; elementSize?: number; access?: 'normal' | 'random' | 'sequential' }): ArrayBuffer;

  /**
   * A zeroed ArrayBuffer of `bytes` bytes starting at a multiple of `alignment` (a power of two from 64
   * to 1 MiB, default 4096): the memory a write with O_DIRECT needs (JavaScript's own buffers are only
   * 8- or 16-byte aligned). Freed when the buffer is garbage-collected.
   */
  alignedBuffer(args: { bytes: number; alignment?: number }): ArrayBuffer;
}
