// The DS-MoE model in native code (native/model): layout of its parameters, one training step,
// evaluation and the forward pass. TypeScript owns the buffers (so checkpoints are plain typed
// arrays it can write); native code owns the math.
//
// The config object is exactly config.json's schema (DESIGN.md §3), snake_case, so one schema
// serves the file, the CLI and the addon; it is defined in src/model/model-config.ts.

import type { ModelConfig } from '../../model/model-config';

export type { Activation, ModelConfig, TrainingMode } from '../../model/model-config';

export interface TensorLayout {
  /** DESIGN.md §3 name, e.g. 'layers.0.attn.q_proj.weight' */
  name: string;
  shape: number[];
  /** element offset in the flat parameter buffer */
  offset: number;
  /** number of elements (product of shape) */
  size: number;
  /** whether AdamW weight decay applies (not to norms) */
  decay: boolean;
}

export interface ModelLayout {
  tensors: TensorLayout[];
  totalParams: number;
  /** parameters other than embed.weight and lm_head.weight */
  nonEmbeddingParams: number;
}

export interface StepStats {
  /** total loss = lm + aux */
  loss: number;
  lmLoss: number;
  /** α-weighted MI losses (dsmoe) or switch losses (smoe), summed over layers */
  auxLoss: number;
  /** global L2 norm of the gradient before clipping (0 from evaluate) */
  gradNorm: number;
  /** router entropies H(e) and H(e|X), averaged over layers of each kind (nats; 0 when E = 1) */
  attEntropy: number;
  attCondEntropy: number;
  mlpEntropy: number;
  mlpCondEntropy: number;
  /** tokens in the step (all micro-batches) */
  tokens: number;
}

export interface BatchArgs {
  /** [micro × batch × seq] token ids */
  tokens: Int32Array;
  /** [micro × batch × seq] next-token targets; < 0 ignored */
  targets: Int32Array;
  batch: number;
  seq: number;
  /** micro-batches (gradient accumulation steps) in tokens/targets; default 1 */
  micro?: number;
}

export interface OptimArgs {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** clip the global gradient norm to this (0: no clipping) */
  clip: number;
  /** AdamW step number, ≥ 1 (bias correction) */
  step: number;
}

export interface NativeModel {
  /** forward + backward over all micro-batches (gradients averaged), clip, AdamW; grads left zeroed */
  trainStepAsync(args: BatchArgs & OptimArgs): Promise<StepStats>;
  /** forward + backward; grads (the buffer given at construction) are overwritten with the mean gradient */
  lossAndGrad(args: BatchArgs): StepStats;
  /** loss and router statistics without gradients */
  evaluate(args: BatchArgs): StepStats;
  evaluateAsync(args: BatchArgs): Promise<StepStats>;
  /** logits [batch, seq, vocab] of the training forward (all experts, dense weighting) */
  forward(args: { tokens: Int32Array; batch: number; seq: number; logits: Float32Array }): void;
}

export interface ModelFunctions {
  /** Checks the config (clear RangeError naming the field) and returns the parameter layout. */
  modelLayout(config: ModelConfig): ModelLayout;
  /** params/grads/adamM/adamV: Float32Array(totalParams) each, owned by the caller, kept referenced. */
  createModel(args: {
    config: ModelConfig; params: Float32Array; grads: Float32Array; adamM: Float32Array; adamV: Float32Array;
  }): NativeModel;
  /** Fills params with the initialisation (seeded; normal(0, 0.02), scaled output projections, norms = 1). */
  initParams(args: { config: ModelConfig; params: Float32Array; seed: number }): void;
  initParamsAsync(args: { config: ModelConfig; params: Float32Array; seed: number }): Promise<void>;
}
