// The decode benchmark (DESIGN.md §4): tokens/s at batch 1 with dense and sparse routing on one
// synthetic, memory-bound bf16 model, next to the bytes of weights each token reads and the
// streaming-read bandwidth measured in the same run. Also prefill tokens/s and time to first token.
//
// Yardsticks: in the memory-bound regime the sparse speed-up should approach
// (bytes read dense) / (bytes read sparse) — target ≥ 0.8 of it — and dense decode should read its
// weights at ≥ 60 % of the measured bandwidth.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { quantizedTensors, type QuantKind } from '../checkpoint/quant';
import { readSafetensorsHeader, writeSafetensors } from '../checkpoint/safetensors';
import { layoutFromConfig } from '../model/layout';
import type { ModelConfig } from '../model/model-config';
import { loadAddon, type InferenceSession, type NativeAddon, type OpenedWeights } from '../native/addon';
import { envMmap } from '../util/env';
import { renderTable } from '../util/table';

export type BenchDtype = 'bf16' | QuantKind;

export interface DecodeBenchOptions {
  routings?: string[];
  /** weight dtypes to compare (default bf16 only): each is its own copy of the same model */
  dtypes?: BenchDtype[];
  promptLen?: number;
  decodeTokens?: number;
  /** kernel threads (default: the pool's current size) */
  threads?: number;
  /** override parts of the synthetic model */
  config?: Partial<ModelConfig>;
  /** router weight std: larger = peakier routers (random routers near 0 would select uniformly) */
  routerStd?: number;
  seed?: number;
  /** interleaved measurement rounds; each routing keeps its best (default 3) */
  rounds?: number;
  log?: (line: string) => void;
}

export interface DecodeBenchRow {
  dtype: BenchDtype;
  routing: string;
  attExpertsPerToken: number;
  mlpExpertsPerToken: number;
  activeParamsPerToken: number;
  activeExpertShare: number;
  /** bytes of weights one decode token reads (active layer weights + LM head) */
  weightBytesPerToken: number;
  decodeTokensPerS: number;
  /** weightBytesPerToken · tokens/s */
  decodeBytesPerS: number;
  /** decodeBytesPerS / measured read bandwidth */
  ofBandwidth: number;
  /** dense bytes / these bytes: the ideal speed-up */
  idealSpeedup: number;
  /** decode tokens/s / dense decode tokens/s (same dtype) */
  speedup: number;
  /** decode tokens/s / bf16 decode tokens/s (same routing) */
  vsBf16: number;
  /** speedup / idealSpeedup (target ≥ 0.8) */
  ofIdeal: number;
  prefillTokensPerS: number;
  ttftMs: number;
}

export interface DecodeBenchResult {
  date: string;
  runtime: ReturnType<NativeAddon['runtimeInfo']>;
  model: { config: ModelConfig; totalParams: number; nonEmbeddingParams: number; weightBytes: number; dtype: 'bf16' };
  /** how the checkpoints were opened: read into huge pages, or mapped (DSMOE_MMAP=1) */
  weightsLoad: 'read' | 'mmap';
  promptLen: number;
  decodeTokens: number;
  rounds: number;
  readBandwidth: number;
  rows: DecodeBenchRow[];
  targets: { sparseOfIdeal: number; denseOfBandwidth: number; int8OverBf16: number; q4OverBf16: number };
}

export function benchModelConfig(over: Partial<ModelConfig> = {}): ModelConfig {
  return {
    format_version: 1, vocab_size: 8192, d_model: 1024, n_layers: 8, max_seq_len: 1024, norm_eps: 1e-5,
    rope_theta: 10000, tie_embeddings: false,
    attention: { n_experts: 8, n_heads: 2, n_kv_heads: 2, head_dim: 64 },
    mlp: { n_experts: 32, expert_dim: 512, activation: 'gelu' },
    training: { mode: 'dsmoe', mi_alpha_att: 0, mi_alpha_mlp: 0, top_k: 2, switch_alpha: 0.01 },
    routing: { attention: 'dense', mlp: 'dense' },
    ...over,
  };
}

