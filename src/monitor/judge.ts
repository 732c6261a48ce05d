/**
 * The statistics of one monitoring window against the reference profile: drift tests per
 * feature and for the score, data quality, model health, attribution. Pure computation on a
 * window's histogram (and the count window's raw values for KS), with no state but caches of
 * the reference: the service monitor runs it on the main thread, or its evaluation worker
 * (judge-worker.ts) does, off the request path, with the same results.
 */
import type { MonitoringConfig } from './config.ts';
import { thresholdsFor } from './config.ts';
import { categoryShares, COUNT_WINDOW, loadHistogram, type CategoricalColumn, type FeatureHistogram, type MonitorWindowOptions, type MonitorWindows, type ProfileHistogram, type ProfileSpec, type WindowSource } from './histogram.ts';
import type { FeatureReference, NumericReference, ReferenceProfile } from './reference.ts';
import type { AlertCandidate, Severity } from './alerts.ts';
import type { AttributionReport, ColumnReport, TestResult, Verdict, WindowReport } from './service-monitor.ts';
import { chiSquareGoodnessOfFit, jensenShannonDistance, ksSortedAgainstQuantiles, psi } from './stats.ts';

/** What a window's evaluation reads besides its histogram: the count window's sorted raw values. */
export type RawValueSource = Pick<WindowSource, 'sortedRawValues' | 'sortedRawScores'>;

/** Attribution monitoring's fixed inputs: the explained features and the reference's mean |contribution| and shares. */
export interface AttributionReference {
  features: readonly string[];
  referenceMeanAbs: Float64Array;
  referenceShares: Float64Array;
}

/** Fallback causes that are the monitor's or an operator's choice, not model failures. */
const CHOSEN_FALLBACKS = new Set(['safe_mode', 'kill_switch', 'rules_only']);
/** Categories rarer than this in the reference are pooled for PSI/JS: sampling noise in rare bins is not drift. */
const RARE_CATEGORY = 0.01;

const rank: Record<Verdict, number> = { insufficient_data: 0, ok: 1, warning: 2, critical: 3 };
export const worst = (verdicts: Verdict[]): Verdict => verdicts.reduce<Verdict>((a, b) => (rank[b] > rank[a] ? b : a), 'ok');
export const level = (value: number, t: { warning: number; critical: number }): Verdict => (!Number.isFinite(value) ? 'ok' : value >= t.critical ? 'critical' : value >= t.warning ? 'warning' : 'ok');
/** For measures where low is bad (a collapsed spread). */
export const levelBelow = (value: number, t: { warning: number; critical: number }): Verdict => (!Number.isFinite(value) ? 'ok' : value < t.critical ? 'critical' : value < t.warning ? 'warning' : 'ok');

/** PSI and JS are effect sizes; the column's significance test (p) says whether they are more than noise. */
function gated(t: ReturnType<typeof thresholdsFor>, test: 'psi' | 'js', value: number, p: number): TestResult {
  const th = t[test];
  return { test, value, p, threshold: th, verdict: p < t.significance ? level(value, th) : 'ok' };
}

/** Reference and window category counts with rare reference categories pooled into one bin. */
function pooled(reference: Float64Array, counts: ArrayLike<number>): { reference: number[]; counts: number[] } {
  const ref: number[] = [];
  const cnt: number[] = [];
  let rareRef = 0;
  let rareCnt = 0;
  for (let i = 0; i < reference.length; i++) {
    if (reference[i] < RARE_CATEGORY) {
      rareRef += reference[i];
      rareCnt += counts[i];
    } else {
      ref.push(reference[i]);
      cnt.push(counts[i]);
    }
  }
  if (rareRef > 0 || rareCnt > 0) {
    ref.push(rareRef);
    cnt.push(rareCnt);
  }
  return { reference: ref, counts: cnt };
}

export class WindowJudge {
  /** Reference frequencies as the tests take them, by the reference's frequencies object: they never change. */
  private readonly referenceShares = new WeakMap<object, Float64Array>();

  constructor(
    private readonly reference: ReferenceProfile,
    private readonly config: MonitoringConfig,
    private readonly attribution: AttributionReference | null,
  ) {}

