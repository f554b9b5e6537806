// `dsmoe convert`: a training checkpoint → an inference checkpoint (dtype, default routing), or a
// dense checkpoint → a DS-MoE one that computes the same function (--from-dense, upcycling).
import { Command, InvalidArgumentError } from 'commander';
import { formatBytes } from '../../checkpoint/info';
import { calibrate, type CalibrateResult } from '../../convert/calibrate';
import { checkOutput, convertCheckpoint, type ConvertResult } from '../../convert/convert';
import { upcycleCheckpoint, type UpcycleResult } from '../../convert/upcycle';
import { describeShape } from '../../model/config';
import { shareArg } from '../args';

export interface ConvertCliOptions {
  dtype?: string;
  routing?: string;
  force?: boolean;
  fromDense?: string;
  attentionExperts?: number;
  mlpExperts?: number;
  routerHidden?: number;
  calibrate?: boolean;
  targetActive?: number;
  data?: string[];
  json?: boolean;
  /** tokenized-data cache (tests); default DSMOE_CACHE_DIR or ~/.cache/dsmoe */
  cacheDir?: string;
}

const intArg = (flag: string, min = 1) => (v: string): number => {
  const n = Number(v);
  if (!/^\s*\d+\s*$/.test(v) || !Number.isSafeInteger(n) || n < min)
    throw new InvalidArgumentError(`${flag} expects an integer ≥ ${min}, got "${v}"`);
  return n;
};
const dtypeArg = (v: string): string => {
  if (!['bf16', 'f16', 'f32', 'int8', 'q4'].includes(v.toLowerCase())) {
    throw new InvalidArgumentError(`unknown dtype "${v}" (expected bf16, f16, f32, int8 or q4)`);
  }
  return v.toLowerCase();
};

const ratio = (a: number, b: number) => `${formatBytes(a)} → ${formatBytes(b)} (${((100 * b) / a).toFixed(1)} %)`;

/** Runs `dsmoe convert`; returns what was written. Throws on bad input (the CLI prints one line). */
export function runConvert(args: string[], o: ConvertCliOptions,
  stdout: NodeJS.WritableStream = process.stdout): ConvertResult | UpcycleResult {
  if (o.calibrate) throw new Error('--calibrate runs through runCalibratedConvert (it evaluates the model)');
  if (o.targetActive !== undefined || o.data !== undefined) throw new Error('--target-active and --data go with ' +
    '--calibrate');

  if (o.fromDense !== undefined) {
    if (args.length !== 1) throw new Error(`--from-dense takes one folder to write: dsmoe convert --from-dense ` +
      `<dense> --attention-experts N --mlp-experts M <out> (got ${args.length})`);
    if (o.attentionExperts === undefined || o.mlpExperts === undefined) throw new Error('--from-dense needs ' +
      '--attention-experts N and --mlp-experts M');
    if (o.dtype !== undefined && o.dtype !== 'f32') throw new Error('--from-dense writes an fp32 training ' +
      'checkpoint; --dtype does not apply (convert it afterwards)');
    if (o.routing !== undefined) throw new Error('--routing does not apply to --from-dense (the upcycled checkpoint ' +
      'is for training; set routing when converting it for inference)');
    const r = upcycleCheckpoint(o.fromDense, args[0],
      { attExperts: o.attentionExperts, mlpExperts: o.mlpExperts, routerHidden: o.routerHidden, force: o.force });
    if (o.json) stdout.write(JSON.stringify({ type: 'upcycle', ...r }) + '\n');
    else {
      stdout.write(`upcycled ${r.input} → ${r.out}\n  ${describeShape(r.config)}\n`);
      const zero = r.config.router_hidden
        ? 'router output weights start at zero (uniform; hidden weights random)' : 'routers start at zero (uniform)';
      stdout.write(`  ${zero}, o_proj × ${r.config.attention.n_experts}, down_proj × ${r.config.mlp.n_experts}: `
        + 'the same function as the dense model\n');
      if (r.headsPermuted) stdout.write(`  query heads regrouped so that each keeps its kv head ` +
        `(${r.config.attention.n_kv_heads} kv heads)\n`);
      stdout.write(`  size ${ratio(r.bytesBefore, r.bytesAfter)}\n`);
      for (const n of r.notes) stdout.write(`note: ${n}\n`);
      if (r.resumable) stdout.write(`next: dsmoe train --resume ${args[0]} --steps N   (fresh AdamW from step 0)\n`);
    }
    return r;
  }
  if (o.attentionExperts !== undefined || o.mlpExperts !== undefined || o.routerHidden !== undefined)
    throw new Error('--attention-experts, --mlp-experts and --router-hidden go with --from-dense <dense checkpoint>');
  if (args.length !== 2) throw new Error(`convert needs an input and an output folder: dsmoe convert <in> <out> (got ` +
    `${args.length})`);
  const r = convertCheckpoint(args[0], args[1], { dtype: o.dtype, routing: o.routing, force: o.force });
  if (o.json) stdout.write(JSON.stringify({ type: 'convert', ...r }) + '\n');
  else {
    stdout.write(`converted ${r.input} → ${r.out}: ${r.dtype}, routing attention ${r.routing.attention}, MLP ` +
      `${r.routing.mlp}\n`);
    stdout.write(`  model.safetensors  ${ratio(r.modelBytesBefore, r.modelBytesAfter)}\n`);
    stdout.write(`  checkpoint         ` +
      `${ratio(r.bytesBefore, r.bytesAfter)}${r.dropped.length ? `  (dropped ${r.dropped.join(', ')})` : ''}\n`);
    for (const n of r.notes) stdout.write(`note: ${n}\n`);
  }
  return r;
}

