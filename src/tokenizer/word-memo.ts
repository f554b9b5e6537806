// Pieces of the byte-level BPE fast path (tokenizer.ts) that keep encoding free of per-word
// allocations, over UTF-8 bytes: a scanner for GPT-2's pre-tokenizer regex, and a memo of word → ids
// keyed by a range of the bytes themselves (no string is made to look a word up).

/** Character classes: 1 letter (\p{L}), 2 digit (\p{N}), 3 whitespace (JavaScript's \s), 0 other. */
const LETTER = 1, DIGIT = 2, SPACE = 3, OTHER = 0;
const APOSTROPHE = 39, BLANK = 32;

function classOfChar(ch: string): number {
  return /\p{L}/u.test(ch) ? LETTER : /\p{N}/u.test(ch) ? DIGIT : /\s/u.test(ch) ? SPACE : OTHER;
}

/** Classes of the ASCII range, and of each Unicode plane (built the first time a character of it is seen). */
const ASCII_CLASS = Uint8Array.from({ length: 128 }, (_, c) => classOfChar(String.fromCharCode(c)));
const PLANES: Array<Uint8Array | undefined> = new Array(17);

function planeClasses(p: number): Uint8Array {
  const t = new Uint8Array(1 << 16);
  for (let k = 0; k < 1 << 16; k++) {
    const cp = (p << 16) | k;
    // Surrogates never come out of valid UTF-8 (nor do they match \p{L}, \p{N} or \s on their own).
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    t[k] = classOfChar(String.fromCodePoint(cp));
  }
  return t;
}

/** Bytes of the UTF-8 sequence that starts with `lead` (valid UTF-8). */
const seqLength = (lead: number): number => (lead < 0x80 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4);

/** Class of the character whose UTF-8 sequence starts at b[i] (valid UTF-8); small, so the scanner inlines it. */
const classAt = (b: Uint8Array, i: number): number => (b[i] < 0x80 ? ASCII_CLASS[b[i]] : unicodeClassAt(b, i));

function unicodeClassAt(b: Uint8Array, i: number): number {
  const lead = b[i];
  let cp: number;
  if (lead < 0xe0) cp = ((lead & 0x1f) << 6) | (b[i + 1] & 0x3f);
  else if (lead < 0xf0) cp = ((lead & 0x0f) << 12) | ((b[i + 1] & 0x3f) << 6) | (b[i + 2] & 0x3f);
  else cp = ((lead & 0x07) << 18) | ((b[i + 1] & 0x3f) << 12) | ((b[i + 2] & 0x3f) << 6) | (b[i + 3] & 0x3f);
  const p = cp >>> 16;
  const t = PLANES[p] ?? (PLANES[p] = planeClasses(p));
  return t[cp & 0xffff];
}

/** UTF-16 code units (what a JavaScript string's length counts) of the valid UTF-8 bytes b[i, j). */
export function utf16Length(b: Uint8Array, i: number, j: number): number {
  let n = 0;
  for (let k = i; k < j; k++) {
    const c = b[k];
    if ((c & 0xc0) !== 0x80) n += c >= 0xf0 ? 2 : 1;
  }
  return n;
}

/**
 * End of the pre-token that starts at byte `i` of the valid UTF-8 bytes b[0, end): where the match of
 * GPT2_SPLIT_REGEX (`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
 * alternatives tried in order, over code points) that starts there ends in the decoded text. Tested
 * against the regex on random text.
 */
export function utf8WordEnd(b: Uint8Array, i: number, end: number): number {
  const c = b[i];
  if (c === APOSTROPHE && i + 1 < end) {
    const d = b[i + 1];
    if (d === 115 || d === 116 || d === 109 || d === 100) return i + 2; // 's 't 'm 'd
    if (i + 2 < end) {
      const e = b[i + 2];
      if ((d === 114 && e === 101) || (d === 118 && e === 101) || (d === 108 && e === 108)) return i + 3; // 're 've 'll
    }
  }
  // ` ?X+` for the letter, digit and other classes: an optional blank, then a run of one class.
  let j = i;
  if (c === BLANK && i + 1 < end && classAt(b, i + 1) !== SPACE) j = i + 1;
  const k = classAt(b, j);
  if (k !== SPACE) {
    j += seqLength(b[j]);
    while (j < end && classAt(b, j) === k) j += seqLength(b[j]);
    return j;
  }
  // Whitespace: `\s+(?!\S)` leaves the run's last character to start the next pre-token (unless the
  // run ends the text); a single character before a non-space falls through to `\s+`.
  let last = i;
  j = i + seqLength(c);
  while (j < end && classAt(b, j) === SPACE) {
    last = j;
    j += seqLength(b[j]);
  }
  return j === end || last === i ? j : last;
}

/**
 * Word → token ids, keyed by a range of UTF-8 bytes: open addressing on an FNV-1a hash, words and ids
 * kept in flat arrays. Laid out for few cache misses per lookup (a worker's memo outgrows its core's
 * cache): a slot holds the hash beside the entry, and an entry's fields, first id included, share one
 * cache line. Each entry also keeps its word's UTF-16 length (for the callers' character counts).
 * Cleared when full.
 */
