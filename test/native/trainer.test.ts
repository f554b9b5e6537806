// The engine-owned training state (native/model/trainer.h through createTrainer): it must give
// exactly what the model over caller buffers gives (same kernels, same order), split a step into
// lossAndGrad → reduceGradients → applyOptimizer without changing it, move tensors by name, and
// refuse bad names, sizes, slots and devices with errors that name them.
import type { ModelConfig, NativeTrainer, TrainingMode } from '../../src/native/addon';
import { addon, expectNativeError } from '../helpers';
import { tinyConfig as baseConfig } from './tiny-config';

// vocab 23 and 4 MLP experts: shapes other than the model tests' defaults.
function tinyConfig(mode: TrainingMode): ModelConfig {
  const c = baseConfig(mode, { vocab_size: 23, routing: { attention: 'dense', mlp: 'threshold:0.5' } });
  if (mode !== 'dense') c.mlp = { ...c.mlp, n_experts: 4 };
  return c;
}

const B = 2, T = 7, MICRO = 2;
const tokens = Int32Array.from({ length: MICRO * B * T }, (_, i) => (i * 7 + 3) % 23);
const targets = Int32Array.from({ length: MICRO * B * T }, (_, i) => (i % 9 === 4 ? -1 : (i * 5 + 1) % 23));
const batch = { tokens, targets, batch: B, seq: T, micro: MICRO };
const optim = (step: number) => ({ lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.01, clip: 0.5, step });

function allParams(t: NativeTrainer, config: ModelConfig, slot: 'param' | 'adamM' | 'adamV' = 'param'): Float32Array {
  const layout = addon.modelLayout(config);
  const out = new Float32Array(layout.totalParams);
  for (const ten of layout.tensors) out.set(t.readTensor({ name: ten.name, slot }), ten.offset);
  return out;
}

describe.each(['dsmoe', 'smoe', 'dense'] as TrainingMode[])('createTrainer (%s)', (mode) => {
  const config = tinyConfig(mode);

  test('three steps equal the model over caller buffers, bit for bit (losses, parameters, moments)', async () => {
    const n = addon.modelLayout(config).totalParams;
    const params = new Float32Array(n), grads = new Float32Array(n), m = new Float32Array(n), v = new Float32Array(n);
    addon.initParams({ config, params, seed: 11 });
    const model = addon.createModel({ config, params, grads, adamM: m, adamV: v });
    const trainer = addon.createTrainer({ config });
    trainer.init({ seed: 11 });
    expect(allParams(trainer, config)).toEqual(params);
    for (let step = 1; step <= 3; step++) {
      const a = await model.trainStepAsync({ ...batch, ...optim(step) });
      const b = await trainer.trainStepAsync({ ...batch, ...optim(step) });
      expect(b).toEqual(a);
    }
    expect(allParams(trainer, config)).toEqual(params);
    expect(allParams(trainer, config, 'adamM')).toEqual(m);
    expect(allParams(trainer, config, 'adamV')).toEqual(v);
    const ea = model.evaluate(batch), eb = await trainer.evaluateAsync(batch);
    expect(eb).toEqual(ea);
  });

  test('lossAndGrad → reduceGradients → applyOptimizer is trainStep', async () => {
    const one = addon.createTrainer({ config }), split = addon.createTrainer({ config });
    one.init({ seed: 5 });
    split.init({ seed: 5 });
    for (let step = 1; step <= 2; step++) {
      const a = await one.trainStepAsync({ ...batch, ...optim(step) });
      const s = await split.lossAndGradAsync(batch);
      split.reduceGradients();
      const { gradNorm } = split.applyOptimizer({ ...optim(step), loss: s.loss });
      expect(s.loss).toBe(a.loss);
      expect(gradNorm).toBe(a.gradNorm);
    }
    expect(allParams(split, config)).toEqual(allParams(one, config));
  });
});

