// `dsmoe eval`: held-out loss and perplexity of a checkpoint under any routing, with the active
// parameters and per-layer expert usage.
import * as path from 'node:path';
import { Command, Option } from 'commander';
import { formatCount } from '../../model/config';
import { loadAddon } from '../../native/addon';
import { parseDeviceRequest, resolveDevice } from '../../native/device';
import { evaluateCheckpoint, type EvalResult } from '../../infer/eval';
import { loadInferenceModel } from '../../infer/load';
import { formatRouting, parseRouting } from '../../model/routing';
import { renderTable } from '../../util/table';
import { intArg } from '../args';
import { Reporter, formatRate } from '../progress';
import { EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE } from '../exit-codes';

/** The options eval and generate share. */
export interface InferenceCliOptions {
  routing?: string;
  threads?: number;
  tokenizer?: string;
  device?: string;
  json?: boolean;
  quiet?: boolean;
}

export interface EvalCliOptions extends InferenceCliOptions {
  data?: string[];
  seqLen?: number;
  maxWindows?: number;
  batchSize: number;
}

export interface EvalCliDeps {
  stdout?: NodeJS.WriteStream;
  stderr?: NodeJS.WriteStream;
  signal?: AbortSignal;
  cacheDir?: string;
}

/** The JSON record of an eval (snake_case, like the rest of dsmoe's JSON). */
export function evalRecord(r: EvalResult, extra: Record<string, unknown> = {}) {
  const u = r.usage;
  return {
    ...extra,
    loss: r.loss, ppl: r.ppl, tokens: r.tokens, windows: r.windows, seq_len: r.seqLen, batch_size: r.batchSize,
    routing: r.routing,
    data: r.data, seconds: r.seconds, tokens_per_s: r.tokensPerS, interrupted: r.interrupted,
    active_params_per_token: u.activeParamsPerToken, active_expert_share: u.activeExpertShare,
    att_experts_per_token: u.attExpertsPerToken, mlp_experts_per_token: u.mlpExpertsPerToken,
    expert_params: u.expertParams, shared_params: u.sharedParams, embedding_params: u.embeddingParams,
    lm_head_params: u.lmHeadParams,
    mi: r.mi,
    usage: { attention: u.attUsage, mlp: u.mlpUsage },
    notes: r.notes,
  };
}

function miLine(kind: string, m: EvalResult['mi']['attention']): string {
  return m
    ? `${kind} ${m.loss.toFixed(4)} (H(e) ${m.entropy.toFixed(3)}, H(e|X) ${m.condEntropy.toFixed(3)})`
    : `${kind} — (one expert, no router)`;
}

function usageTable(kind: string, usage: number[][], tokens: number): string {
  const E = usage[0]?.length ?? 0;
  const head = ['layer', ...Array.from({ length: E }, (_, e) => `e${e}`), 'experts/token'];
  return `${kind} expert usage (share of ${tokens} tokens that activated each expert)\n` + renderTable(head,
    usage.map((row, l) => [
      l,
      ...row.map((c) => `${((100 * c) / Math.max(1, tokens)).toFixed(0)}%`),
      row.reduce((a, b) => a + b, 0) / Math.max(1, tokens),
    ]));
}

/** --device of eval and generate: the option of `dsmoe train`. */
export const deviceOption = () =>
  new Option('--device <device>', 'compute device: cpu, cuda or auto (GPU when usable, else CPU)').default('cpu');

export const INFERENCE_ON_CUDA = 'inference from a checkpoint does not run on CUDA yet (issue 14: the weights are '
  + 'not loaded into device memory); use --device cpu';

/**
 * Checks --device for inference, which runs on the CPU backend only for now: cpu; auto = cpu with a
 * notice on stderr; cuda = the reason on stderr (no usable device and why, or INFERENCE_ON_CUDA) and
 * EXIT_USAGE, which the command returns.
 */
export function checkInferenceDevice(
  value: string | undefined, stderr: NodeJS.WritableStream, quiet = false,
): number | undefined {
  const request = parseDeviceRequest(value);
  if (request === 'cuda') {
    const info = loadAddon().cudaInfo();
    stderr.write(`dsmoe: ${info.available ? INFERENCE_ON_CUDA
      : `--device cuda: no usable CUDA device: ${info.reason ?? 'unknown reason'}`}\n`);
    return EXIT_USAGE;
  }
  const { notice } = resolveDevice(request, { what: 'inference', cudaImplemented: false });
  if (notice && !quiet) stderr.write(`dsmoe: ${notice}\n`);
  return undefined;
}

