// Generation on a tiny trained checkpoint: greedy decoding against argmax done by hand through the
// session, seeded sampling, top-k / top-p limits, stop strings, max-tokens, batches against single
// prompts, streaming, incremental detokenization of multi-byte characters, active parameters.
import * as fs from 'node:fs';
import { loadCheckpoint } from '../../src/checkpoint/checkpoint';
import { generate, TextStream, type GenerateOptions } from '../../src/infer/generate';
import type { InferenceModel } from '../../src/infer/load';
import { parseRouting } from '../../src/model/routing';
import { paramCount } from '../../src/model/config';
import { loadTokenizer } from '../../src/tokenizer/tokenizer';
import { addon } from '../helpers';
import { openTinyModel, type TinyCheckpoint } from './checkpoint';

let ck: TinyCheckpoint, model: InferenceModel;
beforeAll(async () => { ({ ck, model } = await openTinyModel()); });
afterAll(() => fs.rmSync(ck.dir, { recursive: true, force: true }));

/**
 * The greedy choice, written here (not src/infer/sample's argmax, which generate itself uses): the first index of
 * the largest logit.
 */
function greedyRef(logits: Float32Array): number {
  const max = Math.max(...logits);
  return logits.indexOf(max);
}

/** Token ids by decreasing logit, the lower id first among equals. */
const ranked = (logits: Float32Array) => Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);

const dense = { attention: 'dense', mlp: 'dense' };
const opts = (over: Partial<GenerateOptions> = {}): GenerateOptions => ({
  maxTokens: 12, temperature: 0, routing: dense, ...over,
});
const gen1 = async (prompt: string, over: Partial<GenerateOptions> = {}) =>
  (await generate(model, [prompt], opts(over))).completions[0];

