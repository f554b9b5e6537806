#!/usr/bin/env node
// Decode/prefill tokens/s with dense and sparse routing on a synthetic bf16 model, against the bytes
// each token reads and the measured read bandwidth. Needs the addon and the compiled TypeScript
// (`npm run build`). Usage:
//   node scripts/bench-decode.js [--threads N] [--prompt 128] [--tokens 24] [--rounds 3] [--routing dense,topk:2,…]
//                                [--layers 8] [--json out.json]
'use strict';
const fs = require('fs');
const path = require('path');
const { runDecodeBench, formatDecodeBench } = require(path.join(__dirname, '..', 'dist', 'bench', 'decode.js'));

const args = process.argv.slice(2);
const opt = (name, fallback) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : fallback; };
const json = opt('json', path.join('bench-results', `decode-${new Date().toISOString().replace(/[:.]/g, '-')}.json`));
runDecodeBench({
  threads: opt('threads') ? Number(opt('threads')) : undefined,
  promptLen: Number(opt('prompt', 128)),
  decodeTokens: Number(opt('tokens', 24)),
  rounds: Number(opt('rounds', 3)),
  routings: opt('routing') ? opt('routing').split(',') : undefined,
  config: opt('layers') ? { n_layers: Number(opt('layers')) } : undefined,
  log: (l) => console.error(`[bench] ${l}`),
}).then((r) => {
  console.log(formatDecodeBench(r));
  fs.mkdirSync(path.dirname(path.resolve(json)), { recursive: true });
  fs.writeFileSync(json, JSON.stringify(r, null, 2));
  console.log(`\nJSON: ${json}`);
}).catch((e) => { console.error(e); process.exit(1); });
