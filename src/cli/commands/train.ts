// `dsmoe train`: train a DS-MoE model (or the dense / sparse-MoE baselines) on text or token files.
import * as path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { MODES, PRESET_NAMES, formatCount, type ConfigOverrides } from '../../model/config';
import { formatDuration, parseDuration } from '../../train/schedule';
import {
  DeviceUnusableError, train, type EvalRecord, type ModelBackend, type StepRecord, type TrainOptions, type TrainResult,
} from '../../train/trainer';
import { formatRouting, routingLabel } from '../../model/routing';
import { shareArg } from '../args';
import { Reporter, barCells, formatRate } from '../progress';
import { parseDeviceRequest, resolveDevice, type DeviceChoice } from '../../native/device';
import { EXIT_USAGE, exitCodeFor } from '../exit-codes';
import { trainNextSteps } from '../hints';
import { loadAddon } from '../../native/addon';
import { checkRankInfo, joinGroup, type ProcessGroup } from '../../parallel/group';
import { launch, parseMaster, rankArgs } from '../../parallel/launcher';
import { envParallel } from '../../util/env';

export interface TrainCliOptions {
  preset?: string;
  mode?: string;
  config?: string;
  dModel?: number;
  layers?: number;
  attExperts?: number;
  attHeads?: number;
  kvHeads?: number;
  headDim?: number;
  mlpExperts?: number;
  expertDim?: number;
  routerHidden?: number;
  seqLen?: number;
  data?: string[];
  tokenizer?: string;
  steps?: number;
  tokens?: number;
  time?: number;
  batchSize?: number;
  gradAccum?: number;
  lr?: number;
  minLr?: number;
  warmup?: number;
  weightDecay?: number;
  clip?: number;
  miAlphaAtt?: number;
  miAlphaMlp?: number;
  topK?: number;
  seed?: number;
  evalInterval?: number;
  evalBatches?: number;
  saveInterval?: number;
  out?: string;
  resume?: string;
  threads?: number;
  targetActive?: number;
  device: string;
  json?: boolean;
  quiet?: boolean;
  /** Data-parallel: ranks on this machine (the command becomes their launcher). */
  nproc?: number;
  nnodes?: number;
  nodeRank?: number;
  /** ADDR:PORT of the rendezvous that node rank 0 hosts. */
  master?: string;
}

export interface TrainCliDeps {
  backend?: ModelBackend | (() => ModelBackend);
  /** Output streams (default process.stdout / process.stderr). */
  stdout?: NodeJS.WriteStream;
  stderr?: NodeJS.WriteStream;
  /** Aborts like Ctrl-C (tests); the handler also listens for SIGINT. */
  signal?: AbortSignal;
  /** The command line (default process.argv): a launcher (--nproc) passes its train arguments to the ranks. */
  argv?: string[];
}

