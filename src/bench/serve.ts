// The serving benchmark: a real `dsmoe serve` process under a closed-loop load of C concurrent
// streaming clients (each sends its next request as soon as the last one ends), for C in 1, 4, 16,
// 64. Every request has the same prompt length and generates exactly max_tokens tokens
// (ignore_eos), greedy, so the levels do the same work per request.
//
// Reported per level: requests/s, generated tokens/s over the wall time (prefills included), the
// aggregate decode throughput (each stream's decode rate after its first token, (tokens − 1) / time
// from the first token to the last, summed over the C concurrent streams), time to first token and
// inter-token latency p50 / p99 (from the streamed events, as a client sees them). The yardstick:
// continuous batching shares each weight read among the running sequences, so at C = 16 the
// aggregate decode throughput should be ≥ 4× that at C = 1.
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { loadTokenizer } from '../tokenizer/tokenizer';
import { renderTable } from '../util/table';

export interface ServeBenchOptions {
  checkpoint: string;
  concurrency?: number[];
  /** requests per level: max(minRequests, requestsPerClient · C) */
  requestsPerClient?: number;
  minRequests?: number;
  promptTokens?: number;
  maxTokens?: number;
  routing?: string;
  threads?: number;
  log?: (line: string) => void;
}

export interface ServeBenchRow {
  concurrency: number;
  requests: number;
  seconds: number;
  requestsPerS: number;
  generatedTokensPerS: number;
  /** C × the mean decode rate of a stream after its first token */
  decodeTokensPerS: number;
  ttftP50Ms: number;
  ttftP99Ms: number;
  itlP50Ms: number;
  itlP99Ms: number;
  /** generated tokens/s over that at concurrency 1 */
  vsC1: number;
  /** decode tokens/s over that at concurrency 1 (the yardstick) */
  decodeVsC1: number;
  errors: number;
}

export interface ServeBenchResult {
  date: string;
  checkpoint: string;
  model: string;
  routing: string | null;
  promptTokens: number;
  maxTokens: number;
  threads: number | null;
  rows: ServeBenchRow[];
  target: { c16OverC1: number };
}

const BIN = path.join(__dirname, '..', '..', 'bin', 'dsmoe.js');

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

/** A prompt of exactly n tokens of ordinary text (or as close as the tokenizer's round trip allows). */
export function makePrompt(checkpoint: string, n: number): string {
  const tok = loadTokenizer(path.join(checkpoint, 'tokenizer.json'));
  const base = 'The experts of a mixture model are small networks, and the router chooses for every token the ' +
    'few of them it needs; dense training teaches each token to need only a few. ';
  const ids = Array.from(tok.encode(base.repeat(Math.ceil((4 * n) / base.length) + 2))).slice(0, n);
  return tok.decode(ids);
}

export interface Measured {
  /** ms from sending to the first text; ms between texts; ms from the first text to the end */
  ttft: number;
  gaps: number[];
  decodeMs: number;
  tokens: number;
  ok: boolean;
}

/** One streaming request; times the events as they arrive. */
export async function streamOnce(url: string, body: Record<string, unknown>): Promise<Measured> {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
  });
  if (r.status !== 200 || !r.body) { await r.text(); return { ttft: 0, gaps: [], decodeMs: 0, tokens: 0, ok: false }; }
  const decoder = new TextDecoder();
  let buf = '', last = 0, ttft = 0, tokens = 0;
  const gaps: number[] = [];
  for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
    const now = performance.now();
    buf += decoder.decode(chunk, { stream: true });
    let at: number;
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, at);
      buf = buf.slice(at + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const msg = JSON.parse(ev.slice(6)) as { choices: { text: string }[]; usage?: { completion_tokens: number } };
      if (msg.usage) tokens = msg.usage.completion_tokens;
      if (!msg.choices[0]?.text) continue;
      if (ttft === 0) ttft = now - t0;
      else gaps.push(now - last);
      last = now;
    }
  }
  return { ttft, gaps, decodeMs: performance.now() - t0 - ttft, tokens, ok: tokens > 0 };
}

/** Starts `dsmoe serve` on a free port; resolves to its URL, its pid and a stop function. */
export async function startServeProcess(checkpoint: string, maxBatch: number, threads?: number) {
  const args = [BIN, 'serve', checkpoint, '--port', '0', '--quiet', '--max-batch', String(maxBatch),
    '--max-queue', '4096', ...(threads ? ['--threads', String(threads)] : [])];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let text = '';
  const url = await new Promise<string>((resolve, reject) => {
    proc.stderr!.on('data', (c: Buffer) => {
      text += c.toString();
      const m = /listening on (http:\/\/[^\s]+)/.exec(text);
      if (m) resolve(m[1]);
    });
    proc.on('exit', (code) => reject(new Error(`dsmoe serve exited (${code}): ${text.trim()}`)));
  });
  const stop = () => new Promise<void>((resolve) => {
    if (proc.exitCode !== null) { resolve(); return; }
    proc.on('exit', () => resolve());
    proc.kill('SIGTERM');
  });
  return { url, pid: proc.pid!, stop };
}

