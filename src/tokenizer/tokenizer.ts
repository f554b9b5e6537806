// A small wrapper over @huggingface/tokenizers (its CommonJS build) for loading a tokenizer.json,
// encoding text to ids and decoding ids back, with errors that name the file.
import * as fs from 'fs';
import * as path from 'path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { hashParts } from '../data/cache';
import { BYTE_TO_UNICODE, EOS_TOKEN, byteLevelEncode } from './bpe-train';
import { WordMemo, ensure, utf8WordEnd } from './word-memo';

/** What the data layer needs from a tokenizer. */
export interface TextTokenizer {
  readonly vocabSize: number;
  /** Id of the end-of-text token that separates documents. */
  readonly eosId: number;
  encode(text: string): Uint32Array;
  decode(ids: ArrayLike<number>): string;
}

/**
 * A byte-level BPE model's merges over ids: the same result as the library's heap-based bpe() (the
 * lowest-ranked adjacent pair first, the leftmost of equal ones), without its per-word allocations.
 * Used for the words not memoised yet, which dominate the cost of encoding a small corpus.
 */
/** Longer words go to the library (ByteLevelMerges is quadratic in a word's length). */
const MAX_MERGE_WORD = 64;

class ByteLevelMerges {
  /** Id of each byte's token, -1 where the vocabulary lacks it. */
  private readonly byteIds = new Int32Array(256).fill(-1);
  /** (left id × vocabulary size + right id) → merge rank (the last one for a pair listed twice, as the library). */
  private readonly rank = new Map<number, number>();
  /** Id of each merge's result, -1 where the vocabulary lacks it. */
  private readonly mergedId: Int32Array;
  private readonly ids = new Int32Array(MAX_MERGE_WORD);
  /** Pair keys are left × v + right. */
  private readonly v: number;

  constructor(vocab: Map<string, number>, merges: Array<[string, string]>) {
    let v = 0;
    for (const id of vocab.values()) v = Math.max(v, id + 1);
    this.v = v;
    for (let b = 0; b < 256; b++) this.byteIds[b] = vocab.get(BYTE_TO_UNICODE[b]) ?? -1;
    this.mergedId = new Int32Array(merges.length);
    merges.forEach(([a, b], i) => {
      const ia = vocab.get(a), ib = vocab.get(b);
      this.mergedId[i] = vocab.get(a + b) ?? -1;
      if (ia !== undefined && ib !== undefined) this.rank.set(ia * v + ib, i);
    });
  }

  /** Ids of the pre-token b[i, j); null when the library must do it (long, or a byte or merge not in the vocab). */
  encode(b: Uint8Array, i: number, j: number): Uint32Array | null {
    let n = j - i;
    if (n > MAX_MERGE_WORD) return null;
    const ids = this.ids;
    for (let k = 0; k < n; k++) if ((ids[k] = this.byteIds[b[i + k]]) < 0) return null;
    for (;;) {
      let best = -1, bestRank = Infinity;
      for (let k = 0; k + 1 < n; k++) {
        const r = this.rank.get(ids[k] * this.v + ids[k + 1]);
        if (r !== undefined && r < bestRank) { bestRank = r; best = k; }
      }
      if (best < 0) break;
      const id = this.mergedId[bestRank];
      if (id < 0) return null;
      ids[best] = id;
      ids.copyWithin(best + 1, best + 2, n);
      n--;
    }
    return Uint32Array.from(ids.subarray(0, n));
  }
}

const textEncoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** An added token as the fast path looks for it in UTF-8 text. */
type Special = { bytes: Buffer; id: number; utf16: number };
/** specials: longest first (at one position, the longest wins, as in the library's alternation). */
type FastPath = { specials: Special[]; memo: WordMemo; merges: ByteLevelMerges | null };

/**
 * Token ids appended text after text (grown as needed), with the UTF-16 length of the text they came
 * from: what Tokenizer.utf8Encoder writes to. 16-bit ids where the vocabulary fits them (the shards'
 * own dtype, so `dsmoe tokenize` copies them without converting).
 */
export class IdSink<A extends Uint16Array | Uint32Array = Uint32Array> {
  n = 0;
  chars = 0;

  constructor(public ids: A) {}

  push(id: number): void {
    if (this.n === this.ids.length) this.ids = ensure(this.ids, this.n + 1);
    this.ids[this.n++] = id;
  }

  /** A copy of the ids so far. */
  take(): A {
    return this.ids.slice(0, this.n) as A;
  }

  clear(): void {
    this.n = this.chars = 0;
  }
}

