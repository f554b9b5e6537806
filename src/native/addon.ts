// Loads the native addon and gives it types. Everything that talks to native code goes through here.
//
// Which file is loaded (DSMOE_ADDON, a build from source in build/Release, or the prebuilt addon
// shipped in prebuilds/) is decided in loader.ts. Before the first require, the file is loaded once in
// a child process (remembered per file in the cache dir), so an addon that crashes on this machine is
// an error message that says what to do, not a dead process.
import * as path from 'node:path';
import { AddonError, checkedAddon, locateAddon, loadFailureMessage } from './loader';
import type { NativeAddon } from './types';

export * from './types';

export const packageRoot = path.resolve(__dirname, '..', '..');

/** The addon file that loadAddon() would load; throws an AddonError when there is none. */
export function addonPath(): string {
  return locateAddon({ root: packageRoot }).file;
}

let cached: NativeAddon | undefined;

export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const loc = checkedAddon({ root: packageRoot, cache: true });
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cached = require(loc.file) as NativeAddon;
  } catch (err) {
    throw new AddonError(loadFailureMessage(loc, (err as Error).message, packageRoot));
  }
  return cached;
}

let unavailable = false;

/**
 * The addon, or null when it cannot be loaded (remembered): for the paths that run without it and only
 * go faster with it (counting lines, direct writes).
 */
export function tryLoadAddon(): NativeAddon | null {
  if (unavailable) return null;
  try {
    return loadAddon();
  } catch {
    unavailable = true;
    return null;
  }
}
