// Token shards (dsmoe tokenize → dsmoe train --data <dir>): the same tokens and losses as the text path,
// the same shards for any number of workers and written around the page cache or through it, resuming an
// interrupted run, manifest/shard mismatches named, the mmap binding's errors, and the shard sampler as a
// pure function of (seed, draw, row).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { corpusSentences } from '../../src/data/corpus';
import { loadDataset, trainTokenCount } from '../../src/data/dataset';
import { ShardSampler, windowAt } from '../../src/data/sampler';
import { MANIFEST_FILE, openShards, readManifest } from '../../src/data/shards';
import { runJob } from '../../src/data/tokenize-job';
import { tokenizeToShards, type TokenizeShardsOptions } from '../../src/data/tokenize-shards';
import { directIoIn } from '../helpers';
import { saveTokenizerJson, trainBpe } from '../../src/tokenizer/bpe-train';
import { loadTokenizer, type Tokenizer } from '../../src/tokenizer/tokenizer';
import { train, type EvalRecord, type StepRecord } from '../../src/train/trainer';
import { addon } from '../helpers';
import { tinyConfig } from '../native/tiny-config';
import { fakeBackend } from '../train/fake-model';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-shards-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let tok: Tokenizer;
let tokFile: string;
let corpus: string;
beforeAll(() => {
  tokFile = path.join(tmp, 'tokenizer.json');
  const sentences = corpusSentences().slice(0, 2000);
  saveTokenizerJson(trainBpe(sentences.slice(0, 1000), { vocabSize: 400 }), tokFile);
  tok = loadTokenizer(tokFile);
  // Two text files of paragraphs (1-4 sentences each) and a JSONL file.
  corpus = path.join(tmp, 'corpus');
  fs.mkdirSync(corpus);
  const paras: string[] = [];
  for (let i = 0, k = 1; i < 1600; i += k, k = 1 + (i % 4)) paras.push(sentences.slice(i, i + k).join('\n'));
  fs.writeFileSync(path.join(corpus, 'a.txt'), paras.slice(0, 250).join('\n\n') + '\n');
  fs.writeFileSync(path.join(corpus, 'b.md'), paras.slice(250).join('\n\n') + '\n');
  fs.writeFileSync(path.join(corpus, 'c.jsonl'),
    sentences.slice(1600).map((text, i) => JSON.stringify({ text }) + (i % 50 === 0 ? '\n  \n' : ''))
      .join('\n') + '\n');
  // What the byte-level cutting and encoding must get right: a BOM, CRLF, blank lines of spaces and tabs,
  // a paragraph longer than a job, non-ASCII text, no final newline.
  fs.writeFileSync(path.join(corpus, 'd.txt'), '\uFEFFFirst, after a BOM\r\nsame para\r\n\r\n \t\n' +
    `${sentences.slice(0, 200).join('\n')}\n\n\n` + 'Ünïcödé — “quotes” 日本語\n \nlast line, no newline');
  // Bytes that are not UTF-8 (read as U+FFFD by the text path; the workers must decode them the same way).
  fs.writeFileSync(path.join(corpus, 'e.txt'), Buffer.concat([Buffer.from('bad bytes\nsame para '),
    Buffer.from([0xff, 0xc3, 0x28, 0xe2, 0x82]), Buffer.from(' end\n\ncaf\u00e9 ok\n')]));
});

const opts = (out: string, extra: Partial<TokenizeShardsOptions> = {}): TokenizeShardsOptions => ({
  // Worker threads only where the test is about them (under ts-jest each one transpiles its modules).
  inputs: [corpus], out: path.join(tmp, out), tokenizer: tokFile, shardTokens: 3000, workers: 0, jobChars: 4096,
  ...extra,
});

const bytesOf = (dir: string) => Object.fromEntries(fs.readdirSync(dir).filter((f) => f.endsWith('.bin'))
  .map((f) => [f, fs.readFileSync(path.join(dir, f))]));

/** The manifest without what depends on the run (timings, worker count). */
const stable = (dir: string) => ({ ...readManifest(dir), stats: undefined });