  /** One window's report; `source` gives the count window's sorted raw values (KS) when `withRaw`. */
  evaluateWindow(source: RawValueSource, h: ProfileHistogram, withRaw: boolean): WindowReport {
    const enough = h.observations >= this.config.min_observations;
    const features: Record<string, ColumnReport> = {};
    for (const fh of h.features) {
      const ref = this.reference.features[fh.name];
      features[fh.name] = this.evaluateColumn(fh, ref, thresholdsFor(this.config, fh.name), enough, withRaw ? source.sortedRawValues(fh.name) : null);
    }

    let score: WindowReport['score'] = null;
    if (h.score && this.reference.score) {
      const column = this.evaluateColumn(h.score, this.reference.score, this.config.drift, h.score.n >= this.config.min_observations, withRaw ? source.sortedRawScores() : null);
      const ratio = this.reference.score.std > 0 ? h.score.std / this.reference.score.std : NaN;
      const collapse = h.score.n >= this.config.min_observations ? levelBelow(ratio, this.config.health.score_std_ratio) : 'insufficient_data';
      score = { ...column, std_ratio: ratio, collapse, verdict: worst([column.verdict, collapse]) };
    }

    const rejected = h.counters.get('rejected') ?? 0;
    const byField: Record<string, number> = {};
    const counters: Record<string, number> = {};
    for (const [key, value] of h.counters) {
      if (key.startsWith('rejected:')) byField[key.slice(9)] = value;
      else if (key !== 'rejected') counters[key] = value;
    }
    const requests = h.observations + rejected;

    const fallbacks: Record<string, number> = Object.fromEntries(h.fallbacks);
    let failures = 0;
    for (const [cause, count] of h.fallbacks) if (!CHOSEN_FALLBACKS.has(cause)) failures += count;

    let mix: WindowReport['model_health']['decision_mix'] = null;
    if (h.decisions && this.reference.decisions) {
      const column = h.decisions.column as CategoricalColumn;
      const refShares = this.sharesOf(this.reference.decisions, () => categoryShares(column, this.reference.decisions!));
      const value = psi(refShares, h.decisions.counts);
      const n = h.decisions.n;
      mix = {
        shares: Object.fromEntries(column.categories.map((c, i) => [c, n > 0 ? h.decisions!.counts[i] / n : 0])),
        reference: this.reference.decisions,
        psi: value,
        verdict: n >= this.config.min_observations ? level(value, this.config.health.decision_mix_psi) : 'insufficient_data',
      };
    }

    return {
      observations: h.observations,
      features,
      score,
      contributions: this.attributionReport(h),
      data_quality: { rejected_requests: rejected, rejection_rate: requests > 0 ? rejected / requests : 0, rejections_by_field: byField, counters },
      model_health: { fallback_rate: h.observations > 0 ? failures / h.observations : 0, fallbacks_by_cause: fallbacks, decision_mix: mix },
    };
  }

