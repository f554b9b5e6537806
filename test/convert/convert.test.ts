// dsmoe info and dsmoe convert on tiny checkpoints trained with the real model: the report (text and
// JSON), bf16/f16/f32 conversion (sizes, exact rounding, perplexity), routing flags, bad input.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { loadCheckpoint, saveCheckpoint } from '../../src/checkpoint/checkpoint';
import { checkpointInfo } from '../../src/checkpoint/info';
import { SafetensorsReader } from '../../src/checkpoint/safetensors';
import { runConvert } from '../../src/cli/commands/convert';
import { formatInfo, runInfo } from '../../src/cli/commands/info';
import { convertCheckpoint } from '../../src/convert/convert';
import { loadInferenceModel } from '../../src/infer/load';
import { train } from '../../src/train/trainer';
import { parseRouting } from '../../src/model/routing';
import { activeParams } from '../../src/model/active';
import { paramCount } from '../../src/model/config';
import { bf16NearestEvenRef, f32FromBits } from '../reference/bf16';
import { SEQ, perplexity, trainOptions, trainTiny, windows, type Trained } from './trained';

let t: Trained;
beforeAll(async () => {
  t = await trainTiny();
});

function sink(): NodeJS.WritableStream & { text: () => string } {
  const s = new PassThrough();
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return Object.assign(s, { text: () => Buffer.concat(chunks).toString('utf8') });
}
const out = (name: string) => path.join(t.fx.dir, name);

describe('dsmoe info', () => {
  test('JSON: shape, counts, routing and active parameters, files, training state', () => {
    const s = sink();
    runInfo(t.dsmoe, { json: true }, s);
    const lines = s.text().trim().split('\n');
    expect(lines).toHaveLength(1);
    const i = JSON.parse(lines[0]);
    const ck = loadCheckpoint(t.dsmoe);
    const p = paramCount(ck.config);
    expect(i.kind).toBe('training');
    expect(i.mode).toBe('dsmoe');
    expect(i.shape).toMatchObject({ layers: 2, d_model: 64, vocab_size: ck.config.vocab_size, max_seq_len: 16,
      attention: { experts: 4, heads_per_expert: 2, kv_heads: 2, head_dim: 8 }, mlp: { experts: 4, expert_dim: 64 } });
    expect(i.params.total).toBe(ck.layout.totalParams);
    expect(i.params.non_embedding).toBe(ck.layout.nonEmbeddingParams);
    const parts = i.params.embedding + i.params.lm_head + i.params.norms + i.params.attention.q + i.params.attention.k +
      i.params.attention.v
      + i.params.attention.o + i.params.attention.router + i.params.mlp.up + i.params.mlp.down + i.params.mlp.router;
    expect(parts).toBe(p.total);
    expect(i.active.routing).toEqual({ attention: 'threshold:0.48', mlp: 'threshold:0.48' });
    expect(i.active.fixed).toBe(false);
    expect(i.active.activeParamsPerToken).toBeNull();
    expect(i.active.note).toMatch(/depends on the data/);
    expect(i.dtype).toBe('F32');
    const files = Object.fromEntries(i.files.map((f: { name: string }) => [f.name, f]));
    expect(Object.keys(files).sort()).toEqual(['config.json', 'model.safetensors', 'optimizer.safetensors',
      'tokenizer.json', 'trainer_state.json']);
    expect(files['model.safetensors'].dtypes).toEqual({ F32: ck.layout.tensors.length });
    expect(files['model.safetensors'].bytes).toBe(fs.statSync(path.join(t.dsmoe, 'model.safetensors')).size);
    expect(i.training.step).toBe(30);
    expect(i.training.tokens_seen).toBe(30 * 4 * 16);
    expect(i.training.last_losses.length).toBeGreaterThan(0);
  });

  test('active parameters of dense and top-k routing, counted by hand', () => {
    const c = loadCheckpoint(t.dsmoe).config; // D 64, 2 layers, 4×2×8 attention (kv 2), 4×64 MLP
    const D = 64, L = 2;
    const shared = L * (2 * 4 * D + 2 * 2 * 8 * D); // routers + k + v
    const qo = 2 * 2 * 8 * D, updown = 2 * 64 * D; // one expert
    expect(activeParams(c, { attention: 'dense', mlp: 'dense' }).activeParamsPerToken).toBe(shared +
      L * (4 * qo + 4 * updown));
    const a = activeParams(c, { attention: 'topk:2', mlp: 'topk:1' });
    expect(a.activeParamsPerToken).toBe(shared + L * (2 * qo + 1 * updown));
    expect(a.activeExpertShare).toBeCloseTo((2 * qo + updown) / (4 * qo + 4 * updown), 12);
    const th = activeParams(c, { attention: 'dense', mlp: 'threshold:0.5' });
    expect(th.fixed).toBe(false);
    expect(th.minParamsPerToken).toBe(shared + L * (4 * qo + updown));
    expect(th.maxParamsPerToken).toBe(shared + L * (4 * qo + 4 * updown));
  });

  test('text report names every section; inference checkpoints have no training section', () => {
    const text = formatInfo(checkpointInfo(t.dsmoe));
    for (const re of [/training checkpoint, mode dsmoe, step 30, weights F32/,
      /4 experts × 2 query heads × head_dim 8, 2 shared kv heads/,
      /non-embedding/, /attention q\/k\/v\/o/, /routers att\/mlp/, /MLP up\/down/, /depends on the data/,
      /model\.safetensors .*F32 × \d+ tensors/,
      /tokens seen\s+1\.9K \(1920\)/, /last losses/])
      expect(text).toMatch(re);
    const dst = out('info-inf');
    convertCheckpoint(t.dsmoe, dst, { routing: 'attention=dense,mlp=topk:2' });
    const inf = checkpointInfo(dst);
    expect(inf.kind).toBe('inference');
    expect(inf.training).toBeUndefined();
    expect(inf.dtype).toBe('BF16');
    expect(inf.active.fixed).toBe(true);
    const ftext = formatInfo(inf);
    expect(ftext).toMatch(/active per token .*\(4\/4 attention, 2\/4 MLP experts per layer\)/);
    expect(ftext).toMatch(/active experts\s+\d+\.\d % of expert parameters/);
    expect(ftext).not.toMatch(/^training$/m);
  });
});

