/**
 * The decision policy, `policy.yaml`: turns a model score into an action with reason codes.
 * Versioned on its own so the policy and the model can change independently.
 *
 * A request goes through, in order:
 *
 * 1. `pre_rules`, on the raw features only: the first rule that fires decides and the
 *    model is not run (a cheap pre-filter for ineligible requests).
 * 2. The model; its score must pass `guards` (finite, within [min, max]), otherwise the
 *    request goes to the fallback.
 * 3. `bands`: the first band whose `below` the score is strictly under gives the action
 *    (a score exactly at a bound goes to the next band); the last band has no bound.
 * 4. `post_rules`, on the features plus `score` and the named model outputs: the first
 *    rule that fires overrides the band's action (`applies_to` limits a rule to some band
 *    actions, e.g. only downgrade approvals).
 *
 * `fallback` decides without the model: when it errors or times out, when the score fails
 * the guards, when a kill switch is on, or always, for a rules-only policy (no bands).
 * Its rules run in order and its `default` catches everything else, so it always decides.
 *
 * `model_reasons` (reasons.ts) adds the model's own principal reasons to the decisions it
 * makes with the listed actions: reason codes ranked by the features' exact contributions to
 * the score. Decisions a pre-rule or the fallback makes get none: the model did not decide.
 *
 * Everything is checked when the policy loads: every action is declared, codes are unique
 * and UPPER_SNAKE, bands ascend and end unbounded, conditions compile against the bundle's
 * features (and their types), `score` is used only after the model. Errors name the file,
 * line, YAML path and rule code.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import type { RawRow } from '../bundle/encoding.ts';
import type { FeatureSpec } from '../bundle/manifest.ts';
import { ConfigError, readYaml, yamlPath, type ConfigProblem, type Locate } from '../config/yaml.ts';
import { compileExpr, ExprError, type Accessor, type CompiledExpr, type NameType } from './expr.ts';
import { compileModelReasons, modelReasonsSchema, type ModelReason, type ModelReasons } from './reasons.ts';

export const POLICY_FILE = 'policy.yaml';

// ---------------------------------------------------------------------------------------
// Schema

const CODE = /^[A-Z][A-Z0-9_]*$/;
const code = z.string().max(64).regex(CODE, 'a reason code is UPPER_SNAKE_CASE: a capital letter, then capitals, digits and _');
const action = z.string().min(1).max(64).regex(/^[A-Za-z][A-Za-z0-9_-]*$/, 'an action is a word: letters, digits, _ and -, starting with a letter');
const message = z.string().min(1).max(500);

const ruleSchema = z
  .object({
    code,
    /** Condition in the expression language (see expr.ts); the rule fires when it is true. */
    when: z.string().min(1),
    action,
    message,
  })
  .strict();

const postRuleSchema = ruleSchema
  .extend({
    /**
     * The band actions this rule may override; absent: any. `applies_to: [approve]` turns
     * approvals into reviews without ever turning a decline into a review, and without
     * repeating the band's bound in the condition.
     */
    applies_to: z.array(action).min(1).optional(),
  })
  .strict();

const bandSchema = z
  .object({
    /** Upper bound, exclusive: the band takes scores strictly below it. Absent on the last band. */
    below: z.number().finite().optional(),
    action,
    code,
    message,
  })
  .strict();

const outcomeSchema = z.object({ action, code, message }).strict();

const bound = z.number().finite().nullable();

export const policySchema = z
  .object({
    version: z.union([z.string().min(1).max(64), z.number()]).transform(String),
    description: z.string().optional(),
    actions: z.array(action).min(1).max(32),
    pre_rules: z.array(ruleSchema).max(500).default([]),
    bands: z.array(bandSchema).min(1).max(100).optional(),
    post_rules: z.array(postRuleSchema).max(500).default([]),
    /** Accepted score range; null removes a bound. Defaults to [0, 1], for probabilities. */
    guards: z
      .object({ min: bound.default(0), max: bound.default(1) })
      .strict()
      .default({ min: 0, max: 1 }),
    fallback: z
      .object({
        rules: z.array(ruleSchema).max(500).default([]),
        default: outcomeSchema,
      })
      .strict(),
    /** Principal reasons from the model's own contributions (see reasons.ts). */
    model_reasons: modelReasonsSchema.optional(),
  })
  .strict();

