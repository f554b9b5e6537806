// CUDA backend (native/cuda/api.h, native/bindings/bind_cuda.cc). Each cudaXxx kernel takes the same
// named arguments as its CPU counterpart and has the same semantics; it copies the host arrays to the
// device, runs, and copies the results back. GEMMs run on bf16 tensor cores with fp32 accumulation
// (fp32 inputs are rounded to bf16), so they match the CPU only to bf16 accuracy. Without a usable
// device every kernel throws "no usable CUDA device: <reason>".
import type { GemmArgs, GroupedGemmArgs } from './gemm';
import type { CombineArgs, GatherRowsArgs, GroupByExpertArgs, RouterSoftmaxArgs, RouteTopkArgs } from './routing';
import type {
  AdamwUpdateArgs, CrossEntropyArgs, GeluBackwardArgs, GeluForwardArgs, RmsnormBackwardArgs, RmsnormForwardArgs,
  RopeForwardArgs,
} from './nn';
import type { AttentionForwardArgs } from './attention';

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
  /** Mean of the loss over rows with a target ≥ 0, as crossEntropy. */
  cudaCrossEntropy(args: CrossEntropyArgs): number;
  /** Seconds per bf16 GEMM A [m,k] · B [n,k]ᵀ → fp32 C on device-resident data (CUDA events, after a warm-up). */
  cudaBenchGemm(args: { m: number; n: number; k: number; reps?: number }): number;
  /** Seconds per grouped bf16 GEMM launch over all experts (x [rows, k], w [E, n, k], transW). */
  cudaBenchGroupedGemm(args: { experts: number; offsets: Int32Array; n: number; k: number; reps?: number }): number;
  /** Seconds per device-to-device cudaMemcpy of `bytes`. */
  cudaBenchMemcpy(args: { bytes: number; reps?: number }): number;
}

export interface CudaKernels {
  cudaGemm(args: GemmArgs): void;
  /** All experts in one launch; empty groups allowed. */
  cudaGroupedGemm(args: GroupedGemmArgs): void;
  cudaRouterSoftmax(args: RouterSoftmaxArgs): void;
  cudaRouteTopk(args: RouteTopkArgs): void;
  /** Stable counting sort on the device (histogram, scan, scatter). */
  cudaGroupByExpert(args: GroupByExpertArgs): void;
  cudaGatherRows(args: GatherRowsArgs): void;
  cudaCombine(args: CombineArgs): void;
  cudaRmsnormForward(args: RmsnormForwardArgs): void;
  cudaRmsnormBackward(args: RmsnormBackwardArgs): void;
  cudaRopeForward(args: RopeForwardArgs): void;
  cudaGeluForward(args: GeluForwardArgs): void;
  cudaGeluBackward(args: GeluBackwardArgs): void;
  cudaAdamwUpdate(args: AdamwUpdateArgs): void;
  /** Fused (online-softmax) forward; headDim ≤ 256. */
  cudaAttentionForward(args: AttentionForwardArgs): void;
}
