// Model configurations: validation (config.json's schema, DESIGN.md §3), presets, the mode
// transformations (dsmoe / smoe / dense) and arithmetic parameter counts.
//
// Parameter counts of the paper shapes against Pan et al. (2024), Table 1 (embedding and LM head
// left out, as the paper does). Counted here from the shapes of DESIGN §1.4 / §3:
//
//   model       here      paper    here/paper
//   DS-MoE-1B   1021.7M   1067M    0.957
//   DS-MoE-3B   2712.1M   2846M    0.953
//   DS-MoE-6B   6197.0M   6343M    0.977
//   Dense-1B    1019.3M   1017M    1.002
//   Dense-3B    2708.6M   2705M    1.001
//   Dense-6B    6191.1M   6186M    1.001
//
// The dense shapes agree to 0.2 %. With linear routers the DS-MoE shapes come out 2.3–4.7 % below the
// paper's numbers, although their expert parameters equal the dense models' by construction
// (E·H·d_h = 32 heads, E·F = 4D); linear routers add only (E_att + E_mlp)·D per layer. With two-layer
// routers (router_hidden = 512: Linear D→512, GELU, Linear 512→E, as in ModuleFormer) the DS-MoE
// shapes count 1070.2M, 2797.3M and 6342.8M: 1.003, 0.983 and 1.000 of the paper's numbers, which
// suggests that is what Table 1 counted (docs/presets.md). Linear stays the default until shown
// otherwise. The tests assert ≤ 0.5 % for dense, ≤ 5 % for linear-router DS-MoE shapes and the
// two-layer counts exactly.
import type { Activation, ModelConfig, TrainingMode } from './model-config';
import { strategyError } from './routing';

export type { ModelConfig, TrainingMode, Activation } from './model-config';

export const FORMAT_VERSION = 1;
export const MODES: readonly TrainingMode[] = ['dsmoe', 'smoe', 'dense'];
export const ACTIVATIONS: readonly Activation[] = ['gelu', 'gelu_tanh'];

/** Paper α values for the 1B model (the paper-shape presets carry their own; docs/method.md). */
export const DEFAULT_MI_ALPHA_ATT = 3.5e-4;
export const DEFAULT_MI_ALPHA_MLP = 6.3e-4;
/**
 * α of the presets that train for minutes on a CPU (tiny, small, medium: ≤ a few M tokens). The
 * paper's values assume ~30B tokens; at 0.6M tokens they leave 70 % of the experts active under
 * threshold:0.48. The sweep in docs/method.md picked these: 31 % active on `small` at +0.4 %
 * perplexity over dense routing. α does not need scaling with depth: L = L_LM + α Σ_layers L_MI
 * gives each layer's router the gradient of its own α·L_MI only.
 */
export const SHORT_RUN_MI_ALPHA_ATT = 3e-3;
export const SHORT_RUN_MI_ALPHA_MLP = 1e-2;
const SHORT_RUN_ALPHA: [number, number] = [SHORT_RUN_MI_ALPHA_ATT, SHORT_RUN_MI_ALPHA_MLP];
export const DEFAULT_TOP_K = 2;
export const DEFAULT_SWITCH_ALPHA = 0.01;
/** The paper's layer-use threshold. */
export const DEFAULT_THRESHOLD = 0.48;

/** A config problem; the message names the field (e.g. `attention.n_heads`). */
/** The `dsmoe train` flag that sets each field, named in errors next to the field. */
export const FIELD_FLAGS: Readonly<Record<string, string>> = {
  preset: '--preset', 'training.mode': '--mode', d_model: '--d-model', n_layers: '--layers', max_seq_len: '--seq-len',
  'attention.n_experts': '--att-experts', 'attention.n_heads': '--att-heads', 'attention.n_kv_heads': '--kv-heads',
  'attention.head_dim': '--head-dim', 'mlp.n_experts': '--mlp-experts', 'mlp.expert_dim': '--expert-dim',
  'training.mi_alpha_att': '--mi-alpha-att', 'training.mi_alpha_mlp': '--mi-alpha-mlp', 'training.top_k': '--top-k',
  router_hidden: '--router-hidden',
};

