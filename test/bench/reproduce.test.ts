// `dsmoe bench reproduce` end to end on the tiny preset with a budget of seconds, and the CLI
// surface of `dsmoe bench` (help, subcommands, errors).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatReproduce, reproduceSetups, runReproduce } from '../../src/bench/reproduce';
import { buildConfig, paramCount } from '../../src/model/config';
import { routingLabel } from '../../src/model/routing';
import { makeFixture, type Fixture } from '../train/fixtures';
import { runCli } from '../helpers';

let fx: Fixture;
beforeAll(() => {
  fx = makeFixture();
});

const dsmoe = (...args: string[]) => runCli(args);

describe('dsmoe bench reproduce', () => {
  test('the smoe setup has twice the MLP parameters of the dsmoe one; dense is the same width', () => {
    const [dense, smoe, dsmoe] = reproduceSetups('small').map((s) => buildConfig({ preset: 'small', mode: s.mode,
      overrides: s.overrides }));
    expect(dense.training.mode).toBe('dense');
    const mlpExperts = (c: typeof smoe) => paramCount(c).perLayer.upProj + paramCount(c).perLayer.downProj;
    expect(mlpExperts(smoe)).toBe(2 * mlpExperts(dsmoe));
    expect(smoe.mlp.n_experts).toBe(dsmoe.mlp.n_experts);
    expect(smoe.training).toMatchObject({ mode: 'smoe', top_k: 2 });
    expect(paramCount(dense).expertParams).toBe(paramCount(dsmoe).expertParams);
  });

  test('a tiny budget on the tiny preset runs end to end and prints the table', async () => {
    const out = path.join(fx.dir, 'repro');
    const lines: string[] = [];
    const r = await runReproduce({
      budgetS: 1.5, preset: 'tiny', out, data: [fx.corpus], tokenizer: fx.tokenizer, cacheDir: fx.cacheDir,
      overrides: { seq_len: 16 }, batchSize: 4, maxWindows: 4, decodePrompts: 1, decodeTokens: 2, threads: 2,
      log: (l) => lines.push(l),
    });
    expect(r.models.map((m) => m.mode)).toEqual(['dense', 'smoe', 'dsmoe']);
    for (const m of r.models) {
      expect(m.steps).toBeGreaterThan(0);
      expect(fs.existsSync(path.join(m.dir, 'model.safetensors'))).toBe(true);
    }
    expect(r.table.slice(0, 4).map((t) => `${t.model} ${t.routing}`)).toEqual(['dense dense', 'smoe topk:2',
      'dsmoe dense', 'dsmoe threshold:0.48']);
    // The fifth row: DS-MoE under the thresholds its training calibrated for 35 % (stored in its config.json).
    const cal = r.table[4];
    expect(cal).toMatchObject({ model: 'dsmoe', routing: r.calibratedRouting });
    const stored = JSON.parse(fs.readFileSync(path.join(r.models[2].dir, 'config.json'), 'utf8')).routing;
    expect(stored).toEqual({ attention: expect.stringMatching(/^threshold:[\d.]+$/),
      mlp: expect.stringMatching(/^threshold:[\d.]+$/) });
    // The label is "threshold:x" when the two calibrated thresholds happen to coincide (a time budget of
    // seconds trains a machine-dependent number of steps), else "att … · mlp …".
    expect(cal.routing).toBe(routingLabel(stored));
    expect(cal.activeExpertShare).toBeLessThan(r.table[3].activeExpertShare);
    expect(r.compare.data.source).toBe('checkpoint-split');
    const dsDense = r.table[2], dsSparse = r.table[3];
    expect(dsDense.activeShareOfHidden).toBeCloseTo(1, 9);
    expect(dsSparse.activeShareOfHidden).toBeLessThanOrEqual(1);
    expect(r.table[1].mlpActiveShare).toBeCloseTo(0.5, 9); // top-2 of 4 experts
    expect(r.table[1].attActiveShare).toBeCloseTo(0.5, 9);
    // Every row's active parameters follow from its mean expert shares (DESIGN §1.3): per layer the
    // routers, W_k and W_v always, the q/o of the attention experts used, the up/down of the MLP
    // experts used; "of hidden" is that over the same count with every expert (norms excluded).
    for (const t of r.table) {
      const m = r.models.find((x) => x.mode === t.model)!;
      const l = paramCount(m.config).perLayer, L = m.config.n_layers;
      const shared = L * (l.attnRouter + l.mlpRouter + l.kProj + l.vProj);
      const qo = L * (l.qProj + l.oProj), ud = L * (l.upProj + l.downProj);
      const active = shared + t.attActiveShare * qo + t.mlpActiveShare * ud;
      const label = `${t.model} ${t.routing}`;
      expect([label, t.activeParamsPerToken / active]).toEqual([label, expect.closeTo(1, 9)]);
      expect([label, t.activeShareOfHidden]).toEqual([label, expect.closeTo(active / (shared + qo + ud), 9)]);
      expect([label, t.activeExpertShare]).toEqual([label, expect.closeTo((t.attActiveShare * qo +
        t.mlpActiveShare * ud) / (qo + ud), 9)]);
      // at least one expert of each kind per token and layer, at most all
      expect(t.attActiveShare).toBeGreaterThanOrEqual(1 / m.config.attention.n_experts - 1e-12);
      expect(t.mlpActiveShare).toBeGreaterThanOrEqual(1 / m.config.mlp.n_experts - 1e-12);
      expect(Math.max(t.attActiveShare, t.mlpActiveShare)).toBeLessThanOrEqual(1 + 1e-12);
    }
    // the smoe row, top-2 of 4 everywhere: exactly half of the expert parameters
    expect(r.table[1].activeExpertShare).toBeCloseTo(0.5, 9);
    const text = formatReproduce(r);
    expect(text).toMatch(/dsmoe\s+threshold:0\.48/);
    expect(text).toMatch(/Findings:/);
    for (const f of [r.files.reproduce, r.files.json, r.files.chart,
      ...r.files.heatmaps]) expect(fs.existsSync(f)).toBe(true);
    expect(r.files.heatmaps.map((h) => path.basename(h))).toEqual(['experts-smoe.svg', 'experts-dsmoe.svg']);
    expect(lines.some((l) => /training smoe/.test(l))).toBe(true);
  });

  test('a bad budget is refused', async () => {
    await expect(runReproduce({ budgetS: 0, out: path.join(fx.dir,
      'x') })).rejects.toThrow(/--budget must be positive/);
  });
});

