// `dsmoe generate`: text from a checkpoint, computing only the experts the routing selects.
import * as fs from 'node:fs';
import { Command } from 'commander';
import { formatCount } from '../../model/config';
import { loadAddon, type InferStats } from '../../native/addon';
import { generate, type GenerateResult } from '../../infer/generate';
import { loadInferenceModel } from '../../infer/load';
import { formatRouting, parseRouting, type Routing } from '../../model/routing';
import { collect, intArg, numArg } from '../args';
import { formatRate } from '../progress';
import { checkInferenceDevice, deviceOption, type InferenceCliOptions } from './eval';
import { EXIT_INTERRUPTED, EXIT_OK } from '../exit-codes';

export interface GenerateCliOptions extends InferenceCliOptions {
  promptFile?: string;
  promptsFile?: string;
  maxTokens: number;
  temperature: number;
  topK?: number;
  topP?: number;
  seed?: number;
  stop?: string[];
}

export interface GenerateCliDeps {
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  /** stdin (default process.stdin); read when no prompt is given and it is not a TTY */
  stdin?: NodeJS.ReadableStream & { isTTY?: boolean };
  signal?: AbortSignal;
}

function readText(file: string, flag: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT'
      ? `${flag}: file not found: ${file}`
      : `${flag}: cannot read ${file}: ${(e as Error).message}`);
  }
}

const stripNewline = (s: string) => s.replace(/\r?\n$/, '');

