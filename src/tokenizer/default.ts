// The default tokenizer: a byte-level BPE trained once on the built-in corpus and kept in the cache.
import * as fs from 'fs';
import * as path from 'path';
import { defaultCacheDir } from '../data/cache';
import { corpusInfo, corpusSentences } from '../data/corpus';
import { saveTokenizerJson, trainBpe, type BpeTrainOptions } from './bpe-train';

/** Bump when the trainer's output for the same corpus changes, so old cached files are not reused. */
export const TRAINER_VERSION = 1;
export const DEFAULT_VOCAB_SIZE = 4096;

export interface DefaultTokenizerOptions {
  cacheDir?: string;
  vocabSize?: number;
  onProgress?: BpeTrainOptions['onProgress'];
}

/** Where the default tokenizer for these options lives (it may not exist yet). */
export function defaultTokenizerPath(opts: DefaultTokenizerOptions = {}): string {
  const vocab = opts.vocabSize ?? DEFAULT_VOCAB_SIZE;
  const dir = opts.cacheDir ?? defaultCacheDir();
  return path.join(dir, 'tokenizers', `nlp-corpus-${corpusInfo().version}-bpe${vocab}-v${TRAINER_VERSION}`,
    'tokenizer.json');
}

/**
 * Path of a tokenizer.json trained (vocab 4096 by default) on the built-in corpus. The first call
 * trains it (a few seconds) and writes it atomically to the cache; later calls reuse the file.
 */
export function defaultTokenizer(opts: DefaultTokenizerOptions = {}): string {
  const file = defaultTokenizerPath(opts);
  if (fs.existsSync(file)) {
    try {
      JSON.parse(fs.readFileSync(file, 'utf8'));
      return file;
    } catch {
      // unreadable: train again and replace it
    }
  }
  const model = trainBpe(corpusSentences(), { vocabSize: opts.vocabSize ?? DEFAULT_VOCAB_SIZE,
    onProgress: opts.onProgress });
  saveTokenizerJson(model, file);
  return file;
}
