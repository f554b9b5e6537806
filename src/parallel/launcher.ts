// `dsmoe train --nproc N [--nnodes M --node-rank R --master ADDR:PORT]`: starts this machine's ranks
// of a data-parallel run, like torchrun. Node rank 0 hosts the rendezvous service (store.ts) at
// --master (or on a free loopback port for a one-machine run); every rank is this CLI again
// (`dsmoe train` with the same options) with DSMOE_PARALLEL saying where it stands.
//
// Logs: global rank 0's stdout and stderr pass through; the other ranks run --quiet and only their
// errors show, prefixed with the rank. Faults: the first rank that exits with an error or a signal is
// named (and recorded in the store, so that the other nodes' launchers can name it too); the other
// ranks notice at their next collective (Gloo sees the closed connections) and exit; whoever has not
// exited after a grace period is terminated. Ctrl-C is passed to the ranks once (they agree to stop
// after the same step and rank 0 saves); a second Ctrl-C kills them.
import { spawn, type ChildProcess } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { childEnv, envParallelHost, envParallelTimeoutS, envThreads } from '../util/env';
import { StoreClient, StoreServer } from './store';
import type { RankInfo } from './group';

export interface LaunchOptions {
  /** ranks on this machine */
  nproc: number;
  nnodes: number;
  nodeRank: number;
  /** ADDR:PORT of the rendezvous service (node rank 0 hosts it); required with nnodes > 1 */
  master?: string;
  /** `dsmoe train` arguments for every rank (without the launcher's flags) */
  args: string[];
  /** --threads given: each rank uses it; else cores / nproc */
  threads?: number;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Ctrl-C: SIGINT to the ranks (they stop after the same step, rank 0 saves) */
  signal?: AbortSignal;
  /** A second Ctrl-C: SIGKILL to the ranks */
  killSignal?: AbortSignal;
  /** The CLI entry (default bin/dsmoe.js of this package) */
  cli?: string;
  /** --quiet: no line about the ranks started */
  quiet?: boolean;
}

export interface LaunchResult {
  exitCode: number;
  /** The first rank that failed, and how (null when none did) */
  failed: { rank: number; how: string } | null;
}

/** Seconds the other ranks get to notice a failed rank before they are terminated. */
export const FAILURE_GRACE_S = 10;
/** How long a rank's error exit waits for another rank's failure to be recorded (to name that one). */
const NAMING_WAIT_MS = 2000;

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|::1)$/i;

export function parseMaster(v: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(v.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 1 && port <= 65535))
    throw new RangeError(`--master expects ADDR:PORT (e.g. 10.0.0.1:29500), got "${v}"`);
  return { host: m[1], port };
}

/** Strips the launcher's own flags (--nproc, --nnodes, --node-rank, --master) from train arguments. */
export function rankArgs(args: string[]): string[] {
  const own = new Set(['--nproc', '--nnodes', '--node-rank', '--master']);
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const eq = a.indexOf('=');
    if (own.has(eq > 0 ? a.slice(0, eq) : a)) {
      if (eq < 0) i++;
      continue;
    }
    out.push(a);
  }
  return out;
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `was killed by ${signal}` : `exited with code ${code}`;
}

/** Forwards a child's stream line by line with a prefix. */
function prefixLines(from: NodeJS.ReadableStream, to: NodeJS.WritableStream, prefix: string): void {
  let rest = '';
  from.setEncoding('utf8');
  from.on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop()!;
    for (const l of lines) to.write(`${prefix}${l}\n`);
  });
  from.on('end', () => {
    if (rest) to.write(`${prefix}${rest}\n`);
  });
}

