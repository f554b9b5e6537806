// Training data for `dsmoe train` / `dsmoe eval`: reads `--data` inputs, tokenizes them (with an
// on-disk cache), splits off a validation share and hands back flat token arrays.
//
// Inputs:
//   *.txt, *.md   text; documents are paragraphs, i.e. runs of non-blank lines separated by one or
//                 more blank (whitespace-only) lines (textMode 'paragraphs', the default), or the
//                 whole file is one document (textMode 'file'). A leading UTF-8 BOM is dropped.
//   *.jsonl       one JSON object per line with a string field "text"; blank lines are skipped.
//   folders       searched recursively for the above, in sorted path order; hidden entries and
//                 other extensions are skipped.
//   *.bin         pre-tokenized: flat little-endian uint16 or uint32 token ids (nanoGPT / llm.c);
//                 the dtype is `tokenDtype`, else uint16 when the vocabulary has ≤ 65536 ids.
//   builtin:nlp-corpus   the built-in corpus, one sentence per document.
//   a folder with a manifest.json   token shards written by `dsmoe tokenize` (src/data/shards.ts):
//                 memory-mapped, never read whole; the held-out part is the manifest's val shard.
// Text inputs and .bin inputs cannot be mixed; a shard folder is the only input when given.
//
// Documents are joined with the EOS token between them. The validation split is made at document
// level (a seeded shuffle of document indices picks the held-out share), so no document is in both
// parts. A single document, or .bin inputs (concatenated in order), hold out the last share of tokens.
import * as fs from 'fs';
import * as path from 'path';
import { StringDecoder } from 'string_decoder';
import { atomicWrite, defaultCacheDir, hashParts, readAligned } from './cache';
import { BUILTIN_CORPUS, corpusInfo, corpusSentences } from './corpus';
import { Rng, shuffledIndices } from './rng';
import type { NativeAddon } from '../native/types';
import type { TokenArray } from './sampler';
import { isShardDir, openShards, type OpenedShards } from './shards';

export type { TokenArray } from './sampler';
export type TokenDtype = 'uint16' | 'uint32';
export type TextMode = 'paragraphs' | 'file';
export type InputKind = 'text' | 'jsonl' | 'bin' | 'builtin' | 'shards';

export interface InputFile {
  path: string;
  kind: InputKind;
  size: number;
  mtimeMs: number;
}

const TEXT_EXT = new Set(['.txt', '.md']);
const JSONL_EXT = new Set(['.jsonl']);
const BIN_EXT = new Set(['.bin']);
const SUPPORTED = '.txt, .md, .jsonl, .bin';

/** What the data layer needs from a tokenizer (`contentHash` enables the cache). */
export interface DataTokenizer {
  readonly vocabSize: number;
  readonly eosId: number;
  readonly contentHash?: string;
  encode(text: string): Uint32Array | number[];
}

/** uint16 when every id fits (vocab ≤ 65536), else uint32. */
export function dtypeForVocab(vocabSize: number): TokenDtype {
  return vocabSize <= 65536 ? 'uint16' : 'uint32';
}

function kindOf(file: string): InputKind | undefined {
  const ext = path.extname(file).toLowerCase();
  if (TEXT_EXT.has(ext)) return 'text';
  if (JSONL_EXT.has(ext)) return 'jsonl';
  if (BIN_EXT.has(ext)) return 'bin';
  return undefined;
}

/** Expands the inputs into files (folders recursively, sorted), checking that each exists and is supported. */
export function resolveInputs(inputs: string[]): InputFile[] {
  if (!Array.isArray(inputs) || inputs.length === 0) throw new Error('no data inputs given');
  const out: InputFile[] = [];
  for (const input of inputs) {
    if (input === BUILTIN_CORPUS) {
      out.push({ path: BUILTIN_CORPUS, kind: 'builtin', size: 0, mtimeMs: 0 });
      continue;
    }
    const p = path.resolve(input);
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      throw new Error(`data input not found: ${input}`);
    }
    if (st.isDirectory() && isShardDir(p)) {
      out.push({ path: p, kind: 'shards', size: st.size, mtimeMs: st.mtimeMs });
    } else if (st.isDirectory()) {
      const found: InputFile[] = [];
      walk(p, found);
      if (found.length === 0) throw new Error(`data folder ${input} has no ${SUPPORTED} files`);
      out.push(...found);
    } else if (st.isFile()) {
      const kind = kindOf(p);
      if (!kind) throw new Error(`unsupported data file extension "${path.extname(p) || '(none)'}": ` +
        `${input} (supported: ${SUPPORTED})`);
      out.push({ path: p, kind, size: st.size, mtimeMs: st.mtimeMs });
    } else {
      throw new Error(`data input is not a file or folder: ${input}`);
    }
  }
  const seen = new Set<string>();
  const unique = out.filter((f) => (seen.has(f.path) ? false : (seen.add(f.path), true)));
  const shards = unique.find((f) => f.kind === 'shards');
  if (shards && unique.length > 1)
    throw new Error(`a token-shard folder (${shards.path}) must be the only data input; got ${unique.length} inputs`);
  const bins = unique.filter((f) => f.kind === 'bin');
  if (bins.length > 0 && bins.length < unique.length)
    throw new Error(`cannot mix pre-tokenized .bin files (${bins[0].path}) with text inputs ` +
      `(${unique.find((f) => f.kind !== 'bin')!.path})`);
  return unique;
}

