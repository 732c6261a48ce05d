/**
 * What the dashboard shows of the present and the recent past, gathered off the request path:
 * every `sampleMs` (5 s) the collector reads the Prometheus registry's cumulative counters
 * (decisions by action, stage-latency buckets) and each monitor's last evaluation, keeps the
 * last minute of samples for the live figures (decisions per second, p50/p99), and at each
 * minute's end folds the minute into a {@link MinuteAggregate} written to the history store,
 * then prunes it to the retention. At shutdown the minute in progress is written too.
 */
import type { Registry } from 'prom-client';
import type { ModelRepository } from '../server/repository.ts';
import type { MonitorState } from '../monitor/service-monitor.ts';
import { estimatePerformance } from '../monitor/performance.ts';
import { DEFAULT_RETENTION_MS, MINUTE_MS, type HistoryStore, type MinuteAggregate } from './history.ts';

/** Per service: decisions by action, fallbacks, and per stage cumulative bucket counts. */
interface ServiceCounters {
  version: string;
  actions: Map<string, number>;
  fallbacks: number;
  /** By stage: cumulative counts per upper bound (the last is +Inf). */
  stages: Map<string, number[]>;
}

interface Sample {
  at: number;
  bounds: number[];
  services: Map<string, ServiceCounters>;
}

export interface LiveFigures {
  /** Decisions per second over the last minute of samples (null before two samples). */
  decisions_per_s: number | null;
  latency_ms: { p50: number | null; p99: number | null };
  /** Decisions by action over the same span. */
  mix: Record<string, number>;
  /** When the monitor last took an outcome, as far as this process has seen (null: none yet). */
  last_outcome_at: string | null;
}

type Values = { value: number; labels: Record<string, string | number>; metricName?: string }[];

async function values(registry: Registry, name: string): Promise<Values> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return [];
  return ((await metric.get()) as { values: Values }).values;
}

/** Reads the registry's decision counters and stage-latency histogram, summed over a service's versions. */
export async function readCounters(registry: Registry, at: number): Promise<Sample> {
  const services = new Map<string, ServiceCounters>();
  const of = (service: string, version: string) => {
    let s = services.get(service);
    if (!s) services.set(service, (s = { version, actions: new Map(), fallbacks: 0, stages: new Map() }));
    return s;
  };
  for (const v of await values(registry, 'rtml_decisions_total')) {
    const s = of(String(v.labels.service), String(v.labels.version));
    const action = String(v.labels.action);
    s.actions.set(action, (s.actions.get(action) ?? 0) + v.value);
  }
  for (const v of await values(registry, 'rtml_fallbacks_total')) of(String(v.labels.service), String(v.labels.version)).fallbacks += v.value;
  const bounds: number[] = [];
  for (const v of await values(registry, 'rtml_stage_duration_seconds')) {
    if (v.metricName !== 'rtml_stage_duration_seconds_bucket') continue;
    const le = v.labels.le === '+Inf' ? Infinity : Number(v.labels.le);
    let i = bounds.indexOf(le);
    if (i < 0) {
      bounds.push(le);
      i = bounds.length - 1;
    }
    const s = of(String(v.labels.service), String(v.labels.version));
    const stage = String(v.labels.stage);
    let counts = s.stages.get(stage);
    if (!counts) s.stages.set(stage, (counts = []));
    counts[i] = (counts[i] ?? 0) + v.value;
  }
  return { at, bounds, services };
}

/** A quantile from the difference of two cumulative histograms, interpolated within its bucket; ms. */
export function bucketQuantile(bounds: readonly number[], newer: readonly number[], older: readonly number[] | undefined, q: number): number | null {
  const delta = bounds.map((_, i) => (newer[i] ?? 0) - (older?.[i] ?? 0));
  const total = delta[delta.length - 1] ?? 0;
  if (!(total > 0)) return null;
  const rank = q * total;
  for (let i = 0; i < bounds.length; i++) {
    if (delta[i] >= rank) {
      const lower = i === 0 ? 0 : bounds[i - 1];
      const below = i === 0 ? 0 : delta[i - 1];
      // Above the last finite bound there is nothing to interpolate to: report that bound.
      if (!Number.isFinite(bounds[i])) return lower * 1000;
      const within = delta[i] - below;
      return (lower + (within > 0 ? (rank - below) / within : 0) * (bounds[i] - lower)) * 1000;
    }
  }
  return null;
}

