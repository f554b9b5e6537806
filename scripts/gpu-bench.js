#!/usr/bin/env node
// GPU benchmark of the CUDA backend (needs a usable GPU and an addon built with CUDA):
//   - bf16 GEMM (tensor cores, fp32 accumulation) at 4096³ and 8192³ and a few more shapes; the best
//     of them is the "measured peak" every GEMM row is compared with;
//   - grouped expert GEMM, 32 experts, one launch, balanced and skewed (with empty experts) groups;
//   - device-to-device cudaMemcpy bandwidth;
//   - training on the device (issue 14): tokens/s and MFU of a whole training step (engine trainer,
//     --device cuda's code) for `medium` and a `ds-moe-1b`-shaped model with 4 layers (--train-layers);
//     MFU = model FLOPs/token (bench/train.ts modelFlopsPerToken) × tokens/s ÷ the GPU's bf16 dense
//     peak from its data sheet (H100/H200 SXM 989 TFLOP/s, ...), and ÷ the GEMM peak measured here;
//   - decode on the device: tokens/s of one sequence, dense routing against a sparse one (topk:4 of 16
//     attention experts, topk:4 of 32 MLP experts), on the 4-layer ds-moe-1b shape (random weights: the
//     speed does not depend on them); the ideal speed-up is the ratio of weight bytes read per token.
// GEMM times are CUDA events around back-to-back launches on device-resident data, after a warm-up;
// training and decode are wall-clock medians of whole steps (they wait for their results).
// Prints a table and writes JSON. Designed to finish well under 8 minutes on an H200.
// Training and decode need the TypeScript build (dist/); without it they are listed as not measured.
// Usage: node scripts/gpu-bench.js [--out bench-results/gpu-bench.json] [--quick] [--train-layers 4]
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
};
const quick = args.includes('--quick');
// --self-test: the training and decode sections on the CPU with the tiny preset (no GPU needed), to
// check this script itself; the CUDA timers are skipped.
const selfTest = args.includes('--self-test');
const engineDevice = selfTest ? 'cpu' : 'cuda';
const root = path.resolve(__dirname, '..');
const outFile = path.resolve(opt('--out', path.join(root, 'bench-results', 'gpu-bench.json')));
const addonFile = process.env.DSMOE_ADDON || path.join(root, process.env.DSMOE_BUILD_DIR || 'build', 'Release',
  'dsmoe.node');
const addon = require(addonFile);

const info = addon.cudaInfo();
if (!info.available && !selfTest) {
  console.error(`gpu-bench: no usable CUDA device: ${info.reason}`);
  process.exit(1);
}
const t0 = Date.now();
if (!selfTest) console.log(`device: ${info.name}, compute capability ${info.computeCapability}, ` +
  `${info.multiprocessors} SMs, ` +
  `${(info.memoryBytes / 2 ** 30).toFixed(1)} GiB; runtime ${info.runtimeVersion}, driver ${info.driverVersion}; ` +
  `addon built for ${info.architectures}`);

// Repetitions so that each measurement runs for roughly `target` seconds (at least 3 calls).
function timed(fn, target = quick ? 0.2 : 1.0) {
  const once = fn(1);
  const reps = Math.max(3, Math.min(1000, Math.ceil(target / Math.max(once, 1e-6))));
  return { seconds: fn(reps), reps };
}

const results = { device: info, date: new Date().toISOString(), gemm: [], grouped: [], memcpy: [], notMeasured: [] };

// ---- GEMM ----
const gemmShapes = selfTest ? [] : quick ? [[4096, 4096, 4096]] : [[2048, 2048, 2048], [4096, 4096, 4096],
  [8192, 8192, 8192],
  [16384, 4096, 4096], [4096, 16384, 2048]];