describe('dsmoe tokenize', () => {
  test('the same tokens as the text path: training shards end to end = train, val.bin = val', async () => {
    const one = await tokenizeToShards(opts('one', { shardTokens: 1e9 }));
    expect(one.status).toBe('done');
    const ds = await loadDataset([corpus], { tokenizer: tok, cache: false });
    const sh = openShards(one.out, { tokenizer: tok });
    expect(sh.train).toHaveLength(1);
    expect(Array.from(sh.train[0])).toEqual(Array.from(ds.train));
    expect(Array.from(sh.val)).toEqual(Array.from(ds.val));
    expect(sh.manifest.documents).toEqual({ total: ds.documents.train + ds.documents.val, ...ds.documents });

    // Many shards: the same stream, cut at document ends (the EOS between two shards is left out).
    const many = await tokenizeToShards(opts('many'));
    const parts = openShards(many.out, { tokenizer: tok }).train;
    expect(parts.length).toBeGreaterThan(3);
    const joined: number[] = [];
    parts.forEach((p, i) => {
      if (i > 0) joined.push(tok.eosId);
      joined.push(...Array.from(p));
      expect(p[p.length - 1]).not.toBe(tok.eosId);
    });
    expect(joined).toEqual(Array.from(ds.train));
    const m = readManifest(many.out);
    expect(m.shards.slice(0, -1).every((s) => s.tokens >= 3000)).toBe(true);
    expect(m.shards[0].first_document).toBe(0);
    expect(m.shards[m.shards.length - 1].end_document).toBe(m.documents.total);

    // loadDataset on the folder: mapped shards, the held-out shard as val.
    const dsh = await loadDataset([many.out], { tokenizer: tok });
    expect(dsh.shards?.train).toHaveLength(parts.length);
    expect(trainTokenCount(dsh)).toBe(ds.train.length - (parts.length - 1));
    expect(Array.from(dsh.val)).toEqual(Array.from(ds.val));
  });

  test('the same losses as the text path: evaluation and a training step over the same windows', async () => {
    const ds = await loadDataset([corpus], { tokenizer: tok, cache: false });
    const dsh = await loadDataset([path.join(tmp, 'one')], { tokenizer: tok });
    const T = 16, B = 4;
    const config = tinyConfig('dsmoe', { vocab_size: tok.vocabSize, max_seq_len: T });
    const losses = async (train: ArrayLike<number>, val: ArrayLike<number>) => {
      const trainer = addon.createTrainer({ config, device: 'cpu' });
      trainer.init({ seed: 3 });
      const cut = (src: ArrayLike<number>, starts: number[], shift: number) => Int32Array.from(
        starts.flatMap((s) => Array.from({ length: T }, (_, t) => src[s + t + shift])));
      const ev = await trainer.evaluateAsync({ tokens: cut(val, [0, T, 2 * T, 3 * T], 0),
        targets: cut(val, [0, T, 2 * T, 3 * T], 1), batch: B, seq: T });
      // The windows the shard sampler draws first (seed 5), cut from this path's training tokens.
      const starts = new ShardSampler([Uint16Array.from(train)], { batchSize: B, seqLen: T, seed: 5 })
        .batchAt(0).starts;
      const st = await trainer.trainStepAsync({ tokens: cut(train, starts, 0), targets: cut(train, starts, 1), batch: B,
        seq: T, lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.01, clip: 1, step: 1 });
      return [ev.loss, ev.lmLoss, st.loss, st.lmLoss];
    };
    const text = await losses(ds.train, ds.val);
    const shards = await losses(dsh.shards!.train[0], dsh.val);
    expect(shards).toEqual(text);
    // And the batch the shard sampler fills from the mapped shard is those windows.
    const b = new ShardSampler(dsh.shards!.train, { batchSize: B, seqLen: T, seed: 5, vocabSize: tok.vocabSize })
      .batchAt(0);
    expect(Array.from(b.inputs)).toEqual(b.starts.flatMap((s) => Array.from(ds.train.subarray(s, s + T))));
    expect(Array.from(b.targets)).toEqual(b.starts.flatMap((s) => Array.from(ds.train.subarray(s + 1, s + T + 1))));
  });

  test('identical shards with 1 and 3 workers', async () => {
    await tokenizeToShards(opts('w1', { workers: 1 }));
    const r3 = await tokenizeToShards(opts('w3', { workers: 3 }));
    expect(r3.workers).toBe(3);
    expect(bytesOf(path.join(tmp, 'w3'))).toEqual(bytesOf(path.join(tmp, 'w1')));
    expect(stable(path.join(tmp, 'w3'))).toEqual({ ...stable(path.join(tmp, 'w1')) });
  });

  test('a staging of fewer than one id is refused by name', async () => {
    await expect(tokenizeToShards(opts('bad-staging', { stagingIds: 0 })))
      .rejects.toThrow('stagingIds must be ≥ 1, got 0');
  });

  test('shards written around the page cache (O_DIRECT) hold the same bytes as through it', async () => {
    // 2048 ids (4 KiB) a write: each 3000-token shard is one direct write and a tail through the page cache.
    const direct = await tokenizeToShards(opts('direct', { stagingIds: 2048 }));
    if (directIoIn(tmp) !== 'none') expect(direct.directBytes).toBeGreaterThan(0);
    else expect(direct.directBytes).toBe(0);
    const before = process.env.DSMOE_DIRECT_IO;
    process.env.DSMOE_DIRECT_IO = '0';
    try {
      const buffered = await tokenizeToShards(opts('buffered', { stagingIds: 2048 }));
      expect(buffered.directBytes).toBe(0);
    } finally {
      if (before === undefined) delete process.env.DSMOE_DIRECT_IO;
      else process.env.DSMOE_DIRECT_IO = before;
    }
    expect(bytesOf(path.join(tmp, 'direct'))).toEqual(bytesOf(path.join(tmp, 'buffered')));
    expect(stable(path.join(tmp, 'direct'))).toEqual(stable(path.join(tmp, 'buffered')));
    expect(openShards(direct.out, { tokenizer: tok }).train.length).toBeGreaterThan(3); // and they open
  });

  test('a part that runs past its file (the file shrank after it was cut) is named', () => {
    const f = path.join(tmp, 'short.txt');
    fs.writeFileSync(f, 'one paragraph\n');
    for (const kind of ['text', 'jsonl'] as const) {
      const r = runJob(tok, { id: 1, file: f, offset: 0, length: 100, kind, last: true });
      expect(r).toEqual({ id: 1, error: `${f} changed while it was being read (it ended at byte 14)` });
    }
    const ok = runJob(tok, { id: 2, file: f, offset: 0, length: 14, kind: 'text', last: true });
    expect('error' in ok ? ok.error : Array.from(ok.ids)).toEqual(Array.from(tok.encode('one paragraph')));
  });

  test('a failure before the main loop stops the workers: the command exits with the error', () => {
    // Only blank lines: the count fails after the first jobs went out to the workers.
    const blank = path.join(tmp, 'blank.txt');
    fs.writeFileSync(blank, '\n \n\t\n'.repeat(200000));
    const r = spawnSync(process.execPath, [path.join(__dirname, '..', '..', 'bin', 'dsmoe.js'), 'tokenize', blank,
      '--out', path.join(tmp, 'blank-out'), '--tokenizer', tokFile, '--workers', '2'],
    { encoding: 'utf8', timeout: 60_000 });
    expect(r.signal).toBeNull(); // not killed by the timeout
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(`data file ${blank} is empty (no documents)`);
  });

  test('bad input deep in a file names its absolute line, with and without workers', async () => {
    const dir = path.join(tmp, 'bad-jsonl');
    fs.mkdirSync(dir);
    const good = corpusSentences().slice(0, 400).map((text) => JSON.stringify({ text }));
    good.splice(300, 0, '{"text": 7}'); // line 301, several parts (of 4096 bytes) into the file
    fs.writeFileSync(path.join(dir, 'bad.jsonl'), good.join('\n') + '\n');
    const where = `${path.join(dir, 'bad.jsonl')}:301: the "text" field is a number, not a string`;
    for (const workers of [0, 2]) {
      await expect(tokenizeToShards(opts(`bad-out-${workers}`, { inputs: [dir], workers }))).rejects.toThrow(where);
    }
  });

  test('an interrupted run keeps its finished shards; the same command continues to the same result', async () => {
    const ac = new AbortController();
    const first = await tokenizeToShards(opts('resume', {
      // Past two shards' worth of tokens (3000 each), two shards are full: they are recorded before it returns.
      workers: 1, signal: ac.signal, onProgress: (p) => { if (p.tokens > 2 * 3000) ac.abort(); },
    }));
    expect(first.status).toBe('interrupted');
    const partial = readManifest(first.out);
    expect(partial.complete).toBe(false);
    expect(partial.shards.length).toBeGreaterThanOrEqual(2);
    expect(() => openShards(first.out)).toThrow(/the tokenization is incomplete \(\d+ shards written\)/);
    let resumedAt = -1;
    const second = await tokenizeToShards(opts('resume', {
      onProgress: (p) => { if (resumedAt < 0 && p.phase === 'tokenize') resumedAt = p.documents; },
    }));
    expect(second.status).toBe('done');
    expect(second.keptShards).toBe(partial.shards.length);
    expect(resumedAt).toBe(partial.progress!.next_document);
    expect(bytesOf(second.out)).toEqual(bytesOf(path.join(tmp, 'w1')));
    expect(stable(second.out)).toEqual(stable(path.join(tmp, 'w1')));
    const again = await tokenizeToShards(opts('resume'));
    expect(again.status).toBe('complete');
    await expect(tokenizeToShards(opts('resume', { seed: 9 }))).rejects.toThrow(
      /already holds token shards made with other settings \(--seed differ\)/);
  });
});