describe('createTrainer tensors and errors', () => {
  const config = tinyConfig('dsmoe');

  test('loadTensor / readTensor round-trip one tensor per slot; the gradient is zero after a step', async () => {
    const t = addon.createTrainer({ config });
    t.init({ seed: 1 });
    const name = 'layers.1.mlp.up_proj.weight';
    const size = addon.modelLayout(config).tensors.find((x) => x.name === name)!.size;
    const data = Float32Array.from({ length: size }, (_, i) => Math.sin(i));
    for (const slot of ['param', 'adamM', 'adamV', 'grad'] as const) {
      t.loadTensor({ name, slot, data });
      expect(Array.from(t.readTensor({ name, slot }))).toEqual(Array.from(data));
    }
    await t.trainStepAsync({ ...batch, ...optim(1) });
    expect(t.readTensor({ name, slot: 'grad' }).every((x) => x === 0)).toBe(true);
    expect(t.device).toBe('cpu');
    expect(t.totalParams).toBe(addon.modelLayout(config).totalParams);
  });

  test('init after steps starts over: the seeded parameters and zero moments', async () => {
    const t = addon.createTrainer({ config });
    t.init({ seed: 4 });
    const first = allParams(t, config);
    await t.trainStepAsync({ ...batch, ...optim(1) });
    expect(allParams(t, config, 'adamV').some((x) => x !== 0)).toBe(true);
    t.init({ seed: 4 });
    expect(allParams(t, config)).toEqual(first);
    expect(allParams(t, config, 'adamM').every((x) => x === 0)).toBe(true);
    expect(allParams(t, config, 'adamV').every((x) => x === 0)).toBe(true);
  });

  test('a wrong size, an unknown tensor or slot, a bad or unusable device are clear errors', () => {
    const t = addon.createTrainer({ config });
    expectNativeError(() => t.loadTensor({ name: 'final_norm.weight', data: new Float32Array(3) }), 'RangeError',
      /has 3 elements but final_norm\.weight has 8/);
    expectNativeError(() => t.loadTensor({ name: 'final_norm.weight', data: new Float32Array(9) }), 'RangeError',
      /has 9 elements but final_norm\.weight has 8/);
    expectNativeError(() => t.readTensor({ name: 'layers.7.attn.q_proj.weight' }), 'RangeError',
      /no tensor "layers\.7\.attn\.q_proj\.weight"/);
    expectNativeError(() => t.readTensor({ name: 'embed.weight', slot: 'momentum' as never }), 'RangeError',
      /slot is "momentum"; expected param, grad, adamM or adamV/);
    expectNativeError(() => addon.createTrainer({ config, device: 'tpu' }), 'RangeError', /unknown device "tpu"/);
    const cuda = addon.cudaInfo();
    if (!cuda.available) {
      expectNativeError(() => addon.createTrainer({ config, device: 'cuda' }), 'Error', /device cuda:0 is not usable/);
    }
  });

  test('one call at a time: a second call while a step runs is refused', async () => {
    const t = addon.createTrainer({ config });
    t.init({ seed: 2 });
    const running = t.trainStepAsync({ ...batch, ...optim(1) });
    expect(() => t.readTensor({ name: 'embed.weight' })).toThrow(/busy/);
    await running;
    expect(t.readTensor({ name: 'embed.weight' }).length).toBe(23 * 8);
  });

  test('createSession runs inference over the live parameters, as openWeightsFromBuffer over a copy', async () => {
    const t = addon.createTrainer({ config });
    t.init({ seed: 9 });
    await t.trainStepAsync({ ...batch, ...optim(1) });
    const live = t.createSession({ batch: 1, routing: { attention: 'dense', mlp: 'topk:2' } });
    const copy = addon.openWeightsFromBuffer({ config, weights: allParams(t, config) })
      .createSession({ batch: 1, routing: { attention: 'dense', mlp: 'topk:2' } });
    const prompt = Int32Array.from([3, 1, 4, 1, 5, 9]);
    const a = new Float32Array(23), b = new Float32Array(23);
    live.prefill({ tokens: prompt, batch: 1, len: 6, logits: a });
    copy.prefill({ tokens: prompt, batch: 1, len: 6, logits: b });
    expect(a).toEqual(b);
    // A step changes the live weights the session reads.
    await t.trainStepAsync({ ...batch, ...optim(2) });
    live.reset();
    live.prefill({ tokens: prompt, batch: 1, len: 6, logits: b });
    expect(b).not.toEqual(a);
  });
});
