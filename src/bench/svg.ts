// Hand-written SVG charts for `dsmoe bench` (no dependencies):
//   perplexityChart — perplexity vs mean active parameters per token, one curve per model, a marker
//                     per routing (the shape of Pan et al. 2024, Figures 3/4);
//   usageHeatmap    — per-layer expert usage (layers × experts, share of tokens routed to each
//                     expert) for attention and MLP side by side (their Figure 5).
// Text is XML-escaped; every chart has a viewBox and a white background.

export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g,
    '&apos;');
}

const FONT = 'font-family="Helvetica, Arial, sans-serif"';
/** Okabe–Ito colours (distinguishable with colour-vision deficiencies). */
export const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#F0E442'];

const n = (x: number) => (Math.round(x * 100) / 100).toString();

function text(x: number, y: number, s: string, attrs = ''): string {
  return `<text x="${n(x)}" y="${n(y)}" ${attrs}>${esc(s)}</text>`;
}

/** Round tick steps (1, 2, 5 × 10^k) covering [lo, hi] with about `count` ticks. */
export function niceTicks(lo: number, hi: number, count = 6): { lo: number; hi: number; ticks: number[] } {
  if (!(hi > lo)) {
    const pad = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const a = Math.floor(lo / step) * step, b = Math.ceil(hi / step) * step;
  const ticks: number[] = [];
  for (let v = a; v <= b + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return { lo: a, hi: b, ticks };
}

/** Ticks at 1, 2, 5 × 10^k inside [lo, hi] (log axes); more when the range is short. */
export function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  const mults = hi / lo < 30 ? [1, 1.5, 2, 3, 5, 7] : [1, 2, 5];
  for (let k = Math.floor(Math.log10(lo)); k <= Math.ceil(Math.log10(hi)); k++)
    for (const m of mults) {
      const v = Number((m * 10 ** k).toPrecision(6));
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
    }
  return out;
}

function fmtTick(v: number): string {
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1000) return v.toFixed(0);
  if (a >= 10) return Number(v.toFixed(1)).toString();
  if (a >= 1) return Number(v.toFixed(2)).toString();
  return Number(v.toPrecision(2)).toString();
}

export interface ChartPoint {
  /** active parameters per token (absolute; drawn in millions) */
  x: number;
  /** perplexity */
  y: number;
  /** routing label, e.g. "threshold:0.48" */
  routing: string;
}

export interface ChartSeries {
  name: string;
  points: ChartPoint[];
}

type Family = 'dense' | 'topk' | 'threshold' | 'other';
export function routingFamily(label: string): Family {
  if (label === 'dense') return 'dense';
  if (/^topk:\d+$/.test(label)) return 'topk';
  if (/^threshold:[\d.]+$/.test(label)) return 'threshold';
  return 'other';
}

function marker(f: Family, x: number, y: number, colour: string, tip: string): string {
  const t = `<title>${esc(tip)}</title>`;
  const style = `fill="${colour}" stroke="#ffffff" stroke-width="1"`;
  switch (f) {
    case 'dense': return `<rect class="marker" x="${n(x - 5)}" y="${n(y - 5)}" width="10" height="10" ` +
      `${style}>${t}</rect>`;
    case 'topk': return `<path class="marker" ` +
      `d="M${n(x)},${n(y - 6.5)} L${n(x + 6)},${n(y + 4.5)} L${n(x - 6)},${n(y + 4.5)} Z" ${style}>${t}</path>`;
    case 'threshold': return `<circle class="marker" cx="${n(x)}" cy="${n(y)}" r="5" ${style}>${t}</circle>`;
    default: return `<path class="marker" ` +
      `d="M${n(x)},${n(y - 6)} L${n(x + 6)},${n(y)} L${n(x)},${n(y + 6)} L${n(x - 6)},${n(y)} Z" ${style}>${t}</path>`;
  }
}

export interface PerplexityChartOptions {
  title?: string;
  subtitle?: string;
  /** 'auto' (default): log when the largest perplexity is over 3× the smallest */
  yScale?: 'linear' | 'log' | 'auto';
}

