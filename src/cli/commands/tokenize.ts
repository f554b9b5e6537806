// `dsmoe tokenize`: text → token shards for `dsmoe train --data <dir>` (src/data/tokenize-shards.ts).
import * as os from 'node:os';
import { Command, InvalidArgumentError } from 'commander';
import { DEFAULT_SHARD_TOKENS, tokenizeToShards, type TokenizeShardsResult } from '../../data/tokenize-shards';
import { defaultTokenizer } from '../../tokenizer/default';
import { formatDuration } from '../../train/schedule';
import { intArg } from '../args';
import { EXIT_INTERRUPTED, EXIT_OK } from '../exit-codes';
import { displayPath } from '../hints';
import { Reporter, barCells, formatRate } from '../progress';

export interface TokenizeCliOptions {
  out: string;
  tokenizer?: string;
  shardSize?: number;
  workers?: number;
  valShare?: number;
  seed?: number;
  json?: boolean;
  quiet?: boolean;
}

export interface TokenizeCliDeps {
  stdout?: NodeJS.WriteStream;
  stderr?: NodeJS.WriteStream;
  /** Aborts like Ctrl-C (tests); the handler also listens for SIGINT. */
  signal?: AbortSignal;
}

/** 100M, 2.5G, 500k, 1000000 → a token count. */
export const tokenCountArg = (flag: string) => (v: string): number => {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgb]?)\s*$/i.exec(v);
  const mult: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, b: 1e9 };
  const n = m ? Math.round(Number(m[1]) * mult[m[2].toLowerCase()]) : NaN;
  if (!(n >= 1) || !Number.isSafeInteger(n))
    throw new InvalidArgumentError(`${flag} expects a token count such as 100M, 500k or 2G, got "${v}"`);
  return n;
};

const valShareArg = (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !(n >= 0 && n <= 0.5))
    throw new InvalidArgumentError(`--val-share expects a share in [0, 0.5] such as 0.05, got "${v}"`);
  return n;
};

/** The JSON summary of a run (also what --json prints). */
export function tokenizeSummary(r: TokenizeShardsResult): Record<string, unknown> {
  const m = r.manifest;
  return {
    type: 'done', status: r.status, out: r.out, complete: m.complete, dtype: m.dtype, vocab_size: m.vocab_size,
    shards: m.shards.length, kept_shards: r.keptShards,
    train_tokens: m.shards.reduce((n, s) => n + s.tokens, 0), val_tokens: m.val?.tokens ?? 0,
    documents: m.documents, chars: r.chars, seconds: r.seconds,
    chars_per_s: r.seconds > 0 ? r.chars / r.seconds : 0, workers: r.workers, direct_io_bytes: r.directBytes,
  };
}