function walk(dir: string, out: InputFile[]): void {
  const names = fs.readdirSync(dir).filter((n) => !n.startsWith('.')).sort();
  for (const name of names) {
    const p = path.join(dir, name);
    const st = fs.statSync(p);
    if (st.isDirectory()) walk(p, out);
    else if (st.isFile()) {
      const kind = kindOf(p);
      if (kind) out.push({ path: p, kind, size: st.size, mtimeMs: st.mtimeMs });
    }
  }
}

/** The lines of a file (without the '\n'), read in chunks so files larger than a string can hold work. */
function* fileLines(file: string): Generator<string> {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 22);
    const dec = new StringDecoder('utf8');
    let rest = '';
    let first = true;
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      let chunk = n === 0 ? dec.end() : dec.write(buf.subarray(0, n));
      if (first && chunk.length > 0) {
        if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
        first = false;
      }
      const text = rest + chunk;
      let start = 0;
      for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', start)) {
        yield text.slice(start, i);
        start = i + 1;
      }
      rest = text.slice(start);
      if (n === 0) break;
    }
    yield rest;
  } finally {
    fs.closeSync(fd);
  }
}

const isBlank = (line: string) => /^[ \t\r\f\v]*$/.test(line);
/** isBlank's characters as UTF-8 bytes (all ASCII): space, tab, CR, form feed, vertical tab. */
export const isBlankByte = (b: number) => b === 32 || b === 9 || b === 13 || b === 12 || b === 11;
/** Whether buf[0, len) starts with a UTF-8 byte order mark (dropped, as decoding drops it). */
export const startsWithBom = (buf: Uint8Array, len = buf.length) =>
  len >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf;
/** Whether bytes [a, b) of a line are all blank (isBlankByte). */
export function blankBytes(buf: Uint8Array, a: number, b: number): boolean {
  for (let i = a; i < b; i++) if (!isBlankByte(buf[i])) return false;
  return true;
}

/** Reads exactly `length` bytes of `file` at `position` into buf[0, length), or says the file changed. */
export function readExactly(fd: number, file: string, buf: Uint8Array, length: number, position: number): void {
  for (let o = 0; o < length;) {
    const n = fs.readSync(fd, buf, o, length - o, position + o);
    if (n === 0) throw new Error(`${file} changed while it was being read (it ended at byte ${position + o})`);
    o += n;
  }
}

/**
 * documentsOfLines's paragraphs (text kind) found in UTF-8 bytes without decoding them: calls
 * onDocument(start, end) with the byte range of each paragraph's text (its lines and the '\n's between
 * them, less a '\r' ending the last line), in order; returns the number of newlines.
 */
export function paragraphsOfBytes(b: Buffer, onDocument: (start: number, end: number) => void): number {
  let newlines = 0, start = -1, end = 0;
  for (let i = 0; i <= b.length;) {
    let e = b.indexOf(10, i);
    if (e < 0) e = b.length;
    else newlines++;
    if (blankBytes(b, i, e)) { // a blank line ends the paragraph
      if (start >= 0) onDocument(start, b[end - 1] === 13 ? end - 1 : end);
      start = -1;
    } else {
      if (start < 0) start = i;
      end = e;
    }
    i = e + 1;
  }
  if (start >= 0) onDocument(start, b[end - 1] === 13 ? end - 1 : end);
  return newlines;
}

/**
 * The documents in lines of a JSONL file (one per non-blank line, its "text") or of a text file in
 * paragraph mode (runs of non-blank lines). `name` and `firstLine` (the number of the first line)
 * place errors. Also used on a part of a file that starts at a line start outside a paragraph
 * (dsmoe tokenize's workers).
 */