const intArg = (flag: string, min = 1) => (v: string): number => {
  const n = Number(v);
  if (!/^\s*\d+\s*$/.test(v) || !Number.isSafeInteger(n) || n < min)
    throw new InvalidArgumentError(`${flag} expects an integer ≥ ${min}, got "${v}"`);
  return n;
};
const countArg = (flag: string) => (v: string): number => {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmbg]?)\s*$/i.exec(v);
  const mult: Record<string, number> = { '': 1, k: 1e3, m: 1e6, b: 1e9, g: 1e9 };
  const n = m ? Math.round(Number(m[1]) * mult[m[2].toLowerCase()]) : NaN;
  if (!(n >= 1) || !Number.isSafeInteger(n))
    throw new InvalidArgumentError(`${flag} expects a count such as 500000, 500k or 2M, got "${v}"`);
  return n;
};
const numArg = (flag: string, positive = false) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || (positive ? n <= 0 : n < 0))
    throw new InvalidArgumentError(`${flag} expects a ${positive ? 'positive' : 'non-negative'} number, got "${v}"`);
  return n;
};
const durationArg = (v: string): number => {
  try {
    return parseDuration(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
};
const presetArg = (v: string): string => {
  if (!PRESET_NAMES.includes(v))
    throw new InvalidArgumentError(`unknown preset "${v}" (available: ${PRESET_NAMES.join(', ')})`);
  return v;
};
const modeArg = (v: string): string => {
  if (!(MODES as readonly string[]).includes(v))
    throw new InvalidArgumentError(`unknown mode "${v}" (expected one of ${MODES.join(', ')})`);
  return v;
};
const seedArg = (v: string): number => {
  const n = Number(v);
  if (!/^\s*\d+\s*$/.test(v) || !Number.isSafeInteger(n))
    throw new InvalidArgumentError(`--seed expects a non-negative integer, got "${v}"`);
  return n;
};

/**
 * --device for training: cpu; cuda goes to the engine, which refuses a device it cannot use with the
 * reason (runTrain: exit code 2); auto is cuda when a CUDA device is usable (the CUDA backend has every
 * op since issue 14), else the CPU with a notice saying why.
 */
export function trainDevice(o: Pick<TrainCliOptions, 'device'>): DeviceChoice {
  const request = parseDeviceRequest(o.device);
  if (request === 'cuda') return { device: 'cuda' };
  return resolveDevice(request, { what: 'training', cudaImplemented: true });
}

/** Maps CLI options to trainer options (checks --device). */
export function toTrainOptions(o: TrainCliOptions): TrainOptions {
  const { device } = trainDevice(o);
  const overrides: ConfigOverrides = {
    d_model: o.dModel, n_layers: o.layers, att_experts: o.attExperts, att_heads: o.attHeads, kv_heads: o.kvHeads,
    head_dim: o.headDim,
    mlp_experts: o.mlpExperts, expert_dim: o.expertDim, seq_len: o.seqLen, mi_alpha_att: o.miAlphaAtt,
    mi_alpha_mlp: o.miAlphaMlp, top_k: o.topK,
    router_hidden: o.routerHidden,
  };
  return {
    preset: o.preset, mode: o.mode, configFile: o.config, overrides, data: o.data, tokenizer: o.tokenizer,
    steps: o.steps, tokens: o.tokens, timeS: o.time, batchSize: o.batchSize, gradAccum: o.gradAccum,
    lr: o.lr, minLr: o.minLr, warmup: o.warmup, weightDecay: o.weightDecay, clip: o.clip, seed: o.seed,
    evalInterval: o.evalInterval, evalBatches: o.evalBatches,
    saveInterval: o.saveInterval, out: o.out, resume: o.resume, threads: o.threads, targetActive: o.targetActive,
    device,
  };
}



const pct = (x: number) => `${(100 * x).toFixed(1)} %`;

/** "under threshold:0.48: 31.0 % of expert parameters active, perplexity 190.2 (dense routing 189.9)" */
export function sparsitySentence(r: EvalRecord): string | null {
  if (r.routing === null || r.active_expert_share === null || r.routed_ppl === null) return null;
  return `under ${routingLabel(r.routing)}: ${pct(r.active_expert_share)} of expert parameters active, `
    + `perplexity ${r.routed_ppl.toFixed(2)}`
    + `${r.dense_ppl !== null ? ` (dense routing ${r.dense_ppl.toFixed(2)})` : ''}`;
}

const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : String(x));
const fAux = (x: number) => (Number.isFinite(x) ? (Math.abs(x) < 0.01 ? x.toExponential(2) : x.toFixed(4)) : String(x));

const LAUNCHER_FLAGS = ['nproc', 'nnodes', 'nodeRank', 'master'] as const;

/**
 * --nproc / --nnodes: this process becomes the launcher of this machine's ranks (src/parallel/launcher.ts);
 * resolves to the run's exit code (0, 1 when a rank failed, 130 after Ctrl-C, 2 without Gloo).
 */
async function runLauncher(o: TrainCliOptions, deps: TrainCliDeps): Promise<number> {
  const stdout = deps.stdout ?? process.stdout;
  const stderr = deps.stderr ?? process.stderr;
  if (o.master !== undefined) parseMaster(o.master);
  const info = (loadAddon() as { distInfo?: () => { available: boolean; reason: string | null } }).distInfo?.()
    ?? { available: false, reason: 'this build of the native addon predates distributed training; rebuild it' };
  if (!info.available) {
    stderr.write(`dsmoe: --nproc/--nnodes need the addon's distributed training, but it was ${info.reason}\n`);
    return EXIT_USAGE;
  }
  const argv = deps.argv ?? process.argv;
  const at = argv.indexOf('train', 2);
  if (at < 0) throw new Error('--nproc/--nnodes: the train arguments for the ranks were not found on the command line');
  const ac = new AbortController();
  let presses = 0;
  const kill = new AbortController();
  const onSigint = () => {
    presses++;
    if (presses === 1) {
      stderr.write('dsmoe: Ctrl-C: the ranks finish the current step, then rank 0 saves a checkpoint '
        + '(Ctrl-C again kills them without saving)\n');
      ac.abort();
    } else kill.abort();
  };
  process.on('SIGINT', onSigint);
  deps.signal?.addEventListener('abort', () => ac.abort(), { once: true });
  try {
    const r = await launch({
      nproc: o.nproc ?? 1, nnodes: o.nnodes ?? 1, nodeRank: o.nodeRank ?? 0, master: o.master,
      args: rankArgs(argv.slice(at + 1)), threads: o.threads, stdout, stderr, signal: ac.signal,
      killSignal: kill.signal, quiet: o.quiet,
    });
    return r.exitCode;
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
}

/** In a rank started by the launcher: joins the others (DSMOE_PARALLEL says where). */
function joinRun(info: unknown): ProcessGroup {
  const rank = checkRankInfo(info);
  // An orphaned rank (its launcher was killed) must not linger: the IPC channel closes with it.
  if (process.send) {
    process.on('disconnect', () => {
      process.stderr.write(`dsmoe: rank ${rank.rank}: the launcher is gone; stopping\n`);
      process.kill(process.pid, 'SIGKILL');
    });
    process.channel?.unref();
  }
  return joinGroup(rank, loadAddon() as unknown as Parameters<typeof joinGroup>[1]);
}

/**
 * Runs `dsmoe train`; resolves to the exit code (0, 130 after Ctrl-C, 2 when the engine cannot use
 * the --device asked for). Never calls process.exit.
 */
export async function runTrain(o: TrainCliOptions, deps: TrainCliDeps = {}): Promise<number> {
  const rankInfo = envParallel();
  if (rankInfo === undefined && LAUNCHER_FLAGS.some((k) => o[k] !== undefined)) return runLauncher(o, deps);
  const { notice } = trainDevice(o);
  const opts = toTrainOptions(o);
  const stdout = deps.stdout ?? process.stdout;
  const stderr = deps.stderr ?? process.stderr;
  if (rankInfo !== undefined) opts.group = joinRun(rankInfo);
  if (notice && !o.quiet) stderr.write(`dsmoe: ${notice}\n`);
  const json = !!o.json;
  // Human output goes to stdout, or to stderr when stdout carries JSON records.
  const rep = new Reporter({ stream: json ? stderr : stdout, quiet: o.quiet });
  const emit = (obj: object) => {
    if (json) stdout.write(JSON.stringify(obj) + '\n');
  };

  const ac = new AbortController();
  deps.signal?.addEventListener('abort', () => ac.abort(), { once: true });
  const onSigint = () => {
    ac.abort();
    rep.line('Ctrl-C: finishing the current step, then saving a checkpoint '
      + '(Ctrl-C again quits at once, without saving)');
  };
  process.once('SIGINT', onSigint);
  opts.signal = ac.signal;
  // A rank tells its launcher that Ctrl-C may now be passed on (before this, SIGINT would kill it).
  if (rankInfo !== undefined) process.send?.({ dsmoe: 'ready' });

  let mode = 'dsmoe';
  let total: number | null = null;
  let lastVal: number | undefined;
  let lastActive: number | null = null;
  let plainEvery = 10;
  let lastStepPrinted = 0;
  const stepLine = (r: StepRecord) => {
    const aux = mode === 'dense' ? '' : ` ${mode === 'smoe' ? 'switch' : 'mi'} ${fAux(r.aux_loss)}`;
    const eta = r.eta_s === null ? '' : ` ETA ${formatDuration(r.eta_s)}`;
    return { aux, eta };
  };
  try {
    const result: TrainResult = await train(opts, {
      onPrepare: (p) => {
        if (p.kind === 'data') {
          const { phase, done, total: t, file } = p.progress;
          const name = file ? path.basename(file) : 'the inputs';
          const text = phase === 'scan' ? `scanning ${name} for documents`
            : phase === 'tokenize'
              ? `tokenizing ${done}${t ? `/${t} documents (${Math.floor((100 * done) / t)}%)` : ' documents'}`
              : phase === 'cache' ? 'reading the cached tokens' : `reading token files (${done}/${t})`;
          void rep.spin(text);
        } else void rep.spin(p.text);
      },
      onLog: (l) => rep.line(`note: ${l}`),
      onStart: (info) => {
        rep.spinDone('data and model ready');
        mode = info.config.training.mode;
        total = info.totalSteps;
        plainEvery = Math.max(1, Math.round(((total ?? info.startStep + 200) - info.startStep) / 20));
        const p = info.params, c = info.config;
        const head = [
          `model: ${info.preset} (${mode}) — ${formatCount(p.total)} parameters, `
          + `${formatCount(p.nonEmbedding)} non-embedding `
          + `(${p.total} / ${p.nonEmbedding})`,
          `  D ${c.d_model}, ${c.n_layers} layers, `
          + `attention ${c.attention.n_experts}×${c.attention.n_heads}×${c.attention.head_dim} `
          + `(kv ${c.attention.n_kv_heads}), MLP ${c.mlp.n_experts}×${c.mlp.expert_dim}, vocab ${c.vocab_size}`,
          `data: ${formatRate(info.trainTokens)} training tokens, ${formatRate(info.valTokens)} held out; `
          + `batch ${info.batchSize}×${info.seqLen}`
          + `${info.gradAccum / info.ranks > 1 ? ` ×${info.gradAccum / info.ranks} accumulated` : ''}`
          + `${info.ranks > 1 ? ` ×${info.ranks} ranks` : ''} = ${info.tokensPerStep} tokens/step; `
          + `${info.threads} threads`,
          `${info.resumedFrom ? `resuming ${info.resumedFrom} at step ${info.startStep}; ` : ''}`
          + `${info.totalSteps !== null ? `training to step ${info.totalSteps}`
            : `training for ${formatDuration(info.timeBudgetS ?? 0)}`}; checkpoints in ${info.outDir}`,
        ];
        // Parameter counts print even with --quiet: they are part of the result.
        for (const l of head) rep.line(l);
        emit({ type: 'start', preset: info.preset, mode, total_params: p.total, non_embedding_params: p.nonEmbedding,
          start_step: info.startStep, ranks: info.ranks,
          total_steps: info.totalSteps, tokens_per_step: info.tokensPerStep, out: info.outDir, config: info.config });
      },
      onStep: (r) => {
        emit(r);
        total = r.total_steps;
        const { aux, eta } = stepLine(r);
        const val = (lastVal !== undefined ? ` val ${f3(lastVal)}` : '')
          + (lastActive !== null ? ` (${(100 * lastActive).toFixed(0)}% active)` : '');
        const of = total !== null ? `/${total}` : '';
        if (rep.tty) {
          const bar = total !== null ? ` ${barCells(r.step / total)}` : '';
          rep.bar(`step ${r.step}${of}${bar} loss ${f3(r.loss)}${aux}${val} | ${formatRate(r.tokens_per_s)} tok/s `
            + `lr ${r.lr.toExponential(1)}${eta}`, r.step === total);
        } else if (r.step - lastStepPrinted >= plainEvery || r.step === total || lastStepPrinted === 0) {
          lastStepPrinted = r.step;
          rep.info(`step ${r.step}${of}  loss ${f3(r.loss)} (lm ${f3(r.lm_loss)}${aux})  grad ${f3(r.grad_norm)}  `
            + `lr ${r.lr.toExponential(2)}  ${formatRate(r.tokens_per_s)} tok/s${eta}`);
        }
      },
      onEval: (r) => {
        emit(r);
        lastVal = r.lm_loss;
        lastActive = r.active_expert_share;
        const router = mode === 'dense' ? ''
          : `  H(e) att ${r.att_entropy.toFixed(2)} mlp ${r.mlp_entropy.toFixed(2)}, `
            + `H(e|X) att ${r.att_cond_entropy.toFixed(2)} mlp ${r.mlp_cond_entropy.toFixed(2)}`;
        rep.info(`eval @ step ${r.step}: val loss ${f3(r.lm_loss)}, perplexity ${r.ppl.toFixed(2)} `
          + `(${r.batches} batches)${router}`);
        const sparse = sparsitySentence(r);
        if (sparse) rep.info(`  ${sparse}`);
      },
      onSave: (dir, step) => {
        emit({ type: 'save', step, dir });
        rep.info(`saved checkpoint at step ${step} to ${dir}`);
      },
    }, { backend: deps.backend });
    rep.stop();
    const ev = result.finalEval;
    const summary = result.reason === 'interrupted'
      ? `interrupted at step ${result.step}; checkpoint saved to ${result.outDir}`
      : `done: ${result.step} steps, ${formatRate(result.tokensSeen)} tokens`
        + (ev ? `; validation loss ${f3(ev.lm_loss)}, perplexity ${ev.ppl.toFixed(2)}` : '; no validation measured');
    const cal = result.calibration;
    emit({ type: 'done', reason: result.reason, step: result.step, tokens_seen: result.tokensSeen, out: result.outDir,
      val_loss: ev?.lm_loss ?? null, val_ppl: ev?.ppl ?? null, routing: ev?.routing ?? null,
      routed_ppl: ev?.routed_ppl ?? null,
      dense_ppl: ev?.dense_ppl ?? null, active_expert_share: ev?.active_expert_share ?? null, calibration: cal,
      exit_code: exitCodeFor(result.reason) });
    rep.line(summary);
    const sparse = ev && sparsitySentence(ev);
    if (sparse) rep.line(sparse);
    if (cal) {
      rep.line(`calibrated for ${pct(cal.target)} active expert parameters: `
        + `default routing now ${formatRouting(cal.routing)}`);
      rep.line(`  on ${cal.reportTokens} held-out tokens not used for calibration: `
        + `${pct(cal.after.activeExpertShare)} active, `
        + `perplexity ${cal.after.ppl.toFixed(2)} (dense routing ${cal.before.ppl.toFixed(2)})`);
    }
    if (!o.quiet) {
      rep.line('what to run next:');
      for (const l of trainNextSteps(result, { data: opts.data, tokenizer: opts.tokenizer })) rep.line(`  ${l}`);
    }
    return exitCodeFor(result.reason);
  } catch (e) {
    rep.spinDone(undefined, false);
    rep.stop();
    // The engine's own words (the device and why it cannot be used), as every error prints.
    if (e instanceof DeviceUnusableError) {
      stderr.write(`dsmoe: ${e.message}\n`);
      return EXIT_USAGE;
    }
    throw e;
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
}

const HELP = `
How it works:
  The model is trained densely (every expert on every token) with the mutual-information loss
  that makes it sparse at inference (--mode dsmoe, the default). --mode smoe trains the top-2
  sparse baseline, --mode dense the dense model of the same width. Data are tokenized once and
  cached; the held-out 5 % (whole documents) gives the validation loss.

  Budget: one of --steps, --tokens (e.g. 2M) or --time (e.g. 10m, 1h30m); default: the preset's
  steps (small: 300). The learning rate warms up linearly (default 5 % of the run, ≤ 200 steps)
  and decays by cosine to --min-lr (default 0.1 × --lr). AdamW β = (0.9, 0.95).

  Sparsity: each evaluation also runs the held-out windows through the inference engine under
  the checkpoint's default routing (threshold:0.48 for dsmoe) and reports the share of expert
  parameters active and the perplexity under it and under dense routing, as \`dsmoe eval\` would.
  --target-active 35% ends the run by calibrating threshold:ε per layer kind on held-out text
  (as \`dsmoe convert --calibrate\`) and stores it as the checkpoint's default routing.

  Checkpoints go to --out (default runs/<preset>-<mode>) every --save-interval steps and at the
  end; Ctrl-C finishes the current step, saves and exits with code 130. --resume DIR continues a
  run exactly where it stopped (same data; give --steps to go further).

Presets: ${PRESET_NAMES.join(', ')} (see docs/presets.md).

Examples:
  dsmoe train                                    # small DS-MoE on the built-in corpus, a few minutes on a CPU
  dsmoe train --preset tiny --steps 50           # a quick smoke test
  dsmoe train --data notes/ book.txt --time 20m  # your own text (.txt, .md, .jsonl, folders, .bin tokens)
  dsmoe train --data shards/ --tokenizer t.json  # token shards from dsmoe tokenize, memory-mapped
  dsmoe train --mode dense --out runs/dense      # the dense baseline of the same width, for comparison
  dsmoe train --preset medium --mi-alpha-mlp 2e-2 --lr 6e-4 --steps 3000   # sparser MLP layers
  dsmoe train --resume runs/small-dsmoe --steps 600
  dsmoe train --target-active 35%                # then serve with 35 % of the expert parameters active
  dsmoe train --json --quiet | jq 'select(.type == "step") | .loss'   # JSON records on stdout
  dsmoe train --preset tiny --nproc 2            # two data-parallel ranks (needs libgloo-dev; docs/distributed.md)
  dsmoe train --nnodes 2 --node-rank 0 --master 10.0.0.1:29500 --nproc 4   # on machine 0; --node-rank 1 on the other
`;

export function trainCommand(ctx: { exitCode: number } = { exitCode: 0 }, deps: TrainCliDeps = {}): Command {
  const cmd = new Command('train')
    .description('train a DS-MoE model (or a dense / sparse-MoE baseline) on text or token files')
    .option('--preset <name>', `model shape: ${PRESET_NAMES.join(', ')} (default small)`, presetArg)
    .option('--mode <mode>', 'dsmoe (dense training + MI loss), smoe (top-2 sparse baseline) or dense', modeArg)
    .option('--config <file>', 'a config.json (full or partial) merged over the preset')
    .option('--d-model <n>', 'model width D', intArg('--d-model'))
    .option('--layers <n>', 'transformer blocks', intArg('--layers'))
    .option('--att-experts <n>', 'attention experts per layer', intArg('--att-experts'))
    .option('--att-heads <n>', 'query heads per attention expert', intArg('--att-heads'))
    .option('--kv-heads <n>', 'shared key/value heads', intArg('--kv-heads'))
    .option('--head-dim <n>', 'size of each head (even)', intArg('--head-dim'))
    .option('--mlp-experts <n>', 'MLP experts per layer', intArg('--mlp-experts'))
    .option('--expert-dim <n>', 'hidden width F of each MLP expert', intArg('--expert-dim'))
    .option('--router-hidden <n>', 'two-layer routers, hidden width n (0: linear)', intArg('--router-hidden', 0))
    .option('--seq-len <n>', 'training sequence length (max_seq_len)', intArg('--seq-len'))
    .option('--data <paths...>', 'text (.txt .md .jsonl), folders, .bin token files, or a `dsmoe tokenize` shard '
      + 'folder (default: the built-in corpus)')
    .option('--tokenizer <file>', 'tokenizer.json (default: the built-in BPE; the checkpoint\'s when resuming)')
    .option('--steps <n>', 'optimizer steps to train to', intArg('--steps'))
    .option('--tokens <n>', 'tokens to train on (500k, 2M, …)', countArg('--tokens'))
    .option('--time <duration>', 'wall-clock budget (90s, 10m, 1h30m)', durationArg)
    .option('--batch-size <n>', 'sequences per micro-batch', intArg('--batch-size'))
    .option('--grad-accum <n>', 'micro-batches per optimizer step', intArg('--grad-accum'))
    .option('--lr <x>', 'peak learning rate', numArg('--lr', true))
    .option('--min-lr <x>', 'learning rate at the end of the cosine decay', numArg('--min-lr'))
    .option('--warmup <n>', 'linear warm-up steps', intArg('--warmup', 0))
    .option('--weight-decay <x>', 'AdamW weight decay (not on norms)', numArg('--weight-decay'))
    .option('--clip <x>', 'clip the gradient norm (0: off)', numArg('--clip'))
    .option('--mi-alpha-att <x>', 'MI loss weight of attention layers (default: the preset\'s; '
      + '3e-3 on tiny/small/medium, the paper\'s on its shapes)', numArg('--mi-alpha-att'))
    .option('--mi-alpha-mlp <x>', 'MI loss weight of MLP layers (default: the preset\'s; '
      + '1e-2 on tiny/small/medium, the paper\'s on its shapes)', numArg('--mi-alpha-mlp'))
    .option('--top-k <k>', 'experts per token in --mode smoe', intArg('--top-k'))
    .option('--seed <n>', 'seed of initialisation, data split and batches', seedArg)
    .option('--eval-interval <n>', 'evaluate every N steps (0: only at the end)', intArg('--eval-interval', 0))
    .option('--eval-batches <n>', 'validation batches per evaluation (default 20)', intArg('--eval-batches'))
    .option('--save-interval <n>', 'save a checkpoint every N steps (0: only at the end)', intArg('--save-interval', 0))
    .option('--out <dir>', 'checkpoint folder (default runs/<preset>-<mode>)')
    .option('--resume <dir>', 'continue training from this checkpoint')
    .option('--threads <n>', 'CPU threads', intArg('--threads'))
    .option('--target-active <x>', 'at the end, calibrate threshold routing so that this share of expert parameters '
      + 'is active (35%)', shareArg('--target-active'))
    .addOption(new Option('--device <device>', 'compute device: cpu, cuda or auto (GPU when usable, else CPU)')
      .default('cpu'))
    .option('--nproc <n>', 'data-parallel: start n ranks on this machine (logs from rank 0)', intArg('--nproc'))
    .option('--nnodes <n>', 'data-parallel across n machines (with --node-rank and --master)', intArg('--nnodes'))
    .option('--node-rank <r>', 'this machine\'s index among --nnodes (0 hosts the rendezvous)',
      intArg('--node-rank', 0))
    .option('--master <addr:port>', 'where node rank 0 hosts the rendezvous (default: a free local port)')
    .option('--json', 'print one JSON record per step / eval / save on stdout')
    .option('--quiet', 'no progress output (results and errors only)')
    .addHelpText('after', HELP)
    .action(async (o: TrainCliOptions) => {
      ctx.exitCode = await runTrain(o, deps);
    });
  return cmd;
}
