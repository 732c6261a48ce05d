/**
 * One service version's live monitor: observes every decision into bounded windows,
 * evaluates drift, data quality and model health against the reference profile, raises
 * alerts, feeds outcomes to a decay detector, and runs safe mode (decisions go to the
 * fallback policy while a critical alert is active, back with hysteresis once it clears).
 */
import type { RawRow } from '../bundle/encoding.ts';
import type { Bundle } from '../bundle/load.ts';
import type { LabelledDecision } from '../log/types.ts';
import { AlertManager, type Alert, type AlertCandidate, type AlertSink, type Severity } from './alerts.ts';
import type { MonitoringConfig } from './config.ts';
import { Adwin } from './detectors.ts';
import { changedBlocks, windowCandidates, WindowJudge, type JudgeJob, type JudgeResult, type JudgeWorkerInit } from './judge.ts';
import { startWorker } from '../threads.ts';
import { deserialize } from 'node:v8';
import type { Worker } from 'node:worker_threads';
import { COUNT_WINDOW, MonitorWindows, profileSpec, type MonitorWindowOptions, type WindowSource } from './histogram.ts';
import type { ReferenceProfile } from './reference.ts';
import type { Explainer } from '../pipeline/explain.ts';

/** What the monitor sees of the model's part in a decision. */
export interface ModelSeen {
  /** When the model scored the row: its encoded inputs and raw outputs. */
  scored: { inputs: Float32Array; raw: Float64Array } | null;
  /** The row's contributions per feature, when the decision computed them anyway. */
  contributions: ArrayLike<number> | null;
}

export type Verdict = 'ok' | 'warning' | 'critical' | 'insufficient_data';

export interface TestResult {
  test: 'psi' | 'js' | 'ks' | 'chi2' | 'missing_increase';
  value: number;
  /** p-value: the test's own, or for psi/js the column's significance test that gates them. */
  p?: number;
  threshold: { warning: number; critical: number; p?: number };
  verdict: Verdict;
}

export interface ColumnReport {
  kind: 'numeric' | 'categorical';
  n: number;
  missing_rate: number;
  reference_missing_rate: number;
  mean?: number;
  std?: number;
  reference_mean?: number;
  reference_std?: number;
  out_of_range_rate?: number;
  unseen_rate?: number;
  tests: TestResult[];
  verdict: Verdict;
}

export interface WindowReport {
  observations: number;
  features: Record<string, ColumnReport>;
  score: (ColumnReport & { std_ratio: number; collapse: Verdict }) | null;
  data_quality: {
    rejected_requests: number;
    rejection_rate: number;
    rejections_by_field: Record<string, number>;
    counters: Record<string, number>;
  };
  model_health: {
    fallback_rate: number;
    fallbacks_by_cause: Record<string, number>;
    decision_mix: { shares: Record<string, number>; reference: Record<string, number>; psi: number; verdict: Verdict } | null;
  };
  /** Attribution against the reference's; null when the model has no exact contributions or the profile did not record them. */
  contributions: AttributionReport | null;
}

/** Per feature, its mean absolute contribution to the score's margin and its share of them all. */
export interface AttributionReport {
  /** Decisions explained in the window (one in `sample_every` the model scored). */
  n: number;
  sample_every: number;
  features: Record<string, { mean_abs: number; reference_mean_abs: number; share: number; reference_share: number; share_increase: number; verdict: Verdict }>;
  verdict: Verdict;
}

export interface SafeModeState {
  /** auto: follows critical alerts (when on_critical is fallback); on / off: an operator's override. */
  mode: 'auto' | 'on' | 'off';
  active: boolean;
  since: string | null;
  reason: string | null;
}

export interface MonitorState {
  service: string;
  version: string;
  evaluated_at: string;
  reference: { created: string; data: ReferenceProfile['data'] } | null;
  windows: Record<string, WindowReport>;
  alerts: { active: Alert[]; history: Alert[] };
  safe_mode: SafeModeState & { on_critical: MonitoringConfig['on_critical']; release_after_s: number };
  decay: { detector: 'adwin'; delta: number; outcomes: number; width: number; mean_brier: number; reference_brier: number | null; changes_detected: number; decayed: boolean };
  /** In a fleet: who evaluated, on whose exports (absent for a single process). */
  fleet?: FleetInfo;
}

