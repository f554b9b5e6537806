// Plain double-precision reference of the DS-MoE forward with sparse routing (DESIGN.md §1.1, §1.3),
// written for clarity: a model whose unselected experts' scores are zeroed. Routers are linear, or
// two-layer (router_hidden = h: softmax(W_out · gelu_erf(W_hidden · x))). One call processes all
// sequences together (as one prefill does), so threshold-topk's K is per call.
import type { ModelConfig, ModelLayout } from '../../src/native/addon';

export type Strategy =
  | { kind: 'dense' } | { kind: 'topk'; k: number } | { kind: 'threshold'; eps: number }
  | { kind: 'threshold-topk'; eps: number };

export function parseStrategy(s: string): Strategy {
  if (s === 'dense') return { kind: 'dense' };
  const [name, arg] = s.split(':');
  if (name === 'topk') return { kind: 'topk', k: Number(arg) };
  if (name === 'threshold' || name === 'threshold-topk') return { kind: name, eps: Number(arg) };
  throw new Error(`bad strategy ${s}`);
}

/** erf to ~1e-10: Taylor series below 3, asymptotic erfc above. */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = x, sum = x;
    for (let n = 1; n < 60; n++) {
      term *= (-x * x) / n;
      sum += term / (2 * n + 1);
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  const t = 1 / (2 * ax * ax);
  const erfc = (Math.exp(-ax * ax) / (ax * Math.sqrt(Math.PI))) * (1 - t + 3 * t * t - 15 * t * t * t + 105 * t ** 4);
  return Math.sign(x) * (1 - erfc);
}

