// One rank's view of a data-parallel run (docs/distributed.md): which rank it is, how many there are,
// and the collectives the training loop needs. The launcher (launcher.ts) starts each rank with
// DSMOE_PARALLEL describing its place; joinGroup() connects it to the others through the addon's
// Gloo communicator.
import { createHash } from 'node:crypto';
import type { NativeCommunicator } from '../native/types/parallel';

/** What the launcher tells each rank (the JSON in DSMOE_PARALLEL). */
export interface RankInfo {
  rank: number;
  size: number;
  localRank: number;
  localSize: number;
  nodeRank: number;
  nnodes: number;
  storeHost: string;
  storePort: number;
  /** Key prefix of this run in the store */
  prefix: string;
  /** The address this rank's transport listens on */
  hostname: string;
  timeoutMs: number;
}

/** The collectives of a data-parallel run, as the training loop uses them (tests pass fakes). */
export interface ProcessGroup {
  readonly rank: number;
  readonly size: number;
  /** Elementwise sum over ranks, in place; every rank gets the same bits. */
  sum(values: Float64Array): Promise<Float64Array>;
  /** The native communicator, for the trainer's gradient all-reduce (absent in fakes). */
  readonly native?: NativeCommunicator;
}

export function checkRankInfo(x: unknown): RankInfo {
  const o = x as Partial<RankInfo> | null;
  const int = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (!o || typeof o !== 'object' || !int(o.rank) || !int(o.size) || o.size! < 1 || o.rank! >= o.size!
    || !int(o.localRank) || !int(o.localSize) || !int(o.nodeRank) || !int(o.nnodes) || typeof o.storeHost !== 'string'
    || !int(o.storePort) || typeof o.prefix !== 'string' || typeof o.hostname !== 'string' || !int(o.timeoutMs))
    throw new Error(`DSMOE_PARALLEL does not describe a rank: ${JSON.stringify(x)}`);
  return o as RankInfo;
}

/** Joins the run's other ranks (blocks until all joined, or the timeout). */
export function joinGroup(
  info: RankInfo, addon: { createCommunicator(a: object): NativeCommunicator },
): ProcessGroup {
  const native = addon.createCommunicator({
    rank: info.rank, size: info.size, storeHost: info.storeHost, storePort: info.storePort, prefix: info.prefix,
    hostname: info.hostname, timeoutMs: info.timeoutMs,
  });
  return {
    rank: info.rank, size: info.size, native,
    sum: async (v) => {
      await native.allreduceAsync(v);
      return v;
    },
  };
}

/** A 48-bit digest of a text, exact in a float64 (for allGatherDigests). */
export function digest48(text: string | Uint8Array): number {
  return createHash('sha256').update(text).digest().readUIntBE(0, 6);
}

/**
 * Every rank's digests: row r of the result is rank r's `mine` (an all-gather done as a sum of
 * one-hot rows, exact for 48-bit integers).
 */
export async function allGatherDigests(group: ProcessGroup, mine: number[]): Promise<number[][]> {
  const k = mine.length;
  const all = new Float64Array(group.size * k);
  all.set(mine, group.rank * k);
  await group.sum(all);
  return Array.from({ length: group.size }, (_, r) => Array.from(all.subarray(r * k, (r + 1) * k)));
}
