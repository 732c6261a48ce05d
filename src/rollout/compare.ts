/**
 * Champion against challenger, decision by decision: what `rtml replay` reports, and what a
 * live shadow will feed one decision at a time (`add`), reading the same report (`report`)
 * whenever asked. Memory is bounded by the policy's actions, bands and segments, except for
 * the scores of decisions with outcomes (16 bytes each), which the AUCs and DeLong need.
 */
import type { RawRow } from '../bundle/encoding.ts';
import { delong, type DelongResult } from './delong.ts';

/** One side's decision as compared: the action, the score, the reason codes in order, the fallback cause. */
export interface DecidedSide {
  /** The action; null when the row was refused (the candidate's schema rejects what the champion took). */
  action: string | null;
  score: number | null;
  reasons: readonly string[];
  /** Why the fallback decided, or null when the model's score (or a rule) did. */
  fallback: string | null;
}

export interface ComparedDecision {
  champion: DecidedSide;
  candidate: DecidedSide;
  /** The features both decided on (for segments). */
  row: RawRow;
  /** For decisions with an outcome: 1 when it is the positive class (a bad loan), 0 otherwise. */
  label?: 0 | 1;
  /** How long the candidate's model took, in milliseconds (absent when it did not run). */
  candidateModelMs?: number;
}

export interface ComparisonSetup {
  /** The actions in the policy's order (others seen are appended). */
  actions: readonly string[];
  /** Band edges on the champion's score (a band is [edge[i-1], edge[i])). */
  bandEdges: readonly number[];
  /** Categorical features and their values: flips per segment. */
  segments: readonly { feature: string; values: readonly string[] }[];
}

/** The refused row's pseudo-action in the flip matrix. */
export const REFUSED = '(refused)';

const SCORE_DIFF_EDGES = [-0.5, -0.2, -0.1, -0.05, -0.02, -0.01, -0.005, -0.001, 0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5];
/** Latency histogram edges, milliseconds: 1 µs to 1 s on a log scale (10 bins a decade). */
const LATENCY_EDGES = Array.from({ length: 61 }, (_, i) => 10 ** (-3 + i / 10));

interface Tally {
  n: number;
  flips: number;
}

export interface ComparisonReport {
  decisions: number;
  flips: number;
  flipRate: number;
  /** Rows: the champion's action; columns: the candidate's. */
  matrix: { actions: string[]; counts: number[][]; shares: number[][] };
  /** Share of decisions per action, each side, and the change. */
  actionRates: Record<string, { champion: number; candidate: number; change: number }>;
  byBand: { band: string; n: number; flips: number; flipRate: number }[];
  bySegment: Record<string, { value: string; n: number; flips: number; flipRate: number }[]>;
  scoreDifference: {
    /** Decisions both scored. */
    n: number;
    exactlyEqual: number;
    mean: number;
    meanAbsolute: number;
    maxAbsolute: number;
    /** Counts of candidate - champion in (edge[i-1], edge[i]], zero excluded (counted in exactlyEqual). */
    histogram: { from: number | null; to: number | null; count: number }[];
  };
  reasons: {
    /** Decisions whose reason codes (in order) differ. */
    changed: number;
    changedRate: number;
    /** Per code: decisions that gained it, decisions that lost it. */
    byCode: { code: string; gained: number; lost: number }[];
  };
  fallback: { champion: number; candidate: number; championRate: number; candidateRate: number; causes: Record<string, number> };
  latencyMs: { n: number; p50: number | null; p90: number | null; p99: number | null; max: number | null };
  outcomes: OutcomeComparison | null;
}

export interface OutcomeComparison {
  labelled: number;
  positives: number;
  champion: Performance;
  candidate: Performance;
  /** Candidate AUC - champion AUC with DeLong's 95% interval (paired: the same decisions), null with one class only. */
  aucDifference: DelongResult | null;
}

export interface Performance {
  auc: number | null;
  logLoss: number;
  brier: number;
  /** Per action this side took: decisions, positives (bad), their rate. */
  badRateByAction: Record<string, { n: number; positives: number; rate: number }>;
}

