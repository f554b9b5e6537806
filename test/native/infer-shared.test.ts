// Weights opened once (openWeights) and shared by many sessions: 8 sessions over one opened
// checkpoint keep the weights resident once (< 1.2× the resident growth of one session; issue 11),
// and sessions over a mapped file, over an in-memory buffer and the old per-session mapping compute
// the same thing. The memory is measured in a child process (VmRSS from /proc/self/status) on a
// ~144 MB fp32 checkpoint written with the checkpoint writer.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { benchModelConfig } from '../../src/bench/decode';
import { readSafetensorsHeader, writeSafetensors } from '../../src/checkpoint/safetensors';
import { layoutFromConfig } from '../../src/model/layout';
import { addonPath } from '../../src/native/addon';
import { addon, relError } from '../helpers';

// 4 layers of 16 MLP experts 512 → 512 → 512 and 4 attention experts: 36M parameters, 144 MB in fp32;
// the embedding (the one tensor a prefill reads only in part) is 1 MB of it.
const config = benchModelConfig({
  vocab_size: 512, d_model: 512, n_layers: 4, max_seq_len: 64,
  attention: { n_experts: 4, n_heads: 2, n_kv_heads: 2, head_dim: 64 },
  mlp: { n_experts: 16, expert_dim: 512, activation: 'gelu' },
});
const layout = layoutFromConfig(config);
const dense = { attention: 'dense', mlp: 'dense' };

/** Deterministic small weights (norms 1), one tensor at a time. */
function tensorData(name: string, size: number, offset: number): Float32Array {
  const x = new Float32Array(size);
  if (name.endsWith('norm.weight')) return x.fill(1);
  let s = (offset * 2654435761) >>> 0;
  for (let i = 0; i < size; i++) { s = (s * 1664525 + 1013904223) >>> 0; x[i] = (s / 2 ** 32 - 0.5) * 0.04; }
  return x;
}

let dir: string, file: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-shared-'));
  file = path.join(dir, 'model.safetensors');
  writeSafetensors(file, layout.tensors.map((t) => ({
    name: t.name, dtype: 'F32' as const, shape: t.shape, data: () => tensorData(t.name, t.size, t.offset),
  })));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

// The child: open the weights once, then create sessions one by one, each prefilling 8 tokens under
// dense routing (every expert's weights read); VmRSS after opening and after each session.
const CHILD = `
const fs = require('node:fs');
const [addonFile, argsFile, n, mode, load] = process.argv.slice(1);
const addon = require(addonFile);
const a = JSON.parse(fs.readFileSync(argsFile, 'utf8'));
const rss = () => 1024 * Number(/VmRSS:\\s+(\\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);
const routing = { attention: 'dense', mlp: 'dense' };
const tokens = Int32Array.from({ length: 8 }, (_, i) => (i * 37 + 5) % a.config.vocab_size);
const logits = new Float32Array(a.config.vocab_size);
const out = { before: rss(), after: [] };
const w = mode === 'shared'
  ? addon.openWeights({ config: a.config, path: a.path, tensors: a.tensors, dataOffset: a.dataOffset, load })
  : null;
out.mapped = w ? w.mappedBytes : 0;
out.opened = rss();
const keep = [];
for (let i = 0; i < Number(n); i++) {
  const opts = { batch: 1, maxLen: 8, routing };
  const s = w ? w.createSession(opts)
    : addon.createSessionFromFile({
      ...opts, config: a.config, path: a.path, tensors: a.tensors, dataOffset: a.dataOffset,
    });
  s.prefill({ tokens, batch: 1, len: 8, logits });
  keep.push(s);
  out.after.push(rss());
}
process.stdout.write(JSON.stringify(out));
`;