/** The policy file as written (before defaults). */
export type PolicyInput = z.input<typeof policySchema>;
/** The policy file after validation, with defaults filled in. */
export type PolicySpec = z.output<typeof policySchema>;

// ---------------------------------------------------------------------------------------
// Public types

export interface Reason {
  code: string;
  message: string;
}

export type { ModelReason, ModelReasons } from './reasons.ts';

export type Stage = 'pre_rule' | 'band' | 'post_rule' | 'fallback';

export interface Decision {
  action: string;
  /**
   * Why, most decisive first: reasons[0] is the rule or band that set the action; then, when the
   * policy asks for them, the model's own principal reasons (ModelReason, `source: 'model'`).
   */
  reasons: (Reason | ModelReason)[];
  stage: Stage;
  /** For stage 'fallback': why the model's score was not used. */
  cause?: string;
}

export type GuardResult = { ok: true } | { ok: false; cause: string };

/** What rules may refer to: the bundle's features and the model's named outputs. */
export interface PolicyContext {
  /** Feature declarations (names and types, for checks) or bare names. */
  features: readonly (FeatureSpec | string)[];
  /** Named model outputs available to post_rules besides `score`, e.g. ['p_bad']. */
  outputs?: readonly string[];
}

/** A reason code the policy can produce, for documentation and metric labels. */
export interface ReasonCode extends Reason {
  /** The action a rule or band gives; null for the model's reasons, which explain the actions model_reasons lists. */
  action: string | null;
  stage: Stage | 'model';
  /** Model reasons: the features under the code. */
  features?: readonly string[];
}

export interface Policy {
  readonly version: string;
  readonly spec: PolicySpec;
  /** False for a rules-only policy (no bands): the model is never needed. */
  readonly usesModel: boolean;
  readonly actions: readonly string[];
  readonly reasonCodes: readonly ReasonCode[];
  /** The model's principal reasons the policy asks for (`model_reasons`), or null. */
  readonly modelReasons: ModelReasons | null;
  /** The decision of the first pre-rule that fires, or null: then run the model. */
  preDecide(features: RawRow): Decision | null;
  /**
   * Bands, then post-rules. A score that fails the guards goes to the fallback instead
   * (so NaN never reaches a band), as does every request for a rules-only policy.
   */
  decide(features: RawRow, score: number, outputs?: Readonly<Record<string, number | string>>): Decision;
  /** Whether the score may be used: finite and within [guards.min, guards.max]. */
  checkGuards(score: number): GuardResult;
  /** The decision without the model: the first fallback rule that fires, else the default. */
  fallback(features: RawRow, cause: string): Decision;
}

/** One problem in a policy file, located as precisely as possible. */
export type PolicyProblem = ConfigProblem;

export class PolicyError extends ConfigError {
  override name = 'PolicyError';
}

// ---------------------------------------------------------------------------------------
// Loading

