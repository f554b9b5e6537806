// `dsmoe tokenizer …`: tokenizers. For now: `dsmoe tokenizer train`.
import * as path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { readDocuments, resolveInputs } from '../../data/dataset';
import { trainBpeTokenizer } from '../../tokenizer/bpe-train';
import { loadTokenizer } from '../../tokenizer/tokenizer';

export interface TokenizerTrainOptions {
  data: string[];
  vocabSize: number;
  out: string;
  minFrequency?: number;
  quiet?: boolean;
}

export interface TokenizerTrainResult {
  out: string;
  vocabSize: number;
  merges: number;
  documents: number;
  seconds: number;
}

/** Trains a byte-level BPE tokenizer on text inputs and writes tokenizer.json. */
export function tokenizerTrain(o: TokenizerTrainOptions,
  stdout: NodeJS.WritableStream = process.stdout): TokenizerTrainResult {
  if (!o.data || o.data.length === 0) throw new Error('--data needs at least one file or folder');
  if (!Number.isInteger(o.vocabSize) || o.vocabSize < 257) throw new Error(`--vocab-size must be at least 257 (256 ` +
    `bytes + <|endoftext|>), got ${o.vocabSize}`);
  const files = resolveInputs(o.data);
  const bin = files.find((f) => f.kind === 'bin');
  if (bin) throw new Error(`${bin.path}: .bin token files hold no text to train a tokenizer on`);
  for (const f of files) if (f.kind !== 'builtin' && f.size === 0) throw new Error(`data file ${f.path} is empty`);
  let documents = 0;
  function* texts(): Generator<string> {
    for (const f of files) for (const d of readDocuments(f)) {
      documents++;
      yield d;
    }
  }
  const t0 = performance.now();
  const model = trainBpeTokenizer(texts(), o.out, {
    vocabSize: o.vocabSize, minFrequency: o.minFrequency,
    onProgress: o.quiet ? undefined : (p) => {
      if (p.phase === 'merge' && p.total > 0 && p.done % 1000 === 0 &&
        p.done > 0) stdout.write(`  merges ${p.done}/${p.total}\n`);
    },
  });
  if (documents === 0) throw new Error(`no documents in ${o.data.join(', ')}`);
  const seconds = (performance.now() - t0) / 1000;
  const tok = loadTokenizer(o.out); // proves the file loads
  stdout.write(`wrote ${path.resolve(o.out)}: vocabulary ${tok.vocabSize} (${model.merges.length} merges) from ` +
    `${documents} documents in ${seconds.toFixed(1)}s\n`);
  if (tok.vocabSize < o.vocabSize) stdout.write(`note: the text has too few repeated pairs for ` +
    `${o.vocabSize} tokens; the vocabulary stopped at ${tok.vocabSize}\n`);
  return { out: path.resolve(o.out), vocabSize: tok.vocabSize, merges: model.merges.length, documents, seconds };
}

const intArg = (flag: string, min: number) => (v: string): number => {
  const n = Number(v);
  if (!/^\s*\d+\s*$/.test(v) || !Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`${flag} expects ` +
    `an integer ≥ ${min}, got "${v}"`);
  return n;
};

export function tokenizerCommand(): Command {
  const cmd = new Command('tokenizer').description('tokenizers: train a byte-level BPE tokenizer.json');
  cmd
    .command('train')
    .description('train a byte-level BPE tokenizer (GPT-2 style, Hugging Face tokenizer.json) on text')
    .requiredOption('--data <paths...>', 'text inputs: .txt, .md, .jsonl files or folders, or builtin:nlp-corpus')
    .option('--vocab-size <n>', 'vocabulary size, bytes and <|endoftext|> included', intArg('--vocab-size', 257), 4096)
    .option('--min-frequency <n>', 'never merge pairs seen fewer times', intArg('--min-frequency', 1))
    .option('--out <file>', 'where to write it', 'tokenizer.json')
    .option('--quiet', 'no progress output')
    .addHelpText('after', `
Examples:
  dsmoe tokenizer train --data corpus/ --vocab-size 8192 --out tokenizer.json
  dsmoe train --data corpus/ --tokenizer tokenizer.json`)
    .action((o: TokenizerTrainOptions) => {
      tokenizerTrain(o);
    });
  return cmd;
}
