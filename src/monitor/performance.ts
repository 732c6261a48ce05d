/**
 * Model performance from (score, label) rows: realized once outcomes arrive, estimated
 * (CBPE: confidence-based performance estimation) before they do.
 *
 * Everything here is a pure function on arrays pulled from the decision log for one time
 * window: `scores[i]` is the model's probability of the positive class (p_bad in the credit
 * example) and `labels[i]` is 1 when the outcome was positive (the loan went bad), else 0.
 * Nothing is incremental; each metric is O(n) or O(n log n) (one typed-array sort), fine
 * for 10^6 rows.
 *
 * Realized metrics equal scikit-learn 1.2.1 on the same rows (checked to 1e-9 against
 * golden numbers made by test/fixtures/performance/make_golden.py):
 *   rocAuc       = roc_auc_score(labels, scores)                       (NaN with one class)
 *   logLoss      = log_loss(labels, probs, labels=[0, 1])              (eps = 2.22e-16, see below)
 *   brierScore   = brier_score_loss(labels, probs)
 *   precisionRecallAt = precision_score / recall_score of (scores >= t) (0 on zero division)
 *   calibration  = calibration_curve(labels, probs, n_bins, strategy='uniform')
 * Metrics that are undefined return NaN (no rows; ROC AUC with a single class) rather than
 * throwing; malformed input (lengths differ, a label not 0/1, a non-finite score, a
 * probability outside [0, 1]) throws a RangeError, as scikit-learn raises.
 */
import { chi2Sf } from './stats.ts';


// ------------------------------------------------------------------------------------------
// Types
// ------------------------------------------------------------------------------------------

/** Scores or probabilities: a number[] or a Float64Array. */
export type Scores = ArrayLike<number>;
/** Outcomes: 1 = positive (e.g. the loan went bad), 0 = negative. */
export type Labels = ArrayLike<number>;

/** Confusion counts and precision / recall of the prediction "score >= threshold". */
export interface PrecisionRecall {
  threshold: number;
  /** Rows with score >= threshold. */
  predictedPositives: number;
  truePositives: number;
  falsePositives: number;
  falseNegatives: number;
  /** TP / predicted positives; 0 when nothing is predicted positive (scikit-learn's zero_division). */
  precision: number;
  /** TP / actual positives; 0 when there are no positives (scikit-learn's zero_division). */
  recall: number;
}

/** One policy band: lower <= score < upper (null = unbounded), like the policy's `below` bounds. */
export interface BandStats {
  lower: number | null;
  upper: number | null;
  count: number;
  /** Positive outcomes in the band (realized), or their expected number (estimated). */
  positives: number;
  /** positives / count; NaN for an empty band. */
  positiveRate: number;
  /** Mean score in the band; NaN for an empty band. */
  meanScore: number;
}

export interface BandPerformance {
  /** For each bound t of the policy: precision / recall of "score >= t" as the positive prediction. */
  edges: PrecisionRecall[];
  /** bounds.length + 1 bands, lowest scores first. */
  bands: BandStats[];
}

/** A reliability curve with scikit-learn's uniform bins, only non-empty bins listed. */
export interface CalibrationCurve {
  nBins: number;
  /** nBins + 1 edges exactly as numpy.linspace(0, 1, nBins + 1) (0.30000000000000004 and all). */
  edges: number[];
  /** Index (0-based) of each non-empty bin. */
  bins: number[];
  /** Rows in each non-empty bin. */
  counts: number[];
  /** Observed positive rate per non-empty bin (scikit-learn's prob_true). */
  probTrue: number[];
  /** Mean predicted probability per non-empty bin (scikit-learn's prob_pred). */
  probPred: number[];
  /** Expected calibration error: sum over bins of (count / n) * |probTrue - probPred|; NaN without rows. */
  ece: number;
  n: number;
}

export interface RealizedPerformance {
  n: number;
  positives: number;
  positiveRate: number;
  auc: number;
  logLoss: number;
  brier: number;
  edges: PrecisionRecall[];
  bands: BandStats[];
  calibration: CalibrationCurve;
}

/** Expected confusion counts at "score >= threshold" when labels ~ Bernoulli(score). */
export interface ExpectedPrecisionRecall extends PrecisionRecall {
  /** Standard deviation of the realized precision around its expectation (0 with no predicted positives). */
  precisionSd: number;
}

