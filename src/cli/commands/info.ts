// `dsmoe info <checkpoint>`: shape, parameter counts, default routing and its active parameters,
// dtypes and bytes per file, and training progress. --json prints one object.
import { Command } from 'commander';
import { checkpointInfo, formatBytes, type CheckpointInfo } from '../../checkpoint/info';
import { formatCount } from '../../model/config';

const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
const num = (n: number) => `${formatCount(n)} (${n})`;

/** The human-readable report. */
export function formatInfo(i: CheckpointInfo): string {
  const s = i.shape, p = i.params, a = i.active, out: string[] = [];
  const row = (k: string, v: string) => out.push(`  ${k.padEnd(22)} ${v}`);
  out.push(`${i.dir}: ${i.kind} checkpoint, mode ${i.mode}${i.training ? `, step ${i.training.step}` : ''}, weights ` +
    `${i.dtype}`);
  out.push('shape');
  row('layers', String(s.layers));
  row('width (d_model)', String(s.d_model));
  row('attention', `${s.attention.experts} expert${s.attention.experts > 1 ? 's' : ''} × ` +
    `${s.attention.heads_per_expert} query heads × head_dim ${s.attention.head_dim}, `
    + `${s.attention.kv_heads} shared kv heads`);
  row('MLP', `${s.mlp.experts} expert${s.mlp.experts > 1 ? 's' : ''} × ${s.mlp.expert_dim} (${s.mlp.activation})`);
  const h = s.router_hidden, D = s.d_model;
  if (s.attention.experts > 1 || s.mlp.experts > 1)
    row('routers', h > 0 ? `two-layer, hidden ${h} (Linear ${D}→${h}, GELU, Linear ${h}→E)` : `linear (${D}→E)`);
  row('vocabulary', String(s.vocab_size));
  row('max sequence', String(s.max_seq_len));
  out.push('parameters');
  row('total', num(p.total));
  row('non-embedding', num(p.non_embedding));
  row('embedding', num(p.embedding));
  row('LM head', p.lm_head > 0 ? num(p.lm_head) : 'tied to the embedding');
  row('attention q/k/v/o', [p.attention.q, p.attention.k, p.attention.v, p.attention.o].map(formatCount).join(' / '));
  row('routers att/mlp', `${formatCount(p.attention.router)} / ${formatCount(p.mlp.router)}`);
  row('MLP up/down', `${formatCount(p.mlp.up)} / ${formatCount(p.mlp.down)}`);
  row('norms', formatCount(p.norms));
  row('experts (q/o/up/down)', `${num(p.experts)}, ${pct(p.experts / p.non_embedding)} of non-embedding`);
  out.push(`default routing (config.json): attention ${a.routing.attention}, MLP ${a.routing.mlp}`);
  if (a.fixed) {
    row('active per token', `${num(a.activeParamsPerToken!)} of ${formatCount(p.non_embedding)} non-embedding`
      + ` (${a.attExpertsPerToken}/${s.attention.experts} attention, ${a.mlpExpertsPerToken}/${s.mlp.experts} MLP ` +
        `experts per layer)`);
    row('active experts', `${pct(a.activeExpertShare!)} of expert parameters`);
  } else {
    row('active per token', a.note ?? 'depends on the data');
    row('bounds', `${formatCount(a.minParamsPerToken)} (one expert per thresholded layer) … ` +
      `${formatCount(a.maxParamsPerToken)} (all)`);
  }
  out.push(`files (${formatBytes(i.bytes)})`);
  for (const f of i.files) {
    const d = f.dtypes ? `  ${Object.entries(f.dtypes).map(([k, n]) => `${k} × ${n}`).join(', ')} tensors` : '';
    row(f.name, `${formatBytes(f.bytes)}${d}`);
  }
  const t = i.training;
  if (t) {
    out.push('training');
    row('step', `${t.step}${t.optimizer_state ? '' : ' (no optimizer state: --resume starts a fresh AdamW)'}`);
    row('tokens seen', `${formatCount(t.tokens_seen)} (${t.tokens_seen})`);
    row('time', `${t.elapsed_s.toFixed(1)} s`);
    if (t.last_losses.length > 0)
      row('last losses', t.last_losses.slice(-5).map((r) => `${r.step}: ${r.loss.toFixed(3)}`).join(', '));
    if (t.last_eval) row('last eval', `step ${t.last_eval.step}: loss ${t.last_eval.loss.toFixed(3)}, perplexity ` +
      `${t.last_eval.ppl === null ? '∞' : t.last_eval.ppl.toFixed(2)}`);
  }
  return out.join('\n');
}

export function runInfo(dir: string, o: { json?: boolean },
  stdout: NodeJS.WritableStream = process.stdout): CheckpointInfo {
  const info = checkpointInfo(dir);
  stdout.write(o.json ? JSON.stringify(info) + '\n' : formatInfo(info) + '\n');
  return info;
}

export function infoCommand(): Command {
  return new Command('info')
    .description('describe a checkpoint: shape, parameter counts, routing and active parameters, files, training ' +
      'progress')
    .argument('<checkpoint>', 'checkpoint folder (training or inference)')
    .option('--json', 'print one JSON object')
    .addHelpText('after', `
Examples:
  dsmoe info runs/small-dsmoe
  dsmoe info runs/small-dsmoe --json | jq .active`)
    .action((dir: string, o: { json?: boolean }) => {
      runInfo(dir, o);
    });
}
