// Byte-level BPE trainer (GPT-2 style) that writes a Hugging Face tokenizer.json.
//
// Text is split into pre-tokens with the GPT-2 regex (the one the ByteLevel pre-tokenizer uses),
// identical pre-tokens are counted once, and merges are learnt on the UTF-8 bytes of those words,
// each byte shown as one printable character (the GPT-2 byte-to-unicode table). All 256 bytes are
// in the base vocabulary, so every string is encodable and decode(encode(s)) === s.
//
// Training keeps pair counts and, for every pair, the words it occurs in; a merge only revisits
// those words and updates the counts of the pairs that changed. A max-heap orders the pairs: an
// entry's count is an upper bound (the counts of pairs that do not contain the newest token only
// ever fall), so a popped entry whose count is stale is pushed back with the current count.
import { atomicWrite } from '../data/cache';

/** The end-of-text token: id 0 in tokenizers trained here, and the document separator. */
export const EOS_TOKEN = '<|endoftext|>';

/** GPT-2's pre-tokenizer split, exactly as @huggingface/tokenizers' ByteLevel pre-tokenizer has it. */
export const GPT2_SPLIT_REGEX = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2's byte-to-unicode table: byte b is shown as the character BYTE_TO_UNICODE[b]. */
export const BYTE_TO_UNICODE: readonly string[] = (() => {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const table = new Array<string>(256);
  for (const b of bs) table[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) if (table[b] === undefined) table[b] = String.fromCharCode(256 + n++);
  return table;
})();

const textEncoder = new TextEncoder();

/** The byte-level form of a string: its UTF-8 bytes, one table character each. */
export function byteLevelEncode(s: string): string {
  let out = '';
  for (const b of textEncoder.encode(s)) out += BYTE_TO_UNICODE[b];
  return out;
}

export interface BpeTrainOptions {
  /** Size of the final vocabulary, special tokens and the 256 byte tokens included. */
  vocabSize: number;
  /** Special tokens, given ids 0.. in this order. Default: [`<|endoftext|>`]. */
  specialTokens?: string[];
  /** Pairs seen fewer times than this are never merged (training may then stop early). Default 2. */
  minFrequency?: number;
  /** Progress: phase 'count' reports texts read (total 0 when unknown), 'merge' merges done. */
  onProgress?: (p: { phase: 'count' | 'merge'; done: number; total: number }) => void;
}

export interface TrainedBpe {
  /** Token strings (byte-level form; special tokens verbatim), index = id. */
  vocab: string[];
  /** Merges in rank order, as pairs of token strings. */
  merges: Array<[string, string]>;
  specialTokens: string[];
}

/** Counts the GPT-2 pre-tokens of the given texts (special-token strings are cut out first). */
export function countWords(texts: Iterable<string>, specialTokens: string[] = [EOS_TOKEN],
  onText?: (n: number) => void): Map<string, number> {
  const counts = new Map<string, number>();
  let n = 0;
  const addPiece = (piece: string) => {
    for (const m of piece.matchAll(GPT2_SPLIT_REGEX)) {
      const w = m[0];
      counts.set(w, (counts.get(w) ?? 0) + 1);
    }
  };
  for (const text of texts) {
    if (typeof text !== 'string') throw new TypeError(`training texts must be strings, got ${typeof text}`);
    let pieces = [text];
    for (const sp of specialTokens) if (text.includes(sp)) pieces = pieces.flatMap((p) => p.split(sp));
    for (const p of pieces) addPiece(p);
    if (onText && (++n & 1023) === 0) onText(n);
  }
  return counts;
}

// Pair keys: a * PAIR_BASE + b, exact in a double for ids below PAIR_BASE.
const PAIR_BASE = 1 << 22;

/** A binary max-heap of (count, pair key): higher count first, then the smaller key. */
class PairHeap {
  private keys: number[] = [];
  private counts: number[] = [];

  get size(): number {
    return this.keys.length;
  }

  private better(i: number, j: number): boolean {
    const ci = this.counts[i], cj = this.counts[j];
    return ci > cj || (ci === cj && this.keys[i] < this.keys[j]);
  }

