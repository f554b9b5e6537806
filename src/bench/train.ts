// The training benchmark: tokens/s, model-FLOPs utilisation and peak memory of a training step for
// presets × modes, against the GEMM peak measured in the same run. Each measurement runs in its
// own process (train-worker.ts) so that its peak memory is its own.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import type { ModelConfig } from '../model/model-config';
import { paramCount } from '../model/config';
import { loadAddon } from '../native/addon';
import { timeBest } from '../util/timing';

export interface TrainBenchOptions {
  presets: string[];
  modes: string[];
  /** timed steps per configuration (after one warm-up step) */
  steps: number;
  threads: number;
  /** sequences per step (default: 16) */
  batch?: number;
  log?: (line: string) => void;
}

export interface TrainBenchRow {
  preset: string; mode: string; totalParams: number; nonEmbeddingParams: number; tokensPerStep: number;
  stepSeconds: number; tokensPerSecond: number; flopsPerToken: number; gflops: number; mfu: number;
  peakRssMiB: number; vsDense: number | null;
}

export interface TrainBenchResult {
  date: string;
  threads: number;
  /** fp32 GEMM GFLOP/s at 2048³ (y = x·Wᵀ) with the same threads: the MFU denominator */
  gemmPeakGflops: number;
  rows: TrainBenchRow[];
}

/**
 * Model FLOPs per trained token (forward + backward = 3 × forward), counting what the method needs:
 *   6 × (matmul parameters a token touches: routers, q/k/v/o, up/down, LM head; not the embedding
 *        lookup) + per layer 6·(T+1)·(query dims) for the causal attention scores and values.
 * dsmoe and dense touch every expert; smoe touches top_k of them (our smoe step computes all
 * experts with the others masked, so its utilisation is understated by E/k on the expert part).
 */
export function modelFlopsPerToken(c: ModelConfig): number {
  const D = c.d_model, V = c.vocab_size, T = c.max_seq_len;
  const { n_experts: Ea, n_heads: H, n_kv_heads: G, head_dim: dh } = c.attention;
  const { n_experts: Em, expert_dim: F } = c.mlp;
  const smoe = c.training.mode === 'smoe';
  const shareA = smoe ? Math.min(c.training.top_k, Ea) / Ea : 1;
  const shareM = smoe ? Math.min(c.training.top_k, Em) / Em : 1;
  const { attnRouter, mlpRouter } = paramCount(c).perLayer;  // linear E·D, or two-layer h·D + E·h
  const routers = attnRouter + mlpRouter;
  const qo = 2 * Ea * H * dh * D * shareA, kv = 2 * G * dh * D, mlp = 2 * Em * F * D * shareM;
  const perLayer = 6 * (routers + qo + kv + mlp) + 6 * (T + 1) * Ea * H * dh * shareA;
  return c.n_layers * perLayer + 6 * V * D;
}

export function runTrainBench(opts: TrainBenchOptions): TrainBenchResult {
  const addon = loadAddon();
  const log = opts.log ?? (() => {});
  addon.setThreads({ threads: opts.threads });
  const n = 2048, a = new Float32Array(n * n).fill(0.5), b = new Float32Array(n * n).fill(0.25),
    c = new Float32Array(n * n);
  const gemmPeakGflops = (2 * n ** 3) / timeBest(() => addon.gemm({ transB: true, m: n, n, k: n, a, b, c }), 1) / 1e9;
  log(`GEMM 2048³ with ${opts.threads} thread(s): ${gemmPeakGflops.toFixed(0)} GFLOP/s`);
  const worker = path.join(__dirname, 'train-worker.js');
  const rows: TrainBenchRow[] = [];
  for (const preset of opts.presets)
    for (const mode of opts.modes) {
      const args = { preset, mode, batch: opts.batch ?? 16, steps: opts.steps, threads: opts.threads };
      const r = spawnSync(process.execPath, [worker, JSON.stringify(args)], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`training benchmark of ${preset}/${mode} failed: ${r.stderr.trim()}`);
      const m = JSON.parse(r.stdout.trim().split('\n').pop()!);
      const gflops = (m.flopsPerToken * m.tokensPerSecond) / 1e9;
      rows.push({ preset, mode, ...m, gflops, mfu: gflops / gemmPeakGflops, vsDense: null });
      log(`${preset}/${mode}: ${m.tokensPerSecond.toFixed(0)} tok/s, step ${m.stepSeconds.toFixed(3)} s, MFU ` +
        `${(100 * gflops / gemmPeakGflops).toFixed(1)}%`);
    }
  for (const r of rows) {
    const dense = rows.find((x) => x.preset === r.preset && x.mode === 'dense');
    r.vsDense = dense ? r.stepSeconds / dense.stepSeconds : null;
  }
  return { date: new Date().toISOString(), threads: opts.threads, gemmPeakGflops, rows };
}
