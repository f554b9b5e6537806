#!/usr/bin/env node
// npm's install script for dsmoe.
//
// In a clone (`npm install` / `npm ci` run in this package's own folder): build the addon from source
// and compile the TypeScript, as always.
//
// Installed as a package (`npm install -g dsmoe`, a dependency, `npx dsmoe`): the package ships the
// compiled JavaScript (dist/) and prebuilt addons (prebuilds/), so nothing is compiled when one
// matches this machine and loads in a child process. Otherwise (another platform, a prebuild that
// does not load here, or DSMOE_BUILD_FROM_SOURCE=1) the addon is built from source into build/.
// When npm skips this script (its install-scripts policy, --ignore-scripts), a matching prebuild
// still works: the CLI finds it at run time.
//
// Can also be run by hand: DSMOE_BUILD_FROM_SOURCE=1 node scripts/install.js
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const env = process.env;

function log(msg) {
  console.error(`[dsmoe] ${msg}`);
}

function fail(msg) {
  log(msg);
  process.exit(1);
}

function isInside(child, parent) {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

// npm runs install scripts with INIT_CWD = the folder npm was started in: this package's own folder
// (or one inside it) for a clone's `npm install`, the consumer's folder for a dependency or npx.
function isDevInstall() {
  if (env.npm_config_global === 'true') return false;
  if (path.resolve(root).split(path.sep).includes('node_modules')) return false;
  return Boolean(env.INIT_CWD) && isInside(path.resolve(env.INIT_CWD), root);
}

function run(args, extraEnv) {
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env: { ...env, ...extraEnv } });
  if (r.error) throw r.error;
  return r.status === 0;
}

function buildAddon() {
  return run([path.join(__dirname, 'build-addon.js')]);
}

function compileTypeScript() {
  let tsc;
  try {
    tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
  } catch {
    return false;
  }
  log('tsc -p tsconfig.json');
  return run([tsc, '-p', 'tsconfig.json']);
}

const distEntry = path.join(root, 'dist', 'cli', 'index.js');

function loader() {
  return require(path.join(root, 'dist', 'native', 'loader.js'));
}

// Loads the addon the CLI would load in a child process; returns the failure message or undefined.
function check() {
  const l = loader();
  try {
    const loc = l.checkedAddon({ root });
    log(l.describeAddon(loc, root));
    return undefined;
  } catch (err) {
    return err.message;
  }
}

function buildFromSource(why) {
  log(`${why}: building the addon from source (cmake-js, or node-gyp where cmake is missing)`);
  if (!buildAddon()) {
    fail('building the addon from source failed (see the compiler output above). It needs cmake (or python3 and ' +
      'make) and a C++17 compiler; on linux-x64 with glibc the package ships a prebuilt addon instead, used ' +
      'unless DSMOE_BUILD_FROM_SOURCE=1.');
  }
  const problem = check();
  if (problem) fail(problem);
}

if (isDevInstall()) {
  // A clone: everything from source, as `npm install` always did.
  if (!buildAddon()) fail('building the native addon failed (see the compiler output above).');
  if (!compileTypeScript()) fail('compiling the TypeScript failed (tsc -p tsconfig.json; is typescript installed?)');
  const problem = check();
  if (problem) fail(problem);
  process.exit(0);
}

if (!fs.existsSync(distEntry) && !compileTypeScript()) {
  fail(`this copy of dsmoe has no compiled JavaScript (${path.relative(root, distEntry)}) and no TypeScript to ` +
    'compile it: a package made with `npm pack` or `npm publish` contains it (the prepack script builds it).');
}

const l = loader();
if (l.envFlag(env.DSMOE_BUILD_FROM_SOURCE)) {
  buildFromSource('DSMOE_BUILD_FROM_SOURCE=1');
} else {
  const prebuild = l.findPrebuild(root);
  if (!prebuild) {
    buildFromSource(`no prebuilt addon in prebuilds/ matches ${process.platform}-${process.arch}`);
  } else {
    const smoke = l.smokeLoad(prebuild);
    if (smoke.ok) {
      log(l.describeAddon({ file: prebuild, source: 'prebuild', info: smoke.info }, root) + '; nothing to compile');
    } else {
      log(`the prebuilt addon ${path.relative(root, prebuild)} does not load here:\n  ` +
        `${smoke.reason.split('\n').join('\n  ')}`);
      buildFromSource('falling back');
    }
  }
}
