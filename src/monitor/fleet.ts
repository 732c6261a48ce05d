/**
 * Fleet-wide monitoring: the replicas of one service are monitored as one.
 *
 * Every replica, on a timer (never on the request path):
 *   - publishes each monitor's window export (window-export.ts) every `publishIntervalMs`;
 *   - tries for leadership every second (exchange.lead());
 *   - reads the published verdicts every second and applies them: `GET .../monitoring` answers
 *     the fleet's verdict, and decisions obey the fleet's safe mode (ServiceMonitor.followFleet).
 * The leader, every `publishIntervalMs`: merges every replica's export (its own taken fresh),
 * evaluates them with the one ServiceMonitor evaluation (no second implementation of the
 * statistics), delivers alerts through its sinks (followers never evaluate, so each alert
 * fires once), decides safe mode, and publishes the verdict. A new leader first resumes each
 * monitor from the last published verdict (active alerts, history, safe mode and its
 * hysteresis), so failover fires nothing twice.
 *
 * Outcomes: every replica's decay detector reads every outcome from the shared decision log
 * (app.ts polls the log it was given), so the leader's evaluation counts each outcome once;
 * exports carry no decay state.
 *
 * Operator inputs (the shared operations store wires them on every replica): a safe-mode
 * override is applied locally at once (decisions obey it without waiting for the leader) and
 * by the leader at its next evaluation; an acknowledgement is applied by whichever replica
 * leads, until the alert resolves.
 */
import { exportWindowState, MergedWindows, packWindowExport, readWindowExport, unpackWindowExport, WindowExportError, type WindowExport } from './window-export.ts';
import type { FleetView, MonitorState, SafeModeState, ServiceMonitor } from './service-monitor.ts';
import { DEFAULT_TIME_WINDOWS } from './histogram.ts';
import { verdictKey, type MonitorExchange, type MonitorKey, type PublishedVerdict } from './exchange/types.ts';

export interface MonitoredVersion extends MonitorKey {
  monitor: ServiceMonitor;
}

export interface FleetMonitorOptions {
  exchange: MonitorExchange;
  /** The monitors of the service versions loaded now (read at every cycle: loads and unloads are followed). */
  monitors: () => Iterable<MonitoredVersion>;
  /** How often each replica publishes its exports and the leader evaluates (default 2 s). */
  publishIntervalMs?: number;
  logger: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void; info(obj: object, msg: string): void };
  now?: () => number;
}

/** Leadership tries and verdict reads: every second at most. */
const CYCLE_MS = 1000;
/** Exports older than the longest window hold no decision any window still covers. */
const FORGET_AFTER_MS = Math.max(...DEFAULT_TIME_WINDOWS.map((w) => w.durationMs)) + 60_000;

/** What one replica knows of one service version's fleet verdict. */
class ReplicaView implements FleetView {
  verdict: MonitorState | null = null;
  clearSince: number | null = null;
  override: { mode: 'on' | 'off'; reason: string | null; since: string } | null = null;

  constructor(readonly replica: string) {}

  get safeMode(): SafeModeState {
    if (this.override?.mode === 'on') return { mode: 'on', active: true, since: this.override.since, reason: this.override.reason ?? 'turned on by an operator' };
    if (this.override?.mode === 'off') return { mode: 'off', active: false, since: null, reason: null };
    const s = this.verdict?.safe_mode;
    return s ? { mode: s.mode, active: s.active, since: s.since, reason: s.reason } : { mode: 'auto', active: false, since: null, reason: null };
  }
}

export interface FleetStats {
  /**
   * The last publish, summed over the monitors: export size before and after deflating, time
   * encoding on the event loop, and wall time to stored (deflate in the thread pool, the write).
   */
  lastPublish: { bytes: number; packedBytes: number; exportMs: number; ms: number; at: number } | null;
  /** The leader's last merge + evaluation of each monitor, summed over them. */
  lastEvaluation: { ms: number; exports: number; at: number } | null;
  publishes: number;
  evaluations: number;
  /** Leadership terms this replica began. */
  terms: number;
}