export interface EstimatedPerformance {
  n: number;
  /** Sum of probabilities: the expected number of positives. */
  expectedPositives: number;
  /** Its standard deviation, sqrt(sum p(1 - p)). */
  expectedPositivesSd: number;
  expectedPositiveRate: number;
  /** Expected ROC AUC (pairs of distinct decisions, see estimatePerformance); NaN when undefined. */
  auc: number;
  /** Expected log loss (scikit-learn's clipping) and the standard deviation of the realized value. */
  logLoss: number;
  logLossSd: number;
  /** Expected Brier score, mean p(1 - p), and the standard deviation of the realized value. */
  brier: number;
  brierSd: number;
  edges: ExpectedPrecisionRecall[];
  bands: BandStats[];
}

export interface PerformanceOptions {
  /** Policy band bounds, strictly increasing (e.g. [0.045, 0.12]). Default: none. */
  bands?: readonly number[];
  /** Uniform calibration bins (realizedPerformance only). Default 10. */
  nBins?: number;
}

// ------------------------------------------------------------------------------------------
// Input checks
// ------------------------------------------------------------------------------------------

function checkLength(a: ArrayLike<number>, b: ArrayLike<number>): void {
  if (a.length !== b.length) throw new RangeError(`scores and labels differ in length: ${a.length} vs ${b.length}`);
}

function checkLabels(labels: Labels): number {
  let positives = 0;
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (y === 1) positives++;
    else if (y !== 0) throw new RangeError(`label ${i} is ${String(y)}: labels must be 0 or 1`);
  }
  return positives;
}

function checkScores(scores: Scores): void {
  for (let i = 0; i < scores.length; i++) {
    if (!Number.isFinite(scores[i])) throw new RangeError(`score ${i} is ${String(scores[i])}: scores must be finite`);
  }
}

function checkProbabilities(probs: Scores): void {
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i];
    if (!(p >= 0 && p <= 1)) throw new RangeError(`probability ${i} is ${String(p)}: must be in [0, 1]`);
  }
}

function checkBounds(bounds: readonly number[]): void {
  for (let i = 0; i < bounds.length; i++) {
    if (!Number.isFinite(bounds[i])) throw new RangeError(`band bound ${i} is ${String(bounds[i])}: must be finite`);
    if (i > 0 && !(bounds[i] > bounds[i - 1])) throw new RangeError('band bounds must be strictly increasing');
  }
}

/** Neumaier-compensated sum accumulator. */
class Sum {
  private s = 0;
  private c = 0;
  add(x: number): void {
    const t = this.s + x;
    if (Math.abs(this.s) >= Math.abs(x)) this.c += this.s - t + x;
    else this.c += x - t + this.s;
    this.s = t;
  }
  get value(): number {
    return this.s + this.c;
  }
}

// ------------------------------------------------------------------------------------------
// Realized metrics
// ------------------------------------------------------------------------------------------

/**
 * ROC AUC = roc_auc_score. Computed as the Mann–Whitney statistic: over all (positive,
 * negative) pairs, 1 when the positive scores higher, 1/2 on a tie (the midrank rule, equal
 * to scikit-learn's trapezoid under the ROC curve), divided by P·N. Positives and negatives
 * are sorted separately (native typed-array sorts) and merged: O(n log n).
 * Returns NaN when all labels are equal (scikit-learn raises "Only one class present in
 * y_true. ROC AUC score is not defined in that case.") or there are no rows.
 */
export function rocAuc(scores: Scores, labels: Labels): number {
  checkLength(scores, labels);
  checkScores(scores);
  const P = checkLabels(labels);
  const N = labels.length - P;
  if (P === 0 || N === 0) return NaN;
  const pos = new Float64Array(P);
  const neg = new Float64Array(N);
  for (let i = 0, a = 0, b = 0; i < labels.length; i++) {
    if (labels[i] === 1) pos[a++] = scores[i];
    else neg[b++] = scores[i];
  }
  pos.sort();
  neg.sort();
  // Each term is an integer or a half-integer, so the sum is exact below 2^52.
  let wins = 0;
  let below = 0; // negatives strictly below the current positive score
  let upTo = 0; // negatives at or below it
  for (let k = 0; k < P; k++) {
    const v = pos[k];
    while (below < N && neg[below] < v) below++;
    if (upTo < below) upTo = below;
    while (upTo < N && neg[upTo] <= v) upTo++;
    wins += below + 0.5 * (upTo - below);
  }
  return wins / (P * N);
}

