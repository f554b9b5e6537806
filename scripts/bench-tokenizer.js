#!/usr/bin/env node
// Times training the default tokenizer (byte-level BPE, vocab 4096) on the full built-in corpus and
// reports tokens per character and encode speed. Needs the compiled TypeScript: `npm run build:ts`.
// Usage: node scripts/bench-tokenizer.js [vocabSize]
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const dist = path.join(__dirname, '..', 'dist');
const { corpusSentences } = require(path.join(dist, 'data', 'corpus.js'));
const { trainBpe, saveTokenizerJson } = require(path.join(dist, 'tokenizer', 'bpe-train.js'));
const { loadTokenizer } = require(path.join(dist, 'tokenizer', 'tokenizer.js'));

const vocabSize = Number(process.argv[2] ?? 4096);
let t = process.hrtime.bigint();
const ms = () => { const n = process.hrtime.bigint(); const d = Number(n - t) / 1e6; t = n; return d; };
const sentences = corpusSentences();
const chars = sentences.reduce((n, s) => n + s.length, 0);
const readMs = ms();
const model = trainBpe(sentences, { vocabSize });
const trainMs = ms();
const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-bench-')), 'tokenizer.json');
saveTokenizerJson(model, file);
const tok = loadTokenizer(file);
ms();
let tokens = 0;
for (const s of sentences) tokens += tok.encode(s).length;
const encodeMs = ms();
const held = sentences.slice(-5000);
const lib = held.reduce((n, s) => n + tok.encodeLibrary(s).length, 0);
const libMs = ms();
const heldChars = held.reduce((n, s) => n + s.length, 0);
const rows = [
  ['corpus', `${sentences.length} sentences, ${chars} chars (read in ${readMs.toFixed(0)} ms)`],
  ['train', `vocab ${model.vocab.length} (${model.merges.length} merges) in ${(trainMs / 1000).toFixed(2)} s`],
  ['tokens/char', `${(tokens / chars).toFixed(4)} on the training corpus`],
  ['encode', `${(chars / encodeMs / 1000).toFixed(2)} M chars/s (memoised path), ` +
    `${(heldChars / libMs / 1000).toFixed(2)} M chars/s (library encode)`],
];
for (const [k, v] of rows) console.log(`${k.padEnd(12)} ${v}`);
console.log(JSON.stringify({ vocabSize: model.vocab.length, merges: model.merges.length, trainSeconds: trainMs / 1000,
  tokensPerChar: tokens / chars, libraryTokensPerCharHeldOut: lib / heldChars }));
fs.rmSync(path.dirname(file), { recursive: true, force: true });
