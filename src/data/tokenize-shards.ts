// `dsmoe tokenize`: text inputs → token shards (format: src/data/shards.ts, docs/shards.md).
//
// The main thread reads documents in input order and sends jobs of them (about jobChars characters
// each) to worker threads (tokenize-worker.ts); results are taken back in job order, so the token
// stream, and with it every shard, is the same for any number of workers. The held-out documents are
// picked as in the small-data path (dataset.ts: a seeded shuffle of document indices, valShare of
// them), so for the same inputs, seed and share, the held-out shard holds the tokens of loadDataset's
// `val` and the training shards, end to end, those of its `train`.
//
// Resumable: each finished training shard is renamed into place and recorded in manifest.json
// (complete: false) with the document it ends at and the length of the held-out file so far; a new
// run with the same inputs and settings keeps those shards and continues after them.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import * as os from 'node:os';
import { atomicWrite, hashFile } from './cache';
import { DIRECT_ALIGNMENT, PositionedWriter, alignedMemory } from './direct-io';
import { BUILTIN_CORPUS } from './corpus';
import {
  blankBytes, countDocuments, dtypeForVocab, locateDocument, readExactly, readDocuments, resolveInputs, startsWithBom,
  type TextMode,
} from './dataset';
import { Rng, shuffledIndices } from './rng';
import {
  MANIFEST_FILE, SHARD_FORMAT, SHARD_FORMAT_VERSION, VAL_FILE, dtypeBytes, readManifest, sampleHashFile,
  type ManifestInput, type ShardDtype, type ShardEntry, type ShardManifest,
} from './shards';
import { runJob, type FilePart, type JobTokenizer, type TokenizeJob, type TokenizeJobResult } from './tokenize-job';
import { loadTokenizer } from '../tokenizer/tokenizer';

export const DEFAULT_SHARD_TOKENS = 100_000_000;
const DEFAULT_JOB_CHARS = 1 << 20;

export interface TokenizeProgress {
  /** scan: counting documents; tokenize: encoding them. */
  phase: 'scan' | 'tokenize';
  documents: number;
  totalDocuments: number;
  /** Characters encoded in this run (not counting documents skipped on resume). */
  chars: number;
  tokens: number;
  /** Finished training shards (kept ones included). */
  shards: number;
  elapsedS: number;
  file?: string;
}

export interface TokenizeShardsOptions {
  inputs: string[];
  out: string;
  /** A tokenizer.json. */
  tokenizer: string;
  shardTokens?: number;
  /** Worker threads (default: all cores; 0: encode on the main thread). */
  workers?: number;
  valShare?: number;
  seed?: number;
  textMode?: TextMode;
  /** Characters per job sent to a worker. */
  jobChars?: number;
  /** Ids a token file stages per write (default 2^18; tests use fewer to reach the direct writes). */
  stagingIds?: number;
  onProgress?: (p: TokenizeProgress) => void;
  /** Stops after the job in hand; finished shards stay, and a new run continues after them. */
  signal?: AbortSignal;
}

export interface TokenizeShardsResult {
  out: string;
  manifest: ShardManifest;
  /** done: finished now; complete: nothing to do (already complete); interrupted: stopped by the signal. */
  status: 'done' | 'complete' | 'interrupted';
  /** Shards kept from an earlier, interrupted run. */
  keptShards: number;
  chars: number;
  tokens: number;
  seconds: number;
  workers: number;
  /** Bytes of training shards written around the page cache (O_DIRECT; 0 where it is not available). */
  directBytes: number;
}

/** Ids staged per write: 512 KiB of uint16 (1 MiB of uint32), a multiple of DIRECT_ALIGNMENT. */
const STAGING_IDS = 1 << 18;

/** Whether token files may be written around the page cache (direct-io.ts); DSMOE_DIRECT_IO=0 turns it off. */
const directIoAllowed = () => process.env.DSMOE_DIRECT_IO !== '0';

/**
 * A token file being written at explicit positions, hashed as it goes; around the page cache while the
 * writes are whole stagings from an aligned position (direct-io.ts), so a training shard goes to disk
 * that way but for its last bytes. The held-out file is flushed at every shard's end, so after the
 * first shard its writes go through the page cache.
 */
