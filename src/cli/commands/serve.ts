// `dsmoe serve`: an OpenAI-compatible HTTP server over one or more checkpoints (src/serve).
import { Command } from 'commander';
import { loadInferenceModel, type InferenceModel } from '../../infer/load';
import { loadAddon } from '../../native/addon';
import { formatRouting, defaultRouting } from '../../model/routing';
import { describeShape } from '../../model/config';
import { envApiKey, envServeStepDelayMs } from '../../util/env';
import { startServer, type RunningServer } from '../../serve/server';
import { intArg, numArg } from '../args';
import { checkInferenceDevice, deviceOption } from './eval';
import { EXIT_OK } from '../exit-codes';

export interface ServeCliOptions {
  host: string;
  port: number;
  apiKey?: string;
  maxBatch: number;
  maxQueue: number;
  maxTokensCap: number;
  timeout: number;
  grace: number;
  bodyLimit: number;
  threads?: number;
  tokenizer?: string;
  device?: string;
  quiet?: boolean;
}

export interface ServeCliDeps {
  stderr?: NodeJS.WritableStream;
  /** called once the server listens (tests) */
  onListening?: (s: RunningServer) => void;
  /** aborting it shuts the server down like SIGTERM (tests) */
  signal?: AbortSignal;
}

/** Runs the server until SIGTERM / SIGINT (or deps.signal); resolves to the exit code. */
export async function runServe(checkpoints: string[], o: ServeCliOptions, deps: ServeCliDeps = {}): Promise<number> {
  const stderr = deps.stderr ?? process.stderr;
  const bad = checkInferenceDevice(o.device, stderr, o.quiet);
  if (bad !== undefined) return bad;
  if (o.threads !== undefined) loadAddon().setThreads({ threads: o.threads });
  const models: InferenceModel[] = checkpoints.map((c) => loadInferenceModel(c, { tokenizer: o.tokenizer }));
  for (const m of models) for (const n of m.notes) if (!o.quiet) stderr.write(`note: ${n}\n`);
  const apiKey = o.apiKey ?? envApiKey();
  const server = await startServer(models, {
    host: o.host, port: o.port, apiKey, maxBatch: o.maxBatch, maxQueue: o.maxQueue, maxTokensCap: o.maxTokensCap,
    timeoutS: o.timeout, bodyLimit: o.bodyLimit, log: o.quiet ? undefined : (line) => stderr.write(line + '\n'),
    stepDelayMs: envServeStepDelayMs(),
  });
  const say = (line: string) => stderr.write(`dsmoe serve: ${line}\n`);
  say(`listening on ${server.url}${apiKey ? ' (API key required)' : ''}`);
  if (!o.quiet) {
    for (const s of server.models) {
      const routing = formatRouting(defaultRouting(s.model.config));
      say(`model "${s.name}": ${describeShape(s.model.config)}; default routing ${routing}`);
    }
    say(`batch ${o.maxBatch} sequences, queue ${o.maxQueue}, max_tokens ≤ ${o.maxTokensCap}, timeout ${o.timeout} s`);
  }
  deps.onListening?.(server);

  await new Promise<void>((resolve) => {
    const stop = (why: string) => {
      process.removeListener('SIGTERM', onTerm);
      process.removeListener('SIGINT', onInt);
      say(`${why}: no new requests; finishing the running ones (up to ${o.grace} s)`);
      void server.shutdown(o.grace).then((cut) => {
        say(cut > 0 ? `stopped; ${cut} request(s) were cut short after the grace period` : 'stopped');
        resolve();
      });
    };
    const onTerm = () => stop('SIGTERM');
    const onInt = () => stop('SIGINT');
    process.once('SIGTERM', onTerm);
    process.once('SIGINT', onInt);
    deps.signal?.addEventListener('abort', () => stop('stop requested'), { once: true });
  });
  return EXIT_OK;
}

const HELP = `
An OpenAI-compatible API (POST /v1/completions, POST /v1/chat/completions, GET /v1/models) plus
GET /health and GET /metrics (Prometheus). Each checkpoint is served under its folder name as the
"model" field. Requests join the running batch at the next step (continuous batching), each with
its own routing; greedy requests get the text they get alone.

Extension fields of a request: "routing" ("attention=dense,mlp=threshold:0.48", the --routing
grammar of generate), "return_expert_usage": true (per-layer expert counts in usage), "top_k".
Every response's usage has active_params_per_token and active_expert_share.

Chat: dsmoe models are not chat-tuned; messages are joined as a plain transcript
("System: …\\n\\nUser: …\\n\\nAssistant:") that the model continues, stopping at "\\n\\nUser:".

The API key (--api-key or DSMOE_API_KEY) is sent as "Authorization: Bearer <key>"; /health is open.
SIGTERM / SIGINT: stop accepting, finish running requests for up to --grace seconds, exit 0.

Examples:
  dsmoe serve runs/small-dsmoe
  dsmoe serve runs/small-dsmoe runs/small-dense --port 9000 --max-batch 32
  curl -s localhost:8080/v1/completions -H 'content-type: application/json' \\
    -d '{"model": "small-dsmoe", "prompt": "The model", "max_tokens": 20, "routing": "threshold:0.48"}'`;

export function serveCommand(ctx: { exitCode: number } = { exitCode: 0 }, deps: ServeCliDeps = {}): Command {
  return new Command('serve')
    .description('serve checkpoints over an OpenAI-compatible HTTP API with continuous batching')
    .argument('<checkpoint...>', 'checkpoint folders (each served under its folder name)')
    .option('--host <host>', 'address to bind (use 0.0.0.0 to accept other machines)', '127.0.0.1')
    .option('--port <n>', 'port (0: any free port)', intArg('--port', 0), 8080)
    .option('--api-key <key>', 'require this key (default: $DSMOE_API_KEY, else none)')
    .option('--max-batch <n>', 'sequences decoded together per model', intArg('--max-batch'), 16)
    .option('--max-queue <n>', 'requests waiting per model before 429', intArg('--max-queue', 0), 256)
    .option('--max-tokens-cap <n>', 'the largest max_tokens a request may ask for', intArg('--max-tokens-cap'), 1024)
    .option('--timeout <s>', 'seconds a request may take, queue included, before 504',
      numArg('--timeout', (n) => n > 0, 'a number of seconds > 0'), 600)
    .option('--grace <s>', 'seconds running requests get to finish on SIGTERM',
      numArg('--grace', (n) => n >= 0, 'a number of seconds ≥ 0'), 30)
    .option('--body-limit <bytes>', 'largest request body', intArg('--body-limit'), 1 << 20)
    .option('--threads <n>', 'CPU threads', intArg('--threads'))
    .option('--tokenizer <file>', "tokenizer.json for every checkpoint (default: each checkpoint's)")
    .addOption(deviceOption())
    .option('--quiet', 'no per-request log lines')
    .addHelpText('after', HELP)
    .action(async (checkpoints: string[], o: ServeCliOptions) => {
      ctx.exitCode = await runServe(checkpoints, o, deps);
    });
}