/** Runs `dsmoe tokenize`; resolves to the exit code (0, or 130 after Ctrl-C). Never calls process.exit. */
export async function runTokenize(
  inputs: string[], o: TokenizeCliOptions, deps: TokenizeCliDeps = {},
): Promise<number> {
  const stdout = deps.stdout ?? process.stdout;
  const stderr = deps.stderr ?? process.stderr;
  const json = !!o.json;
  const rep = new Reporter({ stream: json ? stderr : stdout, quiet: o.quiet });
  const ac = new AbortController();
  deps.signal?.addEventListener('abort', () => ac.abort(), { once: true });
  const onSigint = () => {
    ac.abort();
    rep.line('Ctrl-C: stopping; finished shards are kept (run the same command again to continue)');
  };
  process.once('SIGINT', onSigint);
  let tokenizer = o.tokenizer;
  if (tokenizer === undefined) {
    void rep.spin('preparing the default tokenizer (trained once on the built-in corpus, then cached)');
    tokenizer = defaultTokenizer();
  }
  let lastPlain = 0;
  let startDocs = -1;
  try {
    const r = await tokenizeToShards({
      inputs, out: o.out, tokenizer, shardTokens: o.shardSize, workers: o.workers, valShare: o.valShare,
      seed: o.seed, signal: ac.signal,
      onProgress: (p) => {
        if (p.phase === 'scan') {
          void rep.spin(`counting documents${p.file ? ` in ${displayPath(p.file)}` : ''}`);
          return;
        }
        if (startDocs < 0) {
          startDocs = p.documents;
          rep.spinDone(`${p.totalDocuments} documents${p.documents > 0 ? `; continuing after document ${p.documents} ` +
            `(${p.shards} shards kept)` : ''}`);
        }
        const frac = p.totalDocuments > 0 ? p.documents / p.totalDocuments : 1;
        const rate = p.elapsedS > 0 ? p.chars / p.elapsedS : 0;
        const docRate = p.elapsedS > 0 ? (p.documents - startDocs) / p.elapsedS : 0;
        const eta = docRate > 0 ? ` ETA ${formatDuration((p.totalDocuments - p.documents) / docRate)}` : '';
        const text = `${barCells(frac)} ${(100 * frac).toFixed(1)}% | ${formatRate(rate)} chars/s | ` +
          `${formatRate(p.tokens)} tokens, ${p.shards} shards${eta}`;
        if (rep.tty) rep.bar(text, frac >= 1);
        else if (p.elapsedS - lastPlain >= 10 || frac >= 1) {
          lastPlain = p.elapsedS;
          rep.info(text);
        }
      },
    });
    rep.stop();
    const s = tokenizeSummary(r);
    if (json) stdout.write(JSON.stringify(s) + '\n');
    const m = r.manifest;
    const where = displayPath(r.out);
    if (r.status === 'interrupted') {
      rep.line(`interrupted: ${m.shards.length} shards finished in ${where} (${r.keptShards} from before); run the ` +
        'same command again to continue');
      return EXIT_INTERRUPTED;
    }
    if (r.status === 'complete') rep.line(`${where} is already complete (${m.shards.length} shards); nothing to do`);
    else {
      rep.line(`wrote ${m.shards.length} shards (${formatRate(s.train_tokens as number)} training tokens, ` +
        `${formatRate(s.val_tokens as number)} held out, ${m.dtype}) to ${where} in ${r.seconds.toFixed(1)} s: ` +
        `${formatRate(s.chars_per_s as number)} chars/s with ${r.workers} worker${r.workers === 1 ? '' : 's'}` +
        `${r.keptShards > 0 ? ` (${r.keptShards} shards kept from the interrupted run)` : ''}`);
    }
    if (!o.quiet) rep.line(`next: dsmoe train --data ${where}${o.tokenizer ? ` --tokenizer ${o.tokenizer}` : ''}`);
    return EXIT_OK;
  } catch (e) {
    rep.spinDone(undefined, false);
    rep.stop();
    throw e;
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
}

const HELP = `
How it works:
  Documents (paragraphs of .txt/.md, lines of .jsonl, sentences of builtin:nlp-corpus) are read in
  order and tokenized by --workers threads; the tokens are written to --out as flat uint16
  (vocabulary ≤ 65536) or uint32 files: train-00000.bin, train-00001.bin, … (documents joined by
  the EOS token; a shard ends at the first document end after --shard-size tokens) and val.bin, the
  held-out documents (--val-share of them, chosen by --seed as \`dsmoe train\` chooses them for text).
  manifest.json lists the shards with token counts and checksums (docs/shards.md).

  The shards are the same for any number of workers. An interrupted run (Ctrl-C, a crash) keeps its
  finished shards: run the same command again to continue.

  Train on them with \`dsmoe train --data <dir>\` (with the same --tokenizer): the shards are
  memory-mapped, never read whole into memory.

  On Linux the shards are written with O_DIRECT, around the page cache (less CPU for the writing
  thread; the first training steps then read them from disk). DSMOE_DIRECT_IO=0 turns that off,
  e.g. for a network file system where direct writes are slow.

Examples:
  dsmoe tokenize corpus/ --out shards/                       # default tokenizer, all cores
  dsmoe tokenize a.jsonl b.jsonl --out shards/ --tokenizer tokenizer.json --shard-size 50M
  dsmoe tokenize builtin:nlp-corpus --out shards/ --workers 2 --json
  dsmoe train --data shards/ --tokenizer tokenizer.json --steps 2000
`;

export function tokenizeCommand(ctx: { exitCode: number } = { exitCode: 0 }, deps: TokenizeCliDeps = {}): Command {
  return new Command('tokenize')
    .description('tokenize text into memory-mappable token shards for dsmoe train --data <dir>')
    .argument('<inputs...>', 'text inputs: .txt, .md, .jsonl files, folders, or builtin:nlp-corpus')
    .requiredOption('--out <dir>', 'folder for the shards and manifest.json (created; an interrupted run continues)')
    .option('--tokenizer <file>', 'tokenizer.json (default: the built-in BPE)')
    .option('--shard-size <tokens>', `tokens per training shard (default ${DEFAULT_SHARD_TOKENS / 1e6}M)`,
      tokenCountArg('--shard-size'))
    .option('--workers <n>', `tokenizer threads (default: all cores, ${os.availableParallelism()} here; 0: none, `
      + 'the main thread tokenizes)', intArg('--workers', 0))
    .option('--val-share <x>', 'share of documents held out for validation, in [0, 0.5] (default 0.05)', valShareArg)
    .option('--seed <n>', 'seed of the held-out choice (default 0)', intArg('--seed', 0))
    .option('--json', 'print a JSON summary on stdout')
    .option('--quiet', 'no progress output')
    .addHelpText('after', HELP)
    .action(async (inputs: string[], o: TokenizeCliOptions) => {
      ctx.exitCode = await runTokenize(inputs, o, deps);
    });
}
