// `dsmoe bench …`: benchmarks. `dsmoe bench <checkpoint…>` compares checkpoints and routing
// strategies (quality, speed, active parameters, charts); `bench reproduce` runs the paper's central
// comparison in miniature; `bench kernels`, `bench train` and `bench decode` measure the kernels,
// training and decoding.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { formatCompare, runCompare, writeCompareOutputs, DEFAULT_DECODE_PROMPTS, DEFAULT_DECODE_TOKENS,
  DEFAULT_EVAL_BATCH, DEFAULT_HEATMAP_ROUTING, DEFAULT_MAX_WINDOWS, DEFAULT_ROUNDS, DEFAULT_THRESHOLDS,
} from '../../bench/compare';
import { formatReproduce, runReproduce, DEFAULT_REPRODUCE_BUDGET_S } from '../../bench/reproduce';
import { formatDuration, parseDuration } from '../../train/schedule';
import { formatDecodeBench, runDecodeBench } from '../../bench/decode';
import { runKernelBench, type KernelBenchResult } from '../../bench/kernels';
import { formatServeBench, runServeBench } from '../../bench/serve';
import { runTrainBench, type TrainBenchResult } from '../../bench/train';
import { runParallelTrainBench, type ParallelTrainBenchResult } from '../../bench/train-parallel';
import { renderTable } from '../../util/table';
import { intArg, intListArg, shareArg } from '../args';

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
  lines.push(r.openblas.loaded
    ? `OpenBLAS: ${r.openblas.config} core ${r.openblas.core}${r.openblas.note ? ` (${r.openblas.note})` : ''}`
    : `OpenBLAS: ${r.openblas.note}`);
  lines.push('', 'Square GEMM, y = x·Wᵀ (GFLOP/s)');
  lines.push(renderTable(['size', 'threads', 'dsmoe', 'OpenBLAS', 'naive', 'of peak', 'vs OpenBLAS'],
    r.square.map((s) => [
      s.size, s.threads, s.dsmoeGflops, s.openblasGflops, s.naiveGflops, pct(s.ofPeak), ratio(s.vsOpenblas),
    ])));
  lines.push('', 'DS-MoE layer shapes, top-2 routed rows = 2·tokens (GFLOP/s)');
  lines.push(renderTable(
    ['tokens', 'D', 'E', 'F', 'groups', 'empty', 'threads', 'grouped', 'dense same work', 'grouped/dense',
      'OpenBLAS loop', 'dense-training'],
    r.moe.map((m) => [m.tokens, m.dModel, m.experts, m.expertDim, m.groups, m.emptyGroups, m.threads,
      m.groupedGflops, m.denseGflops, ratio(m.groupedVsDense), m.openblasLoopGflops, m.denseTrainingGflops])));
  return lines.join('\n');
}

export async function benchKernels(opts: BenchKernelsCliOptions): Promise<KernelBenchResult> {
  const result = runKernelBench({ threads: opts.threads, quick: opts.quick, noPeer: !opts.peer,
    log: opts.json ? undefined : (l) => process.stderr.write(`  ${l}\n`) });
  writeBenchResult(result, opts.out, opts.json ? undefined : formatKernelBench);
  return result;
}

/** Writes a benchmark's JSON to `out`, then prints it (json) or its table and where the JSON went. */
function writeBenchResult<T>(result: T, out: string, format?: (r: T) => string): void {
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(format ? format(result) + `\n\nJSON written to ${out}\n` : JSON.stringify(result) + '\n');
}

export function formatTrainBench(r: TrainBenchResult): string {
  const mib = (x: number) => `${x.toFixed(0)} MiB`;
  return [
    `Training step, ${r.threads} thread(s); MFU = model FLOPs/token × tokens/s ÷ GEMM 2048³ ` +
      `(${r.gemmPeakGflops.toFixed(0)} GFLOP/s, same run)`,
    renderTable(
      ['preset', 'mode', 'params', 'non-emb', 'tokens/step', 'step s', 'tokens/s', 'GFLOP/s', 'MFU', 'step vs dense',
        'peak RSS'],
      r.rows.map((x) => [x.preset, x.mode, `${(x.totalParams / 1e6).toFixed(2)}M`,
        `${(x.nonEmbeddingParams / 1e6).toFixed(2)}M`,
        x.tokensPerStep, x.stepSeconds, x.tokensPerSecond, x.gflops, `${(100 * x.mfu).toFixed(1)}%`,
        x.vsDense === null ? null : `${x.vsDense.toFixed(2)}x`, mib(x.peakRssMiB)]))].join('\n');
}