/** The eps of scikit-learn 1.2's log_loss: eps="auto" = np.finfo(float64).eps (1.1 and earlier: 1e-15). */
export const LOG_LOSS_EPS = 2.220446049250313e-16;

/** Per-row log losses of scikit-learn 1.2: clip p to [eps, 1 - eps], renormalize [1 - p, p], -log. */
function rowLogLosses(p: number): [loss1: number, loss0: number] {
  const q1 = p < LOG_LOSS_EPS ? LOG_LOSS_EPS : p > 1 - LOG_LOSS_EPS ? 1 - LOG_LOSS_EPS : p;
  const q0 = 1 - q1;
  const z = q0 + q1;
  return [-Math.log(q1 / z), -Math.log(q0 / z)];
}

/**
 * Mean log loss = sklearn.metrics.log_loss(labels, probs, labels=[0, 1]) with 1.2.1's
 * default eps="auto": probabilities are clipped to [2.22e-16, 1 - 2.22e-16] (the machine
 * epsilon of float64, not the 1e-15 of scikit-learn <= 1.1), so a confident wrong
 * prediction (p = 0, label 1) costs -ln(2.22e-16) = 36.04, and a perfect one 2.2e-16.
 * Defined with a single class (labels=[0, 1] is passed); NaN without rows.
 */
export function logLoss(probs: Scores, labels: Labels): number {
  checkLength(probs, labels);
  checkProbabilities(probs);
  checkLabels(labels);
  if (probs.length === 0) return NaN;
  const sum = new Sum();
  for (let i = 0; i < probs.length; i++) {
    const [l1, l0] = rowLogLosses(probs[i]);
    sum.add(labels[i] === 1 ? l1 : l0);
  }
  return sum.value / probs.length;
}

/** Brier score = sklearn.metrics.brier_score_loss: mean (label - p)^2. NaN without rows. */
export function brierScore(probs: Scores, labels: Labels): number {
  checkLength(probs, labels);
  checkProbabilities(probs);
  checkLabels(labels);
  if (probs.length === 0) return NaN;
  const sum = new Sum();
  for (let i = 0; i < probs.length; i++) {
    const d = labels[i] - probs[i];
    sum.add(d * d);
  }
  return sum.value / probs.length;
}

function confusion(threshold: number, predicted: number, tp: number, positives: number): PrecisionRecall {
  return {
    threshold,
    predictedPositives: predicted,
    truePositives: tp,
    falsePositives: predicted - tp,
    falseNegatives: positives - tp,
    precision: predicted > 0 ? tp / predicted : 0,
    recall: positives > 0 ? tp / positives : 0,
  };
}

/**
 * Precision and recall of the prediction "score >= threshold" = precision_score /
 * recall_score of scikit-learn on (scores >= threshold). Zero division gives 0, as
 * scikit-learn's default zero_division="warn" does (the counts tell the cases apart).
 */
export function precisionRecallAt(scores: Scores, labels: Labels, threshold: number): PrecisionRecall {
  checkLength(scores, labels);
  checkScores(scores);
  const positives = checkLabels(labels);
  if (Number.isNaN(threshold)) throw new RangeError('threshold is NaN');
  let predicted = 0;
  let tp = 0;
  for (let i = 0; i < scores.length; i++) {
    if (scores[i] >= threshold) {
      predicted++;
      if (labels[i] === 1) tp++;
    }
  }
  return confusion(threshold, predicted, tp, positives);
}

/** Band of a score: the number of bounds <= score (policy bands: "below" is strict). */
function bandOf(bounds: readonly number[], s: number): number {
  let b = 0;
  while (b < bounds.length && s >= bounds[b]) b++;
  return b;
}

function emptyBands(bounds: readonly number[]): BandStats[] {
  const bands: BandStats[] = [];
  for (let b = 0; b <= bounds.length; b++) {
    bands.push({ lower: b > 0 ? bounds[b - 1] : null, upper: b < bounds.length ? bounds[b] : null, count: 0, positives: 0, positiveRate: NaN, meanScore: NaN });
  }
  return bands;
}

