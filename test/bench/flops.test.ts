// modelFlopsPerToken (src/bench/train.ts), the numerator of every MFU figure of `dsmoe bench train`,
// against a count done by hand for the tiny preset (its shape is asserted first, so a changed preset
// fails here with a clear diff rather than silently moving the numbers).
import { modelFlopsPerToken } from '../../src/bench/train';
import { buildConfig, getPreset } from '../../src/model/config';

// The hand count. A trained token costs 3× its forward (forward, backward to activations, backward
// to weights); a forward multiply-add is 2 FLOPs; so 6 FLOPs per weight the token multiplies by.
// tiny: D 64, 2 layers, T 64, V 4096 (untied), attention 4 experts × 2 heads × d_h 8 over 2 kv
// heads, MLP 4 experts × 64.
//   per layer, weights a dsmoe token touches (every expert):
//     routers 4·64 + 4·64 = 512; q 4·2·8·64 = 4096; o 4096; k 2·8·64 = 1024; v 1024;
//     up 4·64·64 = 16384; down 16384                                  → 43 520 weights → 261 120
//   attention scores and values: a query at position i sees i + 1 keys, (T + 1)/2 = 32.5 on
//     average; per query dimension 2·32.5 (q·k) + 2·32.5 (p·v) = 130 forward, 390 trained;
//     64 query dimensions (4·2·8)                                                        →  24 960
//   per layer 286 080; 2 layers 572 160; LM head 6·4096·64 = 1 572 864 (the embedding lookup
//   is no matmul)                                                                → 2 145 024
// smoe, top-2 of 4: q/o/up/down and the query dimensions halve:
//   (512 + 2048 + 2048 + 1024 + 1024 + 8192 + 8192)·6 = 138 240; 390·32 = 12 480;
//   2·150 720 + 1 572 864                                                        → 1 874 304
// dense counterpart (1 expert × 8 heads, MLP 256, no routers):
//   (4096 + 4096 + 1024 + 1024 + 16384 + 16384)·6 = 258 048; 390·64 = 24 960;
//   2·283 008 + 1 572 864                                                        → 2 138 880
// two-layer routers of width 16: each router 16·64 + 4·16 = 1088 instead of 256, so
//   +2·(1088 − 256)·6 per layer = +9984;  2 145 024 + 2·9984                      → 2 164 992
describe('modelFlopsPerToken', () => {
  test('the tiny preset has the shape the hand count assumes', () => {
    const c = getPreset('tiny').config;
    expect({
      D: c.d_model, L: c.n_layers, T: c.max_seq_len, V: c.vocab_size, tied: c.tie_embeddings, rh: c.router_hidden ?? 0,
      att: [c.attention.n_experts, c.attention.n_heads, c.attention.n_kv_heads, c.attention.head_dim],
      mlp: [c.mlp.n_experts, c.mlp.expert_dim],
    }).toEqual({ D: 64, L: 2, T: 64, V: 4096, tied: false, rh: 0, att: [4, 2, 2, 8], mlp: [4, 64] });
  });

  test('tiny: dsmoe 2 145 024, smoe top-2 1 874 304, dense 2 138 880, ' +
    'router_hidden 16: 2 164 992 FLOPs per token', () => {
    const tiny = (mode: string, overrides = {}) => buildConfig({ preset: 'tiny', mode, overrides });
    expect(modelFlopsPerToken(tiny('dsmoe'))).toBe(2_145_024);
    const smoe = tiny('smoe');
    expect(smoe.training.top_k).toBe(2);
    expect(modelFlopsPerToken(smoe)).toBe(1_874_304);
    expect(modelFlopsPerToken(tiny('dense'))).toBe(2_138_880);
    expect(modelFlopsPerToken(tiny('dsmoe', { router_hidden: 16 }))).toBe(2_164_992);
  });

  test('tied embeddings still multiply by the LM head; top_k = E in smoe costs what dsmoe costs', () => {
    const c = buildConfig({ preset: 'tiny', mode: 'dsmoe', overrides: { tie_embeddings: true } });
    expect(modelFlopsPerToken(c)).toBe(2_145_024);
    const all = buildConfig({ preset: 'tiny', mode: 'smoe' });
    all.training.top_k = 4;
    expect(modelFlopsPerToken(all)).toBe(2_145_024);
  });
});