  private swap(i: number, j: number): void {
    const k = this.keys[i]; this.keys[i] = this.keys[j]; this.keys[j] = k;
    const c = this.counts[i]; this.counts[i] = this.counts[j]; this.counts[j] = c;
  }

  push(key: number, count: number): void {
    this.keys.push(key);
    this.counts.push(count);
    let i = this.keys.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.better(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  /** Removes the top; returns false when empty. The popped entry is in `topKey`/`topCount`. */
  topKey = 0;
  topCount = 0;
  pop(): boolean {
    const n = this.keys.length;
    if (n === 0) return false;
    this.topKey = this.keys[0];
    this.topCount = this.counts[0];
    const lastK = this.keys.pop()!, lastC = this.counts.pop()!;
    if (n > 1) {
      this.keys[0] = lastK;
      this.counts[0] = lastC;
      const m = n - 1;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let best = i;
        if (l < m && this.better(l, best)) best = l;
        if (r < m && this.better(r, best)) best = r;
        if (best === i) break;
        this.swap(i, best);
        i = best;
      }
    }
    return true;
  }
}

/** Learns BPE merges from word counts (see countWords). */
export function trainBpeFromCounts(wordCounts: Map<string, number>, opts: BpeTrainOptions): TrainedBpe {
  const specialTokens = opts.specialTokens ?? [EOS_TOKEN];
  const minFrequency = Math.max(1, opts.minFrequency ?? 2);
  const base = specialTokens.length + 256;
  if (!Number.isInteger(opts.vocabSize) || opts.vocabSize < base)
    throw new RangeError(`vocabSize must be an integer >= ${base} (${specialTokens.length} special tokens + 256 ` +
      `bytes), got ${opts.vocabSize}`);
  if (opts.vocabSize > PAIR_BASE) throw new RangeError(`vocabSize must be <= ${PAIR_BASE}, got ${opts.vocabSize}`);
  if (new Set(specialTokens).size !== specialTokens.length) throw new Error(`duplicate special tokens: ` +
    `${specialTokens.join(', ')}`);

  const vocab: string[] = [...specialTokens];
  const idOf = new Map<string, number>();
  specialTokens.forEach((t, i) => idOf.set(t, i));
  const byteId = new Int32Array(256);
  for (let b = 0; b < 256; b++) {
    const s = BYTE_TO_UNICODE[b];
    if (idOf.has(s)) throw new Error(`special token ${JSON.stringify(s)} collides with a byte token`);
    byteId[b] = vocab.length;
    idOf.set(s, vocab.length);
    vocab.push(s);
  }

  // Words as arrays of token ids, with their counts.
  const words: number[][] = [];
  const wcount: number[] = [];
  for (const [w, c] of wordCounts) {
    const bytes = textEncoder.encode(w);
    if (bytes.length < 2) continue; // a single byte has no pair to merge
    const syms = new Array<number>(bytes.length);
    for (let i = 0; i < bytes.length; i++) syms[i] = byteId[bytes[i]];
    words.push(syms);
    wcount.push(c);
  }

  const pairCount = new Map<number, number>();
  const where = new Map<number, number[]>();
  for (let w = 0; w < words.length; w++) {
    const s = words[w], c = wcount[w];
    for (let i = 0; i + 1 < s.length; i++) {
      const k = s[i] * PAIR_BASE + s[i + 1];
      pairCount.set(k, (pairCount.get(k) ?? 0) + c);
      let list = where.get(k);
      if (!list) where.set(k, (list = []));
      if (list[list.length - 1] !== w) list.push(w);
    }
  }
  const heap = new PairHeap();
  for (const [k, c] of pairCount) heap.push(k, c);

  const merges: Array<[number, number]> = [];
  const seen = new Int32Array(words.length).fill(-1);
  const totalMerges = opts.vocabSize - vocab.length;
  while (vocab.length < opts.vocabSize && heap.pop()) {
    const key = heap.topKey, cnt = heap.topCount;
    const cur = pairCount.get(key) ?? 0;
    if (cur !== cnt) {
      if (cur > 0) heap.push(key, cur);
      continue;
    }
    if (cnt < minFrequency) break;
    const a = Math.floor(key / PAIR_BASE), b = key - a * PAIR_BASE;
    const str = vocab[a] + vocab[b];
    let z = idOf.get(str);
    if (z === undefined) {
      z = vocab.length;
      vocab.push(str);
      idOf.set(str, z);
    }
    const step = merges.length;
    merges.push([a, b]);
    pairCount.delete(key);
    const list = where.get(key) ?? [];
    where.delete(key);
    const grown = new Set<number>();
    for (const w of list) {
      if (seen[w] === step) continue;
      seen[w] = step;
      const s = words[w];
      let found = false;
      for (let i = 0; i + 1 < s.length; i++) if (s[i] === a && s[i + 1] === b) { found = true; break; }
      if (!found) continue; // a stale entry: the word changed since
      const c = wcount[w];
      for (let i = 0; i + 1 < s.length; i++) {
        const k = s[i] * PAIR_BASE + s[i + 1];
        if (k === key) continue;
        const v = pairCount.get(k)! - c;
        if (v > 0) pairCount.set(k, v); else pairCount.delete(k);
      }
      const out: number[] = [];
      for (let i = 0; i < s.length;) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) { out.push(z); i += 2; } else out.push(s[i++]);
      }
      for (let i = 0; i + 1 < out.length; i++) {
        const x = out[i], y = out[i + 1];
        const k = x * PAIR_BASE + y;
        pairCount.set(k, (pairCount.get(k) ?? 0) + c);
        if (x === z || y === z) {
          grown.add(k);
          let wl = where.get(k);
          if (!wl) where.set(k, (wl = []));
          if (wl[wl.length - 1] !== w) wl.push(w);
        }
      }
      words[w] = out;
    }
    for (const k of grown) {
      const c = pairCount.get(k);
      if (c !== undefined && c > 0) heap.push(k, c);
    }
    if (opts.onProgress && (merges.length & 63) === 0) opts.onProgress({ phase: 'merge', done: vocab.length - base,
      total: totalMerges });
  }
  opts.onProgress?.({ phase: 'merge', done: vocab.length - base, total: totalMerges });
  return { vocab, merges: merges.map(([x, y]) => [vocab[x], vocab[y]]), specialTokens };
}

