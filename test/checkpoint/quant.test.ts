// Quantized checkpoints (docs/format.md "Quantized weights"): the int8 and q4 quantizers against
// hand-worked values and error bounds, the packed layout, `convert --dtype int8|q4` end to end
// (sizes, the reader's checks, inference on the result close to the bf16 model), and the errors a
// reader gives for a malformed quantized file.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadCheckpoint, saveCheckpoint } from '../../src/checkpoint/checkpoint';
import { checkpointInfo } from '../../src/checkpoint/info';
import {
  Q4_GROUP, checkQuantizedHeader, dequantizeI8, dequantizeQ4, isQuantizable, quantizeI8, quantizeQ4, scaleName,
} from '../../src/checkpoint/quant';
import {
  f16BitsToF32, readSafetensorsHeader, writeSafetensors, type TensorToWrite,
} from '../../src/checkpoint/safetensors';
import { convertCheckpoint } from '../../src/convert/convert';
import { openCheckpointWeights } from '../../src/infer/load';
import { validateConfig, type ModelConfig } from '../../src/model/config';
import { layoutFromConfig } from '../../src/model/layout';
import { addon, rng } from '../helpers';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-quant-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => scale * (r() + r() + r() - 1.5));
}

describe('quantizers', () => {
  test('int8: per-row scale max|w|/127, round half away from zero, error ≤ scale / 2, zero rows', () => {
    const w = Float32Array.of(1.27, -0.635, 0.005, 0.0049, 0, 0, 0, 0);
    const { q, scale } = quantizeI8(w, 2, 4);
    expect(scale[0]).toBeCloseTo(0.01, 7);
    expect(Array.from(q.subarray(0, 4))).toEqual([127, -64, 1, 0]);  // −63.5 → −64, 0.5 → 1
    expect(scale[1]).toBe(0);
    expect(Array.from(q.subarray(4))).toEqual([0, 0, 0, 0]);
    for (const [rows, k] of [[1, 1], [3, 31], [5, 257]]) {
      const x = randn(rows * k, rows * k);
      const z = quantizeI8(x, rows, k), back = new Float32Array(rows * k);
      dequantizeI8(z.q, z.scale, rows, k, back);
      for (let i = 0; i < x.length; i++) {
        expect(Math.abs(back[i] - x[i])).toBeLessThanOrEqual(z.scale[Math.floor(i / k)] / 2 * (1 + 1e-6));
      }
    }
  });

  test('q4: Q4_0 numbers (d = m / −8 in F16, codes clamp to 0..15), even column in the low nibble', () => {
    const w = new Float32Array(32);
    w[0] = -0.8;  // the value of largest magnitude: d = −0.8 / −8 = 0.1
    w[1] = 0.8;   // 0.8 / 0.1 = 8 → code 16 → clamped to 15 (7 · 0.1 = 0.7)
    w[2] = 0.26;  // 2.6 → 3 → code 11
    w[3] = -0.25; // −2.5 → −3 (away from zero) → code 5
    const { q, scale } = quantizeQ4(w, 1, 32);
    expect(f16BitsToF32(scale[0])).toBeCloseTo(0.1, 3);
    expect(q[0]).toBe(0 | (15 << 4));
    expect(q[1]).toBe(11 | (5 << 4));
    expect(q[2]).toBe(8 | (8 << 4));  // zeros are code 8
    const back = new Float32Array(32);
    dequantizeQ4(q, scale, 1, 32, back);
    const d = f16BitsToF32(scale[0]);
    expect(Array.from(back.subarray(0, 4))).toEqual([-8 * d, 7 * d, 3 * d, -3 * d].map(Math.fround));
    expect(() => quantizeQ4(new Float32Array(48), 1, 48)).toThrow(/divisible by 32/);
  });

  test('q4 error ≤ |d| / 2 inside the range, ≤ |d| at the clamped end; all-zero groups stay zero', () => {
    for (const [rows, k] of [[1, 32], [3, 64], [2, 288]]) {
      const x = randn(rows * k, k + rows, 0.1);
      x.fill(0, 0, 32);
      const z = quantizeQ4(x, rows, k), back = new Float32Array(rows * k);
      dequantizeQ4(z.q, z.scale, rows, k, back);
      for (let i = 0; i < x.length; i++) {
        const d = Math.abs(f16BitsToF32(z.scale[Math.floor(i / Q4_GROUP)]));
        expect(Math.abs(back[i] - x[i])).toBeLessThanOrEqual(d * (1 + 1e-3) + 1e-7);
      }
      expect(Array.from(back.subarray(0, 32)).every((v) => v === 0)).toBe(true);
    }
  });

  test('which tensors are quantized', () => {
    expect(['embed.weight', 'lm_head.weight', 'layers.3.attn.q_proj.weight', 'layers.0.mlp.down_proj.weight']
      .every(isQuantizable)).toBe(true);
    expect(['layers.0.attn.router.weight', 'layers.0.mlp_norm.weight', 'final_norm.weight',
      'layers.0.mlp.router.hidden.weight'].some(isQuantizable)).toBe(false);
  });
});