export async function runServeBench(o: ServeBenchOptions): Promise<ServeBenchResult> {
  const levels = o.concurrency ?? [1, 4, 16, 64];
  const promptTokens = o.promptTokens ?? 32, maxTokens = o.maxTokens ?? 32;
  const prompt = makePrompt(o.checkpoint, promptTokens);
  const server = await startServeProcess(o.checkpoint, Math.max(...levels), o.threads);
  const rows: ServeBenchRow[] = [];
  try {
    const body = { prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true,
      ...(o.routing ? { routing: o.routing } : {}) };
    await streamOnce(server.url, body);  // warm-up: first-touch of the weights and workspaces
    for (const c of levels) {
      const total = Math.max(o.minRequests ?? 16, (o.requestsPerClient ?? 4) * c);
      let next = 0, errors = 0;
      const results: Measured[] = [];
      const t0 = performance.now();
      await Promise.all(Array.from({ length: c }, async () => {
        while (next < total) {
          next++;
          const m = await streamOnce(server.url, body);
          if (m.ok) results.push(m); else errors++;
        }
      }));
      const seconds = (performance.now() - t0) / 1e3;
      const tokens = results.reduce((a, m) => a + m.tokens, 0);
      const ttfts = results.map((m) => m.ttft), gaps = results.flatMap((m) => m.gaps);
      const rates = results.filter((m) => m.tokens > 1 && m.decodeMs > 0).map((m) => (m.tokens - 1) / m.decodeMs * 1e3);
      const decodeTokensPerS = (c * rates.reduce((a, x) => a + x, 0)) / Math.max(rates.length, 1);
      const row: ServeBenchRow = {
        concurrency: c, requests: results.length, seconds, requestsPerS: results.length / seconds,
        generatedTokensPerS: tokens / seconds, decodeTokensPerS,
        ttftP50Ms: quantile(ttfts, 0.5), ttftP99Ms: quantile(ttfts, 0.99),
        itlP50Ms: quantile(gaps, 0.5), itlP99Ms: quantile(gaps, 0.99),
        vsC1: rows.length ? tokens / seconds / rows[0].generatedTokensPerS : 1,
        decodeVsC1: rows.length ? decodeTokensPerS / rows[0].decodeTokensPerS : 1, errors,
      };
      rows.push(row);
      o.log?.(`concurrency ${c}: ${row.requests} requests in ${seconds.toFixed(1)} s, ` +
        `${row.generatedTokensPerS.toFixed(0)} tokens/s (decode ${decodeTokensPerS.toFixed(0)}), ` +
        `ITL p99 ${row.itlP99Ms.toFixed(1)} ms`);
    }
  } finally {
    await server.stop();
  }
  return {
    date: new Date().toISOString(), checkpoint: path.resolve(o.checkpoint), model: path.basename(o.checkpoint),
    routing: o.routing ?? null, promptTokens, maxTokens, threads: o.threads ?? null, rows, target: { c16OverC1: 4 },
  };
}

export function formatServeBench(r: ServeBenchResult): string {
  const c16 = r.rows.find((x) => x.concurrency === 16);
  return [
    `dsmoe serve, model ${r.model} (routing ${r.routing ?? 'its default'}); closed loop, ${r.promptTokens} prompt ` +
      `tokens, ${r.maxTokens} generated per request (greedy, ignore_eos), streamed`,
    renderTable(
      ['clients', 'requests', 'req/s', 'gen tok/s', '× C=1', 'decode tok/s', '× C=1', 'TTFT p50', 'TTFT p99',
        'ITL p50', 'ITL p99', 'errors'],
      r.rows.map((x) => [String(x.concurrency), String(x.requests), x.requestsPerS.toFixed(2),
        x.generatedTokensPerS.toFixed(0), `${x.vsC1.toFixed(2)}×`, x.decodeTokensPerS.toFixed(0),
        `${x.decodeVsC1.toFixed(2)}×`, `${x.ttftP50Ms.toFixed(0)} ms`,
        `${x.ttftP99Ms.toFixed(0)} ms`, `${x.itlP50Ms.toFixed(1)} ms`, `${x.itlP99Ms.toFixed(1)} ms`,
        String(x.errors)]),
    ),
    c16 ? `at 16 clients: ${c16.decodeVsC1.toFixed(2)}× the aggregate decode tokens/s of 1 client ` +
      `(target ≥ ${r.target.c16OverC1}×), ${c16.vsC1.toFixed(2)}× its generated tokens/s with prefills included`
      : '',
  ].join('\n');
}