export class ConfigError extends Error {
  constructor(readonly field: string, message: string, source?: string) {
    const flag = FIELD_FLAGS[field];
    super(`${source ? `${source}: ` : ''}${field}${flag && field !== 'preset' ? ` (${flag})` : ''}: ${message}`);
    this.name = 'ConfigError';
  }
}

// ---------------------------------------------------------------------------------------------
// Presets

export interface PresetTraining {
  /** Sequences per micro-batch. */
  batchSize: number;
  gradAccum: number;
  lr: number;
  /** Default budget when neither --steps, --tokens nor --time is given. */
  steps: number;
}

export interface Preset {
  name: string;
  description: string;
  config: ModelConfig;
  train: PresetTraining;
  /** Whether the vocabulary size is the preset's own (paper shapes: 32000) rather than the default tokenizer's. */
  paperShape: boolean;
}

function routingFor(mode: TrainingMode, topK: number): ModelConfig['routing'] {
  if (mode === 'dense') return { attention: 'dense', mlp: 'dense' };
  if (mode === 'smoe') return { attention: `topk:${topK}`, mlp: `topk:${topK}` };
  return { attention: `threshold:${DEFAULT_THRESHOLD}`, mlp: `threshold:${DEFAULT_THRESHOLD}` };
}

interface Shape {
  vocab: number;
  d: number;
  layers: number;
  seq: number;
  att: [experts: number, heads: number, kvHeads: number, headDim: number];
  mlp: [experts: number, expertDim: number];
  alpha?: [att: number, mlp: number];
}

function makeConfig(s: Shape): ModelConfig {
  const mode: TrainingMode = s.att[0] === 1 && s.mlp[0] === 1 ? 'dense' : 'dsmoe';
  return {
    format_version: FORMAT_VERSION,
    vocab_size: s.vocab,
    d_model: s.d,
    n_layers: s.layers,
    max_seq_len: s.seq,
    norm_eps: 1e-5,
    rope_theta: 10000,
    tie_embeddings: false,
    attention: { n_experts: s.att[0], n_heads: s.att[1], n_kv_heads: s.att[2], head_dim: s.att[3] },
    mlp: { n_experts: s.mlp[0], expert_dim: s.mlp[1], activation: 'gelu' },
    training: {
      mode,
      mi_alpha_att: s.alpha?.[0] ?? DEFAULT_MI_ALPHA_ATT,
      mi_alpha_mlp: s.alpha?.[1] ?? DEFAULT_MI_ALPHA_MLP,
      top_k: DEFAULT_TOP_K,
      switch_alpha: DEFAULT_SWITCH_ALPHA,
    },
    routing: routingFor(mode, DEFAULT_TOP_K),
  };
}

/** Vocabulary of the default tokenizer (src/tokenizer/default.ts); replaced by the tokenizer's size in training. */
const DEFAULT_VOCAB = 4096;
const PAPER_VOCAB = 32000;

