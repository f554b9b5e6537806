// One training-benchmark measurement in its own process (so its peak memory is its own):
// reads {preset, mode, batch, steps, threads} from argv[2], prints one JSON line of results.
// With `parallel` (a RankInfo, bench/train-parallel.ts) it is one rank of a data-parallel step:
// forward + backward, the gradient all-reduce (timed on its own), the optimizer; rank 0 prints.
import { applyMode, getPreset } from '../model/config';
import { loadAddon } from '../native/addon';
import { joinGroup, type RankInfo } from '../parallel/group';
import { modelFlopsPerToken } from './train';

const medianOf = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2]) as {
    preset: string; mode: string; batch: number; steps: number; threads: number; parallel?: RankInfo;
  };
  const addon = loadAddon();
  addon.setThreads({ threads: args.threads });
  const config = applyMode(getPreset(args.preset).config, args.mode, args.preset);
  const layout = addon.modelLayout(config);
  const n = layout.totalParams;
  // The training state in the engine (parameters, gradients, AdamW moments), as dsmoe train has it.
  const trainer = addon.createTrainer({ config, device: 'cpu' });
  trainer.init({ seed: 1 });
  const T = config.max_seq_len, B = args.batch, V = config.vocab_size;
  let s = 7;
  const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) % V;
  const tokens = Int32Array.from({ length: B * T }, rnd), targets = Int32Array.from({ length: B * T }, rnd);
  const optim = { lr: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.01, clip: 1 };
  if (args.parallel) {
    const group = joinGroup(args.parallel, addon as unknown as Parameters<typeof joinGroup>[1]);
    trainer.setCommunicator!({ communicator: group.native! });
    const ar: number[] = [], total: number[] = [];
    for (let i = 0; i <= args.steps; i++) {
      const t0 = process.hrtime.bigint();
      await trainer.lossAndGradAsync({ tokens, targets, batch: B, seq: T });
      const t1 = process.hrtime.bigint();
      await trainer.reduceGradientsAsync!();
      const t2 = process.hrtime.bigint();
      trainer.applyOptimizer({ ...optim, step: i + 1, loss: 1 });
      if (i === 0) continue;  // warm-up
      ar.push(Number(t2 - t1) / 1e9);
      total.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    // The same all-reduce alone (after a barrier, no compute beside it, no wait for a slower rank):
    // the bandwidth docs/distributed.md scales from.
    const buf = new Float32Array(n);
    const alone: number[] = [];
    for (let i = 0; i < 3; i++) {
      await group.native!.barrierAsync();
      const t0 = process.hrtime.bigint();
      await group.native!.allreduceAsync(buf);
      alone.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    const stepSeconds = medianOf(total), ranks = args.parallel.size;
    if (args.parallel.rank === 0)
      process.stdout.write(JSON.stringify({
        ranks, totalParams: n, gradBytes: 4 * n, tokensPerStep: B * T * ranks, stepSeconds,
        allreduceSeconds: medianOf(ar), isolatedAllreduceSeconds: medianOf(alone),
        tokensPerSecond: (B * T * ranks) / stepSeconds,
        flopsPerToken: modelFlopsPerToken(config), peakRssMiB: process.resourceUsage().maxRSS / 1024,
      }) + '\n');
    return;
  }
  const step = (i: number) => trainer.trainStepAsync({
    tokens, targets, batch: B, seq: T,
    lr: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.01, clip: 1, step: i,
  });
  await step(1); // warm-up: workspace allocation, page faults
  const times: number[] = [];
  for (let i = 0; i < args.steps; i++) {
    const t0 = process.hrtime.bigint();
    await step(i + 2);
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  process.stdout.write(JSON.stringify({
    totalParams: n, nonEmbeddingParams: layout.nonEmbeddingParams, tokensPerStep: B * T, stepSeconds: median,
    tokensPerSecond: (B * T) / median, flopsPerToken: modelFlopsPerToken(config),
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
  }) + '\n');
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exitCode = 1;
});
