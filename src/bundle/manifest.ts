/**
 * The bundle manifest, `rtml.yaml`: what a bundle declares about its model, inputs and
 * outputs. Validated once when the bundle loads; everything after works on these types.
 */
import { z } from 'zod';
import { monitoringSchema } from '../monitor/config.ts';
import { sourceSchema, sourcesSchema } from '../features/types.ts';
import { gatesSchema } from '../rollout/gates-config.ts';

const name = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'lowercase letters, digits, - and _, starting with a letter or digit');
// Feature names become CSV headers and JSON keys: anything printable, but no control characters.
const featureName = z.string().min(1).max(200).regex(/^[^\u0000-\u001f\u007f]+$/, 'no control characters');

const bounds = {
  /** Where the value comes from when not from the request: an entity, an aggregate, an HTTP service, an expression. */
  source: sourceSchema.optional(),
  nullable: z.boolean().default(false),
  min: z.number().finite().optional(),
  max: z.number().finite().optional(),
};

const numberFeature = z.object({ name: featureName, type: z.literal('number'), ...bounds, default: z.number().finite().optional() }).strict();
const integerFeature = z.object({ name: featureName, type: z.literal('integer'), ...bounds, default: z.number().int().optional() }).strict();
const booleanFeature = z.object({ name: featureName, type: z.literal('boolean'), source: sourceSchema.optional(), nullable: z.boolean().default(false), default: z.boolean().optional() }).strict();
const categoryFeature = z
  .object({
    name: featureName,
    type: z.literal('category'),
    values: z.array(z.string().min(1)).min(1),
    /** ordinal: one column holding the value's index (XGBoost native categorical); onehot: one 0/1 column per value. */
    encoding: z.enum(['onehot', 'ordinal']).default('onehot'),
    source: sourceSchema.optional(),
    /** What an unseen value does: reject the row, or score it as missing. */
    on_unknown: z.enum(['error', 'missing']).default('error'),
    nullable: z.boolean().default(false),
    default: z.string().optional(),
  })
  .strict();

export const featureSchema = z
  .discriminatedUnion('type', [numberFeature, integerFeature, booleanFeature, categoryFeature])
  .superRefine((f, ctx) => {
    if ('min' in f && f.min !== undefined && f.max !== undefined && f.min > f.max) {
      ctx.addIssue({ code: 'custom', path: ['min'], message: `min ${f.min} is above max ${f.max}` });
    }
    if ((f.type === 'number' || f.type === 'integer') && f.default !== undefined) {
      if (f.min !== undefined && f.default < f.min) ctx.addIssue({ code: 'custom', path: ['default'], message: `default ${f.default} is below min ${f.min}` });
      if (f.max !== undefined && f.default > f.max) ctx.addIssue({ code: 'custom', path: ['default'], message: `default ${f.default} is above max ${f.max}` });
    }
    if (f.type === 'category') {
      const seen = new Set<string>();
      f.values.forEach((v, i) => {
        if (seen.has(v)) ctx.addIssue({ code: 'custom', path: ['values', i], message: `duplicate value ${JSON.stringify(v)}` });
        seen.add(v);
      });
      if (f.default !== undefined && !seen.has(f.default)) ctx.addIssue({ code: 'custom', path: ['default'], message: `default ${JSON.stringify(f.default)} is not one of values` });
    }
  });

export const outputsSchema = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('binary'),
      /** Class names in the model's label order (label 0, label 1). */
      classes: z.tuple([z.string().min(1), z.string().min(1)]).default(['0', '1']),
      /** The class whose probability is the score; defaults to the second (label 1). */
      positive_class: z.string().min(1).optional(),
      /** Name of the probability column; defaults to p_<positive_class>. */
      name: featureName.optional(),
    })
    .strict(),
  z
    .object({
      type: z.literal('multiclass'),
      classes: z.array(z.string().min(1)).min(2),
      name: featureName.optional(),
    })
    .strict(),
  z.object({ type: z.literal('regression'), name: featureName.optional() }).strict(),
]);

export const manifestSchema = z
  .object({
    name,
    version: z.union([z.string().min(1).max(64), z.number()]).transform(String),
    description: z.string().optional(),
    /** Absent for a rules-only service: the heuristic baseline every ML service is compared with. */
    model: z
      .object({
        format: z.string().min(1),
        path: z.string().min(1),
        input: z.string().optional(),
        output: z.string().optional(),
      })
      .strict()
      .optional(),
    features: z.array(featureSchema).min(1).optional(),
    /** Request fields that identify entities (a card, a customer): required strings, not model inputs. */
    keys: z.array(z.string().min(1).max(200)).default([]),
    /** Entities, event streams and the deadline for gathering features from them. */
    sources: sourcesSchema.optional(),
    outputs: outputsSchema.optional(),
    /** Request fields that are not features: refuse the request, list them in the response, or drop them. */
    unknown_fields: z.enum(['reject', 'report', 'ignore']).default('report'),
    /** The decision policy file (its own version); policy.yaml when present. */
    policy: z.string().min(1).optional(),
    golden: z.string().min(1).optional(),
    /** Live monitoring against the reference profile; see monitor/config.ts. */
    monitoring: monitoringSchema.optional(),
    /** What a new version must pass before it decides anything (`rtml gate`); see rollout/gates-config.ts. */
    gates: gatesSchema.optional(),
  })
  .strict()
  .superRefine((m, ctx) => {
    if (m.model && !m.outputs) ctx.addIssue({ code: 'custom', path: ['outputs'], message: 'required with a model: say what the model outputs' });
    if (!m.model && !m.features) ctx.addIssue({ code: 'custom', path: ['features'], message: 'required without a model: a rules-only service still validates its inputs' });
    if (!m.model && m.outputs) ctx.addIssue({ code: 'custom', path: ['outputs'], message: 'a service without a model has no outputs' });
    const seen = new Set<string>();
    m.features?.forEach((f, i) => {
      if (seen.has(f.name)) ctx.addIssue({ code: 'custom', path: ['features', i, 'name'], message: `duplicate feature ${JSON.stringify(f.name)}` });
      seen.add(f.name);
    });
    const out = m.outputs;
    if (out?.type === 'binary' && out.positive_class !== undefined && !out.classes.includes(out.positive_class)) {
      ctx.addIssue({ code: 'custom', path: ['outputs', 'positive_class'], message: `must be one of classes ${JSON.stringify(out.classes)}` });
    }
  });

export type Manifest = z.output<typeof manifestSchema>;
export type FeatureSpec = z.output<typeof featureSchema>;
export type OutputsSpec = z.output<typeof outputsSchema>;
