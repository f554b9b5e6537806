// `dsmoe bench serve` end to end on the tiny checkpoint (a smoke test of the load generator and the
// table; the numbers themselves belong in BENCHMARKS.md, not in assertions).
import * as fs from 'node:fs';
import { formatServeBench, runServeBench } from '../../src/bench/serve';
import { makeTinyCheckpoint, type TinyCheckpoint } from '../infer/checkpoint';

let ck: TinyCheckpoint;
beforeAll(async () => { ck = await makeTinyCheckpoint(); });
afterAll(() => fs.rmSync(ck.dir, { recursive: true, force: true }));

test('two concurrency levels: every request completes with exactly max_tokens tokens, timed', async () => {
  const r = await runServeBench({ checkpoint: ck.checkpoint, concurrency: [1, 3], requestsPerClient: 2, minRequests: 4,
    promptTokens: 6, maxTokens: 5, threads: 2 });
  expect(r.rows.map((x) => [x.concurrency, x.requests, x.errors])).toEqual([[1, 4, 0], [3, 6, 0]]);
  for (const x of r.rows) {
    expect(x.generatedTokensPerS).toBeCloseTo((x.requests * 5) / x.seconds, 6);
    expect(x.ttftP50Ms).toBeGreaterThan(0);
    expect(x.itlP99Ms).toBeGreaterThanOrEqual(x.itlP50Ms);
  }
  expect(r.rows[0].vsC1).toBe(1);
  expect(formatServeBench(r)).toMatch(/clients .* gen tok\/s/);
});
