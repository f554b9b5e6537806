// `dsmoe bench train --nproc 1,2`: data-parallel training steps on this machine. For each preset ×
// mode × rank count, N worker processes (train-worker.ts) join through a rendezvous service hosted
// here and train on random tokens with the preset's batch per rank (weak scaling, as DDP/torchrun
// runs do) and cores / N threads each. Reported: tokens/s over all ranks, the step time, the
// gradient all-reduce's time in the step (which includes waiting for the slowest rank) and its
// share, and the same all-reduce timed alone: its algorithm bandwidth = gradient bytes / time and
// bus bandwidth = 2(N−1)/N × that (what a ring moves per rank, comparable across N;
// docs/distributed.md scales the 8- and 32-GPU estimates from it).
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { StoreServer } from '../parallel/store';
import type { RankInfo } from '../parallel/group';

export interface ParallelTrainBenchOptions {
  presets: string[];
  modes: string[];
  nproc: number[];
  steps: number;
  /** all ranks together */
  threads: number;
  /** sequences per rank and step (default 16) */
  batch?: number;
  log?: (line: string) => void;
}

export interface ParallelTrainBenchRow {
  preset: string; mode: string; ranks: number; threadsPerRank: number; totalParams: number; gradBytes: number;
  tokensPerStep: number; stepSeconds: number; tokensPerSecond: number; allreduceSeconds: number;
  allreduceShare: number; isolatedAllreduceSeconds: number; algBandwidthGBs: number | null;
  busBandwidthGBs: number | null; speedup: number | null;
}

export interface ParallelTrainBenchResult {
  date: string;
  threads: number;
  rows: ParallelTrainBenchRow[];
}

function runRanks(server: StoreServer, args: object, ranks: number, prefix: string): Promise<string> {
  const worker = path.join(__dirname, 'train-worker.js');
  const procs = Array.from({ length: ranks }, (_, rank) => {
    const parallel: RankInfo = {
      rank, size: ranks, localRank: rank, localSize: ranks, nodeRank: 0, nnodes: 1, storeHost: '127.0.0.1',
      storePort: server.port, prefix, hostname: '127.0.0.1', timeoutMs: 120000,
    };
    const child = spawn(process.execPath, [worker, JSON.stringify({ ...args, parallel })],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
    return new Promise<{ code: number | null; out: string; err: string }>((resolve) =>
      child.on('exit', (code) => resolve({ code, out, err })));
  });
  return Promise.all(procs).then((rs) => {
    const bad = rs.find((r) => r.code !== 0);
    if (bad) throw new Error(`a rank failed: ${bad.err.trim()}`);
    return rs[0].out;
  });
}

export async function runParallelTrainBench(o: ParallelTrainBenchOptions): Promise<ParallelTrainBenchResult> {
  const log = o.log ?? (() => {});
  const server = await StoreServer.listen('127.0.0.1', 0);
  const rows: ParallelTrainBenchRow[] = [];
  try {
    for (const preset of o.presets)
      for (const mode of o.modes)
        for (const ranks of o.nproc) {
          const threadsPerRank = Math.max(1, Math.floor(o.threads / ranks));
          const args = { preset, mode, batch: o.batch ?? 16, steps: o.steps, threads: threadsPerRank };
          const out = await runRanks(server, args, ranks, `bench/${preset}/${mode}/${ranks}`);
          const m = JSON.parse(out.trim().split('\n').pop()!);
          const busFactor = ranks > 1 ? (2 * (ranks - 1)) / ranks : 0;
          const iso = m.isolatedAllreduceSeconds as number;
          const alg = ranks > 1 && iso > 0 ? m.gradBytes / iso / 1e9 : null;
          rows.push({
            preset, mode, ranks, threadsPerRank, totalParams: m.totalParams, gradBytes: m.gradBytes,
            tokensPerStep: m.tokensPerStep, stepSeconds: m.stepSeconds, tokensPerSecond: m.tokensPerSecond,
            allreduceSeconds: m.allreduceSeconds, allreduceShare: m.allreduceSeconds / m.stepSeconds,
            isolatedAllreduceSeconds: iso,
            algBandwidthGBs: alg, busBandwidthGBs: alg === null ? null : alg * busFactor, speedup: null,
          });
          log(`${preset}/${mode} × ${ranks} rank(s): ${m.tokensPerSecond.toFixed(0)} tok/s, step `
            + `${m.stepSeconds.toFixed(3)} s, all-reduce ${(1000 * m.allreduceSeconds).toFixed(1)} ms in the step, `
            + `${(1000 * iso).toFixed(1)} ms alone`);
        }
  } finally {
    await server.close();
  }
  for (const r of rows) {
    const one = rows.find((x) => x.preset === r.preset && x.mode === r.mode && x.ranks === 1);
    r.speedup = one ? r.tokensPerSecond / one.tokensPerSecond : null;
  }
  return { date: new Date().toISOString(), threads: o.threads, rows };
}