/** Random bf16 weights: the seeded initialisation, routers scaled up, rounded to bf16 in chunks. */
function makeWeights(addon: NativeAddon, config: ModelConfig, routerStd: number, seed: number): Uint16Array {
  const layout = addon.modelLayout(config);
  const f32 = new Float32Array(layout.totalParams);
  addon.initParams({ config, params: f32, seed });
  for (const t of layout.tensors)
    if (t.name.endsWith('router.weight')) for (let i = t.offset; i < t.offset + t.size; i++) f32[i] *= routerStd / 0.02;
  const u32 = new Uint32Array(f32.buffer), out = new Uint16Array(f32.length);
  for (let i = 0; i < u32.length; i++) { const b = u32[i]; out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16; }
  return out;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

export async function runDecodeBench(opts: DecodeBenchOptions = {}): Promise<DecodeBenchResult> {
  const addon = loadAddon();
  const log = opts.log ?? (() => undefined);
  if (opts.threads) addon.setThreads({ threads: opts.threads });
  const routings = opts.routings ?? ['dense', 'topk:2', 'topk:1', 'threshold:0.48'];
  const promptLen = opts.promptLen ?? 128, decodeTokens = opts.decodeTokens ?? 24;
  const config = benchModelConfig({ max_seq_len: Math.max(1024, promptLen + decodeTokens + 8), ...opts.config });
  const layout = addon.modelLayout(config);
  log(`building ${(layout.totalParams / 1e6).toFixed(0)}M-parameter bf16 model…`);
  const weights = makeWeights(addon, config, opts.routerStd ?? 0.1, opts.seed ?? 1);
  const V = config.vocab_size;
  const rounds = opts.rounds ?? 3;
  const prompt = Int32Array.from({ length: promptLen }, (_, i) => (i * 7919 + 13) % V);
  const logits = new Float32Array(V);
  // One copy of the model per dtype, opened once; one session per (dtype, routing) over it. Every copy,
  // bf16 too, is written to a temporary safetensors file and opened as a checkpoint is (read into
  // huge pages; DSMOE_MMAP=1: mapped), so all dtypes are read from the same kind of memory.
  const dtypes: BenchDtype[] = opts.dtypes ?? ['bf16'];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsmoe-decode-'));
  const openedBy = new Map<BenchDtype, OpenedWeights>();
  try {
    const f32 = new Float32Array(weights.length);
    const u32 = new Uint32Array(f32.buffer);
    u32.set(weights);  // bf16 bits → the high half of fp32
    for (let i = 0; i < u32.length; i++) u32[i] <<= 16;
    const ml = layoutFromConfig(config);
    for (const d of dtypes) {
      log(d === 'bf16' ? 'writing the bf16 checkpoint…' : `quantizing to ${d}…`);
      const file = path.join(tmp, `${d}.safetensors`);
      writeSafetensors(file, d === 'bf16'
        ? ml.tensors.map((t) => ({ name: t.name, dtype: 'BF16' as const, shape: t.shape,
          data: () => f32.subarray(t.offset, t.offset + t.size) }))
        : quantizedTensors(ml, f32, d).tensors);
      const h = readSafetensorsHeader(file);
      const tensors = h.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, begin: t.begin,
        end: t.end }));
      openedBy.set(d, addon.openWeights({ config, path: file, dataOffset: h.dataStart, tensors,
        load: envMmap() ? 'mmap' : 'read' }));
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });  // read or mapped: the weights stay valid
  }
  const cases = dtypes.flatMap((dtype) => routings.map((routing) => ({ dtype, routing })));
  const sessions = cases.map(({ dtype, routing: r }) => {
    const [attention, mlp] = r.includes('/') ? r.split('/') : [r, r];
    return openedBy.get(dtype)!.createSession({ batch: 1, maxLen: promptLen + decodeTokens + 8,
      routing: { attention, mlp } });
  });
  // Touch every weight once (page faults, caches) before timing anything.
  for (const d of dtypes) sessions[cases.findIndex((c) => c.dtype === d)].prefill({ tokens: prompt.subarray(0, 8),
    batch: 1, len: 8, logits });
  const threads = addon.runtimeInfo().threads;
  // The machine may be shared: routings are measured in interleaved rounds and each keeps its best
  // round, so a busy moment does not fall on one routing only. Bandwidth likewise, between rounds.
  let readBandwidth = 0;
  const best = cases.map(() => ({ ttft: Infinity, decodeS: Infinity,
    stats: undefined as undefined | ReturnType<InferenceSession['stats']> }));
  const tok = new Int32Array(1);
  for (let round = 0; round < rounds; round++) {
    log(`round ${round + 1}/${rounds}: read bandwidth…`);
    readBandwidth = Math.max(readBandwidth, addon.measureReadBandwidth({ bytes: 1 << 29, threads, reps: 3 }));
    for (let k = 0; k < cases.length; k++) {
      const session = sessions[k], b = best[k];
      session.reset();
      let t0 = now();
      await session.prefillAsync({ tokens: prompt, batch: 1, len: promptLen, logits });  // time to first token
      b.ttft = Math.min(b.ttft, now() - t0);
      tok[0] = 7;
      session.decode({ tokens: tok, logits });  // warm-up
      session.resetStats();
      t0 = now();
      for (let i = 0; i < decodeTokens; i++) { tok[0] = (i * 31 + 11) % V; session.decode({ tokens: tok, logits }); }
      const dt = now() - t0;
      if (dt < b.decodeS) { b.decodeS = dt; b.stats = session.stats(); }
    }
    log(`round ${round + 1}: ` + cases.map((c, k) =>
      `${c.dtype} ${c.routing} ${(decodeTokens / best[k].decodeS).toFixed(1)} tok/s`).join(', '));
  }
  const rows: DecodeBenchRow[] = cases.map(({ dtype, routing: r }, k) => {
    const b = best[k], st = b.stats!, tps = decodeTokens / b.decodeS;
    return {
      dtype, routing: r, attExpertsPerToken: st.attExpertsPerToken, mlpExpertsPerToken: st.mlpExpertsPerToken,
      activeParamsPerToken: st.activeParamsPerToken, activeExpertShare: st.activeExpertShare,
      weightBytesPerToken: st.activeWeightBytesPerToken, decodeTokensPerS: tps,
      decodeBytesPerS: st.activeWeightBytesPerToken * tps,
      ofBandwidth: (st.activeWeightBytesPerToken * tps) / readBandwidth,
      idealSpeedup: 1, speedup: 1, vsBf16: 1, ofIdeal: 1, prefillTokensPerS: promptLen / b.ttft, ttftMs: b.ttft * 1e3,
    };
  });
  for (const x of rows) {
    const same = rows.filter((y) => y.dtype === x.dtype);
    const dense = same.find((y) => y.routing === 'dense') ?? same[0];
    const bf16 = rows.find((y) => y.dtype === 'bf16' && y.routing === x.routing);
    x.idealSpeedup = dense.weightBytesPerToken / x.weightBytesPerToken;
    x.speedup = x.decodeTokensPerS / dense.decodeTokensPerS;
    x.ofIdeal = x.speedup / x.idealSpeedup;
    x.vsBf16 = bf16 ? x.decodeTokensPerS / bf16.decodeTokensPerS : NaN;
  }
  return {
    date: new Date().toISOString(), runtime: addon.runtimeInfo(),
    model: { config, totalParams: layout.totalParams, nonEmbeddingParams: layout.nonEmbeddingParams,
      weightBytes: 2 * layout.totalParams, dtype: 'bf16' },
    weightsLoad: envMmap() ? 'mmap' : 'read',
    promptLen, decodeTokens, rounds, readBandwidth, rows,
    targets: { sparseOfIdeal: 0.8, denseOfBandwidth: 0.75, int8OverBf16: 1.7, q4OverBf16: 2.8 },
  };
}