/** Reads, validates and compiles a policy file. Throws PolicyError. */
export async function loadPolicy(file: string, context: PolicyContext): Promise<Policy> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new PolicyError([{ file, path: '', rule: `cannot read the policy: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }]);
  }
  return parsePolicy(text, context, file);
}

/** Validates and compiles policy YAML text; `file` only names it in errors. */
export function parsePolicy(text: string, context: PolicyContext, file = POLICY_FILE): Policy {
  const read = readYaml(text, file);
  if (!read.ok) throw new PolicyError(read.problems);
  return buildPolicy(read.value, context, file, read.locate);
}

/** Validates and compiles a policy given as an object (e.g. already parsed). Throws PolicyError. */
export function createPolicy(input: unknown, context: PolicyContext, file = POLICY_FILE): Policy {
  return buildPolicy(input, context, file, () => undefined);
}


interface CompiledRule {
  readonly condition: CompiledExpr;
  readonly action: string;
  readonly reason: Reason;
  /** Post-rules only: the band actions the rule may override; null for any. */
  readonly appliesTo: ReadonlySet<string> | null;
}

interface CompiledBand {
  readonly below: number;
  readonly action: string;
  readonly reason: Reason;
}

function featureType(f: FeatureSpec): NameType {
  switch (f.type) {
    case 'number':
    case 'integer':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'category':
      return { category: f.values };
  }
}

function buildPolicy(input: unknown, context: PolicyContext, file: string, locate: Locate): Policy {
  const problems: PolicyProblem[] = [];
  const problem = (path: (string | number)[], rule: string, ruleCode?: string) =>
    problems.push({ file, path: yamlPath(path), line: locate(path), ...(ruleCode ? { code: ruleCode } : {}), rule });

  const parsed = policySchema.safeParse(input);
  if (!parsed.success) {
    for (const issue of parsed.error.issues.slice(0, 20)) problem(issue.path.filter((p): p is string | number => typeof p !== 'symbol'), issue.message);
    throw new PolicyError(problems);
  }
  const spec = parsed.data;

  // Actions: declared once, every use declared.
  const actions = new Set<string>();
  spec.actions.forEach((a, i) => {
    if (actions.has(a)) problem(['actions', i], `duplicate action ${JSON.stringify(a)}`);
    actions.add(a);
  });
  const checkAction = (path: (string | number)[], a: string, ruleCode: string) => {
    if (!actions.has(a)) problem([...path, 'action'], `action ${JSON.stringify(a)} is not one of actions [${spec.actions.join(', ')}]`, ruleCode);
  };

  // Codes: unique across the whole policy, so a reason code names one rule.
  const codes = new Map<string, string>();
  const checkCode = (path: (string | number)[], c: string) => {
    const first = codes.get(c);
    if (first !== undefined) problem([...path, 'code'], `duplicate code ${c}, first used at ${first}`);
    else codes.set(c, yamlPath(path));
  };

  // Names rules may use.
  const featureNames = new Set<string>();
  const types = new Map<string, NameType>();
  for (const f of context.features) {
    if (typeof f === 'string') featureNames.add(f);
    else {
      featureNames.add(f.name);
      types.set(f.name, featureType(f));
    }
  }
  const modelNames = new Set<string>(['score', ...(context.outputs ?? [])]);
  const allNames = new Set<string>([...featureNames, ...modelNames]);
  const postTypes = new Map(types);
  for (const n of modelNames) postTypes.set(n, n === 'score' ? 'number' : 'any');
  // After the model, `score` and the outputs come from the ModelScope decide() passes.
  const modelAccessors = new Map<string, Accessor>();
  for (const n of modelNames) {
    modelAccessors.set(
      n,
      n === 'score'
        ? (_row, scope) => (scope as ModelScope).score
        : (_row, scope) => {
            const outputs = (scope as ModelScope).outputs;
            return outputs !== undefined && hasOwn.call(outputs, n) ? outputs[n] : undefined;
          },
    );
  }

  const compileRules = (section: 'pre_rules' | 'post_rules' | 'fallback', rules: PolicySpec['post_rules']): CompiledRule[] => {
    const afterModel = section === 'post_rules';
    const base: (string | number)[] = section === 'fallback' ? ['fallback', 'rules'] : [section];
    const compiled: CompiledRule[] = [];
    rules.forEach((r, i) => {
      const path = [...base, i];
      checkCode(path, r.code);
      checkAction(path, r.action, r.code);
      r.applies_to?.forEach((a, j) => {
        if (!actions.has(a)) problem([...path, 'applies_to', j], `action ${JSON.stringify(a)} is not one of actions [${spec.actions.join(', ')}]`, r.code);
        else if (spec.bands && !spec.bands.some((b) => b.action === a)) problem([...path, 'applies_to', j], `no band gives action ${JSON.stringify(a)}, so this never applies`, r.code);
      });
      try {
        const condition = compileExpr(r.when, afterModel ? { knownNames: allNames, types: postTypes, accessors: modelAccessors } : { knownNames: allNames, types });
        for (const name of condition.names) {
          if (!afterModel && !featureNames.has(name)) {
            const where = section === 'pre_rules' ? 'pre_rules run before the model' : 'the fallback runs without the model';
            problem([...path, 'when'], `${JSON.stringify(name)} is a model output: only post_rules can use it (${where})`, r.code);
          } else if (afterModel && featureNames.has(name) && modelNames.has(name)) {
            problem([...path, 'when'], `${JSON.stringify(name)} is both a feature and a model output; rename one`, r.code);
          }
        }
        compiled.push({ condition, action: r.action, reason: Object.freeze({ code: r.code, message: r.message }), appliesTo: r.applies_to ? new Set(r.applies_to) : null });
      } catch (err) {
        if (!(err instanceof ExprError)) throw err;
        problem([...path, 'when'], err.message, r.code);
      }
    });
    return compiled;
  };

  const pre = compileRules('pre_rules', spec.pre_rules);

  // Bands: ascending strict bounds, last one unbounded, all reachable within the guards.
  const { min, max } = spec.guards;
  if (min !== null && max !== null && min >= max) problem(['guards', 'min'], `min ${min} must be below max ${max}`);
  let bands: CompiledBand[] | null = null;
  if (spec.bands) {
    const list = spec.bands;
    bands = [];
    list.forEach((b, i) => {
      const path = ['bands', i];
      checkCode(path, b.code);
      checkAction(path, b.action, b.code);
      const last = i === list.length - 1;
      if (last && b.below !== undefined) problem([...path, 'below'], `the last band must have no 'below': it takes every score the bands above did not`, b.code);
      if (!last && b.below === undefined) problem(path, `only the last band may omit 'below'`, b.code);
      if (b.below !== undefined) {
        const prev = list[i - 1]?.below;
        if (prev !== undefined && b.below <= prev) problem([...path, 'below'], `bands must ascend: ${b.below} is not above the previous band's ${prev}`, b.code);
        if (i === 0 && min !== null && b.below <= min) problem([...path, 'below'], `below ${b.below} is not above guards.min ${min}: no score that passes the guards falls in this band`, b.code);
        if (max !== null && b.below > max) problem([...path, 'below'], `below ${b.below} is above guards.max ${max}: the bands after it can never be reached`, b.code);
      }
      bands!.push({ below: b.below ?? Infinity, action: b.action, reason: Object.freeze({ code: b.code, message: b.message }) });
    });
  }

  const post = compileRules('post_rules', spec.post_rules);
  if (!spec.bands && spec.post_rules.length > 0) problem(['post_rules'], `post_rules need a model score, but this policy has no bands (rules-only)`);

  const fallbackRules = compileRules('fallback', spec.fallback.rules);
  checkCode(['fallback', 'default'], spec.fallback.default.code);
  checkAction(['fallback', 'default'], spec.fallback.default.action, spec.fallback.default.code);

  let modelReasons: ModelReasons | null = null;
  const asked = spec.model_reasons;
  if (asked) {
    if (!spec.bands) problem(['model_reasons'], `model_reasons explain the model's decisions, but this policy has no bands (rules-only): the model never decides`);
    const modelActions = new Set([...(spec.bands ?? []).map((b) => b.action), ...spec.post_rules.map((r) => r.action)]);
    asked.actions.forEach((a, i) => {
      if (!actions.has(a)) problem(['model_reasons', 'actions', i], `action ${JSON.stringify(a)} is not one of actions [${spec.actions.join(', ')}]`);
      else if (spec.bands && !modelActions.has(a)) problem(['model_reasons', 'actions', i], `no band or post_rule gives action ${JSON.stringify(a)}: the model never decides it, so it never carries model reasons`);
    });
    asked.codes.forEach((c, k) => checkCode(['model_reasons', 'codes', k], c.code));
    const compiled = compileModelReasons(asked, [...featureNames]);
    for (const p of compiled.problems) problem(p.path, p.rule);
    modelReasons = compiled.reasons;
  }

  if (problems.length > 0) throw new PolicyError(problems.slice(0, 20));

  const reasonCodes: ReasonCode[] = [
    ...spec.pre_rules.map((r) => ({ code: r.code, message: r.message, action: r.action, stage: 'pre_rule' as const })),
    ...(spec.bands ?? []).map((b) => ({ code: b.code, message: b.message, action: b.action, stage: 'band' as const })),
    ...spec.post_rules.map((r) => ({ code: r.code, message: r.message, action: r.action, stage: 'post_rule' as const })),
    ...spec.fallback.rules.map((r) => ({ code: r.code, message: r.message, action: r.action, stage: 'fallback' as const })),
    { ...spec.fallback.default, stage: 'fallback' as const },
    ...(asked?.codes ?? []).map((c) => ({ code: c.code, message: c.message, action: null, stage: 'model' as const, features: c.features })),
  ];
  return new CompiledPolicy(spec, pre, bands, post, fallbackRules, Object.freeze({ code: spec.fallback.default.code, message: spec.fallback.default.message }), reasonCodes, modelReasons);
}

