// `dsmoe convert --from-dense <dense> --attention-experts N --mlp-experts M <out>`: turns a dense
// checkpoint (one expert per layer) into a DS-MoE checkpoint that computes exactly the same function
// at initialisation, ready for `dsmoe train --resume <out>`:
//
// - MLP: the F_total hidden units are split into M experts of F = F_total / M (contiguous); since the
//   combine is Σ_e S_e·y_e and the zero routers give S_e = 1/M, down_proj is scaled by M.
// - Attention: the H_total query heads become N experts of H = H_total / N heads. Head j of every
//   expert attends with kv head floor(j / (H/G)), while dense head h uses floor(h / (H_total/G)).
//   A contiguous split keeps that only when G = 1, so heads are assigned group by group: head j of
//   expert e (kv group g = floor(j / r), i = j mod r, r = H/G) is dense head g·(H_total/G) + e·r + i,
//   which uses the same kv head g. This needs H to be a multiple of G. o_proj is scaled by N.
// - Routers start at zero (uniform softmax), everything else (embedding, norms, k/v, LM head) is copied.
//   Two-layer routers (--router-hidden h): the output weight [E, h] is zero, so S is still uniform;
//   the hidden weight [h, D] is drawn N(0, 1/D) from a seeded stream, as the model's initialisation
//   does: a zero hidden weight would give gelu(0) = 0 features and leave the output gradient zero
//   forever (and the hidden gradient, which goes through the zero output weight, with it).
import * as path from 'node:path';
import { loadCheckpoint, saveCheckpoint, type TrainerState } from '../checkpoint/checkpoint';
import { Rng } from '../data/rng';
import { DEFAULT_THRESHOLD, cloneConfig, validateConfig, withRouterHidden, type ModelConfig } from '../model/config';
import { layoutFromConfig, type ModelLayout } from '../model/layout';
import { checkOutput, folderBytes, readTokenizerJson } from './convert';

export interface UpcycleShape {
  attExperts: number;
  mlpExperts: number;
  /** Two-layer routers of this hidden width (default 0: linear routers). */
  routerHidden?: number;
  /** Seed of the two-layer routers' hidden weights (default 1). */
  seed?: number;
}

/** The dense head that becomes head j of attention expert e (see the file comment). */
export function denseHeadOf(e: number, j: number, headsPerExpert: number, kvHeads: number, totalHeads: number): number {
  const r = headsPerExpert / kvHeads, g = Math.floor(j / r), i = j % r;
  return g * (totalHeads / kvHeads) + e * r + i;
}

/** The DS-MoE config of an upcycled dense config; errors say which count does not divide and why. */
export function upcycledConfig(dense: ModelConfig, s: UpcycleShape, source = 'the dense checkpoint'): ModelConfig {
  const { attExperts: N, mlpExperts: M } = s;
  if (dense.attention.n_experts !== 1 || dense.mlp.n_experts !== 1 || dense.training.mode !== 'dense')
    throw new Error(`--from-dense needs a dense checkpoint (one expert per layer, mode dense); ${source} has `
      + `${dense.attention.n_experts} attention and ${dense.mlp.n_experts} MLP experts (mode ${dense.training.mode})`);
  for (const [flag, v] of [['--attention-experts', N], ['--mlp-experts', M]] as const)
    if (!Number.isSafeInteger(v) || v < 1) throw new Error(`${flag} must be an integer ≥ 1, got ${v}`);
  if (N === 1 && M === 1) throw new Error('--attention-experts and --mlp-experts are both 1: that is the dense model ' +
    '(give more experts to one or both)');
  const Ht = dense.attention.n_heads, G = dense.attention.n_kv_heads, Ft = dense.mlp.expert_dim;
  if (Ht % N !== 0) throw new Error(`--attention-experts ${N}: the ${Ht} query heads of ${source} cannot be split ` +
    `into ${N} equal experts (${N} must divide ${Ht})`);
  const H = Ht / N;
  if (H % G !== 0)
    throw new Error(`--attention-experts ${N}: each expert would have ${H} query heads, not a multiple of the ` +
      `${G} shared kv heads; `
      + `head j of every expert uses kv head floor(j/(H/G)), so every expert needs the same number of heads per kv ` +
        `head (${N} must divide ${Ht / G})`);
  if (Ft % M !== 0) throw new Error(`--mlp-experts ${M}: the MLP width ${Ft} of ${source} cannot be split into ` +
    `${M} equal experts (${M} must divide ${Ft})`);
  const Rh = s.routerHidden ?? 0;
  if (!Number.isSafeInteger(Rh) || Rh < 0) throw new Error(`--router-hidden must be an integer ≥ 0, got ${Rh}`);
  const c = withRouterHidden(cloneConfig(dense), Rh);
  c.attention = { ...c.attention, n_experts: N, n_heads: H };
  c.mlp = { ...c.mlp, n_experts: M, expert_dim: Ft / M };
  const moe = [N, M].filter((e) => e > 1);
  c.training = { ...c.training, mode: 'dsmoe', top_k: Math.min(c.training.top_k, ...moe) };
  const def = `threshold:${DEFAULT_THRESHOLD}`;
  c.routing = { attention: N > 1 ? def : 'dense', mlp: M > 1 ? def : 'dense' };
  return validateConfig(c, 'the upcycled config');
}

const view = (L: ModelLayout, p: Float32Array, name: string): Float32Array => {
  const t = L.tensors.find((x) => x.name === name);
  if (!t) throw new Error(`internal: tensor ${name} missing from the layout`);
  return p.subarray(t.offset, t.offset + t.size);
};

