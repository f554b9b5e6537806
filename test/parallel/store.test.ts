// The launcher's pieces that need no collective library: the rendezvous service and its client
// (the protocol native/parallel/tcp_store.h speaks), --master parsing, the arguments ranks get.
import { StoreClient, StoreServer } from '../../src/parallel/store';
import { parseMaster, rankArgs } from '../../src/parallel/launcher';
import { allGatherDigests, checkRankInfo, digest48, type ProcessGroup } from '../../src/parallel/group';

describe('rendezvous store', () => {
  test('set and get through a client; absent keys; values with any bytes', async () => {
    const server = await StoreServer.listen('127.0.0.1', 0);
    const c = await StoreClient.connect('127.0.0.1', server.port, 2000);
    try {
      expect(await c.get('missing')).toBeNull();
      const bytes = Buffer.from([0, 1, 2, 255, 10, 13]);
      await c.set('rank/0', bytes);
      await c.set('dead/1', 'was killed by SIGKILL');
      expect(await c.get('rank/0')).toEqual(bytes);
      expect(server.get('dead/1')!.toString()).toBe('was killed by SIGKILL');
      expect(server.keys('dead/')).toEqual(['dead/1']);
      // Requests answered in order even when sent together.
      const [a, b] = await Promise.all([c.get('rank/0'), c.get('nope')]);
      expect(a).toEqual(bytes);
      expect(b).toBeNull();
    } finally {
      c.close();
      await server.close();
    }
  });

  test('a client gives up naming the address when nothing listens', async () => {
    const server = await StoreServer.listen('127.0.0.1', 0);
    const port = server.port;
    await server.close();
    await expect(StoreClient.connect('127.0.0.1', port, 300)).rejects.toThrow(`127.0.0.1:${port}`);
  });

  test('a taken port is reported', async () => {
    const a = await StoreServer.listen('127.0.0.1', 0);
    try {
      await expect(StoreServer.listen('127.0.0.1', a.port)).rejects.toThrow(/EADDRINUSE.*another --master port/);
    } finally {
      await a.close();
    }
  });
});

describe('launcher arguments', () => {
  test('--master ADDR:PORT', () => {
    expect(parseMaster('10.0.0.1:29500')).toEqual({ host: '10.0.0.1', port: 29500 });
    expect(parseMaster('[::1]:80')).toEqual({ host: '::1', port: 80 });
    expect(() => parseMaster('10.0.0.1')).toThrow(/ADDR:PORT/);
    expect(() => parseMaster('h:70000')).toThrow(/ADDR:PORT/);
  });

  test('ranks get the train arguments without the launcher flags', () => {
    expect(rankArgs(['--preset', 'tiny', '--nproc', '2', '--nnodes=2', '--node-rank', '1', '--master', 'h:1',
      '--steps', '20'])).toEqual(['--preset', 'tiny', '--steps', '20']);
  });

  test('DSMOE_PARALLEL is checked', () => {
    const ok = { rank: 1, size: 2, localRank: 1, localSize: 2, nodeRank: 0, nnodes: 1, storeHost: '127.0.0.1',
      storePort: 5, prefix: 'dsmoe', hostname: '127.0.0.1', timeoutMs: 1000 };
    expect(checkRankInfo(ok)).toEqual(ok);
    expect(() => checkRankInfo({ ...ok, rank: 2 })).toThrow(/does not describe a rank/);
  });
});

test('allGatherDigests: every rank gets every rank\'s digests (a sum of one-hot rows)', async () => {
  // Two fake ranks whose "all-reduce" adds both contributions.
  const rows: Float64Array[] = [];
  let total: Float64Array | undefined;
  let release: () => void;
  const both = new Promise<void>((r) => { release = r; });
  const fake = (rank: number): ProcessGroup => ({
    rank, size: 2,
    sum: async (v) => {
      rows.push(v);
      if (rows.length === 2) release();
      await both;
      total ??= rows[0].map((x, i) => x + rows[1][i]);
      v.set(total);
      return v;
    },
  });
  const d = [digest48('a'), digest48('b')];
  const [r0, r1] = await Promise.all([allGatherDigests(fake(0), [d[0], 7]), allGatherDigests(fake(1), [d[1], 7])]);
  expect(r0).toEqual([[d[0], 7], [d[1], 7]]);
  expect(r1).toEqual(r0);
  expect(d[0]).toBeLessThan(2 ** 48);
});
