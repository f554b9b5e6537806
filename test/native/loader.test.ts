// Which addon file dsmoe loads (DSMOE_ADDON, a build from source, the package's prebuild), the
// child-process smoke load before first use, and what the errors tell the user to do.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  AddonError,
  checkedAddon,
  findPrebuild,
  locateAddon,
  prebuildName,
  smokeLoad,
} from '../../src/native/loader';
import { addonPath } from '../../src/native/addon';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-loader-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A package folder with the given files (relative path → content). */
function pkg(dir: string, files: Record<string, string | Buffer>): string {
  const root = path.join(tmp, dir);
  fs.mkdirSync(root, { recursive: true });
  fs.writeFileSync(path.join(root, 'package.json'), JSON.stringify({ name: 'dsmoe', version: '0.0.0' }));
  for (const [rel, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), content);
  }
  return root;
}

const here = `${process.platform}-${process.arch}`;
const prebuild = prebuildName(); // prebuilds/<platform>-<arch>/dsmoe.napi[.glibc].node
const build = path.join('build', 'Release', 'dsmoe.node');
const realAddon = addonPath(); // the build the rest of the suites use (or DSMOE_ADDON's)
// This process's environment without the settings that choose an addon (CI sets DSMOE_ADDON).
const baseEnv: NodeJS.ProcessEnv = { ...process.env };
for (const k of ['DSMOE_ADDON', 'DSMOE_BUILD_DIR', 'DSMOE_BUILD_FROM_SOURCE']) delete baseEnv[k];

function expectAddonError(fn: () => unknown, ...patterns: RegExp[]): string {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(AddonError);
  const msg = (err as Error).message;
  for (const p of patterns) expect(msg).toMatch(p);
  return msg;
}

describe('locateAddon', () => {
  test('a package with only a prebuild uses it (node-gyp-build picks this platform\'s)', () => {
    const root = pkg('p', { [prebuild]: 'x', 'prebuilds/other-arch/dsmoe.napi.node': 'y' });
    expect(findPrebuild(root)).toBe(path.join(root, prebuild));
    expect(locateAddon({ root, env: {} })).toEqual({ file: path.join(root, prebuild), source: 'prebuild' });
  });

  test('a build from source wins over the prebuild (it is what was compiled here)', () => {
    const root = pkg('p', { [prebuild]: 'x', [build]: 'y' });
    expect(locateAddon({ root, env: {} })).toEqual({ file: path.join(root, build), source: 'build' });
  });

  test('DSMOE_ADDON overrides both, and a missing file there is an error, not a fallback', () => {
    const root = pkg('p', { [prebuild]: 'x', [build]: 'y', 'elsewhere.node': 'z' });
    const file = path.join(root, 'elsewhere.node');
    expect(locateAddon({ root, env: { DSMOE_ADDON: file } })).toEqual({ file, source: 'DSMOE_ADDON' });
    expectAddonError(() => locateAddon({ root, env: { DSMOE_ADDON: path.join(root, 'nope.node') } }),
      /DSMOE_ADDON points at .*nope\.node, which does not exist/, /Unset DSMOE_ADDON/);
  });

  test('DSMOE_BUILD_FROM_SOURCE=1 ignores the prebuild: a build or a clear error', () => {
    const root = pkg('p', { [prebuild]: 'x' });
    expectAddonError(() => locateAddon({ root, env: { DSMOE_BUILD_FROM_SOURCE: '1' } }),
      new RegExp(String.raw`not built \(looked for .*build\/Release\/dsmoe\.node; ` +
        String.raw`DSMOE_BUILD_FROM_SOURCE=1 uses only a build from source\)`));
    fs.mkdirSync(path.join(root, 'build', 'Release'), { recursive: true });
    fs.writeFileSync(path.join(root, build), 'y');
    expect(locateAddon({ root, env: { DSMOE_BUILD_FROM_SOURCE: '1' } }).source).toBe('build');
    // 0 / false mean no
    expect(locateAddon({ root, env: { DSMOE_BUILD_FROM_SOURCE: '0' } }).source).toBe('build');
  });

  test('DSMOE_BUILD_DIR names the build folder and, like a build from source, skips the prebuild', () => {
    const root = pkg('p', { [prebuild]: 'x', 'build-x/Release/dsmoe.node': 'y' });
    expect(locateAddon({ root, env: { DSMOE_BUILD_DIR: 'build-x' } }).file).toBe(path.join(root,
      'build-x/Release/dsmoe.node'));
    expectAddonError(() => locateAddon({ root, env: { DSMOE_BUILD_DIR: 'build-y' } }), /DSMOE_BUILD_DIR=build-y/);
  });

  test('no prebuild for this platform and no build: says so, and how to build (clone vs installed package)', () => {
    const clone = pkg('clone', { 'prebuilds/plan9-mips/dsmoe.napi.node': 'x',
      [path.join('build', 'Release', 'other.node')]: 'y' });
    expect(findPrebuild(clone)).toBeUndefined(); // node-gyp-build's build/Release answer is not a prebuild
    expectAddonError(() => locateAddon({ root: clone, env: {} }),
      new RegExp(`no prebuilt addon matches ${here}`), /npm run build:addon/);

    const installed = pkg(path.join('app', 'node_modules', 'dsmoe'), {});
    const msg = expectAddonError(() => locateAddon({ root: installed, env: {} }),
      /npm skipped dsmoe's install script/,
      /DSMOE_BUILD_FROM_SOURCE=1 node ".*node_modules\/dsmoe\/scripts\/install\.js"/,
      /--allow-scripts=dsmoe/);
    expect(msg).not.toMatch(/build:addon/);
  });
});

