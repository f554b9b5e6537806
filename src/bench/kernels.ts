// The kernel benchmark: GEMM and grouped expert GEMM GFLOP/s against the machine's FMA peak, a
// naive loop and (if Debian's OpenBLAS is installed) OpenBLAS sgemm, on square sizes and on the
// shapes of DS-MoE layers, for each thread count. Prints tables and returns everything as JSON.
import { loadAddon, type NativeAddon, type OpenBlasInfo } from '../native/addon';
import { unsetOpenblasOverrides } from '../util/env';
import { timeBest } from '../util/timing';

export interface KernelBenchOptions {
  threads: number[];
  /** Shorter runs and fewer shapes (a smoke test, e.g. in CI). */
  quick?: boolean;
  /** Skip OpenBLAS even if installed. */
  noPeer?: boolean;
  log?: (line: string) => void;
}

export interface SquareRow {
  size: number; threads: number; dsmoeGflops: number; openblasGflops: number | null;
  naiveGflops: number | null; ofPeak: number; vsOpenblas: number | null;
}

export interface MoeRow {
  tokens: number; dModel: number; experts: number; expertDim: number; groups: 'balanced' | 'skewed';
  threads: number; rows: number; emptyGroups: number; largestGroup: number;
  /** Grouped expert GEMM: each routed (token, expert) row times its expert's weights. */
  groupedGflops: number;
  /** One dense GEMM with the same total work ([rows, D] · [D, F]). */
  denseGflops: number;
  /** grouped / dense: the cost of grouping. */
  groupedVsDense: number;
  /** OpenBLAS: one sgemm call per expert (what a loop over experts gets). */
  openblasLoopGflops: number | null;
  /** Dense-training form: all experts on all tokens, router-weighted sum (expertWeightedGemm). */
  denseTrainingGflops: number;
}

export interface KernelBenchResult {
  date: string;
  runtime: ReturnType<NativeAddon['runtimeInfo']>;
  peakGflops: Record<string, number>;
  openblas: OpenBlasInfo & { note?: string };
  square: SquareRow[];
  moe: MoeRow[];
}

function randomFill(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 4294967296) * 2 - 1;
  }
  return out;
}

/** Group sizes summing to `rows`: equal, or Zipf-like (share ∝ (rank+1)^-1.5, in shuffled order). */
export function groupSizes(rows: number, experts: number, kind: 'balanced' | 'skewed'): number[] {
  if (kind === 'balanced') return Array.from({ length: experts }, (_, e) => Math.floor((rows * (e +
    1)) / experts) - Math.floor((rows * e) / experts));
  const w = Array.from({ length: experts }, (_, e) => Math.pow(e + 1, -1.5));
  const total = w.reduce((a, b) => a + b, 0);
  const sizes = w.map((x) => Math.floor((rows * x) / total));
  sizes[0] += rows - sizes.reduce((a, b) => a + b, 0);
  // A fixed shuffle so the big groups are not all at the front.
  for (let i = experts - 1; i > 0; i--) {
    const j = (i * 7919 + 13) % (i + 1);
    [sizes[i], sizes[j]] = [sizes[j], sizes[i]];
  }
  return sizes;
}

const gflops = (flops: number, seconds: number) => flops / seconds / 1e9;

