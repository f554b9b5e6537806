// `dsmoe bench …`: benchmarks: `dsmoe bench kernels`, `dsmoe bench train`, `dsmoe bench decode`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { formatDecodeBench, runDecodeBench } from '../../bench/decode';
import { runKernelBench, type KernelBenchResult } from '../../bench/kernels';
import { runTrainBench, type TrainBenchResult } from '../../bench/train';
import { renderTable } from '../../util/table';
import { intArg } from '../args';

export interface BenchKernelsCliOptions {
  threads: number[];
  quick?: boolean;
  peer: boolean;
  out: string;
  json?: boolean;
}

function parseThreads(value: string): number[] {
  const list = value.split(',').map((s) => Number(s.trim()));
  if (list.length === 0 || list.some((t) => !Number.isInteger(t) || t < 1 || t > 256))
    throw new InvalidArgumentError(`expected a comma-separated list of thread counts (1..256), got "${value}"`);
  return list;
}

export function formatKernelBench(r: KernelBenchResult): string {
  const pct = (x: number | null) => (x === null ? null : `${(100 * x).toFixed(0)}%`);
  const ratio = (x: number | null) => (x === null ? null : `${x.toFixed(2)}x`);
  const lines: string[] = [];
  lines.push(`CPU kernels: isa ${r.runtime.isa}, FMA peak ` +
    Object.entries(r.peakGflops).map(([t, g]) => `${g.toFixed(0)} GFLOP/s (${t}t)`).join(', '));
  lines.push(r.openblas.loaded ? `OpenBLAS: ${r.openblas.config} core ${r.openblas.core}${r.openblas.note ? ` (${r.openblas.note})` : ''}`
    : `OpenBLAS: ${r.openblas.note}`);
  lines.push('', 'Square GEMM, y = x·Wᵀ (GFLOP/s)');
  lines.push(renderTable(['size', 'threads', 'dsmoe', 'OpenBLAS', 'naive', 'of peak', 'vs OpenBLAS'],
    r.square.map((s) => [s.size, s.threads, s.dsmoeGflops, s.openblasGflops, s.naiveGflops, pct(s.ofPeak), ratio(s.vsOpenblas)])));
  lines.push('', 'DS-MoE layer shapes, top-2 routed rows = 2·tokens (GFLOP/s)');
  lines.push(renderTable(['tokens', 'D', 'E', 'F', 'groups', 'empty', 'threads', 'grouped', 'dense same work', 'grouped/dense', 'OpenBLAS loop', 'dense-training'],
    r.moe.map((m) => [m.tokens, m.dModel, m.experts, m.expertDim, m.groups, m.emptyGroups, m.threads,
      m.groupedGflops, m.denseGflops, ratio(m.groupedVsDense), m.openblasLoopGflops, m.denseTrainingGflops])));
  return lines.join('\n');
}

export async function benchKernels(opts: BenchKernelsCliOptions): Promise<KernelBenchResult> {
  const result = runKernelBench({ threads: opts.threads, quick: opts.quick, noPeer: !opts.peer,
    log: opts.json ? undefined : (l) => process.stderr.write(`  ${l}\n`) });
  fs.mkdirSync(path.dirname(path.resolve(opts.out)), { recursive: true });
  fs.writeFileSync(opts.out, JSON.stringify(result, null, 2) + '\n');
  if (opts.json) process.stdout.write(JSON.stringify(result) + '\n');
  else process.stdout.write(formatKernelBench(result) + `\n\nJSON written to ${opts.out}\n`);
  return result;
}

export function formatTrainBench(r: TrainBenchResult): string {
  const mib = (x: number) => `${x.toFixed(0)} MiB`;
  return [`Training step, ${r.threads} thread(s); MFU = model FLOPs/token × tokens/s ÷ GEMM 2048³ (${r.gemmPeakGflops.toFixed(0)} GFLOP/s, same run)`,
    renderTable(['preset', 'mode', 'params', 'non-emb', 'tokens/step', 'step s', 'tokens/s', 'GFLOP/s', 'MFU', 'step vs dense', 'peak RSS'],
      r.rows.map((x) => [x.preset, x.mode, `${(x.totalParams / 1e6).toFixed(2)}M`, `${(x.nonEmbeddingParams / 1e6).toFixed(2)}M`,
        x.tokensPerStep, x.stepSeconds, x.tokensPerSecond, x.gflops, `${(100 * x.mfu).toFixed(1)}%`,
        x.vsDense === null ? null : `${x.vsDense.toFixed(2)}x`, mib(x.peakRssMiB)]))].join('\n');
}