export interface FleetInfo {
  /** The replica that evaluated (null before any leader published). */
  leader: string | null;
  /** This replica. */
  replica: string;
  evaluated_at: string | null;
  /** Replicas whose exports the evaluation merged, with when each last published. */
  replicas: { id: string; published_at: string }[];
  /** Exports left out (another layout, unreadable), with the reason. */
  refused: { id: string; reason: string }[];
}

/**
 * What a fleet replica knows of the fleet's monitoring (src/monitor/fleet.ts keeps it
 * current): while a monitor follows one, its own windows are only exported, never evaluated
 * locally, and its decisions obey the fleet's safe mode.
 */
export interface FleetView {
  /** The fleet's last published evaluation (with its `fleet` block), or null before the first. */
  readonly verdict: MonitorState | null;
  /** Safe mode as this replica applies it now: the fleet's, or an operator's override. */
  readonly safeMode: SafeModeState;
  readonly replica: string;
}

/** How often traffic-triggered evaluations recompute the time windows' reports (see `evaluate`). */
export const TIME_WINDOW_REFRESH_MS = 1000;

/**
 * The shortest interval between two evaluation jobs posted to the worker (evaluateOffThread),
 * by the monitor's clock. A job costs the event loop about 0.1-0.2 ms (copying the new rows and
 * blocks, the message round trip, the reply and its garbage), so at more than `evaluate_every`
 * decisions per interval jobs go out once per interval instead of every `evaluate_every`
 * decisions; a timer posts the held-back job when the interval ends, traffic or not. The bound:
 * the count window's verdict (alerts, safe mode) comes at most this much later than an
 * evaluation every `evaluate_every` decisions would bring it (plus the worker's own time, as
 * before). Slower traffic is judged every `evaluate_every` decisions, exactly as inline.
 */
export const MIN_JOB_INTERVAL_MS = 250;

export interface ServiceMonitorOptions {
  bundle: Bundle;
  reference: ReferenceProfile;
  config: MonitoringConfig;
  sinks: readonly AlertSink[];
  /** Milliseconds since the epoch (injectable for tests). */
  now?: () => number;
  /** The model's exact contributions, for attribution monitoring (with a reference that recorded them). */
  explainer?: Explainer | null;
  /**
   * Runs the evaluations that traffic triggers in a worker thread (the server's choice): the
   * request path then only records each decision into the windows, and the statistics never
   * hold up the event loop. Alerts and safe mode follow as soon as the worker answers (about a
   * millisecond later). Other evaluations (`evaluate()`, the timer, an operator) stay inline.
   */
  evaluateOffThread?: boolean;
}

/** Rows waiting to be explained after their decisions were answered. */
const MAX_PENDING_EXPLANATIONS = 1024;

export class ServiceMonitor {
  readonly windows: MonitorWindows;
  private readonly windowOptions: MonitorWindowOptions;
  readonly alerts: AlertManager;
  readonly config: MonitoringConfig;
  private readonly bundle: Bundle;
  private readonly reference: ReferenceProfile;
  private readonly now: () => number;
  private readonly safe: SafeModeState = { mode: 'auto', active: false, since: null, reason: null };
  /** When the last critical alert cleared while safe mode was on (for the hysteresis). */
  private clearSince: number | null = null;
  private sinceEvaluation = 0;
  private evaluationScheduled = false;
  private last: MonitorState | null = null;
  /** When the time windows' reports were last computed. */
  private timeWindowsAt = -Infinity;
  /** The window statistics against the reference. */
  private readonly judge: WindowJudge;
  private readonly adwin = new Adwin({ delta: 0.002 });
  private outcomes = 0;
  private readonly positive: string | null;
  /** Attribution monitoring: the explainer, the reference's shares, and decisions waiting to be explained. */
  private readonly attribution: { explainer: Explainer; referenceMeanAbs: Float64Array; referenceShares: Float64Array } | null;
  private sinceSample = 0;
  private pendingInputs: Float32Array[] = [];
  private pendingRaw: Float64Array[] = [];
  private explainScheduled = false;
  /** Sampled decisions not explained because too many were waiting (the event loop fell behind). */
  unexplained = 0;
  /** The fleet this monitor's service belongs to; null: a single process, evaluated here. */
  private fleet: FleetView | null = null;
  /** The evaluation worker (evaluateOffThread), the job it is on, and how far its raw rings follow the count window. */
  private judgeWorker: Worker | null = null;
  /** `shared`: the first row the worker reads from the shared rings (null: the rows were copied). */
  private job: { id: number; now: number; inlineSerial: number; shared: number | null } | null = null;
  private jobs = 0;
  /** When the last job was posted (the monitor's clock), and the timer that posts a job held back by MIN_JOB_INTERVAL_MS. */
  private lastJobAt = -Infinity;
  private jobTimer: ReturnType<typeof setTimeout> | null = null;
  private rawSent = 0;
  /** Inline evaluations so far: a worker's report older than the latest inline one is dropped. */
  private inlineSerial = 0;
  private waiting: (() => void)[] = [];
  /** The worker's latest report of each window, serialized (it sends only those it recomputed). */
  private readonly judgedReports = new Map<string, Uint8Array>();

