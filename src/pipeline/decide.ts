/**
 * One real-time decision, start to finish. Read this file to follow a request:
 *
 *   1. validation  the request's fields against the bundle's schema (the batch encoder)
 *   2. features    (sources beyond the request arrive in a later stage; timed already)
 *   3. pre-rules   a rule may decide without the model
 *   4. model       the batch scorer's predict, under the request's deadline
 *   5. guards      NaN, infinite or out-of-range scores never reach the policy
 *   6. policy      score bands, then post-rules; or the fallback heuristics
 *   7. explain     when the policy asks: the model's own principal reasons (exact contributions)
 *   8. log         the exact inputs, outputs, versions and timings, durably, before answering
 *
 * The model is never trusted blindly: when it errors, misses its deadline, fails its
 * guards, or an operator or monitor forces it off, the fallback policy decides and the
 * response says so (`fallback.used`, `fallback.cause`).
 */
import { randomUUID } from 'node:crypto';
import type { FieldError, RawRow } from '../bundle/encoding.ts';
import type { Bundle } from '../bundle/load.ts';
import type { OutputValue } from '../bundle/outputs.ts';
import type { Decision } from '../decision/index.ts';
import type { DecisionLog, DecisionRecordToAppend, ServedFeature } from '../log/types.ts';
import { decideAfterModel, namedOutputs, type ModelResult } from './policy.ts';
import type { Scorer } from './score.ts';
import type { FeatureStatus, FeatureStore } from '../features/types.ts';
import { nearMisses } from '../config/names.ts';
import { explainDecision, rowOf, type ExplainedDecision, type Explanation, type RowExplanation } from './explain.ts';

/** What the caller gets back. */
export interface DecisionResponse {
  id: string;
  service: string;
  decision: string | null;
  score: number | null;
  reasons: Decision['reasons'];
  model: { name: string; version: string } | null;
  policy: { version: string } | null;
  fallback: { used: boolean; cause: string | null };
  timings_ms: StageTimings;
  warnings?: UnknownField[];
  /** Every named output of the model (`p_<class>`, `class`, `prediction`), when the model decided. */
  outputs?: Record<string, OutputValue>;
  /** How each sourced feature was obtained (present, default, stale, missing, timeout, error). */
  features?: Record<string, FeatureStatus>;
  /** When the policy asks for model reasons for this action: whether the model decided (and its reasons are in `reasons`). */
  explanation?: Explanation;
}

/** A request field that is not a feature (`field` is `*` for the count of those not listed). */
export interface UnknownField {
  field: string;
  rule: 'unknown';
  message: string;
}

export const STAGES = ['validation', 'features', 'model', 'policy', 'explain', 'log'] as const;
export type Stage = (typeof STAGES)[number];
export type StageTimings = Record<Stage | 'total', number>;

/** The request is wrong: answered 400 with every problem by field and rule. */
export class RequestRejected extends Error {
  constructor(readonly errors: { field: string | null; rule: string; message: string }[]) {
    super(errors.map((e) => e.message).join('; '));
    this.name = 'RequestRejected';
  }
}

/** A loaded service version, as the decision path needs it. */
export interface DecisionTarget {
  readonly bundle: Bundle;
  /** Null for a rules-only service. */
  readonly scorer: Scorer | null;
  readonly featureNames: ReadonlySet<string>;
}

export interface DecisionContext {
  readonly log: DecisionLog;
  /** performance.now() value by which the model must have answered. */
  readonly deadline: number;
  /** Set when the model must not be used (kill switch, safe mode): the cause. */
  readonly forcedFallback: string | null;
  /**
   * With a forced fallback, still run the model and log its score without acting on it
   * (safe mode: the monitors must see when the model is healthy again).
   */
  readonly shadowScore?: boolean;
  /** Set while the monitor holds the service in safe mode; recorded with the decision. */
  readonly safeMode?: boolean;
  /** Where sourced features are looked up; null when the server has no store. */
  readonly featureStore?: FeatureStore | null;
  /**
   * A request field that is not a feature but picks the version deciding it (a canary's key,
   * such as `customer_id`): neither warned about nor refused, and kept in the log with the request.
   */
  readonly routingKey?: string | null;
  /** The body's JSON text as it arrived, when `body` was parsed from it (the log stores it if the request is logged unchanged). */
  readonly requestText?: string | null;
  /** Called once per answered decision, for metrics and monitors. */
  readonly observe?: (response: DecisionResponse, stage: Decision['stage'] | 'none', seen: SeenDecision) => void;
}