/** Encodes ranges of one buffer of valid UTF-8, taken in increasing order (see Tokenizer.utf8Encoder). */
export interface Utf8RangeEncoder {
  /**
   * Appends the ids of bytes [start, end) to the sink, and their UTF-16 length to sink.chars. The ids
   * are all below the tokenizer's vocabSize (checked once per distinct pre-token).
   */
  encode(start: number, end: number, sink: IdSink<Uint16Array | Uint32Array>): void;
}

export const SUPPORTED_MODELS = ['BPE', 'WordPiece', 'Unigram'] as const;

/** End-of-text tokens looked for, in order, when `<|endoftext|>` is absent. */
const EOS_CANDIDATES = [EOS_TOKEN, '</s>', '<|end_of_text|>', '<eos>', '<|eot_id|>', '[SEP]'];

export interface LoadTokenizerOptions {
  /** The end-of-text token; default: the first of `<|endoftext|>`, `</s>`, `<|end_of_text|>`, … that exists. */
  eosToken?: string;
}

export class Tokenizer implements TextTokenizer {
  readonly vocabSize: number;
  readonly eosId: number;
  readonly eosToken: string;
  /** sha256 of the tokenizer.json text (part of data cache keys). */
  readonly contentHash: string;

  /**
   * Fast path for plain byte-level BPE tokenizers (no normalizer, GPT-2 regex pre-tokenizer, no
   * added-token stripping): the library's own steps, with an unbounded memo of pre-token → ids
   * (the library's LRU cache is small and slow). Null when the tokenizer is of another kind.
   */
  private readonly fast: FastPath | null;

  private constructor(private readonly hf: HfTokenizer, readonly source: string, text: string, eosToken: string,
    eosId: number, vocabSize: number, json: Record<string, unknown>) {
    this.contentHash = hashParts([text]);
    this.eosToken = eosToken;
    this.eosId = eosId;
    this.vocabSize = vocabSize;
    this.fast = Tokenizer.fastPath(json, hf, vocabSize);
  }

  private static fastPath(json: Record<string, unknown>, hf: HfTokenizer, vocabSize: number): FastPath | null {
    const pre = json.pre_tokenizer as Record<string, unknown> | null;
    const model = json.model as Record<string, unknown>;
    const post = json.post_processor as Record<string, unknown> | null;
    const added = (json.added_tokens ?? []) as Array<Record<string, unknown>>;
    const ok = json.normalizer === null
      && pre !== null && pre.type === 'ByteLevel' && pre.add_prefix_space !== true && pre.use_regex !== false
      && model.type === 'BPE' && !model.ignore_merges && !model.dropout && !model.end_of_word_suffix
      && !model.continuing_subword_suffix && !model.byte_fallback && !model.fuse_unk
      && (post === null || post.type === 'ByteLevel')
      && Array.isArray(added) && added.every((t) => typeof t.content === 'string' && t.content !== '' && !t.lstrip &&
        !t.rstrip);
    if (!ok) return null;
    const contents = [...new Set(added.map((t) => t.content as string))];
    // The merges as the library holds them (it has read both the "a b" and the ["a", "b"] forms).
    const lib = hf.model as unknown as { tokens_to_ids?: unknown; merges?: unknown };
    // Pair keys (left × vocabulary + right) must stay exact doubles: ids below 2^26.
    const vocab = lib.tokens_to_ids instanceof Map ? lib.tokens_to_ids as Map<string, number> : null;
    const small = vocab !== null && [...vocab.values()].every((id) => id < 1 << 26);
    const merges = vocab && small && Array.isArray(lib.merges)
      ? new ByteLevelMerges(vocab, lib.merges as Array<[string, string]>)
      : null;
    const specials = contents.map((c) => ({ bytes: Buffer.from(c, 'utf8'), id: hf.token_to_id(c)!, utf16: c.length }))
      .sort((x, y) => y.bytes.length - x.bytes.length);
    // Every id of the fast path is below vocabSize (mergeWord checks the rest).
    if (!specials.every((t) => t.id < vocabSize)) return null;
    return { specials, memo: new WordMemo(), merges };
  }

  /** Reused buffers of encodeFast: the text as UTF-8, and its ids. */
  private utf8 = Buffer.allocUnsafe(1 << 12);
  private readonly sink = new IdSink(new Uint32Array(1 << 12));

  /**
   * The ids of the pre-token b[i, j), not in the memo yet, by the BPE merges. Each is checked to be
   * below vocabSize here, once per distinct pre-token, so every id the fast path gives is (callers such
   * as dsmoe tokenize's workers need not check them one by one).
   */
  private mergeWord(b: Uint8Array, i: number, j: number, fast: FastPath): Uint32Array {
    const ids = this.mergeWordUnchecked(b, i, j, fast);
    for (let k = 0; k < ids.length; k++) {
      if (!(ids[k] < this.vocabSize))
        throw new Error(`${this.source}: the tokenizer gave id ${ids[k]}, outside its vocabulary of ${this.vocabSize}`);
    }
    return ids;
  }

