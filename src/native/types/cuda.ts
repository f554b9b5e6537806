// CUDA backend queries and timers (native/cuda/api.h, native/bindings/bind_cuda.cc). The kernels run on
// CUDA through the ordinary kernel bindings with `device: 'cuda'` (see OnDevice in ./gemm). Without a
// usable device the timers throw "no usable CUDA device: <reason>".

export interface CudaInfo {
  /** The addon was built with the CUDA backend (CMake found nvcc; DSMOE_CUDA not off). */
  compiled: boolean;
  /** A device the kernels can run on (compute capability ≥ 8.0) was found. */
  available: boolean;
  deviceCount: number;
  /** The DSMOE_CUDA build option the addon was configured with: auto, on or off. */
  buildOption: string;
  /** Embedded GPU code, e.g. "80-real 90a-real 90-virtual" (compiled builds only). */
  architectures?: string;
  runtimeVersion?: number;
  /** 0 when no driver is installed. */
  driverVersion?: number;
  name?: string;
  /** "9.0" */
  computeCapability?: string;
  memoryBytes?: number;
  multiprocessors?: number;
  /** Why `available` is false. */
  reason?: string;
}

export interface CudaFunctions {
  cudaInfo(): CudaInfo;
  /** Seconds per bf16 GEMM A [m,k] · B [n,k]ᵀ → fp32 C on device-resident data (CUDA events, after a warm-up). */
  cudaBenchGemm(args: { m: number; n: number; k: number; reps?: number }): number;
  /** Seconds per grouped bf16 GEMM launch over all experts (x [rows, k], w [E, n, k], transW). */
  cudaBenchGroupedGemm(args: { experts: number; offsets: Int32Array; n: number; k: number; reps?: number }): number;
  /** Seconds per device-to-device cudaMemcpy of `bytes`. */
  cudaBenchMemcpy(args: { bytes: number; reps?: number }): number;
}