export async function launch(o: LaunchOptions): Promise<LaunchResult> {
  const { nproc, nnodes, nodeRank } = o;
  if (nnodes > 1 && o.master === undefined)
    throw new RangeError('--nnodes needs --master ADDR:PORT (where node rank 0 hosts the rendezvous)');
  if (nodeRank >= nnodes) throw new RangeError(`--node-rank must be below --nnodes (${nnodes}), got ${nodeRank}`);
  const master = o.master !== undefined ? parseMaster(o.master) : { host: '127.0.0.1', port: 0 };
  const size = nproc * nnodes;
  const log = (l: string) => o.stderr.write(`dsmoe: ${l}\n`);

  // Node rank 0 hosts the rendezvous; the others talk to it only to name a failed rank.
  let server: StoreServer | null = null;
  const conn: { client: StoreClient | null } = { client: null };
  if (nodeRank === 0)
    server = await StoreServer.listen(LOOPBACK.test(master.host) ? master.host : '0.0.0.0', master.port);
  const storePort = server?.port ?? master.port;
  const hostname = LOOPBACK.test(master.host) ? '127.0.0.1' : envParallelHost() ?? os.hostname();
  const timeoutMs = Math.round(envParallelTimeoutS() * 1000);
  const threads = o.threads ?? envThreads() ?? Math.max(1, Math.floor(os.availableParallelism() / nproc));
  const cli = o.cli ?? path.resolve(__dirname, '..', '..', 'bin', 'dsmoe.js');

  // ready: the rank handles SIGINT (it says so over IPC); Ctrl-C before that is passed on when it is.
  const children: Array<{ rank: number; child: ChildProcess; done: boolean; ready: boolean }> = [];
  const exits: Array<Promise<void>> = [];
  let failed: LaunchResult['failed'] = null;
  let interrupted = 0;
  let killTimer: NodeJS.Timeout | undefined;
  const codes: number[] = [];
  const live = () => children.filter((c) => !c.done);
  const record = async (rank: number, how: string) => {
    server?.set(`dead/${rank}`, how);
    if (nodeRank !== 0) {
      try {
        conn.client ??= await StoreClient.connect(master.host, master.port, 2000);
        await conn.client.set(`dead/${rank}`, how);
      } catch { /* the master is gone too: nothing to tell */ }
    }
  };

  const declare = (rank: number, how: string, pid: number | null) => {
    failed = { rank, how };
    if (pid !== null) {
      log(`rank ${rank} (pid ${pid}) ${how}; stopping the other ranks`);
      void record(rank, how);
    } else log(`rank ${rank} (on another machine) ${how}; this machine's ranks stop`);
    killTimer = setTimeout(() => {
      for (const c of live()) {
        log(`rank ${c.rank} did not stop within ${FAILURE_GRACE_S} s; terminating it`);
        c.child.kill('SIGKILL');
      }
    }, FAILURE_GRACE_S * 1000);
  };

  for (let local = 0; local < nproc; local++) {
    const rank = nodeRank * nproc + local;
    const info: RankInfo = {
      rank, size, localRank: local, localSize: nproc, nodeRank, nnodes, storeHost: master.host, storePort,
      prefix: 'dsmoe', hostname, timeoutMs,
    };
    // Ranks other than 0 print no progress; only their errors reach the terminal.
    const args = rank === 0 ? o.args : [...o.args.filter((a) => a !== '--json'), '--quiet'];
    const child = spawn(process.execPath, [cli, 'train', ...args], {
      env: childEnv({ DSMOE_PARALLEL: JSON.stringify(info), DSMOE_THREADS: String(threads) }),
      stdio: ['ignore', rank === 0 ? 'pipe' : 'ignore', 'pipe', 'ipc'],
      // Its own process group: the terminal's Ctrl-C reaches the launcher only, which passes it on once.
      detached: true,
    });
    const entry = { rank, child, done: false, ready: false };
    children.push(entry);
    child.on('message', (m: { dsmoe?: string }) => {
      if (m?.dsmoe !== 'ready') return;
      entry.ready = true;
      if (interrupted === 1) child.kill('SIGINT');
    });
    if (rank === 0) {
      child.stdout!.pipe(o.stdout as NodeJS.WritableStream, { end: false });
      child.stderr!.pipe(o.stderr as NodeJS.WritableStream, { end: false });
    } else prefixLines(child.stderr!, o.stderr, `[rank ${rank}] `);
    exits.push(new Promise((resolve) => {
      // 'close': after the exit and after its output has been passed on.
      child.on('close', async (code, signal) => {
        entry.done = true;
        codes.push(signal ? 128 : code ?? 1);
        const bad = signal !== null || (code !== 0 && code !== 130);
        if (bad && failed === null && interrupted < 2) {
          // An error exit is usually a rank that noticed another one stop: name that one when its
          // launcher (this one, or another node's) has recorded it by now.
          const other = signal === null ? await firstDead(server, conn, master, size, NAMING_WAIT_MS) : null;
          if (failed === null) {
            if (other && other.rank !== rank) declare(other.rank, other.how, null);
            else declare(rank, describeExit(code, signal), child.pid ?? null);
          }
        }
        resolve();
      });
      child.on('error', (e) => {
        log(`cannot start rank ${rank}: ${e.message}`);
        entry.done = true;
        codes.push(1);
        resolve();
      });
    }));
  }
  const pids = children.map((c) => `rank ${c.rank} pid ${c.child.pid}`).join(', ');
  if (!o.quiet) log(`started ${nproc} rank(s) on this machine: ${pids}`
    + ` (${size} in all, ${threads} thread(s) each${nnodes > 1 ? `, node ${nodeRank} of ${nnodes}` : ''})`);

  o.signal?.addEventListener('abort', () => {
    interrupted = Math.max(interrupted, 1);
    for (const c of live()) if (c.ready) c.child.kill('SIGINT');
  }, { once: true });
  o.killSignal?.addEventListener('abort', () => {
    interrupted = 2;
    for (const c of live()) c.child.kill('SIGKILL');
  }, { once: true });
  try {
    await Promise.all(exits);
  } finally {
    if (killTimer) clearTimeout(killTimer);
  }

  conn.client?.close();
  // The other machines' launchers may still ask which rank failed.
  if (server && nnodes > 1 && failed !== null) await new Promise((r) => setTimeout(r, NAMING_WAIT_MS + 1000));
  await server?.close();
  const allInterrupted = codes.length > 0 && codes.every((c) => c === 130);
  const ok = codes.length > 0 && codes.every((c) => c === 0);
  return { exitCode: ok ? 0 : allInterrupted ? 130 : 1, failed };
}

async function firstDead(
  server: StoreServer | null, conn: { client: StoreClient | null }, master: { host: string; port: number },
  size: number, waitMs: number,
): Promise<{ rank: number; how: string } | null> {
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline) {
    if (server) {
      const k = server.keys('dead/')[0];
      if (k) return { rank: Number(k.slice(5)), how: server.get(k)!.toString() };
    } else {
      try {
        conn.client ??= await StoreClient.connect(master.host, master.port, 1000);
        for (let r = 0; r < size; r++) {
          const v = await conn.client.get(`dead/${r}`);
          if (v) return { rank: r, how: v.toString() };
        }
      } catch {
        return null;
      }
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return null;
}