/** Bad input on a line of a file: the message names both; the line travels on for callers that renumber. */
export class InputLineError extends Error {
  constructor(readonly file: string, readonly line: number, readonly reason: string) {
    super(`${file}:${line}: ${reason}`);
  }
}

export function* documentsOfLines(lines: Iterable<string>, kind: 'text' | 'jsonl', name: string,
  firstLine = 1): Generator<string> {
  if (kind === 'jsonl') {
    let lineNo = firstLine - 1;
    for (const line of lines) {
      lineNo++;
      if (isBlank(line)) continue;
      let obj: unknown;
      try {
        obj = JSON.parse(line);
      } catch (e) {
        throw new InputLineError(name, lineNo, `malformed JSON line (${(e as Error).message})`);
      }
      if (obj === null || typeof obj !== 'object' || Array.isArray(obj))
        throw new InputLineError(name, lineNo, 'expected a JSON object with a "text" string field');
      const text = (obj as Record<string, unknown>).text;
      if (typeof text !== 'string') throw new InputLineError(name, lineNo, 'the "text" field is ' +
        `${text === undefined ? 'missing' : `a ${typeof text}, not a string`}`);
      yield text;
    }
    return;
  }
  let para: string[] = [];
  const flush = function* () {
    if (para.length > 0) {
      const last = para.length - 1;
      if (para[last].endsWith('\r')) para[last] = para[last].slice(0, -1);
      yield para.join('\n');
      para = [];
    }
  };
  for (const line of lines) {
    if (isBlank(line)) yield* flush();
    else para.push(line);
  }
  yield* flush();
}

/** The documents of a text, JSONL or built-in input, in order (see the file comment). */
export function* readDocuments(file: InputFile, textMode: TextMode = 'paragraphs'): Generator<string> {
  if (file.kind === 'builtin') {
    yield* corpusSentences();
    return;
  }
  if (file.kind === 'jsonl') {
    yield* documentsOfLines(fileLines(file.path), 'jsonl', file.path);
    return;
  }
  if (file.kind === 'text') {
    if (textMode === 'file') {
      let text = '';
      let firstLine = true;
      for (const line of fileLines(file.path)) {
        text += firstLine ? line : '\n' + line;
        firstLine = false;
      }
      if (text.trim() !== '') yield text;
      return;
    }
    yield* documentsOfLines(fileLines(file.path), 'text', file.path);
    return;
  }
  throw new Error(file.kind === 'shards' ? `${file.path}: token shards hold no text documents`
    : `${file.path}: .bin token files hold no text documents`);
}

/**
 * Counts, from the bytes (no decoding), the lines of a file that are not blank in isBlank's sense, or
 * the runs of them (paragraphs). Lines are split on '\n' as fileLines splits them; a leading UTF-8 BOM
 * is dropped. Blank characters are all ASCII, and no byte of a multi-byte UTF-8 character is ASCII, so
 * the bytes decide as the decoded text would.
 */
export function countNonBlankLines(file: string, runs: boolean, chunkBytes = 1 << 22): number {
  // The addon's scanLines (a few mask operations per 64 bytes), for the counting pass over big files;
  // scanNonBlankLines below is its reference, and what runs when the addon cannot be loaded.
  const scan = addonScanLines();
  if (!scan) return scanNonBlankLines(file, runs).count;
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(chunkBytes);
    const state = Float64Array.of(0, 1, 0); // [count, blank, inRun]
    for (let first = true; ; first = false) {
      const len = fs.readSync(fd, buf, 0, buf.length, null);
      if (len === 0) break;
      const bom = first && startsWithBom(buf, len);
      scan({ bytes: buf.subarray(bom ? 3 : 0, len), runs, state });
    }
    // The last line (fileLines yields it even when empty).
    return state[0] + (state[1] === 0 && (!runs || state[2] === 0) ? 1 : 0);
  } finally {
    fs.closeSync(fd);
  }
}

/** The addon's scanLines, or null when the addon cannot be loaded (the text path does not need it). */
function addonScanLines(): NativeAddon['scanLines'] | null {
  // Loaded here, not at the top: most of the data path runs without the addon.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { tryLoadAddon } = require('../native/addon') as typeof import('../native/addon');
  return tryLoadAddon()?.scanLines ?? null;
}