  private mergeWordUnchecked(b: Uint8Array, i: number, j: number, fast: FastPath): Uint32Array {
    const quick = fast.merges?.encode(b, i, j);
    if (quick) return quick;
    const w = utf8Decoder.decode(b.subarray(i, j));
    const toks = (this.hf.model as unknown as (t: string[]) => string[])([byteLevelEncode(w)]);
    const ids = new Uint32Array(toks.length);
    for (let k = 0; k < toks.length; k++) {
      const id = this.hf.token_to_id(toks[k]);
      if (id === undefined) throw new Error(`${this.source}: text has a token that is not in the vocabulary ` +
        `and there is no unk token`);
      ids[k] = id;
    }
    return ids;
  }

  /**
   * The fast path over UTF-8: lone surrogates in `text` become U+FFFD's bytes, as in the library's own
   * byte-level step, and both split them as one "other" character.
   */
  private encodeFast(text: string, fast: FastPath): Uint32Array {
    const need = 3 * text.length;
    if (this.utf8.length < need) this.utf8 = Buffer.allocUnsafe(Math.max(need, 2 * this.utf8.length));
    const { written } = textEncoder.encodeInto(text, this.utf8);
    this.sink.clear();
    // A view of the written bytes: added tokens are searched to the end of the buffer it is given, and
    // the scratch keeps the size of the longest text so far.
    this.fastUtf8Encoder(this.utf8.subarray(0, written), fast).encode(0, written, this.sink);
    return this.sink.take();
  }

