// Data loading: txt/md/jsonl/folder/bin inputs, errors that name the culprit, the token cache,
// and the seeded document-level train/validation split.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BUILTIN_CORPUS, corpusInfo, corpusSentences } from '../../src/data/corpus';
import {
  countDocuments, countNonBlankLines, documentsOfLines, loadDataset, paragraphsOfBytes, readDocuments, resolveInputs,
  scanNonBlankLines, writeTokenFile, type DataProgress, type DataTokenizer,
} from '../../src/data/dataset';
import { saveTokenizerJson, trainBpe } from '../../src/tokenizer/bpe-train';
import { loadTokenizer, type Tokenizer } from '../../src/tokenizer/tokenizer';
import { addon, forEachConfig } from '../helpers';
import { rng } from '../rng';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-data-'));
const cacheDir = path.join(tmp, 'cache');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let tok: Tokenizer;
beforeAll(() => {
  const p = path.join(tmp, 'tokenizer.json');
  saveTokenizerJson(trainBpe(corpusSentences().slice(0, 2000), { vocabSize: 400 }), p);
  tok = loadTokenizer(p);
});

function write(rel: string, content: string | Buffer): string {
  const p = path.join(tmp, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
  return p;
}

/** Splits a decoded token stream back into documents. */
const docsOf = (t: Tokenizer, ids: ArrayLike<number>) => (ids.length === 0 ? []
  : t.decode(Array.from(ids)).split('<|endoftext|>'));

/** A tokenizer that counts encode calls and shares the real one's cache identity. */
function counting(t: Tokenizer): DataTokenizer & { calls: number } {
  const c = { calls: 0, vocabSize: t.vocabSize, eosId: t.eosId, contentHash: t.contentHash,
    encode: (s: string) => { c.calls++; return t.encode(s); } };
  return c;
}

describe('inputs', () => {
  test('text files: documents are paragraphs separated by blank lines (CRLF too), BOM dropped', () => {
    const p = write('a.txt', '\uFEFFFirst para\nstill first\n\n\n  \nSecond  para \r\n\r\nThird\n');
    const f = resolveInputs([p]);
    expect(f).toEqual([expect.objectContaining({ path: p, kind: 'text' })]);
    expect([...readDocuments(f[0])]).toEqual(['First para\nstill first', 'Second  para ', 'Third']);
    expect(countDocuments(f[0])).toBe(3);
    expect([...readDocuments(f[0], 'file')]).toEqual(['First para\nstill first\n\n\n  \nSecond  para \r\n\r\nThird\n']);
    expect(countDocuments(f[0], 'file')).toBe(1);
  });

  test('a .txt file loads with EOS between documents', async () => {
    const p = write('b.md', '# Title\n\nSome *markdown* text.\n\nLast line.');
    const ds = await loadDataset([p], { tokenizer: tok, valShare: 0, cacheDir });
    expect(ds.dtype).toBe('uint16');
    expect(ds.train).toBeInstanceOf(Uint16Array);
    expect(ds.val.length).toBe(0);
    expect(tok.decode(Array.from(ds.train))).toBe('# Title<|endoftext|>Some *markdown* text.<|endoftext|>Last line.');
    expect(ds.documents).toEqual({ train: 3, val: 0 });
  });

  test('jsonl: one {"text"} object per line, blank lines skipped', async () => {
    const p = write('c.jsonl', '{"text": "alpha beta"}\n\n{"text": "gamma\\ndelta", "id": 3}\n');
    const ds = await loadDataset([p], { tokenizer: tok, valShare: 0, cacheDir });
    expect(docsOf(tok, ds.train)).toEqual(['alpha beta', 'gamma\ndelta']);
  });

  test('folders: recursive, sorted, other extensions and hidden files skipped', async () => {
    write('dir/b.txt', 'bee');
    write('dir/a/z.jsonl', '{"text":"zed"}\n');
    write('dir/c.md', 'sea');
    write('dir/notes.csv', 'x,y');
    write('dir/.hidden.txt', 'hidden');
    const files = resolveInputs([path.join(tmp, 'dir')]);
    expect(files.map((f) => path.relative(tmp, f.path))).toEqual(['dir/a/z.jsonl', 'dir/b.txt', 'dir/c.md']);
    const ds = await loadDataset([path.join(tmp, 'dir')], { tokenizer: tok, valShare: 0, cacheDir });
    expect(docsOf(tok, ds.train)).toEqual(['zed', 'bee', 'sea']);
  });

  test('the built-in corpus is read from the installed package', () => {
    const info = corpusInfo();
    expect(info.files).toHaveLength(100);
    expect(path.basename(info.files[99])).toBe('doc-99.json');
    const s = corpusSentences();
    expect(s).toHaveLength(100000);
    expect(s.reduce((n, x) => n + x.length, 0)).toBeGreaterThan(8_000_000);
    expect(resolveInputs([BUILTIN_CORPUS])[0].kind).toBe('builtin');
  });
});

describe('bad inputs name the culprit', () => {
  test('missing path, unsupported extension, empty folder, no inputs', () => {
    const missing = path.join(tmp, 'missing.txt');
    expect(() => resolveInputs([missing])).toThrow(`data input not found: ${missing}`);
    const csv = write('x.csv', 'a,b');
    expect(() => resolveInputs([csv])).toThrow(`unsupported data file extension ".csv": ${csv}`);
    const empty = path.join(tmp, 'emptydir');
    fs.mkdirSync(empty, { recursive: true });
    write('emptydir/readme.rst', 'nothing usable');
    expect(() => resolveInputs([empty])).toThrow(`data folder ${empty} has no .txt, .md, .jsonl, .bin files`);
    expect(() => resolveInputs([])).toThrow('no data inputs given');
  });

  test('empty files', async () => {
    const e1 = write('empty.txt', '');
    await expect(loadDataset([e1], { tokenizer: tok, cacheDir })).rejects.toThrow(`data file ${e1} is empty`);
    const e2 = write('blank.jsonl', '\n  \n');
    await expect(loadDataset([e2], { tokenizer: tok, cacheDir })).rejects.toThrow(`data file ${e2} is empty`);
  });

  test('malformed JSONL lines give file:line', async () => {
    const p = write('bad.jsonl', '{"text":"ok"}\n{"text": oops}\n');
    await expect(loadDataset([p], { tokenizer: tok, cacheDir })).rejects.toThrow(`${p}:2: malformed JSON line`);
    const q = write('bad2.jsonl', '{"text":"ok"}\n\n{"body":"no text"}\n');
    await expect(loadDataset([q], { tokenizer: tok, cacheDir })).rejects.toThrow(`${q}:3: the "text" field is missing`);
    const r = write('bad3.jsonl', '[1,2]\n');
    await expect(loadDataset([r], { tokenizer: tok, cacheDir })).rejects.toThrow(`${r}:1: expected a JSON object`);
    const s = write('bad4.jsonl', '{"text": 5}\n');
    await expect(loadDataset([s], { tokenizer: tok, cacheDir })).rejects.toThrow(`${s}:1: the "text" field is a ` +
      `number, not a string`);
  });

  test('text inputs need a tokenizer; bin and text cannot be mixed', async () => {
    const p = write('t.txt', 'hello');
    await expect(loadDataset([p], {})).rejects.toThrow(`text inputs (${p}) need a tokenizer`);
    const b = path.join(tmp, 'mix.bin');
    writeTokenFile(b, [1, 2, 3], 'uint16');
    expect(() => resolveInputs([b, p])).toThrow(`cannot mix pre-tokenized .bin files (${b}) with text inputs (${p})`);
  });
});

describe('.bin token files', () => {
  test('uint16 by vocabulary size; the last share of tokens is held out', async () => {
    const ids = Array.from({ length: 1000 }, (_, i) => (i * 7) % 400);
    const p = path.join(tmp, 'tokens16.bin');
    writeTokenFile(p, ids, 'uint16');
    expect(fs.statSync(p).size).toBe(2000);
    const ds = await loadDataset([p], { tokenizer: tok, valShare: 0.1 });
    expect(ds.dtype).toBe('uint16');
    expect(Array.from(ds.train)).toEqual(ids.slice(0, 900));
    expect(Array.from(ds.val)).toEqual(ids.slice(900));
    const big = await loadDataset([p], { vocabSize: 400, valShare: 0.05, seqLen: 128 });
    expect(big.val.length).toBe(129); // at least one window
  });

  test('uint32 via tokenDtype or a large vocabulary; several files are concatenated in order', async () => {
    const a = path.join(tmp, 'bins', 'a.bin'), b = path.join(tmp, 'bins', 'b.bin');
    writeTokenFile(a, [70000, 1, 2], 'uint32');
    writeTokenFile(b, [3, 4, 99999], 'uint32');
    const ds = await loadDataset([path.join(tmp, 'bins')], { vocabSize: 100000, valShare: 0.2 });
    expect(ds.dtype).toBe('uint32');
    expect([...ds.train, ...ds.val]).toEqual([70000, 1, 2, 3, 4, 99999]);
    expect(Array.from(ds.val)).toEqual([99999]);
    const c = path.join(tmp, 'c32.bin');
    writeTokenFile(c, [5, 6, 7, 8], 'uint32');
    const small = await loadDataset([c], { vocabSize: 10, tokenDtype: 'uint32', valShare: 0.25 });
    expect(Array.from(small.train)).toEqual([5, 6, 7]);
  });

  test('length and id validation errors name the file and the offset', async () => {
    const odd = write('odd.bin', Buffer.from([1, 0, 2]));
    await expect(loadDataset([odd], { vocabSize: 400 })).rejects.toThrow(`token file ${odd}: 3 bytes is not a ` +
      `multiple of 2 (uint16)`);
    const high = path.join(tmp, 'high.bin');
    writeTokenFile(high, [1, 2, 3, 400, 5], 'uint16');
    await expect(loadDataset([high], { tokenizer: tok })).rejects.toThrow(
      `token file ${high}: token id 400 at index 3 (byte offset 6) is out of range for vocabulary size 400`);
    const empty = write('empty.bin', '');
    await expect(loadDataset([empty], { vocabSize: 400 })).rejects.toThrow(`token file ${empty} is empty`);
    await expect(loadDataset([high], {})).rejects.toThrow(`reading token files (${high}) needs a tokenizer or a ` +
      `vocabulary size`);
    const short = path.join(tmp, 'short.bin');
    writeTokenFile(short, [1, 2, 3, 4], 'uint16');
    await expect(loadDataset([short], { vocabSize: 400, seqLen: 8 })).rejects.toThrow(`data too short for a ` +
      `train/validation split: ${short} has 4 tokens`);
  });
});

describe('token cache', () => {
  test('the second load reads the cache file instead of tokenizing; a changed input misses', async () => {
    const dir = path.join(tmp, 'cache-test');
    const p = write('cache-test/doc.jsonl', Array.from({ length: 50 },
      (_, i) => JSON.stringify({ text: `document number ${i}` })).join('\n'));
    const t1 = counting(tok);
    const progress: DataProgress[] = [];
    const first = await loadDataset([p], { tokenizer: t1, cacheDir: dir, onProgress: (x) => progress.push(x) });
    expect(first.fromCache).toBe(false);
    expect(t1.calls).toBe(50);
    expect(first.cachePath).toBeDefined();
    expect(fs.existsSync(first.cachePath!)).toBe(true);
    expect(path.dirname(first.cachePath!)).toBe(path.join(dir, 'tokens'));
    expect(fs.readdirSync(path.join(dir, 'tokens')).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    const last = progress.filter((x) => x.phase === 'tokenize').pop()!;
    expect(last).toMatchObject({ done: 50, total: 50 });

    const t2 = counting(tok);
    const second = await loadDataset([p], { tokenizer: t2, cacheDir: dir });
    expect(second.fromCache).toBe(true);
    expect(second.cachePath).toBe(first.cachePath);
    expect(t2.calls).toBe(0);
    expect(Array.from(second.train)).toEqual(Array.from(first.train));
    expect(Array.from(second.val)).toEqual(Array.from(first.val));

    fs.appendFileSync(p, '\n{"text": "one more"}');
    const t3 = counting(tok);
    const third = await loadDataset([p], { tokenizer: t3, cacheDir: dir });
    expect(third.fromCache).toBe(false);
    expect(t3.calls).toBe(51);
    expect(third.cachePath).not.toBe(first.cachePath);

    const t4 = counting(tok);
    await loadDataset([p], { tokenizer: t4, cacheDir: dir, cache: false });
    expect(t4.calls).toBe(51);
  });

  test('$DSMOE_CACHE_DIR is the default cache folder', async () => {
    const envDir = path.join(tmp, 'envcache');
    const p = write('env.txt', 'some text here');
    const old = process.env.DSMOE_CACHE_DIR;
    process.env.DSMOE_CACHE_DIR = envDir;
    try {
      const ds = await loadDataset([p], { tokenizer: tok, valShare: 0 });
      expect(ds.cachePath!.startsWith(path.join(envDir, 'tokens'))).toBe(true);
    } finally {
      if (old === undefined) delete process.env.DSMOE_CACHE_DIR; else process.env.DSMOE_CACHE_DIR = old;
    }
  });
});

describe('paragraphsOfBytes', () => {
  test('finds the documents documentsOfLines makes of the decoded lines, on random text', () => {
    const r = rng(11);
    const pieces = ['word', 'two words', ' ', '\t', '\r', '\f', '\u000b', '\n', '\n', '\r\n', 'caf\u00e9', '\u65e5',
      '\u{1f600}', '\u00a0', '  x  '];
    for (let t = 0; t < 3000; t++) {
      let s = '';
      for (let k = Math.floor(r() * 20); k > 0; k--) s += pieces[Math.floor(r() * pieces.length)];
      const b = Buffer.from(s, 'utf8');
      const got: string[] = [];
      const newlines = paragraphsOfBytes(b, (a, e) => got.push(b.subarray(a, e).toString('utf8')));
      const want = [...documentsOfLines(s.split('\n'), 'text', 'x.txt')];
      if (JSON.stringify(got) !== JSON.stringify(want) || newlines !== s.split('\n').length - 1)
        throw new Error(`${JSON.stringify(s)}: ${JSON.stringify(got)} vs ${JSON.stringify(want)}`);
    }
  });
});

describe('train/validation split', () => {
  const N = 200;
  let p: string;
  beforeAll(() => {
    p = write('split.jsonl', Array.from({ length: N }, (_, i) => JSON.stringify({ text: `doc ${i} says ` +
      `hello` })).join('\n'));
  });

  test('is at document level, with no overlap, and covers every document', async () => {
    const ds = await loadDataset([p], { tokenizer: tok, cacheDir, seed: 7 });
    const train = docsOf(tok, ds.train), val = docsOf(tok, ds.val);
    expect(val).toHaveLength(10); // 5 %
    expect(ds.documents).toEqual({ train: 190, val: 10 });
    const all = new Set([...train, ...val]);
    expect(all.size).toBe(N);
    for (const v of val) expect(train).not.toContain(v);
  });

  test('is deterministic for a seed and differs between seeds', async () => {
    const a = await loadDataset([p], { tokenizer: tok, cacheDir, seed: 1 });
    const b = await loadDataset([p], { tokenizer: tok, cacheDir, seed: 1 });
    const c = await loadDataset([p], { tokenizer: tok, cacheDir, seed: 2 });
    expect(Array.from(a.val)).toEqual(Array.from(b.val));
    expect(Array.from(a.train)).toEqual(Array.from(b.train));
    expect(Array.from(a.val)).not.toEqual(Array.from(c.val));
  });

  test('the held-out part grows to at least one window', async () => {
    const ds = await loadDataset([p], { tokenizer: tok, cacheDir, seqLen: 200 });
    expect(ds.val.length).toBeGreaterThanOrEqual(201);
    expect(ds.train.length).toBeGreaterThanOrEqual(201);
    expect(ds.documents.val).toBeGreaterThan(10);
    await expect(loadDataset([p], { tokenizer: tok, cacheDir, seqLen: 5000 })).rejects.toThrow(`data too short for a ` +
      `validation window: ${p}`);
  });

  test('a single document holds out its last tokens', async () => {
    const q = write('single.txt', 'one single paragraph with quite a few words in it to split somewhere near the end');
    const ds = await loadDataset([q], { tokenizer: tok, cacheDir, valShare: 0.25 });
    const whole = tok.encode('one single paragraph with quite a few words in it to split somewhere near the end');
    expect([...ds.train, ...ds.val]).toEqual(Array.from(whole));
    expect(ds.val.length).toBe(Math.round(whole.length * 0.25));
  });

  test('rejects a share outside [0, 0.5]', async () => {
    await expect(loadDataset([p], { tokenizer: tok, valShare: 0.9 })).rejects.toThrow('validation share must be in ' +
      '[0, 0.5], got 0.9');
  });
});

describe('the counting pass (the addon\'s scanLines)', () => {
  /** The plain reference: the lines of the decoded text, as fileLines and documentsOfLines see them. */
  function reference(s: string, runs: boolean): number {
    const lines = s.replace(/^\ufeff/, '').split('\n');
    let n = 0, inRun = false;
    for (const line of lines) {
      const blank = /^[ \t\r\f\v]*$/.test(line);
      if (!blank && (!runs || !inRun)) n++;
      inRun = !blank;
    }
    return n;
  }

  test('counts lines and paragraphs as the JavaScript scan does, in any chunking, on every ISA', () => {
    const r = rng(12);
    // Lines longer than a 64-byte block, blank lines of every blank byte, bytes around the blank ones
    // (8, 14, 31, 33) and every other kind of byte (NUL, multi-byte UTF-8).
    const long = 'x'.repeat(70), blanks = ' '.repeat(130);
    const pieces = ['word', ' ', '\t', '\r', '\f', '\u000b', '\n', '\n', '\n', '\r\n', '\u0008', '\u000e', '\u001f',
      '!', '\u0000', 'caf\u00e9', '\u{1f600}', '\u00a0', long, blanks, '\n\n\n'];
    const files: Array<{ s: string; file: string }> = [];
    for (let t = 0; t < 300; t++) {
      let s = t % 50 === 0 ? '\ufeff' : '';
      for (let k = Math.floor(r() * 60); k > 0; k--) s += pieces[Math.floor(r() * pieces.length)];
      files.push({ s, file: write(`scan/${t}.txt`, s) });
    }
    forEachConfig((isa) => {
      for (const { s, file } of files) {
        for (const runs of [true, false]) {
          const want = reference(s, runs);
          expect(scanNonBlankLines(file, runs).count).toBe(want);
          for (const chunk of [1, 7, 64, 65, 1 << 16]) {
            const got = countNonBlankLines(file, runs, chunk);
            if (got !== want) throw new Error(`${isa}, chunks of ${chunk}, runs ${runs}: ${got} vs ${want} ` +
              `for ${JSON.stringify(s)}`);
          }
        }
      }
    }, [1]);
  });

  test('carries its state across calls; an empty chunk changes nothing; bad arguments are named', () => {
    const state = Float64Array.of(0, 1, 0);
    addon.scanLines({ bytes: Buffer.from('a\n\nb'), runs: true, state });
    expect([...state]).toEqual([1, 0, 0]); // "b" is open: not blank, not ended
    addon.scanLines({ bytes: new Uint8Array(0), runs: true, state });
    expect([...state]).toEqual([1, 0, 0]);
    addon.scanLines({ bytes: Buffer.from('c\n'), runs: true, state });
    expect([...state]).toEqual([2, 1, 1]);
    expect(() => addon.scanLines({ bytes: Buffer.from('a'), state: new Float64Array(2) })).toThrow(/scanLines: state/);
    expect(() => addon.scanLines({ bytes: 'a' as never, state })).toThrow(/scanLines: bytes/);
  });
});
