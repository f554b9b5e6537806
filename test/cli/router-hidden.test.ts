// Two-layer routers from the command line: `dsmoe train --router-hidden h` writes them, `dsmoe info`
// counts them, `dsmoe convert` and `dsmoe generate` run them; bad values are one-line errors
// naming the flag. Child processes run the compiled CLI (dist/) against the real model.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadCheckpoint } from '../../src/checkpoint/checkpoint';
import { toTrainOptions } from '../../src/cli/commands/train';
import { makeFixture, type Fixture } from '../train/fixtures';
import { runCli } from '../helpers';

let fx: Fixture;
beforeAll(() => {
  fx = makeFixture();
});

const dsmoe = (...args: string[]) => runCli(args, { cwd: fx.dir, cacheDir: fx.cacheDir });

describe('--router-hidden', () => {
  test('reaches the config overrides', () => {
    expect(toTrainOptions({ routerHidden: 32, device: 'cpu' }).overrides?.router_hidden).toBe(32);
    expect(toTrainOptions({ device: 'cpu' }).overrides?.router_hidden).toBeUndefined();
  });

  test.each<[string, string[], RegExp]>([
    ['negative', ['--router-hidden', '-3'], /--router-hidden expects an integer ≥ 0, got "-3"/],
    ['not a number', ['--router-hidden', 'wide'], /--router-hidden expects an integer ≥ 0, got "wide"/],
    ['too large', ['--preset', 'tiny', '--router-hidden', '70000'],
      /router_hidden \(--router-hidden\): must be in 0\.\.65536/],
    ['a dense model', ['--preset', 'tiny', '--mode', 'dense', '--router-hidden', '8'],
      /router_hidden \(--router-hidden\): 8 is set, but every layer has one expert/],
  ])('train: %s is a one-line error', (_what, args, re) => {
    const r = dsmoe('train', ...args, '--steps', '1', '--out', 'never');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(re);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(fs.existsSync(path.join(fx.dir, 'never'))).toBe(false);
  });

  test('train, info, convert and generate on a checkpoint with two-layer routers', () => {
    const run = path.join(fx.dir, 'rh');
    const t = dsmoe('train', '--preset', 'tiny', '--router-hidden', '24', '--data', fx.corpus, '--tokenizer',
      fx.tokenizer,
      '--seq-len', '16', '--batch-size', '2', '--steps', '4', '--eval-interval', '0', '--eval-batches', '1', '--out',
      run,
      '--quiet');
    expect(t.stderr).toBe('');
    expect(t.code).toBe(0);
    const ck = loadCheckpoint(run);
    expect(ck.config.router_hidden).toBe(24);
    expect(ck.layout.tensors.some((x) => x.name === 'layers.1.mlp.router.output.weight')).toBe(true);
    const info = dsmoe('info', run);
    expect(info.code).toBe(0);
    expect(info.stdout).toMatch(/routers\s+two-layer, hidden 24 \(Linear 64→24, GELU, Linear 24→E\)/);
    // per layer kind 24·64 + 4·24 = 1632, two layers: 3.3K each for attention and MLP
    expect(JSON.parse(dsmoe('info', run, '--json').stdout).params.mlp.router).toBe(2 * 1632);
    const inf = path.join(fx.dir, 'rh-inf');
    expect(dsmoe('convert', run, inf).code).toBe(0);
    const g = dsmoe('generate', inf, 'the', '--max-tokens', '5', '--temperature', '0', '--routing', 'topk:2', '--json');
    expect(g.stderr).toBe('');
    expect(g.code).toBe(0);
    const j = JSON.parse(g.stdout);
    expect(j.completions).toHaveLength(1);
    expect(j.generated_tokens).toBeGreaterThan(0);
    expect(j.att_experts_per_token).toBe(2);
    expect(j.shared_params).toBe(2 * (2 * 1632 + 2 * 2 * 8 * 64)); // two-layer routers + k + v, both layers
  });
});