/** Runs `dsmoe eval`; resolves to the exit code. Never calls process.exit. */
export async function runEval(checkpoint: string, o: EvalCliOptions, deps: EvalCliDeps = {}): Promise<number> {
  const stdout = deps.stdout ?? process.stdout, stderr = deps.stderr ?? process.stderr;
  // Progress only on a terminal: in logs and pipes stderr carries notes and errors alone.
  const bad = checkInferenceDevice(o.device, stderr, o.quiet || o.json);
  if (bad !== undefined) return bad;
  const rep = new Reporter({ stream: stderr, quiet: o.quiet || o.json || !stderr.isTTY });
  const model = loadInferenceModel(checkpoint, { tokenizer: o.tokenizer });
  const routing = parseRouting(o.routing, model.config);
  if (o.seqLen !== undefined && o.seqLen > model.config.max_seq_len)
    throw new Error(`--seq-len ${o.seqLen} is longer than the model's context ` +
      `(max_seq_len ${model.config.max_seq_len})`);
  if (o.threads !== undefined) loadAddon().setThreads({ threads: o.threads });
  for (const n of model.notes) if (!o.json && !o.quiet) stderr.write(`note: ${n}\n`);
  const ac = new AbortController();
  deps.signal?.addEventListener('abort', () => ac.abort(), { once: true });
  const onSigint = () => ac.abort();
  process.once('SIGINT', onSigint);
  let r: EvalResult;
  try {
    void rep.spin('loading the data');
    r = await evaluateCheckpoint(model, {
      data: o.data, seqLen: o.seqLen, maxWindows: o.maxWindows, batchSize: o.batchSize, routing, signal: ac.signal,
      cacheDir: deps.cacheDir,
      onData: (p) => void rep.spin(p.phase === 'tokenize'
        ? `tokenizing ${p.done}/${p.total} documents`
        : `reading the data (${p.phase})`),
      onProgress: (done, total) => void rep.spin(`evaluating: ${done}/${total} windows`),
    });
    rep.spinDone(`evaluated ${r.windows} windows`);
  } catch (e) {
    rep.spinDone(undefined, false);
    throw e;
  } finally {
    rep.stop();
    process.removeListener('SIGINT', onSigint);
  }
  for (const n of r.notes) if (!o.json && !o.quiet) stderr.write(`note: ${n}\n`);
  const c = model.config;
  if (o.json) {
    stdout.write(JSON.stringify(evalRecord(r, { checkpoint: model.dir, dtype: model.dtype })) + '\n');
    return r.interrupted ? EXIT_INTERRUPTED : EXIT_OK;
  }
  const u = r.usage;
  const src = r.data.source === 'files' ? r.data.inputs.map((f) => path.basename(f)).join(', ')
    : r.data.source === 'held-out'
      ? `the held-out split of its training data (${r.data.inputs.map((f) => path.basename(f)).join(', ')})`
      : 'the held-out split of the built-in corpus';
  const lines = [
    `${model.dir} (${model.dtype}) on ${src}: ${r.windows} windows × ${r.seqLen} = ${r.tokens} tokens`
      + `${r.interrupted ? ' (interrupted)' : ''}`,
    `loss ${r.loss.toFixed(4)}, perplexity ${r.ppl.toFixed(3)}  (${formatRate(r.tokensPerS)} tok/s)`,
    `routing ${formatRouting(r.routing)}: ${formatCount(u.activeParamsPerToken)} active parameters per token `
      + `(${(100 * u.activeExpertShare).toFixed(1)}% of the `
      + `${formatCount(u.expertParams)} expert parameters); experts per token per layer: `
      + `attention ${u.attExpertsPerToken.toFixed(2)} of ${c.attention.n_experts}, `
      + `MLP ${u.mlpExpertsPerToken.toFixed(2)} of ${c.mlp.n_experts}`,
    `not counted above: embedding ${formatCount(u.embeddingParams)}, `
      + `LM head ${u.lmHeadParams ? formatCount(u.lmHeadParams) : '(tied)'}`,
    `MI loss −H(e) + H(e|X) (nats, mean over layers): ${miLine('attention', r.mi.attention)}; `
      + `${miLine('MLP', r.mi.mlp)}`,
    '',
    usageTable('attention', u.attUsage, u.tokens),
    '',
    usageTable('MLP', u.mlpUsage, u.tokens),
  ];
  stdout.write(lines.join('\n') + '\n');
  return r.interrupted ? EXIT_INTERRUPTED : EXIT_OK;
}

const HELP = `
Data: --data text (.txt .md .jsonl), folders or .bin token files, all of their tokens; default:
the held-out split of the checkpoint's training data (as recorded in trainer_state.json), else
the held-out 5 % of the built-in corpus. Windows of --seq-len tokens (default the model's
max_seq_len) follow each other without overlap; --max-windows caps them.

Routing as for generate: dense | topk:K | threshold:ε | threshold-topk:ε, per layer kind.

Examples:
  dsmoe eval runs/small-dsmoe
  dsmoe eval runs/small-dsmoe --routing attention=dense,mlp=threshold:0.48
  dsmoe eval runs/small-dsmoe --data notes/ --seq-len 64 --max-windows 200 --json`;

export function evalCommand(ctx: { exitCode: number } = { exitCode: 0 }, deps: EvalCliDeps = {}): Command {
  return new Command('eval')
    .description('held-out loss, perplexity and router usage of a checkpoint under any routing')
    .argument('<checkpoint>', 'checkpoint folder (training or inference)')
    .option('--data <paths...>', 'text or token files (default: the checkpoint\'s held-out split)')
    .option('--seq-len <n>', 'window length (≤ max_seq_len; default max_seq_len)', intArg('--seq-len'))
    .option('--max-windows <n>', 'evaluate at most N windows', intArg('--max-windows'))
    .option('--batch-size <n>', 'windows per prefill', intArg('--batch-size'), 8)
    .option('--routing <spec>', 'e.g. topk:2 or attention=dense,mlp=threshold:0.48 (default: config.json)')
    .option('--threads <n>', 'CPU threads', intArg('--threads'))
    .option('--tokenizer <file>', "tokenizer.json (default: the checkpoint's)")
    .addOption(deviceOption())
    .option('--json', 'one JSON object on stdout')
    .option('--quiet', 'no progress on stderr')
    .addHelpText('after', HELP)
    .action(async (checkpoint: string, o: EvalCliOptions) => {
      ctx.exitCode = await runEval(checkpoint, o, deps);
    });
}