/**
 * Per policy band (bounds [0.045, 0.12] → score < 0.045, 0.045 <= score < 0.12,
 * score >= 0.12): counts, positives and the observed positive rate; and for each bound t,
 * precision / recall of "score >= t" as the positive prediction (= precisionRecallAt).
 */
export function bandPerformance(scores: Scores, labels: Labels, bounds: readonly number[]): BandPerformance {
  checkLength(scores, labels);
  checkScores(scores);
  const positives = checkLabels(labels);
  checkBounds(bounds);
  const k = bounds.length + 1;
  const count = new Float64Array(k);
  const pos = new Float64Array(k);
  const scoreSum = Array.from({ length: k }, () => new Sum());
  for (let i = 0; i < scores.length; i++) {
    const b = bandOf(bounds, scores[i]);
    count[b]++;
    if (labels[i] === 1) pos[b]++;
    scoreSum[b].add(scores[i]);
  }
  const bands = emptyBands(bounds);
  for (let b = 0; b < k; b++) {
    bands[b].count = count[b];
    bands[b].positives = pos[b];
    if (count[b] > 0) {
      bands[b].positiveRate = pos[b] / count[b];
      bands[b].meanScore = scoreSum[b].value / count[b];
    }
  }
  const edges: PrecisionRecall[] = [];
  for (let e = 0; e < bounds.length; e++) {
    let predicted = 0;
    let tp = 0;
    for (let b = e + 1; b < k; b++) {
      predicted += count[b];
      tp += pos[b];
    }
    edges.push(confusion(bounds[e], predicted, tp, positives));
  }
  return { edges, bands };
}

/** numpy.linspace(0, 1, nBins + 1): i * (1 / nBins), the last edge exactly 1. */
function uniformEdges(nBins: number): number[] {
  const step = 1 / nBins;
  const edges: number[] = [];
  for (let i = 0; i < nBins; i++) edges.push(i * step);
  edges.push(1);
  return edges;
}

/**
 * scikit-learn's bin: np.searchsorted(edges[1:-1], p) (side 'left'), i.e. the number of
 * interior edges strictly below p. A probability exactly on an edge goes to the LOWER bin
 * (0.1 → bin 0, 0.30000000000000004 → bin 2 but 0.3 → bin 2 too since 0.3 < edge 3).
 */
function uniformBin(edges: readonly number[], nBins: number, p: number): number {
  let b = Math.floor(p * nBins);
  if (b < 0) b = 0;
  if (b > nBins - 1) b = nBins - 1;
  while (b > 0 && edges[b] >= p) b--; // interior edge b-1 is edges[b]
  while (b < nBins - 1 && edges[b + 1] < p) b++;
  return b;
}

/**
 * Reliability curve = sklearn.calibration.calibration_curve(labels, probs, n_bins,
 * strategy='uniform'): prob_true and prob_pred of the non-empty bins, with scikit-learn's
 * exact bin assignment (numpy.linspace edges, searchsorted left), plus the bin counts and
 * the expected calibration error ECE = Σ_b (n_b / n) · |prob_true_b − prob_pred_b|.
 */
export function calibration(probs: Scores, labels: Labels, nBins = 10): CalibrationCurve {
  checkLength(probs, labels);
  checkProbabilities(probs);
  checkLabels(labels);
  if (!Number.isInteger(nBins) || nBins < 1) throw new RangeError(`nBins must be a positive integer, got ${nBins}`);
  const edges = uniformEdges(nBins);
  const count = new Float64Array(nBins);
  const pos = new Float64Array(nBins);
  const sum = new Float64Array(nBins); // plain running sums, in input order, like np.bincount
  for (let i = 0; i < probs.length; i++) {
    const b = uniformBin(edges, nBins, probs[i]);
    count[b]++;
    pos[b] += labels[i];
    sum[b] += probs[i];
  }
  const out: CalibrationCurve = { nBins, edges, bins: [], counts: [], probTrue: [], probPred: [], ece: NaN, n: probs.length };
  let ece = 0;
  for (let b = 0; b < nBins; b++) {
    if (count[b] === 0) continue;
    const t = pos[b] / count[b];
    const p = sum[b] / count[b];
    out.bins.push(b);
    out.counts.push(count[b]);
    out.probTrue.push(t);
    out.probPred.push(p);
    ece += (count[b] / probs.length) * Math.abs(t - p);
  }
  if (probs.length > 0) out.ece = ece;
  return out;
}

