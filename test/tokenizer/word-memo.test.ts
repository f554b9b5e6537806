// The allocation-free pieces of the BPE fast path (src/tokenizer/word-memo.ts): the UTF-8 scanner must
// split exactly as GPT-2's regex does, and the memo must find what was added, across growth and clears.
import { GPT2_SPLIT_REGEX } from '../../src/tokenizer/bpe-train';
import { WordMemo, utf16Length, utf8WordEnd } from '../../src/tokenizer/word-memo';
import { rng } from '../rng';

const regexSplit = (s: string) => [...s.matchAll(GPT2_SPLIT_REGEX)].map((m) => m[0]);
const utf8 = (s: string) => Buffer.from(s, 'utf8');
function scannerSplit(s: string): string[] {
  const b = utf8(s);
  const out: string[] = [];
  for (let i = 0; i < b.length;) {
    const j = utf8WordEnd(b, i, b.length);
    if (!(j > i)) throw new Error(`no progress at ${i} in ${JSON.stringify(s)}`);
    out.push(b.subarray(i, j).toString('utf8'));
    i = j;
  }
  return out;
}
const expectSameSplit = (s: string) => {
  if (scannerSplit(s).join('\u0001') !== regexSplit(s).join('\u0001'))
    throw new Error(`split of ${JSON.stringify(s)}: scanner ${JSON.stringify(scannerSplit(s))} ` +
      `regex ${JSON.stringify(regexSplit(s))}`);
};

describe('utf8WordEnd', () => {
  test('splits as the GPT-2 regex on hand-picked cases', () => {
    for (const s of ["it's", "'s'", "we're  here", "you'll'", "'''", "' d", "x'y", "don't!'s", 'a  b', 'a \n b',
      '\n\nx', ' \t\t', 'end  ', '12ab 34 !!x', ' !', ' ', "'", 'a', "I'M 've 'LL", '\r\n\r\n', 'x\u000b\fy',
      'caf\u00e9 na\u00efve', '\u00a0\u00a0x', 'a\u3000\u3000b', '\u2028\u2029', '\ufeffx', ' \u00e9t\u00e9',
      '\u0663\u0664 \u00b2', '\u{1d400}\u{1d401} \u{1d7d9}', '\u{1f600}\u{1f600}!', '\u20ac5 \u2014 x',
      '\u65e5\u672c\u8a9e', ' \u{1f600}', 'e\u0301', "\u00e9's"]) {
      expect(scannerSplit(s)).toEqual(regexSplit(s));
    }
  });

  test('splits as the GPT-2 regex on random text, ASCII and not', () => {
    const r = rng(17);
    // Weighted towards the characters the regex treats specially, and one of each class past ASCII
    // (2-, 3- and 4-byte UTF-8): letters, digits, Unicode spaces, marks, symbols.
    const alphabet = [..."aZs tdmlrve'  \n\n\t\r\f\u000b09!.,-_~\u0000\u007f",
      '\u00e9', '\u00df', '\u0416', '\u4e2d', '\u{1d400}', '\u0663', '\u00b2', '\u{1d7d9}', '\u00a0', '\u3000',
      '\u2028', '\ufeff', '\u0301', '\u20ac', '\u2014', '\u{1f600}', '\u{10ffff}'];
    for (let t = 0; t < 4000; t++) {
      const n = Math.floor(r() * 24);
      let s = '';
      for (let k = 0; k < n; k++) s += alphabet[Math.floor(r() * alphabet.length)];
      expectSameSplit(s);
    }
    // Every ASCII code, one at a time and between letters and blanks.
    for (let c = 0; c < 128; c++) {
      const ch = String.fromCharCode(c);
      for (const s of [ch, `a${ch}b`, ` ${ch} `, `${ch}${ch}x`]) expect(scannerSplit(s)).toEqual(regexSplit(s));
    }
  });

  test('splits as the GPT-2 regex on every BMP character and a sample of the other planes', () => {
    for (let cp = 0x80; cp < 0x10000; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      const ch = String.fromCodePoint(cp);
      expectSameSplit(`a${ch}${ch} ${ch}1 `);
    }
    for (let cp = 0x10000; cp <= 0x10ffff; cp += 97) expectSameSplit(`${String.fromCodePoint(cp)}x `);
  });

  test('utf16Length counts what a string of the bytes would', () => {
    for (const s of ['', 'abc', 'caf\u00e9', '\u4e2d\u6587', '\u{1f600}x\u{10ffff}']) {
      expect(utf16Length(utf8(s), 0, utf8(s).length)).toBe(s.length);
    }
  });
});

describe('WordMemo', () => {
  test('finds words by a range of bytes, through growth', () => {
    const memo = new WordMemo();
    const words = Array.from({ length: 5000 }, (_, i) => `w${i.toString(36)}${'\u00e9x'.repeat(i % 7)}`);
    words.forEach((w, i) => {
      const text = utf8(`..${w}..`);
      expect(memo.find(text, 2, text.length - 2)).toBe(-1);
      memo.add(text, 2, text.length - 2, Array.from({ length: 1 + (i % 3) }, (_, k) => i * 10 + k));
    });
    expect(memo.size).toBe(words.length);
    words.forEach((w, i) => {
      const b = utf8(w);
      const e = memo.find(b, 0, b.length);
      expect(e).toBeGreaterThanOrEqual(0);
      expect(memo.idCount(e)).toBe(1 + (i % 3));
      expect(memo.firstId(e)).toBe(i * 10);
      expect(memo.utf16Length(e)).toBe(w.length);
      expect(Array.from(memo.idsOf(e))).toEqual(Array.from({ length: 1 + (i % 3) }, (_, k) => i * 10 + k));
    });
    expect(memo.find(utf8('w0x'), 0, 2)).toBeGreaterThanOrEqual(0); // "w0", a prefix of the bytes
    expect(memo.find(utf8('nope'), 0, 4)).toBe(-1);
    expect(memo.find(utf8(''), 0, 0)).toBe(-1);
  });

  test('clears itself when full, then keeps working', () => {
    const memo = new WordMemo(100);
    for (let i = 0; i < 250; i++) memo.add(utf8(`k${i}`), 0, `k${i}`.length, [i]);
    expect(memo.size).toBe(50);
    expect(memo.find(utf8('k249'), 0, 4)).toBeGreaterThanOrEqual(0);
    expect(memo.find(utf8('k10'), 0, 3)).toBe(-1);
  });
});
