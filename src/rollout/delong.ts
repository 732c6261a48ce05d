/**
 * DeLong's test for two correlated ROC AUCs (two scores of the same decisions), in the fast
 * midrank form of Sun & Xu (2014): AUCs, the covariance of their estimates, and a 95%
 * confidence interval for the difference. Checked against a numpy implementation and
 * scikit-learn's roc_auc_score in test/rollout-compare.test.ts.
 */

export interface DelongResult {
  aucA: number;
  aucB: number;
  /** aucB - aucA. */
  difference: number;
  /** Standard error of the difference. */
  standardError: number;
  /** 95% interval for the difference (normal approximation). */
  lower: number;
  upper: number;
  /** Two-sided p-value of "no difference". */
  p: number;
}

const Z95 = 1.959963984540054;

/** Midranks (1-based, ties averaged) of `values`. */
function midranks(values: Float64Array): Float64Array {
  const n = values.length;
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => values[a] - values[b]);
  const ranks = new Float64Array(n);
  let i = 0;
  while (i < n) {
    let j = i;
    while (j < n && values[order[j]] === values[order[i]]) j++;
    const rank = 0.5 * (i + j - 1) + 1;
    for (let k = i; k < j; k++) ranks[order[k]] = rank;
    i = j;
  }
  return ranks;
}

/** Per-decision structural components of one score's AUC: V10 over positives, V01 over negatives. */
function components(labels: Uint8Array, scores: Float64Array, m: number, n: number): { auc: number; v10: Float64Array; v01: Float64Array } {
  const x = new Float64Array(m);
  const y = new Float64Array(n);
  let i = 0;
  let j = 0;
  for (let k = 0; k < labels.length; k++) {
    if (labels[k] === 1) x[i++] = scores[k];
    else y[j++] = scores[k];
  }
  const z = new Float64Array(m + n);
  z.set(x);
  z.set(y, m);
  const tx = midranks(x);
  const ty = midranks(y);
  const tz = midranks(z);
  let sum = 0;
  const v10 = new Float64Array(m);
  const v01 = new Float64Array(n);
  for (let a = 0; a < m; a++) {
    sum += tz[a];
    v10[a] = (tz[a] - tx[a]) / n;
  }
  for (let b = 0; b < n; b++) v01[b] = 1 - (tz[m + b] - ty[b]) / m;
  return { auc: (sum - (m * (m + 1)) / 2) / (m * n), v10, v01 };
}

/** Sample covariance (n - 1), as numpy's cov. */
function covariance(a: Float64Array, b: Float64Array): number {
  const n = a.length;
  if (n < 2) return 0;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i];
    mb += b[i];
  }
  ma /= n;
  mb /= n;
  let s = 0;
  for (let i = 0; i < n; i++) s += (a[i] - ma) * (b[i] - mb);
  return s / (n - 1);
}

/** Standard normal CDF (Abramowitz & Stegun 7.1.26 via erf; |error| < 1.5e-7). */
function normalCdf(z: number): number {
  const t = 1 / (1 + (0.3275911 * Math.abs(z)) / Math.SQRT2);
  const poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  const erf = 1 - poly * Math.exp(-(z * z) / 2);
  return z >= 0 ? 0.5 * (1 + erf) : 0.5 * (1 - erf);
}

/** Labels 1 (positive) / 0; both classes must be present. */
export function delong(labels: Uint8Array, scoresA: Float64Array, scoresB: Float64Array): DelongResult {
  let m = 0;
  for (const l of labels) m += l;
  const n = labels.length - m;
  if (m === 0 || n === 0) throw new RangeError('DeLong needs both classes');
  const a = components(labels, scoresA, m, n);
  const b = components(labels, scoresB, m, n);
  const s10 = [covariance(a.v10, a.v10), covariance(a.v10, b.v10), covariance(b.v10, b.v10)];
  const s01 = [covariance(a.v01, a.v01), covariance(a.v01, b.v01), covariance(b.v01, b.v01)];
  const variance = s10[0] / m + s01[0] / n + (s10[2] / m + s01[2] / n) - 2 * (s10[1] / m + s01[1] / n);
  const standardError = Math.sqrt(Math.max(variance, 0));
  const difference = b.auc - a.auc;
  const p = standardError === 0 ? (difference === 0 ? 1 : 0) : 2 * (1 - normalCdf(Math.abs(difference) / standardError));
  return { aucA: a.auc, aucB: b.auc, difference, standardError, lower: difference - Z95 * standardError, upper: difference + Z95 * standardError, p };
}

/** ROC AUC of one score (ties count half), as scikit-learn's roc_auc_score; null with one class only. */
export function rocAuc(labels: Uint8Array, scores: Float64Array): number | null {
  let m = 0;
  for (const l of labels) m += l;
  const n = labels.length - m;
  return m === 0 || n === 0 ? null : components(labels, scores, m, n).auc;
}