/**
 * Share of the decisions in a window that have an outcome (label completeness): how much
 * of the window the realized metrics describe. NaN for a window without decisions.
 */
export function labelCompleteness(decisions: number, withOutcome: number): number {
  if (!Number.isInteger(decisions) || decisions < 0) throw new RangeError(`decisions must be a non-negative integer, got ${decisions}`);
  if (!Number.isInteger(withOutcome) || withOutcome < 0 || withOutcome > decisions) {
    throw new RangeError(`withOutcome must be an integer in [0, decisions], got ${withOutcome}`);
  }
  return decisions === 0 ? NaN : withOutcome / decisions;
}

/** All realized metrics of one window at once. */
export function realizedPerformance(scores: Scores, labels: Labels, options: PerformanceOptions = {}): RealizedPerformance {
  const bounds = options.bands ?? [];
  const n = scores.length;
  checkLength(scores, labels);
  const positives = checkLabels(labels);
  const { edges, bands } = bandPerformance(scores, labels, bounds);
  return {
    n,
    positives,
    positiveRate: n > 0 ? positives / n : NaN,
    auc: rocAuc(scores, labels),
    logLoss: logLoss(scores, labels),
    brier: brierScore(scores, labels),
    edges,
    bands,
    calibration: calibration(scores, labels, options.nBins ?? 10),
  };
}

// ------------------------------------------------------------------------------------------
// Estimated performance before labels arrive (CBPE)
// ------------------------------------------------------------------------------------------

/**
 * Expected performance of a window whose outcomes are not known yet (NannyML's CBPE idea).
 *
 * Assumption: the model is calibrated and nothing but the inputs changed (no concept
 * drift), so decision i is positive with probability p_i, independently. Check the first
 * half with calibrationCheck on a labeled window; the second cannot be checked before the
 * labels arrive. With y_i ~ Bernoulli(p_i):
 *
 *   expected positives   E[P] = Σ p_i,  sd = sqrt(Σ p_i (1 − p_i))
 *   at a band edge t, S = {i : p_i >= t} (the predicted positives, |S| fixed):
 *     E[TP] = Σ_S p_i,  E[FP] = Σ_S (1 − p_i),  E[FN] = Σ_{not S} p_i
 *     precision = E[TP] / |S|           exact expectation (|S| is not random);
 *                                       sd = sqrt(Σ_S p_i (1 − p_i)) / |S|
 *     recall    = E[TP] / E[P]          ratio of expectations (recall = TP / P, P random)
 *   Brier     E[(y − p)^2] = p (1 − p)  → mean p_i (1 − p_i), exact;
 *             sd = sqrt(Σ (1 − 2 p_i)^2 p_i (1 − p_i)) / n
 *   log loss  E = mean [p_i l1_i + (1 − p_i) l0_i] with l1 = −ln q, l0 = −ln(1 − q),
 *             q = p clipped as scikit-learn does, exact; sd = sqrt(Σ p_i(1−p_i)(l1_i − l0_i)^2) / n
 *   ROC AUC   realized AUC = Σ_{i≠j} y_i (1 − y_j) K_ij / (P·N), K_ij = 1 if p_i > p_j,
 *             1/2 if equal, 0 otherwise; and P·N = Σ_{i≠j} y_i (1 − y_j). The estimate is the
 *             ratio of expectations
 *               AUC ≈ Σ_{i≠j} p_i (1 − p_j) K_ij / (Σp · Σ(1−p) − Σ p_i (1 − p_i)).
 *             This is the area under the expected ROC curve (sweep every cut-off, expected
 *             TPR(t) = Σ_{p>=t} p / Σ p, expected FPR(t) = Σ_{p>=t} (1−p) / Σ (1−p),
 *             trapezoids: the CBPE recipe) with the impossible self-pairs i = j removed
 *             (the plain sweep counts each decision as half a pair with itself, which
 *             pulls the estimate toward 0.5 by O(1/n)). Computed in O(n log n): sort the
 *             probabilities, walk tie groups upward with the running Σ(1 − p) below.
 *             NaN with fewer than 2 decisions or when no pair can be mixed (all p in {0, 1}
 *             and of one value). Ratio estimators (AUC, recall) have an O(1/n) bias.
 * Validated by simulation in test/monitor-performance.test.ts and make_golden.py: with
 * labels drawn from the credit model's own probabilities the estimates match the mean
 * realized metrics within sampling error.
 */