  constructor(options: ServiceMonitorOptions) {
    const { bundle, reference, config } = options;
    this.bundle = bundle;
    this.reference = reference;
    this.config = config;
    this.now = options.now ?? Date.now;
    const outputs = bundle.manifest.outputs;
    this.positive = outputs?.type === 'binary' ? (outputs.positive_class ?? outputs.classes[1]) : null;
    const probability = outputs?.type === 'binary' || outputs?.type === 'multiclass';
    const explainer = options.explainer ?? null;
    const attributed = explainer !== null && reference.contributions ? reference.contributions : null;
    if (attributed) {
      const meanAbs = Float64Array.from(explainer!.features, (f) => attributed.meanAbs[f] ?? 0);
      const total = meanAbs.reduce((a, b) => a + b, 0);
      this.attribution = { explainer: explainer!, referenceMeanAbs: meanAbs, referenceShares: meanAbs.map((v) => (total > 0 ? v / total : 0)) };
    } else this.attribution = null;
    this.judge = new WindowJudge(reference, config, this.attribution && { features: this.attribution.explainer.features, referenceMeanAbs: this.attribution.referenceMeanAbs, referenceShares: this.attribution.referenceShares });
    const spec = profileSpec(bundle.encoding.features, reference, {
      actions: bundle.policy?.actions ?? null,
      score: probability ? { min: 0, max: 1 } : null,
      contributions: this.attribution !== null,
    });
    const count = { size: config.count_window, blocks: 10 };
    this.windowOptions = { count };
    // The evaluation worker reads the raw values of new rows straight from the rings (no copy posted per job).
    this.windows = new MonitorWindows(spec, { count: { ...count, sharedRaw: options.evaluateOffThread === true } });
    this.alerts = new AlertManager(bundle.name, options.sinks, { cooldownMs: config.cooldown_s * 1000, historySize: 200 });
    if (options.evaluateOffThread && this.windows.countWindow) this.startJudge();
  }

  private startJudge(): void {
    const a = this.attribution;
    const init: JudgeWorkerInit = {
      spec: this.windows.layout.spec,
      reference: this.reference,
      config: this.config,
      attribution: a && { features: a.explainer.features, referenceMeanAbs: a.referenceMeanAbs, referenceShares: a.referenceShares },
      windows: this.windowOptions,
      raw: this.windows.countWindow!.raw,
    };
    const worker = startWorker(new URL('./judge-worker.ts', import.meta.url), { workerData: init });
    worker.unref();
    worker.on('message', (result: JudgeResult) => this.judged(result));
    // A worker that cannot run: the evaluations go back inline (slower, same verdicts).
    worker.on('error', () => this.stopJudge());
    worker.on('exit', () => this.stopJudge());
    this.judgeWorker = worker;
  }

  private stopJudge(): void {
    const worker = this.judgeWorker;
    this.judgeWorker = null;
    this.job = null;
    if (this.jobTimer) {
      clearTimeout(this.jobTimer);
      this.jobTimer = null;
    }
    this.wake();
    if (worker) void worker.terminate();
  }

  /** Resolves once the evaluation worker has answered the job it is on (at once when none is). */
  settled(): Promise<void> {
    return this.job ? new Promise((resolve) => this.waiting.push(resolve)) : Promise.resolve();
  }

