/**
 * Prometheus metrics: per-stage latency histograms and counters of decisions, actions,
 * fallbacks and errors per service and version. Label children are cached per service
 * version so the hot path does no label hashing.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client';
import type { DecisionLog } from '../log/types.ts';
import type { ModelRepository } from './repository.ts';
import type { MonitorState, Verdict } from '../monitor/service-monitor.ts';
import { STAGES, type DecisionResponse, type Stage } from '../pipeline/decide.ts';

const LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** Fallback causes carry detail after a colon; the metric label keeps only the kind. */
export function causeKind(cause: string): string {
  return cause.split(':')[0];
}

export interface Metrics {
  readonly registry: Registry;
  observeDecision(response: DecisionResponse, stage: string): void;
  observeError(service: string, status: number, kind: string): void;
  observeInfer(service: string, version: string, seconds: number, ok: boolean): void;
  readonly inFlight: Gauge;
  readonly overloadRejections: Counter;
}

export function createMetrics(log: DecisionLog, repository?: ModelRepository): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'rtml_process_' });

  const stageSeconds = new StageHistogram('rtml_stage_duration_seconds', 'Time spent in each stage of a decision', LATENCY_BUCKETS);
  registry.registerMetric(stageSeconds as unknown as Metric);
  const decisions = new Counter({
    name: 'rtml_decisions_total',
    help: 'Decisions answered, by action and by the policy stage that set it',
    labelNames: ['service', 'version', 'action', 'stage'],
    registers: [registry],
  });
  const fallbacks = new Counter({
    name: 'rtml_fallbacks_total',
    help: 'Decisions made by the fallback policy because the model could not be trusted',
    labelNames: ['service', 'version', 'cause'],
    registers: [registry],
  });
  const errors = new Counter({
    name: 'rtml_request_errors_total',
    help: 'Requests answered with an error status',
    labelNames: ['service', 'status', 'kind'],
    registers: [registry],
  });
  const infers = new Histogram({
    name: 'rtml_infer_duration_seconds',
    help: 'Open Inference Protocol infer calls',
    labelNames: ['service', 'version', 'outcome'],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const inFlight = new Gauge({ name: 'rtml_in_flight_requests', help: 'Decision and infer requests being served', registers: [registry] });
  const overloadRejections = new Counter({
    name: 'rtml_overload_rejections_total',
    help: 'Requests answered 503 by the load guard, by reason: in_flight, event_loop, connections, draining',
    labelNames: ['reason'],
    registers: [registry],
  });
  new Gauge({
    name: 'rtml_decision_log_pending',
    help: 'Decisions waiting for the decision log to commit',
    registers: [registry],
    collect() {
      this.set(log.stats.pending);
    },
  });
  new Gauge({
    name: 'rtml_decision_log_commits',
    help: 'Group commits of the decision log since start',
    registers: [registry],
    collect() {
      this.set(log.stats.commits);
    },
  });

  if (repository) registerMonitoringGauges(registry, repository);

  type StageChildren = Record<Stage | 'total', StageSeries>;
  const stageChildren = new Map<string, StageChildren>();
  const childrenFor = (service: string, version: string): StageChildren => {
    const key = `${service}\u0000${version}`;
    let children = stageChildren.get(key);
    if (!children) {
      children = Object.fromEntries([...STAGES, 'total'].map((stage) => [stage, stageSeconds.series({ service, version, stage })])) as unknown as StageChildren;
      stageChildren.set(key, children);
    }
    return children;
  };

  // Counter children by label values: prom-client's labels() builds and validates a label object per call.
  const decisionChildren = new Map<string, { inc(): void }>();
  const decisionCounter = (service: string, version: string, action: string, stage: string) => {
    const key = `${service}\u0000${version}\u0000${action}\u0000${stage}`;
    let child = decisionChildren.get(key);
    if (!child) {
      child = decisions.labels(service, version, action, stage);
      decisionChildren.set(key, child);
    }
    return child;
  };

  return {
    registry,
    inFlight,
    overloadRejections,
    observeDecision(response, stage) {
      const version = response.model?.version ?? '';
      const children = childrenFor(response.service, version);
      const t = response.timings_ms;
      for (const s of STAGES) children[s].observe(t[s] / 1000);
      children.total.observe(t.total / 1000);
      decisionCounter(response.service, version, response.decision ?? '', stage).inc();
      if (response.fallback.used && response.fallback.cause) fallbacks.labels(response.service, version, causeKind(response.fallback.cause)).inc();
    },
    observeError(service, status, kind) {
      errors.labels(service, String(status), kind).inc();
    },
    observeInfer(service, version, seconds, ok) {
      infers.labels(service, version, ok ? 'success' : 'fail').observe(seconds);
    },
  };
}

/** One label set's buckets of a {@link StageHistogram}: counts per bucket (not cumulative), sum, count. */
class StageSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    private readonly owner: StageHistogram,
    readonly labels: Record<string, string>,
  ) {
    this.counts = new Float64Array(owner.upperBounds.length);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    if (this.count === 0) this.owner.observed.push(this); // shown once observed, as prom-client does
    const bounds = this.owner.upperBounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]) {
        this.counts[i]++;
        break;
      }
    }
    this.sum += value;
    this.count++;
  }
}

