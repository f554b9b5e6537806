// The addon's runtime facts and settings, and the build it came from.
import { addon, availableIsas, expectNativeError } from '../helpers';

describe('runtime', () => {
  test('reports threads, ISA and build', () => {
    const info = addon.runtimeInfo();
    expect(info.threads).toBeGreaterThanOrEqual(1);
    expect(['avx512', 'avx2', 'generic']).toContain(info.isa);
    // CI runs some suites against other builds; make sure they are really the build it meant.
    if (process.env.DSMOE_EXPECT_BUILD) expect(info.buildSystem).toBe(process.env.DSMOE_EXPECT_BUILD);
    if (process.env.DSMOE_EXPECT_SANITIZED) expect(info.sanitized).toBe(true);
  });

  test('setThreads and setIsa change the pool and the kernels, and reject bad values', () => {
    const before = addon.runtimeInfo();
    try {
      expect(addon.setThreads({ threads: 3 })).toBe(3);
      expect(addon.runtimeInfo().threads).toBe(3);
      for (const isa of availableIsas()) expect(addon.setIsa({ isa })).toBe(isa);
      expectNativeError(() => addon.setThreads({ threads: 0 }), 'RangeError',
        /setThreads: threads must be in \[1, 256\]/);
      expectNativeError(() => addon.setIsa({ isa: 'sse9' as never }), 'RangeError', /setIsa: isa must be/);
    } finally {
      addon.setThreads({ threads: before.threads });
      addon.setIsa({ isa: before.isa });
    }
  });
});
