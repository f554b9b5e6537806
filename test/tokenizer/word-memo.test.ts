// The allocation-free pieces of the BPE fast path (src/tokenizer/word-memo.ts): the ASCII scanner must
// split exactly as GPT-2's regex does, and the memo must find what was added, across growth and clears.
import { GPT2_SPLIT_REGEX } from '../../src/tokenizer/bpe-train';
import { WordMemo, asciiWordEnd, isAscii } from '../../src/tokenizer/word-memo';
import { rng } from '../rng';

const regexSplit = (s: string) => [...s.matchAll(GPT2_SPLIT_REGEX)].map((m) => m[0]);
function scannerSplit(s: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < s.length;) {
    const j = asciiWordEnd(s, i);
    if (!(j > i)) throw new Error(`no progress at ${i} in ${JSON.stringify(s)}`);
    out.push(s.slice(i, j));
    i = j;
  }
  return out;
}

describe('asciiWordEnd', () => {
  test('splits as the GPT-2 regex on hand-picked cases', () => {
    for (const s of ["it's", "'s'", "we're  here", "you'll'", "'''", "' d", "x'y", "don't!'s", 'a  b', 'a \n b',
      '\n\nx', ' \t\t', 'end  ', '12ab 34 !!x', ' !', ' ', "'", 'a', "I'M 've 'LL", '\r\n\r\n', 'x\u000b\fy']) {
      expect(scannerSplit(s)).toEqual(regexSplit(s));
    }
  });

  test('splits as the GPT-2 regex on random ASCII', () => {
    const r = rng(17);
    // Weighted towards the characters the regex treats specially.
    const alphabet = "aZs tdmlrve'  \n\n\t\r\f\u000b09!.,-_~\u0000\u007f";
    for (let t = 0; t < 3000; t++) {
      const n = Math.floor(r() * 24);
      let s = '';
      for (let k = 0; k < n; k++) s += alphabet[Math.floor(r() * alphabet.length)];
      if (scannerSplit(s).join('\u0001') !== regexSplit(s).join('\u0001'))
        throw new Error(`split of ${JSON.stringify(s)}: scanner ${JSON.stringify(scannerSplit(s))} ` +
          `regex ${JSON.stringify(regexSplit(s))}`);
    }
    // Every ASCII code, one at a time and between letters and blanks.
    for (let c = 0; c < 128; c++) {
      const ch = String.fromCharCode(c);
      for (const s of [ch, `a${ch}b`, ` ${ch} `, `${ch}${ch}x`]) expect(scannerSplit(s)).toEqual(regexSplit(s));
    }
  });

  test('isAscii', () => {
    expect(isAscii('plain text\n')).toBe(true);
    expect(isAscii('')).toBe(true);
    expect(isAscii('caf\u00e9')).toBe(false);
    expect(isAscii('\u007f')).toBe(true);
  });
});

describe('WordMemo', () => {
  test('finds words by a range of a string, through growth', () => {
    const memo = new WordMemo();
    const words = Array.from({ length: 5000 }, (_, i) => `w${i.toString(36)}${'x'.repeat(i % 7)}`);
    words.forEach((w, i) => {
      const text = `..${w}..`;
      expect(memo.find(text, 2, 2 + w.length)).toBe(-1);
      memo.add(text, 2, 2 + w.length, Array.from({ length: 1 + (i % 3) }, (_, k) => i * 10 + k));
    });
    expect(memo.size).toBe(words.length);
    words.forEach((w, i) => {
      const e = memo.find(`${w}`, 0, w.length);
      expect(e).toBeGreaterThanOrEqual(0);
      expect(memo.idCount(e)).toBe(1 + (i % 3));
      expect(memo.firstId(e)).toBe(i * 10);
      expect(Array.from(memo.idsOf(e))).toEqual(Array.from({ length: 1 + (i % 3) }, (_, k) => i * 10 + k));
    });
    expect(memo.find('w0x', 0, 2)).toBeGreaterThanOrEqual(0); // "w0", a prefix of the text
    expect(memo.find('nope', 0, 4)).toBe(-1);
    expect(memo.find('', 0, 0)).toBe(-1);
  });

  test('clears itself when full, then keeps working', () => {
    const memo = new WordMemo(100);
    for (let i = 0; i < 250; i++) memo.add(`k${i}`, 0, `k${i}`.length, [i]);
    expect(memo.size).toBe(50);
    expect(memo.find('k249', 0, 4)).toBeGreaterThanOrEqual(0);
    expect(memo.find('k10', 0, 3)).toBe(-1);
  });
});