for (const [m, n, k] of gemmShapes) {
  const { seconds, reps } = timed((r) => addon.cudaBenchGemm({ m, n, k, reps: r }));
  results.gemm.push({ m, n, k, reps, seconds, tflops: (2 * m * n * k) / seconds / 1e12 });
}
const peak = selfTest ? NaN : Math.max(...results.gemm.map((g) => g.tflops));
results.measuredPeakTflops = peak;

// ---- grouped expert GEMM: 32 experts, x [R, k] · W[e] [n, k]ᵀ ----
const E = 32, R = quick ? 8192 : 32768, gn = 2048, gk = 2048;
function offsetsOf(sizes) {
  const o = new Int32Array(sizes.length + 1);
  sizes.forEach((s, e) => { o[e + 1] = o[e] + s; });
  return o;
}
const balanced = new Array(E).fill(R / E);
// Skewed: expert e gets a share ∝ 1/(e+1)² (a few hot experts), experts 28..31 get nothing.
const w = Array.from({ length: E }, (_, e) => (e >= 28 ? 0 : 1 / (e + 1) ** 2));
const wsum = w.reduce((a, b) => a + b, 0);
const skewed = w.map((x) => Math.floor((R * x) / wsum));
skewed[0] += R - skewed.reduce((a, b) => a + b, 0);
for (const [name, sizes] of selfTest ? [] : [['balanced', balanced], ['skewed (4 empty)', skewed]]) {
  const offsets = offsetsOf(sizes);
  const { seconds, reps } = timed((r) => addon.cudaBenchGroupedGemm({ experts: E, offsets, n: gn, k: gk, reps: r }));
  const tflops = (2 * R * gn * gk) / seconds / 1e12;
  results.grouped.push({ groups: name, experts: E, rows: R, n: gn, k: gk, maxRows: Math.max(...sizes),
    emptyExperts: sizes.filter((s) => s === 0).length, reps, seconds, tflops, ofPeak: tflops / peak });
}

// ---- copy bandwidth ----
for (const bytes of selfTest ? [] : quick ? [2 ** 28] : [2 ** 28, 2 ** 30, 2 ** 32]) {
  const { seconds, reps } = timed((r) => addon.cudaBenchMemcpy({ bytes, reps: r }));
  // A copy reads and writes every byte: bandwidth counts both.
  results.memcpy.push({ bytes, reps, seconds, gbPerSReadWrite: (2 * bytes) / seconds / 1e9,
    gbPerSCopied: bytes / seconds / 1e9 });
}

results.notMeasured = [
  'attention, routing and nn kernels alone: no timed variants yet (the bindings copy host arrays in and out)',
];