/** Where document `k` (0-based) of a text (paragraphs) or JSONL file starts: byte offset, 1-based line number. */
export function locateDocument(file: string, kind: 'text' | 'jsonl', k: number): { offset: number; line: number } {
  const r = scanNonBlankLines(file, kind === 'text', k);
  if (r.at === undefined) throw new Error(`${file} has ${r.count} documents, no document ${k + 1}`);
  return r.at;
}

/**
 * The byte scan behind countNonBlankLines and locateDocument: counts non-blank lines (or runs of
 * them); with stopAt, stops at the start of the one numbered stopAt and says where it is.
 */
export interface LineScan {
  count: number;
  at?: { offset: number; line: number };
}
export function scanNonBlankLines(file: string, runs: boolean, stopAt = -1): LineScan {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 22);
    let n = 0, inRun = false, blank = true, first = true;
    let base = 0, lineStart = 0, lines = 0;
    let at: { offset: number; line: number } | undefined;
    const endLine = () => {
      if (!blank && (!runs || !inRun)) {
        if (n === stopAt) at = { offset: lineStart, line: lines + 1 };
        n++;
      }
      inRun = !blank;
      blank = true;
    };
    for (;;) {
      const len = fs.readSync(fd, buf, 0, buf.length, null);
      if (len === 0) break;
      let i = 0;
      if (first) {
        if (startsWithBom(buf, len)) i = lineStart = 3;
        first = false;
      }
      while (i < len) {
        const b = buf[i];
        if (b === 10) {
          endLine();
          if (at) return { count: n, at };
          lines++;
          i++;
          lineStart = base + i;
        } else if (!blank || !isBlankByte(b)) {
          // The line is not blank: skip to its end.
          blank = false;
          const nl = buf.indexOf(10, i);
          i = nl < 0 || nl >= len ? len : nl;
        } else i++;
      }
      base += len;
    }
    endLine(); // the last line (fileLines yields it even when empty)
    return at ? { count: n, at } : { count: n };
  } finally {
    fs.closeSync(fd);
  }
}

/** Number of documents readDocuments() yields (a cheap pass over the bytes: nothing is decoded or parsed). */
export function countDocuments(file: InputFile, textMode: TextMode = 'paragraphs'): number {
  if (file.kind === 'builtin') return corpusSentences().length;
  if (file.kind === 'bin' || file.kind === 'shards')
    throw new Error(`${file.path}: token files hold no text documents`);
  if (file.kind === 'jsonl') return countNonBlankLines(file.path, false);
  if (textMode === 'file') {
    for (const line of fileLines(file.path)) if (!/^\s*$/.test(line)) return 1;
    return 0;
  }
  return countNonBlankLines(file.path, true);
}

// ---------------------------------------------------------------------------------------------
// Token files

/** Reads a .bin token file, checking its length and that every id is below vocabSize. */
export function readTokenFile(file: string, vocabSize: number,
  dtype: TokenDtype = dtypeForVocab(vocabSize)): TokenArray {
  if (!fs.existsSync(file)) throw new Error(`token file not found: ${file}`);
  const el = dtype === 'uint16' ? 2 : 4;
  const bytes = readAligned(file);
  if (bytes.byteLength === 0) throw new Error(`token file ${file} is empty`);
  if (bytes.byteLength % el !== 0)
    throw new Error(`token file ${file}: ${bytes.byteLength} bytes is not a multiple of ${el} (${dtype}); wrong ` +
      `--token-dtype?`);
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('token files are little-endian; this ' +
    'machine is big-endian');
  const arr: TokenArray = dtype === 'uint16' ? new Uint16Array(bytes.buffer, 0, bytes.byteLength / 2)
    : new Uint32Array(bytes.buffer, 0, bytes.byteLength / 4);
  for (let i = 0; i < arr.length; i++) {
    if (arr[i] >= vocabSize)
      throw new Error(`token file ${file}: token id ${arr[i]} at index ${i} (byte offset ${i * el}) is out of range ` +
        `for vocabulary size ${vocabSize}`);
  }
  return arr;
}

/** Writes a token array as a flat little-endian .bin file (atomically). */
export function writeTokenFile(file: string, tokens: ArrayLike<number>, dtype: TokenDtype): void {
  const arr = dtype === 'uint16' ? Uint16Array.from(tokens) : Uint32Array.from(tokens);
  if (dtype === 'uint16') {
    for (let i = 0; i < tokens.length; i++) {
      if (tokens[i] !== arr[i]) throw new RangeError(`token ${tokens[i]} at index ${i} does not fit uint16`);
    }
  }
  atomicWrite(file, new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength));
}

// ---------------------------------------------------------------------------------------------
// Tokenizing with a cache

