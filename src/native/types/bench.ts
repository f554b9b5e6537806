// Benchmark-only exports (native/bindings/bind_bench.cc): yardsticks and the OpenBLAS peer.

export interface OpenBlasInfo {
  loaded: boolean;
  library?: string;
  config?: string;
  core?: string;
}

export interface BenchFunctions {
  /** FLOP/s of a register-only FMA loop: the ceiling for any fp32 kernel with the active ISA. */
  measureFmaPeak(args: { threads: number; seconds?: number }): number;
  /** Streaming-read bytes/s over a buffer of `bytes`. */
  measureReadBandwidth(args: { bytes: number; threads: number; reps?: number }): number;
  /** dlopen()s Debian's OpenBLAS if installed. */
  openblasLoad(): OpenBlasInfo;
}

export interface BenchKernels {
  /** The plain triple loop c[m,n] = a[m,k]·b[n,k]ᵀ on one thread, for scale. */
  naiveGemm(args: { m: number; n: number; k: number; a: Float32Array; b: Float32Array; c: Float32Array }): void;
  /** OpenBLAS cblas_sgemm (row-major, packed leading dimensions) on `threads` threads. */
  openblasSgemm(args: {
    threads: number; transA?: boolean; transB?: boolean; m: number; n: number; k: number;
    a: Float32Array; b: Float32Array; c: Float32Array;
  }): void;
}