/** N(0, std²) values from `rng` (Box-Muller in double). */
function fillNormal(dst: Float32Array, rng: Rng, std: number): void {
  for (let i = 0; i < dst.length; i += 2) {
    const u = 1 - rng.nextFloat(), v = rng.nextFloat(), r = Math.sqrt(-2 * Math.log(u)) * std;
    dst[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < dst.length) dst[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
}

/** The upcycled parameters (fresh buffer in the layout of `moe`); `seed` draws two-layer routers' hidden weights. */
export function upcycleParams(dense: ModelConfig, params: Float32Array, moe: ModelConfig, seed = 1): Float32Array {
  const Ld = layoutFromConfig(dense), Lm = layoutFromConfig(moe);
  if (params.length !== Ld.totalParams) throw new Error(`dense parameters have ${params.length} values, the layout ` +
    `needs ${Ld.totalParams}`);
  const out = new Float32Array(Lm.totalParams);
  const D = dense.d_model, dh = dense.attention.head_dim, G = dense.attention.n_kv_heads, Ht = dense.attention.n_heads;
  const N = moe.attention.n_experts, H = moe.attention.n_heads, M = moe.mlp.n_experts, F = moe.mlp.expert_dim,
    Ft = dense.mlp.expert_dim;
  const rng = new Rng(seed);
  for (const t of Lm.tensors) {
    const dst = view(Lm, out, t.name);
    const m = /^layers\.(\d+)\.(attn|mlp)\.([\w.]+)\.weight$/.exec(t.name);
    const kind = m?.[3];
    if (kind === 'router' || kind === 'router.output') dst.fill(0); // uniform S: the dense model's function
    else if (kind === 'router.hidden') fillNormal(dst, rng, 1 / Math.sqrt(D)); // fan-in, as init.cc
    else if (kind?.startsWith('router')) throw new Error(`internal: unknown router tensor ${t.name}`);
    else if (kind === 'q_proj') { // [N, H·dh, D] ← rows of dense [Ht·dh, D]
      const src = view(Ld, params, t.name);
      for (let e = 0; e < N; e++) for (let j = 0; j < H; j++) {
        const h = denseHeadOf(e, j, H, G, Ht);
        dst.set(src.subarray(h * dh * D, (h + 1) * dh * D), (e * H + j) * dh * D);
      }
    } else if (kind === 'o_proj') { // [N, D, H·dh] ← columns of dense [D, Ht·dh], × N
      const src = view(Ld, params, t.name);
      for (let e = 0; e < N; e++) for (let j = 0; j < H; j++) {
        const h = denseHeadOf(e, j, H, G, Ht);
        for (let r = 0; r < D; r++) for (let k = 0; k < dh; k++)
          dst[e * D * H * dh + r * H * dh + j * dh + k] = N * src[r * Ht * dh + h * dh + k];
      }
    } else if (kind === 'up_proj') dst.set(view(Ld, params, t.name)); // [M, F, D] = dense [Ft, D] rows in order
    else if (kind === 'down_proj') { // [M, D, F] ← columns of dense [D, Ft], × M
      const src = view(Ld, params, t.name);
      for (let e = 0; e < M; e++) for (let r = 0; r < D; r++) for (let f = 0; f < F; f++)
        dst[e * D * F + r * F + f] = M * src[r * Ft + e * F + f];
    } else dst.set(view(Ld, params, t.name)); // embedding, norms, k/v, final norm, LM head
  }
  return out;
}

export interface UpcycleResult {
  input: string;
  out: string;
  config: ModelConfig;
  /** Whether attention heads had to be reordered (G > 1) to keep each head's kv head. */
  headsPermuted: boolean;
  resumable: boolean;
  bytesBefore: number;
  bytesAfter: number;
  notes: string[];
}

/**
 * Upcycles a dense checkpoint folder into a DS-MoE training-compatible checkpoint (fp32, step 0, no
 * optimizer state).
 */
export function upcycleCheckpoint(denseDir: string, out: string, s: UpcycleShape & { force?: boolean }): UpcycleResult {
  checkOutput(denseDir, out, s.force);
  const ck = loadCheckpoint(denseDir, { optimizer: false });
  const config = upcycledConfig(ck.config, s, denseDir);
  const params = upcycleParams(ck.config, ck.params, config, s.seed);
  const notes: string[] = [];
  const tokenizerJson = readTokenizerJson(ck, notes);
  let trainerState: TrainerState | undefined;
  if (ck.trainerState) {
    // Step 0 with the dense run's data, batch and schedule settings; the sampler continues where the
    // dense run stopped (new batches). No optimizer state: --resume starts a fresh AdamW.
    trainerState = { ...ck.trainerState, step: 0, tokens_seen: 0, elapsed_s: 0, last_losses: [], last_eval: null };
  } else notes.push(`${denseDir} has no trainer_state.json, so ${out} cannot be resumed with dsmoe train --resume ` +
    `(no data settings to continue with)`);
  saveCheckpoint(out, {
    config, params, tokenizerJson, trainerState, dtype: 'F32',
    metadata: { upcycled_from: path.basename(ck.dir), ...(ck.trainerState ? { dense_step: String(ck.trainerState.step) }
      : {}) },
  });
  return {
    input: ck.dir, out: path.resolve(out), config,
    headsPermuted: config.attention.n_experts > 1 && config.attention.n_kv_heads > 1,
    resumable: trainerState !== undefined, bytesBefore: folderBytes(ck.dir), bytesAfter: folderBytes(out), notes,
  };
}

