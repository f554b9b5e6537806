#!/usr/bin/env node
// Thin launcher for the compiled CLI (dist/). Built by `npm install` (or `npm run build`).
'use strict';
const path = require('node:path');
const fs = require('node:fs');

const entry = path.join(__dirname, '..', 'dist', 'cli', 'index.js');
if (!fs.existsSync(entry)) {
  process.stderr.write(`dsmoe: the CLI is not compiled (missing ${entry}).\nRun: npm run build   (in ` +
    `${path.dirname(__dirname)})\n`);
  process.exit(1);
}
require(entry).main(process.argv).then((code) => {
  process.exitCode = code;
});