describe('generate', () => {
  test('the checkpoint is mapped, not copied, and its routing default comes from config.json', () => {
    expect(model.inMemory).toBe(false);
    expect(model.dtype).toBe('F32');
    expect(parseRouting(undefined, model.config)).toEqual(model.config.routing);
  });

  test.each([
    ['dense', dense],
    ['threshold:0.48', { attention: 'threshold:0.48', mlp: 'threshold:0.48' }],
    ['topk:1', { attention: 'topk:2', mlp: 'topk:1' }],
  ])(
    '%s: greedy is deterministic and equals argmax decoding by hand', async (_, routing) => {
      const a = await gen1('the model', { routing, maxTokens: 16 });
      const b = await gen1('the model', { routing, maxTokens: 16 });
      expect(b.tokens).toEqual(a.tokens);
      // By hand: in-memory fp32 weights, one session, prefill then decode with argmax.
      const loaded = loadCheckpoint(ck.checkpoint, { optimizer: false });
      const V = loaded.config.vocab_size, eos = model.tokenizer.eosId;
      const s = addon.createSession({ config: loaded.config, weights: loaded.params, batch: 1, routing });
      const prompt = Array.from(model.tokenizer.encode('the model'));
      const logits = new Float32Array(V);
      s.prefill({ tokens: Int32Array.from(prompt), batch: 1, len: prompt.length, logits });
      const want: number[] = [];
      for (;;) {
        const t = greedyRef(logits);
        want.push(t);
        if (t === eos || want.length === 16) break;
        s.decode({ tokens: Int32Array.of(t), logits });
      }
      expect(a.tokens).toEqual(want);
      expect(a.text).toBe(model.tokenizer.decode(want.filter((t) => t !== eos)));
    });

  test('same seed, same text; another seed, other text', async () => {
    const s = { temperature: 1, maxTokens: 20 };
    const a = await gen1('the', { ...s, seed: 1 }), b = await gen1('the', { ...s, seed: 1 });
    expect(b.tokens).toEqual(a.tokens);
    const others = await Promise.all([2, 3, 4].map((seed) => gen1('the', { ...s, seed })));
    expect(others.some((o) => o.tokens.join() !== a.tokens.join())).toBe(true);
  });

  test('top-k 3 and top-p 0.5 at temperature 1: every sampled token lies in the top 3 / the nucleus of its logits ' +
    '(replayed by hand)', async () => {
    const loaded = loadCheckpoint(ck.checkpoint, { optimizer: false });
    const V = loaded.config.vocab_size;
    for (const [o, allowed] of [
      [{ topK: 3 }, (l: Float32Array) => ranked(l).slice(0, 3)],
      [{ topP: 0.5 }, (l: Float32Array) => {
        // softmax in double, then the shortest most-likely prefix whose mass reaches 0.5
        const m = Math.max(...l), e = Array.from(l, (x) => Math.exp(x - m)), sum = e.reduce((a, b) => a + b, 0);
        const keep: number[] = [];
        let acc = 0;
        for (const i of ranked(l)) { keep.push(i); acc += e[i] / sum; if (acc >= 0.5) break; }
        return keep;
      }],
    ] as const) {
      const outside: string[] = [];
      let sampled = 0, notGreedy = 0;
      for (const seed of [1, 2, 3]) {
        const r = await gen1('the router of', { temperature: 1, maxTokens: 20, seed, ...o });
        const s = addon.createSession({ config: loaded.config, weights: loaded.params, batch: 1, routing: dense });
        const prompt = Array.from(model.tokenizer.encode('the router of'));
        const logits = new Float32Array(V);
        s.prefill({ tokens: Int32Array.from(prompt), batch: 1, len: prompt.length, logits });
        r.tokens.forEach((t, i) => {
          const ok = allowed(logits);
          if (!ok.includes(t)) outside.push(`seed ${seed} token ${i}: ${t} not in [${ok}]`);
          if (t !== greedyRef(logits)) notGreedy++;
          sampled++;
          if (i + 1 < r.tokens.length) s.decode({ tokens: Int32Array.of(t), logits });
        });
      }
      expect(outside).toEqual([]);
      expect(sampled).toBeGreaterThan(20);
      expect(notGreedy).toBeGreaterThan(0);  // it did sample, not just take the argmax
    }
  });

  test('top-k 1 and a tiny top-p equal greedy at any temperature', async () => {
    const greedy = await gen1('dense and', { maxTokens: 16 });
    expect((await gen1('dense and', { maxTokens: 16, temperature: 1.5, topK: 1, seed: 9 })).tokens)
      .toEqual(greedy.tokens);
    expect((await gen1('dense and', { maxTokens: 16, temperature: 1.5, topP: 1e-9, seed: 9 })).tokens)
      .toEqual(greedy.tokens);
  });

  test('max-tokens and stop strings', async () => {
    const full = await gen1('the router', { maxTokens: 20 });
    // Greedy: the 5-token run is the 20-token run cut at 5, and it was cut (the longer run went on).
    expect(full.tokens.length).toBeGreaterThan(5);
    const five = await gen1('the router', { maxTokens: 5 });
    expect(five.finish).toBe('length');
    expect(five.tokens).toEqual(full.tokens.slice(0, 5));
    expect(full.text.length).toBeGreaterThan(6);
    const stop = full.text.slice(4, 7);
    const cut = await gen1('the router', { maxTokens: 20, stop: ['zzz-never', stop] });
    expect(cut.finish).toBe('stop');
    expect(cut.text).toBe(full.text.slice(0, full.text.indexOf(stop)));
  });

  test('a batch of prompts equals each prompt alone (greedy), and streaming equals the final text', async () => {
    const prompts = ['the model', 'a sparse router of the', 'key'];
    const pieces: string[][] = prompts.map(() => []);
    const batch = await generate(model, prompts, opts({ maxTokens: 10, onText: (i, t) => pieces[i].push(t) }));
    for (let i = 0; i < prompts.length; i++) {
      const alone = await gen1(prompts[i], { maxTokens: 10 });
      expect(batch.completions[i].tokens).toEqual(alone.tokens);
      expect(batch.completions[i].text).toBe(alone.text);
      expect(pieces[i].join('')).toBe(batch.completions[i].text);
    }
    expect(batch.promptTokens).toBe(prompts.reduce((a, p) => a + model.tokenizer.encode(p).length, 0));
    expect(batch.generatedTokens).toBe(batch.completions.reduce((a, c) => a + c.tokens.length, 0));
  });

  test('rows of a batch go on after another row fills the context, as they would alone', async () => {
    const prompts = ['the model of the router and the key of the value', 'a'];
    let continued = 0;
    for (const seed of [11, 12, 13, 14, 15, 16]) {
      const batch = await generate(model, prompts, opts({
        maxTokens: 100, temperature: 1, seed, routing: { attention: 'topk:2', mlp: 'threshold:0.48' },
      }));
      for (let i = 0; i < prompts.length; i++) {
        const alone = await gen1(prompts[i], {
          maxTokens: 100, temperature: 1, seed: seed + i, routing: { attention: 'topk:2', mlp: 'threshold:0.48' },
        });
        expect(batch.completions[i].tokens).toEqual(alone.tokens);
        expect(batch.completions[i].finish).toBe(alone.finish);
      }
      const [long, short] = batch.completions;
      // The long prompt's row filled the context while the short one kept going.
      if (long.finish === 'context' && short.tokens.length > long.tokens.length) continued++;
    }
    expect(continued).toBeGreaterThan(0);
  });

  test('dense routing touches exactly the non-embedding parameters less the norms', async () => {
    const r = await generate(model, ['the model'], opts({ maxTokens: 4 }));
    const pc = paramCount(model.config);
    expect(r.stats.activeParamsPerToken).toBe(pc.nonEmbedding - pc.norms);
    expect(r.stats.activeExpertShare).toBe(1);
    expect(r.stats.expertParams).toBe(pc.expertParams);
    expect(r.stats.embeddingParams).toBe(pc.embedding);
    expect(r.stats.lmHeadParams).toBe(pc.lmHead);
    expect(r.stats.attExpertsPerToken).toBe(model.config.attention.n_experts);
    const sparse = await generate(model, ['the model'],
      opts({ maxTokens: 4, routing: { attention: 'topk:1', mlp: 'topk:1' } }));
    expect(sparse.stats.activeExpertShare).toBe(0.25);
    expect(sparse.stats.activeParamsPerToken).toBeLessThan(r.stats.activeParamsPerToken);
  });

  test('errors: empty prompt, prompt longer than the context', async () => {
    await expect(generate(model, [''], opts())).rejects.toThrow(/the prompt is empty/);
    const long = 'the model '.repeat(40);
    await expect(generate(model, [long], opts()))
      .rejects.toThrow(/the prompt is \d+ tokens long, longer than the model's context of 32 tokens/);
    await expect(generate(model, ['a', ''], opts())).rejects.toThrow(/prompt 2 is empty/);
  });

  test('a generation that reaches the context stops there', async () => {
    // Prompts of 29–32 tokens (the context is 32) and several seeds: some must reach the context;
    // every run's finish reason is checked against its own tokens.
    const ctx = model.config.max_seq_len, eos = model.tokenizer.eosId;
    const words = 'the model of the router and the key of the value the expert of the layer and the token of the gate';
    const ids = Array.from(model.tokenizer.encode(words.repeat(4)));
    expect(ids.length).toBeGreaterThan(ctx);
    let reached = 0;
    for (const n of [29, 30, 31, 32])
      for (const seed of [1, 2, 3]) {
        const prompt = model.tokenizer.decode(ids.slice(0, n));
        const r = await gen1(prompt, { maxTokens: 100, temperature: 1, seed });
        expect(r.promptTokens + r.tokens.length).toBeLessThanOrEqual(ctx + 1);
        if (r.finish === 'context') {
          reached++;
          // the cache holds ctx; the last token is sampled from it
          expect(r.promptTokens + r.tokens.length).toBe(ctx + 1);
          expect(r.tokens).not.toContain(eos);
        } else {
          expect(r.finish).toBe('eos');
          expect(r.tokens[r.tokens.length - 1]).toBe(eos);
        }
      }
    expect(reached).toBeGreaterThan(0);
  });
});

describe('incremental detokenization', () => {
  test('multi-byte characters split across tokens are emitted whole, and the pieces add up to the text', () => {
    const tok = loadTokenizer(ck.tokenizer);
    const text = 'héllo wörld ✓ 日本語 😀 the model';
    const ids = Array.from(tok.encode(text));
    expect(ids.length).toBeGreaterThan([...text].length * 0.5);
    const s = new TextStream((x) => tok.decode(x));
    const pieces = ids.map((id) => s.push(id));
    pieces.push(s.flush());
    for (const p of pieces) expect(p).not.toMatch(/\uFFFD/);
    expect(pieces.join('')).toBe(text);
    expect(s.value).toBe(text);
  });

  test('text that may start a stop string is held back until it cannot', () => {
    const tok = loadTokenizer(ck.tokenizer);
    const s = new TextStream((x) => tok.decode(x), ['STOP']);
    const out: string[] = [];
    for (const id of tok.encode('abc ST then STOP more')) out.push(s.push(id));
    out.push(s.flush());
    expect(out.join('')).toBe('abc ST then ');
    expect(s.stopped).toBe(true);
  });
});