// ---------------------------------------------------------------------------------------
// Evaluation

const hasOwn = Object.prototype.hasOwnProperty;

/** What post-rules read besides the features (a fixed shape: cheap to build per request). */
interface ModelScope {
  score: number;
  outputs: Readonly<Record<string, number | string>> | undefined;
}

class CompiledPolicy implements Policy {
  readonly version: string;
  readonly usesModel: boolean;
  readonly actions: readonly string[];
  private readonly min: number;
  private readonly max: number;
  private readonly defaultAction: string;

  constructor(
    readonly spec: PolicySpec,
    private readonly pre: readonly CompiledRule[],
    private readonly bands: readonly CompiledBand[] | null,
    private readonly post: readonly CompiledRule[],
    private readonly fallbackRules: readonly CompiledRule[],
    private readonly defaultReason: Reason,
    readonly reasonCodes: readonly ReasonCode[],
    readonly modelReasons: ModelReasons | null,
  ) {
    this.version = spec.version;
    this.usesModel = bands !== null;
    this.actions = spec.actions;
    this.min = spec.guards.min ?? -Infinity;
    this.max = spec.guards.max ?? Infinity;
    this.defaultAction = spec.fallback.default.action;
  }

  preDecide(features: RawRow): Decision | null {
    const pre = this.pre;
    for (let i = 0; i < pre.length; i++) {
      const r = pre[i];
      if (r.condition.test(features)) return { action: r.action, reasons: [r.reason], stage: 'pre_rule' };
    }
    return null;
  }

