#!/usr/bin/env node
// Writes the built-in corpus repeated to a given size as one text file (paragraphs of five sentences),
// for `dsmoe tokenize` throughput measurements (BENCHMARKS.md). Needs the compiled TypeScript.
// Usage: node scripts/make-big-text.js <out.txt> [size, default 1G]
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { corpusSentences } = require(path.join(__dirname, '..', 'dist', 'data', 'corpus.js'));

const [out, sizeArg = '1G'] = process.argv.slice(2);
if (!out) {
  console.error('usage: node scripts/make-big-text.js <out.txt> [size such as 200M or 1G]');
  process.exit(1);
}
const m = /^(\d+(?:\.\d+)?)([kmg]?)$/i.exec(sizeArg);
if (!m) throw new Error(`expected a size such as 200M or 1G, got "${sizeArg}"`);
const target = Math.round(Number(m[1]) * { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2].toLowerCase()]);
const s = corpusSentences();
const paras = [];
for (let i = 0; i < s.length; i += 5) paras.push(s.slice(i, i + 5).join('\n'));
const unit = Buffer.from(paras.join('\n\n') + '\n\n', 'utf8');
const fd = fs.openSync(out, 'w');
let n = 0;
while (n < target) n += fs.writeSync(fd, unit, 0, Math.min(unit.length, target - n));
fs.closeSync(fd);
console.log(`${out}: ${n} bytes (${(n / unit.length).toFixed(2)} copies of the built-in corpus)`);