/** Trains a byte-level BPE on the given texts. */
export function trainBpe(texts: Iterable<string>, opts: BpeTrainOptions): TrainedBpe {
  const specialTokens = opts.specialTokens ?? [EOS_TOKEN];
  const counts = countWords(texts, specialTokens, (n) => opts.onProgress?.({ phase: 'count', done: n, total: 0 }));
  return trainBpeFromCounts(counts, { ...opts, specialTokens });
}

/** The Hugging Face tokenizer.json object for a trained model. */
export function bpeTokenizerJson(model: TrainedBpe): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  model.vocab.forEach((t, i) => { vocab[t] = i; });
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: model.specialTokens.map((content, id) => ({
      id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: { ...byteLevel },
    // Adds no tokens; a ByteLevel post-processor only adjusts offsets.
    post_processor: { ...byteLevel },
    decoder: { ...byteLevel },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      // "a b" strings: the classic form every tokenizers version reads. Byte-level token
      // strings never contain a plain space (byte 0x20 is shown as "Ġ"), so the split is unambiguous.
      merges: model.merges.map(([x, y]) => `${x} ${y}`),
    },
  };
}

/** Writes the model's tokenizer.json atomically. */
export function saveTokenizerJson(model: TrainedBpe, file: string): void {
  atomicWrite(file, JSON.stringify(bpeTokenizerJson(model)));
}

/** Trains on `texts` and writes the tokenizer.json to `file`. */
export function trainBpeTokenizer(texts: Iterable<string>, file: string, opts: BpeTrainOptions): TrainedBpe {
  const model = trainBpe(texts, opts);
  saveTokenizerJson(model, file);
  return model;
}
