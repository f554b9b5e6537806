// The CUDA build and device checks. The CUDA kernels themselves are tested by the kernel suites
// (test/native/{gemm,gemv,nn,routing,attention,backend-ops}.test.ts), whose cuda rows run every op with
// `device: 'cuda'` against the same double-precision references as the CPU (test/helpers.ts,
// forEachBackend), or are registered as skipped with the reason when no GPU is usable.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addon, expectNativeError } from '../helpers';

const info = addon.cudaInfo();

function nvccOnPath(): boolean {
  if (process.env.CUDACXX && fs.existsSync(process.env.CUDACXX)) return true;
  const dirs = (process.env.PATH ?? '').split(path.delimiter).concat(['/usr/local/cuda/bin']);
  return dirs.some((d) => d && fs.existsSync(path.join(d, 'nvcc')));
}

describe('CUDA build', () => {
  test('the addon reports whether CUDA was compiled in, as the build option and nvcc say', () => {
    // DSMOE_CUDA=on fails the build without nvcc; auto builds CUDA exactly when nvcc is found; off (also
    // the sanitizer build's default and every node-gyp build) never does.
    const expected = process.env.DSMOE_EXPECT_CUDA !== undefined
      ? process.env.DSMOE_EXPECT_CUDA === '1'
      : info.buildOption === 'on' || (info.buildOption === 'auto' && nvccOnPath());
    expect(info.compiled).toBe(expected);
    if (info.compiled) expect(info.architectures).toMatch(/90a/);
    if (!info.available) expect(info.reason).toBeTruthy();
  });

  test(info.available ? 'a CUDA device is usable (the kernel suites run their cuda rows)'
    : 'no usable CUDA device: the kernels and timers say why', () => {
    if (info.available) {
      expect(info.deviceCount).toBeGreaterThan(0);
      console.log(`CUDA rows of the kernel suites run on ${info.name} (compute capability ${info.computeCapability})`);
      return;
    }
    // The kernels say why instead of running.
    const c = new Float32Array(1);
    expectNativeError(() => addon.gemm({ m: 1, n: 1, k: 1, a: c, b: c, c, device: 'cuda' }), 'Error',
      /^gemm: device cuda:0 is not usable: .+/);
    expectNativeError(() => addon.cudaBenchMemcpy({ bytes: 1024 }), 'Error', /^cudaBenchMemcpy: no usable CUDA device/);
  });
});