class TokenSink {
  private readonly staging: Uint16Array | Uint32Array;
  private readonly writer: PositionedWriter;
  private n = 0;
  private readonly hash = crypto.createHash('sha256');
  private pos: number;
  documents = 0;
  tokens: number;
  /** Bytes written around the page cache. */
  directBytes = 0;

  constructor(readonly file: string, fd: number, dtype: ShardDtype, tokens = 0, stagingIds = STAGING_IDS) {
    this.tokens = tokens;
    this.pos = tokens * dtypeBytes(dtype);
    const bytes = stagingIds * dtypeBytes(dtype);
    const mem = directIoAllowed() && bytes % DIRECT_ALIGNMENT === 0 ? alignedMemory(bytes) : null;
    this.staging = dtype === 'uint16' ? (mem ? new Uint16Array(mem) : new Uint16Array(stagingIds))
      : (mem ? new Uint32Array(mem) : new Uint32Array(stagingIds));
    this.writer = new PositionedWriter(file, fd, mem !== null && this.pos % DIRECT_ALIGNMENT === 0);
  }

  /**
   * Appends `docs` documents, ids[start, end) with the EOS between them already there (after an EOS
   * when this file has a document already).
   */
  push(ids: Uint16Array | Uint32Array, start: number, end: number, docs: number, eos: number): void {
    const leading = this.documents > 0;
    if (leading) this.put1(eos);
    const staging = this.staging;
    for (let o = start; o < end;) {
      const k = Math.min(end - o, staging.length - this.n);
      staging.set(ids.subarray(o, o + k), this.n);
      this.n += k;
      o += k;
      if (this.n === staging.length) this.flush();
    }
    this.documents += docs;
    this.tokens += end - start + (leading ? 1 : 0);
  }

  private put1(id: number): void {
    this.staging[this.n++] = id;
    if (this.n === this.staging.length) this.flush();
  }

  flush(): void {
    if (this.n === 0) return;
    const bytes = new Uint8Array(this.staging.buffer, 0, this.n * this.staging.BYTES_PER_ELEMENT);
    this.writer.write(bytes, this.pos);
    if (this.writer.isDirect) this.directBytes += bytes.length;
    this.hash.update(bytes);
    this.pos += bytes.length;
    this.n = 0;
  }

  /** Flushes and fsyncs; returns the sha256 of what this sink wrote (the whole file when it started empty). */
  sync(): string {
    this.flush();
    fs.fsyncSync(this.writer.fd);
    return this.digest();
  }

  /** The sha256 of what this sink has flushed (the whole file when it started empty). */
  digest(): string {
    return this.hash.copy().digest('hex');
  }

  /** fsync on a libuv thread: this thread goes on writing (a later write is not covered). */
  fsync(): Promise<void> {
    return new Promise((resolve, reject) => fs.fsync(this.writer.fd, (e) => (e ? reject(e) : resolve())));
  }

  close(): void {
    this.writer.close();
  }
}

/**
 * The JavaScript of a TypeScript module and of every module it imports by a relative path, by file
 * name (for workers started from the TypeScript sources, under ts-jest: they cannot load .ts files).
 * Transpiled once per process with the typescript package, a development dependency.
 */
const transpiled = new Map<string, Record<string, string>>();
function transpileGraph(entry: string): Record<string, string> {
  const hit = transpiled.get(entry);
  if (hit) return hit;
  // Node's own require (under jest, the typescript that ts-jest has loaded already).
  const ts = createRequire(__filename)('typescript') as typeof import('typescript');
  const out: Record<string, string> = {};
  const todo = [entry];
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (out[file] !== undefined) continue;
    const text = fs.readFileSync(file, 'utf8');
    out[file] = ts.transpileModule(text, { fileName: file, compilerOptions: {
      module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true,
    } }).outputText;
    for (const imp of ts.preProcessFile(text, true, true).importedFiles) {
      if (!imp.fileName.startsWith('.')) continue;
      const base = path.resolve(path.dirname(file), imp.fileName);
      const found = [`${base}.ts`, path.join(base, 'index.ts')].find((f) => fs.existsSync(f));
      if (found) todo.push(found);
    }
  }
  transpiled.set(entry, out);
  return out;
}