describe('dsmoe train --data <shard folder>', () => {
  test('trains from the mapped shards, evaluates on val.bin, resumes exactly; refuses another tokenizer', async () => {
    const dir = path.join(tmp, 'w1');
    const m = readManifest(dir);
    const run = async (out: string, extra: object, stopAt = 0) => {
      const steps: StepRecord[] = [], evals: EvalRecord[] = [];
      let info: { trainTokens: number; valTokens: number } | undefined;
      const ac = new AbortController();
      const r = await train({ preset: 'tiny', data: [dir], tokenizer: tokFile, out, batchSize: 2,
        overrides: { seq_len: 16 }, evalInterval: 0, evalBatches: 2, signal: ac.signal, ...extra }, {
        onStep: (x) => { steps.push(x); if (x.step === stopAt) ac.abort(); },
        onEval: (x) => evals.push(x), onStart: (i) => (info = i),
      }, { backend: fakeBackend() });
      return { r, steps, evals, info };
    };
    const full = await run(path.join(tmp, 'run-full'), { steps: 4 });
    expect(full.r.step).toBe(4);
    expect(full.info).toEqual(expect.objectContaining({
      trainTokens: m.shards.reduce((n, s) => n + s.tokens, 0), valTokens: m.val!.tokens,
    }));
    expect(full.evals).toHaveLength(1);
    const half = await run(path.join(tmp, 'run-half'), { steps: 4 }, 2);
    expect(half.r.reason).toBe('interrupted');
    const rest = await run(path.join(tmp, 'run-half'), { resume: path.join(tmp, 'run-half'), data: undefined,
      tokenizer: undefined, preset: undefined, overrides: undefined });
    expect([...half.steps, ...rest.steps].map((x) => x.loss)).toEqual(full.steps.map((x) => x.loss));
    const other = path.join(tmp, 'other-tokenizer.json');
    saveTokenizerJson(trainBpe(corpusSentences().slice(5000, 5400), { vocabSize: 300 }), other);
    await expect(train({ preset: 'tiny', data: [dir], tokenizer: other, out: path.join(tmp, 'run-x'), steps: 1 },
      {}, { backend: fakeBackend() })).rejects.toThrow(`${dir} was tokenized with another tokenizer`);
  });
});