  /**
   * An encoder over ranges of `bytes` (valid UTF-8, taken in increasing order) that gives the same ids
   * as encode() of each range's text, without decoding it; null when this tokenizer has no fast path
   * (then decode and call encode()). Added tokens are found with indexOf, each one's next place kept,
   * so a buffer is searched once however many ranges it is encoded in.
   */
  utf8Encoder(bytes: Uint8Array): Utf8RangeEncoder | null {
    return this.fast ? this.fastUtf8Encoder(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), this.fast)
      : null;
  }

  private fastUtf8Encoder(buf: Buffer, fast: FastPath): Utf8RangeEncoder {
    const specials = fast.specials;
    // next[k]: where specials[k] next occurs at or after a position ≤ the current one (Infinity: nowhere).
    const next = specials.map(() => -1);
    return { encode: (start, end, sink) => {
      for (let p = start; p < end;) {
        let best = -1, at = end;
        for (let k = 0; k < specials.length; k++) {
          if (next[k] < p) {
            const i = buf.indexOf(specials[k].bytes, p);
            next[k] = i < 0 ? Infinity : i;
          }
          if (next[k] < at && next[k] + specials[k].bytes.length <= end) { at = next[k]; best = k; }
        }
        if (at > p) this.encodeWords(buf, p, at, sink, fast);
        if (best < 0) break;
        sink.push(specials[best].id);
        sink.chars += specials[best].utf16;
        p = at + specials[best].bytes.length;
      }
    } };
  }

  /** Encodes the valid UTF-8 b[i, end), with no added tokens in it, into the sink: no allocation per word. */
  private encodeWords(b: Uint8Array, i: number, end: number, sink: IdSink<Uint16Array | Uint32Array>,
    fast: FastPath): void {
    const memo = fast.memo;
    let out = sink.ids, n = sink.n, chars = 0;
    while (i < end) {
      const j = utf8WordEnd(b, i, end);
      let e = memo.find(b, i, j);
      if (e < 0) e = memo.add(b, i, j, this.mergeWord(b, i, j, fast));
      const k = memo.idCount(e);
      if (n + k > out.length) out = sink.ids = ensure(out, n + k);
      if (k === 1) out[n++] = memo.firstId(e);
      else { memo.copyIds(e, out, n); n += k; }
      chars += memo.utf16Length(e);
      i = j;
    }
    sink.n = n;
    sink.chars += chars;
  }

  /** Loads a tokenizer.json file (or a folder holding one). */
  static load(file: string, opts: LoadTokenizerOptions = {}): Tokenizer {
    let p = path.resolve(file);
    if (!fs.existsSync(p)) throw new Error(`tokenizer file not found: ${file}`);
    if (fs.statSync(p).isDirectory()) {
      const inner = path.join(p, 'tokenizer.json');
      if (!fs.existsSync(inner)) throw new Error(`tokenizer folder ${file} has no tokenizer.json`);
      p = inner;
    }
    let text: string;
    try {
      text = fs.readFileSync(p, 'utf8');
    } catch (e) {
      throw new Error(`cannot read tokenizer file ${p}: ${(e as Error).message}`);
    }
    return Tokenizer.fromString(text, p, opts);
  }

  /** Builds a tokenizer from tokenizer.json text; `source` names it in errors. */
  static fromString(text: string, source = '<tokenizer.json>', opts: LoadTokenizerOptions = {}): Tokenizer {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new Error(`${source}: not a valid tokenizer.json (JSON parse error: ${(e as Error).message})`);
    }
    if (json === null || typeof json !== 'object' || Array.isArray(json))
      throw new Error(`${source}: not a valid tokenizer.json (expected a JSON object)`);
    const obj = json as Record<string, unknown>;
    const model = obj.model as Record<string, unknown> | undefined;
    if (!model || typeof model !== 'object') throw new Error(`${source}: not a valid tokenizer.json (no "model" ` +
      `object)`);
    const type = model.type;
    if (typeof type !== 'string' || !(SUPPORTED_MODELS as readonly string[]).includes(type))
      throw new Error(`${source}: unsupported tokenizer model type ${JSON.stringify(type)} (supported: ` +
        `${SUPPORTED_MODELS.join(', ')})`);
    if (model.vocab === undefined || model.vocab === null) throw new Error(`${source}: the ${type} model has no ` +
      `"vocab"`);
    if (type === 'BPE' && !Array.isArray(model.merges)) throw new Error(`${source}: the BPE model has no "merges" ` +
      `list`);
    // Optional pieces the library requires to be present (as null at least).
    const full: Record<string, unknown> = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null,
      added_tokens: [], ...obj };
    let hf: HfTokenizer;
    try {
      // Never "clean up" spaces on decode: decode(encode(s)) must give s back.
      hf = new HfTokenizer(full, { clean_up_tokenization_spaces: false });
    } catch (e) {
      throw new Error(`${source}: could not build the tokenizer: ${(e as Error).message}`);
    }
    let vocabSize = 0;
    for (const id of hf.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
    if (vocabSize === 0) throw new Error(`${source}: the vocabulary is empty`);
    if (vocabSize > 2 ** 32) throw new Error(`${source}: vocabulary of ${vocabSize} does not fit uint32 token ids`);
    const candidates = opts.eosToken !== undefined ? [opts.eosToken] : EOS_CANDIDATES;
    let eosToken: string | undefined, eosId: number | undefined;
    for (const c of candidates) {
      const id = hf.token_to_id(c);
      if (id !== undefined) { eosToken = c; eosId = id; break; }
    }
    if (eosToken === undefined || eosId === undefined)
      throw new Error(opts.eosToken !== undefined
        ? `${source}: the end-of-text token ${JSON.stringify(opts.eosToken)} is not in the vocabulary`
        : `${source}: no end-of-text token in the vocabulary (looked for ${EOS_CANDIDATES.join(', ')})`);
    return new Tokenizer(hf, source, text, eosToken, eosId, vocabSize, full);
  }

  /** Whether encode() takes the memoised byte-level BPE path (same ids as the library's encode). */
  get fastPath(): boolean {
    return this.fast !== null;
  }

  /** Token ids of `text` (no special tokens added). */
  encode(text: string): Uint32Array {
    if (text.length === 0) return new Uint32Array(0);
    if (this.fast) return this.encodeFast(text, this.fast);
    return this.encodeLibrary(text);
  }

  /** Token ids of `text` from the library's own encode (what the fast path must equal). */
  encodeLibrary(text: string): Uint32Array {
    if (text.length === 0) return new Uint32Array(0);
    const ids = this.hf.encode(text, { add_special_tokens: false }).ids;
    const out = new Uint32Array(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id === undefined || id === null) throw new Error(`${this.source}: text has a token that is not in the ` +
        `vocabulary and there is no unk token`);
      out[i] = id;
    }
    return out;
  }

  /** Text of the given ids; special tokens are written out (e.g. `<|endoftext|>`). */
  decode(ids: ArrayLike<number>): string {
    if (ids.length === 0) return '';
    const arr = new Array<number>(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize)
        throw new RangeError(`decode: token id ${id} at position ${i} is out of range [0, ${this.vocabSize}) for ` +
          `${this.source}`);
      arr[i] = id;
    }
    return this.hf.decode(arr, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  /** The tokens (strings) of `text`, for inspection. */
  tokenize(text: string): string[] {
    return text.length === 0 ? [] : this.hf.encode(text, { add_special_tokens: false }).tokens;
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }
}

/** Loads a tokenizer.json (see Tokenizer.load). */
export function loadTokenizer(file: string, opts: LoadTokenizerOptions = {}): Tokenizer {
  return Tokenizer.load(file, opts);
}