export interface DataProgress {
  /** scan: counting documents; tokenize: encoding them; cache: reading the cached tokens; bin: reading token files. */
  phase: 'scan' | 'tokenize' | 'cache' | 'bin';
  /** Documents (scan, tokenize) or files (cache, bin) done so far, and their total (0 when not yet known). */
  done: number;
  total: number;
  /** The file being worked on, when there is one. */
  file?: string;
}

export interface TokenizeOptions {
  textMode?: TextMode;
  /** Cache folder; default `$DSMOE_CACHE_DIR` or `~/.cache/dsmoe`. Tokens are cached under `<dir>/tokens/`. */
  cacheDir?: string;
  /** Use the cache (read and write). Default true; needs the tokenizer's contentHash. */
  cache?: boolean;
  onProgress?: (p: DataProgress) => void;
}

export interface TokenizedCorpus {
  /** All documents' tokens, back to back, without separators. */
  tokens: TokenArray;
  /** Document d is tokens[docOffsets[d] .. docOffsets[d+1]). Length = documents + 1. */
  docOffsets: Float64Array;
  fromCache: boolean;
  /** The cache file used or written (absent when caching is off). */
  cachePath?: string;
}

const CACHE_MAGIC = 'DSMOETK1';
const CACHE_FORMAT = 'dsmoe-token-cache-v1';
const HEADER_BYTES = 40;

/** The cache key of a tokenized input set: inputs (path, size, mtime), text mode, tokenizer content. */
export function tokenCacheKey(files: InputFile[], tokenizerHash: string, textMode: TextMode): string {
  const parts = [CACHE_FORMAT, textMode, tokenizerHash];
  for (const f of files) {
    if (f.kind === 'builtin') {
      const info = corpusInfo();
      parts.push(`${BUILTIN_CORPUS}@${info.version}:${info.dir}`);
    } else parts.push(`${f.kind}\0${f.path}\0${f.size}\0${f.mtimeMs}`);
  }
  return hashParts(parts);
}

function writeCache(file: string, tokens: TokenArray, offsets: Float64Array, vocabSize: number): void {
  const header = new ArrayBuffer(HEADER_BYTES);
  const dv = new DataView(header);
  for (let i = 0; i < 8; i++) dv.setUint8(i, CACHE_MAGIC.charCodeAt(i));
  dv.setUint32(8, tokens.BYTES_PER_ELEMENT, true);
  dv.setUint32(12, 0, true);
  dv.setFloat64(16, tokens.length, true);
  dv.setFloat64(24, offsets.length - 1, true);
  dv.setFloat64(32, vocabSize, true);
  atomicWrite(file, [new Uint8Array(header), new Uint8Array(offsets.buffer, offsets.byteOffset, offsets.byteLength),
    new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength)]);
}

/** Reads a token cache file; undefined when it is not a valid cache for this vocabulary (then it is rebuilt). */
function readCache(file: string, vocabSize: number): { tokens: TokenArray; offsets: Float64Array } | undefined {
  let bytes: Uint8Array;
  try {
    bytes = readAligned(file);
  } catch {
    return undefined;
  }
  if (bytes.byteLength < HEADER_BYTES) return undefined;
  const dv = new DataView(bytes.buffer);
  for (let i = 0; i < 8; i++) if (dv.getUint8(i) !== CACHE_MAGIC.charCodeAt(i)) return undefined;
  const el = dv.getUint32(8, true);
  const nTok = dv.getFloat64(16, true), nDoc = dv.getFloat64(24, true), vocab = dv.getFloat64(32, true);
  if ((el !== 2 && el !== 4) || vocab !== vocabSize || !Number.isSafeInteger(nTok) ||
    !Number.isSafeInteger(nDoc)) return undefined;
  const offBytes = 8 * (nDoc + 1);
  if (bytes.byteLength !== HEADER_BYTES + offBytes + el * nTok) return undefined;
  const offsets = new Float64Array(bytes.buffer, HEADER_BYTES, nDoc + 1);
  const start = HEADER_BYTES + offBytes;
  const tokens = el === 2 ? new Uint16Array(bytes.buffer, start, nTok) : new Uint32Array(bytes.buffer, start, nTok);
  if (offsets[0] !== 0 || offsets[nDoc] !== nTok) return undefined;
  return { tokens, offsets };
}

