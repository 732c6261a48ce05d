/**
 * The reference profile: what "normal" looked like, measured once on the training (or a
 * trusted) data set by `rtml profile` and stored in the bundle as `reference.json`. Live
 * windows are compared against it. Bin edges are fixed here, at reference quantiles, so
 * every window is binned the same way and windows can be merged by adding counts.
 */

export const REFERENCE_FORMAT = 'rtml-reference/1';
export const REFERENCE_FILE = 'reference.json';

export interface NumericReference {
  kind: 'numeric';
  /** Non-missing reference values. */
  count: number;
  /** Share of reference rows where the value was missing. */
  missingRate: number;
  /** Share of non-missing values outside the schema's [min, max] (0 without bounds). */
  outOfRangeRate: number;
  /**
   * Interior bin edges at reference quantiles, strictly increasing: bin 0 is x < edges[0],
   * bin i is edges[i-1] <= x < edges[i], the last bin is x >= edges[k-2]; k = edges.length + 1.
   */
  edges: number[];
  /** Share of non-missing reference values in each bin (sums to 1). */
  frequencies: number[];
  /** Evenly spaced reference quantiles (up to 1,001 points, min to max): the ECDF for KS tests. */
  quantiles: number[];
  min: number;
  max: number;
  mean: number;
  std: number;
}

export interface CategoricalReference {
  kind: 'categorical';
  count: number;
  missingRate: number;
  /** Share of non-missing values per category, for every declared category (zeros included). */
  frequencies: Record<string, number>;
}

export type FeatureReference = NumericReference | CategoricalReference;

export interface ReferenceProfile {
  format: typeof REFERENCE_FORMAT;
  created: string;
  bundle: { name: string; version: string };
  data: { file: string; rows: number; rejected: number };
  /** By feature name, in the bundle's feature order. */
  features: Record<string, FeatureReference>;
  /** The model's score on the same rows; null for a rules-only bundle. */
  score: NumericReference | null;
  /** Share of each action the policy produced on the same rows; null without a policy. */
  decisions: Record<string, number> | null;
  /** Realized performance on labelled rows (held-out ones when given), the baseline for decay. */
  performance: { label: string; positiveClass: string; data: string; rows: number; positiveRate: number; auc: number; logLoss: number; brier: number } | null;
}
