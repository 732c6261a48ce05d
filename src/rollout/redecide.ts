/**
 * A decision taken again, off the request path: the features a decision used (a logged
 * request with its served features, a reference row, a gate's case) through a bundle's
 * encoding, pre-rules, model, guards, policy and model reasons, by the very functions the
 * server's decide() runs (pipeline/score.ts, pipeline/policy.ts, pipeline/explain.ts), so a
 * replay of the champion against its own log reproduces every decision exactly.
 */
import type { RawRow } from '../bundle/encoding.ts';
import type { ModelBundle } from '../bundle/load.ts';
import type { OutputValue } from '../bundle/outputs.ts';
import type { Decision } from '../decision/index.ts';
import type { ScannedDecision } from '../log/types.ts';
import { explainDecision, rowOf } from '../pipeline/explain.ts';
import { decideAfterModel, namedOutputs, type ModelResult } from '../pipeline/policy.ts';
import { createScorer, type Scorer } from '../pipeline/score.ts';
import type { DecidedSide } from './compare.ts';

export interface Redecided extends DecidedSide {
  /** Milliseconds the model took (null when it did not run: a pre-rule decided, the row was refused). */
  modelMs: number | null;
  /** Why the row was refused (the bundle's schema), when it was. */
  refused: string | null;
  /** What a log record of this decision holds besides the side: the encoded inputs (null when the model did not run), named outputs, reasons in full. */
  detail: { inputs: Float32Array | null; outputs: Record<string, OutputValue> | null; reasons: Decision['reasons'] };
}

const NO_DETAIL: Redecided['detail'] = Object.freeze({ inputs: null, outputs: null, reasons: [] });

/** A bundle ready to decide rows again: its scorer built once. */
export interface Decider {
  readonly bundle: ModelBundle;
  readonly scorer: Scorer;
}

export function deciderOf(bundle: ModelBundle): Decider {
  return { bundle, scorer: createScorer(bundle, { fromText: false }) };
}

/**
 * Fallbacks the serving context forced, not the model (an operator's kill switch, safe mode, a
 * missed deadline): a replay forces them too, so it compares what the candidate would have
 * done in the same situation.
 */
export function forcedCause(cause: string | null): string | null {
  return cause !== null && /^(kill_switch|safe_mode|deadline)/.test(cause) ? cause : null;
}

/** The features a logged decision used: its request, with each sourced feature's served value. */
export function loggedFeatures(record: ScannedDecision): RawRow {
  const request = record.request !== null && typeof record.request === 'object' && !Array.isArray(record.request) ? (record.request as Record<string, unknown>) : {};
  if (!record.features) return request;
  const row: Record<string, unknown> = { ...request };
  for (const name in record.features) row[name] = record.features[name].value;
  return row;
}

/** The side of a logged decision, as compared. */
export function loggedSide(record: ScannedDecision): DecidedSide {
  return { action: record.decision === '' ? null : record.decision, score: record.score, reasons: record.reasons.map((r) => r.code), fallback: record.fallback.used ? record.fallback.cause : null };
}

/** Decides `features` again with `decider`'s bundle; `forced` makes the fallback decide (the model still scores, unseen, as in safe mode). */
export async function redecide(decider: Decider, features: RawRow, forced: string | null = null): Promise<Redecided> {
  const { bundle, scorer } = decider;
  const policy = bundle.policy;
  const encoded = scorer.encode([features]);
  const row = encoded.rows[0];
  if (!row.ok) {
    return { action: null, score: null, reasons: [], fallback: null, modelMs: null, refused: row.errors.map((e) => `${e.field ?? ''}: ${e.rule}`).join('; '), detail: NO_DETAIL };
  }
  const pre = policy?.preDecide(features) ?? null;
  if (pre) return { action: pre.action, score: null, reasons: pre.reasons.map((r) => r.code), fallback: null, modelMs: null, refused: null, detail: { inputs: null, outputs: null, reasons: pre.reasons } };

  const started = performance.now();
  let result: ModelResult;
  let raw: Float64Array | null = null;
  let score: number | null = null;
  try {
    raw = await scorer.predict(encoded.inputs, 1);
    score = scorer.bundle.outputs.score(raw, 0);
    result = { ok: true, score, outputs: namedOutputs(scorer.bundle.outputs.columns, scorer.bundle.outputs.values(raw, 0)) };
  } catch (err) {
    result = { ok: false, cause: `model_error: ${(err as Error).message.slice(0, 200)}` };
  }
  const modelMs = performance.now() - started;
  if (forced !== null && result.ok) result = { ok: false, cause: forced };
  if (!policy) {
    const cause = !result.ok ? result.cause : Number.isFinite(result.score) ? null : 'guard: score is not a finite number';
    return { action: null, score, reasons: [], fallback: cause, modelMs, refused: null, detail: { inputs: encoded.inputs, outputs: result.ok ? result.outputs : null, reasons: [] } };
  }
  const verdict = decideAfterModel(policy, features, result);
  let reasons = verdict.decision.reasons;
  if (policy.modelReasons) {
    const explainer = scorer.explainer();
    const explained = explainDecision(policy, explainer, verdict.decision, features, () => rowOf(explainer!.explain(encoded.inputs, 1, raw!), 0, explainer!.features.length));
    if (explained) reasons = explained.reasons;
  }
  return { action: verdict.decision.action, score, reasons: reasons.map((r) => r.code), fallback: verdict.fallbackCause, modelMs, refused: null, detail: { inputs: encoded.inputs, outputs: result.ok ? result.outputs : null, reasons } };
}