/** Accumulates compared decisions; `report()` at any time. */
export class DecisionComparison {
  private readonly actions: string[];
  private readonly actionIndex = new Map<string, number>();
  private counts: number[][];
  private decisions = 0;
  private flips = 0;
  private readonly bands: Tally[];
  private readonly segments: Map<string, Tally>[];
  private readonly diffCounts = new Array<number>(SCORE_DIFF_EDGES.length + 1).fill(0);
  private scored = 0;
  private equal = 0;
  private diffSum = 0;
  private diffAbsSum = 0;
  private diffAbsMax = 0;
  private reasonsChanged = 0;
  private readonly codes = new Map<string, { gained: number; lost: number }>();
  private championFallbacks = 0;
  private candidateFallbacks = 0;
  private readonly causes = new Map<string, number>();
  private readonly latency = new Array<number>(LATENCY_EDGES.length + 1).fill(0);
  private latencyN = 0;
  private latencyMax = 0;
  // Outcomes: scores of both sides (growing typed arrays) and per-action tallies.
  private labels = new Uint8Array(1024);
  private championScores = new Float64Array(1024);
  private candidateScores = new Float64Array(1024);
  private labelled = 0;
  private readonly badByAction = [new Map<string, Tally>(), new Map<string, Tally>()];
  private readonly loss = { champion: 0, candidate: 0, brierChampion: 0, brierCandidate: 0 };

  constructor(private readonly setup: ComparisonSetup) {
    this.actions = [];
    for (const a of setup.actions) this.indexOf(a);
    this.counts = this.actions.map(() => this.actions.map(() => 0));
    this.bands = Array.from({ length: setup.bandEdges.length + 2 }, () => ({ n: 0, flips: 0 }));
    this.segments = setup.segments.map(() => new Map());
  }

  private indexOf(action: string): number {
    let i = this.actionIndex.get(action);
    if (i === undefined) {
      i = this.actions.length;
      this.actions.push(action);
      this.actionIndex.set(action, i);
      if (this.counts) {
        for (const row of this.counts) row.push(0);
        this.counts.push(this.actions.map(() => 0));
      }
    }
    return i;
  }

  /** Flips so far (a live canary's budget reads it at every decision; report() builds everything). */
  get flipCount(): number {
    return this.flips;
  }

  get meanAbsoluteScoreDifference(): number {
    return this.scored === 0 ? 0 : this.diffAbsSum / this.scored;
  }

  add(d: ComparedDecision): void {
    const { champion, candidate } = d;
    const from = champion.action ?? REFUSED;
    const to = candidate.action ?? REFUSED;
    const flipped = from !== to;
    this.decisions++;
    if (flipped) this.flips++;
    this.counts[this.indexOf(from)][this.indexOf(to)]++;

    const band = this.bands[bandIndex(this.setup.bandEdges, champion.score)];
    band.n++;
    if (flipped) band.flips++;
    this.setup.segments.forEach((s, i) => {
      const v = d.row[s.feature];
      const key = v === undefined || v === null ? '(missing)' : String(v);
      const tally = this.segments[i].get(key) ?? { n: 0, flips: 0 };
      tally.n++;
      if (flipped) tally.flips++;
      this.segments[i].set(key, tally);
    });

    if (champion.score !== null && candidate.score !== null && Number.isFinite(champion.score) && Number.isFinite(candidate.score)) {
      this.scored++;
      const diff = candidate.score - champion.score;
      if (diff === 0) this.equal++;
      else this.diffCounts[histogramBin(SCORE_DIFF_EDGES, diff)]++;
      this.diffSum += diff;
      this.diffAbsSum += Math.abs(diff);
      this.diffAbsMax = Math.max(this.diffAbsMax, Math.abs(diff));
    }

    if (!sameCodes(champion.reasons, candidate.reasons)) {
      this.reasonsChanged++;
      for (const code of candidate.reasons) if (!champion.reasons.includes(code)) this.code(code).gained++;
      for (const code of champion.reasons) if (!candidate.reasons.includes(code)) this.code(code).lost++;
    }

    if (champion.fallback !== null) this.championFallbacks++;
    if (candidate.fallback !== null) {
      this.candidateFallbacks++;
      const cause = candidate.fallback.slice(0, 80);
      if (this.causes.size < 50 || this.causes.has(cause)) this.causes.set(cause, (this.causes.get(cause) ?? 0) + 1);
    }

    if (d.candidateModelMs !== undefined) {
      this.latency[histogramBin(LATENCY_EDGES, d.candidateModelMs)]++;
      this.latencyN++;
      this.latencyMax = Math.max(this.latencyMax, d.candidateModelMs);
    }

    if (d.label !== undefined) this.addOutcome(d.label, champion, candidate);
  }

