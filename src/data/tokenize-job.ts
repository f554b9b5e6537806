// One job of `dsmoe tokenize`: documents (or a part of a text or JSONL file, cut between documents) →
// their token ids back to back and each document's length. Run by the worker threads
// (tokenize-worker.ts), or on the main thread with --workers 0. A worker reads its parts itself, so the
// main thread only cuts files and writes shards.
import * as fs from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { IdSink, type Utf8RangeEncoder } from '../tokenizer/tokenizer';
import { ensure } from '../tokenizer/word-memo';
import { InputLineError, documentsOfLines, dtypeForVocab, paragraphsOfBytes, readExactly } from './dataset';

export type TokenizeJob = ({ docs: string[] } | FilePart) & {
  id: number;
  /** A buffer of an earlier result's ids, handed back to hold this one's (no fresh memory per job). */
  spare?: ArrayBuffer;
};

/**
 * Bytes [offset, offset + length) of a file: UTF-8 from a line start outside any document; ends with
 * '\n' unless `last`.
 */
export interface FilePart {
  file: string;
  offset: number;
  length: number;
  kind: 'text' | 'jsonl';
  /** The file's last part (its final line counts even when empty, as when reading the whole file). */
  last: boolean;
}

export type TokenizeJobResult =
  /**
   * ids: the documents' ids with the end-of-text id between them (not after the last), in the shards'
   * dtype (dtypeForVocab); lens: each document's length, separator left out; lines: the newlines in a
   * part of a file (0 for a job of documents).
   */
  | { id: number; ids: Uint16Array | Uint32Array; lens: Uint32Array; chars: number; lines: number }
  /** line: for bad input in a part of a file, the line within the part (1 = its first); `error` is the reason. */
  | { id: number; error: string; line?: number };

export interface JobTokenizer {
  readonly vocabSize: number;
  readonly eosId: number;
  encode(text: string): Uint32Array | number[];
  /**
   * Encodes ranges of UTF-8 bytes without decoding them (Tokenizer.utf8Encoder), to ids below
   * vocabSize; null when it cannot.
   */
  utf8Encoder?(bytes: Uint8Array): Utf8RangeEncoder | null;
}

/** Reused from job to job (a worker runs one at a time): a part's bytes, the ids and document lengths. */
let partBuffer = Buffer.allocUnsafe(0);
const sinks = { uint16: new IdSink(new Uint16Array(1 << 16)), uint32: new IdSink(new Uint32Array(1 << 16)) };
let lens = new Uint32Array(1 << 12);

/** The bytes of a part, in partBuffer (valid until the next job). */
function readPart(p: FilePart): Buffer {
  if (partBuffer.length < p.length) partBuffer = Buffer.allocUnsafe(Math.max(p.length, 2 * partBuffer.length));
  const fd = fs.openSync(p.file, 'r');
  try {
    readExactly(fd, p.file, partBuffer, p.length, p.offset);
  } finally {
    fs.closeSync(fd);
  }
  return partBuffer.subarray(0, p.length);
}

/** The documents of a job (decoded), and the newlines in it. */
function documentsOf(job: TokenizeJob, bytes: Buffer | null): { docs: string[]; lines: number } {
  if ('docs' in job) return { docs: job.docs, lines: 0 };
  const lines = bytes!.toString('utf8').split('\n');
  const newlines = lines.length - 1;
  if (!job.last) lines.pop(); // the empty rest after the part's final '\n'
  return { docs: [...documentsOfLines(lines, job.kind, job.file, 1)], lines: newlines };
}

/** The sink's ids, in the spare buffer when it is big enough. */
function takeIds(sink: Sink, spare: ArrayBuffer | undefined): Uint16Array | Uint32Array {
  const width = sink.ids.BYTES_PER_ELEMENT;
  if (!spare || spare.byteLength < width * sink.n) return sink.take();
  const ids = width === 2 ? new Uint16Array(spare, 0, sink.n) : new Uint32Array(spare, 0, sink.n);
  ids.set(sink.ids.subarray(0, sink.n));
  return ids;
}

const outsideVocabulary = (id: number, vocabSize: number) =>
  new Error(`the tokenizer gave id ${id}, outside its vocabulary of ${vocabSize}`);

type Sink = IdSink<Uint16Array | Uint32Array>;

/**
 * A part of a text file in paragraph mode, encoded straight from its bytes: no string is made for the
 * part, its lines or its documents, so a worker makes almost no garbage (and needs no GC threads beside it).
 */
function runUtf8Text(job: TokenizeJob, bytes: Buffer, enc: Utf8RangeEncoder, tok: JobTokenizer,
  sink: Sink): TokenizeJobResult {
  let docs = 0;
  const lines = paragraphsOfBytes(bytes, (a, b) => {
    if (docs > 0) sink.push(tok.eosId);
    const before = sink.n;
    enc.encode(a, b, sink);
    if (docs === lens.length) lens = ensure(lens, docs + 1);
    lens[docs++] = sink.n - before;
  });
  // No id check here: the encoder's ids are below vocabSize (Utf8RangeEncoder).
  return { id: job.id, ids: takeIds(sink, job.spare), lens: lens.slice(0, docs), chars: sink.chars, lines };
}

/** Runs a job; errors come back as results (with the file and line where the input is at fault). */
export function runJob(tok: JobTokenizer, job: TokenizeJob): TokenizeJobResult {
  try {
    const sink: Sink = sinks[dtypeForVocab(tok.vocabSize)];
    sink.clear();
    const bytes = 'docs' in job ? null : readPart(job);
    // Invalid UTF-8 takes the decoding path, which replaces bad bytes with U+FFFD as reading a file does.
    if (bytes && !('docs' in job) && job.kind === 'text' && isUtf8(bytes)) {
      const enc = tok.utf8Encoder?.(bytes);
      if (enc) return runUtf8Text(job, bytes, enc, tok, sink);
    }
    const { docs, lines } = documentsOf(job, bytes);
    const docLens = new Uint32Array(docs.length);
    docs.forEach((doc, i) => {
      const ids = tok.encode(doc);
      if (i > 0) sink.push(tok.eosId);
      for (let k = 0; k < ids.length; k++) {
        if (!(ids[k] >= 0 && ids[k] < tok.vocabSize)) throw outsideVocabulary(ids[k], tok.vocabSize);
        sink.push(ids[k]);
      }
      docLens[i] = ids.length;
      sink.chars += doc.length;
    });
    return { id: job.id, ids: takeIds(sink, job.spare), lens: docLens, chars: sink.chars, lines };
  } catch (e) {
    if (e instanceof InputLineError) return { id: job.id, error: e.reason, line: e.line };
    return { id: job.id, error: (e as Error).message };
  }
}