export function formatParallelTrainBench(r: ParallelTrainBenchResult): string {
  const ms = (x: number) => (1000 * x).toFixed(1);
  return [
    `Data-parallel training steps on this machine, ${r.threads} thread(s) shared by the ranks; per-rank batch fixed`,
    renderTable(
      ['preset', 'mode', 'ranks', 'threads/rank', 'grad MB', 'tokens/step', 'step s', 'tokens/s', 'vs 1 rank',
        'all-reduce ms', 'share', 'alone ms', 'algbw GB/s', 'busbw GB/s'],
      r.rows.map((x) => [x.preset, x.mode, x.ranks, x.threadsPerRank, (x.gradBytes / 1e6).toFixed(1), x.tokensPerStep,
        x.stepSeconds, x.tokensPerSecond, x.speedup === null ? null : `${x.speedup.toFixed(2)}x`,
        ms(x.allreduceSeconds), `${(100 * x.allreduceShare).toFixed(1)}%`, ms(x.isolatedAllreduceSeconds),
        x.algBandwidthGBs === null ? null : x.algBandwidthGBs.toFixed(2),
        x.busBandwidthGBs === null ? null : x.busBandwidthGBs.toFixed(2)]))].join('\n');
}

function positiveInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 1) {
      throw new InvalidArgumentError(`${flag} must be a positive integer, got "${v}"`);
    }
    return n;
  };
}

