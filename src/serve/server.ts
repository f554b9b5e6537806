// dsmoe serve's HTTP side: an OpenAI-compatible API on fastify over one ModelEngine per checkpoint.
//
//   POST /v1/completions, POST /v1/chat/completions  (stream: server-sent events ending data: [DONE])
//   GET /v1/models, GET /health, GET /metrics
//
// Every error is an OpenAI-style body naming the field at fault: 400 bad JSON or field, 401 missing
// or wrong API key, 404 unknown model or route, 413 body over the limit, 429 queue full (with
// Retry-After), 503 shutting down, 504 over --timeout. A client that disconnects aborts its request:
// the engine frees its slot at the next step.
import { randomUUID, timingSafeEqual } from 'node:crypto';
import * as path from 'node:path';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { InferStats } from '../native/addon';
import type { InferenceModel } from '../infer/load';
import { checkSampling } from '../infer/sample';
import { describeShape, paramCount } from '../model/config';
import { defaultRouting, parseRouting, type Routing } from '../model/routing';
import { ModelEngine, QueueFullError, EngineClosedError, type EngineResult } from './engine';
import { Metrics } from './metrics';
import {
  ApiError, CHAT_STOP, chatPrompt, chatSchema, completionSchema, validationError,
  type ChatBody, type CompletionBody, type SamplingBody,
} from './protocol';

export interface ServeOptions {
  host: string;
  port: number;
  apiKey?: string;
  /** sequences decoded together per model */
  maxBatch: number;
  /** requests waiting for a slot, per model, before 429 */
  maxQueue: number;
  /** the largest max_tokens a request may ask for (also chat's default) */
  maxTokensCap: number;
  /** seconds a request may take in all (queue included) before 504 */
  timeoutS: number;
  /** request body limit in bytes */
  bodyLimit: number;
  /** one line per request (default: none) */
  log?: (line: string) => void;
  /** a pause after each engine step (tests only) */
  stepDelayMs?: number;
}

export interface ServedModel {
  name: string;
  model: InferenceModel;
  engine: ModelEngine;
}

export interface RunningServer {
  app: FastifyInstance;
  url: string;
  models: ServedModel[];
  /**
   * Stops accepting, lets running and queued requests finish for up to graceS seconds, then ends
   * the rest (503) and closes. Resolves to the number of requests cut short.
   */
  shutdown(graceS: number): Promise<number>;
}

/** The served name of a checkpoint: its folder name. */
export function modelName(dir: string): string {
  return path.basename(path.resolve(dir));
}

/** 504: the request ran past --timeout. */
class RequestTimeout extends Error {}
/** The client closed the connection. */
class ClientGone extends Error {}

const unixNow = () => Math.floor(Date.now() / 1e3);