/** What the monitors see of a decision besides the response. */
export interface SeenDecision {
  /** The features as served. */
  row: RawRow;
  score: number | null;
  /** When the model scored the row: its encoded inputs and raw outputs (for contributions computed later, off the request's path). */
  model: { inputs: Float32Array; raw: Float64Array } | null;
  /** The row's contributions per feature, when the decision computed them anyway. */
  contributions: RowExplanation | null;
}

const ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
/** Entity keys (a card, a customer) become store keys: bounded like ids. */
const MAX_KEY_LENGTH = 256;
/** Unknown fields listed one by one in a warning or an error; the rest are counted. */
const LISTED_UNKNOWN = 20;

/** One entry per unknown field, up to LISTED_UNKNOWN, then one that counts the rest: an answer never grows with junk. */
function unknownErrors(unknown: readonly string[], service: string): UnknownField[] {
  const listed = unknown.slice(0, LISTED_UNKNOWN).map((name) => {
    const field = name.length > 100 ? `${name.slice(0, 100)}…` : name;
    return { field, rule: 'unknown' as const, message: `${field} is not a feature of ${service}` };
  });
  if (unknown.length > LISTED_UNKNOWN) listed.push({ field: '*', rule: 'unknown', message: `and ${unknown.length - LISTED_UNKNOWN} more fields that are not features of ${service}` });
  return listed;
}

function withoutFields(body: RawRow, drop: readonly string[]): RawRow {
  const dropped = new Set(drop);
  const kept: Record<string, unknown> = {};
  for (const key of Object.keys(body)) if (!dropped.has(key)) kept[key] = body[key];
  return kept;
}