// D 64, H·d_h 32, F 64: every input dimension a multiple of 32 (q4 quantizes everything it may).
const config: ModelConfig = validateConfig({
  format_version: 1, vocab_size: 96, d_model: 64, n_layers: 2, max_seq_len: 24, norm_eps: 1e-5, rope_theta: 10000,
  tie_embeddings: false,
  attention: { n_experts: 2, n_heads: 2, n_kv_heads: 1, head_dim: 16 },
  mlp: { n_experts: 3, expert_dim: 64, activation: 'gelu' },
  training: { mode: 'dsmoe', mi_alpha_att: 1e-3, mi_alpha_mlp: 1e-3, top_k: 2, switch_alpha: 0.01 },
  routing: { attention: 'dense', mlp: 'dense' },
});
const layout = layoutFromConfig(config);
const params = randn(layout.totalParams, 3, 0.05);
const source = path.join(root, 'source');
saveCheckpoint(source, { config, params, dtype: 'F32' });

describe('convert --dtype int8 | q4', () => {
  const out = (d: string) => path.join(root, d);
  beforeAll(() => {
    for (const d of ['bf16', 'int8', 'q4']) convertCheckpoint(source, out(d), { dtype: d });
  });

  test('files: the documented tensors, dtypes and shapes; sizes ≈ 0.52× and 0.29× of bf16', () => {
    const h = readSafetensorsHeader(path.join(out('q4'), 'model.safetensors'));
    const up = h.tensors.find((t) => t.name === 'layers.1.mlp.up_proj.weight')!;
    expect([up.dtype, up.shape]).toEqual(['U8', [3, 64, 32]]);
    const s = h.tensors.find((t) => t.name === scaleName('layers.1.mlp.up_proj.weight'))!;
    expect([s.dtype, s.shape]).toEqual(['F16', [3, 64, 2]]);
    expect(h.tensors.find((t) => t.name === 'layers.0.attn.router.weight')!.dtype).toBe('BF16');
    expect(h.metadata.quantization).toBe('q4');
    const i8 = readSafetensorsHeader(path.join(out('int8'), 'model.safetensors'));
    expect(i8.tensors.find((t) => t.name === 'embed.weight')!.dtype).toBe('I8');
    expect(i8.tensors.find((t) => t.name === scaleName('embed.weight'))!.shape).toEqual([96]);
    const size = (d: string) => fs.statSync(path.join(out(d), 'model.safetensors')).size;
    expect(size('int8') / size('bf16')).toBeGreaterThan(0.5);
    expect(size('int8') / size('bf16')).toBeLessThan(0.56);
    expect(size('q4') / size('bf16')).toBeGreaterThan(0.27);
    expect(size('q4') / size('bf16')).toBeLessThan(0.32);
    expect(checkpointInfo(out('q4')).dtype).toBe('q4');
    expect(checkpointInfo(out('int8')).quantized_tensors).toBe(2 * 6 + 2);
  });

  test('inference on the quantized files: logits close to bf16 (int8 closer than q4)', () => {
    const prompt = Int32Array.of(5, 17, 3, 44, 90, 1, 2);
    const logits = (d: string) => {
      const w = openCheckpointWeights(out(d));  // the weights alone: these checkpoints have no tokenizer
      const s = w.createSession({ batch: 1, routing: { attention: 'dense', mlp: 'dense' } });
      const l = new Float32Array(config.vocab_size);
      s.prefill({ tokens: prompt, batch: 1, len: prompt.length, logits: l });
      return l;
    };
    const ref = logits('bf16');
    const err = (d: string) => {
      const x = logits(d);
      let num = 0, den = 0;
      for (let i = 0; i < x.length; i++) { num += (x[i] - ref[i]) ** 2; den += ref[i] ** 2; }
      return Math.sqrt(num / den);
    };
    const e8 = err('int8'), e4 = err('q4');
    expect(e8).toBeLessThan(0.02);
    expect(e4).toBeLessThan(0.15);
    expect(e8).toBeLessThan(e4);
  });

  // Decode's GEMV reads the quantized weights as stored; prefill dequantizes them for its GEMM. With fp32
  // activations both compute the same products (fp32 sums in different orders: 1e-4 of the largest
  // logit). With the VNNI int8 dot (AVX-512 VNNI) decode also rounds each activation row to int8 (error
  // ≤ half a step of 1/127 of the block's largest value per element, through every layer): the bar is
  // then 5e-2 of the largest logit, and the rounded path must differ from the exact one.
  for (const dot of [false, true])
    test(`the engine reads them in place: decode (quantized GEMV${dot ? ', int8 activations' : ''}) = prefill ` +
      '(dequantized GEMM), sparse and dense', () => {
      if (dot && !addon.runtimeInfo().avx512vnni) return console.log('skipped: this CPU has no AVX-512 VNNI');
      const seq = [5, 17, 3, 44, 90, 1, 2, 60, 7];
      addon.setInt8Dot({ enabled: dot });
      try {
        for (const d of ['int8', 'q4']) {
          const w = openCheckpointWeights(out(d));
          expect(w.weights.mappedBytes).toBeGreaterThan(0);  // opened from the file, not dequantized into a buffer
          let worst = 0;
          for (const mlp of ['dense', 'topk:1']) {
            const routing = { attention: 'dense', mlp };
            const whole = new Float32Array(seq.length * config.vocab_size), last = new Float32Array(config.vocab_size);
            w.createSession({ batch: 1, routing }).prefill({ tokens: Int32Array.from(seq), batch: 1, len: seq.length,
              logits: last, allLogits: whole });
            const s = w.createSession({ batch: 1, routing });
            const l = new Float32Array(config.vocab_size);
            s.prefill({ tokens: Int32Array.from(seq.slice(0, 4)), batch: 1, len: 4, logits: l });
            for (let i = 4; i < seq.length; i++) {
              s.decode({ tokens: Int32Array.of(seq[i]), logits: l });
              const ref = whole.subarray(i * config.vocab_size, (i + 1) * config.vocab_size);
              let maxErr = 0, maxRef = 0;
              for (let j = 0; j < l.length; j++) {
                maxErr = Math.max(maxErr, Math.abs(l[j] - ref[j]));
                maxRef = Math.max(maxRef, Math.abs(ref[j]));
              }
              worst = Math.max(worst, maxErr / maxRef);
            }
          }
          const what = `${d}: decode with int8 activations vs prefill`;
          if (dot) console.log(`${what}: ${worst.toExponential(2)} of the largest logit`);
          expect(worst).toBeLessThan(dot ? 5e-2 : 1e-4);
          if (dot) expect(worst).toBeGreaterThan(1e-6);
        }
      } finally {
        addon.setInt8Dot({ enabled: true });
      }
    });

  test('training and convert refuse a quantized checkpoint with a clear error', () => {
    expect(() => loadCheckpoint(out('int8'))).toThrow(/is quantized .*inference only/);
    expect(() => convertCheckpoint(out('q4'), out('again'), {})).toThrow(/is quantized/);
    expect(() => convertCheckpoint(source, out('x'), { dtype: 'int4' })).toThrow(/bf16, f16, f32, int8 or q4/);
  });
});

