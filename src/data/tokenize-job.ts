// One job of `dsmoe tokenize`: documents (or the bytes of a part of a text or JSONL file, cut between
// documents) → their token ids back to back and each document's length. Run by the worker threads
// (tokenize-worker.ts), or on the main thread with --workers 0.
import { InputLineError, documentsOfLines } from './dataset';

export type TokenizeJob =
  | { id: number; docs: string[] }
  | {
    id: number;
    /** UTF-8, starting at a line start outside any document; ends with '\n' unless `last`. */
    bytes: Uint8Array;
    kind: 'text' | 'jsonl';
    /** The file, for errors (their line numbers count from the part's first line: see `line` below). */
    name: string;
    /** The file's last part (its final line counts even when empty, as when reading the whole file). */
    last: boolean;
  };

export type TokenizeJobResult =
  /** lines: the newlines in a part of a file (0 for a job of documents). */
  | { id: number; ids: Uint32Array; lens: Uint32Array; chars: number; lines: number }
  /** line: for bad input in a part of a file, the line within the part (1 = its first); `error` is the reason. */
  | { id: number; error: string; line?: number };

export interface JobTokenizer {
  readonly vocabSize: number;
  encode(text: string): Uint32Array | number[];
}

/** The documents of a job, and the newlines in it. */
function documentsOf(job: TokenizeJob): { docs: string[]; lines: number } {
  if ('docs' in job) return { docs: job.docs, lines: 0 };
  const text = Buffer.from(job.bytes.buffer, job.bytes.byteOffset, job.bytes.byteLength).toString('utf8');
  const lines = text.split('\n');
  const newlines = lines.length - 1;
  if (!job.last) lines.pop(); // the empty rest after the part's final '\n'
  return { docs: [...documentsOfLines(lines, job.kind, job.name, 1)], lines: newlines };
}

/** Runs a job; errors come back as results (with the file and line where the input is at fault). */
export function runJob(tok: JobTokenizer, job: TokenizeJob): TokenizeJobResult {
  try {
    const { docs, lines } = documentsOf(job);
    const parts: Array<Uint32Array | number[]> = [];
    const lens = new Uint32Array(docs.length);
    let total = 0, chars = 0;
    docs.forEach((doc, i) => {
      const ids = tok.encode(doc);
      for (let k = 0; k < ids.length; k++) {
        if (!(ids[k] >= 0 && ids[k] < tok.vocabSize))
          throw new Error(`the tokenizer gave id ${ids[k]}, outside its vocabulary of ${tok.vocabSize}`);
      }
      parts.push(ids);
      lens[i] = ids.length;
      total += ids.length;
      chars += doc.length;
    });
    const ids = new Uint32Array(total);
    let o = 0;
    for (const p of parts) { ids.set(p, o); o += p.length; }
    return { id: job.id, ids, lens, chars, lines };
  } catch (e) {
    if (e instanceof InputLineError) return { id: job.id, error: e.reason, line: e.line };
    return { id: job.id, error: (e as Error).message };
  }
}
