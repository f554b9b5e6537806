// The continuous-batching engine in-process: requests joining and leaving a running batch with
// different routings get what generate gives each alone; cancellation frees the slot at the next
// step; a full queue and a closed engine are errors at once.
import * as fs from 'node:fs';
import { generate, type Completion } from '../../src/infer/generate';
import type { InferenceModel } from '../../src/infer/load';
import type { Routing } from '../../src/model/routing';
import { EngineClosedError, ModelEngine, QueueFullError, type EngineRequest } from '../../src/serve/engine';
import { openTinyModel, type TinyCheckpoint } from '../infer/checkpoint';

let ck: TinyCheckpoint, model: InferenceModel;
beforeAll(async () => { ({ ck, model } = await openTinyModel()); });
afterAll(() => fs.rmSync(ck.dir, { recursive: true, force: true }));

const ROUTINGS: Routing[] = [
  { attention: 'dense', mlp: 'dense' }, { attention: 'topk:1', mlp: 'threshold:0.48' },
  { attention: 'threshold:0.9', mlp: 'topk:2' }, { attention: 'dense', mlp: 'threshold:1.5' },
];
const PROMPTS = ['the', 'a model of', 'experts', 'when the router', 'one', 'tokens and', 'x', 'so the'];

function request(i: number, extra: Partial<EngineRequest> = {}): EngineRequest {
  return {
    promptIds: Array.from(model.tokenizer.encode(PROMPTS[i % PROMPTS.length])), maxTokens: 4 + (i % 5),
    sampling: { temperature: 0 }, seed: 1, stop: [], routing: ROUTINGS[i % ROUTINGS.length], ...extra,
  };
}

test('a stream of greedy requests with mixed routings, 3 slots: each text is what generate gives alone', async () => {
  const n = 11;
  const alone: Completion[] = [];
  for (let i = 0; i < n; i++) {
    const r = request(i);
    const g = await generate(model, [PROMPTS[i % PROMPTS.length]], { maxTokens: r.maxTokens, temperature: 0,
      routing: r.routing });
    alone.push(g.completions[0]);
  }
  const engine = new ModelEngine(model, 3, 64, ROUTINGS[0]);
  try {
    // Requests arrive while others run: a few at once, then more between steps.
    const pieces: string[][] = Array.from({ length: n }, () => []);
    const pending = [];
    for (let i = 0; i < n; i++) {
      pending.push(engine.submit(request(i, { onText: (t) => pieces[i].push(t) })));
      if (i % 4 === 3) await new Promise((r) => setTimeout(r, 2));
    }
    const done = await Promise.all(pending);
    done.forEach((d, i) => {
      expect(d.text).toBe(alone[i].text);
      expect(pieces[i].join('')).toBe(d.text);
      expect(d.completionTokens).toBe(alone[i].tokens.length);
      expect(d.finishReason).toBe(alone[i].finish === 'eos' ? 'stop' : 'length');
      expect(d.stats.routing).toEqual(ROUTINGS[i % ROUTINGS.length]);
      // The sequence's own counters: its prompt and the tokens decoded after the first.
      expect(d.stats.tokens).toBe(d.promptTokens + d.completionTokens - 1);
    });
    // Sparser routings use fewer parameters per token.
    expect(done[1].stats.activeParamsPerToken).toBeLessThan(done[0].stats.activeParamsPerToken);
    expect(engine.running).toBe(0);
    expect(engine.counters.generatedTokens).toBe(done.reduce((a, d) => a + d.completionTokens, 0));
  } finally {
    await engine.close();
  }
});

test('a cancelled request leaves at the next step and frees its slot; the queue limit; close', async () => {
  // 3 ms per step: a request of ~30 steps is still running when the test closes the engine.
  const engine = new ModelEngine(model, 1, 1, ROUTINGS[0], 3);
  try {
    const ac = new AbortController();
    let pieces = 0;
    const first = engine.submit(request(0, { maxTokens: 1000, signal: ac.signal, onText: () => {
      if (++pieces === 2) ac.abort(new Error('client gone'));
    } }));
    await new Promise((r) => setImmediate(r));  // the loop admits it
    expect(engine.running).toBe(1);
    const second = engine.submit(request(1));  // waits for the only slot
    expect(() => engine.submit(request(2))).toThrow(QueueFullError);  // the queue (1) is full
    await expect(first).rejects.toThrow('client gone');
    const d = await second;  // it got the freed slot
    expect(d.completionTokens).toBeGreaterThan(0);
    expect(engine.counters.generatedTokens).toBeLessThan(20);  // the cancelled one did not run on
    const ac2 = new AbortController();
    ac2.abort(new Error('gone before it started'));
    await expect(engine.submit(request(3, { signal: ac2.signal }))).rejects.toThrow('gone before it started');
    const running = engine.submit(request(0, { maxTokens: 1000 }));
    const cut = expect(running).rejects.toThrow(EngineClosedError);
    await new Promise((r) => setTimeout(r, 5));
    await engine.close('shutting down');
    await cut;
    await expect(engine.submit(request(0))).rejects.toThrow(EngineClosedError);
  } finally {
    await engine.close();
  }
});