/**
 * rtml_stage_duration_seconds: six observations per decision. prom-client's Histogram hashes
 * the label values and looks the series up by a string key at every observation (about 0.5 µs
 * each); this one hands out its series once and an observation is a bucket scan and three
 * additions. The registry reads it through prom-client's metric interface
 * (`getForPromString`, `get`, `reset`), with the very values a prom-client Histogram gives, so
 * /metrics does not change.
 */
class StageHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  /** Series in the order of their first observation. */
  observed: StageSeries[] = [];
  constructor(
    readonly name: string,
    readonly help: string,
    readonly upperBounds: readonly number[],
  ) {}

  series(labels: Record<string, string>): StageSeries {
    return new StageSeries(this, labels);
  }

  /** prom-client's Histogram values: per series cumulative buckets, +Inf, _sum, _count; shared labels separate. */
  getForPromString() {
    const values: { labels: Record<string, string | number>; sharedLabels: Record<string, string>; value: number; metricName: string; exemplar?: null }[] = [];
    for (const s of this.observed) {
      let acc = 0;
      for (let i = 0; i < this.upperBounds.length; i++) {
        acc += s.counts[i];
        values.push({ labels: { le: this.upperBounds[i] }, sharedLabels: s.labels, value: acc, metricName: `${this.name}_bucket`, exemplar: null });
      }
      values.push({ labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_bucket`, exemplar: null });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.name}_sum`, exemplar: undefined });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_count`, exemplar: undefined });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  /** As prom-client's get(): the shared labels merged into each value's labels. */
  get() {
    const data = this.getForPromString();
    return { ...data, values: data.values.map(({ sharedLabels, labels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } })) };
  }

  reset(): void {
    for (const s of this.observed) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
    this.observed = [];
  }
}

/** A gauge read at each scrape: its values are reset, then `fill` sets the current ones (so a series that ended disappears). */
export function scrapedGauge(registry: Registry, name: string, help: string, labelNames: readonly string[], fill: (g: Gauge) => void): Gauge {
  return new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      fill(this);
    },
  });
}

const VERDICT_VALUE: Record<Verdict, number> = { insufficient_data: -1, ok: 0, warning: 1, critical: 2 };

/** The monitors' last evaluation as gauges: what /v1/services/{name}/monitoring shows, for Prometheus. */
function registerMonitoringGauges(registry: Registry, repository: ModelRepository): void {
  const states = (): MonitorState[] =>
    repository.list().flatMap((s) => [...s.versions.values()].map((v) => v.monitor?.state()).filter((m): m is MonitorState => m !== undefined));
  const gauge = (name: string, help: string, labelNames: string[], fill: (g: Gauge, state: MonitorState) => void) =>
    scrapedGauge(registry, name, help, labelNames, (g) => {
      for (const state of states()) fill(g, state);
    });
  const count = (state: MonitorState) => state.windows.count ?? Object.values(state.windows)[0];
  gauge('rtml_feature_psi', 'PSI of each feature against the reference, over the last N decisions', ['service', 'version', 'feature'], (g, st) => {
    for (const [feature, r] of Object.entries(count(st)?.features ?? {})) {
      const t = r.tests.find((x) => x.test === 'psi');
      if (t) g.labels(st.service, st.version, feature).set(t.value);
    }
  });
  gauge('rtml_feature_drift', 'Drift verdict per feature: -1 too little data, 0 ok, 1 warning, 2 critical', ['service', 'version', 'feature'], (g, st) => {
    for (const [feature, r] of Object.entries(count(st)?.features ?? {})) g.labels(st.service, st.version, feature).set(VERDICT_VALUE[r.verdict]);
  });
  gauge('rtml_feature_missing_rate', 'Share of requests missing each feature, over the last N decisions', ['service', 'version', 'feature'], (g, st) => {
    for (const [feature, r] of Object.entries(count(st)?.features ?? {})) g.labels(st.service, st.version, feature).set(r.missing_rate);
  });
  gauge('rtml_score_psi', "PSI of the model's score against the reference", ['service', 'version'], (g, st) => {
    const t = count(st)?.score?.tests.find((x) => x.test === 'psi');
    if (t) g.labels(st.service, st.version).set(t.value);
  });
  gauge('rtml_model_failure_rate', 'Share of decisions where the model failed (error, deadline, guard)', ['service', 'version'], (g, st) => {
    const w = count(st);
    if (w) g.labels(st.service, st.version).set(w.model_health.fallback_rate);
  });
  gauge('rtml_rejection_rate', 'Share of requests rejected at the edge', ['service', 'version'], (g, st) => {
    const w = count(st);
    if (w) g.labels(st.service, st.version).set(w.data_quality.rejection_rate);
  });
  gauge('rtml_alerts_active', 'Active alerts by severity', ['service', 'version', 'severity'], (g, st) => {
    for (const severity of ['warning', 'critical']) g.labels(st.service, st.version, severity).set(st.alerts.active.filter((a) => a.severity === severity).length);
  });
  gauge('rtml_safe_mode', '1 while decisions use the fallback policy because of a critical alert (or an override)', ['service', 'version'], (g, st) => {
    g.labels(st.service, st.version).set(st.safe_mode.active ? 1 : 0);
  });
  gauge('rtml_outcome_brier', 'Mean squared error of the probability over the outcomes in the decay detector window', ['service', 'version'], (g, st) => {
    if (st.decay.outcomes > 0) g.labels(st.service, st.version).set(st.decay.mean_brier);
  });
}
