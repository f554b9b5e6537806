#!/usr/bin/env node
// The numbers a refactor of the engine must keep (issue 11): a fixed-seed `tiny` run of each
// training mode (20 steps: every step's loss, lm/aux loss and gradient norm, and the final eval),
// then `dsmoe eval` of each checkpoint under its default and dense routing (loss, perplexity,
// active parameters). Record before a change, again after it, and compare:
//
//   node scripts/engine-parity.js --out parity/before.json            # on the old build
//   node scripts/engine-parity.js --out parity/after.json             # on the new one
//   node scripts/engine-parity.js --compare parity/before.json parity/after.json   # 1e-6 relative
//
// --cli PATH runs another build's bin/dsmoe.js (e.g. a git worktree of the old commit).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const MODES = ['dsmoe', 'smoe', 'dense'];

function parseArgs(argv) {
  const o = { cli: path.join(__dirname, '..', 'bin', 'dsmoe.js'), out: null, compare: null, steps: 20, tol: 1e-6 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--cli') o.cli = path.resolve(v());
    else if (a === '--out') o.out = v();
    else if (a === '--steps') o.steps = Number(v());
    else if (a === '--tol') o.tol = Number(v());
    else if (a === '--compare') o.compare = [v(), v()];
    else if (a === '-h' || a === '--help') {
      process.stdout.write('usage: node scripts/engine-parity.js [--cli bin/dsmoe.js] [--steps 20] --out FILE\n'
        + '       node scripts/engine-parity.js --compare BEFORE.json AFTER.json [--tol 1e-6]\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!o.compare && !o.out) throw new Error('give --out FILE (record) or --compare A B');
  return o;
}

function run(cli, args) {
  const r = spawnSync(process.execPath, [cli, ...args], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 28,
  });
  if (r.status !== 0) throw new Error(`dsmoe ${args.join(' ')} exited with ${r.status}:\n${r.stderr}`);
  return r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
}

function record(o) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-parity-'));
  const result = { cli: o.cli, steps: o.steps, modes: {} };
  try {
    for (const mode of MODES) {
      const dir = path.join(work, mode);
      const recs = run(o.cli, ['train', '--preset', 'tiny', '--mode', mode, '--steps', String(o.steps),
        '--seed', '7', '--eval-interval', '10', '--eval-batches', '4', '--threads', '2', '--out', dir, '--json']);
      const steps = recs.filter((r) => r.type === 'step').map((r) => ({
        step: r.step, loss: r.loss, lm_loss: r.lm_loss, aux_loss: r.aux_loss, grad_norm: r.grad_norm,
      }));
      const evals = recs.filter((r) => r.type === 'eval').map((r) => ({
        step: r.step, loss: r.loss, ppl: r.ppl, routed_ppl: r.routed_ppl, dense_ppl: r.dense_ppl,
        active_expert_share: r.active_expert_share,
      }));
      const evalOf = (routing) => {
        const e = run(o.cli, ['eval', dir, '--max-windows', '16', '--threads', '2', '--json',
          ...(routing ? ['--routing', routing] : [])]).pop();
        return { loss: e.loss, ppl: e.ppl, tokens: e.tokens,
          active_params_per_token: e.active_params_per_token, active_expert_share: e.active_expert_share };
      };
      result.modes[mode] = { steps, evals, eval_default: evalOf(null), eval_dense: evalOf('dense') };
      const last = steps[steps.length - 1];
      process.stderr.write(`${mode}: step ${last.step} loss ${last.loss} · ` +
        `eval ${result.modes[mode].eval_default.loss}\n`);
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
  fs.writeFileSync(o.out, JSON.stringify(result, null, 1) + '\n');
  process.stdout.write(`wrote ${o.out}\n`);
}

// Every number in A must be in B at the same place, within tol relative (or both non-finite/null).
function compare(o) {
  const [a, b] = o.compare.map((f) => JSON.parse(fs.readFileSync(f, 'utf8')).modes);
  let worst = 0, count = 0;
  const bad = [];
  const walk = (x, y, where) => {
    if (typeof x === 'number') {
      count++;
      const rel = Math.abs(x - y) / Math.max(Math.abs(x), 1e-30);
      if (typeof y !== 'number' || !(rel <= o.tol)) bad.push(`${where}: ${x} vs ${y}`);
      else worst = Math.max(worst, rel);
    } else if (x && typeof x === 'object') {
      for (const k of Object.keys(x)) walk(x[k], y == null ? undefined : y[k], `${where}.${k}`);
    } else if (x !== y) bad.push(`${where}: ${x} vs ${y}`);
  };
  walk(a, b, 'modes');
  process.stdout.write(`${count} numbers compared, worst relative difference ${worst.toExponential(2)}\n`);
  if (bad.length) {
    process.stdout.write(`${bad.length} differ by more than ${o.tol}:\n  ${bad.slice(0, 20).join('\n  ')}\n`);
    process.exit(1);
  }
}

try {
  const o = parseArgs(process.argv.slice(2));
  if (o.compare) compare(o);
  else record(o);
} catch (e) {
  process.stderr.write(`engine-parity: ${e.message}\n`);
  process.exit(2);
}