export function formatDecodeBench(r: DecodeBenchResult): string {
  const c = r.model.config, MB = 1e6, GB = 1e9;
  const head = [
    `decode benchmark — ${r.date}, ${r.runtime.threads} threads, ` +
      `${r.runtime.isa}${r.runtime.avx512bf16 ? ' + avx512bf16' : ''}${r.runtime.avx512vnni ? ' + avx512vnni' : ''}`,
    `model: ${(r.model.totalParams / MB).toFixed(0)}M params (bf16 ${(r.model.weightBytes / MB).toFixed(0)} MB), D ` +
      `${c.d_model}, ${c.n_layers} layers, ` +
      `attention ${c.attention.n_experts}×${c.attention.n_heads}×${c.attention.head_dim} (kv ` +
        `${c.attention.n_kv_heads}), ` +
      `mlp ${c.mlp.n_experts}×${c.mlp.expert_dim}, vocab ${c.vocab_size}; prompt ${r.promptLen}, ` +
        `${r.decodeTokens} decode tokens, batch 1, best of ${r.rounds} interleaved rounds; weights ` +
        (r.weightsLoad === 'read' ? 'read into huge pages' : 'mapped (DSMOE_MMAP)'),
    `measured streaming read bandwidth: ${(r.readBandwidth / GB).toFixed(1)} GB/s`,
    '',
  ];
  const table = renderTable(
    ['dtype', 'routing', 'att exp', 'mlp exp', 'active M', 'expert %', 'MB/token', 'decode tok/s', '× bf16', 'GB/s',
      '% of bw', 'ideal ×', 'speed-up ×', '% of ideal', 'prefill tok/s', 'TTFT ms'],
    r.rows.map((x) => [x.dtype, x.routing, x.attExpertsPerToken, x.mlpExpertsPerToken, x.activeParamsPerToken / MB,
      100 * x.activeExpertShare,
      x.weightBytesPerToken / MB, x.decodeTokensPerS, x.vsBf16, x.decodeBytesPerS / GB, 100 * x.ofBandwidth,
      x.idealSpeedup, x.speedup, 100 * x.ofIdeal, x.prefillTokensPerS, x.ttftMs]),
  );
  const ok = (v: boolean) => (v ? 'ok' : 'MISSED');
  const dense = r.rows.filter((x) => x.routing === 'dense');
  const sparse = r.rows.filter((x) => x.routing !== 'dense');
  const name = (x: DecodeBenchRow) => (r.rows.some((y) => y.dtype !== 'bf16') ? `${x.dtype} ${x.routing}` : x.routing);
  const verdict = [
    '',
    `targets: sparse speed-up ≥ ${100 * r.targets.sparseOfIdeal}% of ideal — ` +
      sparse.map((x) => `${name(x)} ${(100 * x.ofIdeal).toFixed(0)}% ${ok(x.ofIdeal >= r.targets.sparseOfIdeal)}`)
        .join(', '),
    `         dense reads weights at ≥ ${100 * r.targets.denseOfBandwidth}% of bandwidth — ` +
      dense.map((x) => `${name(x)} ${(100 * x.ofBandwidth).toFixed(0)}% ` +
        `${ok(x.ofBandwidth >= r.targets.denseOfBandwidth)}`).join(', '),
    ...dense.filter((x) => x.dtype !== 'bf16').map((x) => {
      const want = x.dtype === 'int8' ? r.targets.int8OverBf16 : r.targets.q4OverBf16;
      return `         ${x.dtype} dense decode ≥ ${want}× bf16 — ${x.vsBf16.toFixed(2)}× ${ok(x.vsBf16 >= want)}`;
    }),
  ];
  return [...head, table, ...verdict].join('\n');
}
