// A checkpoint folder (training or inference; DESIGN.md §3) opened for inference: the validated
// config, the tokenizer, and native sessions created from the memory-mapped model.safetensors
// (F32 / BF16 tensors are used in place, never copied). F16 tensors, which the engine does not
// read, are converted once into an fp32 copy in memory (with a note saying so).
//
// Everything is checked before the engine sees it: config.json against the schema, the
// safetensors header (ranges, dtypes, overlaps) and every tensor's name and shape against the
// config's layout. Errors are one line naming the file at fault.
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE, TRAINER_STATE_FILE, allocParams, recoverInterruptedSave, validateTrainerState,
  type TrainerState,
} from '../checkpoint/checkpoint';
import { SafetensorsReader, readSafetensorsHeader, type SafetensorsHeader } from '../checkpoint/safetensors';
import { validateConfig } from '../model/config';
import { layoutFromConfig, type ModelLayout } from '../model/layout';
import { loadAddon, type InferenceSession, type ModelConfig } from '../native/addon';
import { loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer';
import type { Routing } from '../model/routing';

export interface InferenceModel {
  dir: string;
  config: ModelConfig;
  layout: ModelLayout;
  tokenizer: Tokenizer;
  tokenizerPath: string;
  modelFile: string;
  /** dtype of the stored weights ('mixed' when tensors differ) */
  dtype: string;
  /** true when the weights were converted into memory (F16), false when the file is mapped */
  inMemory: boolean;
  /** things the user should know (conversions, recovered saves) */
  notes: string[];
  /** A session over the model's weights; maxLen defaults to config.max_seq_len. */
  createSession(opts: { batch: number; maxLen?: number; routing: Routing }): InferenceSession;
  /** trainer_state.json when present (checked; throws naming the file when invalid). */
  trainerState(): TrainerState | undefined;
}

export interface LoadInferenceOptions {
  /** tokenizer.json to use instead of the checkpoint's */
  tokenizer?: string;
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

/** The header's tensors must be exactly the layout's, with the layout's shapes. */
function checkTensors(h: SafetensorsHeader, layout: ModelLayout, file: string): void {
  const byName = new Map(h.tensors.map((t) => [t.name, t]));
  for (const t of layout.tensors) {
    const e = byName.get(t.name);
    if (!e) throw new Error(`${file}: tensor "${t.name}" is missing (config.json's layout needs it)`);
    if (e.shape.join(',') !== t.shape.join(','))
      throw new Error(`${file}: tensor "${t.name}" has shape [${e.shape.join(', ')}], config.json's layout needs [${t.shape.join(', ')}]`);
  }
  const expected = new Set(layout.tensors.map((t) => t.name));
  for (const t of h.tensors) if (!expected.has(t.name)) throw new Error(`${file}: unexpected tensor "${t.name}" (not in the layout of config.json)`);
}

/** Opens a checkpoint folder for inference (see the file comment). */
export function loadInferenceModel(dir: string, opts: LoadInferenceOptions = {}): InferenceModel {
  const abs = path.resolve(dir);
  const notes: string[] = [];
  const recovered = recoverInterruptedSave(abs);
  if (recovered) notes.push(`completed an interrupted save: restored ${recovered} as ${abs}`);
  if (!fs.existsSync(abs)) throw new Error(`checkpoint folder not found: ${dir}`);
  if (!fs.statSync(abs).isDirectory()) throw new Error(`checkpoint ${dir} is not a folder`);
  const cfgFile = path.join(abs, CONFIG_FILE);
  if (!fs.existsSync(cfgFile)) throw new Error(`checkpoint ${dir} has no ${CONFIG_FILE} (is it a dsmoe checkpoint folder?)`);
  const config = validateConfig(readJson(cfgFile), cfgFile);
  const layout = layoutFromConfig(config);

  const modelFile = path.join(abs, MODEL_FILE);
  if (!fs.existsSync(modelFile)) throw new Error(`checkpoint ${dir} has no ${MODEL_FILE}`);
  const header = readSafetensorsHeader(modelFile);
  checkTensors(header, layout, modelFile);
  const dtypes = new Set(header.tensors.map((t) => t.dtype));
  const dtype = dtypes.size === 1 ? [...dtypes][0] : 'mixed';

  const tokFile = opts.tokenizer ?? path.join(abs, TOKENIZER_FILE);
  if (!opts.tokenizer && !fs.existsSync(tokFile)) throw new Error(`checkpoint ${dir} has no ${TOKENIZER_FILE}; give one with --tokenizer FILE`);
  const tokenizer = loadTokenizer(tokFile);
  if (tokenizer.vocabSize > config.vocab_size)
    throw new Error(`the tokenizer ${tokFile} has ${tokenizer.vocabSize} tokens, more than the model's vocab_size ${config.vocab_size}`);

  const addon = loadAddon();
  // F16 is not an engine dtype: the whole model goes to fp32 in memory, once.
  let weights: Float32Array | undefined;
  if (dtypes.has('F16')) {
    weights = allocParams(layout.totalParams, 'the fp32 copy of the F16 weights');
    const r = SafetensorsReader.open(modelFile);
    try {
      for (const t of layout.tensors) r.readFloat32Into(t.name, weights.subarray(t.offset, t.offset + t.size));
    } finally {
      r.close();
    }
    notes.push(`${MODEL_FILE} stores F16 tensors, which the engine does not read: converted once to fp32 in memory (${(weights.byteLength / 2 ** 20).toFixed(1)} MiB)`);
  }
  const tensors = header.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, begin: t.begin, end: t.end }));

  return {
    dir: abs, config, layout, tokenizer, tokenizerPath: path.resolve(tokFile), modelFile, dtype, inMemory: weights !== undefined, notes,
    createSession({ batch, maxLen, routing }) {
      const base = { config, batch, maxLen, routing };
      if (weights) return addon.createSession({ ...base, weights });
      try {
        return addon.createSessionFromFile({ ...base, path: modelFile, tensors, dataOffset: header.dataStart });
      } catch (e) {
        const msg = (e as Error).message;
        throw new Error(msg.includes(modelFile) ? msg : `${modelFile}: ${msg}`);
      }
    },
    trainerState() {
      const f = path.join(abs, TRAINER_STATE_FILE);
      return fs.existsSync(f) ? validateTrainerState(readJson(f), f) : undefined;
    },
  };
}
