// The OpenAI API as dsmoe serve speaks it: request schemas (validated by fastify's ajv, no type
// coercion), the error body, the chat template, and turning a validated body into engine requests.
//
// Extension fields (ignored by clients that do not know them):
//   routing              "attention=dense,mlp=threshold:0.48" — the CLI's --routing grammar
//   return_expert_usage  true: usage.expert_usage = {attention, mlp}: [layer][expert] token counts
//   top_k                sample from the K most likely tokens
//   ignore_eos           true: generate max_tokens tokens even past the end-of-text token (as vLLM)
// and in every response's usage: active_params_per_token, active_expert_share.

/** The body of every error response: `{"error": {message, type, param, code}}`. */
export interface ApiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** An error that becomes an HTTP response with an OpenAI-style body. */
export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly param: string | null = null,
    readonly type = errorType(status), readonly code: string | null = null,
    readonly headers: Record<string, string> = {}) {
    super(message);
  }

  body(): ApiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

function errorType(status: number): string {
  switch (status) {
    case 401: return 'authentication_error';
    case 404: return 'not_found_error';
    case 413: return 'request_too_large';
    case 429: return 'rate_limit_error';
    case 503: return 'service_unavailable';
    case 504: return 'timeout_error';
    default: return status >= 500 ? 'server_error' : 'invalid_request_error';
  }
}

const stop = { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, maxItems: 4 }] };

/** Fields both endpoints take. Unknown fields are ignored, as OpenAI-compatible servers do. */
const common = {
  model: { type: 'string' },
  max_tokens: { type: 'integer', minimum: 1 },
  max_completion_tokens: { type: 'integer', minimum: 1 },
  temperature: { type: 'number', minimum: 0 },
  top_p: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
  top_k: { type: 'integer', minimum: 0 },
  seed: { type: 'integer' },
  stop: { anyOf: [stop, { type: 'null' }] },
  stream: { type: 'boolean' },
  stream_options: { anyOf: [{ type: 'object', properties: { include_usage: { type: 'boolean' } } }, { type: 'null' }] },
  n: { type: 'integer', minimum: 1, maximum: 1 },
  routing: { type: 'string' },
  return_expert_usage: { type: 'boolean' },
  ignore_eos: { type: 'boolean' },
} as const;

export const completionSchema = {
  type: 'object',
  required: ['prompt'],
  properties: {
    ...common,
    prompt: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 64 }] },
    echo: { type: 'boolean', const: false },
    best_of: { type: 'integer', minimum: 1, maximum: 1 },
    logprobs: { type: 'null' },
    suffix: { type: 'null' },
  },
} as const;

const contentPart = {
  type: 'object', required: ['type', 'text'],
  properties: { type: { const: 'text' }, text: { type: 'string' } },
};

export const chatSchema = {
  type: 'object',
  required: ['messages'],
  properties: {
    ...common,
    messages: {
      type: 'array', minItems: 1,
      items: {
        type: 'object', required: ['role', 'content'],
        properties: {
          role: { enum: ['system', 'developer', 'user', 'assistant'] },
          content: { anyOf: [{ type: 'string' }, { type: 'array', items: contentPart }] },
        },
      },
    },
    logprobs: { anyOf: [{ const: false }, { type: 'null' }] },
    tools: { type: 'array', maxItems: 0 },
  },
} as const;

/** What each field must be, for error messages that name it (ajv's own say "must match a schema in anyOf"). */
const FIELD_HELP: Record<string, string> = {
  prompt: 'a string or a list of 1 to 64 strings',
  stop: 'a string or a list of up to 4 strings',
  stream_options: 'an object such as {"include_usage": true}',
  n: '1 (one completion per prompt)',
  best_of: '1',
  echo: 'false (echo is not supported)',
  logprobs: 'null (log probabilities are not supported)',
  suffix: 'null (suffix is not supported)',
  tools: 'empty (tools are not supported: dsmoe models are not chat- or tool-tuned)',
  messages: 'a list of {"role": "system" | "user" | "assistant", "content": string or text parts}',
};

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/** A 400 naming the field an ajv error is about. */
export function validationError(errors: AjvError[]): ApiError {
  const e = errors[0];
  if (!e) return new ApiError(400, 'invalid request body');
  if (e.keyword === 'required') {
    const field = [...e.instancePath.split('/').slice(1), String(e.params.missingProperty)].join('.');
    return new ApiError(400, `${field} is required`, field);
  }
  if (e.instancePath === '') return new ApiError(400, 'the request body must be a JSON object');
  const parts = e.instancePath.split('/').slice(1);
  const top = parts[0];
  const field = parts.map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join('').slice(1).replace(/\.\[/g, '[');
  const help = FIELD_HELP[top];
  if (help) return new ApiError(400, `${top} must be ${help}`, top);
  return new ApiError(400, `${field} ${e.message ?? 'is invalid'}`, top);
}

export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant';
  content: string | { type: 'text'; text: string }[];
}

const ROLE_LABEL: Record<ChatMessage['role'], string> = {
  system: 'System', developer: 'System', user: 'User', assistant: 'Assistant',
};

/**
 * The chat template. dsmoe models are plain language models, not chat-tuned, so a conversation is
 * written as a plain transcript the model continues:
 *
 *   System: <content>\n\nUser: <content>\n\nAssistant: <content>\n\n … Assistant:
 *
 * and generation stops (besides the request's own stop strings) where the model starts the next
 * user turn ("\n\nUser:").
 */
export function chatPrompt(messages: ChatMessage[]): string {
  const text = (c: ChatMessage['content']) => (typeof c === 'string' ? c : c.map((p) => p.text).join(''));
  return messages.map((m) => `${ROLE_LABEL[m.role]}: ${text(m.content)}\n\n`).join('') + 'Assistant:';
}

export const CHAT_STOP = '\n\nUser:';

/** The fields of a completion or chat body that the handlers read (validated by the schemas above). */
export interface SamplingBody {
  model?: string;
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  seed?: number;
  stop?: string | string[] | null;
  stream?: boolean;
  stream_options?: { include_usage?: boolean } | null;
  routing?: string;
  return_expert_usage?: boolean;
  ignore_eos?: boolean;
}

export interface CompletionBody extends SamplingBody {
  prompt: string | string[];
}

export interface ChatBody extends SamplingBody {
  messages: ChatMessage[];
}
