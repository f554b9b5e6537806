// Data-parallel collectives (native/parallel/comm.h, native/bindings/bind_parallel.cc): Gloo's ring
// all-reduce over TCP when the addon was built with it (DSMOE_DIST), else distInfo() says why not.

export interface ParallelInfo {
  available: boolean;
  /** 'gloo' when available */
  library: string | null;
  /** why not, with what to install (null when available) */
  reason: string | null;
}

/** One rank's membership in a run: every rank must issue the same collectives in the same order. */
export interface NativeCommunicator {
  readonly rank: number;
  readonly size: number;
  /** Elementwise sum over all ranks, in place; every rank ends with the same bits. */
  allreduceAsync(data: Float32Array | Float64Array): Promise<void>;
  barrierAsync(): Promise<void>;
}

export interface CommunicatorArgs {
  rank: number;
  size: number;
  /** The rendezvous key-value service (src/parallel/store.ts) */
  storeHost: string;
  storePort: number;
  /** Key prefix of this run in the store */
  prefix?: string;
  /** The address this rank's transport listens on (default 127.0.0.1) */
  hostname?: string;
  /** Rendezvous and every collective fail after this long without progress (default 120000) */
  timeoutMs?: number;
}

export interface ParallelFunctions {
  distInfo(): ParallelInfo;
  /** Joins the other ranks (blocks until all joined or the timeout); throws distInfo().reason without Gloo. */
  createCommunicator(args: CommunicatorArgs): NativeCommunicator;
}
