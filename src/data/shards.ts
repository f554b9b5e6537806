// Token shards: a folder written by `dsmoe tokenize` (src/data/tokenize-shards.ts) holding flat
// little-endian token files (DESIGN §3: uint16 when the vocabulary has ≤ 65536 ids, else uint32) and
// a manifest.json that names them (docs/shards.md has the exact format):
//
//   manifest.json        format, dtype, tokenizer hash, inputs, the shard list with token counts and checksums
//   train-00000.bin …    training shards: whole documents joined by EOS (no EOS at either end)
//   val.bin              the held-out shard: the held-out documents, joined the same way
//
// Training maps the shards read-only (the addon's mapFile) and never reads them whole; opening checks
// each shard's size against its token count and the checksum of a few sampled blocks, so a truncated,
// replaced or mislabelled shard is named before training starts.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TokenArray } from './sampler';

export const MANIFEST_FILE = 'manifest.json';
export const SHARD_FORMAT = 'dsmoe-token-shards';
export const SHARD_FORMAT_VERSION = 1;
/** Bytes of each checksummed sample block (see sampleOffsets). */
export const SAMPLE_BLOCK_BYTES = 65536;
export const VAL_FILE = 'val.bin';

export type ShardDtype = 'uint16' | 'uint32';

export interface ShardEntry {
  /** File name inside the folder. */
  file: string;
  tokens: number;
  documents: number;
  /** Global document indices (in input order, held-out ones counted too): [first_document, end_document). */
  first_document: number;
  end_document: number;
  /** sha256 of the whole file (hex). */
  sha256: string;
  /** sha256 of the sampled blocks (sampleOffsets), in order (hex): checked every time the shard is opened. */
  sample_sha256: string;
}

export interface ManifestInput {
  path: string;
  size: number;
  mtime_ms: number;
}

export interface ShardManifest {
  format: typeof SHARD_FORMAT;
  format_version: number;
  /** False while `dsmoe tokenize` is running or after it was interrupted (then only `shards` are final). */
  complete: boolean;
  dtype: ShardDtype;
  vocab_size: number;
  eos_id: number;
  /** The tokenizer's content hash (sha256 over its tokenizer.json text, src/tokenizer) and where it was read. */
  tokenizer: { content_hash: string; file: string };
  text_mode: 'paragraphs' | 'file';
  inputs: ManifestInput[];
  /** A training shard is closed at the first document end at or after this many tokens. */
  shard_tokens: number;
  /** The held-out split: the same seeded shuffle of document indices as the small-data path (dataset.ts). */
  val_share: number;
  seed: number;
  documents: { total: number; train: number; val: number };
  shards: ShardEntry[];
  /** The held-out shard (null while incomplete, or when val_share is 0). */
  val: (Omit<ShardEntry, 'first_document' | 'end_document'>) | null;
  /** While incomplete: documents done (those before the end of the last finished shard), held-out tokens so far. */
  progress?: { next_document: number; val_tokens: number; val_documents: number };
  stats?: { chars: number; seconds: number; workers: number };
}

/** Bytes per token. */
export const dtypeBytes = (d: ShardDtype): number => (d === 'uint16' ? 2 : 4);

/** Whether a folder holds a token-shard manifest. */
export function isShardDir(dir: string): boolean {
  const f = path.join(dir, MANIFEST_FILE);
  if (!fs.existsSync(f)) return false;
  try {
    const m = JSON.parse(fs.readFileSync(f, 'utf8')) as { format?: unknown };
    return m.format === SHARD_FORMAT;
  } catch {
    return false;
  }
}

/** Byte offsets of the sampled blocks of a file of `size` bytes: the first, the middle and the last block. */
export function sampleOffsets(size: number): number[] {
  const B = SAMPLE_BLOCK_BYTES;
  const offs = [0, Math.floor(size / 2 / B) * B, Math.max(0, size - B)];
  return [...new Set(offs)];
}

/** sha256 of the sampled blocks of `bytes` (the whole file's bytes, or a mapped view). */
export function sampleHash(bytes: Uint8Array): string {
  const h = crypto.createHash('sha256');
  for (const o of sampleOffsets(bytes.byteLength))
    h.update(bytes.subarray(o, Math.min(bytes.byteLength, o + SAMPLE_BLOCK_BYTES)));
  return h.digest('hex');
}