  /** `raw`: the column's raw values over the count window, sorted ascending (for the KS test), or null. */
  private evaluateColumn(fh: FeatureHistogram, ref: FeatureReference | undefined, t: ReturnType<typeof thresholdsFor>, enough: boolean, raw: Float64Array | null): ColumnReport {
    const total = fh.total;
    const missingRate = total > 0 ? fh.missing / total : 0;
    const report: ColumnReport = { kind: fh.kind, n: fh.n, missing_rate: missingRate, reference_missing_rate: ref?.missingRate ?? 0, tests: [], verdict: 'insufficient_data' };
    if (!ref) return report;
    const tests: TestResult[] = [];
    // Missing values are judged on every row seen, even when too few values remain to bin.
    if (total >= this.config.min_observations) {
      const rise = missingRate - ref.missingRate;
      tests.push({ test: 'missing_increase', value: rise, threshold: t.missing_increase, verdict: level(rise, t.missing_increase) });
    }
    const binned = fh.n >= this.config.min_observations && enough;
    if (ref.kind === 'numeric' && fh.kind === 'numeric') {
      Object.assign(report, { mean: fh.mean, std: fh.std, reference_mean: ref.mean, reference_std: ref.std, out_of_range_rate: fh.n > 0 ? fh.outOfRange / fh.n : 0 });
      if (binned) {
        const freq = this.sharesOf((ref as NumericReference).frequencies, () => Float64Array.from((ref as NumericReference).frequencies));
        let significance = chiSquareGoodnessOfFit(fh.counts, freq).pValue;
        if (raw && raw.length >= this.config.min_observations && ref.quantiles.length > 1) {
          const ks = ksSortedAgainstQuantiles(raw, ref.quantiles, ref.count);
          significance = ks.pValue;
          tests.push({ test: 'ks', value: ks.statistic, p: ks.pValue, threshold: t.ks, verdict: ks.pValue < t.ks.p ? level(ks.statistic, t.ks) : 'ok' });
        }
        tests.push(gated(t, 'psi', psi(freq, fh.counts), significance));
        tests.push(gated(t, 'js', jensenShannonDistance(freq, fh.counts), significance));
      }
    } else if (ref.kind === 'categorical' && fh.kind === 'categorical') {
      report.unseen_rate = total > 0 ? fh.unseen / total : 0;
      if (binned) {
        const shares = this.sharesOf(ref.frequencies, () => categoryShares(fh.column as CategoricalColumn, ref.frequencies));
        const pool = pooled(shares, fh.counts);
        // Cramér's V: under no drift it is about 1/sqrt(n) whatever the number of categories.
        const chi = chiSquareGoodnessOfFit(pool.counts, pool.reference);
        tests.push({ test: 'chi2', value: chi.cramersV, p: chi.pValue, threshold: t.chi2, verdict: chi.pValue < t.chi2.p ? level(chi.cramersV, t.chi2) : 'ok' });
        tests.push(gated(t, 'psi', psi(pool.reference, pool.counts), chi.pValue));
        tests.push(gated(t, 'js', jensenShannonDistance(pool.reference, pool.counts), chi.pValue));
      }
    }
    report.tests = tests;
    report.verdict = tests.length === 0 ? 'insufficient_data' : worst(tests.map((x) => x.verdict));
    return report;
  }

  /** Each feature's share of the window's mean absolute contributions against the reference's. */
  private attributionReport(h: ProfileHistogram): AttributionReport | null {
    const a = this.attribution;
    if (!a) return null;
    const n = h.explained;
    const sums = h.contributionSums;
    let total = 0;
    for (let i = 0; i < sums.length; i++) total += sums[i];
    const config = this.config.contributions;
    const enough = n >= config.min_observations;
    const features: AttributionReport['features'] = {};
    a.features.forEach((name, i) => {
      const share = total > 0 ? sums[i] / total : 0;
      const increase = share - a.referenceShares[i];
      features[name] = {
        mean_abs: n > 0 ? sums[i] / n : 0,
        reference_mean_abs: a.referenceMeanAbs[i],
        share,
        reference_share: a.referenceShares[i],
        share_increase: increase,
        verdict: enough ? level(increase, config.share_increase) : 'insufficient_data',
      };
    });
    return { n, sample_every: config.sample_every, features, verdict: enough ? worst(Object.values(features).map((f) => f.verdict)) : 'insufficient_data' };
  }

  /** A column's reference frequencies in the column's order, computed once (the reference and the layout are fixed). */
  private sharesOf(frequencies: object, compute: () => Float64Array): Float64Array {
    let shares = this.referenceShares.get(frequencies);
    if (shares === undefined) this.referenceShares.set(frequencies, (shares = compute()));
    return shares;
  }

}