describe('two-layer routers (router_hidden) through info, convert and the inference engine', () => {
  // tiny: D 64, 2 layers, 4 attention and 4 MLP experts; h = 16: a router is 16·64 + 4·16 = 1088.
  const H = 16, ROUTER = 16 * 64 + 4 * 16;
  let dir: string;
  beforeAll(async () => {
    dir = out('rh');
    await train(trainOptions(t.fx, dir, { steps: 12, overrides: { seq_len: SEQ, router_hidden: H } }));
  });

  test('info counts the two-layer routers and names their width; linear checkpoints say linear', () => {
    const i = checkpointInfo(dir), ck = loadCheckpoint(dir);
    expect(ck.config.router_hidden).toBe(H);
    expect(i.shape.router_hidden).toBe(H);
    expect(i.params.attention.router).toBe(2 * ROUTER);
    expect(i.params.mlp.router).toBe(2 * ROUTER);
    const p = i.params;
    const a = p.attention;
    expect(p.embedding + p.lm_head + p.norms + a.q + a.k + a.v + a.o + a.router + p.mlp.up + p.mlp.down + p.mlp.router)
      .toBe(ck.layout.totalParams);
    expect(i.active.sharedParams).toBe(2 * (2 * ROUTER + 2 * 2 * 8 * 64)); // routers + k + v
    const text = formatInfo(i);
    expect(text).toMatch(/routers\s+two-layer, hidden 16 \(Linear 64→16, GELU, Linear 16→E\)/);
    expect(text).toMatch(/routers att\/mlp\s+2\.2K \/ 2\.2K/);
    expect(formatInfo(checkpointInfo(t.dsmoe))).toMatch(/routers\s+linear \(64→E\)/);
    expect(checkpointInfo(t.dsmoe).shape.router_hidden).toBe(0);
    expect(formatInfo(checkpointInfo(t.dense))).not.toMatch(/^ {2}routers {3,}/m); // no routers, no router kind
  });

  test('bf16 conversion keeps the two-layer router tensors; the engine runs them as training does', async () => {
    const dst = out('rh-bf16');
    convertCheckpoint(dir, dst);
    const f32 = loadCheckpoint(dir), b = loadCheckpoint(dst);
    expect(b.config).toEqual(f32.config);
    expect(b.layout.tensors.map((x) => x.name)).toEqual(f32.layout.tensors.map((x) => x.name));
    const w = windows(t.fx, 4), V = f32.config.vocab_size;
    const m = loadInferenceModel(dst);
    expect(m.dtype).toBe('BF16');
    const s = m.createSession({ batch: 4, routing: { attention: 'dense', mlp: 'dense' } });
    const logits = new Float32Array(4 * V), losses = new Float32Array(4 * SEQ);
    s.prefill({ tokens: w.tokens, batch: 4, len: SEQ, logits, targets: w.targets, losses });
    const engine = Math.exp(losses.reduce((a, x) => a + x, 0) / w.targets.length);
    const p32 = perplexity(f32, w, 4), p16 = perplexity(b, w, 4);
    console.log(`router_hidden ${H}: perplexity fp32 ${p32.toFixed(4)}, bf16 training forward ${p16.toFixed(4)}, `
      + `bf16 engine ${engine.toFixed(4)}`);
    expect(Math.abs(engine / p16 - 1)).toBeLessThan(1e-3); // same bf16-rounded weights, engine vs training forward
    expect(Math.abs(p16 / p32 - 1)).toBeLessThan(0.01);
  });
});