async function readStream(s: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** The prompts from the argument, --prompt-file, --prompts-file or stdin (exactly one source). */
export async function readPrompts(
  prompt: string | undefined, o: GenerateCliOptions, stdin: GenerateCliDeps['stdin'],
): Promise<string[]> {
  const given = [
    prompt !== undefined && 'a prompt argument',
    o.promptFile !== undefined && '--prompt-file',
    o.promptsFile !== undefined && '--prompts-file',
  ].filter(Boolean);
  if (given.length > 1) throw new Error(`give one prompt source, not ${given.join(' and ')}`);
  if (prompt !== undefined) return [prompt];
  if (o.promptFile !== undefined) return [stripNewline(readText(o.promptFile, '--prompt-file'))];
  if (o.promptsFile !== undefined) {
    const lines = readText(o.promptsFile, '--prompts-file').split(/\r?\n/).filter((l) => l.trim() !== '');
    if (lines.length === 0) throw new Error(`--prompts-file ${o.promptsFile} has no prompts (one per line)`);
    return lines;
  }
  const input = stdin ?? process.stdin;
  if (input.isTTY) {
    throw new Error('no prompt: give it as an argument, with --prompt-file FILE or --prompts-file FILE, ' +
      'or pipe it on stdin');
  }
  return [stripNewline(await readStream(input))];
}

/** The numbers of a run, for --json and the summary. */
export function statsRecord(
  stats: InferStats, config: { attention: { n_experts: number }; mlp: { n_experts: number } },
) {
  return {
    tokens: stats.tokens,
    active_params_per_token: stats.activeParamsPerToken,
    active_expert_share: stats.activeExpertShare,
    att_experts_per_token: stats.attExpertsPerToken,
    mlp_experts_per_token: stats.mlpExpertsPerToken,
    att_experts: config.attention.n_experts,
    mlp_experts: config.mlp.n_experts,
    expert_params: stats.expertParams,
    shared_params: stats.sharedParams,
    embedding_params: stats.embeddingParams,
    lm_head_params: stats.lmHeadParams,
    active_weight_bytes_per_token: stats.activeWeightBytesPerToken,
  };
}

export function formatActive(stats: InferStats, E: { att: number; mlp: number }, routing: Routing): string[] {
  return [
    `routing ${formatRouting(routing)}: ${formatCount(stats.activeParamsPerToken)} active parameters per token `
      + `(${(100 * stats.activeExpertShare).toFixed(1)}% of the ${formatCount(stats.expertParams)} expert parameters), `
      + `experts per token per layer: attention ${stats.attExpertsPerToken.toFixed(2)} of ${E.att}, `
      + `MLP ${stats.mlpExpertsPerToken.toFixed(2)} of ${E.mlp}`,
    `not counted above: embedding ${formatCount(stats.embeddingParams)}, `
      + `LM head ${stats.lmHeadParams ? formatCount(stats.lmHeadParams) : '(tied to the embedding)'}`,
  ];
}

/** Runs `dsmoe generate`; resolves to the exit code (0, or 130 after Ctrl-C). Never calls process.exit. */
export async function runGenerate(
  checkpoint: string, prompt: string | undefined, o: GenerateCliOptions, deps: GenerateCliDeps = {},
): Promise<number> {
  const stdout = deps.stdout ?? process.stdout, stderr = deps.stderr ?? process.stderr;
  const bad = checkInferenceDevice(o.device, stderr, o.quiet || o.json);
  if (bad !== undefined) return bad;
  const prompts = await readPrompts(prompt, o, deps.stdin);
  const model = loadInferenceModel(checkpoint, { tokenizer: o.tokenizer });
  const routing = parseRouting(o.routing, model.config);
  if (o.threads !== undefined) loadAddon().setThreads({ threads: o.threads });
  if (!o.json && !o.quiet) for (const n of model.notes) stderr.write(`note: ${n}\n`);

  const ac = new AbortController();
  deps.signal?.addEventListener('abort', () => ac.abort(), { once: true });
  const onSigint = () => ac.abort();
  process.once('SIGINT', onSigint);
  const single = prompts.length === 1;
  let result: GenerateResult;
  try {
    result = await generate(model, prompts, {
      maxTokens: o.maxTokens, temperature: o.temperature, topK: o.topK, topP: o.topP, seed: o.seed, stop: o.stop,
      routing, signal: ac.signal,
      // One prompt: stream. A batch: each completion is printed, labelled, at the end.
      onText: single && !o.json ? (_, t) => stdout.write(t) : undefined,
    });
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
  const c = model.config;
  const interrupted = result.completions.some((x) => x.finish === 'interrupted');
  if (o.json) {
    stdout.write(JSON.stringify({
      checkpoint: model.dir, dtype: model.dtype, seed: result.seed, routing: result.routing,
      completions: result.completions.map((x) => ({
        prompt: x.prompt, text: x.text, prompt_tokens: x.promptTokens, generated_tokens: x.tokens.length,
        finish: x.finish,
      })),
      prompt_tokens: result.promptTokens, generated_tokens: result.generatedTokens,
      prefill_tokens_per_s: result.prefillTokensPerS, decode_tokens_per_s: result.decodeTokensPerS,
      ttft_ms: result.ttftSeconds * 1e3,
      prefill_s: result.prefillSeconds, decode_s: result.decodeSeconds,
      ...statsRecord(result.stats, c), notes: model.notes,
    }) + '\n');
    return interrupted ? EXIT_INTERRUPTED : EXIT_OK;
  }
  if (single) stdout.write('\n');
  else {
    result.completions.forEach((x, i) =>
      stdout.write(`--- ${i + 1}/${prompts.length}: ${JSON.stringify(x.prompt)} ---\n${x.text}\n`));
  }
  if (!o.quiet) {
    const finish = [...new Set(result.completions.map((x) => x.finish))].join(', ');
    const lines = [
      `${result.promptTokens} prompt tokens, ${result.generatedTokens} generated (${finish})`
        + `${single ? '' : ` in a batch of ${prompts.length}`}; `
        + `prefill ${formatRate(result.prefillTokensPerS)} tok/s, decode ${formatRate(result.decodeTokensPerS)} tok/s, `
        + `time to first token ${(result.ttftSeconds * 1e3).toFixed(1)} ms; seed ${result.seed}`,
      ...formatActive(result.stats, { att: c.attention.n_experts, mlp: c.mlp.n_experts }, result.routing),
    ];
    for (const l of lines) stderr.write(l + '\n');
  }
  return interrupted ? EXIT_INTERRUPTED : EXIT_OK;
}

const HELP = `
The prompt comes from the argument, --prompt-file, or stdin (when no prompt is given and stdin is
not a terminal). --prompts-file runs one prompt per line as one batch (batched prefill and decode)
and prints each completion, labelled, in order. A single completion streams to stdout as it is
produced; the numbers (tokens/s, time to first token, active parameters) go to stderr, or with
--json everything is one JSON object on stdout.

Routing (DESIGN.md §1.3), per layer kind; default: the checkpoint's config.json "routing":
  dense | topk:K | threshold:ε (experts with E·S_e > ε; the paper uses 0.48) | threshold-topk:ε

Examples:
  dsmoe generate runs/small-dsmoe "The model"
  dsmoe generate runs/small-dsmoe "The model" --temperature 0 --max-tokens 40
  dsmoe generate runs/small-dsmoe "Once" --routing attention=dense,mlp=threshold:0.48 --seed 1
  dsmoe generate runs/small-dsmoe --prompts-file prompts.txt --routing topk:2 --json
  echo "The expert" | dsmoe generate runs/small-dsmoe --stop . --top-p 0.9`;

export function generateCommand(ctx: { exitCode: number } = { exitCode: 0 }, deps: GenerateCliDeps = {}): Command {
  return new Command('generate')
    .description('generate text from a checkpoint, computing only the active experts')
    .argument('<checkpoint>', 'checkpoint folder (training or inference)')
    .argument('[prompt]', 'the prompt (else --prompt-file, --prompts-file or stdin)')
    .option('--prompt-file <file>', 'read the prompt from a file')
    .option('--prompts-file <file>', 'one prompt per line, generated as one batch')
    .option('--max-tokens <n>', 'tokens to generate at most', intArg('--max-tokens'), 128)
    .option('--temperature <t>', 'sampling temperature (0 = greedy)',
      numArg('--temperature', (n) => n >= 0, 'a number ≥ 0'), 0.8)
    .option('--top-k <k>', 'sample from the K most likely tokens (0: all)', intArg('--top-k', 0))
    .option('--top-p <p>', 'sample from the smallest set of tokens with probability ≥ P',
      numArg('--top-p', (n) => n > 0 && n <= 1, 'a number in (0, 1]'))
    .option('--seed <n>', 'seed of the sampler (same seed, same text)', intArg('--seed', 0))
    .option('--stop <text>', 'stop when the text produces this string (not shown); repeatable', collect)
    .option('--routing <spec>', 'e.g. topk:2 or attention=dense,mlp=threshold:0.48 (default: config.json)')
    .option('--threads <n>', 'CPU threads', intArg('--threads'))
    .option('--tokenizer <file>', "tokenizer.json (default: the checkpoint's)")
    .addOption(deviceOption())
    .option('--json', 'one JSON object on stdout (completions and numbers), nothing streamed')
    .option('--quiet', 'no numbers on stderr')
    .addHelpText('after', HELP)
    .action(async (checkpoint: string, prompt: string | undefined, o: GenerateCliOptions) => {
      ctx.exitCode = await runGenerate(checkpoint, prompt, o, deps);
    });
}
