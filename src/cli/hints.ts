// "What to run next": the lines printed at the end of a command, as a function of its result. The
// library code returns data (src/train returns where the checkpoint is, why the run ended, ...);
// the command line decides what to suggest.
import * as path from 'node:path';
import type { TrainResult } from '../train/trainer';

/** A path as the user should type it: relative to where they are, unless that climbs out of it (then absolute). */
export function displayPath(p: string, cwd: string = process.cwd()): string {
  const rel = path.relative(cwd, p) || '.';
  return rel.startsWith('..') ? p : rel;
}

/** What the user asked for that the suggestions repeat (a baseline on the same data and tokenizer). */
export interface TrainHintOptions {
  data?: string[];
  tokenizer?: string;
}

/** The next steps after `dsmoe train` (none when the run stopped before it saved anything). */
export function trainNextSteps(
  r: Pick<TrainResult, 'reason' | 'outDir' | 'step' | 'savedStep' | 'mode' | 'preset' | 'resumedFrom'>,
  o: TrainHintOptions = {}, cwd: string = process.cwd(),
): string[] {
  const rel = displayPath(r.outDir, cwd);
  if (r.reason === 'interrupted')
    return r.savedStep === null ? [] : [`continue where it stopped:  dsmoe train --resume ${rel}`];
  const baseline = `compare with the dense baseline: dsmoe train --preset ${r.preset} --mode dense`
    + `${o.data ? ` --data ${o.data.join(' ')}` : ''}${o.tokenizer ? ` --tokenizer ${o.tokenizer}` : ''}`;
  return [
    `train longer (same run):    dsmoe train --resume ${rel} --steps ${Math.max(r.step * 2, r.step + 1)}`,
    `generate text sparsely:     dsmoe generate ${rel} "Once upon a time" --max-tokens 40`,
    `perplexity vs sparsity:     dsmoe eval ${rel} --routing threshold:0.48   (or dense, topk:2)`,
    `the checkpoint is in ${rel}/ (config.json, model.safetensors, tokenizer.json; optimizer state for resuming)`,
    ...(r.mode === 'dsmoe' && r.resumedFrom === null ? [baseline] : []),
  ];
}
