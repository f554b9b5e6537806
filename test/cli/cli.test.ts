// The CLI through a real process, as a user runs it.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const bin = path.join(__dirname, '..', '..', 'bin', 'dsmoe.js');

function dsmoe(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, DSMOE_THREADS: '2' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('dsmoe CLI', () => {
  test('--help lists only commands that exist', () => {
    const r = dsmoe('--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/bench/);
  });

  test('unknown command and bad option values fail with a clear message', () => {
    const r = dsmoe('frobnicate');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/unknown command 'frobnicate'/);
    const t = dsmoe('bench', 'kernels', '--threads', '0,x');
    expect(t.code).not.toBe(0);
    expect(t.stderr).toMatch(/expected a comma-separated list of thread counts/);
  });

  test('bench kernels --quick --json writes a well-formed result', () => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-')), 'k.json');
    const r = dsmoe('bench', 'kernels', '--quick', '--no-peer', '--threads', '1', '--json', '--out', out);
    expect(r.code).toBe(0);
    const printed = JSON.parse(r.stdout);
    const saved = JSON.parse(fs.readFileSync(out, 'utf8'));
    expect(saved.square.length).toBeGreaterThan(0);
    expect(printed.square.length).toBe(saved.square.length);
    for (const row of saved.square) expect(row.dsmoeGflops).toBeGreaterThan(0);
    for (const row of saved.moe) expect(row.groupedGflops).toBeGreaterThan(0);
  });
});