const PRESET_LIST: Preset[] = [
  {
    name: 'tiny', description: 'for tests: D 64, 2 layers, 4×2×8 attention experts, 4×64 MLP experts',
    config: makeConfig({ vocab: DEFAULT_VOCAB, d: 64, layers: 2, seq: 64, att: [4, 2, 2, 8], mlp: [4, 64],
      alpha: SHORT_RUN_ALPHA }),
    train: { batchSize: 4, gradAccum: 1, lr: 1e-3, steps: 20 }, paperShape: false,
  },
  {
    name: 'small', description: 'the default; trains in minutes on a 2-core CPU: D 256, 4 layers, 8×2×16 attention, ' +
      '16×64 MLP',
    config: makeConfig({ vocab: DEFAULT_VOCAB, d: 256, layers: 4, seq: 128, att: [8, 2, 2, 16], mlp: [16, 64],
      alpha: SHORT_RUN_ALPHA }),
    train: { batchSize: 16, gradAccum: 1, lr: 1e-3, steps: 300 }, paperShape: false,
  },
  {
    name: 'medium', description: 'D 512, 6 layers, 8×4×16 attention, 16×128 MLP',
    config: makeConfig({ vocab: DEFAULT_VOCAB, d: 512, layers: 6, seq: 256, att: [8, 4, 4, 16], mlp: [16, 128],
      alpha: SHORT_RUN_ALPHA }),
    train: { batchSize: 16, gradAccum: 1, lr: 6e-4, steps: 2000 }, paperShape: false,
  },
  {
    name: 'ds-moe-1b', description: 'paper DS-MoE-1B: D 2048, 24 layers, 16×2×64 attention, 32×256 MLP',
    config: makeConfig({ vocab: PAPER_VOCAB, d: 2048, layers: 24, seq: 2048, att: [16, 2, 2, 64], mlp: [32, 256],
      alpha: [3.5e-4, 6.3e-4] }),
    train: { batchSize: 8, gradAccum: 8, lr: 3e-4, steps: 100000 }, paperShape: true,
  },
  {
    name: 'ds-moe-3b', description: 'paper DS-MoE-3B: D 3072, 28 layers, 8×4×96 attention, 32×384 MLP',
    config: makeConfig({ vocab: PAPER_VOCAB, d: 3072, layers: 28, seq: 2048, att: [8, 4, 4, 96], mlp: [32, 384],
      alpha: [2e-4, 4e-4] }),
    train: { batchSize: 8, gradAccum: 8, lr: 3e-4, steps: 100000 }, paperShape: true,
  },
  {
    name: 'ds-moe-6b', description: 'paper DS-MoE-6B: D 4096, 36 layers, 8×4×128 attention, 32×512 MLP',
    config: makeConfig({ vocab: PAPER_VOCAB, d: 4096, layers: 36, seq: 2048, att: [8, 4, 4, 128], mlp: [32, 512],
      alpha: [2e-4, 2e-4] }),
    train: { batchSize: 8, gradAccum: 8, lr: 3e-4, steps: 100000 }, paperShape: true,
  },
  {
    name: 'dense-1b', description: 'paper Dense-1B: D 2048, 24 layers, 32 query heads over 2 kv heads, F 8192',
    config: makeConfig({ vocab: PAPER_VOCAB, d: 2048, layers: 24, seq: 2048, att: [1, 32, 2, 64], mlp: [1, 8192] }),
    train: { batchSize: 8, gradAccum: 8, lr: 3e-4, steps: 100000 }, paperShape: true,
  },
  {
    name: 'dense-3b', description: 'paper Dense-3B: D 3072, 28 layers, 32 query heads over 4 kv heads, F 12288',
    config: makeConfig({ vocab: PAPER_VOCAB, d: 3072, layers: 28, seq: 2048, att: [1, 32, 4, 96], mlp: [1, 12288] }),
    train: { batchSize: 8, gradAccum: 8, lr: 3e-4, steps: 100000 }, paperShape: true,
  },
  {
    name: 'dense-6b', description: 'paper Dense-6B: D 4096, 36 layers, 32 query heads over 4 kv heads, F 16384',
    config: makeConfig({ vocab: PAPER_VOCAB, d: 4096, layers: 36, seq: 2048, att: [1, 32, 4, 128], mlp: [1, 16384] }),
    train: { batchSize: 8, gradAccum: 8, lr: 3e-4, steps: 100000 }, paperShape: true,
  },
];

export const PRESETS: ReadonlyMap<string, Preset> = new Map(PRESET_LIST.map((p) => [p.name, p]));
export const PRESET_NAMES: readonly string[] = PRESET_LIST.map((p) => p.name);
export const DEFAULT_PRESET = 'small';

export function getPreset(name: string): Preset {
  const p = PRESETS.get(name);
  if (!p) throw new ConfigError('preset', `unknown preset "${name}" (available: ${PRESET_NAMES.join(', ')})`);
  return { ...p, config: cloneConfig(p.config), train: { ...p.train } };
}

export function cloneConfig(c: ModelConfig): ModelConfig {
  return JSON.parse(JSON.stringify(c)) as ModelConfig;
}

