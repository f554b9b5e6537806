// The typed surface of the native addon (native/bindings). Each kernel takes one object of named
// arguments; `xxxAsync` runs the same kernel on a worker thread and resolves when done.
// Shapes are row-major; see the C++ headers in native/kernels/cpu for each kernel's contract.
import type { GemmKernels } from './types/gemm';
import type { RoutingKernels } from './types/routing';
import type { NnKernels } from './types/nn';
import type { AttentionKernels } from './types/attention';
import type { BenchFunctions, BenchKernels } from './types/bench';
import type { ModelFunctions } from './types/model';
import type { InferFunctions } from './types/infer';
import type { TrainerFunctions } from './types/trainer';
import type { CudaFunctions } from './types/cuda';
import type { BackendOpKernels } from './types/backend-ops';
import type { QuantFunctions } from './types/quant';
import type { ParallelFunctions } from './types/parallel';
import type { MmapFunctions } from './types/mmap';
import type { TextKernels } from './types/text';

export * from './types/gemm';
export * from './types/routing';
export * from './types/nn';
export * from './types/attention';
export * from './types/bench';
export * from './types/model';
export * from './types/infer';
export * from './types/trainer';
export * from './types/cuda';
export * from './types/backend-ops';
export * from './types/quant';
export * from './types/mmap';
export * from './types/text';

export type Isa = 'avx512' | 'avx2' | 'generic';

export interface RuntimeInfo {
  threads: number;
  isa: Isa;
  bestIsa: Isa;
  avx512bf16: boolean;
  /** int8 dot products (vpdpbusd) for int8 / q4 weights in decode */
  avx512vnni: boolean;
  buildSystem: string;
  sanitized: boolean;
}

export interface CoreFunctions {
  /** Sets the size of the kernel thread pool (1..256); returns it. */
  setThreads(args: { threads: number }): number;
  /** Restricts the CPU kernels to an instruction set no better than the CPU's; returns it. */
  setIsa(args: { isa: Isa }): Isa;
  runtimeInfo(): RuntimeInfo;
}

/** Every kernel K that returns nothing also exists as `${K}Async`, returning a Promise. */
export type WithAsync<T> = T & {
  [K in keyof T as T[K] extends (args: never) => infer R ? (R extends void ? `${string & K}Async` : never) : never]:
    T[K] extends (args: infer A) => void ? (args: A) => Promise<void> : never;
};

export type NativeAddon = CoreFunctions &
  ModelFunctions &
  InferFunctions &
  TrainerFunctions &
  BenchFunctions &
  WithAsync<BenchKernels> &
  WithAsync<GemmKernels> &
  WithAsync<RoutingKernels> &
  WithAsync<NnKernels> &
  WithAsync<AttentionKernels> &
  WithAsync<BackendOpKernels> &
  QuantFunctions &
  ParallelFunctions &
  MmapFunctions &
  WithAsync<TextKernels> &
  CudaFunctions;
