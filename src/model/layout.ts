// The parameter layout of a config, derived in TypeScript (DESIGN.md §3): tensor names, shapes and
// their offsets in the one flat fp32 buffer, in this order, contiguous, no padding:
//
//   embed.weight                      [V, D]
//   per layer l:
//     layers.{l}.attn_norm.weight     [D]
//     layers.{l}.attn.router.weight   [E_att, D]          (absent when E_att = 1)
//       or, with router_hidden = h > 0, a two-layer router in its place:
//     layers.{l}.attn.router.hidden.weight [h, D]
//     layers.{l}.attn.router.output.weight [E_att, h]
//     layers.{l}.attn.q_proj.weight   [E_att, H·d_h, D]
//     layers.{l}.attn.k_proj.weight   [G·d_h, D]
//     layers.{l}.attn.v_proj.weight   [G·d_h, D]
//     layers.{l}.attn.o_proj.weight   [E_att, D, H·d_h]
//     layers.{l}.mlp_norm.weight      [D]
//     layers.{l}.mlp.router.weight    [E_mlp, D]          (absent when E_mlp = 1; two-layer as above)
//     layers.{l}.mlp.up_proj.weight   [E_mlp, F, D]
//     layers.{l}.mlp.down_proj.weight [E_mlp, D, F]
//   final_norm.weight                 [D]
//   lm_head.weight                    [V, D]              (absent when tied)
//
// Checkpoints are written and checked against this layout, so they can be read without the addon;
// the native modelLayout must agree (asserted by a test when the addon has it).
import type { ModelLayout, TensorLayout } from '../native/types/model';
import type { ModelConfig } from './model-config';

export type { ModelLayout, TensorLayout } from '../native/types/model';

export function layoutFromConfig(c: ModelConfig): ModelLayout {
  const D = c.d_model, V = c.vocab_size;
  const { n_experts: Ea, n_heads: H, n_kv_heads: G, head_dim: dh } = c.attention;
  const { n_experts: Em, expert_dim: F } = c.mlp;
  const tensors: TensorLayout[] = [];
  let offset = 0;
  const add = (name: string, shape: number[], decay: boolean) => {
    const size = shape.reduce((a, b) => a * b, 1);
    tensors.push({ name, shape, offset, size, decay });
    offset += size;
  };
  const Rh = c.router_hidden ?? 0;
  // A layer's router where DESIGN.md §3 puts router.weight: linear, or hidden then output weight.
  const router = (p: string, E: number) => {
    if (E === 1) return;
    if (Rh === 0) add(`${p}router.weight`, [E, D], true);
    else {
      add(`${p}router.hidden.weight`, [Rh, D], true);
      add(`${p}router.output.weight`, [E, Rh], true);
    }
  };
  add('embed.weight', [V, D], true);
  for (let l = 0; l < c.n_layers; l++) {
    const p = `layers.${l}.`;
    add(`${p}attn_norm.weight`, [D], false);
    router(`${p}attn.`, Ea);
    add(`${p}attn.q_proj.weight`, [Ea, H * dh, D], true);
    add(`${p}attn.k_proj.weight`, [G * dh, D], true);
    add(`${p}attn.v_proj.weight`, [G * dh, D], true);
    add(`${p}attn.o_proj.weight`, [Ea, D, H * dh], true);
    add(`${p}mlp_norm.weight`, [D], false);
    router(`${p}mlp.`, Em);
    add(`${p}mlp.up_proj.weight`, [Em, F, D], true);
    add(`${p}mlp.down_proj.weight`, [Em, D, F], true);
  }
  add('final_norm.weight', [D], false);
  if (!c.tie_embeddings) add('lm_head.weight', [V, D], true);
  const embedding = V * D * (c.tie_embeddings ? 1 : 2);
  return { tensors, totalParams: offset, nonEmbeddingParams: offset - embedding };
}

/**
 * Differences between two layouts (names, order, shapes, offsets, decay flags, totals); empty when
 * they agree. Used to check the native layout against this one.
 */
export function layoutDifferences(expected: ModelLayout, got: ModelLayout, limit = 5): string[] {
  const out: string[] = [];
  if (expected.totalParams !== got.totalParams) out.push(`totalParams ${got.totalParams}, expected ` +
    `${expected.totalParams}`);
  if (expected.nonEmbeddingParams !== got.nonEmbeddingParams) out.push(`nonEmbeddingParams ` +
    `${got.nonEmbeddingParams}, expected ${expected.nonEmbeddingParams}`);
  if (expected.tensors.length !== got.tensors.length) out.push(`${got.tensors.length} tensors, expected ` +
    `${expected.tensors.length}`);
  const n = Math.min(expected.tensors.length, got.tensors.length);
  for (let i = 0; i < n && out.length < limit; i++) {
    const e = expected.tensors[i], g = got.tensors[i];
    if (e.name !== g.name) out.push(`tensor ${i} is "${g.name}", expected "${e.name}"`);
    else if (e.shape.join(',') !== g.shape.join(',')) out.push(`${e.name}: shape [${g.shape.join(', ')}], expected ` +
      `[${e.shape.join(', ')}]`);
    else if (e.offset !== g.offset || e.size !== g.size) out.push(`${e.name}: offset ${g.offset} size ${g.size}, ` +
      `expected ${e.offset} and ${e.size}`);
    else if (e.decay !== g.decay) out.push(`${e.name}: decay ${g.decay}, expected ${e.decay}`);
  }
  return out.slice(0, limit);
}
