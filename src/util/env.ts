// Every environment variable dsmoe's TypeScript reads, in one place. Each accessor reads the
// environment when called (tests set variables at run time) and takes the environment as an optional
// argument (default process.env), so code that is handed an environment (the addon loader, its tests)
// reads that one instead. No other file in src/ touches process.env.
//
// The native addon reads two more itself, when it loads: DSMOE_THREADS (the thread pool's size: an
// integer 1..kMaxThreads, else the number of cores; native/core/threadpool.cc) and DSMOE_ISA (cap the
// instruction set; native/core/cpu_features.cc). The build scripts (scripts/*.js) read DSMOE_CUDA,
// DSMOE_BUILD, DSMOE_SANITIZE, DSMOE_BUILD_DIR and DSMOE_DIST.
import * as path from 'node:path';

/** An environment: process.env, or a copy a caller built (the loader's tests). */
export type Env = NodeJS.ProcessEnv;

/** A yes/no variable: true for `1`, `true`, `yes` or `on` (any case, surrounding blanks ignored). */
export function envFlag(value: string | undefined): boolean {
  return value !== undefined && ['1', 'true', 'yes', 'on'].includes(value.trim().toLowerCase());
}

/**
 * `DSMOE_THREADS`: the kernel thread count a training run records (and compares on resume) when no
 * `--threads` is given. Any value `Number()` reads as greater than zero counts (`2`, ` 3 `, `1e1`);
 * anything else (unset, empty, `0`, `-1`, `abc`) gives undefined, i.e. the number of cores. The addon
 * sizes its thread pool from the same variable itself (integers only).
 */
export function envThreads(env: Env = process.env): number | undefined {
  const n = Number(env.DSMOE_THREADS);
  return n > 0 ? n : undefined;
}

/**
 * `DSMOE_PARALLEL`: set by the `dsmoe train --nproc` launcher (src/parallel/launcher.ts) for each rank
 * it starts: JSON with the rank's place in the run and where the rendezvous service is. Undefined
 * when unset (a plain single-process run).
 */
export function envParallel(env: Env = process.env): unknown {
  const v = env.DSMOE_PARALLEL;
  if (v === undefined || v.trim() === '') return undefined;
  try {
    return JSON.parse(v);
  } catch {
    throw new Error(`DSMOE_PARALLEL is not valid JSON: ${v}`);
  }
}

/**
 * `DSMOE_PARALLEL_TIMEOUT`: seconds after which a data-parallel rank gives up on a collective (or on
 * the rendezvous) that makes no progress; default 120. A rank that dies is noticed at once (its
 * connections close); this bounds the wait for one that hangs or a machine that vanishes.
 */
export function envParallelTimeoutS(env: Env = process.env): number {
  const n = Number(env.DSMOE_PARALLEL_TIMEOUT);
  return n > 0 ? n : 120;
}

/**
 * `DSMOE_PARALLEL_HOST`: the address this machine's ranks listen on for the all-reduce; default
 * 127.0.0.1 when the master is a loopback address, else the machine's host name.
 */
export function envParallelHost(env: Env = process.env): string | undefined {
  const v = env.DSMOE_PARALLEL_HOST?.trim();
  return v ? v : undefined;
}

/** The environment of a child process: this one's, with `extra` set (undefined values removed). */
export function childEnv(extra: Record<string, string | undefined>, env: Env = process.env): Env {
  const out: Env = { ...env };
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  return out;
}

/** `DSMOE_DEBUG`: any non-empty value makes the CLI print an error's stack trace after its message. */
export function envDebug(env: Env = process.env): boolean {
  return Boolean(env.DSMOE_DEBUG);
}

/**
 * `DSMOE_CACHE_DIR`: the cache folder (tokenized data, the default tokenizer, the addon load check),
 * as an absolute path; undefined when unset or blank (the cache is then `~/.cache/dsmoe`).
 */
export function envCacheDir(env: Env = process.env): string | undefined {
  const v = env.DSMOE_CACHE_DIR;
  return v && v.trim() !== '' ? path.resolve(v) : undefined;
}

/**
 * `DSMOE_ADDON`: load the native addon from this `.node` file and nothing else (as an absolute path);
 * undefined when unset or empty.
 */
export function envAddonFile(env: Env = process.env): string | undefined {
  const v = env.DSMOE_ADDON;
  return v ? path.resolve(v) : undefined;
}

/**
 * `DSMOE_BUILD_DIR`: the folder a build from source goes to (scripts/build-addon.js) and the loader
 * looks in (`<dir>/Release/dsmoe.node`); setting it also means "only a build from source". Undefined
 * when unset or empty (the folder is then `build`).
 */
export function envBuildDir(env: Env = process.env): string | undefined {
  return env.DSMOE_BUILD_DIR || undefined;
}

/**
 * `DSMOE_BUILD_FROM_SOURCE`: a flag (see envFlag); install builds the addon from source and the
 * loader uses only a build from source, never the prebuilt addon.
 */
export function envBuildFromSource(env: Env = process.env): boolean {
  return envFlag(env.DSMOE_BUILD_FROM_SOURCE);
}

/**
 * `LD_PRELOAD` (the dynamic linker's; `''` when unset): part of the key under which a successful addon
 * load check is remembered, since a preloaded library can change whether the addon loads.
 */
export function envLdPreload(env: Env = process.env): string {
  return env.LD_PRELOAD ?? '';
}

/** The OpenBLAS settings that force a kernel choice when OpenBLAS loads. */
export const OPENBLAS_OVERRIDES = ['OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE'] as const;

/**
 * Unsets `OPENBLAS_CORETYPE` and `OPENBLAS_L2_SIZE` in `env` (default: this process's, so that
 * OpenBLAS loaded afterwards by `bench kernels` picks its kernels for this CPU); returns the names that
 * were set.
 */
export function unsetOpenblasOverrides(env: Env = process.env): string[] {
  const set = OPENBLAS_OVERRIDES.filter((k) => env[k] !== undefined);
  for (const k of set) delete env[k];
  return set;
}

/**
 * `DSMOE_API_KEY`: the key `dsmoe serve` requires (as `Authorization: Bearer <key>`) when no
 * `--api-key` is given; undefined when unset or blank (no key: every client is served).
 */
export function envApiKey(env: Env = process.env): string | undefined {
  const v = env.DSMOE_API_KEY?.trim();
  return v ? v : undefined;
}

/**
 * `DSMOE_SERVE_STEP_DELAY_MS`: for tests only — `dsmoe serve` waits this long after every engine
 * step, so that a request on a tiny model is still running when a test disconnects or sends SIGTERM.
 * 0 (the default) when unset or not a number ≥ 0.
 */
export function envServeStepDelayMs(env: Env = process.env): number {
  const n = Number(env.DSMOE_SERVE_STEP_DELAY_MS);
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/**
 * `DSMOE_MMAP`: a flag (see envFlag); checkpoints are then mapped from the page cache (shared between
 * processes, paged in on first use: models larger than the free memory) instead of read once into
 * huge-page memory, which decodes faster (fewer TLB misses, cache-line aligned rows).
 */
export function envMmap(env: Env = process.env): boolean {
  return envFlag(env.DSMOE_MMAP);
}
