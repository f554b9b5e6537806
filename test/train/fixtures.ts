// Small training inputs for the trainer and CLI tests: a generated text corpus and a BPE tokenizer
// trained on it (a few hundred tokens of vocabulary, built in well under a second).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { trainBpeTokenizer } from '../../src/tokenizer/bpe-train';

export const WORDS = ['the', 'model', 'expert', 'router', 'dense', 'sparse', 'token', 'layer', 'attention', 'loss',
  'train', 'infer',
  'a', 'of', 'and', 'to', 'in', 'is', 'with', 'mixture', 'gate', 'score', 'head', 'value', 'key', 'query'];

export interface Fixture {
  dir: string;
  corpus: string;
  tokenizer: string;
  cacheDir: string;
}

export function makeFixture(paragraphs = 400): Fixture {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-train-'));
  let s = 12345;
  const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const paras: string[] = [];
  for (let p = 0; p < paragraphs; p++) {
    const n = 8 + Math.floor(rnd() * 20);
    const words: string[] = [];
    for (let i = 0; i < n; i++) words.push(WORDS[Math.floor(rnd() * WORDS.length)]);
    paras.push(words.join(' ') + '.');
  }
  const corpus = path.join(dir, 'corpus.txt');
  fs.writeFileSync(corpus, paras.join('\n\n') + '\n');
  const tokenizer = path.join(dir, 'tokenizer.json');
  trainBpeTokenizer(paras, tokenizer, { vocabSize: 300 });
  return { dir, corpus, tokenizer, cacheDir: path.join(dir, 'cache') };
}
