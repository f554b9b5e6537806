#!/usr/bin/env node
// CUDA against CPU on whole models (issue 14), for scripts/gpu-check.sh; needs a usable GPU, the addon
// built with CUDA and the TypeScript build (dist/).
//
//  1. Training: `dsmoe train --preset P --steps 50 --seed 7` on --device cpu and on --device cuda (same
//     seed, same data, same batches). Every step's loss must agree within a relative tolerance:
//       step 1 (the forward of the same initial weights):  |cuda − cpu| / cpu ≤ 5e-3
//       every step of the 50:                               |cuda − cpu| / cpu ≤ 2e-2
//     Why these: the CUDA GEMMs round their fp32 inputs to bf16 (8 significant bits: relative error
//     2^-9 ≈ 2e-3 per element, fp32 accumulation), the CPU computes in fp32. A dot product of K terms
//     with independent rounding errs by about 2e-3/sqrt(K)·sqrt(K) ≈ 2e-3 of its magnitude at worst,
//     and the cross-entropy over B·T tokens averages the per-token errors, so the initial loss agrees to
//     a few 1e-3 (bound 5e-3). The updates then differ by those relative amounts; AdamW normalises the
//     step size, so the weights drift apart slowly over 50 steps (lr ≤ 1e-3): a tenfold margin on the
//     per-element rounding (2e-2) is room for that drift, while a wrong kernel (a missed term, a wrong
//     gradient) moves the loss by far more within a few steps (a dropped gradient leaves the loss flat).
//  2. Greedy generation: the CPU run's checkpoint loaded into an engine trainer on each device
//     (readCheckpointTensors → loadTensor), an inference session over those weights
//     (trainer.createSession: the same prefill/decode code on each backend), a fixed 16-token prompt,
//     16 greedy tokens under dense routing and under threshold:0.48 (route_threshold on the device).
//     Dense: the first 4 tokens must be the same (later ones may part where two logits are within bf16
//     rounding of each other); threshold: reported (a score at the threshold may route differently).
//
// Usage: node scripts/gpu-parity.js [--presets tiny,small] [--steps 50] [--out file.json] [--keep DIR]
//        [--against cpu]   (both sides on the CPU: checks the script itself where there is no GPU)
// Prints a line per check and writes JSON ({ pass, training: [...], generation: [...] }); exit 1 on a
// failed check, 2 when it cannot run (no GPU, no build).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
};
const presets = opt('--presets', 'tiny,small').split(',').filter(Boolean);
const steps = Number(opt('--steps', '50'));
const outFile = opt('--out', null);
// --against cpu: both sides on the CPU, to check this script itself on a machine without a GPU.
const other = opt('--against', 'cuda');
const TOL_FIRST = 5e-3, TOL_STEP = 2e-2, SAME_FIRST_TOKENS = 4, PROMPT_LEN = 16, GEN_TOKENS = 16;

function fail(msg) {
  console.error(`gpu-parity: ${msg}`);
  process.exit(2);
}
for (const f of ['dist/native/addon.js', 'dist/checkpoint/checkpoint.js', 'bin/dsmoe.js'])
  if (!fs.existsSync(path.join(root, f))) fail(`${f} missing: build first (npx tsc -p tsconfig.json)`);
const { loadAddon } = require(path.join(root, 'dist/native/addon.js'));
const { openCheckpoint, readCheckpointTensors } = require(path.join(root, 'dist/checkpoint/checkpoint.js'));
const addon = loadAddon();
const info = addon.cudaInfo();
if (other !== 'cpu' && !info.available) fail(`no usable CUDA device: ${info.reason}`);

const work = opt('--keep', null) ?? fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-gpu-parity-'));
fs.mkdirSync(work, { recursive: true });

function train(preset, device, tag = device) {
  const out = path.join(work, `${preset}-${tag}`);
  fs.rmSync(out, { recursive: true, force: true });
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [path.join(root, 'bin/dsmoe.js'), 'train', '--preset', preset,
    '--steps', String(steps), '--seed', '7', '--device', device, '--eval-interval', '0', '--json', '--out', out], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 28,
  });
  const seconds = (Date.now() - t0) / 1e3;
  if (r.status !== 0) return { out, seconds, error: `exit ${r.status}: ${(r.stderr || '').trim().slice(-2000)}` };
  const recs = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  const losses = recs.filter((x) => x.type === 'step').map((x) => x.loss);
  return { out, seconds, losses };
}

const result = { device: info.name, steps, tolerances: { firstStep: TOL_FIRST, everyStep: TOL_STEP,
  sameFirstTokens: SAME_FIRST_TOKENS }, training: [], generation: [], pass: true, complete: false };

// Written after every check, so that a run cut by gpu-check's time limit keeps what it measured.
function save() {
  if (!outFile) return;
  fs.mkdirSync(path.dirname(path.resolve(outFile)), { recursive: true });
  fs.writeFileSync(outFile, JSON.stringify(result, null, 2) + '\n');
}

