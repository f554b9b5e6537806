// Shared test helpers: seeded random data, the error measure, and sweeps over ISAs and threads.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadAddon, type Isa, type NativeAddon } from '../src/native/addon';

export const addon: NativeAddon = loadAddon();

export { rng } from './rng';
import { rng } from './rng';

/** Uniform values in [-scale, scale). */
export function randArray(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

/** Standard normal values (Box-Muller). */
export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(r(), 1e-12), v = r();
    const mag = Math.sqrt(-2 * Math.log(u)) * scale;
    out[i] = mag * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = mag * Math.sin(2 * Math.PI * v);
  }
  return out;
}

/**
 * Relative error of `got` against a double-precision reference, measured norm-wise:
 * max|got − ref| / max|ref|. Element-wise relative error is meaningless where the reference
 * crosses zero; this bounds the error by the result's own scale, as fp32 rounding does.
 */
export function relError(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (got.length !== ref.length) throw new Error(`length ${got.length} != ${ref.length}`);
  let maxDiff = 0, maxRef = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i] - ref[i]);
    if (!(d <= maxDiff)) maxDiff = Number.isNaN(d) ? Infinity : d;
    maxRef = Math.max(maxRef, Math.abs(ref[i]));
  }
  return maxRef === 0 ? maxDiff : maxDiff / maxRef;
}

/** fp32 kernels against the double reference (the bar). */
export const FP32_TOL = 1e-5;

/** The ISAs this CPU can run, best first. */
export function availableIsas(): Isa[] {
  const order: Isa[] = ['avx512', 'avx2', 'generic'];
  const best = addon.runtimeInfo().bestIsa;
  return order.slice(order.indexOf(best));
}

/** Runs fn under every available ISA and thread counts 1..4, restoring the defaults after. */
export function forEachConfig(fn: (isa: Isa, threads: number) => void, threads = [1, 2, 3, 4]): void {
  const before = addon.runtimeInfo();
  try {
    for (const isa of availableIsas()) {
      addon.setIsa({ isa });
      for (const t of threads) {
        addon.setThreads({ threads: t });
        fn(isa, t);
      }
    }
  } finally {
    addon.setIsa({ isa: before.isa });
    addon.setThreads({ threads: before.threads });
  }
}

// ---- the backends harness: every kernel suite runs once per backend ---------------------------------

/** A backend the kernel suites run on (the `device` argument of every kernel). */
export type Device = 'cpu' | 'cuda';

const cuda = addon.cudaInfo();

/** The backends whose rows run here: 'cpu', and 'cuda' when `cudaInfo().available`. */
export function backends(): Device[] {
  return cuda.available ? ['cpu', 'cuda'] : ['cpu'];
}

/**
 * Ops a backend lacks yet: they throw "<op> is not implemented on CUDA yet (issue 14)" (see
 * native/cuda/README.md). A suite's test of such an op (be.test with the op named) checks that it
 * throws exactly that instead of skipping: when a kernel is added the test fails until the op is
 * removed from this list. Empty since issue 14 added the last four (routeThreshold, routeThresholdTopk,
 * attentionBackward, maskScores): every be.test runs the real comparison on every usable backend.
 */
export const KNOWN_GAPS: Record<Device, readonly string[]> = {
  cpu: [],
  cuda: [],
};

export interface TestBackend {
  device: Device;
  /** The addon with `device` added to every call's argument object (the plain addon for 'cpu'). */
  addon: NativeAddon;
  /** This backend's entry of a per-backend tolerance written next to the op's test. */
  tol(t: Record<Device, number>): number;
  /** forEachConfig's ISA and thread sweep on the CPU; once on another backend (it has neither). */
  forEachConfig(fn: (isa: Isa, threads: number) => void, threads?: number[]): void;
  /** test(name, fn), or, when one of `ops` is a known gap of this backend, a test that fn throws it. */
  test(name: string, ops: readonly string[], fn: () => unknown): void;
}

function onDevice(device: Device): NativeAddon {
  if (device === 'cpu') return addon;
  return new Proxy(addon, {
    get(target, name) {
      const f = (target as unknown as Record<string | symbol, unknown>)[name];
      if (typeof f !== 'function') return f;
      return (args?: object) => (f as (a?: object) => unknown)(args === undefined ? args : { ...args, device });
    },
  });
}

