// Routing strategies (DESIGN.md §1.3) and the one `--routing` grammar every command uses.
//
// A strategy is `dense`, `topk:K`, `threshold:ε` or `threshold-topk:ε`; this module accepts exactly
// the strings the native engine accepts (native/infer/routing_spec.cc: ε is the whole argument read
// as a C double — digits, '.', 'e', signs — finite, ≥ 0, not out of range; K is digits only, 1..E).
// test/model/routing.test.ts holds the two side by side.
//
//   --routing topk:2                              both layer kinds
//   --routing attention=dense,mlp=threshold:0.48  each kind; a kind left out keeps the default
//   --routing mlp=topk:1                          (att= / attn= are accepted for attention)
import type { Routing } from '../native/types/infer';
import type { ModelConfig } from './model-config';

export type { Routing };

export type Strategy =
  | { kind: 'dense' }
  | { kind: 'topk'; k: number }
  | { kind: 'threshold' | 'threshold-topk'; eps: number };

const STRATEGIES = 'dense, topk:K, threshold:ε, threshold-topk:ε';
/** Smallest normal double: strtod reports ERANGE below it, and the engine refuses the value. */
const DBL_MIN = 2.2250738585072014e-308;

/** The whole string as strtod reads it in the engine, else NaN. */
function cNumber(s: string): number {
  if (s === '' || /[^0-9.eE+-]/.test(s) || !/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return NaN;
  const v = Number(s);
  const mantissaNonZero = /[1-9]/.test(s.split(/[eE]/)[0]);
  if (!Number.isFinite(v) || (v === 0 ? mantissaNonZero : Math.abs(v) < DBL_MIN)) return NaN;  // ERANGE
  return v;
}

type Parsed = { ok: true; strategy: Strategy } | { ok: false; error: string };

/** Parses one strategy for a layer of `experts` experts (`kind` names it in the K-range message). */
export function parseStrategy(s: unknown, experts: number, kind?: 'attention' | 'mlp'): Parsed {
  const fail = (error: string): Parsed => ({ ok: false, error });
  if (s === undefined) return fail('missing');
  if (typeof s !== 'string') return fail(`must be a string such as "dense", "topk:2", "threshold:0.48", got ` +
    `${JSON.stringify(s)}`);
  if (s === 'dense') return { ok: true, strategy: { kind: 'dense' } };
  const colon = s.indexOf(':');
  const name = colon < 0 ? s : s.slice(0, colon), arg = colon < 0 ? '' : s.slice(colon + 1);
  if (colon < 0 || !['topk', 'threshold', 'threshold-topk'].includes(name)) return fail(`"${s}" is not a routing ` +
    `strategy (${STRATEGIES})`);
  if (name === 'topk') {
    if (!/^\d+$/.test(arg)) return fail(`"${s}": K must be a whole number in 1..${experts}, got "${arg}"`);
    const k = Number(arg);
    if (k > experts && kind) return fail(`"${s}": K = ${k} is more than the ` +
      `${experts} ${kind === 'attention' ? 'attention' : 'MLP'} experts of this model`);
    if (k < 1 || k > experts) return fail(`"${s}": K must be in 1..${experts} (the layer's experts)`);
    return { ok: true, strategy: { kind: 'topk', k } };
  }
  const eps = cNumber(arg);
  if (!(eps >= 0)) return fail(`"${s}": ε must be a finite number ≥ 0, got "${arg}"`);
  return { ok: true, strategy: { kind: name as 'threshold' | 'threshold-topk', eps } };
}

/** An error message for a strategy string, or undefined when the engine accepts it. */
export function strategyError(s: unknown, experts: number, kind?: 'attention' | 'mlp'): string | undefined {
  const p = parseStrategy(s, experts, kind);
  return p.ok ? undefined : p.error;
}

const KINDS: Record<string, keyof Routing> = { attention: 'attention', attn: 'attention', att: 'attention',
  mlp: 'mlp' };

/** The model's default routing (config.json `routing`, else dense). */
export function defaultRouting(config: ModelConfig): Routing {
  return { attention: config.routing?.attention ?? 'dense', mlp: config.routing?.mlp ?? 'dense' };
}

function check(kind: keyof Routing, s: string, config: ModelConfig, part: string): void {
  const E = kind === 'attention' ? config.attention.n_experts : config.mlp.n_experts;
  const err = strategyError(s, E, kind);
  if (err) throw new Error(`--routing ${part}: ${err}`);
}

/**
 * Parses a `--routing` value over the model's default routing (undefined: the defaults, checked
 * too): a bare strategy sets both kinds, `kind=strategy` parts set one each. Errors are one line
 * naming the part at fault.
 */
export function parseRouting(value: string | undefined, config: ModelConfig): Routing {
  const r = defaultRouting(config);
  if (value === undefined) {
    check('attention', r.attention, config, `(config.json routing.attention) "${r.attention}"`);
    check('mlp', r.mlp, config, `(config.json routing.mlp) "${r.mlp}"`);
    return r;
  }
  const v = value.trim();
  if (v === '') throw new Error('--routing: empty value (expected e.g. "topk:2" or ' +
    '"attention=dense,mlp=threshold:0.48")');
  const parts = v.split(',').map((p) => p.trim());
  if (parts.length === 1 && !v.includes('=')) {
    check('attention', v, config, v);
    check('mlp', v, config, v);
    return { attention: v, mlp: v };
  }
  if (parts.some((p) => p === '')) throw new Error(`--routing "${value}": empty part (expected attention=S,mlp=S)`);
  const seen = new Set<string>();
  for (const part of parts) {
    const eq = part.indexOf('=');
    if (eq < 0) throw new Error(`--routing: "${part}" needs a layer kind (attention=${part} or mlp=${part})`);
    const key = part.slice(0, eq).trim(), s = part.slice(eq + 1).trim();
    const kind = KINDS[key.toLowerCase()];
    if (!kind) throw new Error(`--routing: unknown layer kind "${key}" in "${part}" (expected attention or mlp)`);
    if (seen.has(kind)) throw new Error(`--routing: ${kind} is given twice in "${value}"`);
    seen.add(kind);
    check(kind, s, config, `${kind}=${s}`);
    r[kind] = s;
  }
  return r;
}

/** "attention=…,mlp=…" (the form --routing takes). */
export function formatRouting(r: Routing): string {
  return `attention=${r.attention},mlp=${r.mlp}`;
}

/** A short label: "threshold:0.48" when both kinds route alike, else "att … · mlp …" (tables, charts). */
export function routingLabel(r: Routing): string {
  return r.attention === r.mlp ? r.attention : `att ${r.attention} · mlp ${r.mlp}`;
}