export async function decide(target: DecisionTarget, body: RawRow, ctx: DecisionContext): Promise<DecisionResponse> {
  const started = performance.now();
  const { bundle, scorer } = target;
  const policy = bundle.policy;
  const timings: StageTimings = { validation: 0, features: 0, model: 0, policy: 0, explain: 0, log: 0, total: 0 };
  const clock = new StageClock(timings, started);

  // 1. Validation: the id, unknown fields, then every feature by the batch encoder's rules.
  const id = body.id === undefined ? randomUUID() : body.id;
  if (typeof id !== 'string' || !ID_PATTERN.test(id)) {
    throw new RequestRejected([{ field: 'id', rule: 'format', message: 'id must be 1-128 letters, digits, or . _ : -' }]);
  }
  const routingKey = ctx.routingKey ?? 'id';
  // A loop rather than Object.keys(body).filter(...): no array and no closure per request unless a field is unknown.
  let unknown: string[] | null = null;
  for (const k in body) if (k !== 'id' && k !== routingKey && !target.featureNames.has(k)) (unknown ??= []).push(k);
  let request = body;
  if (unknown !== null) {
    // A field that is not a feature, next to the feature it looks like, is a typo that would
    // otherwise score on a missing value: refused whatever unknown_fields says.
    const misses = nearMisses(
      [...target.featureNames].filter((f) => body[f] === undefined || body[f] === null),
      unknown,
    );
    if (misses.size > 0) {
      throw new RequestRejected(
        [...misses].map(([feature, field]) => ({ field, rule: 'unknown', message: `${field} is not a feature of ${bundle.name}: did you mean ${feature}? (${feature} is missing)` })),
      );
    }
    if (bundle.manifest.unknown_fields === 'reject') throw new RequestRejected(unknownErrors(unknown, bundle.name));
    // What is not a feature is not kept: the log holds what decided, not what else was sent.
    request = withoutFields(body, unknown);
  }
  const sources = bundle.sources;
  if (sources) {
    const missingKeys = sources.keys.filter((k) => typeof body[k] !== 'string' || body[k] === '' || (body[k] as string).length > MAX_KEY_LENGTH);
    if (missingKeys.length > 0) {
      throw new RequestRejected(missingKeys.map((field) => ({ field, rule: 'required', message: `${field} is required: a string of 1-${MAX_KEY_LENGTH} characters identifying the entity whose features are looked up` })));
    }
  }
  clock.lap('validation');

  // 2. Features: what the request does not carry comes from its sources, in parallel, under a deadline.
  let features: RawRow = body;
  let featureStatus: Record<string, FeatureStatus> | null = null;
  if (sources) {
    const resolved = await sources.resolve(body, Date.now(), ctx.featureStore ?? null);
    features = resolved.row;
    featureStatus = resolved.status;
  }
  clock.lap('features');

  // Every feature, from the request or a source, passes the same checks and encoding as in batch.
  const encoded = scorer?.encode([features]);
  const row = encoded?.rows[0];
  if (row && !row.ok) throw new RequestRejected(row.errors);
  if (!scorer) {
    const errors: FieldError[] = [];
    bundle.encoding.encoder({ fromText: false })(features, new Float32Array(bundle.encoding.width), 0, errors);
    if (errors.length > 0) throw new RequestRejected(errors);
  }
  clock.lap('validation');

  // 3-6. Pre-rules, model, guards, policy.
  let decision: Decision | null = null;
  let score: number | null = null;
  let outputs: Record<string, OutputValue> | null = null;
  // The encoder's vector as is: the log turns NaN into null (the SQLite log in its writer thread).
  let inputs: Float32Array | null = null;
  let raw: Float64Array | null = null;
  let fallbackCause: string | null = null;

  decision = policy?.preDecide(features) ?? null;
  if (!decision && scorer && encoded) {
    let result: ModelResult;
    if (ctx.forcedFallback && !ctx.shadowScore) result = { ok: false, cause: ctx.forcedFallback };
    else if (performance.now() > ctx.deadline) result = { ok: false, cause: 'deadline' };
    else {
      inputs = encoded.inputs;
      try {
        raw = await withDeadline(scorer.predict(encoded.inputs, 1), ctx.deadline);
        if (raw === null) result = { ok: false, cause: 'deadline' };
        else {
          const mapping = scorer.bundle.outputs;
          score = mapping.score(raw, 0);
          outputs = namedOutputs(mapping.columns, mapping.values(raw, 0));
          result = { ok: true, score, outputs };
        }
      } catch (err) {
        result = { ok: false, cause: `model_error: ${(err as Error).message.slice(0, 200)}` };
      }
    }
    clock.lap('model');
    // A forced fallback decides even though the model ran (in its shadow, for the monitors).
    if (ctx.forcedFallback && result.ok) result = { ok: false, cause: ctx.forcedFallback };
    if (policy) {
      const verdict = decideAfterModel(policy, features, result);
      decision = verdict.decision;
      fallbackCause = verdict.fallbackCause;
    } else if (!result.ok) fallbackCause = result.cause;
    else if (!Number.isFinite(result.score)) fallbackCause = 'guard: score is not a finite number';
  } else if (!decision && policy) {
    // A rules-only service: its heuristics are the policy, not a stand-in for a failed model.
    decision = policy.fallback(features, 'rules_only');
  }
  clock.lap('policy');

  // 7. The model's own reasons, when the policy asks for them for this action.
  let explained: ExplainedDecision | null = null;
  let contributions: RowExplanation | null = null;
  if (decision && policy?.modelReasons) {
    const explainer = scorer?.explainer() ?? null;
    explained = explainDecision(policy, explainer, decision, features, () => (contributions = rowOf(explainer!.explain(encoded!.inputs, 1, raw!), 0, explainer!.features.length)));
    if (explained) decision.reasons = explained.reasons;
    clock.lap('explain');
  }

  const trusted = fallbackCause === null && outputs !== null;
  const response: DecisionResponse = {
    id,
    service: bundle.name,
    // Without a policy, a classifier's decision is its predicted class; a score alone decides nothing.
    decision: decision?.action ?? (!policy && trusted && bundle.manifest.outputs?.type === 'multiclass' ? String(outputs![bundle.outputs!.columns.at(-1)!]) : null),
    score: fallbackCause === null ? score : null,
    reasons: decision?.reasons ?? [],
    model: bundle.model ? { name: bundle.name, version: bundle.version } : null,
    policy: policy ? { version: policy.version } : null,
    fallback: { used: fallbackCause !== null, cause: fallbackCause },
    timings_ms: timings,
  };
  if (unknown !== null && bundle.manifest.unknown_fields === 'report') response.warnings = unknownErrors(unknown, bundle.name);
  if (featureStatus) response.features = featureStatus;
  if (trusted) response.outputs = outputs!;
  if (explained) response.explanation = explained.explanation;
  if (!decision && fallbackCause !== null) {
    // No policy to fall back on: the caller must not act on a score we do not trust.
    throw new ModelUnavailable(fallbackCause);
  }

  // 7. Log, durably, before answering. Optional fields left undefined are absent to the log (no
  // spread objects per request).
  const record: DecisionRecordToAppend = {
    id,
    time: new Date().toISOString(),
    service: bundle.name,
    model: response.model,
    policyVersion: policy?.version ?? null,
    request,
    // The body's own text, when the logged request is the body itself (no field dropped).
    requestText: request === body ? (ctx.requestText ?? undefined) : undefined,
    inputs,
    outputs,
    score,
    decision: response.decision ?? '',
    reasons: response.reasons,
    explanation: explained?.logged,
    fallback: response.fallback,
    timingsMs: timings,
    safeMode: ctx.safeMode ? true : undefined,
    features: featureStatus ? servedFeatures(featureStatus, features) : undefined,
  };
  await ctx.log.append(record);
  clock.lap('log');
  timings.total = performance.now() - started;
  ctx.observe?.(response, decision?.stage ?? 'none', { row: features, score, model: inputs && raw ? { inputs, raw } : null, contributions });
  return response;
}

