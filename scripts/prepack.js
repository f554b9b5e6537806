#!/usr/bin/env node
// npm's prepack script (`npm pack`, `npm publish`): makes what the package ships besides its sources,
// so that installing it compiles nothing:
//   dist/                                        the compiled JavaScript (tsc)
//   prebuilds/<platform>-<arch>/dsmoe.napi[.<libc>].node
//                                                this machine's addon, built from the current sources
//                                                with cmake-js (CUDA kernels with the static runtime
//                                                when nvcc is found; DSMOE_CUDA=on to require them),
//                                                without Gloo unless DSMOE_DIST=auto|on: libgloo.so is a
//                                                shared library users may not have, and a prebuild that
//                                                needs it would not load (data-parallel training needs
//                                                a build from source, docs/distributed.md)
// In a clone without node_modules it first installs the dependencies (npm ci --ignore-scripts).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const env = process.env;

function log(msg) {
  console.error(`[dsmoe prepack] ${msg}`);
}

function fail(msg) {
  log(msg);
  process.exit(1);
}

function run(cmd, args, extraEnv) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...env, ...extraEnv } });
  if (r.error) throw r.error;
  return r.status === 0;
}

function resolvable(request) {
  try {
    require.resolve(request, { paths: [root] });
    return true;
  } catch {
    return false;
  }
}

// 1. Dependencies (a fresh clone has none): TypeScript, cmake-js and the Node-API headers.
const needed = ['typescript/bin/tsc', 'cmake-js/bin/cmake-js', 'node-addon-api', 'node-api-headers/package.json',
  'node-gyp-build'];
if (!needed.every(resolvable)) {
  const ci = fs.existsSync(path.join(root, 'package-lock.json'));
  const args = [ci ? 'ci' : 'install', '--ignore-scripts', '--no-audit', '--no-fund'];
  log(`dependencies missing: npm ${args.join(' ')}`);
  // npm_execpath is the npm that runs this script. Of the npm_config_* settings it exports, keep those
  // about reaching the registry; the others are pack's (prefix=/usr would even move the install).
  const keep = new Set(['cache', 'cafile', 'ca', 'userconfig', 'globalconfig', 'registry', 'proxy', 'https_proxy',
    'noproxy', 'strict_ssl']);
  const npmEnv = Object.fromEntries(Object.entries(env).filter(([k]) =>
    !k.toLowerCase().startsWith('npm_config_') || keep.has(k.toLowerCase().slice('npm_config_'.length))));
  const npmCli = env.npm_execpath;
  const r = npmCli && npmCli.endsWith('.js')
    ? spawnSync(process.execPath, [npmCli, ...args], { cwd: root, stdio: 'inherit', env: npmEnv })
    : spawnSync('npm', args, { cwd: root, stdio: 'inherit', env: npmEnv });
  if (r.error || r.status !== 0) fail('installing the dependencies failed');
}

// 2. The JavaScript.
log('tsc -p tsconfig.json');
if (!run(process.execPath, [require.resolve('typescript/bin/tsc', { paths: [root] }), '-p', 'tsconfig.json'])) {
  fail('tsc failed');
}
const loader = require(path.join(root, 'dist', 'native', 'loader.js'));

// 3. The addon, from the current sources (incremental when build/ is already there). Always cmake-js:
// the node-gyp build is the CPU-only fallback.
const buildEnv = { DSMOE_BUILD: 'cmake', DSMOE_SANITIZE: '', DSMOE_DIST: env.DSMOE_DIST || 'off' };
if (!run(process.execPath, [path.join(__dirname, 'build-addon.js')], buildEnv)) {
  fail('building the addon failed (packing needs cmake and a C++17 compiler; nvcc for the CUDA kernels)');
}
const built = loader.localBuildPath(root, env);

// 4. Into prebuilds/, where node-gyp-build finds it.
fs.rmSync(path.join(root, 'prebuilds'), { recursive: true, force: true });
const dest = path.join(root, loader.prebuildName());
fs.mkdirSync(path.dirname(dest), { recursive: true });
fs.copyFileSync(built, dest);

// 5. It must load (child process), and say whether it has the CUDA kernels.
let loc;
try {
  loc = loader.checkedAddon({ root, env: { ...env, DSMOE_ADDON: dest } });
} catch (err) {
  fail(err.message);
}
const cuda = spawnSync(process.execPath, ['-e',
  'process.stdout.write(String(require(process.argv[1]).cudaInfo().compiled))', dest],
{ encoding: 'utf8' });
const withCuda = cuda.status === 0 && cuda.stdout === 'true';
const mb = (fs.statSync(dest).size / 1e6).toFixed(1);
log(`${path.relative(root, dest)}: ${mb} MB, ${loc.info.buildSystem} build, CUDA kernels ` +
  `${withCuda ? 'included (static runtime)' : 'NOT included'}`);
if (!withCuda && process.platform === 'linux' && process.arch === 'x64') {
  log('warning: no CUDA kernels in the linux-x64 prebuild (no nvcc found?); set DSMOE_CUDA=on to make that an error');
}
