// `dsmoe convert`: a training checkpoint → an inference checkpoint (dtype, default routing), or a
// dense checkpoint → a DS-MoE one that computes the same function (--from-dense, upcycling).
import { Command, InvalidArgumentError } from 'commander';
import { formatBytes } from '../../checkpoint/info';
import { convertCheckpoint, type ConvertResult } from '../../convert/convert';
import { upcycleCheckpoint, type UpcycleResult } from '../../convert/upcycle';
import { describeShape } from '../../model/config';

export interface ConvertCliOptions {
  dtype?: string;
  routing?: string;
  force?: boolean;
  fromDense?: string;
  attentionExperts?: number;
  mlpExperts?: number;
  calibrate?: boolean;
  targetActive?: number;
  data?: string[];
  json?: boolean;
}

const intArg = (flag: string) => (v: string): number => {
  const n = Number(v);
  if (!/^\s*\d+\s*$/.test(v) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`${flag} expects an integer ≥ 1, got "${v}"`);
  return n;
};
const shareArg = (v: string): number => {
  const n = Number(v.trim().endsWith('%') ? v.trim().slice(0, -1) : v) / (v.trim().endsWith('%') ? 100 : 1);
  if (v.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 1) throw new InvalidArgumentError(`--target-active expects a share in (0, 1] such as 0.4 or 40%, got "${v}"`);
  return n;
};
const dtypeArg = (v: string): string => {
  if (!['bf16', 'f16', 'f32'].includes(v.toLowerCase())) throw new InvalidArgumentError(`unknown dtype "${v}" (expected bf16, f16 or f32)`);
  return v.toLowerCase();
};

const ratio = (a: number, b: number) => `${formatBytes(a)} → ${formatBytes(b)} (${((100 * b) / a).toFixed(1)} %)`;

/** Runs `dsmoe convert`; returns what was written. Throws on bad input (the CLI prints one line). */
export function runConvert(args: string[], o: ConvertCliOptions, stdout: NodeJS.WritableStream = process.stdout): ConvertResult | UpcycleResult {
  // ---- Calibration (--calibrate --target-active X [--data …]): the main engineer wires this to the
  // inference engine (dsmoe generate/eval) once it is in the tree. The flags are parsed above.
  if (o.calibrate || o.targetActive !== undefined || o.data !== undefined)
    throw new Error('calibration needs the inference engine (dsmoe generate/eval), not in this build yet');
  // ---- end of the calibration placeholder

  if (o.fromDense !== undefined) {
    if (args.length !== 1) throw new Error(`--from-dense takes one folder to write: dsmoe convert --from-dense <dense> --attention-experts N --mlp-experts M <out> (got ${args.length})`);
    if (o.attentionExperts === undefined || o.mlpExperts === undefined) throw new Error('--from-dense needs --attention-experts N and --mlp-experts M');
    if (o.dtype !== undefined && o.dtype !== 'f32') throw new Error('--from-dense writes an fp32 training checkpoint; --dtype does not apply (convert it afterwards)');
    if (o.routing !== undefined) throw new Error('--routing does not apply to --from-dense (the upcycled checkpoint is for training; set routing when converting it for inference)');
    const r = upcycleCheckpoint(o.fromDense, args[0], { attExperts: o.attentionExperts, mlpExperts: o.mlpExperts, force: o.force });
    if (o.json) stdout.write(JSON.stringify({ type: 'upcycle', ...r }) + '\n');
    else {
      stdout.write(`upcycled ${r.input} → ${r.out}\n  ${describeShape(r.config)}\n`);
      stdout.write(`  routers start at zero (uniform), o_proj × ${r.config.attention.n_experts}, down_proj × ${r.config.mlp.n_experts}: the same function as the dense model\n`);
      if (r.headsPermuted) stdout.write(`  query heads regrouped so that each keeps its kv head (${r.config.attention.n_kv_heads} kv heads)\n`);
      stdout.write(`  size ${ratio(r.bytesBefore, r.bytesAfter)}\n`);
      for (const n of r.notes) stdout.write(`note: ${n}\n`);
      if (r.resumable) stdout.write(`next: dsmoe train --resume ${args[0]} --steps N   (fresh AdamW from step 0)\n`);
    }
    return r;
  }
  if (o.attentionExperts !== undefined || o.mlpExperts !== undefined) throw new Error('--attention-experts and --mlp-experts go with --from-dense <dense checkpoint>');
  if (args.length !== 2) throw new Error(`convert needs an input and an output folder: dsmoe convert <in> <out> (got ${args.length})`);
  const r = convertCheckpoint(args[0], args[1], { dtype: o.dtype, routing: o.routing, force: o.force });
  if (o.json) stdout.write(JSON.stringify({ type: 'convert', ...r }) + '\n');
  else {
    stdout.write(`converted ${r.input} → ${r.out}: ${r.dtype}, routing attention ${r.routing.attention}, MLP ${r.routing.mlp}\n`);
    stdout.write(`  model.safetensors  ${ratio(r.modelBytesBefore, r.modelBytesAfter)}\n`);
    stdout.write(`  checkpoint         ${ratio(r.bytesBefore, r.bytesAfter)}${r.dropped.length ? `  (dropped ${r.dropped.join(', ')})` : ''}\n`);
    for (const n of r.notes) stdout.write(`note: ${n}\n`);
  }
  return r;
}

export function convertCommand(): Command {
  return new Command('convert')
    .description('make an inference checkpoint (bf16/f16/f32, default routing), or upcycle a dense checkpoint into DS-MoE (--from-dense)')
    .argument('[folders...]', '<in> <out>, or <out> with --from-dense')
    .option('--dtype <dtype>', 'weights: bf16 (default), f16 or f32', dtypeArg)
    .option('--routing <spec>', 'default routing stored in config.json: attention=S,mlp=S (S: dense, topk:K, threshold:ε, threshold-topk:ε)')
    .option('--force', 'overwrite <out> when it is an existing checkpoint')
    .option('--from-dense <dir>', 'upcycle this dense checkpoint into a DS-MoE training checkpoint')
    .option('--attention-experts <n>', 'with --from-dense: attention experts per layer (divides the query heads)', intArg('--attention-experts'))
    .option('--mlp-experts <n>', 'with --from-dense: MLP experts per layer (divides the MLP width)', intArg('--mlp-experts'))
    .option('--calibrate', 'choose threshold routing for a target active share (needs the inference engine; not in this build yet)')
    .option('--target-active <x>', 'with --calibrate: share of expert parameters active per token (0.4 or 40%)', shareArg)
    .option('--data <paths...>', 'with --calibrate: text to calibrate on')
    .option('--json', 'print one JSON object')
    .addHelpText('after', `
Examples:
  dsmoe convert runs/small-dsmoe models/small                 # bf16 inference checkpoint
  dsmoe convert runs/small-dsmoe models/small-top2 --routing attention=dense,mlp=topk:2
  dsmoe convert runs/small-dsmoe models/small-f32 --dtype f32 --force
  dsmoe convert --from-dense runs/small-dense --attention-experts 8 --mlp-experts 16 runs/upcycled
  dsmoe train --resume runs/upcycled --steps 200              # keep training it as a DS-MoE`)
    .action((folders: string[], o: ConvertCliOptions) => {
      runConvert(folders, o);
    });
}
