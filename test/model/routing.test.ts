// The one routing grammar (src/model/routing.ts): strategies accepted exactly when the native
// engine accepts them, and the --routing flag every command parses.
import { buildConfig, validateConfig } from '../../src/model/config';
import { parseRouting, parseStrategy, strategyError } from '../../src/model/routing';
import { addon } from '../helpers';

const config = buildConfig({ preset: 'tiny', tokenizerVocab: 64 });  // 4 attention and 4 MLP experts
const weights = new Float32Array(addon.modelLayout(config).totalParams);

/** Whether the engine takes `s` as the attention strategy of a session. */
function nativeAccepts(s: string): boolean {
  try {
    addon.createSession({ config, weights, batch: 1, maxLen: 4, routing: { attention: s, mlp: 'dense' } });
    return true;
  } catch {
    return false;
  }
}

const CANDIDATES = [
  'dense', 'Dense', 'dense:1', '', 'sparse', 'topk', 'topk:', 'topk:0', 'topk:1', 'topk:4', 'topk:5', 'topk:02',
  'topk:1.0', 'topk:+1',
  'topk:-1', 'topk: 1', 'topk:1e0', 'threshold', 'threshold:', 'threshold:0', 'threshold:0.48', 'threshold:.5',
  'threshold:5.',
  'threshold:1e-3', 'threshold:1E3', 'threshold:+1', 'threshold:-0', 'threshold:-1', 'threshold:1e', 'threshold:1e+',
  'threshold:.',
  'threshold:inf', 'threshold:nan', 'threshold:0x1p3', 'threshold: 1', 'threshold:1 ', 'threshold:1e400',
  'threshold:1e-400',
  'threshold:1e-310', 'threshold:1e-300', 'threshold:1..2', 'threshold:1-2', 'threshold-topk:0.3',
  'threshold-topk:-0.3', 'threshold_topk:1',
  'top-k:2', 'threshold:0.48:1',
];

describe('routing strategies', () => {
  test.each(CANDIDATES)('"%s" is accepted here exactly when the native engine accepts it', (s) => {
    expect(strategyError(s, 4) === undefined).toBe(nativeAccepts(s));
  });

  test('parsed values', () => {
    expect(parseStrategy('threshold:1e-3', 4)).toEqual({ ok: true, strategy: { kind: 'threshold', eps: 1e-3 } });
    expect(parseStrategy('topk:3', 4)).toEqual({ ok: true, strategy: { kind: 'topk', k: 3 } });
    expect(parseStrategy('threshold-topk:.25', 4)).toEqual({ ok: true,
      strategy: { kind: 'threshold-topk', eps: 0.25 } });
    expect(parseStrategy('dense', 1)).toEqual({ ok: true, strategy: { kind: 'dense' } });
  });

  test('messages name the value and the rule', () => {
    expect(strategyError('topk:5', 4)).toBe('"topk:5": K must be in 1..4 (the layer\'s experts)');
    expect(strategyError('topk:5', 4, 'mlp')).toBe('"topk:5": K = 5 is more than the 4 MLP experts of this model');
    expect(strategyError('topk:x', 4)).toBe('"topk:x": K must be a whole number in 1..4, got "x"');
    expect(strategyError('threshold:-1', 4)).toBe('"threshold:-1": ε must be a finite number ≥ 0, got "-1"');
    expect(strategyError('fast',
      4)).toMatch(/^"fast" is not a routing strategy \(dense, topk:K, threshold:ε, threshold-topk:ε\)$/);
    expect(strategyError(undefined, 4)).toBe('missing');
    expect(strategyError(3, 4)).toMatch(/must be a string/);
  });

  test('config.json routing takes the same grammar (threshold:1e-3 was refused before)', () => {
    expect(validateConfig({ ...config, routing: { attention: 'threshold:1e-3',
      mlp: 'threshold:.5' } }).routing.attention).toBe('threshold:1e-3');
    expect(() => validateConfig({ ...config, routing: { attention: 'threshold:inf',
      mlp: 'dense' } })).toThrow(/routing\.attention: .*ε must be a finite number/);
  });
});

describe('--routing', () => {
  test('a bare strategy sets both kinds; kind=strategy parts set one; the rest keeps the default', () => {
    expect(parseRouting(undefined, config)).toEqual(config.routing);
    expect(parseRouting('topk:2', config)).toEqual({ attention: 'topk:2', mlp: 'topk:2' });
    expect(parseRouting('mlp=threshold:1e-3', config)).toEqual({ attention: config.routing.attention,
      mlp: 'threshold:1e-3' });
    expect(parseRouting(' attn = dense , MLP=topk:1 ', config)).toEqual({ attention: 'dense', mlp: 'topk:1' });
    expect(parseRouting('att=topk:4', config)).toEqual({ attention: 'topk:4', mlp: config.routing.mlp });
  });

  test.each([
    ['', /--routing: empty value/],
    ['attention=dense,,mlp=dense', /--routing "attention=dense,,mlp=dense": empty part/],
    ['dense,topk:2', /--routing: "dense" needs a layer kind \(attention=dense or mlp=dense\)/],
    ['experts=dense', /--routing: unknown layer kind "experts" in "experts=dense"/],
    ['mlp=dense,mlp=topk:1', /--routing: mlp is given twice/],
    ['attention=top2', /--routing attention=top2: "top2" is not a routing strategy/],
    ['mlp=topk:9', /--routing mlp=topk:9: "topk:9": K = 9 is more than the 4 MLP experts of this model/],
    ['topk:0', /--routing topk:0: "topk:0": K must be in 1\.\.4/],
  ])('"%s" is refused naming the part', (value, re) => {
    expect(() => parseRouting(value, config)).toThrow(re);
  });
});
