/**
 * The statistics of one monitoring window against the reference profile: drift tests per
 * feature and for the score, data quality, model health, attribution. Pure computation on a
 * window's histogram (and the count window's raw values for KS), with no state but caches of
 * the reference: the service monitor runs it on the main thread, or its evaluation worker
 * (judge-worker.ts) does, off the request path, with the same results.
 */
import type { MonitoringConfig } from './config.ts';
import { thresholdsFor } from './config.ts';
import { categoryShares, type CategoricalColumn, type FeatureHistogram, type ProfileHistogram, type WindowSource } from './histogram.ts';
import type { FeatureReference, NumericReference, ReferenceProfile } from './reference.ts';
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
