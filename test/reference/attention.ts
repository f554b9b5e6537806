// Plain references for causal MoA attention, written for clarity, in double (JS numbers). Each
// (b, h) materialises its full [Tq, Tk] score and probability matrices.
import type { AttentionShapeArgs } from '../../src/native/types/attention';

type Arr = ArrayLike<number>;

function layout(s: AttentionShapeArgs) {
  const { tq, tk, nHeads: hq, headsPerExpert: H, kvHeads: G, headDim: dh } = s;
  return {
    scale: s.scale ?? 1 / Math.sqrt(dh),
    q: (b: number, i: number, h: number, d: number) => ((b * tq + i) * hq + h) * dh + d,
    kv: (b: number, j: number, g: number, d: number) => ((b * tk + j) * G + g) * dh + d,
    lse: (b: number, h: number, i: number) => (b * hq + h) * tq + i,
    // DESIGN.md §1.1: head j of every expert uses kv head floor(j / (H/G)).
    kvHead: (h: number) => Math.floor((h % H) / (H / G)),
    // The queries are the last tq positions: query i sees keys 0 .. tk − tq + i.
    sees: (i: number, j: number) => j <= tk - tq + i,
  };
}

/** Probabilities P [Tq, Tk] (0 where masked) of one (b, h). */
function probs(s: AttentionShapeArgs, q: Arr, k: Arr, b: number, h: number): { p: number[][]; lse: number[] } {
  const L = layout(s), g = L.kvHead(h);
  const p: number[][] = [], lse: number[] = [];
  for (let i = 0; i < s.tq; i++) {
    const row = new Array<number>(s.tk).fill(-Infinity);
    for (let j = 0; j < s.tk; j++) {
      if (!L.sees(i, j)) continue;
      let acc = 0;
      for (let d = 0; d < s.headDim; d++) acc += q[L.q(b, i, h, d)] * k[L.kv(b, j, g, d)];
      row[j] = acc * L.scale;
    }
    const m = Math.max(...row);
    const sum = row.reduce((a, x) => a + Math.exp(x - m), 0);
    p.push(row.map((x) => Math.exp(x - m) / sum));
    lse.push(m + Math.log(sum));
  }
  return { p, lse };
}

export function attentionForwardRef(s: AttentionShapeArgs, q: Arr, k: Arr,
  v: Arr): { out: Float64Array; lse: Float64Array } {
  const L = layout(s);
  const out = new Float64Array(s.batch * s.tq * s.nHeads * s.headDim);
  const lse = new Float64Array(s.batch * s.nHeads * s.tq);
  for (let b = 0; b < s.batch; b++)
    for (let h = 0; h < s.nHeads; h++) {
      const g = L.kvHead(h), P = probs(s, q, k, b, h);
      for (let i = 0; i < s.tq; i++) {
        lse[L.lse(b, h, i)] = P.lse[i];
        for (let d = 0; d < s.headDim; d++) {
          let acc = 0;
          for (let j = 0; j < s.tk; j++) acc += P.p[i][j] * v[L.kv(b, j, g, d)];
          out[L.q(b, i, h, d)] = acc;
        }
      }
    }
  return { out, lse };
}

/**
 * dq, dk, dv of the forward given dout, from the textbook formulas with P recomputed in double.
 * dqMag and dkMag sum the magnitudes of the terms of dq and dk (|P|·(|dP| + |D|)·|k| and ·|q|):
 * dS = P ⊙ (dP − D) cancels, so fp32 rounding is bounded relative to these, not to |dq| or |dk|.
 */
export function attentionBackwardRef(s: AttentionShapeArgs, q: Arr, k: Arr, v: Arr, dout: Arr):
{ dq: Float64Array; dk: Float64Array; dv: Float64Array; dqMag: Float64Array; dkMag: Float64Array } {
  const L = layout(s), dh = s.headDim;
  const dq = new Float64Array(s.batch * s.tq * s.nHeads * dh);
  const dk = new Float64Array(s.batch * s.tk * s.kvHeads * dh);
  const dv = new Float64Array(dk.length);
  const dqMag = new Float64Array(dq.length), dkMag = new Float64Array(dk.length);
  for (let b = 0; b < s.batch; b++)
    for (let h = 0; h < s.nHeads; h++) {
      const g = L.kvHead(h), { p } = probs(s, q, k, b, h);
      for (let i = 0; i < s.tq; i++) {
        // dP_ij = dO_i·v_j; dS_ij = P_ij (dP_ij − Σ_j' P_ij' dP_ij')  (the softmax Jacobian)
        const dp = new Array<number>(s.tk).fill(0);
        for (let j = 0; j < s.tk; j++)
          for (let d = 0; d < dh; d++) dp[j] += dout[L.q(b, i, h, d)] * v[L.kv(b, j, g, d)];
        const rowDot = p[i].reduce((a, pij, j) => a + pij * dp[j], 0);
        for (let j = 0; j < s.tk; j++) {
          const ds = p[i][j] * (dp[j] - rowDot), dsMag = p[i][j] * (Math.abs(dp[j]) + Math.abs(rowDot));
          for (let d = 0; d < dh; d++) {
            dq[L.q(b, i, h, d)] += L.scale * ds * k[L.kv(b, j, g, d)];
            dk[L.kv(b, j, g, d)] += L.scale * ds * q[L.q(b, i, h, d)];
            dqMag[L.q(b, i, h, d)] += Math.abs(L.scale * dsMag * k[L.kv(b, j, g, d)]);
            dkMag[L.kv(b, j, g, d)] += Math.abs(L.scale * dsMag * q[L.q(b, i, h, d)]);
            dv[L.kv(b, j, g, d)] += p[i][j] * dout[L.q(b, i, h, d)];
          }
        }
      }
    }
  return { dq, dk, dv, dqMag, dkMag };
}
