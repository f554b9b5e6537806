#!/usr/bin/env node
// Speed of two builds in one run: `dsmoe bench train` and `dsmoe bench decode` alternately on build A
// (e.g. a git worktree of the commit before a refactor) and build B (this checkout), best of
// --rounds each, then the B/A ratio per configuration. The machine is noisy; only ratios from one
// interleaved run are meaningful. Prints a table and writes JSON.
//
//   git worktree add /tmp/old <commit> && (cd /tmp/old && npm ci)      # or reuse a built tree
//   node scripts/ab-bench.js --a /tmp/old/bin/dsmoe.js --rounds 3 --out bench-results/ab.json
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function parseArgs(argv) {
  const o = {
    a: null, b: path.join(__dirname, '..', 'bin', 'dsmoe.js'), rounds: 3, out: 'bench-results/ab.json',
    presets: 'small,medium', modes: 'dense,dsmoe', decode: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--a') o.a = path.resolve(v());
    else if (a === '--b') o.b = path.resolve(v());
    else if (a === '--rounds') o.rounds = Number(v());
    else if (a === '--out') o.out = v();
    else if (a === '--presets') o.presets = v();
    else if (a === '--modes') o.modes = v();
    else if (a === '--no-decode') o.decode = false;
    else if (a === '-h' || a === '--help') {
      process.stdout.write('usage: node scripts/ab-bench.js --a OLD/bin/dsmoe.js [--b bin/dsmoe.js] [--rounds 3]\n'
        + '       [--presets small,medium] [--modes dense,dsmoe] [--no-decode] [--out bench-results/ab.json]\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!o.a) throw new Error('give --a path/to/the/other/build/bin/dsmoe.js');
  if (!(o.rounds >= 1)) throw new Error('--rounds must be >= 1');
  return o;
}

function bench(cli, args) {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-ab-')), 'r.json');
  const r = spawnSync(process.execPath, [cli, 'bench', ...args, '--out', file], {
    encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 1 << 26,
  });
  if (r.status !== 0) throw new Error(`${cli} bench ${args.join(' ')} exited with ${r.status}:\n${r.stderr}`);
  const json = JSON.parse(fs.readFileSync(file, 'utf8'));
  fs.rmSync(path.dirname(file), { recursive: true, force: true });
  return json;
}

// key → tokens/s for one bench run (the field names of src/bench/train.ts and decode.ts).
function trainRates(json) {
  const out = {};
  for (const r of json.rows) out[`train ${r.preset}/${r.mode}`] = r.tokensPerSecond;
  return out;
}
function decodeRates(json) {
  const out = {};
  for (const r of json.rows) {
    out[`decode ${r.routing}`] = r.decodeTokensPerS;
    out[`prefill ${r.routing}`] = r.prefillTokensPerS;
  }
  return out;
}

function main() {
  const o = parseArgs(process.argv.slice(2));
  const best = { a: {}, b: {} };
  const keep = (side, rates) => {
    for (const [k, v] of Object.entries(rates)) {
      if (typeof v !== 'number') continue;
      best[side][k] = Math.max(best[side][k] ?? 0, v);
    }
  };
  for (let round = 1; round <= o.rounds; round++) {
    for (const side of round % 2 ? ['a', 'b'] : ['b', 'a']) {  // alternate who goes first
      const cli = o[side];
      process.stderr.write(`round ${round}/${o.rounds}: ${side} (${cli})\n`);
      keep(side, trainRates(bench(cli, ['train', '--presets', o.presets, '--modes', o.modes, '--steps', '4'])));
      if (o.decode) keep(side, decodeRates(bench(cli, ['decode', '--rounds', '3'])));
    }
  }
  const rows = Object.keys(best.a).filter((k) => k in best.b).map((k) => ({
    config: k, a: best.a[k], b: best.b[k], ratio: best.b[k] / best.a[k],
  }));
  if (rows.length === 0) throw new Error('no configuration measured on both builds (unexpected JSON fields?)');
  const w = Math.max(...rows.map((r) => r.config.length));
  process.stdout.write(`${'configuration'.padEnd(w)}  ${'A tok/s'.padStart(10)}  ${'B tok/s'.padStart(10)}  B/A\n`);
  for (const r of rows) {
    process.stdout.write(`${r.config.padEnd(w)}  ${r.a.toFixed(1).padStart(10)}  ${r.b.toFixed(1).padStart(10)}  `
      + `${r.ratio.toFixed(3)}\n`);
  }
  fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
  fs.writeFileSync(o.out, JSON.stringify({ a: o.a, b: o.b, rounds: o.rounds, rows }, null, 1) + '\n');
  process.stdout.write(`wrote ${o.out}\n`);
}

try {
  main();
} catch (e) {
  process.stderr.write(`ab-bench: ${e.message}\n`);
  process.exit(2);
}