// ---- training and decode on the device (the engine: dist/ and the CUDA backend) ----
// bf16 dense tensor-core peaks from the data sheets (no sparsity), TFLOP/s.
const SPEC_PEAKS = [[/H200/, 989], [/H100.*PCIe/, 756], [/H100/, 989], [/A100/, 312], [/L40S/, 362], [/A10G?\b/, 125]];
const specPeak = (SPEC_PEAKS.find(([re]) => re.test(info.name || '')) || [null, null])[1];
results.specPeakTflops = specPeak;
results.training = [];
results.decode = [];
const trainLayers = Number(opt('--train-layers', '4'));
let dist = null;
try {
  dist = {
    config: require(path.join(root, 'dist/model/config.js')),
    train: require(path.join(root, 'dist/bench/train.js')),
  };
} catch (e) {
  results.notMeasured.push(`training and decode: the TypeScript build is missing (${e.message.split('\n')[0]})`);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const hr = () => Number(process.hrtime.bigint()) / 1e9;
function modelConfig(preset, layers) {
  const c = dist.config.applyMode(dist.config.getPreset(preset).config, 'dsmoe', preset);
  if (layers) c.n_layers = layers;
  return c;
}
async function benchTraining(name, config, batch, steps) {
  const trainer = addon.createTrainer({ config, device: engineDevice });
  trainer.init({ seed: 1 });
  const T = config.max_seq_len, V = config.vocab_size;
  let s = 7;
  const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) % V;
  const tokens = Int32Array.from({ length: batch * T }, rnd), targets = Int32Array.from({ length: batch * T }, rnd);
  const step = (i) => trainer.trainStepAsync({ tokens, targets, batch, seq: T, lr: 1e-4, beta1: 0.9, beta2: 0.95,
    eps: 1e-8, weightDecay: 0.01, clip: 1, step: i });
  const w0 = hr();
  await step(1);  // warm-up: workspaces, the memory pool
  const warmup = hr() - w0;
  const times = [];
  let last = null;
  for (let i = 0; i < steps; i++) {
    const t = hr();
    last = await step(i + 2);
    times.push(hr() - t);
  }
  const sec = median(times), flopsPerToken = dist.train.modelFlopsPerToken(config);
  const tflops = (flopsPerToken * batch * T) / sec / 1e12;
  return { model: name, layers: config.n_layers, batch, seq: T, totalParams: trainer.totalParams, warmupSeconds: warmup,
    stepSeconds: sec, tokensPerSecond: (batch * T) / sec, flopsPerToken, tflops,
    mfu: specPeak ? tflops / specPeak : null, ofMeasuredGemmPeak: tflops / peak, lastLoss: last && last.loss };
}
async function benchDecode(name, config, routings, tokens) {
  const trainer = addon.createTrainer({ config, device: engineDevice });
  trainer.init({ seed: 1 });
  const V = config.vocab_size, P = Math.min(128, config.max_seq_len >> 1);
  tokens = Math.min(tokens, config.max_seq_len - P - 1);
  const prompt = Int32Array.from({ length: P }, (_, i) => (17 + 101 * i) % V);
  const rows = [];
  for (const [label, routing] of routings) {
    const session = trainer.createSession({ batch: 1, maxLen: P + tokens + 1, routing });
    const logits = new Float32Array(V);
    session.prefill({ tokens: prompt, batch: 1, len: P, logits });
    session.decode({ tokens: Int32Array.of(1), logits });  // warm-up
    session.resetStats();
    const times = [];
    for (let i = 0; i < tokens; i++) {
      const t = hr();
      session.decode({ tokens: Int32Array.of((i * 7 + 3) % V), logits });
      times.push(hr() - t);
    }
    const st = session.stats(), sec = median(times);
    rows.push({ model: name, routing: label, tokensPerSecond: 1 / sec, msPerToken: sec * 1e3,
      activeWeightBytesPerToken: st.activeWeightBytesPerToken, activeExpertShare: st.activeExpertShare });
  }
  const dense = rows[0];
  for (const r of rows) {
    r.speedup = r.tokensPerSecond / dense.tokensPerSecond;
    r.idealSpeedup = dense.activeWeightBytesPerToken / r.activeWeightBytesPerToken;
    r.ofIdeal = r.speedup / r.idealSpeedup;
  }
  return rows;
}

async function engineBenches() {
  if (!dist) return;
  const big = selfTest ? ['tiny', modelConfig('tiny')] : [`ds-moe-1b (${trainLayers} layers)`,
    modelConfig('ds-moe-1b', trainLayers)];
  const shapes = selfTest ? [['tiny', modelConfig('tiny'), 4, 2]]
    : [['medium', modelConfig('medium'), 16, quick ? 3 : 5], [...big, quick ? 2 : 4, 3]];
  for (const [name, config, batch, steps] of shapes) {
    try {
      results.training.push(await benchTraining(name, config, batch, steps));
    } catch (e) {
      results.training.push({ model: name, error: e.message });
    }
  }
  try {
    results.decode = await benchDecode(big[0], big[1], [
      ['dense', { attention: 'dense', mlp: 'dense' }],
      [selfTest ? 'topk:1 / topk:1' : 'topk:4 / topk:4', selfTest ? { attention: 'topk:1', mlp: 'topk:1' }
        : { attention: 'topk:4', mlp: 'topk:4' }],
    ], quick || selfTest ? 16 : 48);
  } catch (e) {
    results.decode = [{ error: e.message }];
  }
}

