// `dsmoe serve` as a real process on a free 127.0.0.1 port, through the official openai client and
// raw HTTP: completions, chat, streaming, models, metrics, greedy output = `dsmoe generate`, 32
// concurrent clients with mixed routings, every error status, a disconnect mid-stream, SIGTERM.
// Every server started here is killed in afterAll, even when a test fails.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import OpenAI from 'openai';
import { runCli } from '../helpers';
import { makeTinyCheckpoint, type TinyCheckpoint } from '../infer/checkpoint';

const BIN = path.join(__dirname, '..', '..', 'bin', 'dsmoe.js');

interface Server {
  url: string;
  proc: ChildProcess;
  log: () => string;
  exited: Promise<number | null>;
}

const started: ChildProcess[] = [];
let ck: TinyCheckpoint, name: string;

/** Starts `dsmoe serve` on port 0 and resolves once it prints its address. */
function serve(args: string[], env: Record<string, string> = {}): Promise<Server> {
  const proc = spawn(process.execPath, [BIN, 'serve', ck.checkpoint, '--port', '0', ...args], {
    env: { ...process.env, DSMOE_THREADS: '2', DSMOE_CACHE_DIR: ck.cacheDir, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  started.push(proc);
  let text = '';
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start:\n${text}`)), 20000);
    proc.stderr!.on('data', (c: Buffer) => {
      text += c.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(text);
      if (m) { clearTimeout(timer); resolve({ url: m[1], proc, log: () => text, exited }); }
    });
    void exited.then((code) => reject(new Error(`the server exited (${code}):\n${text}`)));
  });
}

async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(url, {
    method: 'POST', headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: r.status, headers: r.headers, json: await r.json() as Record<string, any> };
}

let main: Server;
beforeAll(async () => {
  ck = await makeTinyCheckpoint();
  name = path.basename(ck.checkpoint);
  main = await serve(['--max-batch', '8', '--max-tokens-cap', '24', '--body-limit', '65536', '--grace', '5']);
});
afterAll(async () => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  fs.rmSync(ck.dir, { recursive: true, force: true });
});

const client = () => new OpenAI({ baseURL: `${main.url}/v1`, apiKey: 'unused', maxRetries: 0 });

describe('the API through the openai client', () => {
  test('greedy completion = dsmoe generate --temperature 0, with the same routing', async () => {
    for (const routing of ['dense', 'attention=topk:1,mlp=threshold:0.48']) {
      const r = await client().completions.create({
        model: name, prompt: 'the model', max_tokens: 10, temperature: 0,
        // extension field
        ...{ routing },
      } as OpenAI.CompletionCreateParamsNonStreaming);
      const g = runCli(['generate', ck.checkpoint, 'the model', '--temperature', '0', '--max-tokens', '10',
        '--routing', routing, '--json'], { cacheDir: ck.cacheDir });
      expect(g.code).toBe(0);
      const want = JSON.parse(g.stdout).completions[0];
      expect(r.choices[0].text).toBe(want.text);
      expect(r.choices[0].finish_reason).toBe(want.finish === 'eos' ? 'stop' : 'length');
      expect(r.usage!.completion_tokens).toBe(want.generated_tokens);
      expect(r.model).toBe(name);
      const u = r.usage as unknown as Record<string, number>;
      expect(u.active_params_per_token).toBeGreaterThan(0);
      expect(u.active_expert_share).toBeGreaterThan(0);
      expect(u.active_expert_share).toBeLessThanOrEqual(1);
      if (routing === 'dense') expect(u.active_expert_share).toBeCloseTo(1, 10);
      else expect(u.active_expert_share).toBeLessThan(1);
    }
  });

  test('streaming gives the same text in pieces, then usage; chat streams and not', async () => {
    const params = { model: name, prompt: 'a model of', max_tokens: 12, temperature: 0 };
    const whole = await client().completions.create(params);
    const stream = await client().completions.create({ ...params, stream: true,
      stream_options: { include_usage: true } });
    let text = '', finish: string | null = null, usage: OpenAI.CompletionUsage | undefined, chunks = 0;
    for await (const c of stream) {
      chunks++;
      if (c.choices[0]) { text += c.choices[0].text; finish = c.choices[0].finish_reason ?? finish; }
      if (c.usage) usage = c.usage;
    }
    expect(text).toBe(whole.choices[0].text);
    expect(finish).toBe(whole.choices[0].finish_reason);
    expect(usage?.completion_tokens).toBe(whole.usage?.completion_tokens);
    expect(chunks).toBeGreaterThan(2);

    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: 'user', content: 'the' },
    ];
    const chat = await client().chat.completions.create({ model: name, messages, max_tokens: 8, temperature: 0 });
    expect(chat.object).toBe('chat.completion');
    expect(chat.choices[0].message.role).toBe('assistant');
    // The documented template, as a plain completion.
    const same = await client().completions.create({ model: name, max_tokens: 8, temperature: 0,
      prompt: 'User: the\n\nAssistant:', stop: ['\n\nUser:'] });
    expect(chat.choices[0].message.content).toBe(same.choices[0].text);
    let streamed = '';
    for await (const c of await client().chat.completions.create({ model: name, messages, max_tokens: 8,
      temperature: 0, stream: true })) streamed += c.choices[0]?.delta.content ?? '';
    expect(streamed).toBe(chat.choices[0].message.content);
  });

  test('/v1/models lists the checkpoint with its shape and routing; a prompt list gives a choice each', async () => {
    const list = await client().models.list();
    expect(list.data.map((m) => m.id)).toEqual([name]);
    const m = list.data[0] as unknown as Record<string, any>;
    expect(m.context_length).toBeGreaterThan(0);
    expect(m.routing).toEqual({ attention: expect.any(String), mlp: expect.any(String) });
    const r = await client().completions.create({ model: name, prompt: ['the', 'a model'], max_tokens: 3,
      temperature: 0, ...{ return_expert_usage: true } } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(r.choices.map((c) => c.index)).toEqual([0, 1]);
    const u = r.usage as unknown as { expert_usage: { attention: number[][]; mlp: number[][] } };
    expect(u.expert_usage.mlp.length).toBeGreaterThan(0);
    expect(u.expert_usage.mlp.flat().reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    // ignore_eos: exactly max_tokens tokens, whatever the model samples.
    const fixed = await post(`${main.url}/v1/completions`, { prompt: ['the', 'a', 'x'], max_tokens: 20,
      temperature: 1, seed: 3, ignore_eos: true });
    expect(fixed.json.usage.completion_tokens).toBe(60);
  });

  test('32 concurrent clients with mixed routings all get what they get alone', async () => {
    const routings = ['dense', 'topk:1', 'attention=dense,mlp=threshold:0.48', 'mlp=topk:2'];
    const prompts = ['the', 'a model', 'experts', 'when', 'tokens', 'so the', 'one of', 'x'];
    const jobs = Array.from({ length: 32 }, (_, i) => ({
      model: name, prompt: prompts[i % prompts.length], max_tokens: 4 + (i % 7), temperature: 0,
      routing: routings[i % routings.length],
    }));
    const alone: string[] = [];
    for (const j of jobs) alone.push((await post(`${main.url}/v1/completions`, j)).json.choices[0].text);
    const together = await Promise.all(jobs.map((j) => post(`${main.url}/v1/completions`, j)));
    expect(together.map((r) => r.status)).toEqual(jobs.map(() => 200));
    expect(together.map((r) => r.json.choices[0].text)).toEqual(alone);
  });

  test('/metrics is Prometheus text with requests, queue, tokens, active parameters, expert usage', async () => {
    const r = await fetch(`${main.url}/metrics`);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await r.text();
    expect(text).toMatch(/^dsmoe_requests_total\{endpoint="\/v1\/completions",status="200"\} \d+$/m);
    for (const name of ['dsmoe_queue_depth', 'dsmoe_running_sequences', 'dsmoe_prompt_tokens_total',
      'dsmoe_generated_tokens_total', 'dsmoe_generated_tokens_per_second', 'dsmoe_active_params_per_token']) {
      expect(text).toMatch(new RegExp(`^# TYPE ${name} (counter|gauge)$`, 'm'));
    }
    expect(text).toMatch(/^dsmoe_expert_tokens_total\{model="[^"]+",kind="mlp",expert="0"\} \d+$/m);
    const generated = Number(/^dsmoe_generated_tokens_total\{[^}]*\} (\d+)$/m.exec(text)![1]);
    expect(generated).toBeGreaterThan(100);
    expect(((await (await fetch(`${main.url}/health`)).json()) as { status: string }).status).toBe('ok');
  });
});

