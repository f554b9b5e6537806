// The environment variables dsmoe reads (src/util/env.ts): how each value is parsed, and that an
// accessor reads the environment when called.
import * as path from 'node:path';
import {
  envAddonFile,
  envBuildDir,
  envBuildFromSource,
  envCacheDir,
  envDebug,
  envFlag,
  envLdPreload,
  envThreads,
  unsetOpenblasOverrides,
} from '../../src/util/env';

test('envFlag: 1, true, yes, on in any case and with blanks; anything else is off', () => {
  for (const v of ['1', 'true', 'TRUE', 'Yes', 'on', ' on ']) expect(envFlag(v)).toBe(true);
  for (const v of [undefined, '', '0', 'false', 'no', 'off', '2', 'y']) expect(envFlag(v)).toBe(false);
});

test('DSMOE_THREADS: a number > 0 as Number() reads it, else undefined (the number of cores)', () => {
  const t = (v?: string) => envThreads(v === undefined ? {} : { DSMOE_THREADS: v });
  expect(t('4')).toBe(4);
  expect(t(' 3 ')).toBe(3);
  expect(t('1e1')).toBe(10);
  expect(t('2.5')).toBe(2.5); // as before the accessor; the addon's own pool ignores non-integers
  for (const v of [undefined, '', ' ', '0', '-1', 'abc', '4x', 'NaN']) expect(t(v)).toBeUndefined();
});

test('DSMOE_DEBUG: any non-empty value', () => {
  expect(envDebug({ DSMOE_DEBUG: '1' })).toBe(true);
  expect(envDebug({ DSMOE_DEBUG: '0' })).toBe(true);
  expect(envDebug({ DSMOE_DEBUG: '' })).toBe(false);
  expect(envDebug({})).toBe(false);
});

test('DSMOE_CACHE_DIR: an absolute path; unset or blank is undefined', () => {
  expect(envCacheDir({ DSMOE_CACHE_DIR: '/tmp/c' })).toBe(path.resolve('/tmp/c'));
  expect(envCacheDir({ DSMOE_CACHE_DIR: 'rel/c' })).toBe(path.resolve('rel/c'));
  expect(envCacheDir({ DSMOE_CACHE_DIR: '  ' })).toBeUndefined();
  expect(envCacheDir({ DSMOE_CACHE_DIR: '' })).toBeUndefined();
  expect(envCacheDir({})).toBeUndefined();
});

test('DSMOE_ADDON, DSMOE_BUILD_DIR, DSMOE_BUILD_FROM_SOURCE, LD_PRELOAD', () => {
  expect(envAddonFile({ DSMOE_ADDON: 'x/dsmoe.node' })).toBe(path.resolve('x/dsmoe.node'));
  expect(envAddonFile({ DSMOE_ADDON: '' })).toBeUndefined();
  expect(envAddonFile({})).toBeUndefined();
  expect(envBuildDir({ DSMOE_BUILD_DIR: 'build-cuda' })).toBe('build-cuda');
  expect(envBuildDir({ DSMOE_BUILD_DIR: '' })).toBeUndefined();
  expect(envBuildDir({})).toBeUndefined();
  expect(envBuildFromSource({ DSMOE_BUILD_FROM_SOURCE: 'yes' })).toBe(true);
  expect(envBuildFromSource({ DSMOE_BUILD_FROM_SOURCE: '0' })).toBe(false);
  expect(envBuildFromSource({})).toBe(false);
  expect(envLdPreload({ LD_PRELOAD: '/lib/x.so' })).toBe('/lib/x.so');
  expect(envLdPreload({})).toBe('');
});

test('accessors read process.env when called, not when loaded', () => {
  const saved = process.env.DSMOE_THREADS;
  try {
    process.env.DSMOE_THREADS = '7';
    expect(envThreads()).toBe(7);
    process.env.DSMOE_THREADS = 'abc';
    expect(envThreads()).toBeUndefined();
  } finally {
    if (saved === undefined) delete process.env.DSMOE_THREADS;
    else process.env.DSMOE_THREADS = saved;
  }
});

test('unsetOpenblasOverrides removes only the OpenBLAS kernel overrides and names them', () => {
  const env: NodeJS.ProcessEnv = { OPENBLAS_CORETYPE: 'Haswell', OPENBLAS_NUM_THREADS: '1', PATH: '/bin' };
  expect(unsetOpenblasOverrides(env)).toEqual(['OPENBLAS_CORETYPE']);
  expect(env).toEqual({ OPENBLAS_NUM_THREADS: '1', PATH: '/bin' });
  expect(unsetOpenblasOverrides(env)).toEqual([]);
});
