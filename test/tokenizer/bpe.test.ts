// Byte-level BPE trainer and tokenizer wrapper: the file loads in @huggingface/tokenizers, has the
// requested size, round-trips any text, compresses, and encodes exactly as rank-order BPE does.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { corpusSentences } from '../../src/data/corpus';
import {
  BYTE_TO_UNICODE, EOS_TOKEN, GPT2_SPLIT_REGEX, bpeTokenizerJson, byteLevelEncode, saveTokenizerJson, trainBpe,
  type TrainedBpe,
} from '../../src/tokenizer/bpe-train';
import { IdSink, Tokenizer, loadTokenizer } from '../../src/tokenizer/tokenizer';
import { defaultTokenizer, defaultTokenizerPath } from '../../src/tokenizer/default';
import { rng } from '../rng';

/** Random valid Unicode strings (no lone surrogates) mixing ASCII, controls, Latin, CJK, emoji, combining marks. */
function randomText(r: () => number, maxLen: number): string {
  const ranges: Array<[number, number]> = [
    [0x20, 0x7e], [0x20, 0x7e], [0x20, 0x7e], [0x00, 0x1f], [0x80, 0x2ff], [0x300, 0x36f],
    [0x400, 0x4ff], [0x3040, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0x1f300, 0x1faff],
    [0xe000, 0xfffd], [0x10000, 0x10ffff],
  ];
  const n = Math.floor(r() * maxLen);
  let s = '';
  for (let i = 0; i < n; i++) {
    const [lo, hi] = ranges[Math.floor(r() * ranges.length)];
    let cp = lo + Math.floor(r() * (hi - lo + 1));
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41;
    s += r() < 0.15 ? ' '.repeat(1 + Math.floor(r() * 3)) : String.fromCodePoint(cp);
  }
  return s;
}

