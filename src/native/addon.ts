// Loads the native addon and gives it types. Everything that talks to native code goes through here.
//
// The addon is looked up at DSMOE_ADDON (a path to a .node file), else build/Release/dsmoe.node in
// the package. A missing or unloadable addon is a clear error that says how to build it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { NativeAddon } from './types';

export * from './types';

export const packageRoot = path.resolve(__dirname, '..', '..');

export function addonPath(): string {
  return process.env.DSMOE_ADDON
    ? path.resolve(process.env.DSMOE_ADDON)
    : path.join(packageRoot, process.env.DSMOE_BUILD_DIR ?? 'build', 'Release', 'dsmoe.node');
}

let cached: NativeAddon | undefined;

export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const file = addonPath();
  if (!fs.existsSync(file)) {
    throw new Error(
      `dsmoe's native addon is not built (looked for ${file}).\n` +
        `Build it with: npm run build:addon   (in ${packageRoot})\n` +
        `If dsmoe was installed as a dependency with npm 11, reinstall with --allow-scripts=dsmoe.`,
    );
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cached = require(file) as NativeAddon;
  } catch (err) {
    throw new Error(`dsmoe's native addon at ${file} failed to load: ${(err as Error).message}\n` +
      `Rebuild it with: npm run build:addon`);
  }
  return cached;
}
