#!/usr/bin/env node
// A soak test of `dsmoe serve`, run by hand (not in CI): C concurrent streaming clients in a closed
// loop for a given time, with the server's resident memory sampled every few seconds. Passes when no
// request failed and the resident memory after warm-up stays flat (its last sample within --rss-slack
// of the first sample after warm-up). Prints a table and writes JSON.
//
//   node scripts/soak-serve.js runs/small-dsmoe [--minutes 10] [--concurrency 16] [--max-tokens 32]
//        [--warmup-s 60] [--sample-s 10] [--rss-slack 0.05] [--out bench-results/soak-serve.json]
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const dist = path.join(__dirname, '..', 'dist');
const { startServeProcess, streamOnce, makePrompt } = require(path.join(dist, 'bench', 'serve.js'));

function parseArgs(argv) {
  const o = { minutes: 10, concurrency: 16, maxTokens: 32, promptTokens: 32, warmupS: 60, sampleS: 10, rssSlack: 0.05,
    out: 'bench-results/soak-serve.json' };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const key = { '--minutes': 'minutes', '--concurrency': 'concurrency', '--max-tokens': 'maxTokens',
      '--prompt-tokens': 'promptTokens', '--warmup-s': 'warmupS', '--sample-s': 'sampleS', '--rss-slack': 'rssSlack',
      '--out': 'out' }[a];
    if (key) {
      const v = argv[++i];
      o[key] = key === 'out' ? v : Number(v);
      if (key !== 'out' && !(o[key] >= 0)) throw new Error(`${a} expects a number ≥ 0, got "${v}"`);
    } else rest.push(a);
  }
  if (rest.length !== 1) throw new Error('usage: node scripts/soak-serve.js <checkpoint> [options] (see the file)');
  o.checkpoint = rest[0];
  return o;
}

function rssMiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const prompt = makePrompt(o.checkpoint, o.promptTokens);
  const server = await startServeProcess(o.checkpoint, o.concurrency);
  const body = { prompt, max_tokens: o.maxTokens, temperature: 0.8, top_p: 0.95, ignore_eos: true };
  const t0 = Date.now(), end = t0 + o.minutes * 60e3;
  const samples = [];
  let ok = 0, errors = 0, tokens = 0, lastTokens = 0;
  const sampler = setInterval(() => {
    const s = { t: (Date.now() - t0) / 1e3, rssMiB: rssMiB(server.pid), requests: ok, errors,
      tokensPerS: (tokens - lastTokens) / o.sampleS };
    lastTokens = tokens;
    samples.push(s);
    process.stderr.write(`  ${s.t.toFixed(0)} s: RSS ${s.rssMiB.toFixed(1)} MiB, ${ok} requests, ${errors} errors, ` +
      `${s.tokensPerS.toFixed(0)} tokens/s\n`);
  }, o.sampleS * 1e3);
  try {
    await Promise.all(Array.from({ length: o.concurrency }, async () => {
      while (Date.now() < end) {
        try {
          const m = await streamOnce(server.url, { ...body, seed: ok + errors });
          if (m.ok) { ok++; tokens += m.tokens; } else errors++;
        } catch {
          errors++;
        }
      }
    }));
  } finally {
    clearInterval(sampler);
    await server.stop();
  }
  const warm = samples.filter((s) => s.t >= o.warmupS);
  const first = warm[0]?.rssMiB, last = warm[warm.length - 1]?.rssMiB;
  const growth = first ? (last - first) / first : NaN;
  const result = {
    date: new Date().toISOString(), checkpoint: path.resolve(o.checkpoint), minutes: o.minutes,
    concurrency: o.concurrency, maxTokens: o.maxTokens, requests: ok, errors,
    generatedTokensPerS: tokens / ((Date.now() - t0) / 1e3),
    rssAfterWarmupMiB: first, rssEndMiB: last, rssMaxAfterWarmupMiB: Math.max(...warm.map((s) => s.rssMiB)),
    rssGrowth: growth, pass: errors === 0 && Number.isFinite(growth) && growth <= o.rssSlack, samples,
  };
  fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
  fs.writeFileSync(o.out, JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(`soak: ${o.minutes} min at ${o.concurrency} clients: ${ok} requests, ${errors} errors, ` +
    `${result.generatedTokensPerS.toFixed(0)} generated tokens/s; RSS after ${o.warmupS} s warm-up ` +
    `${first?.toFixed(1)} MiB, at the end ${last?.toFixed(1)} MiB (${(100 * growth).toFixed(2)} %), ` +
    `max ${result.rssMaxAfterWarmupMiB.toFixed(1)} MiB: ${result.pass ? 'PASS' : 'FAIL'}\nJSON written to ${o.out}\n`);
  process.exitCode = result.pass ? 0 : 1;
}

main().catch((e) => {
  process.stderr.write(`soak-serve: ${e.message}\n`);
  process.exitCode = 1;
});