// ---------------------------------------------------------------------------------------------
// Modes

/** Largest router_hidden (the native code's limit too). */
export const MAX_ROUTER_HIDDEN = 65536;

/**
 * The config with router_hidden set (0: linear routers, the field left out, as in every config
 * written before it existed); the field sits after tie_embeddings so config.json reads in order.
 */
export function withRouterHidden(c: ModelConfig, h: number): ModelConfig {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(c)) {
    if (k === 'router_hidden') continue;
    out[k] = v;
    if (k === 'tie_embeddings' && h > 0) out.router_hidden = h;
  }
  if (h > 0 && out.router_hidden === undefined) out.router_hidden = h;
  return out as unknown as ModelConfig;
}

/** The dense model of the same width: one attention expert with E·H heads, one MLP of width E·F. */
export function denseCounterpart(c: ModelConfig): ModelConfig {
  const out = withRouterHidden(cloneConfig(c), 0); // one expert per layer: no routers
  out.attention.n_heads = c.attention.n_experts * c.attention.n_heads;
  out.attention.n_experts = 1;
  out.mlp.expert_dim = c.mlp.n_experts * c.mlp.expert_dim;
  out.mlp.n_experts = 1;
  out.training.mode = 'dense';
  out.routing = routingFor('dense', out.training.top_k);
  return out;
}

