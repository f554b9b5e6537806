// One training-benchmark measurement in its own process (so its peak memory is its own):
// reads {preset, mode, batch, steps, threads} from argv[2], prints one JSON line of results.
import { applyMode, getPreset } from '../model/config';
import { loadAddon } from '../native/addon';
import { modelFlopsPerToken } from './train';

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2]) as {
    preset: string; mode: string; batch: number; steps: number; threads: number;
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