  /** Stops the evaluation worker, if any (an unloaded version). */
  close(): void {
    this.stopJudge();
  }

  /** Whether decisions must use the fallback policy now (the fleet's safe mode in a fleet). */
  get safeModeActive(): boolean {
    return this.fleet ? this.fleet.safeMode.active : this.safe.active;
  }

  get safeModeReason(): string | null {
    return this.fleet ? this.fleet.safeMode.reason : this.safe.reason;
  }

  /**
   * Joins a fleet: from now on `evaluate()` and `state()` answer the fleet's verdict, traffic no
   * longer triggers local evaluations (no alert is raised by a replica for its share of the
   * traffic) and safe mode follows the fleet. The leader evaluates with `evaluateFleet`.
   */
  followFleet(view: FleetView | null): void {
    this.fleet = view;
  }

  /** Safe mode as this monitor last decided it, and since when it has been clear (for a verdict a new leader resumes from). */
  get safeModeDecision(): { safe: SafeModeState; clearSince: number | null } {
    return { safe: { ...this.safe }, clearSince: this.clearSince };
  }

  /**
   * A new fleet leader takes over the last published verdict: its active alerts (they do not
   * fire again), its history (cooldowns) and its safe mode with the hysteresis under way.
   */
  resumeFrom(verdict: MonitorState, clearSince: number | null): void {
    this.alerts.restore(verdict.alerts.active, verdict.alerts.history);
    const { mode, active, since, reason } = verdict.safe_mode;
    Object.assign(this.safe, { mode, active, since, reason });
    this.clearSince = clearSince;
  }

  /** Safe mode as it stands: the override mode, whether it is on, since when, why. */
  get safeMode(): SafeModeState {
    return { ...this.safe };
  }

  /**
   * Records one answered decision: the features as served, the score if the model ran, the
   * action, the fallback cause, and how each sourced feature was obtained.
   */
  observeDecision(row: RawRow, score: number | null, action: string | null, fallbackCause: string | null, featureStatus?: Readonly<Record<string, string>>, model?: ModelSeen): void {
    const kind = fallbackCause === null ? null : fallbackCause.split(':')[0];
    const now = this.now();
    this.windows.observe(row, score, action, kind, now);
    if (this.attribution && model?.scored && ++this.sinceSample >= this.config.contributions.sample_every) {
      this.sinceSample = 0;
      this.sampleContributions(model, now);
    }
    if (featureStatus) {
      for (const [feature, status] of Object.entries(featureStatus)) {
        if (status === 'stale' || status === 'timeout' || status === 'error') this.windows.count(`source_failure:${feature}`, now);
        if (status !== 'present') this.windows.count(`feature_${status}:${feature}`, now);
      }
    }
    this.tick(now);
  }

  /**
   * One sampled decision's contributions into the windows: at once when the decision computed
   * them anyway, else after answering (its inputs and outputs copied, explained in a batch on
   * the next turn of the event loop), so no request waits for them.
   */
  private sampleContributions(model: ModelSeen, now: number): void {
    if (model.contributions) {
      this.windows.observeContributions(model.contributions, now);
      return;
    }
    if (this.pendingInputs.length >= MAX_PENDING_EXPLANATIONS) {
      this.unexplained++;
      return;
    }
    this.pendingInputs.push(model.scored!.inputs.slice());
    this.pendingRaw.push(model.scored!.raw.slice());
    if (this.explainScheduled) return;
    this.explainScheduled = true;
    setImmediate(() => this.explainPending());
  }

  /** Explains the decisions waiting since the last turn, as one batch. */
  explainPending(): void {
    this.explainScheduled = false;
    const inputs = this.pendingInputs;
    const raws = this.pendingRaw;
    if (!this.attribution || inputs.length === 0) return;
    this.pendingInputs = [];
    this.pendingRaw = [];
    const width = inputs[0].length;
    const rawWidth = raws[0].length;
    const x = new Float32Array(inputs.length * width);
    const raw = new Float64Array(raws.length * rawWidth);
    inputs.forEach((v, i) => x.set(v, i * width));
    raws.forEach((v, i) => raw.set(v, i * rawWidth));
    const explained = this.attribution.explainer.explain(x, inputs.length, raw);
    const n = this.attribution.explainer.features.length;
    const now = this.now();
    for (let r = 0; r < inputs.length; r++) this.windows.observeContributions(explained.values.subarray(r * n, (r + 1) * n), now);
  }

