// `dsmoe info`: what a checkpoint folder holds, read from config.json, the safetensors headers and
// trainer_state.json only (no weights are loaded, so it is quick on any size). Everything read is
// validated as loadCheckpoint does: config.json field by field, each header against the layout.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { activeParams, type ActiveParams } from '../model/active';
import { paramCount, validateConfig, type ModelConfig } from '../model/config';
import { layoutFromConfig } from '../model/layout';
import { checkQuantizedHeader, type QuantizedLayout } from './quant';
import {
  CONFIG_FILE, MODEL_FILE, OPTIMIZER_FILE, TOKENIZER_FILE, TRAINER_STATE_FILE, checkTensors, readJsonFile,
  validateTrainerState,
  type LossRecord,
} from './checkpoint';
import { SafetensorsReader } from './safetensors';

export interface FileInfo {
  name: string;
  bytes: number;
  /** safetensors files: tensors per dtype. */
  dtypes?: Record<string, number>;
  tensors?: number;
}

export interface CheckpointInfo {
  dir: string;
  kind: 'training' | 'inference';
  mode: string;
  shape: {
    layers: number; d_model: number; vocab_size: number; max_seq_len: number; tie_embeddings: boolean;
    attention: { experts: number; heads_per_expert: number; kv_heads: number; head_dim: number };
    mlp: { experts: number; expert_dim: number; activation: string };
    /** Hidden width of the two-layer routers; 0 = linear routers. */
    router_hidden: number;
  };
  params: {
    total: number; non_embedding: number; embedding: number; lm_head: number; norms: number;
    attention: { q: number; k: number; v: number; o: number; router: number };
    mlp: { up: number; down: number; router: number };
    /** q/o/up/down over all layers */
    experts: number;
  };
  /** config.json's default routing and the active parameters it implies. */
  active: ActiveParams;
  /** dtype of model.safetensors ('mixed' when its tensors differ; 'int8' / 'q4' when quantized). */
  dtype: string;
  /** how many weight tensors are quantized (with a scale tensor each; docs/format.md) */
  quantized_tensors?: number;
  files: FileInfo[];
  bytes: number;
  training?: {
    step: number; tokens_seen: number; elapsed_s: number;
    last_losses: LossRecord[];
    last_eval: { step: number; loss: number; ppl: number } | null;
    optimizer_state: boolean;
  };
}

function safetensorsInfo(file: string, check: (r: SafetensorsReader) => void): FileInfo {
  const r = SafetensorsReader.open(file);
  try {
    check(r);
    const dtypes: Record<string, number> = {};
    for (const t of r.header.tensors) dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
    return { name: path.basename(file), bytes: fs.statSync(file).size, dtypes, tensors: r.header.tensors.length };
  } finally {
    r.close();
  }
}

/** Reads a checkpoint folder's description; throws a clear Error (naming the file) on anything wrong. */
export function checkpointInfo(dir: string): CheckpointInfo {
  const abs = path.resolve(dir);
  if (!fs.existsSync(abs)) throw new Error(`checkpoint folder not found: ${dir}`);
  if (!fs.statSync(abs).isDirectory()) throw new Error(`checkpoint ${dir} is not a folder`);
  const cfgFile = path.join(abs, CONFIG_FILE);
  if (!fs.existsSync(cfgFile)) throw new Error(`${dir} is not a checkpoint: it has no ${CONFIG_FILE}`);
  const config: ModelConfig = validateConfig(readJsonFile(cfgFile, 'config'), cfgFile);
  const layout = layoutFromConfig(config);
  const modelFile = path.join(abs, MODEL_FILE);
  if (!fs.existsSync(modelFile)) throw new Error(`checkpoint ${dir} has no ${MODEL_FILE}`);

  const files: FileInfo[] = [];
  let quant: QuantizedLayout | undefined;
  const model = safetensorsInfo(modelFile, (r) => { quant = checkQuantizedHeader(r.header, layout, modelFile); });
  const optFile = path.join(abs, OPTIMIZER_FILE), stateFile = path.join(abs, TRAINER_STATE_FILE);
  const hasOpt = fs.existsSync(optFile);
  const state = fs.existsSync(stateFile) ? validateTrainerState(readJsonFile(stateFile, 'trainer state'), stateFile)
    : undefined;
  if (hasOpt && !state) throw new Error(`checkpoint ${dir} is incomplete: it has ${OPTIMIZER_FILE} but no ` +
    `${TRAINER_STATE_FILE}`);
  if (state && !hasOpt && state.step !== 0) throw new Error(`checkpoint ${dir} is incomplete: it has ` +
    `${TRAINER_STATE_FILE} (step ${state.step}) but no ${OPTIMIZER_FILE}`);
  for (const name of [CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE, OPTIMIZER_FILE, TRAINER_STATE_FILE]) {
    const f = path.join(abs, name);
    if (!fs.existsSync(f)) continue;
    if (name === MODEL_FILE) files.push(model);
    else if (name === OPTIMIZER_FILE) files.push(safetensorsInfo(f, (r) => checkTensors(r, layout, ['m.', 'v.'], f,
      true)));
    else files.push({ name, bytes: fs.statSync(f).size });
  }
  const dtypes = Object.keys(model.dtypes ?? {});
  const p = paramCount(config), L = config.n_layers, l = p.perLayer;
  const a = config.attention, m = config.mlp;
  return {
    dir: abs, kind: state ? 'training' : 'inference', mode: config.training.mode,
    shape: {
      layers: L, d_model: config.d_model, vocab_size: config.vocab_size, max_seq_len: config.max_seq_len,
      tie_embeddings: config.tie_embeddings,
      attention: { experts: a.n_experts, heads_per_expert: a.n_heads, kv_heads: a.n_kv_heads, head_dim: a.head_dim },
      mlp: { experts: m.n_experts, expert_dim: m.expert_dim, activation: m.activation },
      router_hidden: config.router_hidden ?? 0,
    },
    params: {
      total: p.total, non_embedding: p.nonEmbedding, embedding: p.embedding, lm_head: p.lmHead, norms: p.norms,
      attention: { q: L * l.qProj, k: L * l.kProj, v: L * l.vProj, o: L * l.oProj, router: L * l.attnRouter },
      mlp: { up: L * l.upProj, down: L * l.downProj, router: L * l.mlpRouter },
      experts: p.expertParams,
    },
    active: activeParams(config),
    // A quantized file's dtype is its quantization (its tensor dtypes are listed per file).
    dtype: quant ? quant.kind : dtypes.length === 1 ? dtypes[0] : dtypes.length === 0 ? 'none' : 'mixed',
    ...(quant ? { quantized_tensors: quant.quantized.size } : {}),
    files, bytes: files.reduce((s, f) => s + f.bytes, 0),
    ...(state ? {
      training: {
        step: state.step, tokens_seen: state.tokens_seen, elapsed_s: state.elapsed_s, last_losses: state.last_losses,
        last_eval: state.last_eval, optimizer_state: hasOpt,
      },
    } : {}),
  };
}

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0, x = n;
  while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
  return i === 0 ? `${n} B` : `${x.toFixed(x >= 100 ? 0 : x >= 10 ? 1 : 2)} ${units[i]}`;
}