describe('a malformed quantized file is an error naming the tensor', () => {
  const bf16 = (name: string, shape: number[]): TensorToWrite =>
    ({ name, dtype: 'BF16', shape, data: new Uint16Array(shape.reduce((a, b) => a * b, 1)) });
  const base = (): TensorToWrite[] => layout.tensors.map((t) => bf16(t.name, t.shape));
  const up = 'layers.0.mlp.up_proj.weight';
  const check = (tensors: TensorToWrite[]) => {
    const f = path.join(root, `bad-${Math.random().toString(36).slice(2)}.safetensors`);
    writeSafetensors(f, tensors);
    return () => checkQuantizedHeader(readSafetensorsHeader(f), layout, f);
  };
  const replace = (tensors: TensorToWrite[], name: string, ...by: TensorToWrite[]) =>
    tensors.flatMap((t) => (t.name === name ? by : [t]));
  const i8 = (shape: number[]): TensorToWrite => ({ name: up, dtype: 'I8', shape,
    data: new Int8Array(shape.reduce((a, b) => a * b, 1)) });
  const f32 = (name: string, shape: number[]): TensorToWrite => ({ name, dtype: 'F32', shape,
    data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });

  test.each<[string, () => TensorToWrite[], RegExp]>([
    ['a quantized weight without its scale', () => replace(base(), up, i8([3, 64, 64])),
      /tensor "layers.0.mlp.up_proj.weight_scale" is missing/],
    ['a scale of the wrong shape', () => replace(base(), up, i8([3, 64, 64]), f32(scaleName(up), [3, 32])),
      /weight_scale" has shape \[3, 32\], expected \[3, 64\]/],
    ['a scale of the wrong dtype', () => replace(base(), up, i8([3, 64, 64]), bf16(scaleName(up), [3, 64])),
      /weight_scale" is BF16; expected F32/],
    ['a quantized norm', () => replace(base(), 'final_norm.weight',
      { name: 'final_norm.weight', dtype: 'I8', shape: [64], data: new Int8Array(64) }),
    /"final_norm.weight" is I8, but only the embedding, the projections and the LM head may be/],
    ['a q4 weight of the wrong packed shape', () => replace(base(), up,
      { name: up, dtype: 'U8', shape: [3, 64, 64], data: new Uint8Array(3 * 64 * 64) }),
    /has shape \[3, 64, 64\], expected \[3, 64, 32\]/],
    ['a scale next to an unquantized weight', () => [...base(), f32(scaleName(up), [3, 64])],
      /is a scale, but "layers.0.mlp.up_proj.weight" is BF16, not quantized/],
  ])('%s', (_, make, message) => {
    expect(check(make())).toThrow(message);
  });

  test('the plain file passes and reports no quantization', () => {
    expect(check(base())()).toBeUndefined();
  });
});
