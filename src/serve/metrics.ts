// /metrics in the Prometheus text exposition format (version 0.0.4): requests by endpoint and status
// (counted here), and per model the engine's queue, running sequences, tokens, throughput, mean active
// parameters per token and expert usage per layer kind (read from the engine when scraped).
import type { ModelEngine } from './engine';

type Labels = Record<string, string | number>;

const escape = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const labelText = (l: Labels) => {
  const parts = Object.entries(l).map(([k, v]) => `${k}="${escape(String(v))}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
};

class Family {
  readonly samples: [Labels, number][] = [];
  constructor(readonly name: string, readonly type: 'counter' | 'gauge', readonly help: string) {}
  add(labels: Labels, value: number): this { this.samples.push([labels, value]); return this; }
  text(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    for (const [l, v] of this.samples) lines.push(`${this.name}${labelText(l)} ${Number.isFinite(v) ? v : 0}`);
    return lines.join('\n');
  }
}

export class Metrics {
  private readonly requests = new Map<string, number>();  // "endpoint\tstatus" → count

  countRequest(endpoint: string, status: number): void {
    const key = `${endpoint}\t${status}`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }

  render(engines: Map<string, ModelEngine>): string {
    const req = new Family('dsmoe_requests_total', 'counter', 'HTTP requests answered, by endpoint and status');
    for (const [key, n] of [...this.requests].sort()) {
      const [endpoint, status] = key.split('\t');
      req.add({ endpoint, status }, n);
    }
    const f = {
      queue: new Family('dsmoe_queue_depth', 'gauge', 'requests waiting for a sequence slot'),
      running: new Family('dsmoe_running_sequences', 'gauge', 'sequences in the running batch'),
      slots: new Family('dsmoe_batch_slots', 'gauge', 'sequence slots of the running batch (--max-batch)'),
      prompt: new Family('dsmoe_prompt_tokens_total', 'counter', 'prompt tokens prefilled'),
      generated: new Family('dsmoe_generated_tokens_total', 'counter', 'tokens generated'),
      rate: new Family('dsmoe_generated_tokens_per_second', 'gauge', 'tokens generated per second, last 10 s'),
      steps: new Family('dsmoe_engine_steps_total', 'counter', 'engine steps (a prefill and/or a batched decode)'),
      active: new Family('dsmoe_active_params_per_token', 'gauge',
        'mean parameters a token used (routers, k/v, the active experts), over all tokens served'),
      share: new Family('dsmoe_active_expert_share', 'gauge', 'mean share of the expert parameters a token used'),
      perToken: new Family('dsmoe_experts_per_token', 'gauge', 'mean active experts per token per layer'),
      usage: new Family('dsmoe_expert_tokens_total', 'counter', 'tokens routed to each expert, summed over layers'),
    };
    for (const [model, e] of engines) {
      const st = e.session.stats();
      f.queue.add({ model }, e.queueDepth);
      f.running.add({ model }, e.running);
      f.slots.add({ model }, e.maxBatch);
      f.prompt.add({ model }, e.counters.promptTokens);
      f.generated.add({ model }, e.counters.generatedTokens);
      f.rate.add({ model }, e.tokensPerSecond());
      f.steps.add({ model }, e.counters.steps);
      f.active.add({ model }, st.activeParamsPerToken);
      f.share.add({ model }, st.activeExpertShare);
      f.perToken.add({ model, kind: 'attention' }, st.attExpertsPerToken);
      f.perToken.add({ model, kind: 'mlp' }, st.mlpExpertsPerToken);
      for (const [kind, usage] of [['attention', st.attUsage], ['mlp', st.mlpUsage]] as const) {
        const E = usage[0]?.length ?? 0;
        for (let x = 0; x < E; x++) f.usage.add({ model, kind, expert: x }, usage.reduce((a, row) => a + row[x], 0));
      }
    }
    return [req, ...Object.values(f)].map((x) => x.text()).join('\n') + '\n';
  }
}