/** A worker thread running tokenize-worker (compiled JavaScript, or the TypeScript sources under the tests). */
function spawnWorker(tokenizer: string): Worker {
  const js = path.join(__dirname, 'tokenize-worker.js');
  if (fs.existsSync(js)) return new Worker(js, { workerData: { tokenizer } });
  const entry = path.join(__dirname, 'tokenize-worker.ts');
  const code = `
const { workerData } = require('node:worker_threads');
require.extensions['.ts'] = (m, f) => {
  const js = workerData.sources[f];
  if (js === undefined) throw new Error('tokenize worker: no transpiled source for ' + f);
  m._compile(js, f);
};
require(${JSON.stringify(entry)});`;
  return new Worker(code, { eval: true, workerData: { tokenizer, sources: transpileGraph(entry) } });
}

/** Workers with a queue each; a job goes to the least busy one; results come back as promises. */
class Pool {
  private readonly workers: Worker[];
  private readonly waiting: Array<Map<number, { resolve: (r: TokenizeJobResult) => void;
    reject: (e: Error) => void }>>;

  constructor(n: number, tokenizer: string) {
    this.workers = Array.from({ length: n }, () => spawnWorker(tokenizer));
    this.waiting = this.workers.map(() => new Map());
    this.workers.forEach((w, i) => {
      w.on('message', (r: TokenizeJobResult) => {
        const p = this.waiting[i].get(r.id);
        this.waiting[i].delete(r.id);
        p?.resolve(r);
      });
      const fail = (e: Error) => {
        for (const p of this.waiting[i].values()) p.reject(e);
        this.waiting[i].clear();
      };
      w.on('error', fail);
      w.on('exit', (code) => {
        if (this.waiting[i].size > 0) fail(new Error(`a tokenizer worker stopped (exit code ${code})`));
      });
    });
  }

  run(job: TokenizeJob): Promise<TokenizeJobResult> {
    let best = 0;
    for (let i = 1; i < this.workers.length; i++) if (this.waiting[i].size < this.waiting[best].size) best = i;
    return new Promise((resolve, reject) => {
      this.waiting[best].set(job.id, { resolve, reject });
      this.workers[best].postMessage(job, job.spare ? [job.spare] : []);
    });
  }

