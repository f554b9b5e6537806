// One job of `dsmoe tokenize`: documents (or the bytes of a part of a text or JSONL file, cut between
// documents) → their token ids back to back and each document's length. Run by the worker threads
// (tokenize-worker.ts), or on the main thread with --workers 0.
import { documentsOfLines } from './dataset';

export type TokenizeJob =
  | { id: number; docs: string[] }
  | {
    id: number;
    /** UTF-8, starting at a line start outside any document; ends with '\n' unless `last`. */
    bytes: Uint8Array;
    kind: 'text' | 'jsonl';
    /** The file, and the number of the part's first line, for errors. */
    name: string;
    firstLine: number;
    /** The file's last part (its final line counts even when empty, as when reading the whole file). */
    last: boolean;
  };

export type TokenizeJobResult =
  | { id: number; ids: Uint32Array; lens: Uint32Array; chars: number }
  | { id: number; error: string };

export interface JobTokenizer {
  readonly vocabSize: number;
  encode(text: string): Uint32Array | number[];
}

/** The documents of a job. */
function documentsOf(job: TokenizeJob): string[] {
  if ('docs' in job) return job.docs;
  const text = Buffer.from(job.bytes.buffer, job.bytes.byteOffset, job.bytes.byteLength).toString('utf8');
  const lines = text.split('\n');
  if (!job.last) lines.pop(); // the empty rest after the part's final '\n'
  return [...documentsOfLines(lines, job.kind, job.name, job.firstLine)];
}

/** Runs a job; errors come back as results (with the file and line where the input is at fault). */
export function runJob(tok: JobTokenizer, job: TokenizeJob): TokenizeJobResult {
  try {
    const docs = documentsOf(job);
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
    return { id: job.id, ids, lens, chars };
  } catch (e) {
    return { id: job.id, error: (e as Error).message };
  }
}
