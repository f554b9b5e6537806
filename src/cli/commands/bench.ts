// `dsmoe bench …`: benchmarks. For now: `dsmoe bench kernels`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { runKernelBench, type KernelBenchResult } from '../../bench/kernels';
import { renderTable } from '../../util/table';

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

export function benchCommand(): Command {
  const bench = new Command('bench').description('benchmarks: kernel speed (more to come)');
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
  return bench;
}
