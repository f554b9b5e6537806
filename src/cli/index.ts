// The dsmoe command line: one command per file in ./commands, each exporting its handler.
import { Command } from 'commander';
import { benchCommand } from './commands/bench';
import { evalCommand } from './commands/eval';
import { generateCommand } from './commands/generate';
import { convertCommand } from './commands/convert';
import { infoCommand } from './commands/info';
import { serveCommand } from './commands/serve';
import { tokenizeCommand } from './commands/tokenize';
import { tokenizerCommand } from './commands/tokenizer';
import { trainCommand } from './commands/train';
import { envDebug } from '../util/env';
import { EXIT_ERROR } from './exit-codes';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { version } = require('../../package.json') as { version: string };

/** Shared with commands: a command whose handler returns an exit code (e.g. 130 after Ctrl-C) sets it here. */
export interface CliContext {
  exitCode: number;
}

export function buildProgram(ctx: CliContext = { exitCode: 0 }): Command {
  const program = new Command('dsmoe')
    .description('DS-MoE language models: dense training, sparse inference.')
    .version(version)
    .showHelpAfterError('(run with --help for usage)')
    // Options belong to the command they follow: `dsmoe bench --threads 2 <ckpt>` (bench's own) and
    // `dsmoe bench kernels --threads 1,2` (the subcommand's) do not collide.
    .enablePositionalOptions();
  program.addCommand(trainCommand(ctx));
  program.addCommand(tokenizerCommand());
  program.addCommand(tokenizeCommand(ctx));
  program.addCommand(benchCommand());
  program.addCommand(generateCommand(ctx));
  program.addCommand(evalCommand(ctx));
  program.addCommand(serveCommand(ctx));
  program.addCommand(infoCommand());
  program.addCommand(convertCommand());
  return program;
}

/** Runs the CLI; resolves to the exit code. Errors print one clear line, never a stack trace. */
export async function main(argv: string[]): Promise<number> {
  const ctx: CliContext = { exitCode: 0 };
  const program = buildProgram(ctx);
  program.exitOverride();
  try {
    await program.parseAsync(argv);
    return ctx.exitCode;
  } catch (err) {
    const e = err as { code?: string; exitCode?: number; message?: string };
    if (e.code && e.code.startsWith('commander.')) return e.exitCode ?? EXIT_ERROR;
    process.stderr.write(`dsmoe: ${e.message ?? String(err)}\n`);
    if (envDebug()) process.stderr.write(`${(err as Error).stack}\n`);
    return EXIT_ERROR;
  }
}
