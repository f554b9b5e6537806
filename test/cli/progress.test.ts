// TTY rendering of the progress bar (src/cli/progress.ts) on a fake terminal: one line redrawn in
// place and cut to the width, lines printed above it, at most ~10 redraws a second (on a fake
// clock), cleared at the end; plain streams and quiet get no control codes.
import { PassThrough } from 'node:stream';
import { Reporter, barCells, formatRate } from '../../src/cli/progress';

const CLEAR = '\r\x1b[2K';

function terminal(columns: number | undefined, isTTY = true) {
  const s = new PassThrough() as PassThrough & { isTTY?: boolean; columns?: number };
  s.isTTY = isTTY;
  s.columns = columns;
  let seen = 0;
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  /** What was written since the last call. */
  const next = () => {
    const all = Buffer.concat(chunks).toString('utf8');
    const out = all.slice(seen);
    seen = all.length;
    return out;
  };
  return { stream: s as unknown as NodeJS.WriteStream, next };
}

describe('progress on a terminal', () => {
  let now = 1_000_000;
  beforeEach(() => { jest.spyOn(Date, 'now').mockImplementation(() => now); });
  afterEach(() => jest.restoreAllMocks());

  test('the bar is one line, redrawn in place and cut to the width − 1; lines go above it; endBar clears it', () => {
    const t = terminal(21);
    const r = new Reporter({ stream: t.stream, plain: false });
    expect(r.tty).toBe(true);
    const long = 'step 1/10 ' + 'x'.repeat(50);
    r.bar(long, true);
    expect(t.next()).toBe(CLEAR + long.slice(0, 20));
    r.line('eval @ step 1: loss 3.1');
    expect(t.next()).toBe(CLEAR + 'eval @ step 1: loss 3.1\n' + long.slice(0, 20));
    // at most one redraw per 100 ms unless forced
    now += 50;
    r.bar('step 2/10');
    expect(t.next()).toBe('');
    now += 60;
    r.bar('step 3/10');
    expect(t.next()).toBe(CLEAR + 'step 3/10');
    r.bar('step 4/10', true);
    expect(t.next()).toBe(CLEAR + 'step 4/10');
    r.endBar();
    expect(t.next()).toBe(CLEAR);
    r.line('done');
    expect(t.next()).toBe('done\n');  // no bar left to clear or redraw
  });

  test('an unknown width means 100 columns', () => {
    const t = terminal(undefined);
    const r = new Reporter({ stream: t.stream });
    r.bar('y'.repeat(150), true);
    expect(t.next()).toBe(CLEAR + 'y'.repeat(99));
  });

  test('plain (a pipe, or --plain on a terminal) and quiet: no bar and no control codes', () => {
    for (const [t, plain] of [[terminal(80, false), false], [terminal(80, true), true]] as const) {
      const r = new Reporter({ stream: t.stream, plain });
      expect(r.tty).toBe(false);
      r.bar('step 1/10', true);
      r.line('a line');
      r.endBar();
      expect(t.next()).toBe('a line\n');
    }
    const q = terminal(80);
    const r = new Reporter({ stream: q.stream, quiet: true });
    r.bar('step 1/10', true);
    r.info('progress');
    r.line('a result');
    expect(q.next()).toBe('a result\n');
  });

  test('plain spinner text: one line per distinct message, not per percentage', async () => {
    const t = terminal(80, false);
    const r = new Reporter({ stream: t.stream });
    await r.spin('tokenizing 10%');
    await r.spin('tokenizing 55%');
    await r.spin('reading 1/9 files');
    await r.spin('reading 5/9 files');
    await r.spin('building the model');
    r.spinDone('ready');
    expect(t.next()).toBe('tokenizing 10%\nreading 1/9 files\nbuilding the model\nready\n');
  });
});

describe('bar cells and rates', () => {
  test('barCells fills round(f·width) cells of width, clamped to [0, 1]; formatRate uses k and M', () => {
    expect(barCells(0, 10)).toBe('░'.repeat(10));
    expect(barCells(0.26, 10)).toBe('███' + '░'.repeat(7));
    expect(barCells(1.7, 4)).toBe('████');
    expect(barCells(-1, 4)).toBe('░░░░');
    expect([formatRate(999), formatRate(12345), formatRate(2.5e6), formatRate(NaN)]).toEqual(['999', '12.3k', '2.50M',
      '?']);
  });
});
