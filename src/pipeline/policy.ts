/**
 * How a policy turns what the model produced into a decision: guards first, then bands and
 * post-rules, or the fallback heuristics when the model could not be used. Shared by the
 * real-time path and batch scoring so the two never disagree.
 */
import type { RawRow } from '../bundle/encoding.ts';
import type { OutputValue } from '../bundle/outputs.ts';
import type { Decision, Policy } from '../decision/index.ts';

/** What the model stage produced for one row. */
export type ModelResult = { ok: true; score: number; outputs: Record<string, OutputValue> } | { ok: false; cause: string };

export interface PolicyVerdict {
  decision: Decision;
  /** Why the fallback decided, or null when the model's score was used. */
  fallbackCause: string | null;
}

export function decideAfterModel(policy: Policy, row: RawRow, result: ModelResult): PolicyVerdict {
  if (!result.ok) return { decision: policy.fallback(row, result.cause), fallbackCause: result.cause };
  const guard = policy.checkGuards(result.score);
  if (!guard.ok) {
    const cause = `guard: ${guard.cause}`;
    return { decision: policy.fallback(row, cause), fallbackCause: cause };
  }
  return { decision: policy.decide(row, result.score, result.outputs), fallbackCause: null };
}

/** Model output columns by name, for rules that read them. */
export function namedOutputs(columns: readonly string[], values: readonly OutputValue[]): Record<string, OutputValue> {
  const named: Record<string, OutputValue> = {};
  for (let j = 0; j < columns.length; j++) named[columns[j]] = values[j];
  return named;
}