  checkGuards(score: number): GuardResult {
    if (typeof score !== 'number') return { ok: false, cause: `score is not a number (${typeof score})` };
    if (score !== score) return { ok: false, cause: 'score is NaN' };
    if (score === Infinity || score === -Infinity) return { ok: false, cause: `score is ${score}` };
    if (score < this.min) return { ok: false, cause: `score ${score} is below guards.min ${this.min}` };
    if (score > this.max) return { ok: false, cause: `score ${score} is above guards.max ${this.max}` };
    return { ok: true };
  }

  decide(features: RawRow, score: number, outputs?: Readonly<Record<string, number | string>>): Decision {
    const bands = this.bands;
    if (bands === null) return this.fallback(features, 'rules-only policy: no model bands');
    const guard = this.checkGuards(score);
    if (!guard.ok) return this.fallback(features, guard.cause);
    let band = bands[bands.length - 1];
    for (let i = 0; i < bands.length - 1; i++) {
      if (score < bands[i].below) {
        band = bands[i];
        break;
      }
    }
    const post = this.post;
    if (post.length > 0) {
      const scope: ModelScope = { score, outputs };
      for (let i = 0; i < post.length; i++) {
        const r = post[i];
        if ((r.appliesTo === null || r.appliesTo.has(band.action)) && r.condition.test(features, scope)) return { action: r.action, reasons: [r.reason, band.reason], stage: 'post_rule' };
      }
    }
    return { action: band.action, reasons: [band.reason], stage: 'band' };
  }

  fallback(features: RawRow, cause: string): Decision {
    const rules = this.fallbackRules;
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i];
      if (r.condition.test(features)) return { action: r.action, reasons: [r.reason], stage: 'fallback', cause };
    }
    return { action: this.defaultAction, reasons: [this.defaultReason], stage: 'fallback', cause };
  }
}
