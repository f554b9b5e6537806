// A checkpoint folder (training or inference; DESIGN.md §3) opened for inference: the validated
// config, the tokenizer, and the weights opened once in the engine (openWeights: model.safetensors
// memory-mapped, F32 / BF16 tensors used in place, never copied), from which any number of
// sessions are created, each with its own KV cache and routing. F16 tensors, which the engine does
// not read, are converted once into an fp32 copy in memory (with a note saying so).
//
// Everything is checked before the engine sees it: config.json against the schema, the
// safetensors header (ranges, dtypes, overlaps) and every tensor's name and shape against the
// config's layout. Errors are one line naming the file at fault.
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE, TRAINER_STATE_FILE, allocParams, readJsonFile, recoverInterruptedSave,
  validateTrainerState, type TrainerState,
} from '../checkpoint/checkpoint';
import { SafetensorsReader, readSafetensorsHeader } from '../checkpoint/safetensors';
import { checkQuantizedHeader } from '../checkpoint/quant';
import { validateConfig } from '../model/config';
import { layoutFromConfig, type ModelLayout } from '../model/layout';
import type { ModelConfig } from '../model/model-config';
import { loadAddon, type InferenceSession, type OpenedWeights } from '../native/addon';
import { loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer';
import type { Routing } from '../model/routing';
import { envMmap } from '../util/env';

/** A checkpoint's weights opened for inference, with what describes them (no tokenizer needed). */
export interface CheckpointWeights {
  dir: string;
  config: ModelConfig;
  layout: ModelLayout;
  /** the tokenizer.json used (the checkpoint's, when it has one) */
  tokenizerPath?: string;
  modelFile: string;
  /** dtype of the stored weights ('mixed' when tensors differ) */
  dtype: string;
  /** true when the weights were converted into memory (F16), false when the file is mapped */
  inMemory: boolean;
  /** things the user should know (conversions, recovered saves) */
  notes: string[];
  /** The weights, opened once; every session shares them. */
  weights: OpenedWeights;
  /** A session over the model's weights (weights.createSession); maxLen defaults to config.max_seq_len. */
  createSession(opts: { batch: number; maxLen?: number; routing: Routing }): InferenceSession;
  /** trainer_state.json when present (checked; throws naming the file when invalid). */
  trainerState(): TrainerState | undefined;
}

/** A checkpoint opened for inference: its weights and its tokenizer. */
export interface InferenceModel extends CheckpointWeights {
  tokenizer: Tokenizer;
  tokenizerPath: string;
}

export interface LoadInferenceOptions {
  /** tokenizer.json to use instead of the checkpoint's */
  tokenizer?: string;
}

/** Opens a checkpoint folder for inference (see the file comment). */
export function loadInferenceModel(dir: string, opts: LoadInferenceOptions = {}): InferenceModel {
  return open(dir, { required: true, file: opts.tokenizer }) as InferenceModel;
}

/** The same without a tokenizer: tokenizerPath is the checkpoint's tokenizer.json when it has one. */
export function openCheckpointWeights(dir: string): CheckpointWeights {
  return open(dir, { required: false });
}

function open(dir: string, tok: { required: boolean; file?: string }): CheckpointWeights & { tokenizer?: Tokenizer } {
  const abs = path.resolve(dir);
  const notes: string[] = [];
  const recovered = recoverInterruptedSave(abs);
  if (recovered) notes.push(`completed an interrupted save: restored ${recovered} as ${abs}`);
  if (!fs.existsSync(abs)) throw new Error(`checkpoint folder not found: ${dir}`);
  if (!fs.statSync(abs).isDirectory()) throw new Error(`checkpoint ${dir} is not a folder`);
  const cfgFile = path.join(abs, CONFIG_FILE);
  if (!fs.existsSync(cfgFile)) {
    throw new Error(`checkpoint ${dir} has no ${CONFIG_FILE} (is it a dsmoe checkpoint folder?)`);
  }
  const config = validateConfig(readJsonFile(cfgFile, 'config'), cfgFile);
  const layout = layoutFromConfig(config);

  const modelFile = path.join(abs, MODEL_FILE);
  if (!fs.existsSync(modelFile)) throw new Error(`checkpoint ${dir} has no ${MODEL_FILE}`);
  const header = readSafetensorsHeader(modelFile);
  // Exactly the layout's tensors with its shapes, quantized ones with their scales (docs/format.md).
  const quant = checkQuantizedHeader(header, layout, modelFile);
  const dtypes = new Set(header.tensors.map((t) => t.dtype));
  const dtype = quant ? quant.kind : dtypes.size === 1 ? [...dtypes][0] : 'mixed';

  const own = path.join(abs, TOKENIZER_FILE);
  let tokFile: string | undefined, tokenizer: Tokenizer | undefined;
  if (!tok.required) tokFile = fs.existsSync(own) ? own : undefined;
  else {
    tokFile = tok.file ?? own;
    if (!tok.file && !fs.existsSync(tokFile)) {
      throw new Error(`checkpoint ${dir} has no ${TOKENIZER_FILE}; give one with --tokenizer FILE`);
    }
    tokenizer = loadTokenizer(tokFile);
    if (tokenizer.vocabSize > config.vocab_size)
      throw new Error(`the tokenizer ${tokFile} has ${tokenizer.vocabSize} tokens, ` +
        `more than the model's vocab_size ${config.vocab_size}`);
  }

  const addon = loadAddon();
  // F16 is not an engine dtype: the whole model goes to fp32 in memory, once. Quantized weights
  // (I8, U8 = q4) are mapped and read in place, like F32 and BF16.
  let weights: Float32Array | undefined;
  // (q4's scales are F16 too: only the layout's tensors count here.)
  const names = new Set(layout.tensors.map((t) => t.name));
  if (header.tensors.some((t) => t.dtype === 'F16' && names.has(t.name))) {
    if (quant) throw new Error(`${modelFile}: F16 tensors next to ${quant.kind} ones; convert from the original`);
    weights = allocParams(layout.totalParams, 'the fp32 copy of the F16 weights');
    const r = SafetensorsReader.open(modelFile);
    try {
      for (const t of layout.tensors) r.readFloat32Into(t.name, weights.subarray(t.offset, t.offset + t.size));
    } finally {
      r.close();
    }
    notes.push(`${MODEL_FILE} stores F16 tensors, which the engine does not read: converted once to fp32 in memory ` +
      `(${(weights.byteLength / 2 ** 20).toFixed(1)} MiB)`);
  }
  const tensors = header.tensors.map((t) => ({
    name: t.name, dtype: t.dtype, shape: t.shape, begin: t.begin, end: t.end,
  }));
  let opened: OpenedWeights;
  if (weights) opened = addon.openWeightsFromBuffer({ config, weights });
  else {
    try {
      opened = addon.openWeights({ config, path: modelFile, tensors, dataOffset: header.dataStart,
        load: envMmap() ? 'mmap' : 'read' });
    } catch (e) {
      // Errors name the file: the engine's own messages may not.
      const msg = (e as Error).message;
      throw new Error(msg.includes(modelFile) ? msg : `${modelFile}: ${msg}`);
    }
  }

  return {
    dir: abs, config, layout, tokenizer, tokenizerPath: tokFile && path.resolve(tokFile), modelFile, dtype,
    inMemory: weights !== undefined, notes,
    weights: opened,
    createSession: ({ batch, maxLen, routing }) => opened.createSession({ batch, maxLen, routing }),
    trainerState() {
      const f = path.join(abs, TRAINER_STATE_FILE);
      return fs.existsSync(f) ? validateTrainerState(readJsonFile(f, 'trainer state'), f) : undefined;
    },
  };
}
