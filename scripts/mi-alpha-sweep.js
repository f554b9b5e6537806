#!/usr/bin/env node
// The MI-loss weight study behind the presets' α defaults (docs/method.md): trains one DS-MoE per
// (α_att, α_mlp) pair on the built-in corpus, then evaluates each on its held-out split under dense
// routing and threshold:0.48. Prints a table and writes JSON; runs that already finished are
// reused, so an interrupted sweep continues where it stopped.
//
//   node scripts/mi-alpha-sweep.js --preset small --steps 300 \
//     --pairs 3.5e-4:6.3e-4,3e-3:3e-3,1e-2:1e-2,3e-2:3e-2 --out sweeps/small
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const CLI = path.join(__dirname, '..', 'bin', 'dsmoe.js');

function parseArgs(argv) {
  const o = { preset: 'small', steps: undefined, pairs: '3.5e-4:6.3e-4,3e-3:3e-3,1e-2:1e-2,3e-2:3e-2',
    out: 'sweeps/alpha',
    maxWindows: 64, threshold: 0.48, extra: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--preset') o.preset = v();
    else if (a === '--steps') o.steps = Number(v());
    else if (a === '--pairs') o.pairs = v();
    else if (a === '--out') o.out = v();
    else if (a === '--max-windows') o.maxWindows = Number(v());
    else if (a === '--threshold') o.threshold = Number(v());
    else if (a === '--') { o.extra = argv.slice(i + 1); i = argv.length; }
    else if (a === '-h' || a === '--help') {
      process.stdout.write('usage: node scripts/mi-alpha-sweep.js [--preset small] [--steps N] [--pairs att:mlp,…] ' +
        '[--out DIR]\n'
        + '       [--max-windows 64] [--threshold 0.48] [-- extra dsmoe train flags]\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  o.pairs = o.pairs.split(',').map((p) => {
    const [att, mlp] = p.split(':').map(Number);
    if (!(att >= 0) || !(mlp >= 0)) throw new Error(`--pairs: "${p}" is not att:mlp (two non-negative numbers)`);
    return { att, mlp };
  });
  return o;
}

function run(args) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`dsmoe ${args.join(' ')} exited with ${r.status}`);
  return r.stdout;
}

function evalAt(dir, routing, maxWindows) {
  return JSON.parse(run(['eval', dir, '--routing', routing, '--max-windows', String(maxWindows),
    '--json']).trim().split('\n').pop());
}

function main() {
  const o = parseArgs(process.argv.slice(2));
  fs.mkdirSync(o.out, { recursive: true });
  const rows = [];
  for (const { att, mlp } of o.pairs) {
    const dir = path.join(o.out, `${o.preset}-att${att}-mlp${mlp}`);
    const statePath = path.join(dir, 'trainer_state.json');
    const done = fs.existsSync(statePath) && (o.steps === undefined ||
      JSON.parse(fs.readFileSync(statePath, 'utf8')).step >= o.steps);
    const t0 = Date.now();
    if (!done) {
      process.stderr.write(`training ${dir}\n`);
      run(['train', '--preset', o.preset, '--mi-alpha-att', String(att), '--mi-alpha-mlp', String(mlp), '--out', dir,
        '--quiet',
        ...(o.steps !== undefined ? ['--steps', String(o.steps)] : []), ...o.extra]);
    }
    const trainS = (Date.now() - t0) / 1000;
    const dense = evalAt(dir, 'dense', o.maxWindows);
    const sparse = evalAt(dir, `threshold:${o.threshold}`, o.maxWindows);
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    const row = {
      preset: o.preset, alpha_att: att, alpha_mlp: mlp, dir, train_s: done ? null : trainS,
      ppl_dense: dense.ppl, ppl_threshold: sparse.ppl, ppl_increase: sparse.ppl / dense.ppl - 1,
      active_expert_share: sparse.active_expert_share,
      active_params_dense: dense.active_params_per_token, active_params_threshold: sparse.active_params_per_token,
      att_experts_per_token: sparse.att_experts_per_token,
      mlp_experts_per_token: sparse.mlp_experts_per_token,
      att_active_share: sparse.att_experts_per_token / cfg.attention.n_experts,
      mlp_active_share: sparse.mlp_experts_per_token / cfg.mlp.n_experts,
      mi_att: dense.mi.attention, mi_mlp: dense.mi.mlp, tokens: dense.tokens,
    };
    rows.push(row);
    fs.writeFileSync(path.join(o.out, 'sweep.json'), JSON.stringify({ threshold: o.threshold, rows }, null, 2) + '\n');
    process.stderr.write(`${JSON.stringify(row)}\n`);
  }
  // The chart: one curve per α pair from its dense-routing point to its threshold point.
  const { perplexityChart } = require('../dist/bench/svg');
  const series = rows.map((r) => ({ name: `α ${r.alpha_att} / ${r.alpha_mlp}`, points: [
    { x: r.active_params_dense, y: r.ppl_dense, routing: 'dense' },
    { x: r.active_params_threshold, y: r.ppl_threshold, routing: `threshold:${o.threshold}` }] }));
  fs.writeFileSync(path.join(o.out, 'alpha-sweep.svg'), perplexityChart(series, {
    title: `MI-loss weight α (attention / MLP), preset ${o.preset}`,
    subtitle: `perplexity vs active parameters per token: dense routing (square) and threshold:${o.threshold} (circle)`,
    yScale: 'linear' }));
  const pct = (x) => `${(100 * x).toFixed(1)}%`;
  const head = ['α_att', 'α_mlp', 'ppl dense', `ppl threshold:${o.threshold}`, 'Δppl', 'active experts', 'att active',
    'mlp active', 'H(e\\|X) att', 'H(e\\|X) mlp'];
  const body = rows.map((r) => [r.alpha_att, r.alpha_mlp, r.ppl_dense.toFixed(1), r.ppl_threshold.toFixed(1),
    `${r.ppl_increase >= 0 ? '+' : ''}${pct(r.ppl_increase)}`,
    pct(r.active_expert_share), pct(r.att_active_share), pct(r.mlp_active_share), r.mi_att
      ? r.mi_att.condEntropy.toFixed(3) : '—', r.mi_mlp ? r.mi_mlp.condEntropy.toFixed(3) : '—'].map(String));
  process.stdout.write(`| ` +
    `${head.join(' | ')} |\n|${head.map(() => '---').join('|')}|\n` +
    `${body.map((b) => `| ${b.join(' | ')} |`).join('\n')}\n`);
}

try {
  main();
} catch (e) {
  process.stderr.write(`mi-alpha-sweep: ${e.message}\n`);
  process.exit(1);
}