describe('smoke load (a child process)', () => {
  test('the real addon loads and reports its runtime facts; the result is remembered per file', () => {
    const cacheDir = path.join(tmp, 'cache');
    const first = smokeLoad(realAddon, { cache: true, cacheDir });
    expect(first).toMatchObject({ ok: true, cached: false });
    if (!first.ok) return;
    expect(['avx512', 'avx2', 'generic']).toContain(first.info.isa);
    expect(smokeLoad(realAddon, { cache: true, cacheDir })).toEqual({ ...first, cached: true });
    expect(smokeLoad(realAddon, { cacheDir })).toMatchObject({ ok: true, cached: false }); // no cache asked
    // Another file (a copy: different inode and time) is checked again.
    const copy = path.join(tmp, 'copy.node');
    fs.copyFileSync(realAddon, copy);
    expect(smokeLoad(copy, { cache: true, cacheDir })).toMatchObject({ ok: true, cached: false });
  });

  test('a file that is not a loadable addon fails in the child, with the loader\'s error, ' +
    'and is not remembered', () => {
    const bad = path.join(tmp, 'bad.node');
    fs.writeFileSync(bad, Buffer.alloc(4096, 'not an ELF file '));
    const cacheDir = path.join(tmp, 'cache');
    const r = smokeLoad(bad, { cache: true, cacheDir });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.reason).toMatch(/exited with code 1/);
    expect(r.reason).toMatch(/bad\.node: invalid ELF header/);
    expect(fs.existsSync(path.join(cacheDir, 'addon-ok')) && fs.readdirSync(path.join(cacheDir,
      'addon-ok')).length).toBeFalsy();
  });

  test('a prebuild that does not load says to build from source; a bad DSMOE_ADDON says to unset it', () => {
    const root = pkg(path.join('g', 'lib', 'node_modules', 'dsmoe'), { [prebuild]: 'garbage' });
    expectAddonError(() => checkedAddon({ root, env: baseEnv }),
      /failed to load: .*dsmoe\.napi.*\.node \(the prebuilt addon\)/,
      /exited with code 1/,
      /does not run on this machine/,
      /DSMOE_BUILD_FROM_SOURCE=1 node .*install\.js/);
    expectAddonError(() => checkedAddon({ root, env: { ...baseEnv, DSMOE_ADDON: path.join(root, prebuild) } }),
      /\(the addon DSMOE_ADDON names\)/, /Unset DSMOE_ADDON/);
    const ok = checkedAddon({ root, env: { ...baseEnv, DSMOE_ADDON: realAddon } });
    expect(ok).toMatchObject({ file: realAddon, source: 'DSMOE_ADDON' });
  });

  test('loadAddon reports a bad addon as an AddonError instead of crashing the process', () => {
    const bad = path.join(tmp, 'bad.node');
    fs.writeFileSync(bad, 'garbage');
    const saved = process.env.DSMOE_ADDON;
    process.env.DSMOE_ADDON = bad;
    try {
      jest.isolateModules(() => {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const { loadAddon } = require('../../src/native/addon') as typeof import('../../src/native/addon');
        // (isolateModules loads its own copy of loader.ts, so compare the name, not the class)
        expect(() => loadAddon()).toThrow(expect.objectContaining({
          name: 'AddonError',
          message: expect.stringMatching(new RegExp(
            String.raw`failed to load: .*bad\.node \(the addon DSMOE_ADDON names\)\n ` +
            String.raw`{2}.*\n {2}.*bad\.node: (invalid ELF header|file too short)`)),
        }));
      });
    } finally {
      if (saved === undefined) delete process.env.DSMOE_ADDON;
      else process.env.DSMOE_ADDON = saved;
    }
  });
});
