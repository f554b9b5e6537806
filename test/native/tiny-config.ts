// The tiny model shape the native model and trainer tests share: small enough for finite
// differences, with every feature present (MoE layers, shared kv heads, both aux losses).
import type { ModelConfig, TrainingMode } from '../../src/native/addon';

export function tinyConfig(mode: TrainingMode, over: Partial<ModelConfig> = {}): ModelConfig {
  const dense = mode === 'dense';
  return {
    format_version: 1, vocab_size: 17, d_model: 8, n_layers: 2, max_seq_len: 16, norm_eps: 1e-5,
    rope_theta: 10000, tie_embeddings: false,
    attention: { n_experts: dense ? 1 : 3, n_heads: 2, n_kv_heads: 1, head_dim: 4 },
    mlp: { n_experts: dense ? 1 : 3, expert_dim: 6, activation: 'gelu' },
    training: { mode, mi_alpha_att: 0.05, mi_alpha_mlp: 0.07, top_k: 2, switch_alpha: 0.03 },
    routing: { attention: 'dense', mlp: 'dense' },
    ...over,
  };
}