/** Reference BPE: GPT-2 split, bytes, then repeatedly merge the lowest-rank adjacent pair (leftmost first). */
function referenceEncode(model: TrainedBpe, text: string): number[] {
  const rank = new Map<string, number>();
  model.merges.forEach(([a, b], i) => rank.set(`${a}\u0000${b}`, i));
  const id = new Map<string, number>();
  model.vocab.forEach((t, i) => id.set(t, i));
  const out: number[] = [];
  const pieces = text.split(EOS_TOKEN);
  pieces.forEach((piece, pi) => {
    if (pi > 0) out.push(id.get(EOS_TOKEN)!);
    for (const m of piece.matchAll(GPT2_SPLIT_REGEX)) {
      let sym = Array.from(byteLevelEncode(m[0]));
      for (;;) {
        let best = -1, bestRank = Infinity;
        for (let i = 0; i + 1 < sym.length; i++) {
          const r = rank.get(`${sym[i]}\u0000${sym[i + 1]}`);
          if (r !== undefined && r < bestRank) { bestRank = r; best = i; }
        }
        if (best < 0) break;
        const [a, b] = model.merges[bestRank];
        const next: string[] = [];
        for (let i = 0; i < sym.length;) {
          if (i + 1 < sym.length && sym[i] === a && sym[i + 1] === b) { next.push(a +
            b); i += 2; } else next.push(sym[i++]);
        }
        sym = next;
      }
      for (const s of sym) out.push(id.get(s)!);
    }
  });
  return out;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-bpe-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const sentences = corpusSentences();
const trainTexts = sentences.slice(0, 4000);
const heldOut = sentences.slice(sentences.length - 1000);
const VOCAB = 600;
let model: TrainedBpe;
let tokPath: string;
let tok: Tokenizer;

beforeAll(() => {
  model = trainBpe(trainTexts, { vocabSize: VOCAB });
  tokPath = path.join(tmp, 'tokenizer.json');
  saveTokenizerJson(model, tokPath);
  tok = loadTokenizer(tokPath);
});

describe('BPE trainer output', () => {
  test('has the requested vocabulary size, all 256 bytes, and <|endoftext|> as id 0', () => {
    expect(model.vocab.length).toBe(VOCAB);
    expect(tok.vocabSize).toBe(VOCAB);
    expect(model.merges.length).toBeGreaterThanOrEqual(VOCAB - 257);
    expect(tok.eosId).toBe(0);
    expect(tok.tokenToId(EOS_TOKEN)).toBe(0);
    for (let b = 0; b < 256; b++) expect(tok.tokenToId(BYTE_TO_UNICODE[b])).toBeDefined();
    expect(new Set(model.vocab).size).toBe(VOCAB);
  });

  test('follows the tokenizer.json schema and loads in @huggingface/tokenizers directly', () => {
    const json = JSON.parse(fs.readFileSync(tokPath, 'utf8'));
    expect(json.model.type).toBe('BPE');
    expect(Object.keys(json.model.vocab)).toHaveLength(VOCAB);
    expect(typeof json.model.merges[0]).toBe('string');
    expect(json.pre_tokenizer).toMatchObject({ type: 'ByteLevel', add_prefix_space: false, use_regex: true });
    expect(json.decoder.type).toBe('ByteLevel');
    expect(json.added_tokens).toEqual([expect.objectContaining({ id: 0, content: EOS_TOKEN, special: true })]);
    const hf = new HfTokenizer(json, { clean_up_tokenization_spaces: false });
    const text = 'Hello world, this is a test.';
    const enc = hf.encode(text);
    expect(enc.ids).toEqual(Array.from(tok.encode(text))); // the post-processor adds nothing
    expect(hf.decode(enc.ids)).toBe(text);
  });

  test('is deterministic', () => {
    const again = trainBpe(trainTexts, { vocabSize: VOCAB });
    expect(JSON.stringify(bpeTokenizerJson(again))).toBe(JSON.stringify(bpeTokenizerJson(model)));
  });

  test('never merges across a special token and stops early when pairs run out', () => {
    const m = trainBpe(['ab<|endoftext|>ab', 'ab ab'], { vocabSize: 1000, minFrequency: 1 });
    expect(m.vocab.length).toBeLessThan(1000);
    expect(m.vocab.slice(257).some((t) => t.includes('<') || t.includes('|'))).toBe(false); // merged tokens only
    expect(m.vocab).toContain('ab');
  });

  test('rejects a vocabulary smaller than the base alphabet', () => {
    expect(() => trainBpe(['x'], { vocabSize: 100 })).toThrow(/vocabSize must be an integer >= 257/);
  });
});

describe('round trip decode(encode(s)) === s', () => {
  const cases: Array<[string, string]> = [
    ['English', 'The quick brown fox jumps over the lazy dog. It\'s 3.14 — isn\'t it?'],
    ['CJK', '日本語のテキストと中文文本，还有한국어 문장.'],
    ['emoji', 'Family: 👨‍👩‍👧‍👦, flags 🇯🇵🇺🇸, skin 👍🏽, 🎉🎉'],
    ['combining marks', 'e\u0301 a\u0308 n\u0303 Z\u0351\u0352\u0353 ﷽'],
    ['control characters', 'tab\there\nnewline\r\nCR \u0000 NUL \u001b[31m ESC \u007f DEL \u0085'],
    ['empty string', ''],
    ['whitespace runs', '   leading, trailing   \n\n\n  multiple    spaces \t\t '],
    ['only spaces', '     '],
    ['special token inside text', 'one<|endoftext|>two <|endoftext|> three'],
    ['non-BMP and private use', '\u{10ffff}\u{e000}\u{1d11e}\u{20000}'],
  ];
  test.each(cases)('%s', (_name, s) => {
    expect(tok.decode(tok.encode(s))).toBe(s);
    expect(tok.decode(tok.encodeLibrary(s))).toBe(s);
  });

  test('random byte-valid Unicode strings from a seeded generator', () => {
    const r = rng(1234);
    for (let i = 0; i < 500; i++) {
      const s = randomText(r, 60);
      const ids = tok.encode(s);
      if (tok.decode(ids) !== s) throw new Error(`round trip failed for ${JSON.stringify(s)}`);
    }
  });
});

describe('encoding', () => {
  test('merges compress English held-out text below 0.5 tokens per character', () => {
    let tokens = 0, chars = 0;
    for (const s of heldOut) {
      tokens += tok.encode(s).length;
      chars += s.length;
    }
    expect(tokens / chars).toBeLessThan(0.5);
  });

  test('equals a reference encoder that applies the merges in rank order', () => {
    expect(tok.fastPath).toBe(true);
    const r = rng(99);
    const texts = [...heldOut.slice(0, 300), ...Array.from({ length: 200 }, () => randomText(r, 40)),
      'aaaaaaa bbbbbb   the the the', 'x<|endoftext|>y',
      // Words past the id-based merges' 64 bytes go to the library's merges.
      `the ${'x'.repeat(100)} ${'supercalifragilistic'.repeat(4)} ${'\u00fc'.repeat(40)} end`];
    for (const s of texts) {
      const ref = referenceEncode(model, s);
      const got = Array.from(tok.encode(s));
      const lib = Array.from(tok.encodeLibrary(s));
      if (got.join() !== ref.join() || lib.join() !== ref.join())
        throw new Error(`mismatch for ${JSON.stringify(s)}: ours ${got} library ${lib} reference ${ref}`);
    }
  });

  test('lone surrogates encode as the library does (as U+FFFD)', () => {
    for (const s of ['a\ud800b', '\udc00', 'x \ud83d', '\ud83d\ude00\ude00 y', 'end\ud800']) {
      expect(Array.from(tok.encode(s))).toEqual(Array.from(tok.encodeLibrary(s)));
    }
  });

  test('utf8Encoder: ranges of one buffer, in order, give encode() of their text', () => {
    const r = rng(7);
    const pieces = [...heldOut.slice(0, 50), ...Array.from({ length: 50 }, () => randomText(r, 30)),
      'a<|endoftext|>b', '<|endoftext|><|endoftext|>', 'x<|endof'];
    const text = pieces.join('\n');
    const bytes = Buffer.from(text, 'utf8');
    const enc = tok.utf8Encoder(bytes)!;
    const sink = new IdSink(new Uint32Array(16));
    // Cut at random character boundaries (through added tokens too), skipping some ranges.
    const cuts = [0];
    for (let i = 1; i < bytes.length; i++) if ((bytes[i] & 0xc0) !== 0x80 && r() < 0.05) cuts.push(i);
    cuts.push(bytes.length);
    for (let k = 0; k + 1 < cuts.length; k++) {
      if (r() < 0.2) continue;
      const [a, b] = [cuts[k], cuts[k + 1]];
      sink.clear();
      enc.encode(a, b, sink);
      const s = bytes.subarray(a, b).toString('utf8');
      if (Array.from(sink.take()).join() !== Array.from(tok.encode(s)).join() || sink.chars !== s.length)
        throw new Error(`range ${a}..${b} ${JSON.stringify(s)}: ${sink.take()} vs ${tok.encode(s)}`);
    }
  });

  test('decode checks ids and handles an empty list', () => {
    expect(tok.decode([])).toBe('');
    expect(() => tok.decode([5, VOCAB])).toThrow(/token id 600 at position 1 is out of range \[0, 600\)/);
    expect(() => tok.decode([1.5])).toThrow(/token id 1.5/);
  });
});

describe('tokenizer loading errors name the file', () => {
  test('missing file', () => {
    const p = path.join(tmp, 'nope', 'tokenizer.json');
    expect(() => loadTokenizer(p)).toThrow(`tokenizer file not found: ${p}`);
  });

  test('not JSON', () => {
    const p = path.join(tmp, 'broken.json');
    fs.writeFileSync(p, '{"model": ');
    expect(() => loadTokenizer(p)).toThrow(new RegExp(`${p.replace(/[.\\/]/g, '\\$&')}: not a valid tokenizer.json ` +
      `\\(JSON parse error`));
  });

  test('unsupported model', () => {
    const p = path.join(tmp, 'weird.json');
    fs.writeFileSync(p, JSON.stringify({ model: { type: 'Banana', vocab: {} } }));
    expect(() => loadTokenizer(p)).toThrow(`${p}: unsupported tokenizer model type "Banana"`);
    fs.writeFileSync(p, JSON.stringify([1, 2]));
    expect(() => loadTokenizer(p)).toThrow(`${p}: not a valid tokenizer.json (expected a JSON object)`);
  });

  test('no end-of-text token', () => {
    const json = bpeTokenizerJson(trainBpe(['hello hello'], { vocabSize: 260, specialTokens: ['<pad>'] }));
    const p = path.join(tmp, 'noeos.json');
    fs.writeFileSync(p, JSON.stringify(json));
    expect(() => loadTokenizer(p)).toThrow(`${p}: no end-of-text token`);
    expect(loadTokenizer(p, { eosToken: '<pad>' }).eosId).toBe(0);
  });

  test('a folder holding tokenizer.json loads; one without it is named', () => {
    expect(loadTokenizer(tmp).vocabSize).toBe(VOCAB);
    const empty = fs.mkdtempSync(path.join(tmp, 'empty-'));
    expect(() => loadTokenizer(empty)).toThrow(`tokenizer folder ${empty} has no tokenizer.json`);
  });
});

describe('default tokenizer', () => {
  test('is trained once on the built-in corpus, cached, and reused', () => {
    const cacheDir = path.join(tmp, 'cache');
    const opts = { cacheDir, vocabSize: 300 }; // small, to keep the test quick
    const expected = defaultTokenizerPath(opts);
    expect(fs.existsSync(expected)).toBe(false);
    const p = defaultTokenizer(opts);
    expect(p).toBe(expected);
    const t = loadTokenizer(p);
    expect(t.vocabSize).toBe(300);
    const mtime = fs.statSync(p).mtimeMs;
    expect(defaultTokenizer(opts)).toBe(p);
    expect(fs.statSync(p).mtimeMs).toBe(mtime);
    expect(fs.readdirSync(path.dirname(p))).toEqual(['tokenizer.json']); // no temp files left behind
  });
});
