// dsmoe info and dsmoe convert through a real process, on a synthetic checkpoint (no training).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadCheckpoint, saveCheckpoint } from '../../src/checkpoint/checkpoint';
import { buildConfig } from '../../src/model/config';
import { layoutFromConfig } from '../../src/model/layout';

const bin = path.join(__dirname, '..', '..', 'bin', 'dsmoe.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-cli-convert-'));
const dsmoe = (...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: dir,
    env: { ...process.env, DSMOE_THREADS: '2' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

beforeAll(() => {
  for (const mode of ['dsmoe', 'dense']) {
    const config = buildConfig({ preset: 'tiny', mode, tokenizerVocab: 40 });
    const n = layoutFromConfig(config).totalParams;
    saveCheckpoint(path.join(dir, mode), { config, params: Float32Array.from({ length: n },
      (_, i) => Math.sin(i) * 0.05), tokenizerJson: '{}' });
  }
});

describe('dsmoe info / convert (child process)', () => {
  test('help lists both commands with examples', () => {
    expect(dsmoe('--help').stdout).toMatch(/info[\s\S]*convert/);
    expect(dsmoe('convert',
      '--help').stdout).toMatch(/--from-dense runs\/small-dense --attention-experts 8 --mlp-experts 16/);
    expect(dsmoe('info', '--help').stdout).toMatch(/Examples:/);
  });

  test('info --json is one object; text mentions the routing', () => {
    const j = dsmoe('info', 'dsmoe', '--json');
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout).params.total).toBe(loadCheckpoint(path.join(dir, 'dsmoe')).layout.totalParams);
    expect(dsmoe('info',
      'dsmoe').stdout).toMatch(/default routing \(config\.json\): attention threshold:0\.48, MLP threshold:0\.48/);
  });

  test('convert, upcycle, and what they print', () => {
    const c = dsmoe('convert', 'dsmoe', 'inf', '--routing', 'attention=topk:2,mlp=topk:1');
    expect(c.code).toBe(0);
    expect(c.stdout).toMatch(/converted .* BF16, routing attention topk:2, MLP topk:1/);
    expect(dsmoe('info', 'inf').stdout).toMatch(/active experts\s+\d/);
    const u = dsmoe('convert', '--from-dense', 'dense', '--attention-experts', '4', '--mlp-experts', '4', 'up');
    expect(u.code).toBe(0);
    expect(u.stdout).toMatch(/upcycled [\s\S]*mode dsmoe/);
    expect(loadCheckpoint(path.join(dir, 'up')).config.attention.n_experts).toBe(4);
  });

  test.each<[string, string[], RegExp]>([
    ['missing folder', ['info', 'nope'], /checkpoint folder not found: nope/],
    ['not a checkpoint', ['convert', '.', 'x'], /has no config\.json/],
    ['out exists', ['convert', 'dsmoe', 'dense'], /dense already exists; add --force/],
    ['in == out', ['convert', 'dsmoe', 'dsmoe', '--force'], /is the input folder/],
    ['bad routing', ['convert', 'dsmoe', 'x', '--routing', 'mlp=threshold:-2'],
      /--routing mlp=threshold:-2: .*ε must be a finite number ≥ 0/],
    ['bad dtype', ['convert', 'dsmoe', 'x', '--dtype', 'int4'], /unknown dtype "int4"/],
    ['indivisible experts', ['convert', '--from-dense', 'dense', '--attention-experts', '3', '--mlp-experts', '4', 'x'],
      /cannot be split into 3 equal experts/],
    ['kv heads', ['convert', '--from-dense', 'dense', '--attention-experts', '8', '--mlp-experts', '4', 'x'],
      /not a multiple of the 2 shared kv heads/],
    ['not dense', ['convert', '--from-dense', 'dsmoe', '--attention-experts', '2', '--mlp-experts', '2', 'x'],
      /needs a dense checkpoint/],
    ['calibration without a target', ['convert', 'dsmoe', 'x', '--calibrate'], /--calibrate needs --target-active/],
    ['target without calibration', ['convert', 'dsmoe', 'x', '--target-active', '0.4'],
      /--target-active and --data go with --calibrate/],
  ])('%s: exit 1 and one line', (_n, args, re) => {
    const r = dsmoe(...args);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(re);
    expect(fs.existsSync(path.join(dir, 'x'))).toBe(false);
  });
});