/** The conditions a window's report shows, as alert candidates (performance decay aside: the monitor adds it). */
export function windowCandidates(w: WindowReport | undefined, window: string, config: MonitoringConfig): AlertCandidate[] {
  if (!w) return [];
  const out: AlertCandidate[] = [];
  const add = (rule: string, subject: string, severity: Verdict, message: string, value: number, threshold: number) => {
    if (severity === 'warning' || severity === 'critical') out.push({ key: `${rule}:${subject}`, rule, subject, severity: severity as Severity, message, value, threshold, window });
  };
  const columns: [string, ColumnReport][] = Object.entries(w.features);
  if (w.score) columns.push(['score', w.score]);
  for (const [name, column] of columns) {
    for (const test of column.tests) {
      if (test.verdict !== 'warning' && test.verdict !== 'critical') continue;
      const threshold = test.verdict === 'critical' ? test.threshold.critical : test.threshold.warning;
      if (test.test === 'missing_increase') {
        add('missing_values', name, test.verdict, `${name} missing in ${(100 * column.missing_rate).toFixed(1)}% of requests (reference ${(100 * column.reference_missing_rate).toFixed(1)}%)`, test.value, threshold);
      } else {
        add(name === 'score' ? 'score_drift' : 'feature_drift', name, test.verdict, `${name === 'score' ? 'the score' : name} drifted: ${test.test} ${test.value.toPrecision(3)}${test.p !== undefined ? ` (p ${test.p.toExponential(1)})` : ''} >= ${threshold}`, test.value, threshold);
      }
    }
  }
  // Several tests on one column say the same thing: keep one alert per column, the worst.
  const byKey = new Map<string, AlertCandidate>();
  for (const c of out) {
    const prev = byKey.get(c.key);
    if (!prev || (prev.severity === 'warning' && c.severity === 'critical')) byKey.set(c.key, c);
  }
  const result = [...byKey.values()];

  if (w.score && w.score.collapse !== 'ok' && w.score.collapse !== 'insufficient_data') {
    const t = config.health.score_std_ratio;
    result.push({ key: 'score_collapse:score', rule: 'score_collapse', subject: 'score', severity: w.score.collapse, message: `the score has collapsed: its spread is ${w.score.std_ratio.toPrecision(2)} of the reference's`, value: w.score.std_ratio, threshold: w.score.collapse === 'critical' ? t.critical : t.warning, window });
  }
  const health = config.health;
  const fb = level(w.model_health.fallback_rate, health.fallback_rate);
  if (w.observations >= config.min_observations && fb !== 'ok') {
    result.push({ key: 'fallback_rate:model', rule: 'fallback_rate', subject: 'model', severity: fb as Severity, message: `the model failed on ${(100 * w.model_health.fallback_rate).toFixed(1)}% of decisions (${JSON.stringify(w.model_health.fallbacks_by_cause)})`, value: w.model_health.fallback_rate, threshold: fb === 'critical' ? health.fallback_rate.critical : health.fallback_rate.warning, window });
  }
  const requests = w.observations + w.data_quality.rejected_requests;
  if (requests >= config.min_observations) {
    for (const [field, count] of Object.entries(w.data_quality.rejections_by_field)) {
      const rate = count / requests;
      const v = level(rate, health.rejection_rate);
      if (v !== 'ok') result.push({ key: `rejections:${field}`, rule: 'rejections', subject: field, severity: v as Severity, message: `${(100 * rate).toFixed(1)}% of requests rejected for ${field}`, value: rate, threshold: v === 'critical' ? health.rejection_rate.critical : health.rejection_rate.warning, window });
    }
  }
  // Sources that fail, time out or serve stale values: the feature silently becomes its default.
  if (w.observations >= config.min_observations) {
    for (const [key, count] of Object.entries(w.data_quality.counters)) {
      if (!key.startsWith('source_failure:')) continue;
      const feature = key.slice('source_failure:'.length);
      const rate = count / w.observations;
      const v = level(rate, health.source_failure_rate);
      if (v !== 'ok') result.push({ key: `feature_source:${feature}`, rule: 'feature_source', subject: feature, severity: v as Severity, message: `${feature} came from a failing, slow or stale source in ${(100 * rate).toFixed(1)}% of decisions`, value: rate, threshold: v === 'critical' ? health.source_failure_rate.critical : health.source_failure_rate.warning, window });
    }
  }
  // A feature that suddenly drives the score: its share of the model's attribution rose.
  for (const [feature, f] of Object.entries(w.contributions?.features ?? {})) {
    if (f.verdict !== 'warning' && f.verdict !== 'critical') continue;
    const t = config.contributions.share_increase;
    result.push({
      key: `attribution_shift:${feature}`,
      rule: 'attribution_shift',
      subject: feature,
      severity: f.verdict,
      message: `${feature} now drives ${(100 * f.share).toFixed(1)}% of the model's attribution (reference ${(100 * f.reference_share).toFixed(1)}%): mean |contribution| ${f.mean_abs.toPrecision(3)} vs ${f.reference_mean_abs.toPrecision(3)}`,
      value: f.share_increase,
      threshold: f.verdict === 'critical' ? t.critical : t.warning,
      window,
    });
  }
  const mix = w.model_health.decision_mix;
  if (mix && (mix.verdict === 'warning' || mix.verdict === 'critical')) {
    result.push({ key: 'decision_mix:decisions', rule: 'decision_mix', subject: 'decisions', severity: mix.verdict, message: `the decision mix moved: PSI ${mix.psi.toPrecision(3)} (${JSON.stringify(mix.shares)})`, value: mix.psi, threshold: mix.verdict === 'critical' ? health.decision_mix_psi.critical : health.decision_mix_psi.warning, window });
  }
  return result;
}

