/**
 * The `monitoring` section of rtml.yaml: windows, thresholds (per feature where needed) and
 * what a critical alert does. Defaults follow ../shared/notes/monitoring.md: PSI 0.1 / 0.25,
 * Jensen-Shannon 0.1, tests at p < 0.05 gated by an effect size so large windows do not
 * alarm on trivial shifts.
 */
import { z } from 'zod';

const pair = (warning: number, critical: number) =>
  z
    .object({ warning: z.number().nonnegative(), critical: z.number().nonnegative() })
    .strict()
    .refine((t) => t.warning <= t.critical, { message: 'warning must not exceed critical' })
    .default({ warning, critical });

const gatedTest = (p: number, warning: number, critical: number) =>
  z
    .object({ p: z.number().gt(0).lt(1), warning: z.number().nonnegative(), critical: z.number().nonnegative() })
    .strict()
    .default({ p, warning, critical });

export const driftThresholdsSchema = z
  .object({
    /** Population stability index over the reference bins. */
    psi: pair(0.1, 0.25),
    /** Jensen-Shannon distance (base 2) over the reference bins. */
    js: pair(0.1, 0.2),
    /**
     * A PSI or JS value counts only when the column's own test (KS on raw values, else
     * chi-square on the bins) is significant at this level: sampling noise in a small window
     * or a many-valued category is not drift. Stricter than the usual 0.05 because every
     * feature is tested at every evaluation.
     */
    significance: z.number().gt(0).lt(1).default(0.001),
    /** Two-sample KS on the count window's raw values: p below `p` and D at least the effect size. */
    ks: gatedTest(0.001, 0.1, 0.2),
    /** Chi-square goodness of fit of category counts: p below `p` and Cramér's V at least the effect size. */
    chi2: gatedTest(0.001, 0.1, 0.2),
    /** Rise of the missing rate over the reference's (absolute, 0.1 = ten points). */
    missing_increase: pair(0.05, 0.25),
  })
  .strict();

const overridePair = z.object({ warning: z.number().nonnegative(), critical: z.number().nonnegative() }).strict();
const overrideGated = z.object({ p: z.number().gt(0).lt(1), warning: z.number().nonnegative(), critical: z.number().nonnegative() }).strict();
/** Overrides carry no defaults of their own, so they change only what they name. */
const featureOverridesSchema = z
  .object({ psi: overridePair, js: overridePair, significance: z.number().gt(0).lt(1), ks: overrideGated, chi2: overrideGated, missing_increase: overridePair })
  .partial()
  .strict();

export const monitoringSchema = z
  .object({
    /** The reference profile written by `rtml profile`. */
    reference: z.string().min(1).default('reference.json'),
    /** `fallback`: a critical alert switches decisions to the fallback policy (safe mode) until it clears. */
    on_critical: z.enum(['alert', 'fallback']).default('alert'),
    /** Safe mode releases once no critical alert has been active for this long (hysteresis). */
    release_after_s: z.number().nonnegative().default(60),
    /** The count window: the last N decisions. */
    count_window: z.number().int().min(50).max(100_000).default(1000),
    /** Evaluate the monitors every N decisions (and every few seconds regardless). */
    evaluate_every: z.number().int().min(1).max(100_000).default(50),
    /** No drift verdict on fewer observations than this. */
    min_observations: z.number().int().min(1).default(500),
    /** A resolved warning does not fire again for this long. */
    cooldown_s: z.number().nonnegative().default(300),
    drift: driftThresholdsSchema.default(driftThresholdsSchema.parse({})),
    /** Per-feature drift thresholds, overriding `drift` test by test. */
    features: z.record(z.string(), featureOverridesSchema).default({}),
    /**
     * Attribution: the share of each feature in the model's mean absolute contribution, against
     * the reference's (needs a model with exact contributions and a profile that recorded them).
     * A feature that suddenly drives the score is a signal even when its own values look normal.
     */
    contributions: z
      .object({
        /** Explain one in this many decisions the model scores, after answering (1: every one). */
        sample_every: z.number().int().min(1).max(100_000).default(10),
        /** No verdict on fewer explained decisions than this in the window. */
        min_observations: z.number().int().min(1).default(100),
        /** Rise of a feature's share of the total attribution over the reference's (absolute, 0.1 = ten points). */
        share_increase: pair(0.1, 0.2),
      })
      .strict()
      .default({ sample_every: 10, min_observations: 100, share_increase: { warning: 0.1, critical: 0.2 } }),
    health: z
      .object({
        /** Share of decisions where the model failed (error, deadline, guard); safe-mode fallbacks do not count. */
        fallback_rate: pair(0.05, 0.25),
        /** Share of requests rejected at the edge for one field (type errors, out of range, unknown category). */
        rejection_rate: pair(0.02, 0.1),
        /** The score's spread against the reference's: below these ratios of standard deviations, it has collapsed. */
        score_std_ratio: z.object({ warning: z.number().positive(), critical: z.number().positive() }).strict().default({ warning: 0.5, critical: 0.1 }),
        /** PSI of the decision mix against the reference's. */
        decision_mix_psi: pair(0.1, 0.25),
        /** Share of decisions where a feature's source failed, timed out or was stale. */
        source_failure_rate: pair(0.05, 0.25),
      })
      .strict()
      .default({
        fallback_rate: { warning: 0.05, critical: 0.25 },
        rejection_rate: { warning: 0.02, critical: 0.1 },
        score_std_ratio: { warning: 0.5, critical: 0.1 },
        decision_mix_psi: { warning: 0.1, critical: 0.25 },
        source_failure_rate: { warning: 0.05, critical: 0.25 },
      }),
  })
  .strict();

export type MonitoringConfig = z.output<typeof monitoringSchema>;
export type DriftThresholds = z.output<typeof driftThresholdsSchema>;

/** The thresholds for one feature: its overrides over the defaults. */
export function thresholdsFor(config: MonitoringConfig, feature: string): DriftThresholds {
  return { ...config.drift, ...config.features[feature] };
}
