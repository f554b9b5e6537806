// The CLI through a real process, as a user runs it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCli } from '../helpers';


const dsmoe = (...args: string[]) => runCli(args);

describe('dsmoe CLI', () => {
  test('--help lists exactly the commands that exist, and each of them answers --help', () => {
    const r = dsmoe('--help');
    expect(r.code).toBe(0);
    const section = r.stdout.split(/^Commands:$/m)[1];
    expect(section).toBeDefined();
    const listed = section.split('\n').map((l) => /^ {2}(\S+)/.exec(l)?.[1]).filter((x): x is string => !!x);
    expect(listed.sort()).toEqual(
      ['bench', 'convert', 'eval', 'generate', 'help', 'info', 'serve', 'tokenize', 'tokenizer', 'train']);
    for (const c of listed.filter((x) => x !== 'help')) {
      const h = dsmoe(c, '--help');
      expect({ c, code: h.code, stderr: h.stderr }).toEqual({ c, code: 0, stderr: '' });
      expect(h.stdout).toMatch(new RegExp(`^Usage: dsmoe ${c} `));
    }
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
