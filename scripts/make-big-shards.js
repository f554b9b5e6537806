#!/usr/bin/env node
// Makes a large token-shard folder for memory and start-up measurements of `dsmoe train --data <dir>`:
// the training tokens of a small shard folder (from `dsmoe tokenize`) repeated, with EOS between the
// copies, into shards of --shard-size tokens until --size bytes are written; its val.bin is copied.
// The manifest is a complete one (sizes, sha256, sampled-block checksums) for the same tokenizer.
// Needs the compiled TypeScript (`npm run build:ts`). Delete the output afterwards: it is large.
// Usage: node scripts/make-big-shards.js <small shard dir> <out dir> [--size 6G] [--shard-size 500M]
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const dist = path.join(__dirname, '..', 'dist');
const { readManifest, sampleHashFile, MANIFEST_FILE, VAL_FILE } = require(path.join(dist, 'data', 'shards.js'));

function count(v) {
  const m = /^(\d+(?:\.\d+)?)([kmg]?)$/i.exec(v);
  if (!m) throw new Error(`expected a size such as 6G or 500M, got "${v}"`);
  return Math.round(Number(m[1]) * { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2].toLowerCase()]);
}

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  if (i < 0) return dflt;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const sizeBytes = count(opt('--size', '6G'));
const shardTokens = count(opt('--shard-size', '500M'));
const [src, out] = args;
if (!src || !out) {
  console.error('usage: node scripts/make-big-shards.js <small shard dir> <out dir> [--size 6G] [--shard-size 500M]');
  process.exit(1);
}
const m = readManifest(src);
if (!m.complete) throw new Error(`${src} is incomplete`);
const el = m.dtype === 'uint16' ? 2 : 4;
const Arr = m.dtype === 'uint16' ? Uint16Array : Uint32Array;
// One copy of the training stream: the small folder's shards joined by EOS, then an EOS before the next copy.
const parts = m.shards.map((s) => new Arr(fs.readFileSync(path.join(src, s.file)).buffer.slice(0)));
const unit = new Arr(parts.reduce((n, p) => n + p.length + 1, 0));
let o = 0;
for (const p of parts) { unit.set(p, o); o += p.length; unit[o++] = m.eos_id; }
fs.mkdirSync(out, { recursive: true });
const totalTokens = Math.floor(sizeBytes / el);
const shards = [];
let written = 0, pos = 0;
const t0 = Date.now();
while (written < totalTokens) {
  const n = Math.min(shardTokens, totalTokens - written);
  const file = `train-${String(shards.length).padStart(5, '0')}.bin`;
  const fd = fs.openSync(path.join(out, file), 'w');
  const h = crypto.createHash('sha256');
  const chunk = new Arr(1 << 22);
  for (let left = n; left > 0;) {
    const k = Math.min(left, chunk.length);
    for (let i = 0; i < k; i++) { chunk[i] = unit[pos++]; if (pos === unit.length) pos = 0; }
    const bytes = new Uint8Array(chunk.buffer, 0, k * el);
    fs.writeSync(fd, bytes);
    h.update(bytes);
    left -= k;
  }
  fs.closeSync(fd);
  shards.push({ file, tokens: n, documents: 0, first_document: 0, end_document: 0, sha256: h.digest('hex'),
    sample_sha256: sampleHashFile(path.join(out, file)) });
  written += n;
  process.stderr.write(`\r${file}: ${(written * el / 1e9).toFixed(2)} GB written`);
}
process.stderr.write('\n');
if (m.val) fs.copyFileSync(path.join(src, VAL_FILE), path.join(out, VAL_FILE));
const manifest = { ...m, shard_tokens: shardTokens, shards, stats: undefined,
  documents: { ...m.documents, note: 'synthetic: the training stream of the source folder repeated' } };
fs.writeFileSync(path.join(out, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
console.log(`${out}: ${shards.length} shards, ${written} tokens (${(written * el / 1e9).toFixed(2)} GB) in ` +
  `${((Date.now() - t0) / 1000).toFixed(1)} s`);