const sum = (m: Map<string, number> | undefined) => [...(m?.values() ?? [])].reduce((a, b) => a + b, 0);

function mixBetween(newer: ServiceCounters | undefined, older: ServiceCounters | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [action, n] of newer?.actions ?? []) {
    const d = n - (older?.actions.get(action) ?? 0);
    if (d > 0) out[action === '' ? '(none)' : action] = d;
  }
  return out;
}

export interface CollectorOptions {
  registry: Registry;
  repository: ModelRepository;
  history: HistoryStore;
  sampleMs?: number;
  retentionMs?: number;
  now?: () => number;
  onError: (err: unknown) => void;
}

export class DashboardCollector {
  private readonly samples: Sample[] = [];
  /** The sample the current minute's deltas start from. */
  private minuteStart: Sample | null = null;
  private readonly outcomesSeen = new Map<string, { outcomes: number; at: number | null; minuteStart: number }>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> = Promise.resolve();
  private readonly now: () => number;
  private readonly sampleMs: number;

  constructor(private readonly options: CollectorOptions) {
    this.now = options.now ?? Date.now;
    this.sampleMs = options.sampleMs ?? 5000;
  }

  start(): void {
    const tick = () => {
      this.running = this.running.then(() => this.sample()).catch((err) => this.options.onError(err));
    };
    tick();
    this.timer = setInterval(tick, this.sampleMs);
    this.timer.unref();
  }

  /** Takes one sample; at a minute boundary writes the minute that ended. */
  async sample(): Promise<void> {
    const sample = await readCounters(this.options.registry, this.now());
    this.observeOutcomes(sample.at);
    this.samples.push(sample);
    // A minute of samples, plus the one it starts from.
    const keep = Math.ceil(MINUTE_MS / this.sampleMs) + 1;
    if (this.samples.length > keep) this.samples.splice(0, this.samples.length - keep);
    if (!this.minuteStart) {
      this.minuteStart = sample;
      return;
    }
    if (Math.floor(sample.at / MINUTE_MS) !== Math.floor(this.minuteStart.at / MINUTE_MS)) {
      await this.writeMinute(this.minuteStart, sample);
      this.minuteStart = sample;
    }
  }

  /** Writes the minute in progress (at shutdown, so a restart finds it). */
  async flush(): Promise<void> {
    await this.running.catch(() => {});
    if (!this.minuteStart) return;
    const sample = await readCounters(this.options.registry, this.now());
    this.observeOutcomes(sample.at);
    await this.writeMinute(this.minuteStart, sample);
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }

  /** Live figures for a service over the last minute of samples. */
  live(service: string): LiveFigures {
    // Outcomes as of now, not as of the last sample: the monitor's count is read without waiting.
    this.observeOutcomes(this.now());
    const newest = this.samples[this.samples.length - 1];
    const oldest = this.samples[0];
    const seen = this.outcomesSeen.get(service);
    const lastOutcome = seen?.at ? new Date(seen.at).toISOString() : null;
    if (!newest || newest === oldest) return { decisions_per_s: null, latency_ms: { p50: null, p99: null }, mix: {}, last_outcome_at: lastOutcome };
    const n = newest.services.get(service);
    const o = oldest.services.get(service);
    const seconds = (newest.at - oldest.at) / 1000;
    const total = n?.stages.get('total');
    return {
      decisions_per_s: seconds > 0 ? (sum(n?.actions) - sum(o?.actions)) / seconds : null,
      latency_ms: total
        ? { p50: bucketQuantile(newest.bounds, total, o?.stages.get('total'), 0.5), p99: bucketQuantile(newest.bounds, total, o?.stages.get('total'), 0.99) }
        : { p50: null, p99: null },
      mix: mixBetween(n, o),
      last_outcome_at: lastOutcome,
    };
  }

