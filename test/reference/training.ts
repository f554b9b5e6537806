// Plain double-precision reference of the training forward's losses (DESIGN.md §1.2), written for
// clarity on top of the sparse-routing reference forward (./infer):
//   dsmoe  every expert weighted by S; aux = α_att Σ_layers L_MI(att) + α_mlp Σ_layers L_MI(mlp),
//          L_MI = −H(e) + H(e|X)
//   smoe   the top-k experts of each token weighted by their raw S (not renormalised): the forward
//          of routing topk:k; aux = switch_alpha Σ_layers (E · Σ_e f_e · P_e) over both kinds, f_e
//          the share of the N·k (token, slot) assignments that went to e, P_e the mean of S_e
//   dense  one expert everywhere, no router, no aux loss
// One call is one micro-batch: all sequences' tokens together form the X of the losses.
import type { ModelConfig, ModelLayout } from '../../src/native/addon';
import { referenceForward } from './infer';

export interface TrainingRefResult {
  /** [seq][pos][V] */
  logits: number[][][];
  /** mean next-token cross-entropy over targets ≥ 0 */
  lmLoss: number;
  auxLoss: number;
  /** H(e) and H(e|X) averaged over layers (0 with one expert), as the model reports them */
  attEntropy: number;
  attCondEntropy: number;
  mlpEntropy: number;
  mlpCondEntropy: number;
  /** [layer][token] router probabilities, for checks on the top-k margins */
  attProbs: number[][][];
  mlpProbs: number[][][];
}

const plogp = (p: number) => (p > 0 ? p * Math.log(p) : 0);

/** H(e) and H(e|X) of one layer's router probabilities [token][E]. */
function entropies(probs: number[][]): { hE: number; hEX: number } {
  const E = probs[0].length, N = probs.length;
  const mean = new Array<number>(E).fill(0);
  let hEX = 0;
  for (const p of probs) p.forEach((v, e) => { mean[e] += v / N; hEX -= plogp(v) / N; });
  return { hE: -mean.reduce((a, v) => a + plogp(v), 0), hEX };
}

/** E · Σ_e f_e · P_e of one layer; usage[e] = tokens that selected e (each selects k experts). */
function switchLoss(probs: number[][], usage: number[], k: number): number {
  const E = probs[0].length, N = probs.length;
  let loss = 0;
  for (let e = 0; e < E; e++) {
    const f = usage[e] / (N * k);
    const P = probs.reduce((a, p) => a + p[e], 0) / N;
    loss += f * P;
  }
  return E * loss;
}

/** The training model's forward and losses on token sequences with their targets (same shapes). */
export function trainingForwardRef(c: ModelConfig, layout: ModelLayout, params: ArrayLike<number>,
  seqs: number[][], targets: number[][]): TrainingRefResult {
  const mode = c.training.mode;
  const Ea = c.attention.n_experts, Em = c.mlp.n_experts;
  const kA = Math.min(c.training.top_k, Ea), kM = Math.min(c.training.top_k, Em);
  const routing = mode === 'smoe'
    ? { attention: Ea > 1 ? `topk:${kA}` : 'dense', mlp: Em > 1 ? `topk:${kM}` : 'dense' }
    : { attention: 'dense', mlp: 'dense' };
  const r = referenceForward(c, layout, params, seqs, routing);

  let lm = 0, n = 0;
  r.logits.forEach((seq, s) => seq.forEach((z, p) => {
    const t = targets[s][p];
    if (t < 0) return;
    const m = Math.max(...z);
    const lse = m + Math.log(z.reduce((a, v) => a + Math.exp(v - m), 0));
    lm += lse - z[t];
    n++;
  }));

  const out: TrainingRefResult = {
    logits: r.logits, lmLoss: n ? lm / n : 0, auxLoss: 0, attEntropy: 0, attCondEntropy: 0, mlpEntropy: 0,
    mlpCondEntropy: 0, attProbs: r.attProbs, mlpProbs: r.mlpProbs,
  };
  const L = c.n_layers;
  for (let l = 0; l < L; l++) {
    if (Ea > 1) {
      const { hE, hEX } = entropies(r.attProbs[l]);
      out.attEntropy += hE / L;
      out.attCondEntropy += hEX / L;
      out.auxLoss += mode === 'smoe' ? c.training.switch_alpha * switchLoss(r.attProbs[l], r.attUsage[l], kA)
        : c.training.mi_alpha_att * (hEX - hE);
    }
    if (Em > 1) {
      const { hE, hEX } = entropies(r.mlpProbs[l]);
      out.mlpEntropy += hE / L;
      out.mlpCondEntropy += hEX / L;
      out.auxLoss += mode === 'smoe' ? c.training.switch_alpha * switchLoss(r.mlpProbs[l], r.mlpUsage[l], kM)
        : c.training.mi_alpha_mlp * (hEX - hE);
    }
  }
  return out;
}

/**
 * Smallest gap, over layers and tokens, between the k-th and (k+1)-th largest router probability:
 * fp32 and double select the same top-k experts when it is well above fp32 rounding.
 */
export function topkMargin(probs: number[][][], k: number): number {
  let gap = Infinity;
  for (const layer of probs)
    for (const p of layer) {
      if (p.length <= k) continue;
      const s = p.slice().sort((a, b) => b - a);
      gap = Math.min(gap, s[k - 1] - s[k]);
    }
  return gap;
}