function testBackend(device: Device): TestBackend {
  return {
    device,
    addon: onDevice(device),
    tol: (t) => t[device],
    forEachConfig: (fn, threads) => {
      if (device === 'cpu') return forEachConfig(fn, threads);
      const r = addon.runtimeInfo();
      fn(r.isa, r.threads);
    },
    test: (name, ops, fn) => {
      const gap = ops.find((op) => KNOWN_GAPS[device].includes(op));
      if (gap === undefined) {
        test(name, fn as () => void);
        return;
      }
      test(`${name}: known gap on ${device} (issue 14), ${gap} throws "not implemented"`, async () => {
        await expect(async () => fn()).rejects.toThrow(
          new RegExp(`${gap}: .*not implemented on CUDA yet \\(issue 14\\)`));
      });
    },
  };
}

/**
 * Registers suite(be) once per backend, each inside describe(device): the CPU always; CUDA when a
 * device is usable, else one skipped test whose name says why ("cuda: skipped — no usable CUDA
 * device: <reason>").
 */
export function forEachBackend(suite: (be: TestBackend) => void): void {
  for (const device of ['cpu', 'cuda'] as const) {
    if (!backends().includes(device)) {
      describe(device, () => {
        test.skip(`${device}: skipped — no usable CUDA device: ${cuda.reason ?? 'unknown'}`, () => undefined);
      });
      continue;
    }
    describe(device, () => suite(testBackend(device)));
  }
}

/** Converts fp32 values to bf16 bit patterns (round to nearest even), as the native code does. */
export function toBf16(x: Float32Array): Uint16Array {
  const u32 = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const bits = u32[i];
    // NaN stays a (quiet) NaN: adding the rounding bias could carry it into ±Inf or ±0.
    if ((bits & 0x7fffffff) > 0x7f800000) { out[i] = ((bits >>> 16) | 0x40) & 0xffff; continue; }
    out[i] = ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

export function fromBf16(h: Uint16Array): Float32Array {
  const u32 = new Uint32Array(h.length);
  for (let i = 0; i < h.length; i++) u32[i] = h[i] << 16;
  return new Float32Array(u32.buffer);
}

/** Central finite difference of a scalar function f with respect to x[i]. */
export function finiteDiff(f: () => number, x: Float32Array, i: number, h = 1e-3): number {
  const old = x[i];
  x[i] = old + h;
  const fp = f();
  x[i] = old - h;
  const fm = f();
  x[i] = old;
  return (fp - fm) / (2 * h);
}

/**
 * Asserts that call() throws an error of the given name whose message matches. Errors made by the
 * addon belong to Node's main realm, not jest's sandbox, so `instanceof RangeError` cannot be
 * used; the name is the same in both.
 */
export function expectNativeError(call: () => unknown, name: 'TypeError' | 'RangeError' | 'Error',
  message: RegExp): void {
  let thrown: unknown;
  try {
    call();
  } catch (e) {
    thrown = e;
  }
  if (thrown === undefined) throw new Error(`expected a ${name} matching ${message}, but nothing was thrown`);
  const err = thrown as Error;
  if (err.name !== name || !message.test(err.message))
    throw new Error(`expected a ${name} matching ${message}, got ${err.name}: ${err.message}`);
}

const DSMOE_BIN = path.join(__dirname, '..', 'bin', 'dsmoe.js');

/** Runs the dsmoe CLI in a child process with 2 kernel threads; cwd, cache folder and stdin optional. */
export function runCli(
  args: string[], o: { cwd?: string; cacheDir?: string; input?: string } = {},
): { code: number | null; stdout: string; stderr: string } {
  const env = { ...process.env, DSMOE_THREADS: '2', ...(o.cacheDir ? { DSMOE_CACHE_DIR: o.cacheDir } : {}) };
  const r = spawnSync(process.execPath, [DSMOE_BIN, ...args], { encoding: 'utf8', cwd: o.cwd, input: o.input, env });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * What O_DIRECT does in `dir`: 'none' (cannot be opened: not Linux, or a file system without it),
 * 'enforced' (a write from unaligned memory is refused, as on ext4 and xfs) or 'ignored' (accepted and
 * copied through the page cache, as tmpfs does since Linux 6.6).
 */
export function directIoIn(dir: string): 'none' | 'enforced' | 'ignored' {
  const flag = fs.constants.O_DIRECT;
  if (flag === undefined) return 'none';
  const file = path.join(dir, `.direct-probe-${process.pid}`);
  fs.writeFileSync(file, '');
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, fs.constants.O_WRONLY | flag);
  } catch {
    fs.rmSync(file, { force: true });
    return 'none';
  }
  try {
    fs.writeSync(fd, Buffer.alloc(4097).subarray(1), 0, 4096, 0); // memory one byte off any alignment
    return 'ignored';
  } catch {
    return 'enforced';
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
}