export async function startServer(models: InferenceModel[], o: ServeOptions): Promise<RunningServer> {
  const served: ServedModel[] = [];
  for (const model of models) {
    const name = modelName(model.dir);
    if (served.some((s) => s.name === name)) {
      throw new Error(`two checkpoints are both named "${name}" (a model's name is its folder name): rename one`);
    }
    served.push({ name, model, engine: new ModelEngine(model, o.maxBatch, o.maxQueue, defaultRouting(model.config),
      o.stepDelayMs) });
  }
  const engines = new Map(served.map((s) => [s.name, s.engine]));
  const metrics = new Metrics();
  const created = unixNow();
  let inFlight = 0;

  const app = Fastify({
    logger: false,
    bodyLimit: o.bodyLimit,
    return503OnClosing: true,
    // Strict types: "max_tokens": "5" is an error, not 5.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
  });

  const send = (reply: FastifyReply, e: ApiError) => {
    for (const [k, v] of Object.entries(e.headers)) reply.header(k, v);
    return reply.code(e.status).send(e.body());
  };

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string; validation?: unknown[] }, _req, reply) => {
    if (err instanceof ApiError) return send(reply, err);
    if (err.validation) return send(reply, validationError(err.validation as Parameters<typeof validationError>[0]));
    const status = err.statusCode ?? 500;
    if (status === 413) {
      return send(reply, new ApiError(413, `the request body is over the limit of ${o.bodyLimit} bytes`));
    }
    if (status === 415) {
      return send(reply, new ApiError(415, 'the request body must be JSON (Content-Type: application/json)'));
    }
    if (status === 400) return send(reply, new ApiError(400, `malformed JSON body: ${err.message}`));
    if (status === 503) return send(reply, new ApiError(503, 'the server is shutting down'));
    o.log?.(`error: ${err.stack ?? err.message}`);
    return send(reply, new ApiError(500, `internal error: ${err.message}`));
  });
  app.setNotFoundHandler((req, reply) =>
    send(reply, new ApiError(404, `no route ${req.method} ${req.url.split('?')[0]}`)));

  // The client's address, kept for the log line (the socket may be gone by then).
  app.addHook('onRequest', async (req) => { (req as Tagged).client = req.ip; });

  // The API key, when set, guards everything but /health (for load balancers).
  if (o.apiKey) {
    const want = Buffer.from(o.apiKey);
    app.addHook('onRequest', async (req, reply) => {
      if (req.url === '/health') return;
      const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
      const got = Buffer.from(m ? m[1].trim() : '');
      if (got.length !== want.length || !timingSafeEqual(got, want)) {
        await send(reply, new ApiError(401, m ? 'wrong API key' : 'missing API key: send "Authorization: Bearer <key>"',
          null, 'authentication_error', 'invalid_api_key'));
      }
    });
  }

  // One log line and one metrics count per request (streams count themselves: their reply is hijacked).
  app.addHook('onResponse', async (req, reply) => {
    if ((req as Tagged).streamed) return;
    finishLog(req, reply.statusCode, reply.elapsedTime);
  });
  const finishLog = (req: FastifyRequest, status: number, ms: number) => {
    const endpoint = req.routeOptions.url ?? 'unknown';
    metrics.countRequest(endpoint, status);
    const extra = (req as Tagged).logExtra ?? '';
    const who = (req as Tagged).client;
    o.log?.(`${new Date().toISOString()} ${who} ${req.method} ${req.url} ${status} ${ms.toFixed(0)}ms${extra}`);
  };

  app.get('/health', async () => ({
    status: 'ok',
    models: served.map((s) => ({ id: s.name, running: s.engine.running, queued: s.engine.queueDepth })),
  }));

  app.get('/metrics', async (_req, reply) => {
    reply.type('text/plain; version=0.0.4; charset=utf-8');
    return metrics.render(engines);
  });

  app.get('/v1/models', async () => ({
    object: 'list',
    data: served.map((s) => modelEntry(s, created)),
  }));

  app.get('/v1/models/:id', async (req) => {
    const id = (req.params as { id: string }).id;
    const s = served.find((x) => x.name === id);
    if (!s) throw new ApiError(404, `model "${id}" not found`, null, 'not_found_error', 'model_not_found');
    return modelEntry(s, created);
  });

  app.post('/v1/completions', { schema: { body: completionSchema } }, async (req, reply) => {
    const body = req.body as CompletionBody;
    const prompts = typeof body.prompt === 'string' ? [body.prompt] : body.prompt;
    return complete(req, reply, body, prompts, 16, false);
  });

  app.post('/v1/chat/completions', { schema: { body: chatSchema } }, async (req, reply) => {
    const body = req.body as ChatBody;
    return complete(req, reply, body, [chatPrompt(body.messages)], o.maxTokensCap, true);
  });

  /** A completion (chat: one prompt, the chat shapes), streamed or as one JSON body. */
  async function complete(req: FastifyRequest, reply: FastifyReply, body: SamplingBody, prompts: string[],
    defaultMaxTokens: number, chat: boolean) {
    const s = pickModel(body.model);
    const plan = planRequest(s, body, prompts, defaultMaxTokens, chat);
    const id = `${chat ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '')}`;
    const createdAt = unixNow();
    const ac = new AbortController();
    const timeout = new RequestTimeout(`the request took longer than ${o.timeoutS} s (--timeout)`);
    const timer = setTimeout(() => ac.abort(timeout), o.timeoutS * 1e3);
    reply.raw.on('close', () => { if (!reply.raw.writableFinished) ac.abort(new ClientGone('client disconnected')); });
    inFlight++;
    const stream = body.stream === true;
    const pieces: ((text: string) => void)[] = prompts.map((_, i) => (text) => {
      if (stream && text) write(chunk(i, text, null));
    });
    const write = (obj: unknown) => {
      if (!reply.raw.writableEnded) reply.raw.write(`data: ${JSON.stringify(obj)}\n\n`);
    };
    const chunk = (index: number, text: string, finish: string | null) => ({
      id, object: chat ? 'chat.completion.chunk' : 'text_completion', created: createdAt, model: s.name,
      choices: [chat
        ? { index, delta: finish ? {} : { content: text }, logprobs: null, finish_reason: finish }
        : { index, text, logprobs: null, finish_reason: finish }],
    });
    const results: Promise<EngineResult>[] = [];
    try {
      try {
        plan.requests.forEach((r, i) => results.push(s.engine.submit({ ...r, onText: pieces[i], signal: ac.signal })));
      } catch (e) {
        ac.abort(e);  // the prompts already queued leave: their promises reject, nobody waits for them
        for (const p of results) p.catch(() => undefined);
        throw e;
      }
      (req as Tagged).logExtra = ` model=${s.name} prompt_tokens=${plan.promptTokens}`;
      if (!stream) {
        const done = await Promise.all(results);
        (req as Tagged).logExtra += ` completion_tokens=${sum(done, (d) => d.completionTokens)}`;
        return {
          id, object: chat ? 'chat.completion' : 'text_completion', created: createdAt, model: s.name,
          choices: done.map((d, index) => chat
            ? { index, message: { role: 'assistant', content: d.text }, logprobs: null, finish_reason: d.finishReason }
            : { index, text: d.text, logprobs: null, finish_reason: d.finishReason }),
          usage: usage(done, plan.returnExpertUsage),
        };
      }
      // Stream: headers now; pieces as they come; the finish of each choice; usage if asked; [DONE].
      (req as Tagged).streamed = true;
      reply.hijack();
      reply.raw.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive',
      });
      if (chat) write({ ...chunk(0, '', null), choices: [{ index: 0, delta: { role: 'assistant', content: '' },
        logprobs: null, finish_reason: null }] });
      let status = 200;
      try {
        const done = await Promise.all(results.map((p, i) => p.then((d) => {
          write(chunk(i, '', d.finishReason));
          return d;
        })));
        if (body.stream_options?.include_usage) {
          write({ id, object: chat ? 'chat.completion.chunk' : 'text_completion', created: createdAt, model: s.name,
            choices: [], usage: usage(done, plan.returnExpertUsage) });
        }
        (req as Tagged).logExtra += ` completion_tokens=${sum(done, (d) => d.completionTokens)}`;
      } catch (e) {
        const err = toApiError(e);
        status = err instanceof ApiError ? err.status : 499;
        if (err instanceof ApiError) write(err.body());
        else (req as Tagged).logExtra += ' (client disconnected)';
      }
      if (!reply.raw.writableEnded) reply.raw.end('data: [DONE]\n\n');
      finishLog(req, status, reply.elapsedTime);
      return reply;
    } catch (e) {
      const err = toApiError(e);
      if (err instanceof ApiError) throw err;
      // The client is gone: nobody reads the answer.
      (req as Tagged).logExtra = `${(req as Tagged).logExtra ?? ''} (client disconnected)`;
      return reply.code(499).send();
    } finally {
      clearTimeout(timer);
      inFlight--;
    }
  }

  function pickModel(name: string | undefined): ServedModel {
    if (name === undefined) {
      if (served.length === 1) return served[0];
      throw new ApiError(400, `model is required: this server serves ${served.map((s) => s.name).join(', ')}`, 'model');
    }
    const s = served.find((x) => x.name === name);
    if (!s) {
      throw new ApiError(404, `model "${name}" not found (this server serves ${served.map((x) => x.name).join(', ')})`,
        'model', 'not_found_error', 'model_not_found');
    }
    return s;
  }

  /** Checks what the schema cannot (routing, lengths, the caps) and builds the engine requests. */
  function planRequest(s: ServedModel, body: SamplingBody, prompts: string[], defaultMaxTokens: number,
    chat: boolean) {
    let routing: Routing;
    try {
      routing = parseRouting(body.routing, s.model.config);
    } catch (e) {
      throw new ApiError(400, (e as Error).message.replace(/--routing/g, 'routing'), 'routing');
    }
    const maxTokensField = body.max_completion_tokens !== undefined ? 'max_completion_tokens' : 'max_tokens';
    const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? Math.min(defaultMaxTokens, o.maxTokensCap);
    if (maxTokens > o.maxTokensCap) {
      throw new ApiError(400, `${maxTokensField} ${maxTokens} is over this server's cap of ${o.maxTokensCap} ` +
        '(--max-tokens-cap)', maxTokensField);
    }
    const sampling = { temperature: body.temperature ?? 1, topP: body.top_p, topK: body.top_k };
    try {
      checkSampling(sampling);
    } catch (e) {
      throw new ApiError(400, (e as Error).message.replace(/--(\w+)-(\w+)/, '$1_$2').replace(/--/, ''));
    }
    const stop = body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
    if (stop.some((x) => x === '')) throw new ApiError(400, 'stop strings must not be empty', 'stop');
    if (chat) stop.push(CHAT_STOP);
    const context = s.model.config.max_seq_len;
    const seed = body.seed ?? Math.floor(Math.random() * 2 ** 31);
    const field = chat ? 'messages' : 'prompt';
    const requests = prompts.map((p, i) => {
      const what = prompts.length > 1 ? `${field}[${i}]` : field;
      const ids = Array.from(s.model.tokenizer.encode(p));
      if (ids.length === 0) throw new ApiError(400, `${what} is empty (it encodes to no tokens)`, field);
      if (ids.length >= context) {
        throw new ApiError(400, `${what} is ${ids.length} tokens long; the model's context is ${context} tokens ` +
          'and it needs room for at least one more', field);
      }
      return { promptIds: ids, maxTokens, sampling, seed: seed + i, stop, routing, ignoreEos: body.ignore_eos };
    });
    return {
      requests, returnExpertUsage: body.return_expert_usage === true,
      promptTokens: requests.reduce((a, r) => a + r.promptIds.length, 0),
    };
  }

  let address: string;
  try {
    address = await app.listen({ host: o.host, port: o.port });
  } catch (e) {
    await Promise.all(served.map((x) => x.engine.close()));
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new Error(`port ${o.port} on ${o.host} is in use: choose another with --port`);
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') {
      throw new Error(`cannot bind to --host ${o.host}: not an address of this machine`);
    }
    throw e;
  }
  let shuttingDown: Promise<number> | undefined;
  return {
    app, url: address, models: served,
    shutdown(graceS: number) {
      shuttingDown ??= (async () => {
        const closing = app.close();  // stops accepting; new requests on open connections get 503
        const deadline = Date.now() + graceS * 1e3;
        while (inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
        const cut = inFlight;
        await Promise.all(served.map((x) => x.engine.close('the server shut down before the request finished')));
        app.server.closeAllConnections();
        await closing;
        return cut;
      })();
      return shuttingDown;
    },
  };
}

