// Finds dsmoe's native addon, checks that it loads (in a child process, so a crash or an illegal
// instruction is an error message rather than a dead CLI) and explains what to do when it does not.
// Used by addon.ts at run time and by scripts/install.js (from dist/) at install time, so both make
// the same choice.
//
// Where the addon comes from, first match wins:
//   1. DSMOE_ADDON=path/to/dsmoe.node        that file and nothing else
//   2. DSMOE_BUILD_FROM_SOURCE=1, or DSMOE_BUILD_DIR=dir
//                                            only a build from source (<dir, default build>/Release)
//   3. build/Release/dsmoe.node               a build from source (a clone, or an install that compiled)
//   4. prebuilds/<platform>-<arch>/…          the prebuilt addon shipped in the package, chosen by
//                                            node-gyp-build (platform, arch, libc, Node-API)
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { defaultCacheDir, hashParts } from '../data/cache';
import { envAddonFile, envBuildDir, envBuildFromSource, envLdPreload, type Env } from '../util/env';
import type { RuntimeInfo } from './types';

export type AddonSource = 'DSMOE_ADDON' | 'build' | 'prebuild';

export interface AddonLocation {
  file: string;
  source: AddonSource;
}

export interface LocateOptions {
  /** The package folder (holds package.json, build/, prebuilds/). */
  root: string;
  env?: Env;
  /** For tests: the prebuild lookup (default: node-gyp-build's, see findPrebuild). */
  findPrebuild?: (root: string) => string | undefined;
}

/** An addon that is missing or does not load; the message says what to do. */
export class AddonError extends Error {
  override name = 'AddonError';
}

// scripts/install.js reads DSMOE_BUILD_FROM_SOURCE with this (from dist/native/loader.js).
export { envFlag } from '../util/env';

/** Where a build from source puts the addon (scripts/build-addon.js with the same environment). */
export function localBuildPath(root: string, env?: Env): string {
  return path.join(root, envBuildDir(env) ?? 'build', 'Release', 'dsmoe.node');
}

/** The prebuilt addon in `root/prebuilds` that matches this machine, if any (node-gyp-build's choice). */
export function findPrebuild(root: string): string | undefined {
  let file: string;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ngb = require('node-gyp-build') as { resolve(dir: string): string };
    file = ngb.resolve(root);
  } catch {
    return undefined; // "No native build was found for platform=…"
  }
  // node-gyp-build also answers with build/Release or build/Debug; only prebuilds count here.
  return file.split(/[\\/]/).includes('prebuilds') ? file : undefined;
}

/** True when `root` is an installed copy (global, dependency, npx) rather than a clone. */
export function isInstalledPackage(root: string): boolean {
  return path.resolve(root).split(path.sep).includes('node_modules');
}

/** Where this platform's prebuilt addon goes in the package (prebuildify's layout and tags). */
export function prebuildName(platform: string = process.platform, arch: string = process.arch,
  libc = detectLibc()): string {
  const tags = ['dsmoe', 'napi', ...(libc ? [libc] : [])];
  return path.join('prebuilds', `${platform}-${arch}`, `${tags.join('.')}.node`);
}

export function detectLibc(): 'glibc' | 'musl' | undefined {
  if (process.platform !== 'linux') return undefined;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return header?.glibcVersionRuntime ? 'glibc' : 'musl';
}

/** What to run to get a working addon, for the package at `root`. */
export function buildAdvice(root: string): string {
  if (!isInstalledPackage(root)) {
    return `Build it from source: npm run build:addon   (in ${root})`;
  }
  const script = path.join(root, 'scripts', 'install.js');
  return (
    'Build it from source (needs cmake, or python3 and make, and a C++17 compiler):\n' +
    `  DSMOE_BUILD_FROM_SOURCE=1 node ${JSON.stringify(script)}\n` +
    'or reinstall with its install script allowed and DSMOE_BUILD_FROM_SOURCE=1, e.g.\n' +
    '  DSMOE_BUILD_FROM_SOURCE=1 npm install -g dsmoe --allow-scripts=dsmoe'
  );
}

/** Finds the addon to load (see the order at the top of this file), or throws an AddonError. */
export function locateAddon(opts: LocateOptions): AddonLocation {
  const env = opts.env;
  const root = path.resolve(opts.root);
  const file = envAddonFile(env);
  if (file) {
    if (!fs.existsSync(file)) {
      throw new AddonError(`DSMOE_ADDON points at ${file}, which does not exist.\n` +
        'Unset DSMOE_ADDON to use dsmoe\'s own addon, or point it at a built dsmoe.node.');
    }
    return { file, source: 'DSMOE_ADDON' };
  }
  const local = localBuildPath(root, env);
  if (fs.existsSync(local)) return { file: local, source: 'build' };
  const buildDir = envBuildDir(env);
  const why = envBuildFromSource(env) ? 'DSMOE_BUILD_FROM_SOURCE=1'
    : buildDir ? `DSMOE_BUILD_DIR=${buildDir}` : undefined;
  if (why) {
    throw new AddonError(`dsmoe's native addon is not built (looked for ${local}; ${why} uses only a build from ` +
      `source).\n` +
      buildAdvice(root));
  }
  const prebuild = (opts.findPrebuild ?? findPrebuild)(root);
  if (prebuild) return { file: prebuild, source: 'prebuild' };
  const target = `${process.platform}-${process.arch}${detectLibc() ? ` (${detectLibc()})` : ''}`;
  throw new AddonError(
    `dsmoe's native addon is not built (looked for ${local}), and no prebuilt addon matches ${target}` +
      (isInstalledPackage(root) ? '; or npm skipped dsmoe\'s install script, which builds one.\n' : '.\n') +
      buildAdvice(root),
  );
}