function durationArg(v: string): number {
  try {
    return parseDuration(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

const stamp = () => new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d\dZ$/, 'Z');

export interface BenchCompareCliOptions {
  data?: string[];
  routingSweep?: string;
  maxWindows: number;
  seqLen?: number;
  batch: number;
  decodePrompts: number;
  decodeTokens: number;
  heatmapRouting: string;
  rounds: number;
  threads?: number;
  out?: string;
  json?: boolean;
  quiet?: boolean;
}

export async function benchCompare(checkpoints: string[], o: BenchCompareCliOptions): Promise<void> {
  if (checkpoints.length === 0)
    throw new Error('give at least one checkpoint folder (dsmoe bench runs/small-dsmoe runs/small-dense), ' +
      'or a subcommand: kernels, train, reproduce');
  const result = await runCompare({
    checkpoints, data: o.data, sweep: o.routingSweep, maxWindows: o.maxWindows, seqLen: o.seqLen, batch: o.batch,
    decodePrompts: o.decodePrompts, decodeTokens: o.decodeTokens, heatmapRouting: o.heatmapRouting, rounds: o.rounds,
    threads: o.threads,
    log: o.quiet ? undefined : (l) => process.stderr.write(`  ${l}\n`),
  });
  const outDir = o.out ?? path.join('bench-results', `compare-${stamp()}`);
  const files = writeCompareOutputs(result, outDir);
  if (o.json) process.stdout.write(JSON.stringify(result) + '\n');
  else {
    process.stdout.write(formatCompare(result) + '\n\n');
    process.stdout.write(`JSON: ${files.json}\nchart: ${files.chart}\n` +
      `${files.heatmaps.map((h) => `expert usage: ${h}\n`).join('')}`);
  }
}

export function benchCommand(): Command {
  const bench = new Command('bench')
    .description('compare checkpoints and routing strategies (quality, speed, active parameters); ' +
      'benchmarks of kernels and training')
    .argument('[checkpoints...]', 'checkpoint folders to compare')
    .enablePositionalOptions()
    .option('--data <files...>', 'evaluate on these text/.bin files (all their tokens) instead of the held-out split')
    .option('--routing-sweep <list>', 'routing strategies, comma-separated (see below)')
    .option('--max-windows <n>', 'evaluation windows at most', positiveInt('--max-windows'), DEFAULT_MAX_WINDOWS)
    .option('--seq-len <n>', 'window length (default: the training sequence length)', positiveInt('--seq-len'))
    .option('--batch <n>', 'windows per prefill call', positiveInt('--batch'), DEFAULT_EVAL_BATCH)
    .option('--decode-prompts <n>', 'prompts for the decode timing', positiveInt('--decode-prompts'),
      DEFAULT_DECODE_PROMPTS)
    .option('--decode-tokens <n>', 'greedy decode steps per prompt', positiveInt('--decode-tokens'),
      DEFAULT_DECODE_TOKENS)
    .option('--rounds <n>', 'timing rounds per routing, interleaved (tokens/s: the best)', positiveInt('--rounds'),
      DEFAULT_ROUNDS)
    .option('--heatmap-routing <strategy>', 'routing of the expert-usage heat maps', DEFAULT_HEATMAP_ROUTING)
    .option('--threads <n>', 'kernel threads', positiveInt('--threads'))
    .option('--out <dir>', 'folder for bench.json and the SVG charts (default bench-results/compare-<time>)')
    .option('--json', 'print the JSON result on stdout instead of the table')
    .option('--quiet', 'no progress lines on stderr')
    .addHelpText('after', `
Every checkpoint runs under every routing of the sweep on the same held-out token windows, through
the inference engine: perplexity (cross-entropy of the prefill logits at every position), mean
active parameters per token and the active share of expert parameters (the engine's counters),
prefill tokens/s, decode tokens/s (greedy, batch 1) and the decode speed-up over dense routing.

Evaluation text: --data files if given; else the checkpoints' recorded held-out split when they
share one tokenizer and one split; else the built-in corpus's held-out split, tokenized with the
first checkpoint's tokenizer. The output says which.

Routing sweep (default per model): dense, topk:K for K in {1, 2, E/4, E/2} (E = the larger expert
count), threshold:ε for ε in {${DEFAULT_THRESHOLDS.join(', ')}}. Items: dense, topk:K, threshold:ε,
threshold-topk:ε (both layer kinds), mlp-only:<strategy> (attention stays dense), or default (each
checkpoint's own default routing from config.json, e.g. calibrated thresholds). Per layer kind,
topk:K with K ≥ E and threshold:0 are dense; duplicates are merged; dense is always included (the
speed-up baseline); dense models (one expert) get only dense.

Writes bench.json, ppl-vs-active.svg (perplexity vs active parameters, one curve per model) and
experts-<model>.svg (per-layer expert usage under --heatmap-routing) into --out.

Subcommands (a checkpoint folder with one of these names needs a ./ prefix): kernels, train, decode, reproduce.

Examples:
  dsmoe bench runs/small-dsmoe runs/small-dense
  dsmoe bench runs/small-dsmoe --routing-sweep dense,topk:2,threshold:0.48,mlp-only:topk:1 --out bench-results/sweep
  dsmoe bench runs/small-dsmoe --data notes/ --max-windows 64`)
    .action(async (checkpoints: string[], o: BenchCompareCliOptions) => {
      await benchCompare(checkpoints, o);
    });
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
    .option('--presets <list>', 'presets to measure, comma-separated', (v: string) => v.split(','),
      ['tiny', 'small', 'medium'])
    .option('--modes <list>', 'training modes, comma-separated', (v: string) => v.split(','),
      ['dense', 'dsmoe', 'smoe'])
    .option('--steps <n>', 'timed steps per configuration (median reported)', (v: string) => parseThreads(v)[0], 5)
    .option('--threads <n>', 'kernel threads', (v: string) => parseThreads(v)[0], os.cpus().length)
    .option('--nproc <list>', 'data-parallel ranks to compare, comma-separated (1,2): tokens/s and all-reduce time',
      (v: string) => parseThreads(v))
    .option('--out <file>', 'where to write the JSON results', 'bench-results/train.json')
    .option('--json', 'print the JSON result on stdout instead of the table')
    .addHelpText('after', `
Each configuration trains on random tokens (batch 16 × the preset's sequence length) in its own
process, one warm-up step then --steps timed steps; the median step is reported. "step vs dense"
is the step time over the dense model of the same width (DS-MoE's premise: dense training of the
MoE costs about as much as the dense model).

With --nproc 1,2 each configuration runs as that many data-parallel ranks (Gloo, as dsmoe train
--nproc; batch 16 per rank, the threads shared out) and the table adds the gradient all-reduce's
time, share of the step and bandwidth (docs/distributed.md); results go to bench-results/train-dp.json.

Example:
  dsmoe bench train --presets small,medium --modes dense,dsmoe
  dsmoe bench train --presets small --modes dsmoe --nproc 1,2`)
    .action(async (o: {
      presets: string[]; modes: string[]; steps: number; threads: number; out: string; json?: boolean; nproc?: number[];
    }, cmd: Command) => {
      if (o.nproc) {
        const out = cmd.getOptionValueSource('out') === 'default' ? 'bench-results/train-dp.json' : o.out;
        const r = await runParallelTrainBench({ presets: o.presets, modes: o.modes, nproc: o.nproc, steps: o.steps,
          threads: o.threads, log: o.json ? undefined : (l) => process.stderr.write(`  ${l}\n`) });
        writeBenchResult(r, out, o.json ? undefined : formatParallelTrainBench);
        return;
      }
      const result = runTrainBench({ presets: o.presets, modes: o.modes, steps: o.steps, threads: o.threads,
        log: o.json ? undefined : (l) => process.stderr.write(`  ${l}\n`) });
      writeBenchResult(result, o.out, o.json ? undefined : formatTrainBench);
    });
  bench
    .command('decode')
    .description('decode and prefill tokens/s with dense vs sparse routing on a synthetic bf16 model, ' +
      'against bytes read per token')
    .option('--routings <list>', 'routings to compare, comma-separated; ATT/MLP for different kinds',
      (v: string) => v.split(',').map((x) => x.trim()).filter(Boolean),
      ['dense', 'topk:2', 'topk:1', 'threshold:0.48'])
    .option('--dtypes <list>', 'weight dtypes to compare, comma-separated: bf16, int8, q4', (v: string) => {
      const list = v.split(',').map((x) => x.trim().toLowerCase());
      const bad = list.find((x) => !['bf16', 'int8', 'q4'].includes(x));
      if (bad !== undefined) throw new InvalidArgumentError(`unknown dtype "${bad}" (bf16, int8 or q4)`);
      return list;
    }, ['bf16'])
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

With --dtypes bf16,int8,q4 the same model is also quantized (docs/format.md) and every routing runs on
every dtype: quantized weights cut the bytes per token (int8 ~1, q4 ~0.56 per weight), so dense
decode should be ≥ 1.7× (int8) and ≥ 2.8× (q4) the bf16 tokens/s.

Examples:
  dsmoe bench decode --routings dense,topk:1,dense/threshold:0.48 --threads 2
  dsmoe bench decode --dtypes bf16,int8,q4`)
    .action(async (o: {
      routings: string[]; dtypes: ('bf16' | 'int8' | 'q4')[]; promptLen: number; decodeTokens: number; rounds: number;
      layers?: number; threads?: number; out: string; json?: boolean;
    }) => {
      const result = await runDecodeBench({
        routings: o.routings, dtypes: o.dtypes, promptLen: o.promptLen, decodeTokens: o.decodeTokens, rounds: o.rounds,
        threads: o.threads, config: o.layers ? { n_layers: o.layers } : undefined,
        log: o.json ? undefined : (l) => process.stderr.write(`  ${l}\n`),
      });
      writeBenchResult(result, o.out, o.json ? undefined : formatDecodeBench);
    });
  bench
    .command('serve')
    .description('requests/s, generated tokens/s, time to first token and inter-token latency of dsmoe serve ' +
      'at several client concurrencies')
    .argument('<checkpoint>', 'the checkpoint to serve')
    .option('--concurrency <list>', 'concurrent clients per level, comma-separated', intListArg('--concurrency'),
      [1, 4, 16, 64])
    .option('--requests-per-client <n>', 'requests per client per level (at least 16 per level)',
      intArg('--requests-per-client'), 4)
    .option('--prompt-tokens <n>', 'prompt length in tokens', intArg('--prompt-tokens'), 32)
    .option('--max-tokens <n>', 'tokens generated per request', intArg('--max-tokens'), 32)
    .option('--routing <spec>', "every request's routing (default: the checkpoint's)")
    .option('--threads <n>', "the server's kernel threads", intArg('--threads'))
    .option('--out <file>', 'where to write the JSON results', 'bench-results/serve.json')
    .option('--json', 'print the JSON result on stdout instead of the table')
    .addHelpText('after', `
Starts \`dsmoe serve <checkpoint> --max-batch <largest concurrency>\` on a free 127.0.0.1 port and
drives it with C clients in a closed loop (each sends its next streaming request when the last one
ends). Requests are greedy and generate exactly --max-tokens tokens (ignore_eos). Continuous
batching shares each weight read among the running sequences: at 16 clients the generated tokens/s
should be at least 4× that of one client. Run nothing else meanwhile: the clients and the server
share the machine.

Example:
  dsmoe bench serve runs/small-dsmoe --concurrency 1,4,16,64`)
    .action(async (checkpoint: string, o: {
      concurrency: number[]; requestsPerClient: number; promptTokens: number; maxTokens: number; routing?: string;
      threads?: number; out: string; json?: boolean;
    }) => {
      const result = await runServeBench({
        checkpoint, concurrency: o.concurrency, requestsPerClient: o.requestsPerClient,
        promptTokens: o.promptTokens, maxTokens: o.maxTokens, routing: o.routing, threads: o.threads,
        log: o.json ? undefined : (l) => process.stderr.write(`  ${l}\n`),
      });
      writeBenchResult(result, o.out, o.json ? undefined : formatServeBench);
    });
  bench
    .command('reproduce')
    .description("the paper's central comparison in miniature: dense vs sparse-trained MoE (2x MLP) vs DS-MoE, " +
      'same data and time')
    .option('--budget <duration>', 'total training time, split evenly over the three models (90s, 6m, 1h)',
      durationArg, DEFAULT_REPRODUCE_BUDGET_S)
    .option('--preset <name>', 'the DS-MoE shape; the dense and smoe models derive from it', 'small')
    .option('--threshold <eps>', 'the threshold of the DS-MoE sparse row', (v: string) => {
      const x = Number(v);
      if (!Number.isFinite(x) || x < 0) {
        throw new InvalidArgumentError(`--threshold must be a non-negative number, got "${v}"`);
      }
      return x;
    }, 0.48)
    .option('--target-active <x>', 'share of expert parameters the DS-MoE\'s calibrated routing activates',
      shareArg('--target-active'), 0.35)
    .option('--max-windows <n>', 'held-out evaluation windows', positiveInt('--max-windows'), 32)
    .option('--seed <n>', 'initialisation and batch-order seed (the same for all three)', (v: string) => Number(v), 0)
    .option('--threads <n>', 'kernel threads', positiveInt('--threads'))
    .option('--out <dir>', 'output folder (default runs/reproduce-<date>)')
    .option('--json', 'print the JSON result on stdout instead of the table')
    .addHelpText('after', `
Trains three models on the built-in corpus with the same tokenizer, seed, batch order and an equal
share of --budget each, then evaluates all three on the same held-out windows (Table 3 style):

  dense  the preset's dense counterpart (one expert; E·H heads, MLP width E·F)
  smoe   top-2 sparse training with the switch loss, the preset's shape with 2x the expert width
         (2x MLP parameters, same expert count, so top-2 touches the same share of experts)
  dsmoe  the preset itself, dense training with the MI loss; evaluated under dense routing,
         under threshold:ε (default ε = 0.48, the paper's layer-use threshold; fixed, not tuned)
         and under thresholds calibrated at the end of its training (train --target-active) for
         --target-active of its expert parameters (default 35 %) on half of the held-out text

Equal time: each model first times a few training steps (a probe on random tokens), then trains
for the steps that fit its share, so its learning-rate schedule runs its full course; the table
shows the steps, tokens and seconds each model actually trained.

Checkpoints, bench.json and the charts go to runs/reproduce-<date>/. The budget covers training;
the probes, data preparation and the bounded evaluation come on top (about a minute on 2 cores).

Example:
  dsmoe bench reproduce --budget 6m
  npm run bench:reproduce`)
    .action(async (o: {
      budget: number; preset: string; threshold: number; targetActive: number; maxWindows: number; seed: number;
      threads?: number; out?: string; json?: boolean;
    }) => {
      let out = o.out;
      if (out === undefined) {
        const base = path.join('runs', `reproduce-${new Date().toISOString().slice(0, 10)}`);
        out = base;
        for (let i = 2; fs.existsSync(out); i++) out = `${base}-${i}`;
      }
      const result = await runReproduce({
        budgetS: o.budget, preset: o.preset, threshold: o.threshold, targetActive: o.targetActive,
        maxWindows: o.maxWindows, seed: o.seed, threads: o.threads, out,
        log: o.json ? undefined : (l) => process.stderr.write(`  ${l}\n`),
      });
      if (o.json) process.stdout.write(JSON.stringify(result) + '\n');
      else {
        process.stdout.write(formatReproduce(result) + `\n\nbudget ${formatDuration(o.budget)}; outputs in ${out}/ ` +
          '(reproduce.json, ppl-vs-active.svg, experts-*.svg, checkpoints)\n');
      }
    });
  return bench;
}