  /** Stops the workers; jobs still waiting (after an interruption or an error) are dropped, not rejected. */
  async close(): Promise<void> {
    for (const w of this.waiting) w.clear();
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** Pool's interface without threads (workers: 0): the main thread runs each job when it is given. */
class InlinePool {
  constructor(private readonly tok: JobTokenizer) {}

  run(job: TokenizeJob): Promise<TokenizeJobResult> {
    return Promise.resolve(runJob(this.tok, job));
  }

  async close(): Promise<void> {}
}

/**
 * Where a part may end in buf[0, end), looking from `from`: after a line end where no document goes
 * on (after a blank line for paragraphs, after any line for JSONL); -1 if there is no such place.
 */
function findCut(buf: Buffer, from: number, end: number, kind: 'text' | 'jsonl'): number {
  for (let i = buf.indexOf(10, from); i >= 0 && i < end;) {
    if (kind === 'jsonl') return i + 1;
    const j = buf.indexOf(10, i + 1);
    if (j < 0 || j >= end) return -1;
    if (blankBytes(buf, i + 1, j)) return j + 1;
    i = j;
  }
  return -1;
}

/**
 * A text (paragraph mode) or JSONL file from byte `offset` (a line start outside any paragraph) in
 * parts of about `size` bytes, each cut where findCut allows; a leading UTF-8 BOM is left out. Only
 * the bytes around each cut are read here: the workers read the parts themselves.
 */
export function* fileParts(file: string, kind: 'text' | 'jsonl', offset: number,
  size: number): Generator<FilePart> {
  const fd = fs.openSync(file, 'r');
  try {
    const total = fs.fstatSync(fd).size;
    let pos = offset;
    if (offset === 0) {
      const head = Buffer.alloc(3);
      if (startsWithBom(head, fs.readSync(fd, head, 0, 3, 0))) pos = 3;
    }
    let window = Buffer.allocUnsafe(1 << 16);
    while (pos < total) {
      let cut = total;
      // Look for a cut from the part's size on, in a window that doubles while a document runs on.
      for (let from = pos + Math.max(0, size - 1); from < total;) {
        const len = Math.min(window.length, total - from);
        readExactly(fd, file, window, len, from);
        const c = findCut(window, 0, len, kind);
        if (c >= 0) { cut = from + c; break; }
        if (from + len >= total) break;
        window = Buffer.allocUnsafe(2 * window.length);
      }
      yield { file, offset: pos, length: cut - pos, kind, last: cut >= total };
      pos = cut;
    }
  } finally {
    fs.closeSync(fd);
  }
}

const shardName = (i: number) => `train-${String(i).padStart(5, '0')}.bin`;

/** The settings that must match for a run to continue an earlier one (and what they are called). */
function settingsOf(m: ShardManifest): Record<string, unknown> {
  return {
    'token dtype': m.dtype, 'vocabulary size': m.vocab_size, 'tokenizer': m.tokenizer.content_hash,
    'text mode': m.text_mode, 'inputs': JSON.stringify(m.inputs), '--shard-size': m.shard_tokens,
    '--val-share': m.val_share, '--seed': m.seed,
  };
}

/** Tokenizes text inputs into token shards in `out` (see the file comment). */
export async function tokenizeToShards(o: TokenizeShardsOptions): Promise<TokenizeShardsResult> {
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1000;
  const shardTokens = o.shardTokens ?? DEFAULT_SHARD_TOKENS;
  if (!Number.isSafeInteger(shardTokens) || shardTokens < 1)
    throw new RangeError(`--shard-size must be a positive number of tokens, got ${shardTokens}`);
  const valShare = o.valShare ?? 0.05;
  if (!(valShare >= 0 && valShare <= 0.5)) throw new RangeError(`--val-share must be in [0, 0.5], got ${valShare}`);
  const seed = o.seed ?? 0;
  const textMode = o.textMode ?? 'paragraphs';
  const nWorkers = o.workers ?? os.availableParallelism();
  const stagingIds = o.stagingIds ?? STAGING_IDS;
  if (!Number.isSafeInteger(stagingIds) || stagingIds < 1)
    throw new RangeError(`stagingIds must be ≥ 1, got ${stagingIds}`);
  if (!Number.isInteger(nWorkers) || nWorkers < 0) throw new RangeError(`--workers must be ≥ 0, got ${nWorkers}`);

  const files = resolveInputs(o.inputs);
  for (const f of files) {
    if (f.kind === 'bin' || f.kind === 'shards')
      throw new Error(`${f.path}: already tokens; dsmoe tokenize reads text ` +
      '(.txt, .md, .jsonl, folders, builtin:nlp-corpus)');
    if (f.kind !== 'builtin' && f.size === 0) throw new Error(`data file ${f.path} is empty`);
  }
  if (!fs.existsSync(o.tokenizer)) throw new Error(`tokenizer not found: ${o.tokenizer}`);
  const tokenizerFile = path.resolve(o.tokenizer);
  const tok = loadTokenizer(tokenizerFile);
  const dtype = dtypeForVocab(tok.vocabSize);
  const el = dtypeBytes(dtype);
  const out = path.resolve(o.out);
  fs.mkdirSync(out, { recursive: true });
  const inputs: ManifestInput[] = files.map((f) => ({
    path: f.kind === 'builtin' ? BUILTIN_CORPUS : f.path, size: f.size, mtime_ms: f.mtimeMs,
  }));

  const fresh: ShardManifest = {
    format: SHARD_FORMAT, format_version: SHARD_FORMAT_VERSION, complete: false, dtype, vocab_size: tok.vocabSize,
    eos_id: tok.eosId, tokenizer: { content_hash: tok.contentHash, file: tokenizerFile }, text_mode: textMode, inputs,
    shard_tokens: shardTokens, val_share: valShare, seed, documents: { total: 0, train: 0, val: 0 }, shards: [],
    val: null, progress: { next_document: 0, val_tokens: 0, val_documents: 0 },
  };
  let m = fresh;
  let kept = 0;
  if (fs.existsSync(path.join(out, MANIFEST_FILE))) {
    const old = readManifest(out);
    const a = settingsOf(old), b = settingsOf(fresh);
    const diff = Object.keys(a).filter((k) => a[k] !== b[k]);
    if (diff.length > 0)
      throw new Error(`${out} already holds token shards made with other settings (${diff.join(', ')} differ); ` +
        'write to an empty --out folder, or delete this one');
    if (old.complete) {
      return { out, manifest: old, status: 'complete', keptShards: old.shards.length, chars: 0, tokens: 0,
        seconds: elapsed(), workers: 0, directBytes: 0 };
    }
    m = { ...old, progress: old.progress ?? { next_document: 0, val_tokens: 0, val_documents: 0 } };
    kept = m.shards.length;
  }
  const writeManifest = () => atomicWrite(path.join(out, MANIFEST_FILE), JSON.stringify(m, null, 2) + '\n');

  // Leftovers of an interrupted run beyond what the manifest records.
  for (const name of fs.readdirSync(out)) {
    const k = /^train-(\d+)\.bin(\.partial)?$/.exec(name);
    if (k && (k[2] !== undefined || Number(k[1]) >= kept)) fs.rmSync(path.join(out, name));
    if (name === VAL_FILE) fs.rmSync(path.join(out, name));
  }

  // The workers start now: loading their tokenizers overlaps the count of documents. Until the main
  // loop's try, a failing step stops them (orStop below; or they would keep the process alive).
  const pool = nWorkers === 0 ? new InlinePool(tok) : new Pool(nWorkers, tokenizerFile);
  const progress = m.progress!;
  const resumed = progress.next_document > 0;
  const jobChars = o.jobChars ?? DEFAULT_JOB_CHARS;
  let nextId = 0;
  /**
   * The jobs, in document order: parts of text and JSONL files (the workers read and split them), or
   * batches of documents read here. A part carries its file's line count so far (the workers count a
   * part's newlines, and results are taken in order: errors get absolute line numbers). A resumed run
   * skips the documents in the shards it keeps (this needs the counts: it starts after them).
   */
  function* jobsInOrder(): Generator<{ job: TokenizeJob; file?: { name: string; line: number } }> {
    let before = 0; // documents in the files before this one
    for (const [fi, f] of files.entries()) {
      let skip = 0;
      if (resumed) {
        skip = Math.max(0, progress.next_document - before);
        before += fileDocs[fi];
        if (skip >= fileDocs[fi]) continue;
      }
      if ((f.kind === 'text' && textMode === 'paragraphs') || f.kind === 'jsonl') {
        const kind = f.kind;
        const at = skip > 0 ? locateDocument(f.path, kind, skip) : { offset: 0, line: 1 };
        const lines = { name: f.path, line: at.line };
        for (const part of fileParts(f.path, kind, at.offset, jobChars)) {
          yield { job: { id: nextId++, ...part }, file: lines };
        }
        continue;
      }
      let d = 0, jobLen = 0;
      let docs: string[] = [];
      for (const doc of readDocuments(f, textMode)) {
        if (d++ < skip) continue;
        docs.push(doc);
        jobLen += doc.length;
        if (jobLen >= jobChars) {
          yield { job: { id: nextId++, docs } };
          docs = [];
          jobLen = 0;
        }
      }
      if (docs.length > 0) yield { job: { id: nextId++, docs } };
    }
  }
  const jobs = jobsInOrder();
  // Jobs in the order they were sent, and id buffers of taken results (handed back with new jobs).
  const inFlight: Array<{ result: Promise<TokenizeJobResult>; file?: { name: string; line: number } }> = [];
  const spares: ArrayBuffer[] = [];
  // Jobs a worker has queued: enough to keep it busy while this thread writes, hashes and closes a shard (the
  // manifest): 2 left the two-worker process 181-188 % busy on 2 cores, 6 gave 191-193 % (1 GB).
  const window = 6 * Math.max(1, nWorkers);
  const send = (job: TokenizeJob, file?: { name: string; line: number }) => {
    if (nWorkers > 0) job.spare = spares.pop();
    const result = pool.run(job);
    result.catch(() => undefined); // awaited in take(); one left behind by an error must not be unhandled
    inFlight.push({ result, file });
  };
  const orStop = <T>(step: () => T): T => {
    try {
      return step();
    } catch (e) {
      void pool.close();
      jobs.return(undefined); // closes the file it reads
      throw e;
    }
  };
  // A fresh run's first jobs go out now: the workers encode while this thread counts the documents (a
  // resumed run counts first: its jobs skip what the kept shards hold, by the counts).
  if (!resumed && nWorkers > 0) {
    orStop(() => {
      while (inFlight.length < window) {
        const next = jobs.next();
        if (next.done) break;
        send(next.value.job, next.value.file);
      }
    });
  }
  // Documents and the held-out choice (as loadDataset makes it).
  let totalDocs = 0;
  const fileDocs = orStop(() => files.map((f) => {
    o.onProgress?.({ phase: 'scan', documents: totalDocs, totalDocuments: 0, chars: 0, tokens: 0, shards: kept,
      elapsedS: elapsed(), file: f.path });
    const n = countDocuments(f, textMode);
    if (n === 0) throw new Error(`data file ${f.path} is empty (no documents)`);
    totalDocs += n;
    return n;
  }));
  const k = valShare === 0 || totalDocs < 2 ? 0
    : Math.min(totalDocs - 1, Math.max(1, Math.round(valShare * totalDocs)));
  const isVal = new Uint8Array(totalDocs);
  if (k > 0) {
    const order = shuffledIndices(totalDocs, new Rng(seed));
    for (let i = 0; i < k; i++) isVal[order[i]] = 1;
  }
  m.documents = { total: totalDocs, train: totalDocs - k, val: k };

  const valPartial = path.join(out, `${VAL_FILE}.partial`);
  const val = orStop(() => {
    const valFd = fs.openSync(valPartial, fs.existsSync(valPartial) ? 'r+' : 'w+');
    if (fs.fstatSync(valFd).size < progress.val_tokens * el) {
      fs.closeSync(valFd);
      throw new Error(`${valPartial} is shorter than the manifest records (${progress.val_tokens} tokens); ` +
        `delete ${out} and tokenize again`);
    }
    fs.ftruncateSync(valFd, progress.val_tokens * el);
    return new TokenSink(valPartial, valFd, dtype, progress.val_tokens, stagingIds);
  });
  val.documents = progress.val_documents;

  let shard: TokenSink | null = null;
  let shardFirst = progress.next_document;
  let shardCount = m.shards.length; // opened so far (kept ones included); the manifest lists the finalized ones
  const openShard = () => {
    const file = path.join(out, `${shardName(shardCount++)}.partial`);
    shard = new TokenSink(file, fs.openSync(file, 'w'), dtype, 0, stagingIds);
  };
  // A full shard is finalized (fsynced with the held-out file so far, renamed, recorded in the manifest)
  // while this thread goes on taking results: the fsyncs run on libuv threads, one shard after another.
  // An fsync takes 0.1-0.5 s; waiting for it here left the workers without jobs.
  let finalizing: Promise<void> = Promise.resolve();
  let finalizeError: Error | null = null;
  let directBytes = 0;
  const closeShard = (endDoc: number) => {
    const s = shard!;
    s.flush();
    directBytes += s.directBytes;
    val.flush();
    const name = shardName(shardCount - 1);
    const entry: ShardEntry = {
      file: name, tokens: s.tokens, documents: s.documents, first_document: shardFirst, end_document: endDoc,
      sha256: s.digest(), sample_sha256: '',
    };
    const next = { next_document: endDoc, val_tokens: val.tokens, val_documents: val.documents };
    shard = null;
    shardFirst = endDoc;
    finalizing = finalizing.then(async () => {
      try {
        await s.fsync();
      } finally {
        s.close();
      }
      fs.renameSync(s.file, path.join(out, name));
      entry.sample_sha256 = sampleHashFile(path.join(out, name));
      await val.fsync();
      m.shards.push(entry);
      m.progress = next;
      writeManifest();
      report();
    });
    finalizing.catch((e: Error) => { finalizeError ??= e; });
  };
  orStop(writeManifest);

  let chars = 0, tokens = 0, done = progress.next_document;
  let interrupted = false, finished = false;
  const report = (file?: string) => o.onProgress?.({
    phase: 'tokenize', documents: done, totalDocuments: totalDocs, chars, tokens, shards: m.shards.length,
    elapsedS: elapsed(), file,
  });
  // Results are taken in the order the jobs were sent: document `done` is the next one.
  const take = async () => {
    if (finalizeError) throw finalizeError;
    const job = inFlight.shift()!;
    const r = await job.result;
    if ('error' in r) {
      throw new Error(r.line !== undefined && job.file ? `${job.file.name}:${job.file.line + r.line - 1}: ${r.error}`
        : r.error);
    }
    if (job.file) job.file.line += r.lines;
    if (done + r.lens.length > totalDocs) throw new Error('the inputs changed while they were being read');
    // Runs of documents bound for the same file go over in one copy (the ids hold their separators); a
    // training run ends at the document that fills its shard.
    const lens = r.lens;
    for (let i = 0, off = 0; i < lens.length;) {
      const toVal = isVal[done + i] === 1;
      if (!toVal && !shard) openShard();
      const sink = toVal ? val : shard!;
      const base = sink.tokens + (sink.documents > 0 ? 1 : 0);
      let j = i, end = off + lens[i];
      let full = !toVal && base + end - off >= shardTokens;
      while (!full && j + 1 < lens.length && (isVal[done + j + 1] === 1) === toVal) {
        end += 1 + lens[++j];
        full = !toVal && base + end - off >= shardTokens;
      }
      sink.push(r.ids, off, end, j - i + 1, tok.eosId);
      if (!toVal) tokens += end - off - (j - i);
      if (full) closeShard(done + j + 1);
      off = end + 1;
      i = j + 1;
    }
    chars += r.chars;
    done += r.lens.length;
    spares.push(r.ids.buffer as ArrayBuffer);
  };
  report();
  try {
    for (const { job, file } of jobs) {
      if (o.signal?.aborted) { interrupted = true; break; }
      send(job, file);
      while (inFlight.length >= window) {
        await take();
        report();
      }
    }
    while (!interrupted && inFlight.length > 0) { // the last jobs
      if (o.signal?.aborted) { interrupted = true; break; }
      await take();
      report();
    }
    if (!interrupted && done !== totalDocs) throw new Error('the inputs changed while they were being read');
    finished = !interrupted;
  } finally {
    await pool.close();
    await finalizing.catch(() => undefined); // its fsyncs use the files closed below
    if (!finished) {
      // Keep what the manifest records; the shard in hand is redone by the next run.
      val.close();
      if (shard) (shard as TokenSink).close();
    }
  }
  // A shard that could not be finalized (its fsync failed) is not in the manifest: say so, even when
  // interrupted.
  if (finalizeError) throw finalizeError;
  if (interrupted) {
    const current = shard as TokenSink | null; // the unfinished shard's direct writes count too
    return { out, manifest: m, status: 'interrupted', keptShards: kept, chars, tokens, seconds: elapsed(),
      workers: nWorkers, directBytes: directBytes + (current?.directBytes ?? 0) };
  }
  if (shard) closeShard(totalDocs);
  try {
    await finalizing;
    val.sync();
  } finally {
    val.close();
  }
  if (val.tokens > 0) {
    fs.renameSync(valPartial, path.join(out, VAL_FILE));
    const vf = path.join(out, VAL_FILE);
    m.val = { file: VAL_FILE, tokens: val.tokens, documents: val.documents, sha256: hashFile(vf),
      sample_sha256: sampleHashFile(vf) };
  } else {
    fs.rmSync(valPartial);
    m.val = null;
  }
  const seconds = elapsed();
  m.complete = true;
  delete m.progress;
  m.stats = { chars, seconds: Math.round(seconds * 1000) / 1000, workers: nWorkers };
  writeManifest();
  return { out, manifest: m, status: 'done', keptShards: kept, chars, tokens, seconds, workers: nWorkers,
    directBytes };
}
