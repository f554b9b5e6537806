// A deterministic stand-in for the engine's trainer (createTrainer / NativeTrainer), for testing the
// training loop without the addon. It owns its parameters, gradients and AdamW moments like the
// real one; its loss depends on the parameters and the tokens; a step computes a gradient, clips it
// and applies AdamW. Only the CPU is usable; tensors move in and out by name, as with the engine.
import { layoutFromConfig } from '../../src/model/layout';
import type { BatchArgs, ModelConfig, OptimArgs, StepStats } from '../../src/native/types/model';
import type { TensorSlot } from '../../src/native/types/trainer';
import type { ModelBackend, TrainerHandle } from '../../src/train/trainer';

export interface FakeOptions {
  /** At this AdamW step the loss is NaN and the parameters are corrupted, as a diverging run's would be. */
  nanAtStep?: number;
  /** Milliseconds each step takes. */
  stepMs?: number;
  /** Milliseconds the first step of each model takes instead (a real model's warm-up). */
  firstStepMs?: number;
  /**
   * A virtual clock (milliseconds; the test points performance.now at it): a step advances it by
   * its duration and returns at once, so step counts under a --time budget are exact, whatever
   * the machine's load.
   */
  clock?: FakeClock;
}

export interface FakeClock {
  now: number;
}

export interface FakeBackend extends ModelBackend {
  steps: number;
  evals: number;
  threads: number | undefined;
  /** Tensors loaded into and read out of the trainers, as "slot:name" (the latest trainer's). */
  loaded: string[];
  read: string[];
}

function lossAndGrad(params: Float32Array, grads: Float32Array | null, a: BatchArgs): { lm: number; n: number } {
  const n = params.length;
  const total = a.tokens.length;
  let loss = 0, count = 0;
  for (let j = 0; j < total; j++) {
    if (a.targets[j] < 0) continue;
    const idx = (Math.imul(a.tokens[j] + 1, 0x9e3779b1) ^ Math.imul(a.targets[j] + 7, 0x85ebca6b) ^ (j % a.seq)) >>> 0;
    const i = idx % n;
    const r = params[i] - (a.targets[j] % 13) * 0.01;
    loss += r * r;
    if (grads) grads[i] += 2 * r;
    count++;
  }
  if (grads) for (let i = 0; i < n; i++) grads[i] /= Math.max(1, count);
  return { lm: 1 + loss / Math.max(1, count), n: count };
}

function stats(lm: number, params: Float32Array, tokens: number, gradNorm: number): StepStats {
  let aux = 0;
  for (let i = 0; i < 16; i++) aux += params[i] * params[i];
  aux *= 1e-3;
  return {
    loss: lm + aux, lmLoss: lm, auxLoss: aux, gradNorm, tokens,
    attEntropy: 1.3, attCondEntropy: 0.4, mlpEntropy: 2.7, mlpCondEntropy: 0.9,
  };
}

export function fakeBackend(opts: FakeOptions = {}): FakeBackend {
  const b: FakeBackend = {
    steps: 0,
    evals: 0,
    threads: undefined,
    loaded: [],
    read: [],
    modelLayout: (config: ModelConfig) => layoutFromConfig(config),
    setThreads: (t: number) => (b.threads = t),
    versions: () => ({ addon_isa: 'fake' }),
    createTrainer: ({ config, device = 'cpu' }): TrainerHandle => {
      if (device !== 'cpu')
        throw new Error(`createTrainer: device ${device === 'cuda' ? 'cuda:0' : device} is not usable: `
          + 'the fake engine has no GPU (use --device cpu)');
      const layout = layoutFromConfig(config);
      const n = layout.totalParams;
      const params = new Float32Array(n), grads = new Float32Array(n);
      const adamM = new Float32Array(n), adamV = new Float32Array(n);
      const slots: Record<TensorSlot, Float32Array> = { param: params, grad: grads, adamM, adamV };
      const byName = new Map(layout.tensors.map((t) => [t.name, t]));
      const entry = (name: string) => {
        const t = byName.get(name);
        if (!t) throw new RangeError(`no tensor "${name}" in this model`);
        return t;
      };
      b.loaded = [];
      b.read = [];
      const decay = new Uint8Array(n);
      for (const t of layout.tensors) if (t.decay) decay.fill(1, t.offset, t.offset + t.size);
      const evaluate = (a: BatchArgs) => {
        const { lm, n: count } = lossAndGrad(params, null, a);
        return stats(lm, params, count, 0);
      };
      const step = (a: BatchArgs & OptimArgs): StepStats => {
        b.steps++;
        grads.fill(0);
        const { lm, n: count } = lossAndGrad(params, grads, a);
        let norm = 0;
        for (let i = 0; i < n; i++) norm += grads[i] * grads[i];
        norm = Math.sqrt(norm);
        const scale = a.clip > 0 && norm > a.clip ? a.clip / norm : 1;
        const bc1 = 1 - a.beta1 ** a.step, bc2 = 1 - a.beta2 ** a.step;
        for (let i = 0; i < n; i++) {
          const g = grads[i] * scale;
          adamM[i] = a.beta1 * adamM[i] + (1 - a.beta1) * g;
          adamV[i] = a.beta2 * adamV[i] + (1 - a.beta2) * g * g;
          const upd = adamM[i] / bc1 / (Math.sqrt(adamV[i] / bc2) + a.eps) + (decay[i] ? a.weightDecay * params[i] : 0);
          params[i] -= a.lr * upd;
        }
        grads.fill(0);
        if (opts.nanAtStep === a.step) {
          params.fill(NaN, 0, 64);
          return stats(NaN, params, count, NaN);
        }
        return stats(lm, params, count, norm);
      };
      let trainSteps = 0;
      const later = <T>(f: () => T, ms = opts.stepMs) => new Promise<T>((resolve, reject) => {
        const run = () => { try { resolve(f()); } catch (e) { reject(e); } };
        if (opts.clock) { opts.clock.now += ms ?? 0; setImmediate(run); }
        else if (ms) setTimeout(run, ms);
        else setImmediate(run);
      });
      return {
        device: 'cpu',
        totalParams: n,
        init: ({ seed }) => {
          for (let i = 0; i < n; i++) params[i] = 0.02 * Math.sin(i * 0.731 + seed * 1.37);
          adamM.fill(0);
          adamV.fill(0);
        },
        loadTensor: ({ name, slot = 'param', data }) => {
          const t = entry(name);
          if (data.length !== t.size)
            throw new RangeError(`loadTensor "${name}": ${data.length} values, the tensor has ${t.size}`);
          slots[slot].set(data, t.offset);
          b.loaded.push(`${slot}:${name}`);
        },
        readTensor: ({ name, slot = 'param' }) => {
          const t = entry(name);
          b.read.push(`${slot}:${name}`);
          return slots[slot].slice(t.offset, t.offset + t.size);
        },
        trainStepAsync: (a) => later(() => step(a),
          trainSteps++ === 0 && opts.firstStepMs ? opts.firstStepMs : opts.stepMs),
        lossAndGradAsync: (a) => later(() => {
          grads.fill(0);
          const { lm, n: count } = lossAndGrad(params, grads, a);
          return stats(lm, params, count, 0);
        }),
        reduceGradients: () => {},
        applyOptimizer: () => {
          throw new Error('fake trainer: applyOptimizer is not implemented (the loop uses trainStepAsync)');
        },
        evaluateAsync: (a) => later(() => { b.evals++; return evaluate(a); }),
      };
    },
  };
  return b;
}