export function estimatePerformance(probs: Scores, options: Pick<PerformanceOptions, 'bands'> = {}): EstimatedPerformance {
  checkProbabilities(probs);
  const bounds = options.bands ?? [];
  checkBounds(bounds);
  const n = probs.length;
  const k = bounds.length + 1;
  const count = new Float64Array(k);
  const bandP = Array.from({ length: k }, () => new Sum());
  const bandQ = Array.from({ length: k }, () => new Sum());
  const bandPQ = Array.from({ length: k }, () => new Sum());
  const sumP = new Sum();
  const sumQ = new Sum();
  const sumPQ = new Sum();
  const ll = new Sum();
  const llVar = new Sum();
  const brVar = new Sum();
  for (let i = 0; i < n; i++) {
    const p = probs[i];
    const q = 1 - p;
    const pq = p * q;
    const b = bandOf(bounds, p);
    count[b]++;
    bandP[b].add(p);
    bandQ[b].add(q);
    bandPQ[b].add(pq);
    sumP.add(p);
    sumQ.add(q);
    sumPQ.add(pq);
    const [l1, l0] = rowLogLosses(p);
    ll.add(p * l1 + q * l0);
    llVar.add(pq * (l1 - l0) * (l1 - l0));
    brVar.add((1 - 2 * p) * (1 - 2 * p) * pq);
  }
  const P = sumP.value;
  const bands = emptyBands(bounds);
  for (let b = 0; b < k; b++) {
    bands[b].count = count[b];
    bands[b].positives = bandP[b].value;
    if (count[b] > 0) {
      bands[b].positiveRate = bandP[b].value / count[b];
      bands[b].meanScore = bandP[b].value / count[b];
    }
  }
  const edges: ExpectedPrecisionRecall[] = [];
  for (let e = 0; e < bounds.length; e++) {
    let predicted = 0;
    const tp = new Sum();
    const fp = new Sum();
    const fn = new Sum();
    const varTp = new Sum();
    for (let b = 0; b < k; b++) {
      if (b > e) {
        predicted += count[b];
        tp.add(bandP[b].value);
        fp.add(bandQ[b].value);
        varTp.add(bandPQ[b].value);
      } else fn.add(bandP[b].value);
    }
    edges.push({
      threshold: bounds[e],
      predictedPositives: predicted,
      truePositives: tp.value,
      falsePositives: fp.value,
      falseNegatives: fn.value,
      precision: predicted > 0 ? tp.value / predicted : 0,
      recall: P > 0 ? tp.value / P : 0,
      precisionSd: predicted > 0 ? Math.sqrt(varTp.value) / predicted : 0,
    });
  }
  return {
    n,
    expectedPositives: P,
    expectedPositivesSd: Math.sqrt(sumPQ.value),
    expectedPositiveRate: n > 0 ? P / n : NaN,
    auc: expectedAuc(probs, sumP.value, sumQ.value, sumPQ.value),
    logLoss: n > 0 ? ll.value / n : NaN,
    logLossSd: n > 0 ? Math.sqrt(llVar.value) / n : NaN,
    brier: n > 0 ? sumPQ.value / n : NaN,
    brierSd: n > 0 ? Math.sqrt(brVar.value) / n : NaN,
    edges,
    bands,
  };
}