function gelu(x: number, tanh: boolean): number {
  if (tanh) return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

/** Expert indices selected for one token (descending score, ties to the lower index). */
function topk(p: number[], k: number): number[] {
  return p.map((v, e) => e).sort((a, b) => p[b] - p[a] || a - b).slice(0, k);
}
function thresholdCount(p: number[], eps: number): number {
  const E = p.length;
  return Math.max(1, p.filter((v) => E * v > eps).length);
}

/** Active sets for every token of a layer (all tokens of the call together). */
export function select(probs: number[][], s: Strategy): number[][] {
  const E = probs[0].length;
  switch (s.kind) {
    case 'dense': return probs.map(() => Array.from({ length: E }, (_, e) => e));
    case 'topk': return probs.map((p) => topk(p, s.k));
    case 'threshold': return probs.map((p) => topk(p, thresholdCount(p, s.eps)));
    case 'threshold-topk': {
      const mean = probs.reduce((a, p) => a + thresholdCount(p, s.eps), 0) / probs.length;
      const K = Math.min(E, Math.max(1, Math.floor(mean + 0.5)));
      return probs.map((p) => topk(p, K));
    }
  }
}

export interface RefResult {
  /** [seq][pos][V] */
  logits: number[][][];
  /** [layer][E]: tokens that selected each expert */
  attUsage: number[][];
  mlpUsage: number[][];
  /** [layer][token] router probabilities (empty when E = 1) */
  attProbs: number[][][];
  mlpProbs: number[][][];
}

/** seqs: token ids per sequence (different lengths allowed). */
export function referenceForward(c: ModelConfig, layout: ModelLayout, params: ArrayLike<number>, seqs: number[][],
  routing: { attention: string; mlp: string }): RefResult {
  const D = c.d_model, V = c.vocab_size, Ea = c.attention.n_experts, H = c.attention.n_heads;
  const G = c.attention.n_kv_heads, dh = c.attention.head_dim, HD = H * dh, F = c.mlp.expert_dim, Em = c.mlp.n_experts;
  const tanh = c.mlp.activation === 'gelu_tanh';
  const T = (name: string) => {
    const t = layout.tensors.find((x) => x.name === name);
    if (!t) throw new Error(`no tensor ${name}`);
    return (i: number) => params[t.offset + i];
  };
  // y[r] = Σ_j W[base + r·k + j] x[j]
  const matvec = (W: (i: number) => number, base: number, rows: number, k: number, x: number[]) =>
    Array.from({ length: rows }, (_, r) => { let s = 0; for (let j = 0; j < k; j++) s += W(base + r * k +
      j) * x[j]; return s; });
  const rmsnorm = (x: number[], w: (i: number) => number) => {
    const ms = x.reduce((a, v) => a + v * v, 0) / D;
    const r = 1 / Math.sqrt(ms + c.norm_eps);
    return x.map((v, j) => v * r * w(j));
  };
  const rope = (x: number[], heads: number, pos: number) => {
    const half = dh / 2, out = x.slice();
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < half; i++) {
        const a = pos * Math.pow(c.rope_theta, (-2 * i) / dh);
        const x0 = x[h * dh + i], x1 = x[h * dh + i + half];
        out[h * dh + i] = x0 * Math.cos(a) - x1 * Math.sin(a);
        out[h * dh + i + half] = x1 * Math.cos(a) + x0 * Math.sin(a);
      }
    return out;
  };
  const softmax = (z: number[]) => {
    const m = Math.max(...z);
    const e = z.map((v) => Math.exp(v - m));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  };
  // Flatten tokens: index → (seq, pos)
  const toks: { s: number; p: number; id: number }[] = [];
  seqs.forEach((seq, s) => seq.forEach((id, p) => toks.push({ s, p, id })));
  const emb = T('embed.weight');
  let h = toks.map((t) => Array.from({ length: D }, (_, j) => emb(t.id * D + j)));
  const res: RefResult = { logits: [], attUsage: [], mlpUsage: [], attProbs: [], mlpProbs: [] };
  // Router weights per token: S_e where selected, else 0; usage counts.
  const Rh = c.router_hidden ?? 0;
  const route = (xs: number[][], E: number, prefix: string, strategy: string, usage: number[][],
    probsOut: number[][][]) => {
    if (E === 1) { usage.push([xs.length]); probsOut.push([]); return xs.map(() => [1]); }
    const logits = (x: number[]) => {
      if (Rh === 0) return matvec(T(prefix + 'router.weight'), 0, E, D, x);
      const a = matvec(T(prefix + 'router.hidden.weight'), 0, Rh, D, x).map((z) => gelu(z, false));
      return matvec(T(prefix + 'router.output.weight'), 0, E, Rh, a);
    };
    const probs = xs.map((x) => softmax(logits(x)));
    probsOut.push(probs);
    const sel = select(probs, parseStrategy(strategy));
    const u = new Array(E).fill(0);
    const w = probs.map((p,
      t) => { const row = new Array(E).fill(0); for (const e of sel[t]) { row[e] = p[e]; u[e]++; } return row; });
    usage.push(u);
    return w;
  };
  for (let l = 0; l < c.n_layers; l++) {
    const pre = `layers.${l}.`;
    // MoA
    const xa = h.map((x) => rmsnorm(x, T(pre + 'attn_norm.weight')));
    const wa = route(xa, Ea, pre + 'attn.', routing.attention, res.attUsage, res.attProbs);
    const Wq = T(pre + 'attn.q_proj.weight'), Wk = T(pre + 'attn.k_proj.weight'), Wv = T(pre + 'attn.v_proj.weight');
    const Wo = T(pre + 'attn.o_proj.weight');
    const q = xa.map((x, i) => rope(matvec(Wq, 0, Ea * HD, D, x), Ea * H, toks[i].p));
    const k = xa.map((x, i) => rope(matvec(Wk, 0, G * dh, D, x), G, toks[i].p));
    const v = xa.map((x) => matvec(Wv, 0, G * dh, D, x));
    h = h.map((hrow, i) => {
      const out = hrow.slice();
      for (let e = 0; e < Ea; e++) {
        if (wa[i][e] === 0) continue;
        const att = new Array(HD).fill(0);
        for (let j = 0; j < H; j++) {
          const g = Math.floor(j / (H / G)), head = e * H + j;
          const keys = toks.map((t, m) => m).filter((m) => toks[m].s === toks[i].s && toks[m].p <= toks[i].p);
          const sc = keys.map((m) => { let s = 0; for (let d = 0; d < dh; d++) s += q[i][head * dh + d] * k[m][g * dh +
            d]; return s / Math.sqrt(dh); });
          const p = softmax(sc);
          keys.forEach((m, n) => { for (let d = 0; d < dh; d++) att[j * dh + d] += p[n] * v[m][g * dh + d]; });
        }
        const o = matvec(Wo, e * D * HD, D, HD, att);
        for (let d = 0; d < D; d++) out[d] += wa[i][e] * o[d];
      }
      return out;
    });
    // MLP
    const xm = h.map((x) => rmsnorm(x, T(pre + 'mlp_norm.weight')));
    const wm = route(xm, Em, pre + 'mlp.', routing.mlp, res.mlpUsage, res.mlpProbs);
    const Wu = T(pre + 'mlp.up_proj.weight'), Wd = T(pre + 'mlp.down_proj.weight');
    h = h.map((hrow, i) => {
      const out = hrow.slice();
      for (let e = 0; e < Em; e++) {
        if (wm[i][e] === 0) continue;
        const u = matvec(Wu, e * F * D, F, D, xm[i]).map((z) => gelu(z, tanh));
        const y = matvec(Wd, e * D * F, D, F, u);
        for (let d = 0; d < D; d++) out[d] += wm[i][e] * y[d];
      }
      return out;
    });
  }
  const head = T(c.tie_embeddings ? 'embed.weight' : 'lm_head.weight');
  res.logits = seqs.map(() => []);
  h.forEach((x, i) => res.logits[toks[i].s].push(matvec(head, 0, V, D, rmsnorm(x, T('final_norm.weight')))));
  return res;
}
