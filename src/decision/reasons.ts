/**
 * Principal reasons from the model itself: the policy's `model_reasons` table maps every
 * feature to a reason code, and a decision the model made lists the codes whose features
 * pushed the score most in the direction that hurts (adverse action notices: US ECOA /
 * Regulation B; up to four reasons is customary).
 *
 *   model_reasons:
 *     actions: [decline, review]   # the decisions that carry them
 *     max: 4                       # at most this many (default 4)
 *     adverse: raises_score        # what hurts: a contribution that raises the score (here P(bad)), or lowers_score
 *     codes:                       # every model feature under exactly one code; order breaks ties
 *       - { code: INTEREST_RATE, message: "Interest rate of the loan", features: [int_rate] }
 *       - { code: CREDIT_INQUIRIES, message: "Number of recent credit inquiries", features: [inq_last_6mths, inq_last_12m, inq_fi] }
 *
 * A code's contribution is the sum of its features' contributions (contributions add up, so a
 * group's total is what the group did to the score). Codes whose total hurts are ranked by how
 * much, ties in the order the table lists them, and each lists its features the same way.
 * Every feature must have a code: a principal reason the table does not name would otherwise
 * be left out silently, and the next one reported in its place.
 */
import { z } from 'zod';
import { closest } from '../config/names.ts';

const CODE = /^[A-Z][A-Z0-9_]*$/;

export const modelReasonsSchema = z
  .object({
    actions: z.array(z.string().min(1).max(64)).min(1).max(32),
    max: z.number().int().min(1).max(10).default(4),
    adverse: z.enum(['raises_score', 'lowers_score']),
    codes: z
      .array(
        z
          .object({
            code: z.string().max(64).regex(CODE, 'a reason code is UPPER_SNAKE_CASE: a capital letter, then capitals, digits and _'),
            message: z.string().min(1).max(500),
            features: z.array(z.string().min(1).max(200)).min(1).max(1000),
          })
          .strict(),
      )
      .min(1)
      .max(1000),
  })
  .strict();

export type ModelReasonsSpec = z.output<typeof modelReasonsSchema>;

/** A principal reason from the model's contributions. */
export interface ModelReason {
  code: string;
  message: string;
  source: 'model';
  /** The code's features' contributions to the score's margin, summed (signed: + raises the score). */
  contribution: number;
  /** The feature of the code that hurt most. */
  feature: string;
  /**
   * Every feature of the code with its contribution, the most hurtful first, and (in decisions)
   * the value it had: null when missing, which the model may well hold against an applicant
   * (a notice should then say the information was missing, not that its value was bad).
   */
  features: { feature: string; contribution: number; value?: string | number | boolean | null }[];
}

/** The compiled table: which decisions carry reasons, and each feature's code. */
export interface ModelReasons {
  readonly spec: ModelReasonsSpec;
  readonly actions: ReadonlySet<string>;
  /**
   * The principal reasons for contributions given per feature, in the order of the features the
   * policy was compiled against, in the score's direction (+ raises the score).
   */
  rank(contributions: ArrayLike<number>): ModelReason[];
}

export interface ModelReasonsProblem {
  path: (string | number)[];
  rule: string;
}

/** Checks the table against the bundle's features; returns it compiled, or the problems. */
export function compileModelReasons(spec: ModelReasonsSpec, features: readonly string[]): { reasons: ModelReasons | null; problems: ModelReasonsProblem[] } {
  const problems: ModelReasonsProblem[] = [];
  const index = new Map(features.map((f, i) => [f, i]));
  const codeOf = new Int32Array(features.length).fill(-1);
  const members: number[][] = spec.codes.map(() => []);
  spec.codes.forEach((c, k) => {
    c.features.forEach((name, j) => {
      const i = index.get(name);
      if (i === undefined) {
        const near = closest(name, features);
        problems.push({ path: ['model_reasons', 'codes', k, 'features', j], rule: `unknown feature ${JSON.stringify(name)}${near ? `: did you mean ${near}?` : ''}` });
      } else if (codeOf[i] >= 0) {
        problems.push({ path: ['model_reasons', 'codes', k, 'features', j], rule: `${name} is already under code ${spec.codes[codeOf[i]].code}: a feature has one code` });
      } else {
        codeOf[i] = k;
        members[k].push(i);
      }
    });
  });
  const unmapped = features.filter((_, i) => codeOf[i] < 0);
  if (unmapped.length > 0 && problems.length === 0) {
    problems.push({
      path: ['model_reasons', 'codes'],
      rule: `every feature needs a code, so that no principal reason goes unreported: ${unmapped.length} ha${unmapped.length === 1 ? 's' : 've'} none (${unmapped.slice(0, 10).join(', ')}${unmapped.length > 10 ? ', …' : ''})`,
    });
  }
  if (problems.length > 0) return { reasons: null, problems };

  const hurts = spec.adverse === 'raises_score' ? 1 : -1;
  const totals = new Float64Array(spec.codes.length);
  const order = spec.codes.map((_, k) => k);
  const rank = (contributions: ArrayLike<number>): ModelReason[] => {
    if (contributions.length !== features.length) throw new RangeError(`model reasons: ${contributions.length} contributions for ${features.length} features`);
    for (let k = 0; k < members.length; k++) {
      let sum = 0;
      for (const i of members[k]) sum += contributions[i];
      totals[k] = sum;
    }
    const adverse = order.filter((k) => hurts * totals[k] > 0).sort((a, b) => hurts * (totals[b] - totals[a]) || a - b);
    return adverse.slice(0, spec.max).map((k) => {
      const byHarm = members[k].map((i) => ({ feature: features[i], contribution: contributions[i] })).sort((a, b) => hurts * (b.contribution - a.contribution));
      return { code: spec.codes[k].code, message: spec.codes[k].message, source: 'model' as const, contribution: totals[k], feature: byHarm[0].feature, features: byHarm };
    });
  };
  return { reasons: { spec, actions: new Set(spec.actions), rank }, problems };
}