/** A growable typed array. */
class Growable {
  data: Uint32Array;
  length = 0;
  constructor(cap = 1 << 16) {
    this.data = new Uint32Array(cap);
  }
  append(ids: Uint32Array | number[]): void {
    const need = this.length + ids.length;
    if (need > this.data.length) {
      const next = new Uint32Array(Math.max(need, this.data.length * 2));
      next.set(this.data.subarray(0, this.length));
      this.data = next;
    }
    this.data.set(ids, this.length);
    this.length = need;
  }
}

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Tokenizes text inputs into one flat array plus document offsets, using the cache when it holds
 * this exact input set and tokenizer. Async only so that callers' spinners keep turning: the
 * work is done in slices between event-loop turns.
 */
export async function tokenizeInputs(files: InputFile[], tokenizer: DataTokenizer,
  opts: TokenizeOptions = {}): Promise<TokenizedCorpus> {
  const textMode = opts.textMode ?? 'paragraphs';
  const useCache = (opts.cache ?? true) && typeof tokenizer.contentHash === 'string';
  const dtype = dtypeForVocab(tokenizer.vocabSize);
  const names = describe(files);
  let cachePath: string | undefined;
  if (useCache) {
    const key = tokenCacheKey(files, tokenizer.contentHash!, textMode);
    cachePath = path.join(opts.cacheDir ?? defaultCacheDir(), 'tokens', `${key}.tok`);
    if (fs.existsSync(cachePath)) {
      opts.onProgress?.({ phase: 'cache', done: 0, total: 1, file: cachePath });
      const hit = readCache(cachePath, tokenizer.vocabSize);
      if (hit) {
        opts.onProgress?.({ phase: 'cache', done: 1, total: 1, file: cachePath });
        return { tokens: hit.tokens, docOffsets: hit.offsets, fromCache: true, cachePath };
      }
    }
  }

  let totalDocs = 0;
  for (const f of files) {
    if (f.kind === 'bin' || f.kind === 'shards')
      throw new Error(`${f.path}: token files are not tokenized; load them with loadDataset`);
    opts.onProgress?.({ phase: 'scan', done: totalDocs, total: 0, file: f.path });
    const n = countDocuments(f, textMode);
    if (n === 0) throw new Error(`data file ${f.path} is empty (no documents)`);
    totalDocs += n;
  }
  opts.onProgress?.({ phase: 'scan', done: totalDocs, total: totalDocs });

  const buf = new Growable();
  const offsets = new Float64Array(totalDocs + 1);
  let d = 0;
  let lastYield = Date.now();
  for (const f of files) {
    for (const doc of readDocuments(f, textMode)) {
      if (d >= totalDocs) throw new Error(`${f.path} changed while it was being read`);
      const ids = tokenizer.encode(doc);
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i];
        if (!(id >= 0 && id < tokenizer.vocabSize)) throw new Error(`tokenizer gave id ${id}, outside its vocabulary ` +
          `of ${tokenizer.vocabSize}, for a document of ${f.path}`);
      }
      buf.append(ids);
      offsets[++d] = buf.length;
      const now = Date.now();
      if (now - lastYield > 50) {
        opts.onProgress?.({ phase: 'tokenize', done: d, total: totalDocs, file: f.path });
        await yieldToLoop();
        lastYield = Date.now();
      }
    }
  }
  if (d !== totalDocs) throw new Error(`the inputs changed while they were being read (${names})`);
  opts.onProgress?.({ phase: 'tokenize', done: d, total: totalDocs });
  const all = buf.data.subarray(0, buf.length);
  const tokens: TokenArray = dtype === 'uint16' ? Uint16Array.from(all) : all.slice();
  if (cachePath) writeCache(cachePath, tokens, offsets, tokenizer.vocabSize);
  return { tokens, docOffsets: offsets, fromCache: false, cachePath };
}

// ---------------------------------------------------------------------------------------------
// Loading and splitting

export interface LoadDatasetOptions extends TokenizeOptions {
  /** Needed for text inputs; for .bin inputs its vocabSize checks the ids. */
  tokenizer?: DataTokenizer;
  /** Vocabulary size for .bin inputs when no tokenizer is given. */
  vocabSize?: number;
  /** Element type of .bin inputs; default by vocabulary size. */
  tokenDtype?: TokenDtype;
  /** Share held out for validation, in [0, 0.5]. Default 0.05. 0: no validation part. */
  valShare?: number;
  /** Seed of the split's shuffle. Default 0. */
  seed?: number;
  /** When given, both parts must hold at least one window (seqLen + 1 tokens); the held-out part grows to reach one. */
  seqLen?: number;
}