/** Switches a config to a training mode (dense: the dense counterpart; smoe: top-2, switch α 0.01). */
export function applyMode(c: ModelConfig, mode: string, presetName?: string): ModelConfig {
  if (!(MODES as readonly string[]).includes(mode))
    throw new ConfigError('training.mode', `unknown mode "${mode}" (expected one of ${MODES.join(', ')})`);
  const m = mode as TrainingMode;
  const isDense = c.attention.n_experts === 1 && c.mlp.n_experts === 1;
  if (m === 'dense') return isDense ? { ...cloneConfig(c), training: { ...c.training, mode: 'dense' },
    routing: routingFor('dense', c.training.top_k) } : denseCounterpart(c);
  if (isDense)
    throw new ConfigError('training.mode', `mode ${m} needs experts, but ` +
      `${presetName ? `preset ${presetName}` : 'this config'} has one expert per layer`
      + (presetName?.startsWith('dense-')
        ? ` (use ${presetName.replace('dense-', 'ds-moe-')} for the MoE shape)` : ''));
  const out = cloneConfig(c);
  out.training.mode = m;
  if (m === 'smoe') {
    out.training.top_k = DEFAULT_TOP_K;
    out.training.switch_alpha = DEFAULT_SWITCH_ALPHA;
  }
  out.routing = routingFor(m, out.training.top_k);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Validation

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

const TOP_FIELDS = ['format_version', 'vocab_size', 'd_model', 'n_layers', 'max_seq_len', 'norm_eps', 'rope_theta',
  'tie_embeddings',
  'router_hidden', 'attention', 'mlp', 'training', 'routing'];
const SUB_FIELDS: Record<string, string[]> = {
  attention: ['n_experts', 'n_heads', 'n_kv_heads', 'head_dim'],
  mlp: ['n_experts', 'expert_dim', 'activation'],
  training: ['mode', 'mi_alpha_att', 'mi_alpha_mlp', 'top_k', 'switch_alpha'],
  routing: ['attention', 'mlp'],
};

/** Largest number of elements in one tensor (native code indexes with 32-bit ints per tensor row block). */
export const MAX_TENSOR_ELEMENTS = 2 ** 31 - 1;

/**
 * Checks a config object field by field and returns it typed. Errors are ConfigErrors naming the
 * field; `source` (e.g. a file path) prefixes the message. Unknown fields are errors (typos).
 */
export function validateConfig(value: unknown, source?: string): ModelConfig {
  const fail = (field: string, msg: string): never => {
    throw new ConfigError(field, msg, source);
  };
  if (!isObj(value)) fail('config', 'must be a JSON object');
  const c = value as Record<string, unknown>;
  for (const k of Object.keys(c)) if (!TOP_FIELDS.includes(k)) fail(k,
    `unknown field (known: ${TOP_FIELDS.join(', ')})`);
  for (const [sub, fields] of Object.entries(SUB_FIELDS)) {
    if (!isObj(c[sub])) fail(sub, c[sub] === undefined ? 'missing' : 'must be an object');
    for (const k of Object.keys(c[sub] as object)) if (!fields.includes(k)) fail(`${sub}.${k}`,
      `unknown field (known: ${fields.join(', ')})`);
  }
  const get = (field: string): unknown => {
    const [a, b] = field.split('.');
    return b === undefined ? c[a] : (c[a] as Record<string, unknown>)[b];
  };
  const int = (field: string, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const v = get(field);
    if (v === undefined) fail(field, 'missing');
    if (typeof v !== 'number' || !Number.isInteger(v)) fail(field, `must be an integer, got ${JSON.stringify(v)}`);
    const n = v as number;
    if (n < min || n > max) fail(field, `must be ` +
      `${max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `in ${min}..${max}`}, got ${n}`);
    return n;
  };
  const num = (field: string, min: number, exclusive: boolean): number => {
    const v = get(field);
    if (v === undefined) fail(field, 'missing');
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(field, `must be a finite number, got ${JSON.stringify(v)}`);
    const n = v as number;
    if (exclusive ? !(n > min) : !(n >= min)) fail(field, `must be ${exclusive ? '>' : '≥'} ${min}, got ${n}`);
    return n;
  };

  const version = int('format_version', 1);
  if (version > FORMAT_VERSION) fail('format_version', `${version} is newer than this dsmoe understands ` +
    `(${FORMAT_VERSION}); upgrade dsmoe`);
  const vocab = int('vocab_size', 2, 2 ** 31 - 1);
  const d = int('d_model', 1, 1 << 20);
  int('n_layers', 1, 4096);
  int('max_seq_len', 1, 1 << 20);
  num('norm_eps', 0, true);
  num('rope_theta', 0, true);
  if (c.tie_embeddings === undefined) fail('tie_embeddings', 'missing');
  if (typeof c.tie_embeddings !== 'boolean') fail('tie_embeddings', `must be true or false, got ` +
    `${JSON.stringify(c.tie_embeddings)}`);

  const eAtt = int('attention.n_experts', 1, 4096);
  const h = int('attention.n_heads', 1, 4096);
  const g = int('attention.n_kv_heads', 1, 4096);
  const dh = int('attention.head_dim', 2, 4096);
  if (dh % 2 !== 0) fail('attention.head_dim', `must be even (RoPE rotates pairs of dimensions), got ${dh}`);
  if (h % g !== 0) fail('attention.n_heads', `${h} query heads per expert cannot be shared evenly over ${g} kv heads ` +
    `(attention.n_kv_heads): n_heads must be a multiple of n_kv_heads`);
  const eMlp = int('mlp.n_experts', 1, 4096);
  const f = int('mlp.expert_dim', 1, 1 << 24);
  const act = get('mlp.activation');
  if (!(ACTIVATIONS as readonly unknown[]).includes(act)) fail('mlp.activation',
    `unknown activation ${JSON.stringify(act)} (expected ${ACTIVATIONS.join(' or ')})`);

  const mode = get('training.mode');
  if (!(MODES as readonly unknown[]).includes(mode)) fail('training.mode',
    `unknown mode ${JSON.stringify(mode)} (expected one of ${MODES.join(', ')})`);
  num('training.mi_alpha_att', 0, false);
  num('training.mi_alpha_mlp', 0, false);
  num('training.switch_alpha', 0, false);
  const topK = int('training.top_k', 1, 4096);
  if (mode === 'dense' && (eAtt !== 1 || eMlp !== 1))
    fail(eAtt !== 1 ? 'attention.n_experts' : 'mlp.n_experts', `mode dense needs one expert per layer, got ` +
      `${eAtt !== 1 ? eAtt : eMlp}`);
  if (mode !== 'dense') {
    if (eAtt === 1 && eMlp === 1) fail('training.mode', `mode ${mode} needs experts, but every layer has one (use ` +
      `mode dense)`);
    if (eAtt > 1 && topK > eAtt) fail('training.top_k', `${topK} is more than the ${eAtt} attention experts ` +
      `(attention.n_experts)`);
    if (eMlp > 1 && topK > eMlp) fail('training.top_k', `${topK} is more than the ${eMlp} MLP experts (mlp.n_experts)`);
  }
  // Optional (configs before two-layer routers lack it): 0 or absent = linear routers.
  const rh = c.router_hidden === undefined ? 0 : int('router_hidden', 0, MAX_ROUTER_HIDDEN);
  if (rh > 0 && eAtt === 1 && eMlp === 1)
    fail('router_hidden', `${rh} is set, but every layer has one expert and so no router (leave it out or use 0)`);
  const ra = strategyError(get('routing.attention'), eAtt);
  if (ra) fail('routing.attention', ra);
  const rm = strategyError(get('routing.mlp'), eMlp);
  if (rm) fail('routing.mlp', rm);

  const sizes: Array<[string, number]> = [
    ['embed.weight', vocab * d], ['attn.q_proj', eAtt * h * dh * d], ['attn.k_proj', g * dh * d],
    ['mlp.up_proj', eMlp * f * d], ['router.hidden', rh * d],
  ];
  const fieldOf = (name: string) => name.startsWith('embed') ? 'vocab_size' : name.startsWith('attn') ? 'attention'
    : name.startsWith('router') ? 'router_hidden' : 'mlp';
  for (const [name, n] of sizes)
    if (n > MAX_TENSOR_ELEMENTS)
      fail(fieldOf(name), `the ${name} tensor would have ${n} elements, more than ${MAX_TENSOR_ELEMENTS}`);
  return withRouterHidden(cloneConfig(c as unknown as ModelConfig), rh);
}

// ---------------------------------------------------------------------------------------------
// Building a config: preset → config file → mode → per-field overrides → vocabulary

export interface ConfigOverrides {
  d_model?: number;
  n_layers?: number;
  att_experts?: number;
  att_heads?: number;
  kv_heads?: number;
  head_dim?: number;
  mlp_experts?: number;
  expert_dim?: number;
  seq_len?: number;
  mi_alpha_att?: number;
  mi_alpha_mlp?: number;
  top_k?: number;
  tie_embeddings?: boolean;
  /** Two-layer routers of this hidden width (0: linear). */
  router_hidden?: number;
}

export interface BuildConfigOptions {
  preset?: string;
  mode?: string;
  /** A (possibly partial) config.json object, deep-merged over the preset. */
  file?: unknown;
  /** Names the file in errors. */
  fileName?: string;
  overrides?: ConfigOverrides;
  /** The tokenizer's vocabulary: used unless the config file sets a larger vocab_size (padding). */
  tokenizerVocab?: number;
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = isObj(v) && isObj(base[k])
    ? deepMerge(base[k] as Record<string, unknown>, v) : v;
  return out;
}

export function buildConfig(opts: BuildConfigOptions): ModelConfig {
  const preset = getPreset(opts.preset ?? DEFAULT_PRESET);
  let cfg: Record<string, unknown> = preset.config as unknown as Record<string, unknown>;
  let fileVocab: number | undefined;
  if (opts.file !== undefined) {
    if (!isObj(opts.file)) throw new ConfigError('config', 'must be a JSON object', opts.fileName);
    cfg = deepMerge(cfg, opts.file);
    if (opts.file.vocab_size !== undefined) fileVocab = opts.file.vocab_size as number;
  }
  // The mode is applied as a transformation (dense: the dense counterpart), so validate the merged
  // shape under the mode that fits it, then switch to the mode asked for (flag, else the file's).
  const fileMode = isObj(opts.file) && isObj(opts.file.training) ? opts.file.training.mode : undefined;
  const requested = opts.mode ?? (fileMode as string | undefined);
  if (requested !== undefined && isObj(cfg.training) && isObj(cfg.attention) && isObj(cfg.mlp)) {
    const oneExpert = cfg.attention.n_experts === 1 && cfg.mlp.n_experts === 1;
    cfg = { ...cfg, training: { ...cfg.training, mode: oneExpert ? 'dense' : 'dsmoe' } };
  }
  let c = validateConfig(cfg, opts.fileName);
  if (requested !== undefined) c = applyMode(c, requested, opts.file === undefined ? preset.name : undefined);
  const o = opts.overrides ?? {};
  if (o.d_model !== undefined) c.d_model = o.d_model;
  if (o.n_layers !== undefined) c.n_layers = o.n_layers;
  if (o.att_experts !== undefined) c.attention.n_experts = o.att_experts;
  if (o.att_heads !== undefined) c.attention.n_heads = o.att_heads;
  if (o.kv_heads !== undefined) c.attention.n_kv_heads = o.kv_heads;
  if (o.head_dim !== undefined) c.attention.head_dim = o.head_dim;
  if (o.mlp_experts !== undefined) c.mlp.n_experts = o.mlp_experts;
  if (o.expert_dim !== undefined) c.mlp.expert_dim = o.expert_dim;
  if (o.seq_len !== undefined) c.max_seq_len = o.seq_len;
  if (o.mi_alpha_att !== undefined) c.training.mi_alpha_att = o.mi_alpha_att;
  if (o.mi_alpha_mlp !== undefined) c.training.mi_alpha_mlp = o.mi_alpha_mlp;
  if (o.top_k !== undefined) {
    c.training.top_k = o.top_k;
    if (c.training.mode === 'smoe') c.routing = routingFor('smoe', o.top_k);
  }
  if (o.tie_embeddings !== undefined) c.tie_embeddings = o.tie_embeddings;
  if (o.router_hidden !== undefined) c = withRouterHidden(c, o.router_hidden);
  if (opts.tokenizerVocab !== undefined) {
    if (fileVocab !== undefined && fileVocab < opts.tokenizerVocab)
      throw new ConfigError('vocab_size', `${fileVocab} is smaller than the tokenizer's vocabulary ` +
        `(${opts.tokenizerVocab})`, opts.fileName);
    c.vocab_size = fileVocab ?? opts.tokenizerVocab;
  }
  // Routing strategies may name more experts than a shrunken layer now has: fall back to the mode's default.
  if (strategyError(c.routing.attention, c.attention.n_experts) || strategyError(c.routing.mlp, c.mlp.n_experts))
    c.routing = routingFor(c.training.mode, Math.min(c.training.top_k, c.attention.n_experts, c.mlp.n_experts));
  return validateConfig(c, opts.fileName);
}

/** Whether two configs describe the same parameter tensors (training options and routing may differ). */
export function sameShape(a: ModelConfig, b: ModelConfig): boolean {
  return a.vocab_size === b.vocab_size && a.d_model === b.d_model && a.n_layers === b.n_layers &&
    a.tie_embeddings === b.tie_embeddings
    && a.attention.n_experts === b.attention.n_experts && a.attention.n_heads === b.attention.n_heads
    && a.attention.n_kv_heads === b.attention.n_kv_heads && a.attention.head_dim === b.attention.head_dim
    && a.mlp.n_experts === b.mlp.n_experts && a.mlp.expert_dim === b.mlp.expert_dim
    && (a.router_hidden ?? 0) === (b.router_hidden ?? 0);
}

/** The shape fields in which a (e.g. a checkpoint's config) differs from b, as "field A (checkpoint) vs B". */
export function shapeDifferences(a: ModelConfig, b: ModelConfig): string[] {
  const rows: Array<[string, unknown, unknown]> = [
    ['vocab_size', a.vocab_size, b.vocab_size], ['d_model', a.d_model, b.d_model], ['n_layers', a.n_layers, b.n_layers],
    ['tie_embeddings', a.tie_embeddings, b.tie_embeddings],
    ['attention.n_experts', a.attention.n_experts, b.attention.n_experts],
    ['attention.n_heads', a.attention.n_heads, b.attention.n_heads],
    ['attention.n_kv_heads', a.attention.n_kv_heads, b.attention.n_kv_heads],
    ['attention.head_dim', a.attention.head_dim, b.attention.head_dim],
    ['mlp.n_experts', a.mlp.n_experts, b.mlp.n_experts], ['mlp.expert_dim', a.mlp.expert_dim, b.mlp.expert_dim],
    ['router_hidden', a.router_hidden ?? 0, b.router_hidden ?? 0],
  ];
  return rows.filter(([, x, y]) => x !== y).map(([k, x, y]) => `${k} ${x} (checkpoint) vs ${y}`);
}

/** A one-line description of a config's shape. */
export function describeShape(c: ModelConfig): string {
  const a = c.attention, m = c.mlp;
  return `D ${c.d_model}, ${c.n_layers} layers, attention ${a.n_experts}×${a.n_heads}×${a.head_dim} (kv ` +
    `${a.n_kv_heads}), `
    + `MLP ${m.n_experts}×${m.expert_dim}, ${c.router_hidden ? `two-layer routers (hidden ${c.router_hidden}), ` : ''}`
    + `vocab ${c.vocab_size}, seq ${c.max_seq_len}, mode ${c.training.mode}`;
}

// ---------------------------------------------------------------------------------------------
// Parameter counts

export interface LayerParamCount {
  attnNorm: number;
  attnRouter: number;
  qProj: number;
  kProj: number;
  vProj: number;
  oProj: number;
  mlpNorm: number;
  mlpRouter: number;
  upProj: number;
  downProj: number;
  total: number;
}

export interface ParamCount {
  total: number;
  /** Everything but embed.weight and lm_head.weight. */
  nonEmbedding: number;
  embedding: number;
  /** 0 when tied. */
  lmHead: number;
  finalNorm: number;
  perLayer: LayerParamCount;
  /** Summed over layers. */
  attention: number;
  mlp: number;
  routers: number;
  norms: number;
  /** Expert weights (q/o of attention experts, up/down of MLP experts) over all layers. */
  expertParams: number;
}

export function paramCount(c: ModelConfig): ParamCount {
  const D = c.d_model, L = c.n_layers, V = c.vocab_size;
  const { n_experts: Ea, n_heads: H, n_kv_heads: G, head_dim: dh } = c.attention;
  const { n_experts: Em, expert_dim: F } = c.mlp;
  const Rh = c.router_hidden ?? 0;
  // Linear: E·D. Two-layer: hidden [h, D] + output [E, h].
  const router = (E: number) => (E === 1 ? 0 : Rh > 0 ? Rh * D + E * Rh : E * D);
  const l: LayerParamCount = {
    attnNorm: D,
    attnRouter: router(Ea),
    qProj: Ea * H * dh * D,
    kProj: G * dh * D,
    vProj: G * dh * D,
    oProj: Ea * D * H * dh,
    mlpNorm: D,
    mlpRouter: router(Em),
    upProj: Em * F * D,
    downProj: Em * D * F,
    total: 0,
  };
  l.total = l.attnNorm + l.attnRouter + l.qProj + l.kProj + l.vProj + l.oProj + l.mlpNorm + l.mlpRouter + l.upProj +
    l.downProj;
  const embedding = V * D;
  const lmHead = c.tie_embeddings ? 0 : V * D;
  const finalNorm = D;
  const nonEmbedding = L * l.total + finalNorm;
  return {
    total: nonEmbedding + embedding + lmHead,
    nonEmbedding, embedding, lmHead, finalNorm, perLayer: l,
    attention: L * (l.attnRouter + l.qProj + l.kProj + l.vProj + l.oProj),
    mlp: L * (l.mlpRouter + l.upProj + l.downProj),
    routers: L * (l.attnRouter + l.mlpRouter),
    norms: L * (l.attnNorm + l.mlpNorm) + finalNorm,
    expertParams: L * (l.qProj + l.oProj + l.upProj + l.downProj),
  };
}

/** 1234567 → "1.23M". */
export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}
