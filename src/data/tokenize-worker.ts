// A worker thread of `dsmoe tokenize` (src/data/tokenize-shards.ts): loads the tokenizer once, then
// runs jobs (tokenize-job.ts) and sends back their ids (one array) and per-document lengths.
import { parentPort, workerData } from 'node:worker_threads';
import { loadTokenizer } from '../tokenizer/tokenizer';
import { runJob, type TokenizeJob } from './tokenize-job';

const tok = loadTokenizer((workerData as { tokenizer: string }).tokenizer);

parentPort!.on('message', (job: TokenizeJob) => {
  const r = runJob(tok, job);
  parentPort!.postMessage(r, 'error' in r ? [] : [r.ids.buffer as ArrayBuffer, r.lens.buffer as ArrayBuffer]);
});