export interface Dataset {
  train: TokenArray;
  val: TokenArray;
  vocabSize: number;
  /** Separator between documents (absent for .bin inputs without a tokenizer). */
  eosId?: number;
  dtype: TokenDtype;
  files: string[];
  /** Documents in each part (for .bin inputs: 0; the split is by tokens). */
  documents: { train: number; val: number };
  fromCache: boolean;
  cachePath?: string;
  /**
   * Token shards (a `dsmoe tokenize` folder): the training tokens are these memory-mapped shards, not
   * `train` (which is then empty); `val` is the mapped held-out shard. Absent for other inputs.
   */
  shards?: OpenedShards;
}

/** Training tokens of a dataset: its shards' total, else the length of `train`. */
export function trainTokenCount(ds: Dataset): number {
  return ds.shards ? ds.shards.trainTokens : ds.train.length;
}

function describe(files: InputFile[]): string {
  const names = files.map((f) => f.path);
  return names.length <= 3 ? names.join(', ') : `${names.slice(0, 3).join(', ')} and ${names.length - 3} more`;
}

/** Joins the given documents (in the given order) with eos between them. */
function joinDocs(tok: TokenArray, offsets: Float64Array, docs: ArrayLike<number>, eos: number,
  dtype: TokenDtype): TokenArray {
  let n = 0;
  for (let i = 0; i < docs.length; i++) n += offsets[docs[i] + 1] - offsets[docs[i]];
  n += Math.max(0, docs.length - 1);
  const out = dtype === 'uint16' ? new Uint16Array(n) : new Uint32Array(n);
  let o = 0;
  for (let i = 0; i < docs.length; i++) {
    if (i > 0) out[o++] = eos;
    const a = offsets[docs[i]], b = offsets[docs[i] + 1];
    out.set(tok.subarray(a, b), o);
    o += b - a;
  }
  return out;
}

/** Holds out the last share of a token stream (at least one window when seqLen is given). */
function tailSplit(tokens: TokenArray, valShare: number, seqLen: number | undefined,
  names: string): { train: TokenArray; val: TokenArray } {
  const n = tokens.length;
  if (valShare === 0) return { train: tokens, val: tokens.subarray(n) };
  let v = Math.max(1, Math.round(n * valShare));
  if (seqLen !== undefined) v = Math.max(v, seqLen + 1);
  if (seqLen !== undefined && n - v < seqLen + 1)
    throw new Error(`data too short for a train/validation split: ${names} has ${n} tokens; each part needs at least ` +
      `${seqLen + 1} (sequence length ${seqLen} + 1)`);
  if (n - v < 1) throw new Error(`data too short for a train/validation split: ${names} has ${n} tokens`);
  return { train: tokens.subarray(0, n - v), val: tokens.subarray(n - v) };
}

/**
 * Loads `--data` inputs as train/validation token arrays. Text inputs are tokenized (cached);
 * .bin inputs are read and checked. Deterministic for a given seed.
 */
