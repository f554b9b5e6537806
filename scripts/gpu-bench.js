#!/usr/bin/env node
// GPU benchmark of the CUDA backend (needs a usable GPU and an addon built with CUDA):
//   - bf16 GEMM (tensor cores, fp32 accumulation) at 4096³ and 8192³ and a few more shapes; the best
//     of them is the "measured peak" every GEMM row is compared with;
//   - grouped expert GEMM, 32 experts, one launch, balanced and skewed (with empty experts) groups;
//   - device-to-device cudaMemcpy bandwidth.
// Every time is CUDA events around back-to-back launches on device-resident data, after a warm-up.
// Prints a table and writes JSON. Designed to finish well under 8 minutes on an H200.
// Usage: node scripts/gpu-bench.js [--out bench-results/gpu-bench.json] [--quick]
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
};
const quick = args.includes('--quick');
const root = path.resolve(__dirname, '..');
const outFile = path.resolve(opt('--out', path.join(root, 'bench-results', 'gpu-bench.json')));
const addonFile = process.env.DSMOE_ADDON || path.join(root, process.env.DSMOE_BUILD_DIR || 'build', 'Release',
  'dsmoe.node');
const addon = require(addonFile);

const info = addon.cudaInfo();
if (!info.available) {
  console.error(`gpu-bench: no usable CUDA device: ${info.reason}`);
  process.exit(1);
}
const t0 = Date.now();
console.log(`device: ${info.name}, compute capability ${info.computeCapability}, ${info.multiprocessors} SMs, ` +
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
const gemmShapes = quick ? [[4096, 4096, 4096]] : [[2048, 2048, 2048], [4096, 4096, 4096], [8192, 8192, 8192],
  [16384, 4096, 4096], [4096, 16384, 2048]];
for (const [m, n, k] of gemmShapes) {
  const { seconds, reps } = timed((r) => addon.cudaBenchGemm({ m, n, k, reps: r }));
  results.gemm.push({ m, n, k, reps, seconds, tflops: (2 * m * n * k) / seconds / 1e12 });
}
const peak = Math.max(...results.gemm.map((g) => g.tflops));
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
for (const [name, sizes] of [['balanced', balanced], ['skewed (4 empty)', skewed]]) {
  const offsets = offsetsOf(sizes);
  const { seconds, reps } = timed((r) => addon.cudaBenchGroupedGemm({ experts: E, offsets, n: gn, k: gk, reps: r }));
  const tflops = (2 * R * gn * gk) / seconds / 1e12;
  results.grouped.push({ groups: name, experts: E, rows: R, n: gn, k: gk, maxRows: Math.max(...sizes),
    emptyExperts: sizes.filter((s) => s === 0).length, reps, seconds, tflops, ofPeak: tflops / peak });
}

// ---- copy bandwidth ----
for (const bytes of quick ? [2 ** 28] : [2 ** 28, 2 ** 30, 2 ** 32]) {
  const { seconds, reps } = timed((r) => addon.cudaBenchMemcpy({ bytes, reps: r }));
  // A copy reads and writes every byte: bandwidth counts both.
  results.memcpy.push({ bytes, reps, seconds, gbPerSReadWrite: (2 * bytes) / seconds / 1e9,
    gbPerSCopied: bytes / seconds / 1e9 });
}

results.notMeasured = [
  'decode on the GPU: not implemented (no GPU model forward / KV cache in this build)',
  'training on the GPU: not implemented (no GPU model forward/backward in this build)',
  'attention, routing and nn kernels: no timed variants yet (the bindings copy host arrays in and out)',
];
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
console.log('\nnot measured:');
for (const s of results.notMeasured) console.log(`  - ${s}`);
fs.mkdirSync(path.dirname(outFile), { recursive: true });
fs.writeFileSync(outFile, JSON.stringify(results, null, 2) + '\n');
console.log(`\nwrote ${outFile} (${results.wallSeconds.toFixed(1)} s)`);
