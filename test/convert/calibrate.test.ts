// dsmoe convert --calibrate: per-kind thresholds for a target active share, chosen on calibration
// text and reported on held-out text, written into the converted checkpoint's default routing.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runCalibratedConvert } from '../../src/cli/commands/convert';
import { trainTiny, type Trained } from './trained';

let t: Trained;
beforeAll(async () => {
  t = await trainTiny();
}, 120000);

const quiet = { write: () => true } as unknown as NodeJS.WritableStream;

describe('convert --calibrate', () => {
  test('finds thresholds whose active share is near the target and stores them as the default routing', async () => {
    const out = path.join(t.fx.dir, 'calibrated');
    const r = await runCalibratedConvert([t.dsmoe, out], { calibrate: true, targetActive: 0.5, cacheDir: t.fx.cacheDir,
      json: true }, quiet, quiet);
    const cal = r.calibration;
    expect(cal.routing.attention).toMatch(/^threshold:\d/);
    expect(cal.routing.mlp).toMatch(/^threshold:\d/);
    // The tiny model has 4 experts per kind: shares are means of multiples of 1/4 over a few hundred
    // tokens, and bisection keeps the closest one seen, so 5 points on the calibration text.
    expect(Math.abs(cal.attention!.share - 0.5)).toBeLessThan(0.05);
    expect(Math.abs(cal.mlp!.share - 0.5)).toBeLessThan(0.05);
    // Held-out text is other text: looser, but the routing must be clearly sparser than dense.
    expect(cal.before.activeExpertShare).toBe(1);
    expect(Math.abs(cal.after.activeExpertShare - 0.5)).toBeLessThan(0.15);
    expect(Number.isFinite(cal.after.ppl)).toBe(true);
    const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(config.routing).toEqual(cal.routing);
  }, 120000);

  test('bad combinations are clear errors before any work', async () => {
    const out = path.join(t.fx.dir, 'never');
    await expect(runCalibratedConvert([t.dsmoe, out], { calibrate: true }, quiet,
      quiet)).rejects.toThrow(/--calibrate needs --target-active/);
    await expect(runCalibratedConvert([t.dsmoe, out], { calibrate: true, targetActive: 0.4, routing: 'topk:1' }, quiet,
      quiet)).rejects.toThrow(/do not give --routing/);
    await expect(runCalibratedConvert([t.dense, out], { calibrate: true, targetActive: 0.4, cacheDir: t.fx.cacheDir },
      quiet, quiet)).rejects.toThrow(/dense model .*no routing to calibrate/);
    await expect(runCalibratedConvert([t.dsmoe, t.dsmoe], { calibrate: true, targetActive: 0.4 }, quiet,
      quiet)).rejects.toThrow();
    expect(fs.existsSync(out)).toBe(false);
  });
});