for (const preset of presets) {
  const cpu = train(preset, 'cpu'), cuda = train(preset, other, `${other}-2`);
  const row = { preset, cpuSeconds: cpu.seconds, cudaSeconds: cuda.seconds, pass: false };
  if (cpu.error || cuda.error) {
    row.error = cpu.error ? `cpu: ${cpu.error}` : `cuda: ${cuda.error}`;
  } else {
    const rel = cpu.losses.map((l, i) => Math.abs(cuda.losses[i] - l) / Math.abs(l));
    const worst = rel.reduce((a, b, i) => (b > a.rel || Number.isNaN(b) ? { rel: b, step: i + 1 } : a),
      { rel: 0, step: 0 });
    Object.assign(row, {
      cpuLosses: cpu.losses, cudaLosses: cuda.losses, firstStepRel: rel[0], maxRel: worst.rel, maxRelStep: worst.step,
      pass: cpu.losses.length === steps && cuda.losses.length === steps && rel[0] <= TOL_FIRST &&
        rel.every((x) => x <= TOL_STEP),
    });
  }
  result.training.push(row);
  result.pass &&= row.pass;
  save();
  console.log(`train ${preset}: ${row.pass ? 'PASS' : 'FAIL'} ` + (row.error ? row.error :
    `step 1 rel ${row.firstStepRel.toExponential(2)} (≤ ${TOL_FIRST}), max rel ${row.maxRel.toExponential(2)} ` +
    `at step ${row.maxRelStep} (≤ ${TOL_STEP}); final loss cpu ${cpu.losses.at(-1).toFixed(4)} ` +
    `cuda ${cuda.losses.at(-1).toFixed(4)}; ${cpu.seconds.toFixed(1)} s cpu, ${cuda.seconds.toFixed(1)} s cuda`));
  if (cpu.error) continue;

  // ---- greedy generation over the CPU run's weights on both devices ----
  const ck = openCheckpoint(cpu.out);
  const V = ck.config.vocab_size;
  const prompt = Int32Array.from({ length: PROMPT_LEN }, (_, i) => (17 + 101 * i) % V);
  const greedy = (device, routing) => {
    const trainer = addon.createTrainer({ config: ck.config, device });
    readCheckpointTensors(ck, 'param', (name, data) => trainer.loadTensor({ name, data }));
    const session = trainer.createSession({ batch: 1, maxLen: PROMPT_LEN + GEN_TOKENS + 1, routing });
    const logits = new Float32Array(V);
    session.prefill({ tokens: prompt, batch: 1, len: PROMPT_LEN, logits });
    const first = Float32Array.from(logits);
    const tokens = [];
    const argmax = (x) => x.reduce((b, v, i) => (v > x[b] ? i : b), 0);
    for (let i = 0; i < GEN_TOKENS; i++) {
      tokens.push(argmax(logits));
      if (i + 1 < GEN_TOKENS) session.decode({ tokens: Int32Array.of(tokens[i]), logits });
    }
    return { tokens, first, stats: session.stats() };
  };
  for (const [label, routing] of [['dense', { attention: 'dense', mlp: 'dense' }],
    ['threshold:0.48', { attention: 'threshold:0.48', mlp: 'threshold:0.48' }]]) {
    const g = { preset, routing: label, pass: false };
    try {
      const a = greedy('cpu', routing), b = greedy(other, routing);
      let same = 0;
      while (same < GEN_TOKENS && a.tokens[same] === b.tokens[same]) same++;
      let maxDiff = 0, maxAbs = 0;
      for (let i = 0; i < V; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(a.first[i] - b.first[i]));
        maxAbs = Math.max(maxAbs, Math.abs(a.first[i]));
      }
      Object.assign(g, { cpuTokens: a.tokens, cudaTokens: b.tokens, sameLeadingTokens: same,
        prefillLogitsRelDiff: maxDiff / maxAbs, cpuActiveExpertShare: a.stats.activeExpertShare,
        cudaActiveExpertShare: b.stats.activeExpertShare,
        pass: label === 'dense' ? same >= SAME_FIRST_TOKENS : true });
    } catch (e) {
      g.error = e.message;
    }
    result.generation.push(g);
    result.pass &&= g.pass;
    save();
    console.log(`generate ${preset} ${label}: ${g.pass ? 'PASS' : 'FAIL'} ` + (g.error ? g.error :
      `${g.sameLeadingTokens}/${GEN_TOKENS} leading tokens equal` +
      `${label === 'dense' ? ` (need ${SAME_FIRST_TOKENS})` : ' (reported only)'}, prefill logits rel diff ` +
      `${g.prefillLogitsRelDiff.toExponential(2)}; cpu ${g.cpuTokens.slice(0, 8).join(' ')} …, ` +
      `cuda ${g.cudaTokens.slice(0, 8).join(' ')} …`));
  }
}

if (!opt('--keep', null)) fs.rmSync(work, { recursive: true, force: true });
result.complete = true;
save();
console.log(`parity: ${result.pass ? 'PASS' : 'FAIL'}`);
process.exitCode = result.pass ? 0 : 1;
