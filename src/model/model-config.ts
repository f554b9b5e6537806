// A DS-MoE model's configuration: exactly config.json's schema (DESIGN.md §3), snake_case, so one
// schema serves the file, the CLI and the addon (which takes it as is). Validation, presets and the
// mode transformations are in ./config.ts; src/native/types/model.ts re-exports these types.

export type TrainingMode = 'dsmoe' | 'smoe' | 'dense';
export type Activation = 'gelu' | 'gelu_tanh';

export interface ModelConfig {
  format_version: number;
  vocab_size: number;
  d_model: number;
  n_layers: number;
  max_seq_len: number;
  norm_eps: number;
  rope_theta: number;
  tie_embeddings: boolean;
  /**
   * Router of every layer with > 1 expert: absent or 0 = linear (`router.weight` [E, D]); h > 0 =
   * two-layer, softmax(W_out · gelu(W_hidden · x)) with `router.hidden.weight` [h, D] and
   * `router.output.weight` [E, h] (exact-erf GELU, no biases).
   */
  router_hidden?: number;
  attention: { n_experts: number; n_heads: number; n_kv_heads: number; head_dim: number };
  mlp: { n_experts: number; expert_dim: number; activation: Activation };
  training: {
    mode: TrainingMode;
    mi_alpha_att: number;
    mi_alpha_mlp: number;
    /** smoe: experts per token */
    top_k: number;
    /** smoe: weight of the switch load-balancing loss */
    switch_alpha: number;
  };
  /** Default inference routing strategies, e.g. 'dense', 'topk:2', 'threshold:0.48'. */
  routing: { attention: string; mlp: string };
}