describe('bad input and load: an OpenAI-style error naming what is wrong', () => {
  const err = (status: number, message: RegExp, param: string | null = null) =>
    ({ status, json: { error: { message: expect.stringMatching(message), type: expect.any(String), param,
      code: status === 404 ? 'model_not_found' : null } } });

  test.each<[string, unknown, ReturnType<typeof err>]>([
    ['malformed JSON', '{"prompt": "x",', err(400, /malformed JSON/)],
    ['a missing prompt', { max_tokens: 2 }, err(400, /^prompt is required$/, 'prompt')],
    ['a string max_tokens', { prompt: 'x', max_tokens: '5' }, err(400, /max_tokens must be integer/, 'max_tokens')],
    ['max_tokens over the cap', { prompt: 'x', max_tokens: 25 },
      err(400, /over this server's cap of 24/, 'max_tokens')],
    ['token ids as prompt', { prompt: [1, 2] }, err(400, /prompt must be a string or a list/, 'prompt')],
    ['n = 2', { prompt: 'x', n: 2 }, err(400, /^n must be 1/, 'n')],
    ['a bad routing', { prompt: 'x', routing: 'mlp=topk:99' },
      err(400, /routing mlp=topk:99: .*more than the 4 MLP experts/, 'routing')],
    ['a negative temperature', { prompt: 'x', temperature: -1 }, err(400, /temperature must be >= 0/, 'temperature')],
    ['an unknown model', { prompt: 'x', model: 'nope' }, err(404, /model "nope" not found/, 'model')],
    ['a prompt longer than the context', { prompt: 'the '.repeat(400) }, err(400, /tokens long; the model's context/,
      'prompt')],
  ])('%s', async (_, body, want) => {
    const r = await post(`${main.url}/v1/completions`, body);
    expect({ status: r.status, json: r.json }).toEqual(want);
  });

  test('an unknown route is 404; a body over --body-limit is 413', async () => {
    const r = await post(`${main.url}/v1/engines`, { prompt: 'x' });
    expect(r.status).toBe(404);
    expect(r.json.error.message).toMatch(/no route POST \/v1\/engines/);
    const big = await post(`${main.url}/v1/completions`, { prompt: 'x'.repeat(70000) });
    expect(big.status).toBe(413);
    expect(big.json.error.message).toMatch(/over the limit of 65536 bytes/);
  });

  test('a client that disconnects mid-stream frees its sequence; the server goes on', async () => {
    // Steps slowed to 20 ms: the request is still running when the client hangs up.
    const slow = await serve(['--max-batch', '2'], { DSMOE_SERVE_STEP_DELAY_MS: '20' });
    const main = slow;
    const before = await (await fetch(`${main.url}/metrics`)).text();
    const count499 = (t: string) => Number(/status="499"\} (\d+)/.exec(t)?.[1] ?? 0);
    await new Promise<void>((resolve, reject) => {
      const req = http.request(`${main.url}/v1/completions`, { method: 'POST',
        headers: { 'content-type': 'application/json' } }, (res) => {
        expect(res.statusCode).toBe(200);
        res.once('data', () => { req.destroy(); resolve(); });  // the first event, then hang up
      });
      req.on('error', (e) => { if (!req.destroyed) reject(e); });
      req.end(JSON.stringify({ prompt: 'the', max_tokens: 24, temperature: 0, stream: true }));
    });
    for (let i = 0; i < 100; i++) {
      const text = await (await fetch(`${main.url}/metrics`)).text();
      if (count499(text) > count499(before) && /dsmoe_running_sequences\{[^}]*\} 0$/m.test(text)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const after = await (await fetch(`${main.url}/metrics`)).text();
    expect(count499(after)).toBe(count499(before) + 1);
    expect(after).toMatch(/dsmoe_running_sequences\{[^}]*\} 0$/m);
    expect(main.log()).toMatch(/POST \/v1\/completions 499 .*client disconnected/);
    // It left before its 24 tokens (each a 20 ms step); the slot serves the next request.
    const generated = Number(/^dsmoe_generated_tokens_total\{[^}]*\} (\d+)$/m.exec(after)![1]);
    expect(generated).toBeLessThan(10);
    const r = await post(`${main.url}/v1/completions`, { prompt: 'the', max_tokens: 2 });
    expect(r.status).toBe(200);
    slow.proc.kill('SIGTERM');
    expect(await slow.exited).toBe(0);
  });

  test('API key: 401 without or with a wrong key, /health open; a full queue is 429 with Retry-After', async () => {
    const s = await serve(['--max-batch', '1', '--max-queue', '1', '--quiet'], { DSMOE_API_KEY: 'sesame' });
    const body = { prompt: 'the', max_tokens: 24, temperature: 0 };
    expect((await post(`${s.url}/v1/completions`, body)).status).toBe(401);
    const wrong = await post(`${s.url}/v1/completions`, body, { authorization: 'Bearer nope' });
    expect(wrong.status).toBe(401);
    expect(wrong.json.error).toMatchObject({ message: 'wrong API key', code: 'invalid_api_key' });
    expect((await fetch(`${s.url}/health`)).status).toBe(200);
    const key = { authorization: 'Bearer sesame' };
    const results = await Promise.all(Array.from({ length: 24 }, () => post(`${s.url}/v1/completions`, body, key)));
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((x) => x === 200).length).toBeGreaterThanOrEqual(2);
    const busy = results.filter((r) => r.status === 429);
    expect(busy.length).toBeGreaterThan(0);
    expect(statuses.every((x) => x === 200 || x === 429)).toBe(true);
    expect(busy[0].headers.get('retry-after')).toBe('1');
    expect(busy[0].json.error.message).toMatch(/--max-queue/);
    s.proc.kill('SIGTERM');
    expect(await s.exited).toBe(0);
  });

  test('--timeout: a request that runs past it is 504', async () => {
    const s = await serve(['--timeout', '0.001', '--quiet']);
    const r = await post(`${s.url}/v1/completions`, { prompt: 'the', max_tokens: 24 });
    expect(r.status).toBe(504);
    expect(r.json.error.message).toMatch(/longer than 0.001 s \(--timeout\)/);
    s.proc.kill('SIGTERM');
    expect(await s.exited).toBe(0);
  });
});