function expectedAuc(probs: Scores, sumP: number, sumQ: number, sumPQ: number): number {
  const n = probs.length;
  if (n < 2) return NaN;
  const den = sumP * sumQ - sumPQ;
  if (!(den > 0)) return NaN;
  const sorted = Float64Array.from(probs);
  sorted.sort();
  const num = new Sum();
  let qBelow = 0; // Σ (1 − p) over strictly lower probabilities
  for (let i = 0; i < n; ) {
    const v = sorted[i];
    let j = i + 1;
    while (j < n && sorted[j] === v) j++;
    const c = j - i;
    const a = c * v; // Σ p in the tie group
    const q = c * (1 - v); // Σ (1 − p) in the tie group
    num.add(a * qBelow + 0.5 * a * q);
    qBelow += q;
    i = j;
  }
  num.add(-0.5 * sumPQ); // remove self-pairs: each contributed p_i (1 − p_i) / 2
  return num.value / den;
}

// ------------------------------------------------------------------------------------------
// Is the model calibrated enough for the estimate to be valid?
// ------------------------------------------------------------------------------------------

export interface CalibrationCheckOptions {
  /** Risk groups of the Hosmer–Lemeshow test (equal counts after a stable sort by probability). Default 10. */
  groups?: number;
  /** Largest acceptable ECE (uniform 10 bins, as `calibration`), absolute. Default 0.02. */
  maxEce?: number;
  /** Significance level of the Hosmer–Lemeshow test. Default 0.01. */
  alpha?: number;
  /** A significant HL test fails the check only when ECE > maxRelativeEce × observed positive rate. Default 0.1. */
  maxRelativeEce?: number;
  /** Fewer labeled rows, positives or negatives than these: 'insufficient_data'. Defaults 200, 10, 10. */
  minLabeled?: number;
  minPositives?: number;
  minNegatives?: number;
}

export interface HosmerLemeshow {
  statistic: number;
  /** Degrees of freedom: the number of groups (the reference is out-of-sample; g − 2 is for the fitting sample). */
  df: number;
  pValue: number;
  groups: { count: number; observed: number; expected: number }[];
}

export type CalibrationStatus = 'calibrated' | 'not_calibrated' | 'insufficient_data';

export interface CalibrationCheck {
  status: CalibrationStatus;
  /** True only when status is 'calibrated': estimatePerformance may be trusted. */
  valid: boolean;
  /** Human-readable reason, e.g. "estimate not valid: model not calibrated (ECE 0.031 > 0.02)". */
  reason: string;
  n: number;
  positives: number;
  expectedPositives: number;
  observedRate: number;
  meanPredicted: number;
  ece: number;
  /** ece / observedRate. */
  relativeEce: number;
  hosmerLemeshow: HosmerLemeshow;
  rule: Required<CalibrationCheckOptions>;
}

const CHECK_DEFAULTS: Required<CalibrationCheckOptions> = {
  groups: 10,
  maxEce: 0.02,
  alpha: 0.01,
  maxRelativeEce: 0.1,
  minLabeled: 200,
  minPositives: 10,
  minNegatives: 10,
};

/**
 * Hosmer–Lemeshow goodness of fit: sort by probability (stable), split into `groups`
 * equal-count groups (numpy.array_split sizes: the first n mod g groups one larger), and
 * sum (O_g − E_g)^2 / (E_g (1 − E_g / n_g)); p-value from the chi-square distribution with
 * g degrees of freedom (g − 2 applies to the sample the model was fitted on).
 */
export function hosmerLemeshow(probs: Scores, labels: Labels, groups = 10): HosmerLemeshow {
  checkLength(probs, labels);
  checkProbabilities(probs);
  checkLabels(labels);
  if (!Number.isInteger(groups) || groups < 1) throw new RangeError(`groups must be a positive integer, got ${groups}`);
  const n = probs.length;
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => probs[a] - probs[b] || a - b);
  const base = Math.floor(n / groups);
  const extra = n % groups;
  const out: HosmerLemeshow['groups'] = [];
  let statistic = 0;
  for (let g = 0, start = 0; g < groups; g++) {
    const size = base + (g < extra ? 1 : 0);
    if (size === 0) continue;
    let e = 0;
    let o = 0;
    for (let i = start; i < start + size; i++) {
      e += probs[order[i]];
      o += labels[order[i]];
    }
    start += size;
    const d = e * (1 - e / size);
    statistic += d > 0 ? ((o - e) * (o - e)) / d : o === e ? 0 : Infinity;
    out.push({ count: size, observed: o, expected: e });
  }
  const df = out.length;
  return { statistic, df, pValue: df > 0 ? chiSquareSf(statistic, df) : NaN, groups: out };
}

