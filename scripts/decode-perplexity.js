#!/usr/bin/env node
// Perplexity through the decode path, run by hand. `dsmoe eval` scores a checkpoint with prefill (the
// grouped GEMM over dequantized weights, exact fp32 activations); generation and the server decode
// one token at a time through the GEMV kernels, which with int8 / q4 weights on an AVX-512 VNNI CPU
// round the activations to int8 too. This scores the same held-out windows both ways: every
// prediction after the first token of a window comes from a decode step. Prints a table, writes JSON.
//
//   node scripts/decode-perplexity.js <checkpoint…> [--windows 24] [--len 128] [--routing threshold:0.48]
//        [--out bench-results/decode-perplexity.json]
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const dist = path.join(__dirname, '..', 'dist');
const { loadInferenceModel } = require(path.join(dist, 'infer', 'load.js'));
const { evalData } = require(path.join(dist, 'infer', 'eval.js'));
const { parseRouting } = require(path.join(dist, 'model', 'routing.js'));
const { loadAddon } = require(path.join(dist, 'native', 'addon.js'));

function parseArgs(argv) {
  const o = { dirs: [], windows: 24, len: 128, routing: undefined, out: 'bench-results/decode-perplexity.json' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--windows') o.windows = Number(v());
    else if (a === '--len') o.len = Number(v());
    else if (a === '--routing') o.routing = v();
    else if (a === '--out') o.out = v();
    else if (a === '-h' || a === '--help') {
      console.log(fs.readFileSync(__filename, 'utf8').split('\n').slice(1, 9).join('\n'));
      process.exit(0);
    } else if (a.startsWith('-')) throw new Error(`unknown option ${a}`);
    else o.dirs.push(a);
  }
  if (o.dirs.length === 0) throw new Error('give at least one checkpoint folder');
  if (!(o.windows >= 1 && o.len >= 2)) throw new Error('--windows must be ≥ 1 and --len ≥ 2');
  return o;
}

/** −log softmax(logits)[target], in double precision. */
function nll(logits, target) {
  let max = -Infinity;
  for (let j = 0; j < logits.length; j++) if (logits[j] > max) max = logits[j];
  let sum = 0;
  for (let j = 0; j < logits.length; j++) sum += Math.exp(logits[j] - max);
  return Math.log(sum) + max - logits[target];
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const addon = loadAddon();
  const rows = [];
  for (const dir of o.dirs) {
    const model = loadInferenceModel(dir);
    const routing = o.routing ? parseRouting(o.routing, model.config) : model.config.routing
      ?? { attention: 'dense', mlp: 'dense' };
    const { tokens } = await evalData(model, {});
    const V = model.config.vocab_size, L = Math.min(o.len, model.config.max_seq_len);
    const stride = Math.max(L + 1, Math.floor((tokens.length - L - 1) / o.windows));
    const starts = [];
    for (let s = 0; starts.length < o.windows && s + L + 1 <= tokens.length; s += stride) starts.push(s);
    const session = model.createSession({ batch: 1, maxLen: L, routing });
    const logits = new Float32Array(V), all = new Float32Array(L * V);
    const score = (mode) => {
      let sum = 0, n = 0;
      for (const s of starts) {
        session.reset();
        const win = Int32Array.from(tokens.subarray(s, s + L + 1));
        if (mode === 'prefill') {
          session.prefill({ tokens: win.subarray(0, L), batch: 1, len: L, logits, allLogits: all });
          for (let t = 1; t < L; t++) { sum += nll(all.subarray(t * V, (t + 1) * V), win[t + 1]); n++; }
        } else {
          session.prefill({ tokens: win.subarray(0, 1), batch: 1, len: 1, logits });
          for (let t = 1; t < L; t++) {
            session.decode({ tokens: win.subarray(t, t + 1), logits });
            sum += nll(logits, win[t + 1]);
            n++;
          }
        }
      }
      return { ppl: Math.exp(sum / n), tokens: n };
    };
    const r = { checkpoint: dir, dtype: model.dtype, routing: `${routing.attention} / ${routing.mlp}` };
    r.prefill = score('prefill');
    addon.setInt8Dot({ enabled: false });
    r.decodeFp32 = score('decode');
    r.int8Dot = addon.setInt8Dot({ enabled: true });
    r.decodeInt8Dot = r.int8Dot ? score('decode') : undefined;
    rows.push(r);
    const f = (x) => (x ? x.ppl.toFixed(3) : '—');
    console.log(`${dir} (${r.dtype}, ${r.routing}): ${r.prefill.tokens} predictions; prefill ${f(r.prefill)}, decode ` +
      `fp32 activations ${f(r.decodeFp32)}, decode int8 activations (VNNI) ${f(r.decodeInt8Dot)}`);
  }
  fs.mkdirSync(path.dirname(o.out), { recursive: true });
  fs.writeFileSync(o.out, JSON.stringify({ date: new Date().toISOString(), windows: o.windows, len: o.len, rows },
    null, 2));
  console.log(`JSON written to ${o.out}`);
}

main().catch((e) => {
  console.error(`decode-perplexity: ${e.message}`);
  process.exit(1);
});
