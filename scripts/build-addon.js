#!/usr/bin/env node
// Builds the native addon: cmake-js when cmake is on PATH (the primary build), else node-gyp from
// binding.gyp (CPU only). Nothing is downloaded: cmake-js takes the Node-API headers from the
// node-api-headers package, node-gyp uses the headers of the running Node (npm's nodedir).
//   DSMOE_BUILD=cmake|gyp   force one build system
//   DSMOE_BUILD_DIR=dir     output folder (default build/)
//   DSMOE_SANITIZE=1        ASan + UBSan build (cmake only)
//   DSMOE_CUDA=auto|on|off  CUDA backend (cmake only): auto (default) builds it when nvcc is found,
//                           on fails without nvcc; the node-gyp build is always CPU-only
//   DSMOE_DIST=auto|on|off  data-parallel training with Gloo (cmake only): auto (default) builds it
//                           when libgloo-dev is installed, on fails without it; node-gyp builds without
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const fs = require('node:fs');

// The project to build: the current folder when it holds a binding.gyp/CMakeLists.txt (CI builds a
// scratch copy with node-gyp), else this script's package.
const root = fs.existsSync(path.join(process.cwd(), 'binding.gyp')) ? process.cwd() : path.resolve(__dirname, '..');
const outDir = process.env.DSMOE_BUILD_DIR || 'build';

function has(cmd) {
  return spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
}

function run(cmd, args) {
  console.error(`[dsmoe] ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.error) throw r.error;
  return r.status === 0;
}

function cmakeBuild() {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
  const args = [cmakeJs, 'compile', '--out', outDir, '--parallel', String(Math.max(2,
    require('node:os').cpus().length))];
  // Always passed, so a cached value from an earlier build never sticks.
  const cuda = (process.env.DSMOE_CUDA || 'auto').toLowerCase();
  if (!['auto', 'on', 'off'].includes(cuda)) {
    console.error(`[dsmoe] DSMOE_CUDA must be auto, on or off (got "${process.env.DSMOE_CUDA}")`);
    return false;
  }
  args.push(`--CDDSMOE_CUDA=${cuda}`);
  const dist = (process.env.DSMOE_DIST || 'auto').toLowerCase();
  if (!['auto', 'on', 'off'].includes(dist)) {
    console.error(`[dsmoe] DSMOE_DIST must be auto, on or off (got "${process.env.DSMOE_DIST}")`);
    return false;
  }
  args.push(`--CDDSMOE_DIST=${dist}`);
  // cmake-js compile configures only a fresh folder: when the cached choices differ from these,
  // drop the cache so that it configures again (object files stay; only what changed recompiles).
  const cache = path.join(root, outDir, 'CMakeCache.txt');
  if (fs.existsSync(cache)) {
    const text = fs.readFileSync(cache, 'utf8');
    const stale = [['DSMOE_CUDA', cuda], ['DSMOE_DIST', dist]].some(([k, v]) => {
      const m = new RegExp(`^${k}:STRING=(.*)$`, 'm').exec(text);
      return m !== null && m[1].toLowerCase() !== v;
    });
    if (stale) {
      console.error(`[dsmoe] DSMOE_CUDA/DSMOE_DIST changed since ${outDir} was configured: configuring again`);
      fs.rmSync(cache);
    }
  }
  if (process.env.DSMOE_SANITIZE === '1') args.push('--CDDSMOE_SANITIZE=ON', '--config', 'RelWithDebInfo');
  return run(process.execPath, args);
}

function gypBuild() {
  let gyp = process.env.npm_config_node_gyp;
  if (!gyp || !fs.existsSync(gyp)) {
    const npmDir = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm');
    gyp = path.join(npmDir, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  }
  if (!fs.existsSync(gyp)) {
    console.error('[dsmoe] node-gyp not found (neither npm_config_node_gyp nor npm\'s bundled copy)');
    return false;
  }
  // Never let node-gyp download headers: use npm's nodedir, else the running Node's own prefix.
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  const nodedir = process.env.npm_config_nodedir ||
    (fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? prefix : null);
  if (!nodedir) {
    console.error(`[dsmoe] node-gyp needs Node's headers (include/node under ${prefix}, or npm's nodedir); ` +
      'they are not installed and will not be downloaded. Install cmake instead, or Node with its headers.');
    return false;
  }
  return run(process.execPath, [gyp, 'rebuild', '--jobs', 'max', `--nodedir=${nodedir}`]);
}

const which = process.env.DSMOE_BUILD || (has('cmake') ? 'cmake' : 'gyp');
const ok = which === 'gyp' ? gypBuild() : cmakeBuild();
if (!ok) {
  console.error(`[dsmoe] building the native addon with ${which} failed (see the compiler output above).`);
  process.exit(1);
}