export async function loadDataset(inputs: string[], opts: LoadDatasetOptions = {}): Promise<Dataset> {
  const valShare = opts.valShare ?? 0.05;
  if (!(valShare >= 0 && valShare <= 0.5)) throw new RangeError(`validation share must be in [0, 0.5], got ` +
    `${valShare}`);
  const seed = opts.seed ?? 0;
  if (opts.seqLen !== undefined && (!Number.isInteger(opts.seqLen) || opts.seqLen < 1))
    throw new RangeError(`sequence length must be a positive integer, got ${opts.seqLen}`);
  const files = resolveInputs(inputs);
  const names = describe(files);
  const paths = files.map((f) => f.path);

  if (files[0].kind === 'shards') {
    // The split is the manifest's (its val shard); valShare and seed were fixed by `dsmoe tokenize`.
    if (opts.valShare === 0)
      throw new Error(`${files[0].path} is a token-shard folder: evaluating all of its tokens is not supported; ` +
        'its held-out shard is evaluated with `dsmoe eval <checkpoint>`');
    const vocabSize = opts.tokenizer?.vocabSize ?? opts.vocabSize;
    opts.onProgress?.({ phase: 'bin', done: 0, total: 1, file: files[0].path });
    const sh = openShards(files[0].path, { tokenizer: opts.tokenizer, vocabSize });
    opts.onProgress?.({ phase: 'bin', done: 1, total: 1 });
    if (opts.seqLen !== undefined && sh.train.every((t) => t.length < opts.seqLen! + 1))
      throw new Error(`data too short: no training shard of ${files[0].path} holds one window of sequence length ` +
        `${opts.seqLen} + 1 tokens`);
    return {
      train: new Uint16Array(0), val: sh.val, vocabSize: sh.manifest.vocab_size, eosId: sh.manifest.eos_id,
      dtype: sh.manifest.dtype, files: paths,
      documents: { train: sh.manifest.documents.train, val: sh.manifest.documents.val }, fromCache: false, shards: sh,
    };
  }

  if (files[0].kind === 'bin') {
    const vocabSize = opts.tokenizer?.vocabSize ?? opts.vocabSize;
    if (vocabSize === undefined) throw new Error(`reading token files (${names}) needs a tokenizer or a vocabulary ` +
      `size`);
    const dtype = opts.tokenDtype ?? dtypeForVocab(vocabSize);
    if (dtype === 'uint16' && vocabSize > 65536) throw new Error(`token dtype uint16 cannot hold a vocabulary of ` +
      `${vocabSize}`);
    const parts: TokenArray[] = [];
    files.forEach((f, i) => {
      opts.onProgress?.({ phase: 'bin', done: i, total: files.length, file: f.path });
      parts.push(readTokenFile(f.path, vocabSize, dtype));
    });
    opts.onProgress?.({ phase: 'bin', done: files.length, total: files.length });
    let all: TokenArray;
    if (parts.length === 1) all = parts[0];
    else {
      const n = parts.reduce((s, p) => s + p.length, 0);
      all = dtype === 'uint16' ? new Uint16Array(n) : new Uint32Array(n);
      let o = 0;
      for (const p of parts) { all.set(p, o); o += p.length; }
    }
    const { train, val } = tailSplit(all, valShare, opts.seqLen, names);
    return { train, val, vocabSize, eosId: opts.tokenizer?.eosId, dtype, files: paths, documents: { train: 0, val: 0 },
      fromCache: false };
  }

  const tokenizer = opts.tokenizer;
  if (!tokenizer) throw new Error(`text inputs (${names}) need a tokenizer`);
  const corpus = await tokenizeInputs(files, tokenizer, opts);
  const dtype = dtypeForVocab(tokenizer.vocabSize);
  const nDocs = corpus.docOffsets.length - 1;
  const eos = tokenizer.eosId;
  const base = { vocabSize: tokenizer.vocabSize, eosId: eos, dtype, files: paths, fromCache: corpus.fromCache,
    cachePath: corpus.cachePath };
  if (corpus.tokens.length === 0) throw new Error(`data is empty: the documents of ${names} have no tokens`);

  if (nDocs === 1) {
    const { train, val } = tailSplit(corpus.tokens, valShare, opts.seqLen, names);
    return { ...base, train, val, documents: { train: 1, val: 0 } };
  }
  let k = valShare === 0 ? 0 : Math.min(nDocs - 1, Math.max(1, Math.round(valShare * nDocs)));
  const order = shuffledIndices(nDocs, new Rng(seed));
  const docLen = (d: number) => corpus.docOffsets[d + 1] - corpus.docOffsets[d];
  if (k > 0 && opts.seqLen !== undefined) {
    let valTokens = -1;
    for (let i = 0; i < k; i++) valTokens += docLen(order[i]) + 1;
    while (valTokens < opts.seqLen + 1 && k < nDocs - 1) valTokens += docLen(order[k++]) + 1;
    if (valTokens < opts.seqLen + 1)
      throw new Error(`data too short for a validation window: ${names} has ${corpus.tokens.length} tokens in ` +
        `${nDocs} documents; sequence length ${opts.seqLen} needs ${opts.seqLen + 1} held-out tokens and as many for ` +
          `training`);
  }
  const valDocs = Array.from(order.subarray(0, k)).sort((x, y) => x - y);
  const trainDocs = Array.from(order.subarray(k)).sort((x, y) => x - y);
  const train = joinDocs(corpus.tokens, corpus.docOffsets, trainDocs, eos, dtype);
  const val = joinDocs(corpus.tokens, corpus.docOffsets, valDocs, eos, dtype);
  if (opts.seqLen !== undefined && train.length < opts.seqLen + 1)
    throw new Error(`data too short: after holding out ${k} of ${nDocs} documents for validation, the training part ` +
      `of ${names} has ${train.length} tokens; sequence length ${opts.seqLen} needs ${opts.seqLen + 1}`);
  if (train.length === 0) throw new Error(`data is empty: the training part of ${names} has no tokens`);
  return { ...base, train, val, documents: { train: trainDocs.length, val: valDocs.length } };
}