  private code(code: string): { gained: number; lost: number } {
    let c = this.codes.get(code);
    if (!c) this.codes.set(code, (c = { gained: 0, lost: 0 }));
    return c;
  }

  /**
   * An outcome for a decision pair: with `add` (replay, where the outcome is already known), or
   * later, once it arrives (a live shadow: the pair was added when decided). Pairs without both
   * scores are left out of the outcome figures.
   */
  addOutcome(label: 0 | 1, champion: DecidedSide, candidate: DecidedSide): void {
    if (champion.score === null || candidate.score === null) return;
    if (this.labelled === this.labels.length) {
      this.labels = grow(this.labels, new Uint8Array(this.labels.length * 2));
      this.championScores = grow(this.championScores, new Float64Array(this.labels.length));
      this.candidateScores = grow(this.candidateScores, new Float64Array(this.labels.length));
    }
    this.labels[this.labelled] = label;
    this.championScores[this.labelled] = champion.score!;
    this.candidateScores[this.labelled] = candidate.score!;
    this.labelled++;
    this.loss.champion += logLoss(label, champion.score!);
    this.loss.candidate += logLoss(label, candidate.score!);
    this.loss.brierChampion += (champion.score! - label) ** 2;
    this.loss.brierCandidate += (candidate.score! - label) ** 2;
    [champion, candidate].forEach((side, i) => {
      const action = side.action ?? REFUSED;
      const tally = this.badByAction[i].get(action) ?? { n: 0, flips: 0 };
      tally.n++;
      tally.flips += label; // here: positives
      this.badByAction[i].set(action, tally);
    });
  }