export function benchCommand(): Command {
  const bench = new Command('bench').description('benchmarks: kernel speed, training throughput, decode speed');
  bench
    .command('kernels')
    .description('GFLOP/s of the CPU GEMM and grouped expert GEMM against the FMA peak, a naive loop and OpenBLAS')
    .option('--threads <list>', 'thread counts to measure, comma-separated', parseThreads, [1, 2])
    .option('--quick', 'small shapes and short runs (a smoke test)')
    .option('--no-peer', 'do not load OpenBLAS even if it is installed')
    .option('--out <file>', 'where to write the JSON results', 'bench-results/kernels.json')
    .option('--json', 'print the JSON result on stdout instead of tables')
    .addHelpText('after', `
Shapes: square GEMMs (512, 1024, 2048) in the Linear layout y = x·Wᵀ, and DS-MoE MLP shapes
(tokens 512-4096, D 256-1024, 8-32 experts) with balanced and Zipf-skewed expert groups.
"dense same work" is one GEMM with the same FLOPs as the grouped one; "dense-training" is the
all-experts router-weighted form used when training DS-MoE densely.
OpenBLAS (Debian's libopenblas-dev) is compared when installed; OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE are unset for it so that it uses its kernels for this CPU.

Example:
  dsmoe bench kernels --threads 1,2 --out bench-results/kernels.json`)
    .action(async (o: BenchKernelsCliOptions) => {
      await benchKernels(o);
    });
  bench
    .command('train')
    .description('training tokens/s, model-FLOPs utilisation and peak memory per preset and mode')
    .option('--presets <list>', 'presets to measure, comma-separated', (v: string) => v.split(','), ['tiny', 'small', 'medium'])
    .option('--modes <list>', 'training modes, comma-separated', (v: string) => v.split(','), ['dense', 'dsmoe', 'smoe'])
    .option('--steps <n>', 'timed steps per configuration (median reported)', (v: string) => parseThreads(v)[0], 5)
    .option('--threads <n>', 'kernel threads', (v: string) => parseThreads(v)[0], require('node:os').cpus().length)
    .option('--out <file>', 'where to write the JSON results', 'bench-results/train.json')
    .option('--json', 'print the JSON result on stdout instead of the table')
    .addHelpText('after', `
Each configuration trains on random tokens (batch 16 × the preset's sequence length) in its own
process, one warm-up step then --steps timed steps; the median step is reported. "step vs dense"
is the step time over the dense model of the same width (DS-MoE's premise: dense training of the
MoE costs about as much as the dense model).

Example:
  dsmoe bench train --presets small,medium --modes dense,dsmoe`)
    .action((o: { presets: string[]; modes: string[]; steps: number; threads: number; out: string; json?: boolean }) => {
      const result = runTrainBench({ presets: o.presets, modes: o.modes, steps: o.steps, threads: o.threads,
        log: o.json ? undefined : (l) => process.stderr.write(`  ${l}\n`) });
      fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
      fs.writeFileSync(o.out, JSON.stringify(result, null, 2) + '\n');
      process.stdout.write(o.json ? JSON.stringify(result) + '\n' : formatTrainBench(result) + `\n\nJSON written to ${o.out}\n`);
    });
  bench
    .command('decode')
    .description('decode and prefill tokens/s with dense vs sparse routing on a synthetic bf16 model, against bytes read per token')
    .option('--routings <list>', 'routings to compare, comma-separated; ATT/MLP for different kinds', (v: string) => v.split(',').map((x) => x.trim()).filter(Boolean),
      ['dense', 'topk:2', 'topk:1', 'threshold:0.48'])
    .option('--prompt-len <n>', 'prompt tokens (prefill, time to first token)', intArg('--prompt-len'), 128)
    .option('--decode-tokens <n>', 'timed decode tokens per round', intArg('--decode-tokens'), 24)
    .option('--rounds <n>', 'interleaved rounds; each routing keeps its best', intArg('--rounds'), 3)
    .option('--layers <n>', 'layers of the synthetic model (default 8)', intArg('--layers'))
    .option('--threads <n>', 'kernel threads', intArg('--threads'))
    .option('--out <file>', 'where to write the JSON results', 'bench-results/decode.json')
    .option('--json', 'print the JSON result on stdout instead of the table')
    .addHelpText('after', `
A synthetic bf16 DS-MoE model (D 1024, 8 layers, 8 attention × 32 MLP experts, ~300M parameters)
with peaked routers decodes at batch 1 under each routing. In the memory-bound regime the sparse
speed-up should approach (bytes read dense) / (bytes read sparse), and dense decode should read its
weights at a good share of the streaming bandwidth measured in the same run.

Example:
  dsmoe bench decode --routings dense,topk:1,dense/threshold:0.48 --threads 2`)
    .action(async (o: { routings: string[]; promptLen: number; decodeTokens: number; rounds: number; layers?: number; threads?: number; out: string; json?: boolean }) => {
      const result = await runDecodeBench({ routings: o.routings, promptLen: o.promptLen, decodeTokens: o.decodeTokens, rounds: o.rounds,
        threads: o.threads, config: o.layers ? { n_layers: o.layers } : undefined, log: o.json ? undefined : (l) => process.stderr.write(`  ${l}\n`) });
      fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
      fs.writeFileSync(o.out, JSON.stringify(result, null, 2) + '\n');
      process.stdout.write(o.json ? JSON.stringify(result) + '\n' : formatDecodeBench(result) + `\n\nJSON written to ${o.out}\n`);
    });
  return bench;
}