describe('a manifest that does not match its shards is an error naming the shard', () => {
  const copy = (name: string) => {
    const dir = path.join(tmp, name);
    fs.cpSync(path.join(tmp, 'w1'), dir, { recursive: true });
    return dir;
  };

  test('a truncated or extended shard', () => {
    const dir = copy('trunc');
    const f = path.join(dir, 'train-00001.bin');
    fs.truncateSync(f, fs.statSync(f).size - 2);
    expect(() => openShards(dir, { tokenizer: tok })).toThrow(`shard train-00001.bin of ${dir} is truncated`);
    fs.truncateSync(f, fs.statSync(f).size + 4);
    expect(() => openShards(dir, { tokenizer: tok })).toThrow(`shard train-00001.bin of ${dir} is too long`);
  });

  test('changed content (a sampled block), a missing or unlisted shard, another tokenizer', () => {
    const dir = copy('changed');
    const f = path.join(dir, 'train-00002.bin');
    const b = fs.readFileSync(f);
    b[b.length - 1] ^= 1;
    fs.writeFileSync(f, b);
    expect(() => openShards(dir, { tokenizer: tok })).toThrow(`shard train-00002.bin of ${dir} does not match the ` +
      'manifest: the checksum of its sampled blocks differs');
    fs.rmSync(f);
    expect(() => openShards(dir, { tokenizer: tok })).toThrow(`shard train-00002.bin of ${dir} is missing`);
    fs.writeFileSync(f, b);
    b[b.length - 1] ^= 1;
    fs.writeFileSync(f, b);
    fs.copyFileSync(f, path.join(dir, 'train-00099.bin'));
    expect(() => openShards(dir, { tokenizer: tok })).toThrow(`${dir} has the shard file train-00099.bin, which its ` +
      'manifest does not list');
    fs.rmSync(path.join(dir, 'train-00099.bin'));
    expect(() => openShards(dir, { tokenizer: tok })).not.toThrow();
    const m = readManifest(dir);
    expect(() => openShards(dir, { tokenizer: { contentHash: 'f'.repeat(64), vocabSize: 400 } })).toThrow(
      `${dir} was tokenized with another tokenizer (${m.tokenizer.file}, content hash ` +
      `${m.tokenizer.content_hash.slice(0, 12)}…) than the one given (content hash ffffffffffff…)`);
    // A manifest listing fewer tokens than the shard holds.
    fs.writeFileSync(path.join(dir, MANIFEST_FILE), JSON.stringify({ ...m, shards: m.shards.map((s, i) =>
      (i === 0 ? { ...s, tokens: s.tokens - 1 } : s)) }));
    expect(() => openShards(dir, { tokenizer: tok })).toThrow(`shard train-00000.bin of ${dir} is too long`);
  });
});

