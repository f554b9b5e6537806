// A worker thread of `dsmoe tokenize` (src/data/tokenize-shards.ts): loads the tokenizer once, then
// encodes jobs of documents and sends back their ids (one array) and per-document lengths.
import { parentPort, workerData } from 'node:worker_threads';
import { loadTokenizer } from '../tokenizer/tokenizer';

export interface TokenizeJob {
  id: number;
  docs: string[];
}

export type TokenizeJobResult =
  | { id: number; ids: Uint32Array; lens: Uint32Array; chars: number }
  | { id: number; error: string };

const tok = loadTokenizer((workerData as { tokenizer: string }).tokenizer);

parentPort!.on('message', (job: TokenizeJob) => {
  try {
    const parts: Array<Uint32Array | number[]> = [];
    const lens = new Uint32Array(job.docs.length);
    let total = 0, chars = 0;
    job.docs.forEach((doc, i) => {
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
    const res: TokenizeJobResult = { id: job.id, ids, lens, chars };
    parentPort!.postMessage(res, [ids.buffer, lens.buffer]);
  } catch (e) {
    parentPort!.postMessage({ id: job.id, error: (e as Error).message } satisfies TokenizeJobResult);
  }
});
