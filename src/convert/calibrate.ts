// Calibrated sparsity (dsmoe convert --calibrate --target-active X): for each layer kind, the
// threshold ε (routing `threshold:ε`, DESIGN.md §1.3) whose mean active share of that kind's expert
// parameters on calibration text is closest to the target.
//
// The share falls as ε grows (E·S_e > ε selects fewer experts, never fewer than one), so each kind
// is a bisection on ε ∈ [0, E]. The two kinds interact (attention routing changes what the MLP
// routers see), so the search runs attention, then MLP, then attention again with the MLP fixed.
// Calibration and the reported perplexity use different text: --data (or the first half of the
// held-out windows) to calibrate, the held-out windows (or their second half) to report.
import * as path from 'node:path';
import { CONFIG_FILE } from '../checkpoint/checkpoint';
import { atomicWrite } from '../checkpoint/fsutil';
import type { TokenArray } from '../data/dataset';
import { evalData, evaluateTokens, reuseSessions, type EvalResult } from '../infer/eval';
import { loadInferenceModel, type InferenceModel } from '../infer/load';
import type { Routing } from '../model/routing';

export interface CalibrateOptions {
  /** share of expert parameters active per token, in (0, 1] */
  targetActive: number;
  /** calibration text; default: the first half of the held-out windows */
  data?: string[];
  /** windows (of the model's context) used for calibration and for the report, each (default 16) */
  windows?: number;
  cacheDir?: string;
  log?: (line: string) => void;
}

export interface KindCalibration {
  eps: number;
  /** active share of this kind's expert parameters on the calibration text */
  share: number;
}

export interface CalibrateResult {
  target: number;
  attention: KindCalibration | null;  // null: one expert, nothing to route
  mlp: KindCalibration | null;
  routing: Routing;
  evaluations: number;
  /** on held-out text that calibration did not see */
  before: ReportedEval;
  after: ReportedEval;
  calibrationTokens: number;
  reportTokens: number;
}

export interface ReportedEval {
  routing: Routing;
  ppl: number;
  activeExpertShare: number;
  attShare: number;
  mlpShare: number;
  activeParamsPerToken: number;
}

const BISECTION_STEPS = 14;

function report(r: EvalResult, m: InferenceModel): ReportedEval {
  return {
    routing: r.routing, ppl: r.ppl, activeExpertShare: r.usage.activeExpertShare,
    attShare: r.usage.attExpertsPerToken / m.config.attention.n_experts,
    mlpShare: r.usage.mlpExpertsPerToken / m.config.mlp.n_experts,
    activeParamsPerToken: r.usage.activeParamsPerToken,
  };
}

export async function calibrate(dir: string, o: CalibrateOptions): Promise<CalibrateResult> {
  if (!(o.targetActive > 0 && o.targetActive <= 1)) {
    throw new RangeError(`--target-active must be in (0, 1], got ${o.targetActive}`);
  }
  const model = loadInferenceModel(dir);
  const c = model.config;
  if (c.attention.n_experts === 1 && c.mlp.n_experts === 1)
    throw new Error(`${dir} is a dense model (one expert per layer): there is no routing to calibrate`);
  const T = c.max_seq_len, windows = o.windows ?? 16, need = windows * T + 1;
  const log = o.log ?? (() => {});

  // Report text: the checkpoint's held-out windows; calibration text: --data, or the windows before them.
  const heldOut = (await evalData(model, { cacheDir: o.cacheDir })).tokens;
  let calib: TokenArray, rep: TokenArray;
  if (o.data) {
    calib = (await evalData(model, { data: o.data, cacheDir: o.cacheDir })).tokens.subarray(0, need);
    rep = heldOut.subarray(0, need);
  } else {
    const half = Math.floor(heldOut.length / 2);
    calib = heldOut.subarray(0, Math.min(half, need));
    rep = heldOut.subarray(half, half + need);
  }
  if (calib.length < T + 1 || rep.length < T + 1)
    throw new Error(`not enough text to calibrate: need at least ${2 * (T + 1)} held-out tokens (or --data), ` +
      `have ${heldOut.length}`);

  let evaluations = 0;
  // The one evaluation loop (infer/eval.ts), its sessions kept for all the evaluations of the search.
  const engine = reuseSessions(model);
  const run = async (tokens: TokenArray, routing: Routing) => evaluateTokens(engine, tokens,
    { routing, seqLen: T, maxWindows: windows, cacheDir: o.cacheDir }, { source: 'files', inputs: [] });
  const shares = async (routing: Routing) => {
    evaluations++;
    const u = (await run(calib, routing)).usage;
    return { att: u.attExpertsPerToken / c.attention.n_experts, mlp: u.mlpExpertsPerToken / c.mlp.n_experts };
  };

  // Bisection of one kind's ε with the other kind's routing fixed; keeps the closest share seen.
  const search = async (kind: 'attention' | 'mlp', routing: Routing): Promise<KindCalibration> => {
    const E = kind === 'attention' ? c.attention.n_experts : c.mlp.n_experts;
    let lo = 0, hi = E;
    let best: KindCalibration = { eps: 0, share: Infinity };
    for (let i = 0; i < BISECTION_STEPS; i++) {
      const eps = (lo + hi) / 2;
      const s = await shares({ ...routing, [kind]: `threshold:${+eps.toPrecision(4)}` });
      const share = kind === 'attention' ? s.att : s.mlp;
      if (Math.abs(share - o.targetActive) < Math.abs(best.share - o.targetActive)) {
        best = { eps: +eps.toPrecision(4), share };
      }
      if (share > o.targetActive) lo = eps; else hi = eps;
    }
    log(`${kind}: threshold:${best.eps} → ${(100 * best.share).toFixed(1)} % active on the calibration text`);
    return best;
  };

  let routing: Routing = { attention: 'dense', mlp: 'dense' };
  let att: KindCalibration | null = null, mlp: KindCalibration | null = null;
  for (let round = 0; round < 2; round++) {
    if (c.attention.n_experts > 1) {
      att = await search('attention', routing);
      routing = { ...routing, attention: `threshold:${att.eps}` };
    }
    if (c.mlp.n_experts > 1 && round === 0) {
      mlp = await search('mlp', routing);
      routing = { ...routing, mlp: `threshold:${mlp.eps}` };
    }
  }
  const before = report(await run(rep, { attention: 'dense', mlp: 'dense' }), model);
  const after = report(await run(rep, routing), model);
  return { target: o.targetActive, attention: att, mlp, routing, evaluations, before, after,
    calibrationTokens: Math.min(calib.length - 1, windows * T), reportTokens: Math.min(rep.length - 1, windows * T) };
}

/**
 * Calibrates a checkpoint folder and stores the thresholds as its default routing (config.json,
 * rewritten atomically; the weights are untouched). `dsmoe train --target-active` ends with this.
 */
export async function calibrateInPlace(dir: string, o: CalibrateOptions): Promise<CalibrateResult> {
  const r = await calibrate(dir, o);
  const config = loadInferenceModel(dir).config;
  atomicWrite(path.join(dir, CONFIG_FILE), JSON.stringify({ ...config, routing: r.routing }, null, 2) + '\n');
  return r;
}