  /** Records a request rejected at the edge, by the fields at fault. */
  observeRejection(fields: readonly string[]): void {
    const now = this.now();
    this.windows.count('rejected', now);
    for (const f of new Set(fields)) this.windows.count(`rejected:${f}`, now);
  }

  /** Feeds an outcome to the decay detector: the squared error of the probability (the Brier term). */
  observeOutcome(item: LabelledDecision): void {
    if (this.positive === null || item.score === null || item.fallbackUsed) return;
    const y = item.label === this.positive ? 1 : 0;
    this.adwin.update((item.score - y) ** 2);
    this.outcomes++;
  }

  /**
   * Operator override of safe mode; 'auto' hands it back to the alerts. The local application of
   * the override the operations store holds (the server calls it on every replica).
   */
  setSafeMode(mode: SafeModeState['mode'], reason: string | null): SafeModeState {
    this.safe.mode = mode;
    if (mode === 'on') this.engage(reason ?? 'turned on by an operator');
    else if (mode === 'off') this.release();
    else this.evaluate();
    return { ...this.safe };
  }

  private engage(reason: string): void {
    if (!this.safe.active) {
      this.safe.active = true;
      this.safe.since = new Date(this.now()).toISOString();
    }
    this.safe.reason = reason;
    this.clearSince = null;
  }

  private release(): void {
    this.safe.active = false;
    this.safe.since = null;
    this.safe.reason = null;
    this.clearSince = null;
  }

  private tick(now: number): void {
    if (this.fleet) return; // the fleet's leader evaluates
    if (++this.sinceEvaluation < this.config.evaluate_every || this.evaluationScheduled) return;
    this.evaluationDue(now);
  }

  /**
   * `evaluate_every` decisions (or more) wait to be judged: inline, on the next turn of the event
   * loop; in the worker, likewise unless a job went out less than MIN_JOB_INTERVAL_MS ago, in which
   * case a timer posts the job when the interval ends (or traffic does, by the monitor's clock,
   * whichever comes first).
   */
  private evaluationDue(now: number): void {
    if (this.job) return; // the worker is busy: its answer schedules the next job
    if (this.judgeWorker) {
      const wait = this.lastJobAt + MIN_JOB_INTERVAL_MS - now;
      if (wait > 0) {
        this.jobTimer ??= setTimeout(() => {
          this.jobTimer = null;
          if (!this.evaluationScheduled && this.sinceEvaluation >= this.config.evaluate_every) this.evaluationDue(Infinity);
        }, wait).unref();
        return;
      }
    }
    if (this.jobTimer) {
      clearTimeout(this.jobTimer);
      this.jobTimer = null;
    }
    this.scheduleEvaluation();
  }

  private scheduleEvaluation(): void {
    this.evaluationScheduled = true;
    // Off the request path: the response is already on its way.
    setImmediate(() => {
      this.evaluationScheduled = false;
      if (this.fleet) return;
      if (this.judgeWorker) this.postJob();
      else this.evaluate({ fromTraffic: true });
    });
  }

  /**
   * Posts a traffic-triggered evaluation to the worker: the rows observed since the last job
   * (raw values, for its KS rings) and the count-window blocks that changed (one or two of
   * eleven), plus the time windows' changed buckets when their reports are due (as
   * `evaluate({ fromTraffic: true })` decides). Merging and statistics happen in the worker.
   */
  private postJob(): void {
    const worker = this.judgeWorker!;
    const cw = this.windows.countWindow!;
    this.sinceEvaluation = 0;
    const now = this.now();
    this.lastJobAt = now;
    const seen = cw.observed;
    const resetRaw = this.rawSent < 0 || this.rawSent > seen || seen - this.rawSent > cw.size;
    const rawFrom = resetRaw ? Math.max(0, seen - cw.size) : this.rawSent;
    // Up to half a window of rows, the worker reads them from the shared rings: N/2 more rows
    // would have to be observed before it does to overwrite them (checked in `judged`).
    const raw = seen - rawFrom > cw.size >> 1 ? cw.recentRaw(seen - rawFrom) : null;
    this.rawSent = seen;
    const refresh = this.last === null || now - this.timeWindowsAt >= TIME_WINDOW_REFRESH_MS;
    if (refresh) this.timeWindowsAt = now;
    const blocks = changedBlocks(this.windows, refresh);
    const job: JudgeJob = { id: ++this.jobs, now, resetRaw, raw, rawFrom, rawTo: seen, blocks, refresh };
    this.job = { id: job.id, now, inlineSerial: this.inlineSerial, shared: raw === null ? rawFrom : null };
    // Copied, not transferred: transferring a few small buffers costs more than copying them.
    worker.postMessage(job);
  }