  report(): ComparisonReport {
    const n = this.decisions;
    const share = (k: number, of: number) => (of === 0 ? 0 : k / of);
    const actionRates: ComparisonReport['actionRates'] = {};
    this.actions.forEach((a, i) => {
      const champion = share(this.counts[i].reduce((s, c) => s + c, 0), n);
      const candidate = share(this.counts.reduce((s, row) => s + row[i], 0), n);
      actionRates[a] = { champion, candidate, change: candidate - champion };
    });
    const bandNames = bandLabels(this.setup.bandEdges);
    const bySegment: ComparisonReport['bySegment'] = {};
    this.setup.segments.forEach((s, i) => {
      const order = [...s.values, '(missing)'];
      bySegment[s.feature] = [...this.segments[i].entries()]
        .sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0]))
        .map(([value, t]) => ({ value, n: t.n, flips: t.flips, flipRate: share(t.flips, t.n) }));
    });
    const latencyQuantile = (q: number) => quantileOfHistogram(LATENCY_EDGES, this.latency, this.latencyN, q, this.latencyMax);
    return {
      decisions: n,
      flips: this.flips,
      flipRate: share(this.flips, n),
      matrix: { actions: [...this.actions], counts: this.counts.map((r) => [...r]), shares: this.counts.map((r) => r.map((c) => share(c, n))) },
      actionRates,
      byBand: this.bands.map((t, i) => ({ band: bandNames[i], n: t.n, flips: t.flips, flipRate: share(t.flips, t.n) })).filter((b) => b.n > 0),
      bySegment,
      scoreDifference: {
        n: this.scored,
        exactlyEqual: this.equal,
        mean: share(this.diffSum, this.scored),
        meanAbsolute: share(this.diffAbsSum, this.scored),
        maxAbsolute: this.diffAbsMax,
        histogram: this.diffCounts.map((count, i) => ({ from: i === 0 ? null : SCORE_DIFF_EDGES[i - 1], to: i === SCORE_DIFF_EDGES.length ? null : SCORE_DIFF_EDGES[i], count })),
      },
      reasons: {
        changed: this.reasonsChanged,
        changedRate: share(this.reasonsChanged, n),
        byCode: [...this.codes.entries()].map(([code, c]) => ({ code, ...c })).sort((a, b) => b.gained + b.lost - (a.gained + a.lost) || a.code.localeCompare(b.code)),
      },
      fallback: {
        champion: this.championFallbacks,
        candidate: this.candidateFallbacks,
        championRate: share(this.championFallbacks, n),
        candidateRate: share(this.candidateFallbacks, n),
        causes: Object.fromEntries(this.causes),
      },
      latencyMs: { n: this.latencyN, p50: latencyQuantile(0.5), p90: latencyQuantile(0.9), p99: latencyQuantile(0.99), max: this.latencyN ? this.latencyMax : null },
      outcomes: this.outcomeReport(),
    };
  }

  private outcomeReport(): OutcomeComparison | null {
    const m = this.labelled;
    if (m === 0) return null;
    const labels = this.labels.subarray(0, m);
    const positives = labels.reduce((s, l) => s + l, 0);
    const both = positives > 0 && positives < m;
    const result = both ? delong(labels, this.championScores.subarray(0, m), this.candidateScores.subarray(0, m)) : null;
    const perf = (i: 0 | 1, auc: number | null, loss: number, brier: number): Performance => ({
      auc,
      logLoss: loss / m,
      brier: brier / m,
      badRateByAction: Object.fromEntries([...this.badByAction[i].entries()].map(([a, t]) => [a, { n: t.n, positives: t.flips, rate: t.flips / t.n }])),
    });
    return {
      labelled: m,
      positives,
      champion: perf(0, result?.aucA ?? null, this.loss.champion, this.loss.brierChampion),
      candidate: perf(1, result?.aucB ?? null, this.loss.candidate, this.loss.brierCandidate),
      aucDifference: result,
    };
  }
}

function sameCodes(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function grow<T extends Uint8Array | Float64Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

/** As scikit-learn's log_loss: probabilities clipped to [eps, 1 - eps]. */
function logLoss(label: 0 | 1, p: number): number {
  const eps = 1e-15;
  const q = Math.min(Math.max(p, eps), 1 - eps);
  return -(label === 1 ? Math.log(q) : Math.log(1 - q));
}

/** Band of a score: 0 for no score, then 1 + the number of edges at or below it (`below` is strict, as in the policy). */
function bandIndex(edges: readonly number[], score: number | null): number {
  if (score === null || !Number.isFinite(score)) return 0;
  let i = 0;
  while (i < edges.length && score >= edges[i]) i++;
  return i + 1;
}

function bandLabels(edges: readonly number[]): string[] {
  const labels = ['(no score)'];
  for (let i = 0; i <= edges.length; i++) {
    if (i === 0) labels.push(`< ${edges[0] ?? '∞'}`);
    else if (i === edges.length) labels.push(`>= ${edges[i - 1]}`);
    else labels.push(`${edges[i - 1]} - ${edges[i]}`);
  }
  return labels;
}

/** Bin of a value: values in (edges[i-1], edges[i]] fall in bin i. */
function histogramBin(edges: readonly number[], v: number): number {
  let lo = 0;
  let hi = edges.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (v <= edges[mid]) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** A quantile read off a histogram: the upper edge of the bin holding it (10 bins a decade: within 26%). */
function quantileOfHistogram(edges: readonly number[], counts: readonly number[], n: number, q: number, max: number): number | null {
  if (n === 0) return null;
  const rank = Math.ceil(q * n);
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i];
    if (seen >= rank) return i < edges.length ? Math.min(edges[i], max) : max;
  }
  return max;
}
