/**
 * The `gates:` section of a bundle's rtml.yaml: what a candidate must pass before it decides
 * anything (`rtml gate`). Unknown keys are errors, like everywhere in the manifest.
 */
import { z } from 'zod';

const rate = z.number().min(0).max(1);
const fieldValue = z.union([z.string(), z.number(), z.boolean(), z.null()]);

/** A row and the decision it must get (minimum functionality). */
const caseSchema = z
  .object({
    name: z.string().min(1),
    row: z.record(z.string(), fieldValue),
    decision: z.string().min(1),
    /** Optionally, a reason code the decision must carry. */
    reason: z.string().min(1).optional(),
  })
  .strict();

/** A perturbation of the reference rows that must not change the decision (or the score beyond a tolerance). */
const invarianceSchema = z
  .object({
    name: z.string().min(1),
    field: z.string().min(1),
    /** Set the field to each of these values in turn. */
    values: z.array(fieldValue).min(1).optional(),
    /** Or move a numeric field by -noise and +noise (absolute). */
    noise: z.number().positive().finite().optional(),
    /** What must hold: the same decision (default), or the score within `score_tolerance`. */
    expect: z.enum(['decision', 'score']).default('decision'),
    score_tolerance: z.number().min(0).finite().optional(),
    /** Share of reference rows allowed to break it (0: none). */
    max_violation_rate: rate.default(0),
  })
  .strict()
  .superRefine((g, ctx) => {
    if ((g.values === undefined) === (g.noise === undefined)) ctx.addIssue({ code: 'custom', path: ['values'], message: 'give exactly one of values or noise' });
    if (g.expect === 'score' && g.score_tolerance === undefined) ctx.addIssue({ code: 'custom', path: ['score_tolerance'], message: 'required with expect: score' });
  });

/** The score must not go up (`decreasing`) or down (`increasing`) as the feature increases, other features fixed. */
const directionalSchema = z
  .object({
    feature: z.string().min(1),
    direction: z.enum(['increasing', 'decreasing']),
  })
  .strict();

const slicesSchema = z
  .object({
    /** The label column of --data. */
    label: z.string().min(1).default('Class'),
    /** Categorical features whose segments are checked; default: every categorical feature. */
    features: z.array(z.string().min(1)).optional(),
    /** No segment's AUC more than this below the whole's. */
    max_auc_drop: z.number().min(0).max(1),
    /** Segments with fewer rows, or with fewer than 10 of either class, are reported, not judged. */
    min_rows: z.number().int().min(1).default(200),
  })
  .strict();

const replayBudgetSchema = z
  .object({
    /** Largest share of decisions that may change. */
    max_flip_rate: rate,
    /** Largest change (either way) of the share of this action, as a fraction. */
    max_rate_change: z.record(z.string().min(1), rate).default({}),
  })
  .strict();

export const gatesSchema = z
  .object({
    /** Golden parity, as `rtml check`. */
    parity: z.object({ tolerance: z.number().positive().default(1e-6) }).strict().optional(),
    cases: z.array(caseSchema).optional(),
    invariance: z.array(invarianceSchema).optional(),
    directional: z.array(directionalSchema).optional(),
    slices: slicesSchema.optional(),
    replay: replayBudgetSchema.optional(),
  })
  .strict();

export type GatesSpec = z.output<typeof gatesSchema>;
export type InvarianceSpec = z.output<typeof invarianceSchema>;
export type DirectionalSpec = z.output<typeof directionalSchema>;