/** What the log keeps of each sourced feature: its status and the value the decision used. */
function servedFeatures(status: Record<string, FeatureStatus>, row: RawRow): Record<string, ServedFeature> {
  const served: Record<string, ServedFeature> = {};
  for (const name in status) {
    const value = row[name];
    // Validation already refused anything but scalars for a feature the model or policy reads.
    served[name] = { status: status[name], value: typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean' ? value : null };
  }
  return served;
}

/**
 * Adds the time since the last lap to a stage. A class rather than a closure in decide():
 * tsx names every closure it creates (an Object.defineProperty), and this one was per request.
 */
class StageClock {
  private mark: number;
  constructor(
    private readonly timings: StageTimings,
    started: number,
  ) {
    this.mark = started;
  }

  lap(stage: Stage): void {
    const now = performance.now();
    this.timings[stage] += now - this.mark;
    this.mark = now;
  }
}

/** The model could not be used and the service has no fallback policy: answered 503. */
export class ModelUnavailable extends Error {
  constructor(readonly reason: string) {
    super(`the model could not be used (${reason}) and the service has no fallback policy`);
    this.name = 'ModelUnavailable';
  }
}

/** Resolves to the value, or null if the deadline passes first. Synchronous values pass straight through. */
async function withDeadline<T>(value: T | Promise<T>, deadline: number): Promise<T | null> {
  if (!(value instanceof Promise)) return value;
  const remaining = deadline - performance.now();
  if (remaining <= 0) return null;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), remaining)));
  try {
    return await Promise.race([value, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