export function runKernelBench(opts: KernelBenchOptions): KernelBenchResult {
  const addon = loadAddon();
  const log = opts.log ?? (() => {});
  const minSec = opts.quick ? 0.05 : 0.3;
  const before = addon.runtimeInfo();

  // OpenBLAS reads OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE when it loads; unset them (in this process
  // only) so it picks its kernels for this CPU rather than a forced older one.
  let openblas: KernelBenchResult['openblas'] = { loaded: false, note: 'skipped (--no-peer)' };
  if (!opts.noPeer) {
    const forced = unsetOpenblasOverrides();
    openblas = addon.openblasLoad();
    openblas.note = openblas.loaded
      ? forced.length ? `unset ${forced.join(', ')} before loading` : undefined
      : 'not installed (apt-get install libopenblas-dev to compare)';
  }

  const peakGflops: Record<string, number> = {};
  for (const t of opts.threads) {
    peakGflops[t] = addon.measureFmaPeak({ threads: t, seconds: opts.quick ? 0.1 : 0.5 }) / 1e9;
    log(`fma peak, ${t} thread(s): ${peakGflops[t].toFixed(0)} GFLOP/s`);
  }

  const square: SquareRow[] = [];
  const sizes = opts.quick ? [256, 512] : [512, 1024, 2048];
  for (const n of sizes) {
    const a = randomFill(n * n, 1), b = randomFill(n * n, 2), c = new Float32Array(n * n);
    const flops = 2 * n * n * n;
    let naive: number | null = null;
    if (n <= 512) naive = gflops(flops, timeBest(() => addon.naiveGemm({ m: n, n, k: n, a, b, c }), 0, 1, 1));
    for (const t of opts.threads) {
      addon.setThreads({ threads: t });
      const ours = gflops(flops, timeBest(() => addon.gemm({ transB: true, m: n, n, k: n, a, b, c }), minSec));
      const peer = openblas.loaded
        ? gflops(flops, timeBest(() => addon.openblasSgemm({ threads: t, transB: true, m: n, n, k: n, a, b, c }),
          minSec))
        : null;
      square.push({ size: n, threads: t, dsmoeGflops: ours, openblasGflops: peer, naiveGflops: naive,
        ofPeak: ours / peakGflops[t], vsOpenblas: peer ? ours / peer : null });
      log(`gemm ${n}³ ${t}t: ${ours.toFixed(0)} GFLOP/s` + (peer ? ` (OpenBLAS ${peer.toFixed(0)})` : ''));
    }
  }

  // DS-MoE layer shapes: an MLP up-projection of top-2 routed tokens, rows = 2 · tokens.
  const shapes: Array<[number, number, number, number]> = opts.quick
    ? [[256, 128, 8, 256]]
    : [[512, 256, 8, 512], [2048, 512, 16, 512], [4096, 1024, 32, 256], [4096, 1024, 32, 1024]];
  const moe: MoeRow[] = [];
  for (const [tokens, D, E, F] of shapes) {
    const rows = 2 * tokens;
    const x = randomFill(rows * D, 3), w = randomFill(E * F * D, 4), y = new Float32Array(rows * F);
    const flops = 2 * rows * D * F;
    // Dense-training form: every expert on every token: x_e [tokens, E, F] → y [tokens, D].
    const xe = randomFill(tokens * E * F, 5), wd = randomFill(E * D * F, 6), s = randomFill(tokens * E, 7);
    const yd = new Float32Array(tokens * D);
    const denseTrainFlops = 2 * tokens * E * F * D;
    for (const groups of ['balanced', 'skewed'] as const) {
      const gs = groupSizes(rows, E, groups);
      const offsets = new Int32Array(E + 1);
      gs.forEach((g, e) => (offsets[e + 1] = offsets[e] + g));
      for (const t of opts.threads) {
        addon.setThreads({ threads: t });
        const grouped = gflops(flops, timeBest(() => addon.groupedGemm({ experts: E, offsets, x, w, n: F, k: D, y }),
          minSec));
        const dense = gflops(flops, timeBest(() => addon.gemm({ transB: true, m: rows, n: F, k: D, a: x, b: w, c: y }),
          minSec));
        const denseTraining = gflops(denseTrainFlops, timeBest(() => addon.expertWeightedGemm({
          t: tokens, experts: E, n: D, k: F, x: xe, ldx: E * F, xExpertStride: F, w: wd, s, y: yd }), minSec));
        let peerLoop: number | null = null;
        if (openblas.loaded) {
          peerLoop = gflops(flops, timeBest(() => {
            for (let e = 0; e < E; e++) {
              const r0 = offsets[e], r = offsets[e + 1] - r0;
              if (r === 0) continue;
              addon.openblasSgemm({ threads: t, transB: true, m: r, n: F, k: D,
                a: x.subarray(r0 * D, (r0 + r) * D), b: w.subarray(e * F * D, (e + 1) * F * D),
                c: y.subarray(r0 * F, (r0 + r) * F) });
            }
          }, minSec));
        }
        moe.push({ tokens, dModel: D, experts: E, expertDim: F, groups, threads: t, rows,
          emptyGroups: gs.filter((g) => g === 0).length, largestGroup: Math.max(...gs),
          groupedGflops: grouped, denseGflops: dense, groupedVsDense: grouped / dense,
          openblasLoopGflops: peerLoop, denseTrainingGflops: denseTraining });
        log(`moe T=${tokens} D=${D} E=${E} F=${F} ${groups} ${t}t: grouped ${grouped.toFixed(0)}, dense ` +
          `${dense.toFixed(0)} GFLOP/s`);
      }
    }
  }
  addon.setThreads({ threads: before.threads });
  return { date: new Date().toISOString(), runtime: addon.runtimeInfo(), peakGflops, openblas, square, moe };
}