function child(
  n: number, mode: 'shared' | 'per-session', load: 'read' | 'mmap' = 'mmap',
): { before: number; opened: number; after: number[]; mapped: number } {
  const h = readSafetensorsHeader(file);
  const argsFile = path.join(dir, 'args.json');
  fs.writeFileSync(argsFile, JSON.stringify({ config, path: file, tensors: h.tensors, dataOffset: h.dataStart }));
  const r = spawnSync(process.execPath, ['-e', CHILD, addonPath(), argsFile, String(n), mode, load],
    { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const MB = (b: number) => `${(b / 2 ** 20).toFixed(1)} MB`;

describe('openWeights: one copy of the weights for many sessions', () => {
  test('8 sessions on one openWeights (mapped): resident growth < 1.2× that of one session', () => {
    const bytes = layout.totalParams * 4;
    const r = child(8, 'shared');
    expect(r.mapped).toBeGreaterThanOrEqual(bytes);
    expect(r.mapped).toBeLessThanOrEqual(fs.statSync(file).size);
    const one = r.after[0] - r.before, eight = r.after[7] - r.before;
    console.log(`weights ${MB(bytes)} (mapped ${MB(r.mapped)}): `
      + `RSS growth after openWeights ${MB(r.opened - r.before)}, `
      + `1 session ${MB(one)}, 8 sessions ${MB(eight)} (${(eight / one).toFixed(3)}×)`);
    // One session made the weights resident (all of them but most of the embedding) ...
    expect(one).toBeGreaterThan(0.9 * bytes);
    // ... and 7 more sessions added their caches and workspaces, not the weights again.
    expect(eight).toBeLessThan(1.2 * one);
  });

  test('read into memory (the default): resident at once, and 8 sessions still share it', () => {
    const bytes = layout.totalParams * 4;
    const r = child(8, 'shared', 'read');
    // the file's bytes, placed on whole 2 MiB pages
    expect(r.mapped).toBeGreaterThanOrEqual(fs.statSync(file).size);
    expect(r.mapped).toBeLessThanOrEqual(fs.statSync(file).size + (4 << 20));
    const opened = r.opened - r.before, eight = r.after[7] - r.before;
    console.log(`read: RSS growth after openWeights ${MB(opened)}, 8 sessions ${MB(eight)}`);
    expect(opened).toBeGreaterThan(0.9 * bytes);
    expect(eight).toBeLessThan(opened + 0.2 * bytes);
  });

  test('for comparison, sessions that each map the file (createSessionFromFile) count the weights per session', () => {
    if (typeof (addon as { createSessionFromFile?: unknown }).createSessionFromFile !== 'function') return;
    const r = child(2, 'per-session');
    const one = r.after[0] - r.before, two = r.after[1] - r.before;
    console.log(`per-session mappings: 1 session ${MB(one)}, 2 sessions ${MB(two)} (${(two / one).toFixed(3)}×)`);
    expect(one).toBeGreaterThan(0.9 * layout.totalParams * 4);
  });

  test('a mapped file and a buffer give the same logits and losses; ' +
    'sessions on one weights do not disturb each other', () => {
    const h = readSafetensorsHeader(file);
    const mapped = addon.openWeights({ config, path: file, tensors: h.tensors, dataOffset: h.dataStart,
      load: 'mmap' });
    const read = addon.openWeights({ config, path: file, tensors: h.tensors, dataOffset: h.dataStart });
    expect([mapped.load, read.load]).toEqual(['mmap', 'read']);
    expect(() => addon.openWeights({ config, path: file, tensors: h.tensors, dataOffset: h.dataStart,
      load: 'copy' as 'read' })).toThrow(/openWeights: load must be 'read' or 'mmap', got 'copy'/);
    const params = new Float32Array(layout.totalParams);
    for (const t of layout.tensors) params.set(tensorData(t.name, t.size, t.offset), t.offset);
    const inMemory = addon.openWeightsFromBuffer({ config, weights: params });
    expect(inMemory.mappedBytes).toBe(0);
    expect(mapped.config.d_model).toBe(config.d_model);
    const tokens = Int32Array.from({ length: 2 * 6 }, (_, i) => (i * 91 + 3) % config.vocab_size);
    const targets = Int32Array.from({ length: 2 * 6 }, (_, i) => (i % 5 === 4 ? -1 : (i * 13 + 1) % config.vocab_size));
    const run = (s: ReturnType<typeof mapped.createSession>) => {
      const logits = new Float32Array(2 * config.vocab_size), losses = new Float32Array(2 * 6);
      s.prefill({ tokens, batch: 2, len: 6, logits, targets, losses });
      return { logits, losses };
    };
    const a = run(mapped.createSession({ batch: 2, routing: dense }));
    const b = run(inMemory.createSession({ batch: 2, routing: dense }));
    const c = run(read.createSession({ batch: 2, routing: dense }));
    expect([...c.logits]).toEqual([...a.logits]);  // read or mapped: the same bytes, the same results
    // Two sessions on the same weights: the second does not disturb the first.
    const a2 = run(mapped.createSession({ batch: 2, routing: { attention: 'topk:1', mlp: 'topk:2' } }));
    const a3 = run(mapped.createSession({ batch: 2, routing: dense }));
    expect(relError(b.logits, a.logits)).toBeLessThan(1e-6);
    expect(relError(b.losses, a.losses)).toBeLessThan(1e-6);
    expect(relError(a3.losses, a.losses)).toBe(0);
    expect(relError(a2.losses, a.losses)).toBeGreaterThan(0);
    // Positions with a negative target are not scored.
    targets.forEach((t, i) => { if (t < 0) expect(a.losses[i]).toBe(0); else expect(a.losses[i]).toBeGreaterThan(0); });
  });
});