  /** The worker's reports: alerts and safe mode as an inline evaluation at the job's time would set them. */
  private judged(result: JudgeResult): void {
    const job = this.job;
    if (!job || job.id !== result.id) return;
    this.job = null;
    if ('error' in result) {
      this.stopJudge();
      this.evaluate({ fromTraffic: true });
      return;
    }
    const cw = this.windows.countWindow!;
    if (job.shared !== null && (cw.observed > job.shared + cw.size || cw.observed < this.rawSent)) {
      // The rows the worker was to read may have been overwritten before it did (N/2 rows
      // observed meanwhile): its rings and this verdict are suspect. The next job copies them afresh.
      this.rawSent = -1;
      if (!this.evaluationScheduled) this.evaluationDue(this.now());
      this.wake();
      return;
    }
    for (const name in result.reports) this.judgedReports.set(name, result.reports[name]);
    // An inline evaluation since the job was posted saw newer windows: keep its verdict.
    if (job.inlineSerial === this.inlineSerial && !this.fleet) {
      // The reports as of this job: each window's latest (never changed in place, so later jobs leave these alone).
      const reports = [...this.judgedReports];
      const decay = this.candidates(undefined, '');
      this.concluded([...result.candidates, ...decay], () => Object.fromEntries(reports.map(([name, report]) => [name, deserialize(report) as WindowReport])), job.now);
    }
    if (this.sinceEvaluation >= this.config.evaluate_every && !this.evaluationScheduled) this.evaluationDue(this.now());
    this.wake();
  }

