// `--routing attention=…,mlp=…`: the default inference strategies stored in config.json.
import { routingError, type ModelConfig } from '../model/config';

const KINDS = ['attention', 'mlp'] as const;
type Kind = (typeof KINDS)[number];

/** Checks one strategy string for a layer of `experts` experts; returns an error message or undefined. */
export function strategyError(s: string, experts: number): string | undefined {
  const m = /^threshold(?:-topk)?:(.*)$/.exec(s);
  if (m) {
    const eps = Number(m[1]);
    if (m[1].trim() === '' || !Number.isFinite(eps) || eps < 0) return `"${s}": ε must be a finite number ≥ 0, got "${m[1]}"`;
  }
  const k = /^topk:(.*)$/.exec(s);
  if (k && !/^\d+$/.test(k[1])) return `"${s}": K must be a whole number in 1..${experts}, got "${k[1]}"`;
  return routingError(s, experts);
}

/**
 * Parses `attention=S,mlp=S` (either part may be left out; a bare `S` sets both) against a config's
 * expert counts. Returns the routing to store; errors name the part at fault.
 */
export function parseRoutingFlag(text: string, c: ModelConfig): { attention: string; mlp: string } {
  const out = { ...c.routing };
  const experts: Record<Kind, number> = { attention: c.attention.n_experts, mlp: c.mlp.n_experts };
  const parts = text.split(',').map((p) => p.trim());
  if (parts.some((p) => p === '')) throw new Error(`--routing "${text}": empty part (expected attention=S,mlp=S)`);
  const seen = new Set<string>();
  for (const part of parts) {
    const eq = part.indexOf('=');
    const kinds: readonly Kind[] = eq < 0 && parts.length === 1 ? KINDS : [part.slice(0, eq).trim() as Kind];
    if (eq < 0 && parts.length > 1) throw new Error(`--routing: "${part}" needs a layer kind (attention=${part} or mlp=${part})`);
    const value = eq < 0 ? part : part.slice(eq + 1).trim();
    for (const kind of kinds) {
      if (!KINDS.includes(kind)) throw new Error(`--routing: unknown layer kind "${kind}" in "${part}" (expected attention or mlp)`);
      if (seen.has(kind)) throw new Error(`--routing: ${kind} is given twice`);
      seen.add(kind);
      const err = strategyError(value, experts[kind]);
      if (err) throw new Error(`--routing ${kind}=${value}: ${err}`);
      out[kind] = value;
    }
  }
  return out;
}
