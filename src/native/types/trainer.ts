// The training state owned by the engine (native/model/trainer.h): parameters, gradients and AdamW
// moments live in the chosen device's memory; TypeScript holds a handle and moves tensors one at a
// time, by name (loading and saving checkpoints), never the whole model at once.
//
// A step is lossAndGrad → reduceGradients (a no-op in one process; the all-reduce of a data-parallel
// run) → applyOptimizer; trainStepAsync runs the three as one call.
import type { ModelConfig } from './model';
import type { BatchArgs, OptimArgs, StepStats } from './model';
import type { InferenceSession, SessionOptions } from './infer';
import type { NativeCommunicator } from './parallel';

/** 'cpu' | 'cuda' | 'cuda:N' */
export type DeviceName = string;

/** Which per-parameter array a tensor call reads or writes. */
export type TensorSlot = 'param' | 'grad' | 'adamM' | 'adamV';

export interface NativeTrainer {
  /** 'cpu' or 'cuda:N' */
  readonly device: string;
  /** elements of every slot: modelLayout(config).totalParams */
  readonly totalParams: number;
  /** Seeded initialisation of the parameters (normal(0, 0.02), scaled output projections, norms = 1). */
  init(args: { seed: number }): void;
  /** Copies one tensor (fp32, its layout size) into a slot; RangeError naming the tensor on a size mismatch. */
  loadTensor(args: { name: string; slot?: TensorSlot; data: Float32Array }): void;
  /** A new Float32Array with one tensor of a slot (default 'param'). */
  readTensor(args: { name: string; slot?: TensorSlot }): Float32Array;
  /** forward + backward over all micro-batches; the engine's gradients hold the mean gradient */
  lossAndGradAsync(args: BatchArgs): Promise<StepStats>;
  /** the gradient-reduction hook (a no-op in one process) */
  reduceGradients(): void;
  /** reduceGradients on a worker thread (a data-parallel run's all-reduce takes a while) */
  reduceGradientsAsync?(): Promise<unknown>;
  /** Data-parallel runs: reduceGradients becomes the mean of the gradients over the communicator's ranks. */
  setCommunicator?(args: { communicator: NativeCommunicator }): void;
  /** clip + AdamW, zeroes the gradients; returns the norm before clipping (weights untouched when not finite) */
  applyOptimizer(args: OptimArgs & { loss: number }): { gradNorm: number };
  /** the three above as one call */
  trainStepAsync(args: BatchArgs & OptimArgs): Promise<StepStats>;
  /** loss and router statistics without gradients; no logits cross the boundary */
  evaluateAsync(args: BatchArgs): Promise<StepStats>;
  /** An inference session over the live parameters (no copy), for routed evaluation while training. */
  createSession(args: Omit<SessionOptions, 'config'>): InferenceSession;
}

export interface TrainerFunctions {
  /** device: default 'cpu'. Throws naming the reason when the device is not usable. */
  createTrainer(args: { config: ModelConfig; device?: DeviceName }): NativeTrainer;
}
