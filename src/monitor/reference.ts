/**
 * The reference profile: what "normal" looked like, measured once on the training (or a
 * trusted) data set by `rtml profile` and stored in the bundle as `reference.json`. Live
 * windows are compared against it. Bin edges are fixed here, at reference quantiles, so
 * every window is binned the same way and windows can be merged by adding counts.
 */

import { readFile } from 'node:fs/promises';
import { z } from 'zod';

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
  /**
   * The model's attribution on the same rows: per feature, the mean absolute contribution to the
   * score's margin (exact contributions; see pipeline/explain.ts). Null when the model has no
   * exact contributions; absent in profiles written before rtml measured it.
   */
  contributions?: ContributionsReference | null;
}

export interface ContributionsReference {
  rows: number;
  /** By feature name, in the bundle's feature order. */
  meanAbs: Record<string, number>;
}

const numeric = z.object({
  kind: z.literal('numeric'),
  count: z.number().int().nonnegative(),
  missingRate: z.number().min(0).max(1),
  outOfRangeRate: z.number().min(0).max(1),
  edges: z.array(z.number()),
  frequencies: z.array(z.number().min(0)),
  quantiles: z.array(z.number()),
  min: z.number().nullable(),
  max: z.number().nullable(),
  mean: z.number().nullable(),
  std: z.number().nullable(),
});
const categorical = z.object({
  kind: z.literal('categorical'),
  count: z.number().int().nonnegative(),
  missingRate: z.number().min(0).max(1),
  frequencies: z.record(z.string(), z.number().min(0)),
});
const profileSchema = z.object({
  format: z.literal(REFERENCE_FORMAT),
  created: z.string(),
  bundle: z.object({ name: z.string(), version: z.string() }),
  data: z.object({ file: z.string(), rows: z.number(), rejected: z.number() }),
  features: z.record(z.string(), z.discriminatedUnion('kind', [numeric, categorical])),
  score: numeric.nullable(),
  decisions: z.record(z.string(), z.number()).nullable(),
  performance: z
    .object({ label: z.string(), positiveClass: z.string(), data: z.string(), rows: z.number(), positiveRate: z.number(), auc: z.number().nullable(), logLoss: z.number(), brier: z.number() })
    .nullable(),
  contributions: z
    .object({ rows: z.number().int().positive(), meanAbs: z.record(z.string(), z.number().nonnegative()) })
    .nullable()
    .optional(),
});

/** Reads and checks a reference profile; JSON has no NaN, so absent statistics come back as NaN. */
export async function readReference(file: string): Promise<ReferenceProfile> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: not a readable reference profile: ${(err as Error).message}`);
  }
  const parsed = profileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${file}: ${issue.path.join('.')}: ${issue.message}`);
  }
  const nan = (v: number | null) => v ?? NaN;
  const fixNumeric = (r: z.output<typeof numeric>): NumericReference => ({ ...r, min: nan(r.min), max: nan(r.max), mean: nan(r.mean), std: nan(r.std) });
  const p = parsed.data;
  return {
    ...p,
    format: REFERENCE_FORMAT,
    features: Object.fromEntries(Object.entries(p.features).map(([k, f]) => [k, f.kind === 'numeric' ? fixNumeric(f) : f])),
    score: p.score ? fixNumeric(p.score) : null,
    performance: p.performance ? { ...p.performance, auc: nan(p.performance.auc) } : null,
  };
}

/**
 * Why a reference profile cannot monitor a bundle, or null when it can: it was measured for
 * another service, or lacks features the bundle has (they would go unmonitored, silently).
 */
export function referenceMismatch(reference: ReferenceProfile, service: string, features: readonly string[]): string | null {
  if (reference.bundle.name !== service) return `it was profiled for service ${JSON.stringify(reference.bundle.name)}, not ${JSON.stringify(service)}`;
  const unprofiled = features.filter((name) => reference.features[name] === undefined);
  if (unprofiled.length > 0) return `it has no profile of ${unprofiled.join(', ')} (added to the bundle since it was measured?)`;
  const unattributed = reference.contributions ? features.filter((name) => reference.contributions!.meanAbs[name] === undefined) : [];
  if (unattributed.length > 0) return `its contributions miss ${unattributed.join(', ')} (added to the bundle since it was measured?)`;
  return null;
}