describe('dsmoe bench CLI', () => {
  test('--help shows the comparison and the subcommands; kernels and train keep their help', () => {
    const h = dsmoe('bench', '--help');
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/\[checkpoints\.\.\.\]/);
    expect(h.stdout).toMatch(/--routing-sweep/);
    for (const c of ['kernels', 'train', 'reproduce']) expect(h.stdout).toMatch(new RegExp(`\\n\\s+${c}\\b`));
    expect(dsmoe('bench', 'kernels', '--help').stdout).toMatch(/--no-peer/);
    expect(dsmoe('bench', 'train', '--help').stdout).toMatch(/--presets/);
    expect(dsmoe('bench', 'reproduce', '--help').stdout).toMatch(/--budget/);
  });

  test('errors: no checkpoint, a missing folder, a bad sweep, a bad budget; subcommand options stay theirs', () => {
    const none = dsmoe('bench');
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/give at least one checkpoint folder/);
    const missing = dsmoe('bench', path.join(fx.dir, 'missing'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/checkpoint folder not found/);
    const sweep = dsmoe('bench', fx.dir, '--routing-sweep', 'dense,topk:two');
    expect(sweep.code).toBe(1);
    expect(sweep.stderr).toMatch(/--routing-sweep item "topk:two"/);
    const budget = dsmoe('bench', 'reproduce', '--budget', 'soon');
    expect(budget.code).not.toBe(0);
    expect(budget.stderr).toMatch(/--budget/);
    // bench's own --threads must not swallow the kernels subcommand's list syntax
    const k = dsmoe('bench', 'kernels', '--threads', '0,x');
    expect(k.stderr).toMatch(/expected a comma-separated list of thread counts/);
  });
});