/** sha256 of the sampled blocks of a file, read with positioned reads. */
export function sampleHashFile(file: string): string {
  const size = fs.statSync(file).size;
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(SAMPLE_BLOCK_BYTES);
    for (const o of sampleOffsets(size)) {
      const n = fs.readSync(fd, buf, 0, Math.min(SAMPLE_BLOCK_BYTES, size - o), o);
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/** Reads and checks the shape of a manifest (not its shards). */
export function readManifest(dir: string): ShardManifest {
  const file = path.join(dir, MANIFEST_FILE);
  let m: ShardManifest;
  try {
    m = JSON.parse(fs.readFileSync(file, 'utf8')) as ShardManifest;
  } catch (e) {
    throw new Error(`${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : `not valid JSON (` +
      `${(e as Error).message})`}`);
  }
  const bad = (what: string) => new Error(`${file}: ${what}`);
  if (m === null || typeof m !== 'object' || m.format !== SHARD_FORMAT) throw bad(`not a ${SHARD_FORMAT} manifest`);
  if (m.format_version !== SHARD_FORMAT_VERSION)
    throw bad(`format_version ${m.format_version} is not supported (this dsmoe reads ${SHARD_FORMAT_VERSION})`);
  if (m.dtype !== 'uint16' && m.dtype !== 'uint32') throw bad(`dtype must be uint16 or uint32, got ${m.dtype}`);
  if (!Number.isInteger(m.vocab_size) || m.vocab_size < 1) throw bad(`vocab_size must be a positive integer`);
  if (!Array.isArray(m.shards)) throw bad('shards must be a list');
  for (const s of m.shards) {
    if (typeof s?.file !== 'string' || path.basename(s.file) !== s.file || !Number.isSafeInteger(s.tokens) ||
      s.tokens < 1 || typeof s.sample_sha256 !== 'string')
      throw bad(`malformed shard entry ${JSON.stringify(s)}`);
  }
  return m;
}

/** A token file mapped read-only as a typed array (the addon's mapFile; errors name the file). */
export function mapTokenFile(file: string, dtype: ShardDtype,
  access: 'normal' | 'random' | 'sequential' = 'normal'): TokenArray {
  // Loaded here, not at the top: the text path and `dsmoe tokenize` do not need the addon.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { loadAddon } = require('../native/addon') as typeof import('../native/addon');
  const buf = loadAddon().mapFile({ path: file, elementSize: dtypeBytes(dtype), access });
  return dtype === 'uint16' ? new Uint16Array(buf) : new Uint32Array(buf);
}

export interface OpenedShards {
  dir: string;
  manifest: ShardManifest;
  /** The training shards, memory-mapped, in manifest order. */
  train: TokenArray[];
  /** The held-out shard, memory-mapped (empty when the manifest has none). */
  val: TokenArray;
  trainTokens: number;
}

export interface OpenShardsOptions {
  /** The tokenizer training will use: its content hash must be the manifest's. */
  tokenizer?: { contentHash?: string; vocabSize: number };
  vocabSize?: number;
}

function openOne(dir: string, entry: { file: string; tokens: number; sample_sha256: string }, dtype: ShardDtype,
  what: string, access: 'random' | 'sequential'): TokenArray {
  const file = path.join(dir, entry.file);
  const el = dtypeBytes(dtype);
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch {
    throw new Error(`${what} ${entry.file} of ${dir} is missing (the manifest lists it)`);
  }
  if (size !== entry.tokens * el)
    throw new Error(`${what} ${entry.file} of ${dir} ${size < entry.tokens * el ? 'is truncated' : 'is too long'}: ` +
      `${size} bytes, the manifest says ${entry.tokens} ${dtype} tokens (${entry.tokens * el} bytes)`);
  const arr = mapTokenFile(file, dtype, access);
  const bytes = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
  if (sampleHash(bytes) !== entry.sample_sha256)
    throw new Error(`${what} ${entry.file} of ${dir} does not match the manifest: the checksum of its sampled blocks ` +
      `differs (the file was changed or replaced; run dsmoe tokenize again)`);
  return arr;
}

/**
 * Opens a shard folder for training: checks the manifest against the tokenizer and against its
 * shards (listed files present, sizes = token counts, sampled-block checksums, no unlisted shard
 * files), then maps every shard. Reads only the manifest and a few blocks per shard.
 */
export function openShards(dir: string, opts: OpenShardsOptions = {}): OpenedShards {
  const m = readManifest(dir);
  const mf = path.join(dir, MANIFEST_FILE);
  if (!m.complete)
    throw new Error(`${dir}: the tokenization is incomplete (${m.shards.length} shards written); run the same ` +
      '`dsmoe tokenize` command again to finish it');
  const tok = opts.tokenizer;
  if (tok?.contentHash !== undefined && tok.contentHash !== m.tokenizer.content_hash)
    throw new Error(`${dir} was tokenized with another tokenizer (${m.tokenizer.file}, content hash ` +
      `${m.tokenizer.content_hash.slice(0, 12)}…) than the one given ` +
      `(content hash ${tok.contentHash.slice(0, 12)}…); ` +
      'pass --tokenizer with the same tokenizer.json, or tokenize again');
  const vocab = tok?.vocabSize ?? opts.vocabSize;
  if (vocab !== undefined && m.vocab_size > vocab)
    throw new Error(`${mf}: vocab_size ${m.vocab_size} is larger than the tokenizer's ${vocab}`);
  if (m.shards.length === 0) throw new Error(`${mf} lists no training shards`);
  const listed = new Set(m.shards.map((s) => s.file));
  for (const name of fs.readdirSync(dir).sort()) {
    if (/^train-\d+\.bin$/.test(name) && !listed.has(name))
      throw new Error(`${dir} has the shard file ${name}, which its manifest does not list (${m.shards.length} ` +
        'shards): the manifest does not match its shards; run dsmoe tokenize again');
  }
  // Training windows are drawn at random (no read-around: a window brings in its own pages only);
  // evaluation reads the held-out shard from its start.
  const train = m.shards.map((s) => openOne(dir, s, m.dtype, 'shard', 'random'));
  const val = m.val ? openOne(dir, m.val, m.dtype, 'held-out shard', 'sequential')
    : (m.dtype === 'uint16' ? new Uint16Array(0) : new Uint32Array(0));
  return { dir, manifest: m, train, val, trainTokens: train.reduce((n, t) => n + t.length, 0) };
}
