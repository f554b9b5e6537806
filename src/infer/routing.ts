// Parsing `--routing` for generate / eval / bench (DESIGN.md §1.3):
//
//   --routing topk:2                              both layer kinds
//   --routing attention=dense,mlp=threshold:0.48  each kind; a kind left out keeps the default
//   --routing mlp=topk:1                          (att= / attn= are accepted for attention)
//
// Strategies: dense | topk:K | threshold:ε | threshold-topk:ε, checked against the model's
// expert counts (K ≤ E). Errors are one line naming the part at fault.
import { routingError } from '../model/config';
import type { ModelConfig } from '../native/addon';

export interface Routing {
  attention: string;
  mlp: string;
}

const KINDS: Record<string, keyof Routing> = { attention: 'attention', attn: 'attention', att: 'attention', mlp: 'mlp' };

/** The model's default routing (config.json `routing`, else dense). */
export function defaultRouting(config: ModelConfig): Routing {
  return { attention: config.routing?.attention ?? 'dense', mlp: config.routing?.mlp ?? 'dense' };
}

function check(kind: keyof Routing, s: string, config: ModelConfig, part: string): void {
  const E = kind === 'attention' ? config.attention.n_experts : config.mlp.n_experts;
  const err = routingError(s, E);
  if (err) {
    const m = /^topk:(\d+)$/.exec(s);
    if (m && Number(m[1]) > E)
      throw new Error(`--routing ${part}: K = ${m[1]} is more than the ${E} ${kind === 'attention' ? 'attention' : 'MLP'} experts of this model`);
    throw new Error(`--routing ${part}: ${err}`);
  }
}

/** Parses a `--routing` value over the model's defaults; undefined gives the defaults (checked too). */
export function parseRouting(value: string | undefined, config: ModelConfig): Routing {
  const r = defaultRouting(config);
  if (value === undefined) {
    check('attention', r.attention, config, `(config.json routing.attention) "${r.attention}"`);
    check('mlp', r.mlp, config, `(config.json routing.mlp) "${r.mlp}"`);
    return r;
  }
  const v = value.trim();
  if (v === '') throw new Error('--routing: empty value (expected e.g. "topk:2" or "attention=dense,mlp=threshold:0.48")');
  if (!v.includes('=')) {
    check('attention', v, config, `"${v}" (attention)`);
    check('mlp', v, config, `"${v}" (mlp)`);
    return { attention: v, mlp: v };
  }
  const seen = new Set<string>();
  for (const raw of v.split(',')) {
    const part = raw.trim();
    const eq = part.indexOf('=');
    if (eq < 0) throw new Error(`--routing: "${part}" is not KIND=STRATEGY (kinds: attention, mlp), in "${value}"`);
    const key = part.slice(0, eq).trim().toLowerCase(), s = part.slice(eq + 1).trim();
    const kind = KINDS[key];
    if (!kind) throw new Error(`--routing: unknown layer kind "${part.slice(0, eq).trim()}" in "${part}" (expected attention or mlp)`);
    if (seen.has(kind)) throw new Error(`--routing: ${kind} is given twice in "${value}"`);
    seen.add(kind);
    check(kind, s, config, `"${part}"`);
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