test('bad command lines are one clear line: missing checkpoint, bad option, port in use, --device cuda', () => {
  const run = (args: string[]) => runCli(['serve', ...args], { cacheDir: ck.cacheDir });
  expect(run(['nope']).stderr).toMatch(/^dsmoe: checkpoint folder not found: nope$/m);
  expect(run([ck.checkpoint, '--port', 'x']).stderr).toMatch(/--port expects an integer ≥ 0, got "x"/);
  expect(run([ck.checkpoint, '--max-batch', '0']).stderr).toMatch(/--max-batch expects an integer ≥ 1/);
  const port = new URL(main.url).port;
  const busy = run([ck.checkpoint, '--port', port]);
  expect({ code: busy.code, stderr: busy.stderr }).toEqual({ code: 1,
    stderr: `dsmoe: port ${port} on 127.0.0.1 is in use: choose another with --port\n` });
  const cuda = run([ck.checkpoint, '--device', 'cuda']);
  expect(cuda.code).toBe(2);
  expect(cuda.stderr).toMatch(/cuda/i);
});

test('SIGTERM: running requests finish, then the process exits 0; new connections are refused', async () => {
  const s = await serve(['--grace', '20'], { DSMOE_SERVE_STEP_DELAY_MS: '10' });
  const text = fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'the', max_tokens: 24, temperature: 0, stream: true }) })
    .then((r) => r.text());
  await new Promise((r) => setTimeout(r, 60));  // running: 24 tokens take ≥ 240 ms
  s.proc.kill('SIGTERM');
  const body = await text;
  expect(body.trimEnd().endsWith('data: [DONE]')).toBe(true);
  expect(body).toMatch(/"finish_reason":"(length|stop)"/);
  expect(await s.exited).toBe(0);
  expect(s.log()).toMatch(/SIGTERM: no new requests/);
  await expect(fetch(`${s.url}/health`)).rejects.toThrow();
});