interface Tagged extends FastifyRequest {
  client?: string;
  streamed?: boolean;
  logExtra?: string;
}

const sum = <T>(xs: T[], f: (x: T) => number) => xs.reduce((a, x) => a + f(x), 0);

/** An engine or abort error as the response it becomes; ClientGone stays as is (nobody to answer). */
function toApiError(e: unknown): ApiError | ClientGone {
  if (e instanceof ApiError || e instanceof ClientGone) return e;
  if (e instanceof QueueFullError) {
    return new ApiError(429, e.message, null, 'rate_limit_error', 'queue_full', { 'retry-after': '1' });
  }
  if (e instanceof RequestTimeout) return new ApiError(504, e.message, null, 'timeout_error', 'timeout');
  if (e instanceof EngineClosedError) return new ApiError(503, e.message, null, 'service_unavailable', 'shutting_down');
  return new ApiError(500, `internal error: ${(e as Error)?.message ?? String(e)}`);
}

/** The usage of a response: OpenAI's token counts plus the sparsity of the tokens it computed. */
function usage(done: EngineResult[], withExperts: boolean) {
  const promptTokens = sum(done, (d) => d.promptTokens), completionTokens = sum(done, (d) => d.completionTokens);
  const tokens = sum(done, (d) => d.stats.tokens);
  const mean = (f: (s: InferStats) => number) => (tokens ? sum(done, (d) => f(d.stats) * d.stats.tokens) / tokens : 0);
  const add = (f: (s: InferStats) => number[][]) =>
    f(done[0].stats).map((row, l) => row.map((_, e) => sum(done, (d) => f(d.stats)[l][e])));
  return {
    prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens,
    active_params_per_token: mean((s) => s.activeParamsPerToken),
    active_expert_share: mean((s) => s.activeExpertShare),
    ...(withExperts ? { expert_usage: { attention: add((s) => s.attUsage), mlp: add((s) => s.mlpUsage) } } : {}),
  };
}

function modelEntry(s: ServedModel, created: number) {
  const c = s.model.config;
  return {
    id: s.name, object: 'model', created, owned_by: 'dsmoe',
    // dsmoe's own fields
    shape: describeShape(c), params: paramCount(c).total, context_length: c.max_seq_len, dtype: s.model.dtype,
    experts: { attention: c.attention.n_experts, mlp: c.mlp.n_experts },
    routing: defaultRouting(c), mode: c.training.mode,
  };
}