// ---------------------------------------------------------------------------------------
// The evaluation worker's protocol (judge-worker.ts)

/** What the worker is started with (workerData). */
export interface JudgeWorkerInit {
  spec: ProfileSpec;
  reference: ReferenceProfile;
  config: MonitoringConfig;
  attribution: AttributionReference | null;
  /** The monitor's windows, which the worker keeps a copy of. */
  windows: MonitorWindowOptions;
  /** The monitor's count-window raw-value rings (CountWindow.raw), on SharedArrayBuffers: the worker copies new rows from them. */
  raw: readonly Float64Array[];
}

/** A count-window block or a time-window bucket changed since the last job (its cells copied). */
export interface PostedBlock {
  window: string;
  index: number;
  /** A time bucket's period (NaN for a count block). */
  period: number;
  data: Float64Array;
  fallbacks: [string, number][];
  counters: [string, number][];
}

/**
 * One evaluation: the raw rows observed since the last job, the blocks and buckets that changed,
 * then the windows to judge at `now`. The rows are read from the monitor's shared rings (rows
 * `rawFrom` to `rawTo`, see CountWindow.pushRawRows) when they are few enough to stay there
 * until the worker reads them, else copied into `raw` (see CountWindow.recentRaw).
 */
export interface JudgeJob {
  id: number;
  now: number;
  /** The worker's rings start again from these rows (the monitor's were reset, or more than N rows passed). */
  resetRaw: boolean;
  raw: Float64Array | null;
  rawFrom: number;
  rawTo: number;
  blocks: PostedBlock[];
  /** The time windows' reports are due too (else the worker sends its last ones). */
  refresh: boolean;
}

/**
 * The count window's alert candidates, and the reports of the windows judged for this job
 * (the count window's, the time windows' when refreshed) serialized (v8): the main thread keeps
 * the latest of each window and deserializes them only when the state is read. Sending only
 * these keeps the copies (and the garbage they make on the main thread) to one report per job.
 */
export type JudgeResult = { id: number; candidates: AlertCandidate[]; reports: Record<string, Uint8Array> } | { id: number; error: string };

/** The changed blocks of a window, copied for posting (a time window's only when `times`). */
export function changedBlocks(windows: MonitorWindows, times: boolean): PostedBlock[] {
  const out: PostedBlock[] = [];
  const post = (window: string, index: number, period: number, h: ProfileHistogram) => out.push({ window, index, period, data: h.data.slice(), fallbacks: [...h.fallbacks], counters: [...h.counters] });
  for (const b of windows.countWindow?.takeChanged() ?? []) post(COUNT_WINDOW, b.index, NaN, b.histogram);
  if (times) for (const w of windows.timeWindows) for (const b of w.takeChanged()) post(w.name, b.index, w.periods[b.index], b.histogram);
  return out;
}

/** Applies posted blocks to the worker's copy of the windows. */
export function loadBlocks(windows: MonitorWindows, blocks: readonly PostedBlock[]): void {
  for (const b of blocks) {
    if (b.window === COUNT_WINDOW) {
      loadHistogram(windows.countWindow!.blocks[b.index], b.data, b.fallbacks, b.counters);
      continue;
    }
    const w = windows.timeWindows.find((t) => t.name === b.window)!;
    loadHistogram(w.buckets[b.index], b.data, b.fallbacks, b.counters);
    w.periods[b.index] = b.period;
  }
}