  private wake(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const resolve of waiting) resolve();
  }

  /** The last evaluation, or a fresh one. */
  state(): MonitorState {
    if (this.fleet) return this.fleetState(this.fleet);
    return this.last ?? this.evaluate();
  }

  /** The fleet's verdict as this replica applies it (its safe mode may be an operator's override). */
  private fleetState(fleet: FleetView): MonitorState {
    const safe_mode = { ...fleet.safeMode, on_critical: this.config.on_critical, release_after_s: this.config.release_after_s };
    if (fleet.verdict) return { ...fleet.verdict, safe_mode, fleet: { ...fleet.verdict.fleet!, replica: fleet.replica } };
    // No leader has published yet: nothing judged.
    return {
      service: this.bundle.name,
      version: this.bundle.version,
      evaluated_at: new Date(this.now()).toISOString(),
      reference: { created: this.reference.created, data: this.reference.data },
      windows: {},
      alerts: { active: [], history: [] },
      safe_mode,
      decay: this.decayState(),
      fleet: { leader: null, replica: fleet.replica, evaluated_at: null, replicas: [], refused: [] },
    };
  }

  /**
   * The fleet leader's evaluation: the fleet's merged windows judged by this monitor's
   * statistics, alerts (delivered to this process's sinks) and safe mode, with this
   * process's decay detector (every replica reads every outcome from the shared log).
   */
  evaluateFleet(source: WindowSource): MonitorState {
    return this.evaluateSource(source, {});
  }

  /**
   * Evaluates the windows, updates alerts and safe mode. Alerts read the count window only; the
   * time windows (5m, 1h, 1d) are reports for people, so an evaluation triggered by traffic
   * (every `evaluate_every` decisions, on the main thread) recomputes them at most once per
   * {@link TIME_WINDOW_REFRESH_MS} and otherwise carries their last reports over; any other
   * call (the periodic timer, an operator, a test) evaluates every window.
   */
  evaluate(options: { fromTraffic?: boolean } = {}): MonitorState {
    if (this.fleet) return this.fleetState(this.fleet);
    return this.evaluateSource(this.windows, options);
  }

  private evaluateSource(source: WindowSource, options: { fromTraffic?: boolean }): MonitorState {
    this.sinceEvaluation = 0;
    const now = this.now();
    const names = source.windowNames;
    const alerting = names.includes(COUNT_WINDOW) ? COUNT_WINDOW : names[0];
    const refresh = !options.fromTraffic || this.last === null || now - this.timeWindowsAt >= TIME_WINDOW_REFRESH_MS;
    const windows: Record<string, WindowReport> = {};
    for (const name of names) {
      if (name !== alerting && !refresh && this.last?.windows[name]) windows[name] = this.last.windows[name];
      else windows[name] = this.judge.evaluateWindow(source, source.snapshot(name, now), name === COUNT_WINDOW);
    }
    if (refresh) this.timeWindowsAt = now;
    this.inlineSerial++;
    return this.conclude(windows, alerting, now);
  }

  /** Alerts, safe mode and the state from the windows' reports. */
  private conclude(windows: Record<string, WindowReport>, alerting: string, now: number): MonitorState {
    return this.concluded(this.candidates(windows[alerting], `last_${this.config.count_window}`), windows, now);
  }

  /** Updates alerts and safe mode from the candidates; the new state (`windows`: reports, or a getter that deserializes the worker's). */
  private concluded(candidates: AlertCandidate[], windows: Record<string, WindowReport> | (() => Record<string, WindowReport>), now: number): MonitorState {
    this.alerts.update(candidates, now);
    this.updateSafeMode(now);

    const decay = this.decayState();
    let read = typeof windows === 'function' ? null : windows;
    const state: MonitorState = {
      service: this.bundle.name,
      version: this.bundle.version,
      evaluated_at: new Date(now).toISOString(),
      reference: { created: this.reference.created, data: this.reference.data },
      // The worker's reports are only deserialized when someone reads them (most evaluations are never read).
      get windows() {
        return (read ??= (windows as () => Record<string, WindowReport>)());
      },
      alerts: { active: this.alerts.active(), history: this.alerts.history(50) },
      safe_mode: { ...this.safe, on_critical: this.config.on_critical, release_after_s: this.config.release_after_s },
      decay,
    };
    this.last = state;
    return state;
  }

  private decayState(): MonitorState['decay'] {
    const referenceBrier = this.reference.performance?.brier ?? null;
    const mean = this.adwin.estimation;
    // Decayed: the detector saw the error level change, and it now sits well above the reference's.
    const decayed = this.adwin.detected > 0 && referenceBrier !== null && this.adwin.width >= 100 && mean > referenceBrier * 1.25;
    return { detector: 'adwin', delta: 0.002, outcomes: this.outcomes, width: this.adwin.width, mean_brier: mean, reference_brier: referenceBrier, changes_detected: this.adwin.detected, decayed };
  }

  private updateSafeMode(now: number): void {
    if (this.safe.mode !== 'auto' || this.config.on_critical !== 'fallback') return;
    const critical = this.alerts.active().filter((a) => a.severity === 'critical');
    if (critical.length > 0) {
      this.engage(`critical alert: ${critical.map((a) => a.message).join('; ')}`.slice(0, 500));
      return;
    }
    if (!this.safe.active) return;
    // Hysteresis: stay in safe mode until the service has been clear for release_after_s.
    this.clearSince ??= now;
    if (now - this.clearSince >= this.config.release_after_s * 1000) this.release();
  }

  /** The conditions that hold now, as alert candidates: the window's, then performance decay. */
  private candidates(w: WindowReport | undefined, window: string): AlertCandidate[] {
    const result = windowCandidates(w, window, this.config);
    const decay = this.decayState();
    if (decay.decayed) {
      result.push({ key: 'performance_decay:model', rule: 'performance_decay', subject: 'model', severity: 'warning', message: `realized error rose: mean Brier ${decay.mean_brier.toPrecision(3)} over the last ${decay.width} outcomes vs ${decay.reference_brier?.toPrecision(3)} in the reference`, value: decay.mean_brier, threshold: (decay.reference_brier ?? 0) * 1.25, window: `last_${decay.width}_outcomes` });
    }
    return result;
  }
}