/** `dsmoe convert <in> <out> --calibrate --target-active X [--data …]`: calibrate, then convert. */
export async function runCalibratedConvert(args: string[], o: ConvertCliOptions,
  stdout: NodeJS.WritableStream = process.stdout,
  stderr: NodeJS.WritableStream = process.stderr): Promise<ConvertResult & { calibration: CalibrateResult }> {
  if (o.fromDense !== undefined) throw new Error('--calibrate does not apply to --from-dense (train the upcycled ' +
    'model first)');
  if (o.routing !== undefined) throw new Error('--calibrate chooses the routing; do not give --routing with it');
  if (o.targetActive === undefined) throw new Error('--calibrate needs --target-active X (a share of expert ' +
    'parameters, e.g. 0.35 or 35%)');
  if (args.length !== 2) throw new Error(`convert needs an input and an output folder: dsmoe convert <in> <out> (got ` +
    `${args.length})`);
  checkOutput(args[0], args[1], o.force);  // fail before minutes of calibration
  const cal = await calibrate(args[0], { targetActive: o.targetActive, data: o.data, cacheDir: o.cacheDir,
    log: o.json ? undefined : (l) => stderr.write(`calibrate: ${l}\n`) });
  const r = convertCheckpoint(args[0], args[1], { dtype: o.dtype,
    routing: `attention=${cal.routing.attention},mlp=${cal.routing.mlp}`, force: o.force });
  if (o.json) stdout.write(JSON.stringify({ type: 'convert', ...r, calibration: cal }) + '\n');
  else {
    const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
    const line = (name: string, e: CalibrateResult['before']) => `  ${name.padEnd(34)} perplexity ` +
      `${e.ppl.toFixed(3)}, active expert share ${pct(e.activeExpertShare)}` +
      ` (attention ${pct(e.attShare)}, MLP ${pct(e.mlpShare)}), ${(e.activeParamsPerToken / 1e6).toFixed(2)}M active ` +
        `params/token`;
    stdout.write(`calibrated for ${pct(cal.target)} active expert parameters (${cal.evaluations} evaluations on ` +
      `${cal.calibrationTokens} tokens):\n`);
    stdout.write(`  routing attention ${cal.routing.attention}, MLP ${cal.routing.mlp}\n`);
    stdout.write(`on ${cal.reportTokens} held-out tokens not used for calibration:\n`);
    stdout.write(line('before (dense routing)', cal.before) + '\n');
    stdout.write(line('after (calibrated thresholds)', cal.after) + '\n');
    stdout.write(`  perplexity cost ${(100 * (cal.after.ppl / cal.before.ppl - 1)).toFixed(2)} %\n`);
    stdout.write(`converted ${r.input} → ${r.out}: ${r.dtype}, model.safetensors ` +
      `${ratio(r.modelBytesBefore, r.modelBytesAfter)}\n`);
    for (const n of r.notes) stdout.write(`note: ${n}\n`);
  }
  return { ...r, calibration: cal };
}

export function convertCommand(): Command {
  return new Command('convert')
    .description('make an inference checkpoint (bf16/f16/f32/int8/q4, default routing), or upcycle a dense ' +
      'checkpoint into ' +
      'DS-MoE (--from-dense)')
    .argument('[folders...]', '<in> <out>, or <out> with --from-dense')
    .option('--dtype <dtype>', 'weights: bf16 (default), f16, f32, or quantized int8 / q4 (docs/format.md)',
      dtypeArg)
    .option('--routing <spec>', 'default routing stored in config.json: attention=S,mlp=S (S: dense, topk:K, ' +
      'threshold:ε, threshold-topk:ε)')
    .option('--force', 'overwrite <out> when it is an existing checkpoint')
    .option('--from-dense <dir>', 'upcycle this dense checkpoint into a DS-MoE training checkpoint')
    .option('--attention-experts <n>', 'with --from-dense: attention experts per layer (divides the query heads)',
      intArg('--attention-experts'))
    .option('--mlp-experts <n>', 'with --from-dense: MLP experts per layer (divides the MLP width)',
      intArg('--mlp-experts'))
    .option('--router-hidden <n>', 'with --from-dense: two-layer routers of this hidden width (default 0: linear)',
      intArg('--router-hidden', 0))
    .option('--calibrate', 'choose threshold routing per layer kind for --target-active on calibration text; report ' +
      'perplexity before/after on held-out text')
    .option('--target-active <x>', 'with --calibrate: share of expert parameters active per token (0.4 or 40%)',
      shareArg('--target-active'))
    .option('--data <paths...>', 'with --calibrate: text to calibrate on')
    .option('--json', 'print one JSON object')
    .addHelpText('after', `
Examples:
  dsmoe convert runs/small-dsmoe models/small                 # bf16 inference checkpoint
  dsmoe convert runs/small-dsmoe models/small-top2 --routing attention=dense,mlp=topk:2
  dsmoe convert runs/small-dsmoe models/small-f32 --dtype f32 --force
  dsmoe convert runs/small-dsmoe models/small-q4 --dtype q4   # 4-bit projections (docs/format.md)
  dsmoe convert runs/small-dsmoe models/small-35 --calibrate --target-active 35%   # thresholds for 35 % active experts
  dsmoe convert --from-dense runs/small-dense --attention-experts 8 --mlp-experts 16 runs/upcycled
  dsmoe train --resume runs/upcycled --steps 200              # keep training it as a DS-MoE`)
    .action(async (folders: string[], o: ConvertCliOptions) => {
      if (o.calibrate) await runCalibratedConvert(folders, o);
      else runConvert(folders, o);
    });
}