/**
 * Perplexity (y) against mean active parameters per token in millions (x). Per model: a solid line
 * through its dense and threshold points, a dashed one through its dense and top-k points; markers
 * by routing family (square dense, circle threshold, triangle top-k, diamond other).
 */
export function perplexityChart(series: ChartSeries[], opts: PerplexityChartOptions = {}): string {
  const W = 820, H = 520, L = 84, R = 230, T = opts.subtitle ? 74 : 56, B = 66;
  const pw = W - L - R, ph = H - T - B;
  const pts = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && p.y > 0);
  const xs = pts.map((p) => p.x / 1e6), ys = pts.map((p) => p.y);
  const xr = niceTicks(Math.min(0, ...xs), Math.max(...xs, 1e-6), 6);
  const ymin = Math.min(...ys), ymax = Math.max(...ys);
  const log = opts.yScale === 'log' || ((opts.yScale ?? 'auto') === 'auto' && ymax > 3 * ymin);
  let ylo: number, yhi: number, yticks: number[];
  if (log) {
    ylo = ymin / 1.08;
    yhi = ymax * 1.08;
    yticks = logTicks(ylo, yhi);
    if (yticks.length < 2) yticks = [ylo, yhi].map((v) => Number(v.toPrecision(3)));
  } else {
    const r = niceTicks(ymin - 0.04 * (ymax - ymin), ymax + 0.04 * (ymax - ymin), 6);
    ylo = r.lo; yhi = r.hi; yticks = r.ticks;
  }
  const sx = (v: number) => L + ((v - xr.lo) / (xr.hi - xr.lo)) * pw;
  const sy = (v: number) => (log ? T + ph - ((Math.log(v) - Math.log(ylo)) / (Math.log(yhi) - Math.log(ylo))) * ph : T +
    ph - ((v - ylo) / (yhi - ylo)) * ph);

  const out: string[] = [];
  out.push(`<?xml version="1.0" encoding="UTF-8"?>`);
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ${FONT} font-size="13">`);
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(text(L, 28, opts.title ?? 'Perplexity vs active parameters per token', 'font-size="17" font-weight="bold"'));
  if (opts.subtitle) out.push(text(L, 50, opts.subtitle, 'font-size="12" fill="#555555"'));
  // grid and ticks
  out.push(`<g class="grid" stroke="#e4e4e4" stroke-width="1">`);
  for (const t of xr.ticks) out.push(`<line x1="${n(sx(t))}" y1="${T}" x2="${n(sx(t))}" y2="${T + ph}"/>`);
  for (const t of yticks) out.push(`<line x1="${L}" y1="${n(sy(t))}" x2="${L + pw}" y2="${n(sy(t))}"/>`);
  out.push(`</g>`);
  out.push(`<rect x="${L}" y="${T}" width="${pw}" height="${ph}" fill="none" stroke="#333333" stroke-width="1"/>`);
  out.push(`<g class="x-ticks" font-size="12" text-anchor="middle">`);
  for (const t of xr.ticks) out.push(`<line x1="${n(sx(t))}" y1="${T + ph}" x2="${n(sx(t))}" y2="${T + ph + 5}" ` +
    `stroke="#333333"/>` + text(sx(t), T + ph + 20, fmtTick(t)));
  out.push(`</g>`);
  out.push(`<g class="y-ticks" font-size="12" text-anchor="end">`);
  for (const t of yticks) out.push(`<line x1="${L - 5}" y1="${n(sy(t))}" x2="${L}" y2="${n(sy(t))}" ` +
    `stroke="#333333"/>` + text(L - 8, sy(t) + 4, fmtTick(t)));
  out.push(`</g>`);
  out.push(text(L + pw / 2, H - 18, 'active parameters per token (M)',
    'class="axis-label" text-anchor="middle" font-size="14"'));
  out.push(text(22, T + ph / 2, log ? 'perplexity (log scale)' : 'perplexity',
    `class="axis-label" text-anchor="middle" font-size="14" transform="rotate(-90 22 ${n(T + ph / 2)})"`));

  // curves
  series.forEach((s, i) => {
    const c = PALETTE[i % PALETTE.length];
    const valid = s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && p.y > 0);
    const line = (fam: Family, dash: string) => {
      const p = valid.filter((q) => routingFamily(q.routing) === 'dense' ||
        routingFamily(q.routing) === fam).sort((a, b) => a.x - b.x);
      if (p.length < 2) return;
      out.push(`<polyline fill="none" stroke="${c}" ` +
        `stroke-width="2"${dash} points="${p.map((q) => `${n(sx(q.x / 1e6))},${n(sy(q.y))}`).join(' ')}"/>`);
    };
    out.push(`<g class="series" data-model="${esc(s.name)}">`);
    line('threshold', '');
    line('topk', ' stroke-dasharray="6 4"');
    const order = (p: ChartPoint) => (routingFamily(p.routing) === 'dense' ? 1 : 0);
    for (const p of valid.slice().sort((a, b) => order(a) - order(b)))
      out.push(marker(routingFamily(p.routing), sx(p.x / 1e6), sy(p.y), c,
        `${s.name}, ${p.routing}: ${(p.x / 1e6).toFixed(3)}M active, perplexity ${p.y.toFixed(2)}`));
    out.push(`</g>`);
  });

  // legend: models, then marker shapes
  const lx = L + pw + 22;
  let ly = T + 6;
  out.push(`<g class="legend" font-size="13">`);
  out.push(text(lx, ly + 4, 'model', 'font-weight="bold"'));
  ly += 22;
  series.forEach((s, i) => {
    const c = PALETTE[i % PALETTE.length];
    out.push(`<g class="legend-entry"><line x1="${lx}" y1="${ly}" x2="${lx + 26}" y2="${ly}" stroke="${c}" ` +
      `stroke-width="3"/>${text(lx + 34, ly + 4, s.name)}</g>`);
    ly += 22;
  });
  ly += 12;
  out.push(text(lx, ly + 4, 'routing', 'font-weight="bold"'));
  ly += 22;
  const fams: Array<[Family, string]> = [['dense', 'dense'], ['threshold', 'threshold:ε (solid)'],
    ['topk', 'topk:K (dashed)'], ['other', 'other']];
  const present = new Set(pts.map((p) => routingFamily(p.routing)));
  for (const [f, label] of fams) {
    if (!present.has(f)) continue;
    out.push(marker(f, lx + 13, ly, '#666666', label) + text(lx + 34, ly + 4, label));
    ly += 22;
  }
  out.push(`</g>`);
  out.push(`</svg>`);
  return out.join('\n') + '\n';
}

/** viridis at t ∈ [0, 1] (9 stops, linear in between). */
export function viridis(t: number): string {
  const stops = ['#440154', '#472d7b', '#3b528b', '#2c728e', '#21918c', '#28ae80', '#5ec962', '#addc30', '#fde725'];
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
  const rgb = (h: string) => [1, 3, 5].map((k) => parseInt(h.slice(k, k + 2), 16));
  const a = rgb(stops[i]), b = rgb(stops[i + 1]);
  return '#' + a.map((v, k) => Math.round(v + (b[k] - v) * f).toString(16).padStart(2, '0')).join('');
}

export interface HeatmapPanel {
  title: string;
  /** [layers][experts] shares in [0, 1] */
  share: number[][];
}

/**
 * Heat maps of expert usage, one panel per layer kind side by side: rows are layers (layer 0 at
 * the top), columns experts; the colour is the share of tokens routed to the expert (0..1, viridis),
 * with the value printed in cells that are large enough. A colour bar explains the scale.
 */
export function usageHeatmap(panels: HeatmapPanel[], opts: { title: string; subtitle?: string }): string {
  const rowsMax = Math.max(...panels.map((p) => p.share.length), 1);
  const cell = Math.max(12, Math.min(44, Math.floor(560 / Math.max(...panels.map((p) => p.share[0]?.length ?? 1), 1)),
    Math.floor(420 / rowsMax)));
  const L = 70, T = opts.subtitle ? 106 : 84, gap = 64, barW = 16;
  const widths = panels.map((p) => (p.share[0]?.length ?? 0) * cell);
  const bx = L + widths.reduce((a, b) => a + b, 0) + gap * (panels.length - 1) + 44;
  const W = Math.max(bx + 110, 16 + 9 * Math.max(opts.title.length, (opts.subtitle ?? '').length * 0.75));
  const H = T + Math.max(rowsMax * cell + 70, Math.max(rowsMax * cell, 120) + 30);
  const showValues = cell >= 30;
  const out: string[] = [];
  out.push(`<?xml version="1.0" encoding="UTF-8"?>`);
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ${FONT} font-size="13">`);
  out.push(`<defs><linearGradient id="scale" x1="0" y1="1" x2="0" y2="0">`
    + Array.from({ length: 9 }, (_, i) => `<stop offset="${i / 8}" stop-color="${viridis(i / 8)}"/>`).join('') +
      `</linearGradient></defs>`);
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(text(16, 28, opts.title, 'font-size="17" font-weight="bold"'));
  if (opts.subtitle) out.push(text(16, 50, opts.subtitle, 'font-size="12" fill="#555555"'));
  let x0 = L;
  panels.forEach((p, k) => {
    const E = p.share[0]?.length ?? 0, Ls = p.share.length;
    out.push(`<g class="panel" data-kind="${esc(p.title)}">`);
    out.push(text(x0 + (E * cell) / 2, T - 30, p.title, 'text-anchor="middle" font-size="14" font-weight="bold"'));
    for (let l = 0; l < Ls; l++) {
      out.push(text(x0 - 8, T + l * cell + cell / 2 + 4, `L${l}`, 'text-anchor="end" font-size="12"'));
      for (let e = 0; e < E; e++) {
        const v = p.share[l][e];
        const x = x0 + e * cell, y = T + l * cell;
        out.push(`<rect class="cell" x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${viridis(v)}" ` +
          `stroke="#ffffff" stroke-width="1">`
          + `<title>${esc(`${p.title}, layer ${l}, expert ${e}: ${(100 * v).toFixed(1)}% of tokens`)}</title></rect>`);
        if (showValues) out.push(text(x + cell / 2, y + cell / 2 + 4, (100 * v).toFixed(0),
          `text-anchor="middle" font-size="11" fill="${v > 0.6 ? '#000000' : '#ffffff'}"`));
      }
    }
    const step = E > 16 ? Math.ceil(E / 16) : 1;
    for (let e = 0; e < E; e += step) out.push(text(x0 + e * cell + cell / 2, T - 8, String(e),
      'text-anchor="middle" font-size="11"'));
    out.push(text(x0 + (E * cell) / 2, T + Ls * cell + 24, 'expert', 'text-anchor="middle" font-size="13"'));
    if (k === 0) out.push(text(20, T + (Ls * cell) / 2, 'layer', `text-anchor="middle" font-size="13" ` +
      `transform="rotate(-90 20 ${n(T + (Ls * cell) / 2)})"`));
    out.push(`</g>`);
    x0 += widths[k] + gap;
  });
  // colour bar
  const bh = Math.max(rowsMax * cell, 120);
  out.push(`<g class="colour-scale" font-size="11">`);
  out.push(`<rect class="scale-bar" x="${bx}" y="${T}" width="${barW}" height="${bh}" fill="url(#scale)" ` +
    `stroke="#333333" stroke-width="0.5"/>`);
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    const y = T + bh - v * bh;
    out.push(`<line x1="${bx + barW}" y1="${n(y)}" x2="${bx + barW + 4}" y2="${n(y)}" stroke="#333333"/>` +
      text(bx + barW + 7, y + 4, `${v * 100}%`));
  }
  out.push(text(bx - 6, T - 12, 'share of tokens', 'font-size="11"'));
  out.push(`</g>`);
  out.push(`</svg>`);
  return out.join('\n') + '\n';
}