describe('mapFile (native)', () => {
  test('maps a file read-only; the view reads its bytes', () => {
    const f = path.join(tmp, 'map.bin');
    fs.writeFileSync(f, Buffer.from(Uint16Array.from([1, 2, 65535]).buffer));
    const ab = addon.mapFile({ path: f, elementSize: 2 });
    expect(ab.byteLength).toBe(6);
    expect(Array.from(new Uint16Array(ab))).toEqual([1, 2, 65535]);
  });

  test('errors name the file: missing, empty, not a multiple of the token size, a folder', () => {
    const missing = path.join(tmp, 'nope.bin');
    expect(() => addon.mapFile({ path: missing })).toThrow(`mapFile: ${missing}: no such file`);
    const empty = path.join(tmp, 'empty.bin');
    fs.writeFileSync(empty, '');
    expect(() => addon.mapFile({ path: empty })).toThrow(`mapFile: ${empty}: the file is empty`);
    const odd = path.join(tmp, 'odd.bin');
    fs.writeFileSync(odd, Buffer.alloc(7));
    expect(() => addon.mapFile({ path: odd, elementSize: 4 })).toThrow(`mapFile: ${odd}: 7 bytes is not a multiple ` +
      'of the element size 4');
    expect(() => addon.mapFile({ path: tmp })).toThrow(`mapFile: ${tmp}: not a regular file`);
    expect(() => addon.mapFile({ path: odd, elementSize: 0 })).toThrow('mapFile: elementSize must be in [1, 8], got 0');
  });
});

describe('ShardSampler', () => {
  test('windows are a pure function of (seed, draw, row), uniform over all shards, never across a boundary', () => {
    const a = Uint16Array.from({ length: 50 }, (_, i) => i), b = Uint16Array.from({ length: 30 }, (_, i) => 100 + i);
    const s = new ShardSampler([a, b], { batchSize: 3, seqLen: 8, seed: 11 });
    expect(s.windows).toBe(42 + 22);
    const first = [s.next(), s.next(), s.next()];
    const fresh = new ShardSampler([a, b], { batchSize: 3, seqLen: 8, seed: 11 });
    expect(fresh.batchAt(2)).toEqual(first[2]);
    fresh.setState(s.getState());
    expect(fresh.next()).toEqual(s.next());
    fresh.skip();
    s.next();
    expect(fresh.next()).toEqual(s.next());
    for (const batch of first) {
      for (let r = 0; r < 3; r++) {
        const row = Array.from(batch.inputs.subarray(r * 8, r * 8 + 8));
        const tgt = Array.from(batch.targets.subarray(r * 8, r * 8 + 8));
        expect(tgt).toEqual(row.map((x) => x + 1)); // consecutive tokens of one shard
      }
    }
    const counts = new Array<number>(5).fill(0);
    for (let d = 0; d < 5000; d++) counts[windowAt(1, d, 0, 5)]++;
    for (const c of counts) expect(Math.abs(c - 1000)).toBeLessThan(150);
    expect(() => new ShardSampler([a], { batchSize: 1, seqLen: 50 })).toThrow('no shard holds one window');
    expect(() => new ShardSampler([a], { batchSize: 1, seqLen: 8, vocabSize: 5, shardNames: ['a.bin'] }).batchAt(0))
      .toThrow(/a\.bin: token id \d+ at index \d+ is out of range for vocabulary size 5/);
  });
});
