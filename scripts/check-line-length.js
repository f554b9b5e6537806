#!/usr/bin/env node
// Fails (exit 1) on any source line longer than 120 characters, listing file:line:length. ESLint checks
// the same limit on the TypeScript and JavaScript; this script also covers the C++/CUDA sources. Lines
// holding a URL are exempt, as in ESLint's max-len (ignoreUrls).
//   node scripts/check-line-length.js [files…]   (default: every file below)
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const MAX = 120;
const root = path.join(__dirname, '..');
const SETS = [
  ['native', /\.(h|cc|cu|inc)$/, true],
  ['src', /\.ts$/, true],
  ['test', /\.ts$/, true],
  ['scripts', /\.js$/, false],
];

function walk(dir, re, deep, out) {
  if (!fs.existsSync(dir)) return out;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) { if (deep) walk(p, re, deep, out); } else if (re.test(e.name)) out.push(p);
  }
  return out;
}

const files = process.argv.length > 2
  ? process.argv.slice(2).map((f) => path.resolve(f))
  : SETS.flatMap(([dir, re, deep]) => walk(path.join(root, dir), re, deep, [])).sort();
let bad = 0;
for (const file of files) {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines.forEach((line, i) => {
    const length = [...line.replace(/\r$/, '')].length;  // characters, not UTF-16 units
    if (length > MAX && !/https?:\/\//.test(line)) {  // as ESLint's max-len ignoreUrls
      bad++;
      console.log(`${path.relative(root, file)}:${i + 1}:${length}`);
    }
  });
}
if (bad) {
  console.error(`check-line-length: ${bad} line(s) longer than ${MAX} characters`);
  process.exit(1);
}
console.log(`check-line-length: ${files.length} files, no line longer than ${MAX} characters`);