/**
 * Whether a labeled window (the reference profile's rows, or an earlier window whose
 * outcomes have arrived) shows the model calibrated enough for estimatePerformance.
 *
 * Rule (each threshold an option):
 *   1. insufficient_data  when fewer than 200 labeled rows, 10 positives or 10 negatives.
 *   2. not_calibrated     when ECE > 0.02 (a large miscalibration, significant or not), or
 *                         when the Hosmer–Lemeshow test rejects (p < 0.01) AND the
 *                         miscalibration is material: ECE > 0.1 × the observed positive
 *                         rate. A p-value alone is not enough (on a large window tiny,
 *                         harmless deviations become significant), and an absolute ECE alone
 *                         is too lax for a rare outcome (ECE 0.015 at a 5% base rate is a
 *                         30% error in expected positives).
 *   3. calibrated         otherwise.
 * On the credit model: held-out test.csv (1,972 loans) ECE 0.0045, HL p 0.43 → calibrated;
 * the same model on the full data set including its training rows: ECE 0.012 (under 0.02)
 * but HL p 1.6e-8 and ECE 23% of the base rate → not_calibrated.
 */
export function calibrationCheck(reference: { probs: Scores; labels: Labels }, options: CalibrationCheckOptions = {}): CalibrationCheck {
  const rule: Required<CalibrationCheckOptions> = { ...CHECK_DEFAULTS };
  for (const [key, value] of Object.entries(options) as [keyof CalibrationCheckOptions, number | undefined][]) {
    if (value !== undefined) rule[key] = value;
  }
  const { probs, labels } = reference;
  const curve = calibration(probs, labels, 10);
  const hl = hosmerLemeshow(probs, labels, rule.groups);
  const n = probs.length;
  let positives = 0;
  const expected = new Sum();
  for (let i = 0; i < n; i++) {
    positives += labels[i];
    expected.add(probs[i]);
  }
  const observedRate = n > 0 ? positives / n : NaN;
  const ece = curve.ece;
  const relativeEce = ece / observedRate;
  const f = (x: number, d = 4) => (Number.isFinite(x) ? Number(x.toPrecision(d)).toString() : String(x));
  let status: CalibrationStatus;
  let reason: string;
  if (n < rule.minLabeled || positives < rule.minPositives || n - positives < rule.minNegatives) {
    status = 'insufficient_data';
    reason =
      `estimate not validated: too few labeled outcomes to check calibration (${n} rows, ${positives} positives, ${n - positives} negatives; ` +
      `need ${rule.minLabeled}, ${rule.minPositives}, ${rule.minNegatives})`;
  } else if (ece > rule.maxEce) {
    status = 'not_calibrated';
    reason = `estimate not valid: model not calibrated (ECE ${f(ece)} > ${rule.maxEce})`;
  } else if (hl.pValue < rule.alpha && ece > rule.maxRelativeEce * observedRate) {
    status = 'not_calibrated';
    reason =
      `estimate not valid: model not calibrated (Hosmer-Lemeshow p ${f(hl.pValue, 3)} < ${rule.alpha} ` +
      `and ECE ${f(ece)} is ${f(100 * relativeEce, 3)}% of the positive rate ${f(observedRate)})`;
  } else {
    status = 'calibrated';
    reason = `calibrated: ECE ${f(ece)}, Hosmer-Lemeshow p ${f(hl.pValue, 3)}, expected positives ${f(expected.value, 5)} vs observed ${positives}`;
  }
  return {
    status,
    valid: status === 'calibrated',
    reason,
    n,
    positives,
    expectedPositives: expected.value,
    observedRate,
    meanPredicted: n > 0 ? expected.value / n : NaN,
    ece,
    relativeEce,
    hosmerLemeshow: hl,
    rule,
  };
}

/** P(X > x) for X ~ chi-square with df degrees of freedom (scipy.stats.chi2.sf). */
export function chiSquareSf(x: number, df: number): number {
  if (!(df > 0)) throw new RangeError(`df must be positive, got ${df}`);
  if (Number.isNaN(x)) return NaN;
  // One implementation of the incomplete gamma for the whole project: stats.ts, checked against SciPy.
  return chi2Sf(x, df);
}