engineBenches().then(report, (e) => {
  results.engineError = e.message;
  report();
});

function report() {
  results.wallSeconds = (Date.now() - t0) / 1e3;

  // ---- report ----
  const pad = (s, n) => String(s).padStart(n);
  console.log('\nbf16 GEMM (A [m,k] · B [n,k]ᵀ, fp32 out)');
  console.log(`${pad('m', 6)} ${pad('n', 6)} ${pad('k', 6)} ${pad('ms', 9)} ${pad('TFLOP/s', 8)} ${pad('of peak', 8)}`);
  for (const g of results.gemm)
    console.log(`${pad(g.m, 6)} ${pad(g.n, 6)} ${pad(g.k, 6)} ${pad((g.seconds * 1e3).toFixed(3), 9)} ` +
      `${pad(g.tflops.toFixed(1), 8)} ${pad(((100 * g.tflops) / peak).toFixed(0) + '%', 8)}`);
  console.log(`measured peak (best shape above): ${peak.toFixed(1)} TFLOP/s`);
  console.log(`\ngrouped expert GEMM, ${E} experts, ${R} rows, n=${gn}, k=${gk}, one launch`);
  for (const g of results.grouped)
    console.log(`  ${g.groups.padEnd(18)} max rows/expert ${pad(g.maxRows, 6)}  ` +
      `${pad((g.seconds * 1e3).toFixed(3), 8)} ms  ${pad(g.tflops.toFixed(1), 7)} TFLOP/s  ` +
        `${pad((100 * g.ofPeak).toFixed(0), 3)}% of peak`);
  console.log('\ndevice-to-device cudaMemcpy');
  for (const c of results.memcpy)
    console.log(`  ${pad((c.bytes / 2 ** 20).toFixed(0), 6)} MiB  ${pad(c.gbPerSReadWrite.toFixed(0), 6)} GB/s ` +
      `read+write  (${c.gbPerSCopied.toFixed(0)} GB/s copied)`);
  console.log(`\ntraining on the device (MFU against ${specPeak ? `the ${specPeak} TFLOP/s bf16 data-sheet peak` :
    'no known data-sheet peak'}; the goal is 35 % on the 1B shape)`);
  for (const t of results.training)
    console.log(t.error ? `  ${t.model}: error: ${t.error}` : `  ${t.model.padEnd(22)} B=${t.batch} T=${t.seq} ` +
      `${pad((t.stepSeconds * 1e3).toFixed(1), 8)} ms/step ${pad(t.tokensPerSecond.toFixed(0), 8)} tok/s ` +
      `${pad(t.tflops.toFixed(1), 6)} TFLOP/s  MFU ${t.mfu === null ? 'n/a' : `${(100 * t.mfu).toFixed(1)} %`}`);
  console.log('\ndecode on the device, one sequence (goal: sparse speed-up ≥ 70 % of the ideal bytes ratio)');
  for (const d of results.decode)
    console.log(d.error ? `  error: ${d.error}` : `  ${d.routing.padEnd(16)} ` +
      `${pad(d.tokensPerSecond.toFixed(1), 8)} tok/s ` +
      `${pad((d.activeWeightBytesPerToken / 2 ** 20).toFixed(0), 6)} MiB/token  speed-up ${d.speedup.toFixed(2)}× ` +
      `of ideal ${d.idealSpeedup.toFixed(2)}× (${(100 * d.ofIdeal).toFixed(0)} %)`);
  console.log('\nnot measured:');
  for (const s of results.notMeasured) console.log(`  - ${s}`);
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(outFile, JSON.stringify(results, null, 2) + '\n');
  console.log(`\nwrote ${outFile} (${results.wallSeconds.toFixed(1)} s)`);
}