export class FleetMonitor {
  readonly replica: string;
  readonly stats: FleetStats = { lastPublish: null, lastEvaluation: null, publishes: 0, evaluations: 0, terms: 0 };
  private readonly exchange: MonitorExchange;
  private readonly publishIntervalMs: number;
  private readonly now: () => number;
  private readonly views = new Map<string, ReplicaView>();
  /** Safe-mode overrides and acknowledgements by service, as the operations store gives them. */
  private readonly overrides = new Map<string, { mode: 'auto' | 'on' | 'off'; reason: string | null; since: string }>();
  private readonly acks = new Map<string, Map<string, { by: string; note: string; at: number }>>();
  /** Monitors resumed from the published verdict in the current leadership term. */
  private resumed = new WeakSet<ServiceMonitor>();
  /** The leadership term this replica is in, or null while it follows. */
  private term: number | null = null;
  private lastPublishAt = -Infinity;
  private lastEvaluationAt = -Infinity;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly options: FleetMonitorOptions) {
    this.exchange = options.exchange;
    this.replica = options.exchange.replica;
    this.publishIntervalMs = options.publishIntervalMs ?? 2000;
    this.now = options.now ?? Date.now;
  }

  /** Whether this replica leads the fleet's monitoring now. */
  get isLeader(): boolean {
    return this.term !== null;
  }

  /** Starts the cycle; monitors loaded now follow the fleet at once. */
  start(): void {
    this.follow();
    this.timer = setInterval(() => void this.cycle(), Math.min(CYCLE_MS, this.publishIntervalMs));
    this.timer.unref();
    void this.cycle();
  }

  /** One cycle now (tests; the timer calls it): publish if due, lead, evaluate if leading and due, read verdicts. */
  cycle(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return (this.running ??= this.runCycle().finally(() => (this.running = null)));
  }

  private async runCycle(): Promise<void> {
    const monitored = this.follow();
    const now = this.now();
    // Each step on its own: a failed publish (the database away) must not keep a leader that lost its lock believing it leads.
    if (now - this.lastPublishAt >= this.publishIntervalMs) {
      this.lastPublishAt = now;
      await this.publish(monitored).catch((err) => this.options.logger.error({ err }, 'publishing monitor windows failed; retrying'));
    }
    const previousTerm = this.term;
    this.term = await this.exchange.lead().catch(() => null);
    // A new term, even right after the last one: someone else may have led in between.
    if (this.term !== null && this.term !== previousTerm) {
      this.stats.terms++;
      this.resumed = new WeakSet();
      this.lastEvaluationAt = -Infinity;
      this.options.logger.info({ replica: this.replica }, 'leading the fleet\'s monitoring');
    } else if (this.term === null && previousTerm !== null) this.options.logger.warn({ replica: this.replica }, 'no longer leading the fleet\'s monitoring');
    if (this.term !== null && now - this.lastEvaluationAt >= this.publishIntervalMs) {
      this.lastEvaluationAt = now;
      try {
        await this.evaluate(monitored);
        await this.exchange.forget(FORGET_AFTER_MS);
      } catch (err) {
        this.options.logger.error({ err }, 'evaluating the fleet\'s monitors failed; retrying');
      }
    }
    // Through an outage every replica keeps the last verdict it read.
    await this.readVerdicts().catch((err) => this.options.logger.error({ err }, 'reading the fleet\'s verdicts failed; keeping the last one'));
  }

  /** Every loaded monitor follows its view of the fleet; returns them. */
  private follow(): MonitoredVersion[] {
    const monitored = [...this.options.monitors()];
    for (const m of monitored) m.monitor.followFleet(this.viewOf(m));
    return monitored;
  }

  private viewOf(key: MonitorKey): ReplicaView {
    const k = verdictKey(key);
    let view = this.views.get(k);
    if (!view) {
      this.views.set(k, (view = new ReplicaView(this.replica)));
      const o = this.overrides.get(key.service);
      if (o && o.mode !== 'auto') view.override = { mode: o.mode, reason: o.reason, since: o.since };
    }
    return view;
  }

  private async publish(monitored: readonly MonitoredVersion[]): Promise<void> {
    const last = { bytes: 0, packedBytes: 0, exportMs: 0, ms: 0, at: this.now() };
    const started = performance.now();
    for (const m of monitored) {
      const exportStarted = performance.now();
      const exported = exportWindowState(m.monitor.windows, this.now());
      last.exportMs += performance.now() - exportStarted;
      const packed = await packWindowExport(exported);
      last.bytes += exported.length;
      last.packedBytes += packed.length;
      await this.exchange.publish(m, packed);
    }
    last.ms = performance.now() - started;
    this.stats.publishes++;
    this.stats.lastPublish = last;
  }

  private async evaluate(monitored: readonly MonitoredVersion[]): Promise<void> {
    // The published verdicts only matter to monitors not yet resumed in this term.
    const verdicts = monitored.some((m) => !this.resumed.has(m.monitor)) ? await this.exchange.verdicts() : new Map<string, PublishedVerdict>();
    let exportsMerged = 0;
    const started = performance.now();
    for (const m of monitored) {
      const monitor = m.monitor;
      const layout = monitor.windows.layout;
      const previous = verdicts.get(verdictKey(m));
      if (!this.resumed.has(monitor)) {
        this.resumed.add(monitor);
        if (previous) monitor.resumeFrom(previous.state, previous.clearSince);
      }
      // Without an override given to this replica, the mode resumed from the verdict stands.
      const override = this.overrides.get(m.service);
      if (override && monitor.safeModeDecision.safe.mode !== override.mode) monitor.setSafeMode(override.mode, override.reason);
      for (const [id, ack] of this.acks.get(m.service) ?? []) monitor.alerts.acknowledge(id, ack.by, ack.note, ack.at);

      const now = this.now();
      const decoded: WindowExport[] = [];
      const replicas: { id: string; published_at: string }[] = [];
      const refused: { id: string; reason: string }[] = [];
      // Its own windows fresh; the others as last published.
      decoded.push(readWindowExport(exportWindowState(monitor.windows, now), layout));
      replicas.push({ id: this.replica, published_at: new Date(now).toISOString() });
      for (const e of await this.exchange.exports(m)) {
        if (e.replica === this.replica) continue;
        try {
          decoded.push(await unpackWindowExport(e.state, layout));
          replicas.push({ id: e.replica, published_at: new Date(e.publishedAt).toISOString() });
        } catch (err) {
          if (!(err instanceof WindowExportError)) throw err;
          refused.push({ id: e.replica, reason: err.message });
        }
      }
      const merged = new MergedWindows(layout, decoded, monitor.windows.countWindow?.size ?? null);
      const state = monitor.evaluateFleet(merged);
      exportsMerged += decoded.length;
      const evaluatedAt = Date.parse(state.evaluated_at);
      const verdict: PublishedVerdict = {
        leader: this.replica,
        evaluatedAt,
        state: { ...state, fleet: { leader: this.replica, replica: this.replica, evaluated_at: state.evaluated_at, replicas, refused } },
        clearSince: monitor.safeModeDecision.clearSince,
      };
      await this.exchange.publishVerdict(m, verdict);
      this.apply(m, verdict);
      // Acknowledgements of alerts that resolved have done their work.
      const acks = this.acks.get(m.service);
      if (acks) for (const id of acks.keys()) if (!state.alerts.active.some((a) => a.id === id)) acks.delete(id);
    }
    this.stats.evaluations++;
    this.stats.lastEvaluation = { ms: performance.now() - started, exports: exportsMerged, at: this.now() };
  }

  private async readVerdicts(): Promise<void> {
    const verdicts = await this.exchange.verdicts();
    for (const [k, verdict] of verdicts) {
      const view = this.views.get(k);
      if (view && (view.verdict === null || Date.parse(view.verdict.evaluated_at) <= verdict.evaluatedAt)) this.applyTo(view, verdict);
    }
  }

  private apply(key: MonitorKey, verdict: PublishedVerdict): void {
    this.applyTo(this.viewOf(key), verdict);
  }

  private applyTo(view: ReplicaView, verdict: PublishedVerdict): void {
    view.verdict = verdict.state;
    view.clearSince = verdict.clearSince;
  }

  /**
   * An operator's safe-mode override for a service (from the shared operations store, on every
   * replica): 'on' / 'off' apply to this replica's decisions at once, 'auto' hands safe mode back
   * to the fleet's alerts; the leader applies it at its next evaluation. As in one process,
   * 'auto' right after 'on' keeps safe mode until the fleet has been clear for release_after_s.
   */
  applySafeModeOverride(service: string, mode: 'auto' | 'on' | 'off', reason: string | null): void {
    const since = new Date(this.now()).toISOString();
    this.overrides.set(service, { mode, reason, since });
    for (const [k, view] of this.views) {
      if (k.slice(0, k.lastIndexOf('@')) !== service) continue;
      view.override = mode === 'auto' ? null : { mode, reason, since: view.override?.mode === mode ? view.override.since : since };
    }
  }

  /** An operator's acknowledgement of an active alert (from the shared operations store, on every replica); the leader applies it. */
  applyAcknowledgement(service: string, alertId: string, by: string, note: string, at: number): void {
    let acks = this.acks.get(service);
    if (!acks) this.acks.set(service, (acks = new Map()));
    acks.set(alertId, { by, note, at });
  }

  /** Stops the cycle, publishes a last export (its decisions stay in the fleet's windows), stops leading. Does not close the exchange. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.timer) clearInterval(this.timer);
    await this.running;
    this.closed = true;
    try {
      await this.publish([...this.options.monitors()]);
    } catch (err) {
      this.options.logger.warn({ err }, 'could not publish the last monitor export');
    }
    for (const m of this.options.monitors()) m.monitor.followFleet(null);
  }
}
