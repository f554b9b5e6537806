// Active parameters implied by a routing strategy (DESIGN.md §1.3): the non-embedding parameters a
// token touches, counted as the inference engine counts them: per layer the routers, W_k, W_v, the
// W_q[e]/W_o[e] of its active attention experts and the W_up[e]/W_down[e] of its active MLP experts
// (norms, embedding and LM head left out). Fixed by `dense` and `topk:K`; `threshold*` strategies
// depend on the data, so only bounds (one expert … all experts) can be given without running them.
import { paramCount, type ModelConfig } from './config';

export interface ActiveParams {
  routing: { attention: string; mlp: string };
  /** Whether the strategies fix the count (dense, topk:K, or a layer kind with one expert). */
  fixed: boolean;
  /** Active experts per token per layer of each kind (null when it depends on the data). */
  attExpertsPerToken: number | null;
  mlpExpertsPerToken: number | null;
  /** Mean active parameters per token (null when it depends on the data). */
  activeParamsPerToken: number | null;
  /** Active expert (q/o/up/down) parameters / all expert parameters (null when it depends on the data). */
  activeExpertShare: number | null;
  /** Bounds that always hold: the fewest (one expert per thresholded layer) and the most (all). */
  minParamsPerToken: number;
  maxParamsPerToken: number;
  /** Routers + k/v over all layers: touched by every token. */
  sharedParams: number;
  expertParams: number;
  /** Why the count is not fixed, when it is not. */
  note?: string;
}

/** Active experts a strategy fixes for a layer of E experts, or null when it depends on the data. */
export function fixedExperts(strategy: string, experts: number): number | null {
  if (experts === 1 || strategy === 'dense') return experts;
  const m = /^topk:(\d+)$/.exec(strategy);
  return m ? Math.min(Number(m[1]), experts) : null;
}

export function activeParams(c: ModelConfig, routing: { attention: string; mlp: string } = c.routing): ActiveParams {
  const p = paramCount(c), l = p.perLayer, L = c.n_layers;
  const Ea = c.attention.n_experts, Em = c.mlp.n_experts;
  const shared = L * (l.attnRouter + l.mlpRouter + l.kProj + l.vProj);
  const attPer = (l.qProj + l.oProj) / Ea, mlpPer = (l.upProj + l.downProj) / Em; // one expert's parameters
  const count = (ka: number, km: number) => shared + L * (ka * attPer + km * mlpPer);
  const ka = fixedExperts(routing.attention, Ea), km = fixedExperts(routing.mlp, Em);
  const fixed = ka !== null && km !== null;
  const total = fixed ? count(ka, km) : null;
  const open = [ka === null && `attention (${routing.attention})`, km === null &&
    `MLP (${routing.mlp})`].filter(Boolean);
  return {
    routing: { ...routing }, fixed, attExpertsPerToken: ka, mlpExpertsPerToken: km,
    activeParamsPerToken: total,
    activeExpertShare: fixed ? (total! - shared) / p.expertParams : null,
    minParamsPerToken: count(ka ?? 1, km ?? 1),
    maxParamsPerToken: count(ka ?? Ea, km ?? Em),
    sharedParams: shared, expertParams: p.expertParams,
    ...(fixed ? {} : { note: `threshold routing of ${open.join(' and ')} depends on the data: measure it with dsmoe ` +
      `eval or bench` }),
  };
}
