// `dsmoe convert <in> <out>`: a training (or inference) checkpoint → a lean inference checkpoint:
// config.json (with the chosen default routing), model.safetensors in bf16/f16/f32 or quantized
// (int8, q4: docs/format.md), tokenizer.json.
// Optimizer and trainer state are dropped. Written with saveCheckpoint's atomic folder swap.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CONFIG_FILE, loadCheckpoint, saveCheckpoint, type LoadedCheckpoint } from '../checkpoint/checkpoint';
import { type Dtype } from '../checkpoint/safetensors';
import { quantizedTensors, type QuantKind } from '../checkpoint/quant';
import { validateConfig, type ModelConfig } from '../model/config';
import { parseRouting } from '../model/routing';

export const DTYPES: Readonly<Record<string, Dtype>> = { bf16: 'BF16', f16: 'F16', f32: 'F32' };
/** The dtypes --dtype takes: the float ones and the quantized ones. */
export type ConvertDtype = Dtype | QuantKind;
const F16_MAX = 65504;

export interface ConvertOptions {
  /** bf16 (default), f16, f32, int8 or q4. */
  dtype?: string;
  /** `attention=S,mlp=S`: default routing stored in config.json. */
  routing?: string;
  force?: boolean;
}

export interface ConvertResult {
  input: string;
  out: string;
  dtype: ConvertDtype;
  routing: { attention: string; mlp: string };
  /** Bytes of the input folder's files and of its model.safetensors. */
  bytesBefore: number;
  modelBytesBefore: number;
  bytesAfter: number;
  modelBytesAfter: number;
  dropped: string[];
  notes: string[];
}

/** Bytes of the regular files directly inside a folder. */
export function folderBytes(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isFile()) n += fs.statSync(path.join(dir,
    e.name)).size;
  return n;
}

export function parseDtype(s: string | undefined): ConvertDtype {
  const v = (s ?? 'bf16').toLowerCase();
  if (v === 'int8' || v === 'q4') return v;
  const d = DTYPES[v];
  if (!d) throw new Error(`--dtype: unknown dtype "${s}" (expected bf16, f16, f32, int8 or q4)`);
  return d;
}

/**
 * Checks where a converted checkpoint may be written: not the input folder, and an existing folder
 * only with --force and only when it is a checkpoint or empty (never some other folder's files).
 */
export function checkOutput(input: string, out: string, force: boolean | undefined): void {
  const real = (p: string) => { try { return fs.realpathSync(p); } catch { return path.resolve(p); } };
  if (real(input) === real(out)) throw new Error(`the output ${out} is the input folder; convert writes a new ` +
    `checkpoint (give another folder)`);
  if (!fs.existsSync(out)) return;
  if (!force) throw new Error(`${out} already exists; add --force to overwrite it`);
  if (!fs.statSync(out).isDirectory()) throw new Error(`${out} exists and is not a folder; not overwriting it`);
  if (!fs.existsSync(path.join(out, CONFIG_FILE)) && fs.readdirSync(out).length > 0)
    throw new Error(`${out} exists and is not a checkpoint folder (no ${CONFIG_FILE}); not overwriting it, even with ` +
      `--force`);
}

/** Throws when fp16 cannot hold a value (it would become infinite). */
function checkF16Range(ck: LoadedCheckpoint): void {
  for (const t of ck.layout.tensors) {
    for (let i = t.offset; i < t.offset + t.size; i++)
      if (Math.abs(ck.params[i]) > F16_MAX)
        throw new Error(`tensor "${t.name}" holds ${ck.params[i]}, beyond fp16's range (±${F16_MAX}); use --dtype ` +
          `bf16 or f32`);
  }
}

export function readTokenizerJson(ck: LoadedCheckpoint, notes: string[]): string | undefined {
  if (!ck.tokenizerPath) {
    notes.push(`${ck.dir} has no tokenizer.json; the converted checkpoint has none either`);
    return undefined;
  }
  const text = fs.readFileSync(ck.tokenizerPath, 'utf8');
  try {
    JSON.parse(text);
  } catch (e) {
    throw new Error(`${ck.tokenizerPath}: not valid JSON (${(e as Error).message})`);
  }
  return text;
}

export function convertCheckpoint(input: string, out: string, o: ConvertOptions = {}): ConvertResult {
  const dtype = parseDtype(o.dtype);
  checkOutput(input, out, o.force);
  const ck = loadCheckpoint(input, { optimizer: false });
  const config: ModelConfig = validateConfig({ ...ck.config, routing: o.routing !== undefined
    ? parseRouting(o.routing, ck.config) : ck.config.routing });
  if (dtype === 'F16') checkF16Range(ck);
  const notes: string[] = [];
  const tokenizerJson = readTokenizerJson(ck, notes);
  const modelBytesBefore = fs.statSync(path.join(ck.dir, 'model.safetensors')).size;
  const bytesBefore = folderBytes(ck.dir);
  const dropped = ['optimizer.safetensors', 'trainer_state.json'].filter((f) => fs.existsSync(path.join(ck.dir, f)));
  const metadata: Record<string, string> = { converted_from: path.basename(ck.dir) };
  if (ck.trainerState) metadata.step = String(ck.trainerState.step);
  else if (ck.metadata.step !== undefined) metadata.step = ck.metadata.step;
  if (dtype === 'int8' || dtype === 'q4') {
    const q = quantizedTensors(ck.layout, ck.params, dtype);
    notes.push(...q.notes);
    saveCheckpoint(out, { config, params: ck.params, tokenizerJson, modelTensors: q.tensors,
      metadata: { ...metadata, quantization: dtype } });
  } else {
    saveCheckpoint(out, { config, params: ck.params, tokenizerJson, dtype, metadata });
  }
  return {
    input: ck.dir, out: path.resolve(out), dtype, routing: config.routing, bytesBefore, modelBytesBefore,
    bytesAfter: folderBytes(out), modelBytesAfter: fs.statSync(path.join(out, 'model.safetensors')).size, dropped,
    notes,
  };
}