  /** The Brier score expected if the live scores are calibrated: what performance looks like before outcomes. */
  private estimatedBrier(service: string): number | null {
    const raw = this.options.repository.get(service)?.defaultVersion.monitor?.windows.rawScores() ?? null;
    if (!raw || raw.length === 0) return null;
    const brier = estimatePerformance(raw).brier;
    return Number.isFinite(brier) ? brier : null;
  }

  private monitorState(service: string): MonitorState | null {
    return this.options.repository.get(service)?.defaultVersion.monitor?.state() ?? null;
  }

  /** The decay detector's outcome count rises when outcomes arrive: the time it rose is the last outcome's. */
  private observeOutcomes(at: number): void {
    for (const service of this.options.repository.list()) {
      const outcomes = this.monitorState(service.name)?.decay.outcomes ?? 0;
      const seen = this.outcomesSeen.get(service.name);
      // The first sample is a baseline: outcomes read back from the log at start-up are not new.
      if (!seen) this.outcomesSeen.set(service.name, { outcomes, at: null, minuteStart: outcomes });
      else if (outcomes > seen.outcomes) {
        seen.outcomes = outcomes;
        seen.at = at;
      }
    }
  }

  private async writeMinute(from: Sample, to: Sample): Promise<void> {
    const minute = Math.floor(from.at / MINUTE_MS) * MINUTE_MS;
    const rows: MinuteAggregate[] = [];
    for (const service of this.options.repository.list()) {
      const n = to.services.get(service.name);
      const o = from.services.get(service.name);
      const state = this.monitorState(service.name);
      const count = state ? (state.windows.count ?? Object.values(state.windows)[0]) : undefined;
      const decisions = sum(n?.actions) - sum(o?.actions);
      const latency: MinuteAggregate['latency_ms'] = {};
      for (const [stage, counts] of n?.stages ?? []) {
        latency[stage] = { p50: bucketQuantile(to.bounds, counts, o?.stages.get(stage), 0.5), p99: bucketQuantile(to.bounds, counts, o?.stages.get(stage), 0.99) };
      }
      const drift: MinuteAggregate['drift'] = {};
      for (const [feature, report] of Object.entries(count?.features ?? {})) {
        drift[feature] = { psi: report.tests.find((t) => t.test === 'psi')?.value ?? null, verdict: report.verdict };
      }
      const seen = this.outcomesSeen.get(service.name);
      const outcomes = seen ? seen.outcomes - seen.minuteStart : 0;
      if (seen) seen.minuteStart = seen.outcomes;
      // A service that did nothing this minute and has nothing to show leaves no row.
      if (decisions === 0 && outcomes === 0 && !state) continue;
      rows.push({
        service: service.name,
        minute,
        version: n?.version ?? service.defaultVersion.version,
        decisions,
        fallbacks: (n?.fallbacks ?? 0) - (o?.fallbacks ?? 0),
        mix: mixBetween(n, o),
        latency_ms: latency,
        drift,
        score_psi: count?.score?.tests.find((t) => t.test === 'psi')?.value ?? null,
        decision_mix_psi: count?.model_health.decision_mix?.psi ?? null,
        alerts_active: state?.alerts.active.length ?? 0,
        safe_mode: state?.safe_mode.active ?? false,
        performance: {
          outcomes,
          brier: state && state.decay.outcomes > 0 ? state.decay.mean_brier : null,
          reference_brier: state?.decay.reference_brier ?? null,
          estimated_brier: this.estimatedBrier(service.name),
        },
      });
    }
    await this.options.history.write(rows);
    await this.options.history.prune(to.at - (this.options.retentionMs ?? DEFAULT_RETENTION_MS));
  }
}
