// Generation on a tiny trained checkpoint: greedy decoding against argmax done by hand through the
// session, seeded sampling, top-k / top-p limits, stop strings, max-tokens, batches against single
// prompts, streaming, incremental detokenization of multi-byte characters, active parameters.
import * as fs from 'node:fs';
import { loadCheckpoint } from '../../src/checkpoint/checkpoint';
import { generate, TextStream, type GenerateOptions } from '../../src/infer/generate';
import { loadInferenceModel, type InferenceModel } from '../../src/infer/load';
import { parseRouting } from '../../src/infer/routing';
import { argmax } from '../../src/infer/sample';
import { paramCount } from '../../src/model/config';
import { loadTokenizer } from '../../src/tokenizer/tokenizer';
import { addon } from '../helpers';
import { makeTinyCheckpoint, type TinyCheckpoint } from './checkpoint';

let ck: TinyCheckpoint;
let model: InferenceModel;
beforeAll(async () => {
  ck = await makeTinyCheckpoint();
  model = loadInferenceModel(ck.checkpoint);
});
afterAll(() => fs.rmSync(ck.dir, { recursive: true, force: true }));

const dense = { attention: 'dense', mlp: 'dense' };
const opts = (over: Partial<GenerateOptions> = {}): GenerateOptions => ({ maxTokens: 12, temperature: 0, routing: dense, ...over });
const gen1 = async (prompt: string, over: Partial<GenerateOptions> = {}) => (await generate(model, [prompt], opts(over))).completions[0];

describe('generate', () => {
  test('the checkpoint is mapped, not copied, and its routing default comes from config.json', () => {
    expect(model.inMemory).toBe(false);
    expect(model.dtype).toBe('F32');
    expect(parseRouting(undefined, model.config)).toEqual(model.config.routing);
  });

  test.each([['dense', dense], ['threshold:0.48', { attention: 'threshold:0.48', mlp: 'threshold:0.48' }], ['topk:1', { attention: 'topk:2', mlp: 'topk:1' }]])(
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
        const t = argmax(logits);
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

  test('top-k 1 and a tiny top-p equal greedy at any temperature', async () => {
    const greedy = await gen1('dense and', { maxTokens: 16 });
    expect((await gen1('dense and', { maxTokens: 16, temperature: 1.5, topK: 1, seed: 9 })).tokens).toEqual(greedy.tokens);
    expect((await gen1('dense and', { maxTokens: 16, temperature: 1.5, topP: 1e-9, seed: 9 })).tokens).toEqual(greedy.tokens);
  });

  test('max-tokens and stop strings', async () => {
    const five = await gen1('the router', { maxTokens: 5 });
    expect(five.tokens.length).toBeLessThanOrEqual(5);
    if (five.finish === 'length') expect(five.tokens.length).toBe(5);
    const full = await gen1('the router', { maxTokens: 20 });
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
      const batch = await generate(model, prompts, opts({ maxTokens: 100, temperature: 1, seed, routing: { attention: 'topk:2', mlp: 'threshold:0.48' } }));
      for (let i = 0; i < prompts.length; i++) {
        const alone = await gen1(prompts[i], { maxTokens: 100, temperature: 1, seed: seed + i, routing: { attention: 'topk:2', mlp: 'threshold:0.48' } });
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
    const sparse = await generate(model, ['the model'], opts({ maxTokens: 4, routing: { attention: 'topk:1', mlp: 'topk:1' } }));
    expect(sparse.stats.activeExpertShare).toBe(0.25);
    expect(sparse.stats.activeParamsPerToken).toBeLessThan(r.stats.activeParamsPerToken);
  });

  test('errors: empty prompt, prompt longer than the context', async () => {
    await expect(generate(model, [''], opts())).rejects.toThrow(/the prompt is empty/);
    const long = 'the model '.repeat(40);
    await expect(generate(model, [long], opts())).rejects.toThrow(/the prompt is \d+ tokens long, longer than the model's context of 32 tokens/);
    await expect(generate(model, ['a', ''], opts())).rejects.toThrow(/prompt 2 is empty/);
  });

  test('a generation that reaches the context stops there', async () => {
    const r = await gen1('the model of the router', { maxTokens: 100, temperature: 1, seed: 3 });
    if (r.finish === 'context') expect(r.promptTokens + r.tokens.length).toBe(model.config.max_seq_len + 1);
    expect(r.promptTokens + r.tokens.length).toBeLessThanOrEqual(model.config.max_seq_len + 1);
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