export class WordMemo {
  /** Slot pairs: [hash, entry + 1], 0 = empty. */
  private table: Int32Array;
  /** Entry fields, STRIDE per entry (see the F_ offsets). */
  private meta: Int32Array;
  private keys: Uint8Array;
  private ids: Uint32Array;
  private entries = 0;
  private keysUsed = 0;
  private idsUsed = 0;

  constructor(private readonly maxEntries = 1 << 20) {
    this.table = new Int32Array(2 << 12);
    this.meta = new Int32Array(STRIDE << 11);
    this.keys = new Uint8Array(1 << 14);
    this.ids = new Uint32Array(1 << 13);
  }

  get size(): number {
    return this.entries;
  }

  private static hash(b: Uint8Array, i: number, j: number): number {
    let h = 0x811c9dc5 | 0;
    for (let k = i; k < j; k++) h = Math.imul(h ^ b[k], 0x01000193);
    return h;
  }

  /** The entry of b[i, j), or -1. */
  find(b: Uint8Array, i: number, j: number): number {
    const h = WordMemo.hash(b, i, j);
    const t = this.table, m = this.meta, keys = this.keys;
    const mask = (t.length >> 1) - 1;
    const len = j - i;
    for (let p = h & mask; ; p = (p + 1) & mask) {
      const e = t[2 * p + 1] - 1;
      if (e < 0) return -1;
      if (t[2 * p] !== h || m[e * STRIDE + F_KEY_LEN] !== len) continue;
      const at = m[e * STRIDE + F_KEY_START];
      let k = 0;
      while (k < len && keys[at + k] === b[i + k]) k++;
      if (k === len) return e;
    }
  }

  /** Number of ids of an entry. */
  idCount(e: number): number {
    return this.meta[e * STRIDE + F_ID_LEN];
  }

  /** The first id of an entry (all of the common one-id word, without touching the id array). */
  firstId(e: number): number {
    return this.meta[e * STRIDE + F_FIRST_ID];
  }

  /** The ids of an entry, as a new array. */
  idsOf(e: number): Uint32Array {
    const at = this.meta[e * STRIDE + F_ID_START];
    return this.ids.slice(at, at + this.idCount(e));
  }

  /** Copies an entry's ids into out at n (which must have room for them). */
  copyIds(e: number, out: Uint16Array | Uint32Array, n: number): void {
    const at = this.meta[e * STRIDE + F_ID_START], k = this.idCount(e), ids = this.ids;
    for (let q = 0; q < k; q++) out[n + q] = ids[at + q];
  }

  /** The UTF-16 length of an entry's word. */
  utf16Length(e: number): number {
    return this.meta[e * STRIDE + F_UTF16];
  }

  /** Adds b[i, j) → ids (not present yet; valid UTF-8); returns its entry. */
  add(b: Uint8Array, i: number, j: number, ids: ArrayLike<number>): number {
    if (this.entries >= this.maxEntries) this.clear();
    const len = j - i;
    if (STRIDE * (this.entries + 1) > this.meta.length) this.meta = ensure(this.meta, STRIDE * (this.entries + 1));
    if (2 * (this.entries + 1) > this.table.length >> 1) this.rehash(this.table.length);
    this.keys = ensure(this.keys, this.keysUsed + len);
    this.ids = ensure(this.ids, this.idsUsed + ids.length);
    const e = this.entries++;
    const f = e * STRIDE, m = this.meta;
    m[f + F_HASH] = WordMemo.hash(b, i, j);
    m[f + F_KEY_START] = this.keysUsed;
    m[f + F_KEY_LEN] = len;
    m[f + F_ID_START] = this.idsUsed;
    m[f + F_ID_LEN] = ids.length;
    m[f + F_UTF16] = utf16Length(b, i, j);
    m[f + F_FIRST_ID] = ids.length > 0 ? ids[0] : 0;
    this.keys.set(b.subarray(i, j), this.keysUsed);
    this.keysUsed += len;
    for (let k = 0; k < ids.length; k++) this.ids[this.idsUsed + k] = ids[k];
    this.idsUsed += ids.length;
    this.place(e);
    return e;
  }

  clear(): void {
    this.table.fill(0);
    this.entries = this.keysUsed = this.idsUsed = 0;
  }

  private place(e: number): void {
    const t = this.table, h = this.meta[e * STRIDE + F_HASH];
    const mask = (t.length >> 1) - 1;
    let p = h & mask;
    while (t[2 * p + 1] !== 0) p = (p + 1) & mask;
    t[2 * p] = h;
    t[2 * p + 1] = e + 1;
  }

  /** Doubles the slots (`length` is the table's, two ints a slot) and places every entry again. */
  private rehash(length: number): void {
    this.table = new Int32Array(2 * length);
    for (let e = 0; e < this.entries; e++) this.place(e);
  }
}

/** WordMemo's entry fields: 8 ints, so that two entries fill a 64-byte cache line exactly. */
const STRIDE = 8;
const F_HASH = 0, F_KEY_START = 1, F_KEY_LEN = 2, F_ID_START = 3, F_ID_LEN = 4, F_UTF16 = 5, F_FIRST_ID = 6;

/** a, or a copy at least `need` long (doubling), its contents kept. */
export function ensure<T extends Int32Array | Uint8Array | Uint16Array | Uint32Array>(a: T, need: number): T {
  if (need <= a.length) return a;
  const b = new (a.constructor as new (n: number) => T)(Math.max(need, 2 * a.length));
  b.set(a);
  return b;
}
