// Pieces of the byte-level BPE fast path (tokenizer.ts) that keep encoding free of per-word
// allocations: a scanner for GPT-2's pre-tokenizer regex over ASCII text, and a memo of word → ids
// keyed by a range of the text itself (no substring is made to look a word up).

/** Character classes of the ASCII range: 1 letter, 2 digit, 3 whitespace (JavaScript's \s), 0 other. */
const CLASS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  CLASS[c] = /[A-Za-z]/.test(ch) ? 1 : /[0-9]/.test(ch) ? 2 : /\s/.test(ch) ? 3 : 0;
}
const LETTER = 1, DIGIT = 2, SPACE = 3, OTHER = 0;
const APOSTROPHE = 39, BLANK = 32;

/** Whether the text is all ASCII (the scanner's domain). */
export const isAscii = (s: string): boolean => !/[^\x00-\x7f]/.test(s);

/**
 * End of the pre-token that starts at `i` in ASCII text `s`: the match GPT2_SPLIT_REGEX
 * (`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, alternatives tried in
 * order) finds there. Tested against the regex on random ASCII.
 */
export function asciiWordEnd(s: string, i: number): number {
  const n = s.length;
  const c = s.charCodeAt(i);
  if (c === APOSTROPHE && i + 1 < n) {
    const d = s.charCodeAt(i + 1);
    if (d === 115 || d === 116 || d === 109 || d === 100) return i + 2; // 's 't 'm 'd
    if (i + 2 < n) {
      const e = s.charCodeAt(i + 2);
      if ((d === 114 && e === 101) || (d === 118 && e === 101) || (d === 108 && e === 108)) return i + 3; // 're 've 'll
    }
  }
  // ` ?X+` for the letter, digit and other classes: an optional blank, then a run of one class.
  let j = i;
  if (c === BLANK && i + 1 < n && CLASS[s.charCodeAt(i + 1)] !== SPACE) j = i + 1;
  const k = CLASS[s.charCodeAt(j)];
  if (k === LETTER || k === DIGIT || k === OTHER) {
    j++;
    while (j < n && CLASS[s.charCodeAt(j)] === k) j++;
    return j;
  }
  // Whitespace: `\s+(?!\S)` leaves the run's last character to start the next pre-token (unless the
  // run ends the text); a single character before a non-space falls through to `\s+`.
  j = i + 1;
  while (j < n && CLASS[s.charCodeAt(j)] === SPACE) j++;
  return j === n || j - i === 1 ? j : j - 1;
}

/**
 * Word → token ids, keyed by the characters of a range of a string: open addressing on an FNV-1a hash,
 * words and ids kept in flat arrays. Cleared when full (as the Map it replaces was).
 */
export class WordMemo {
  private slots: Int32Array; // entry + 1, 0 = empty
  private hashes: Int32Array;
  private keyStart: Int32Array;
  private keyLen: Int32Array;
  private idStart: Int32Array;
  private idLen: Int32Array;
  private chars: Uint16Array;
  private ids: Uint32Array;
  private entries = 0;
  private charsUsed = 0;
  private idsUsed = 0;

  constructor(private readonly maxEntries = 1 << 20) {
    this.slots = new Int32Array(1 << 12);
    this.hashes = new Int32Array(1 << 11);
    this.keyStart = new Int32Array(1 << 11);
    this.keyLen = new Int32Array(1 << 11);
    this.idStart = new Int32Array(1 << 11);
    this.idLen = new Int32Array(1 << 11);
    this.chars = new Uint16Array(1 << 14);
    this.ids = new Uint32Array(1 << 13);
  }

  get size(): number {
    return this.entries;
  }

  private static hash(s: string, i: number, j: number): number {
    let h = 0x811c9dc5 | 0;
    for (let k = i; k < j; k++) h = Math.imul(h ^ s.charCodeAt(k), 0x01000193);
    return h;
  }

  /** The entry of s[i, j), or -1. */
  find(s: string, i: number, j: number): number {
    const h = WordMemo.hash(s, i, j);
    const mask = this.slots.length - 1;
    const len = j - i;
    for (let p = h & mask; ; p = (p + 1) & mask) {
      const e = this.slots[p] - 1;
      if (e < 0) return -1;
      if (this.hashes[e] !== h || this.keyLen[e] !== len) continue;
      const at = this.keyStart[e];
      let k = 0;
      while (k < len && this.chars[at + k] === s.charCodeAt(i + k)) k++;
      if (k === len) return e;
    }
  }

  /** The ids of an entry: a view, valid until the next add. */
  idsOf(e: number): Uint32Array {
    return this.ids.subarray(this.idStart[e], this.idStart[e] + this.idLen[e]);
  }

  /** Count and first id of an entry (the common one-id word needs no view). */
  idCount(e: number): number {
    return this.idLen[e];
  }

  firstId(e: number): number {
    return this.ids[this.idStart[e]];
  }

  /** Adds s[i, j) → ids (not present yet); returns its entry. */
  add(s: string, i: number, j: number, ids: ArrayLike<number>): number {
    if (this.entries >= this.maxEntries) this.clear();
    const len = j - i;
    if (this.entries === this.hashes.length) this.growEntries();
    if (2 * (this.entries + 1) > this.slots.length) this.rehash(2 * this.slots.length);
    this.chars = ensure(this.chars, this.charsUsed + len);
    this.ids = ensure(this.ids, this.idsUsed + ids.length);
    const e = this.entries++;
    const h = WordMemo.hash(s, i, j);
    this.hashes[e] = h;
    this.keyStart[e] = this.charsUsed;
    this.keyLen[e] = len;
    for (let k = 0; k < len; k++) this.chars[this.charsUsed + k] = s.charCodeAt(i + k);
    this.charsUsed += len;
    this.idStart[e] = this.idsUsed;
    this.idLen[e] = ids.length;
    for (let k = 0; k < ids.length; k++) this.ids[this.idsUsed + k] = ids[k];
    this.idsUsed += ids.length;
    this.place(e);
    return e;
  }

  clear(): void {
    this.slots.fill(0);
    this.entries = this.charsUsed = this.idsUsed = 0;
  }

  private place(e: number): void {
    const mask = this.slots.length - 1;
    let p = this.hashes[e] & mask;
    while (this.slots[p] !== 0) p = (p + 1) & mask;
    this.slots[p] = e + 1;
  }

  private rehash(size: number): void {
    this.slots = new Int32Array(size);
    for (let e = 0; e < this.entries; e++) this.place(e);
  }

  private growEntries(): void {
    const n = 2 * this.hashes.length;
    this.hashes = ensure(this.hashes, n);
    this.keyStart = ensure(this.keyStart, n);
    this.keyLen = ensure(this.keyLen, n);
    this.idStart = ensure(this.idStart, n);
    this.idLen = ensure(this.idLen, n);
  }
}

/** a, or a copy at least `need` long (doubling), its contents kept. */
export function ensure<T extends Int32Array | Uint16Array | Uint32Array>(a: T, need: number): T {
  if (need <= a.length) return a;
  const b = new (a.constructor as new (n: number) => T)(Math.max(need, 2 * a.length));
  b.set(a);
  return b;
}