describe('dsmoe convert', () => {
  test('bf16: about half the size, weights = fp32 rounded to nearest even, perplexity within 1 %', () => {
    const dst = out('bf16');
    const s = sink();
    const r = runConvert([t.dsmoe, dst], {}, s);
    expect(s.text()).toMatch(/model\.safetensors .* → .*\(5\d\.\d %\)/);
    expect(fs.readdirSync(dst).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);
    const ratio = r.bytesAfter / r.bytesBefore;
    const modelRatio = fs.statSync(path.join(dst, 'model.safetensors')).size / fs.statSync(path.join(t.dsmoe,
      'model.safetensors')).size;
    expect(modelRatio).toBeGreaterThan(0.49);
    expect(modelRatio).toBeLessThan(0.52);
    expect(ratio).toBeLessThan(0.2); // optimizer state dropped too
    const f32 = loadCheckpoint(t.dsmoe), b = loadCheckpoint(dst);
    expect(b.kind).toBe('inference');
    expect(b.config).toEqual(f32.config);
    const rd = SafetensorsReader.open(path.join(dst, 'model.safetensors'));
    try {
      for (const tl of f32.layout.tensors) {
        expect(rd.entry(tl.name).dtype).toBe('BF16');
        const bits = rd.readHalfBits(tl.name);
        let wrong = 0;
        // Judged by the value-based reference (test/reference/bf16.ts), not by the converter's own function.
        for (let i = 0; i < tl.size; i++) if (bits[i] !== bf16NearestEvenRef(f32.params[tl.offset + i])) wrong++;
        expect(`${tl.name}: ${wrong} wrong`).toBe(`${tl.name}: 0 wrong`);
      }
    } finally {
      rd.close();
    }
    let wrong = 0, changed = 0;
    for (let i = 0; i < f32.params.length; i++) {
      if (b.params[i] !== f32FromBits(bf16NearestEvenRef(f32.params[i]) << 16)) wrong++;
      if (b.params[i] !== f32.params[i]) changed++;
    }
    expect(wrong).toBe(0);
    expect(changed).toBeGreaterThan(f32.params.length / 2); // it really was rounded
    const w = windows(t.fx, 8);
    const p32 = perplexity(f32, w, 8), p16 = perplexity(b, w, 8);
    console.log(`perplexity on held-out text: fp32 ${p32.toFixed(4)}, bf16 ` +
      `${p16.toFixed(4)} (${(100 * (p16 / p32 - 1)).toFixed(3)} %); `
      + `model.safetensors ${(100 * modelRatio).toFixed(1)} %, folder ${(100 * ratio).toFixed(1)} %`);
    expect(Math.abs(p16 / p32 - 1)).toBeLessThan(0.01);
  });

  test('f16 and f32; routing stored in config.json', () => {
    const f16 = convertCheckpoint(t.dsmoe, out('f16'), { dtype: 'f16',
      routing: 'attention=topk:3,mlp=threshold-topk:0.5' });
    expect(f16.dtype).toBe('F16');
    const c = loadCheckpoint(out('f16'));
    expect(c.config.routing).toEqual({ attention: 'topk:3', mlp: 'threshold-topk:0.5' });
    const orig = loadCheckpoint(t.dsmoe);
    let maxRel = 0;
    for (let i = 0; i < orig.params.length; i++) maxRel = Math.max(maxRel,
      Math.abs(c.params[i] - orig.params[i]) / Math.max(Math.abs(orig.params[i]), 1e-3));
    expect(maxRel).toBeLessThan(1e-3);
    convertCheckpoint(t.dsmoe, out('f32'), { dtype: 'f32', routing: 'dense' });
    const f = loadCheckpoint(out('f32'));
    expect(Buffer.from(f.params.buffer).equals(Buffer.from(orig.params.buffer))).toBe(true);
    expect(f.config.routing).toEqual({ attention: 'dense', mlp: 'dense' });
  });

  test('--routing validation names the bad part', () => {
    const c = loadCheckpoint(t.dsmoe).config; // 4 experts of each kind
    expect(parseRouting('attention=dense,mlp=topk:4', c)).toEqual({ attention: 'dense', mlp: 'topk:4' });
    expect(parseRouting('mlp=threshold:0', c)).toEqual({ attention: 'threshold:0.48', mlp: 'threshold:0' });
    expect(parseRouting('topk:1', c)).toEqual({ attention: 'topk:1', mlp: 'topk:1' });
    const bad: Array<[string, RegExp]> = [
      ['mlp=topk:5', /--routing mlp=topk:5: "topk:5": K = 5 is more than the 4 MLP experts of this model/],
      ['attention=topk:0', /attention=topk:0: .*K must be in 1\.\.4/],
      ['attention=topk:1.5', /K must be a whole number/],
      ['mlp=threshold:-1', /mlp=threshold:-1: .*ε must be a finite number ≥ 0, got "-1"/],
      ['mlp=threshold:inf', /ε must be a finite number ≥ 0, got "inf"/],
      ['attention=threshold-topk:', /ε must be a finite number ≥ 0, got ""/],
      ['attention=sparse', /"sparse" is not a routing strategy/],
      ['experts=dense', /unknown layer kind "experts"/],
      ['attention=dense,attention=topk:1', /attention is given twice/],
      ['attention=dense,,mlp=dense', /empty part/],
      ['dense,topk:2', /"dense" needs a layer kind/],
    ];
    for (const [flag, re] of bad) expect(() => parseRouting(flag, c)).toThrow(re);
    expect(() => convertCheckpoint(t.dsmoe, out('badrouting'), { routing: 'mlp=topk:9' })).toThrow(/mlp=topk:9/);
    expect(fs.existsSync(out('badrouting'))).toBe(false);
  });

  test('bad input: missing folder, not a checkpoint, out exists, in == out, dtype, calibration', () => {
    expect(() => convertCheckpoint(out('nope'), out('y'))).toThrow(/checkpoint folder not found: .*nope/);
    expect(() => checkpointInfo(out('nope'))).toThrow(/checkpoint folder not found/);
    fs.mkdirSync(out('empty'), { recursive: true });
    fs.writeFileSync(path.join(out('empty'), 'notes.txt'), 'hello');
    expect(() => convertCheckpoint(out('empty'), out('y'))).toThrow(/has no config\.json/);
    expect(() => checkpointInfo(out('empty'))).toThrow(/is not a checkpoint: it has no config\.json/);
    convertCheckpoint(t.dsmoe, out('exists'));
    expect(() => convertCheckpoint(t.dsmoe, out('exists'))).toThrow(/already exists; add --force/);
    const r = convertCheckpoint(t.dsmoe, out('exists'), { force: true, dtype: 'f32' });
    expect(r.dtype).toBe('F32');
    expect(loadCheckpoint(out('exists')).metadata.step).toBe('30');
    expect(() => convertCheckpoint(t.dsmoe, out('empty'),
      { force: true })).toThrow(/not a checkpoint folder .*not overwriting it, even with --force/);
    expect(fs.readFileSync(path.join(out('empty'), 'notes.txt'), 'utf8')).toBe('hello');
    expect(() => convertCheckpoint(t.dsmoe, t.dsmoe, { force: true })).toThrow(/is the input folder/);
    expect(() => convertCheckpoint(t.dsmoe, path.join(t.dsmoe, '..', path.basename(t.dsmoe)),
      { force: true })).toThrow(/is the input folder/);
    expect(() => convertCheckpoint(t.dsmoe, out('z'), { dtype: 'int4' })).toThrow(/unknown dtype "int4"/);
    expect(() => runConvert([t.dsmoe, out('z')],
      { targetActive: 0.4 })).toThrow(/--target-active and --data go with --calibrate/);
    expect(() => runConvert([t.dsmoe], {})).toThrow(/needs an input and an output folder/);
    expect(() => runConvert([t.dsmoe, out('z')], { attentionExperts: 2 })).toThrow(/go with --from-dense/);
    expect(fs.existsSync(out('z'))).toBe(false);
  });

  test('f16 refuses values beyond its range', () => {
    const src = out('big');
    convertCheckpoint(t.dsmoe, src, { dtype: 'f32' });
    const ck = loadCheckpoint(src);
    ck.params[ck.layout.tensors[1].offset] = 1e6;
    saveCheckpoint(src, { config: ck.config, params: ck.params });
    expect(() => convertCheckpoint(src, out('big16'),
      { dtype: 'f16' })).toThrow(/"layers\.0\.attn_norm\.weight" holds 1000000, beyond fp16's range/);
  });
});