export type SmokeResult = { ok: true; info: RuntimeInfo; cached: boolean } | { ok: false; reason: string };

export interface SmokeOptions {
  env?: Env;
  /** Remember a successful check (keyed by the file, its size and time, Node and LD_PRELOAD) in the cache dir. */
  cache?: boolean;
  /** Where to remember it (default: defaultCacheDir(), i.e. $DSMOE_CACHE_DIR or ~/.cache/dsmoe). */
  cacheDir?: string;
  timeoutMs?: number;
}

// Loads the addon and asks it for its runtime facts (which also runs the CPU feature detection).
// A JavaScript error (dlopen's "invalid ELF header", "GLIBC_2.xx not found") is printed alone, exit 1.
const SMOKE_SCRIPT =
  'let a; try { a = require(process.argv[1]); } catch (e) { process.stderr.write(String(e && e.message || e) + ' +
    '"\\n"); ' +
  'process.exit(1); } process.stdout.write(JSON.stringify(a.runtimeInfo()));';

function smokeStamp(file: string, env: Env | undefined, cacheDir: string): string | undefined {
  try {
    const st = fs.statSync(file);
    const key = hashParts([fs.realpathSync(file), String(st.size), String(st.mtimeMs), String(st.ino),
      process.execPath, process.version, envLdPreload(env)]);
    return path.join(cacheDir, 'addon-ok', key.slice(0, 32));
  } catch {
    return undefined;
  }
}

/**
 * Loads `file` in a child Node process and calls runtimeInfo(). A crash (SIGILL on an older CPU, a
 * missing shared library, a too-old glibc) fails the child, not the caller.
 */
export function smokeLoad(file: string, opts: SmokeOptions = {}): SmokeResult {
  const env = opts.env; // undefined: this process's (the child inherits it)
  const stamp = opts.cache ? smokeStamp(file, env, opts.cacheDir ?? defaultCacheDir()) : undefined;
  if (stamp) {
    try {
      const info = JSON.parse(fs.readFileSync(stamp, 'utf8')) as RuntimeInfo;
      return { ok: true, info, cached: true };
    } catch {
      // not checked yet (or an unreadable stamp): check now
    }
  }
  const r = spawnSync(process.execPath, ['-e', SMOKE_SCRIPT, file], {
    env,
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 120_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    if (code === 'ETIMEDOUT') return { ok: false, reason: `loading it did not finish in ` +
      `${(opts.timeoutMs ?? 120_000) / 1000} s` };
    return { ok: false, reason: `could not start a Node process to load it: ${r.error.message}` };
  }
  const stderr = (r.stderr ?? '').trim().split('\n').filter((l) => l.trim() !== '').slice(-8).join('\n');
  if (r.status !== 0 || r.signal) {
    const how = r.signal ? `the process was killed by ` +
      `${r.signal}${r.signal === 'SIGILL' ? ' (an instruction this CPU lacks)' : ''}`
      : `the process exited with code ${r.status}`;
    return { ok: false, reason: stderr ? `${how}:\n${stderr}` : how };
  }
  let info: RuntimeInfo;
  try {
    info = JSON.parse(r.stdout) as RuntimeInfo;
  } catch {
    return { ok: false, reason: `runtimeInfo() gave no answer (stdout: ${JSON.stringify(r.stdout.slice(0, 200))})` };
  }
  if (stamp) {
    try {
      fs.mkdirSync(path.dirname(stamp), { recursive: true });
      const tmp = `${stamp}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, JSON.stringify(info));
      fs.renameSync(tmp, stamp);
    } catch {
      // an unwritable cache only means checking again next time
    }
  }
  return { ok: true, info, cached: false };
}

const SOURCE_WORDS: Record<AddonSource, string> = {
  DSMOE_ADDON: 'the addon DSMOE_ADDON names',
  build: 'the addon built from source',
  prebuild: 'the prebuilt addon',
};

/** The message for an addon that was found but did not load. */
export function loadFailureMessage(loc: AddonLocation, reason: string, root: string): string {
  const advice = loc.source === 'DSMOE_ADDON'
    ? 'Unset DSMOE_ADDON to use dsmoe\'s own addon, or point it at a working build.'
    : loc.source === 'prebuild'
      ? `The prebuilt addon does not run on this machine (${process.platform}-${process.arch}, Node ` +
        `${process.version}).\n${buildAdvice(root)}`
      : `Rebuild it. ${buildAdvice(root)}`;
  const indented = reason.split('\n').map((l) => `  ${l}`).join('\n');
  return `dsmoe's native addon failed to load: ${loc.file} (${SOURCE_WORDS[loc.source]})\n${indented}\n${advice}`;
}

/** locateAddon + smokeLoad: the addon to require, or an AddonError that says what to do. */
export function checkedAddon(opts: LocateOptions & SmokeOptions): AddonLocation & { info: RuntimeInfo } {
  const loc = locateAddon(opts);
  const smoke = smokeLoad(loc.file, opts);
  if (!smoke.ok) throw new AddonError(loadFailureMessage(loc, smoke.reason, path.resolve(opts.root)));
  return { ...loc, info: smoke.info };
}

/** One line about the addon in use, for install logs. */
export function describeAddon(loc: AddonLocation & { info: RuntimeInfo }, root: string): string {
  const rel = path.relative(root, loc.file);
  const shown = rel.startsWith('..') || path.isAbsolute(rel) ? loc.file : rel;
  return `${SOURCE_WORDS[loc.source]} ${shown} loads (${loc.info.buildSystem} build, ${loc.info.isa} kernels on this ` +
    `CPU)`;
}
