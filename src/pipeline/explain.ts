/**
 * The model's own reasons for a decision. The runtime gives exact contributions per model
 * column and output group (XGBoost: TreeSHAP, its pred_contribs); here they become what a
 * decision needs:
 *
 * - per declared feature: one-hot columns are summed back to their feature;
 * - for the margin behind the score: a binary model's margin (negated when the score is the
 *   probability of label 0), a multi-class model's margin of the class it predicts, a
 *   regression's margin; so a positive contribution always raises the score;
 * - when the policy asks (`model_reasons`), ranked into reason codes after the policy's own
 *   reasons, for the decisions the model made. A pre-rule or fallback decision gets none and
 *   says that the model did not decide.
 *
 * One function, `explainDecision`, serves the server and batch scoring alike.
 */
import type { ModelBundle } from '../bundle/load.ts';
import type { RawRow } from '../bundle/encoding.ts';
import { featureWidth } from '../bundle/encoding.ts';
import type { Decision } from '../decision/index.ts';
import type { Policy } from '../decision/policy.ts';
import { contributionSupport } from '../models/runtime.ts';

/** Contributions of a batch of rows to the score's margin, per feature. */
export interface ExplainedRows {
  /** rows × features, in the bundle's feature order; + raises the score. */
  values: Float64Array;
  /** Per row: the bias (the model's expected margin, base margin included), same direction. */
  bias: Float64Array;
  /** Per row: the output group explained (the predicted class for a multi-class model). */
  group: Int32Array;
}

export interface Explainer {
  readonly method: string;
  /** The bundle's feature names, in order: what `values` are per. */
  readonly features: readonly string[];
  /** Class names by output group, for multi-class models; else null. */
  readonly classes: readonly string[] | null;
  /** Explains `rows` encoded rows (`inputs`, the bundle's encoding) whose raw model outputs are `raw`. */
  explain(inputs: Float32Array, rows: number, raw: Float64Array): ExplainedRows;
}

/** One row's explanation. */
export interface RowExplanation {
  values: Float64Array;
  bias: number;
  group: number;
}

export function rowOf(explained: ExplainedRows, row: number, features: number): RowExplanation {
  return { values: explained.values.subarray(row * features, (row + 1) * features), bias: explained.bias[row], group: explained.group[row] };
}

/** The explainer of a bundle's model, or null when the model gives no exact contributions (see contributionSupport). */
export function createExplainer(bundle: ModelBundle): Explainer | null {
  const support = contributionSupport(bundle.model);
  if (!support.exact) return null;
  const model = support.explainer();
  const { features, width } = bundle.encoding;
  const names = features.map((f) => f.name);
  // Model column → feature (one-hot columns share their feature).
  const featureOf = new Int32Array(width);
  let column = 0;
  features.forEach((f, i) => {
    for (let k = 0; k < featureWidth(f); k++) featureOf[column++] = i;
  });
  const outputs = bundle.manifest.outputs!;
  const rawWidth = bundle.model.outputWidth;
  const G = model.groups;
  // Which margin the score follows, and which way.
  let sign = 1;
  let pick: (raw: Float64Array, r: number) => number = () => 0;
  if (outputs.type === 'binary') {
    const positive = outputs.classes.indexOf(outputs.positive_class ?? outputs.classes[1]);
    if (G === 1) sign = positive === 1 ? 1 : -1;
    else pick = () => positive;
  } else if (outputs.type === 'multiclass') {
    pick =
      rawWidth === 1
        ? (raw, r) => raw[r]
        : (raw, r) => {
            let best = 0;
            for (let g = 1; g < rawWidth; g++) if (raw[r * rawWidth + g] > raw[r * rawWidth + best]) best = g;
            return best;
          };
  }
  const classes = outputs.type === 'multiclass' ? outputs.classes : null;
  let scratch = new Float64Array(0);
  return {
    method: support.method,
    features: names,
    classes,
    explain(inputs, rows, raw) {
      const size = rows * G * (width + 1);
      if (scratch.length < size) scratch = new Float64Array(size);
      const all = model.contributions(inputs, rows, scratch.subarray(0, size));
      const n = names.length;
      const values = new Float64Array(rows * n);
      const bias = new Float64Array(rows);
      const group = new Int32Array(rows);
      for (let r = 0; r < rows; r++) {
        const g = pick(raw, r);
        if (!(g >= 0 && g < G)) throw new RangeError(`no output group ${g} to explain (the model has ${G})`);
        group[r] = g;
        const at = (r * G + g) * (width + 1);
        for (let c = 0; c < width; c++) values[r * n + featureOf[c]] += sign * all[at + c];
        bias[r] = sign * all[at + width];
      }
      return { values, bias, group };
    },
  };
}

/** What a decision says about its model reasons, in the response. */
export type Explanation =
  | { model_decided: true; method: string; class?: string }
  | { model_decided: false; stage: 'pre_rule' | 'fallback'; note: string };

/** What the decision log keeps: the same, and when the model decided, every feature's contribution. */
export type LoggedExplanation = Explanation & { bias?: number; contributions?: Record<string, number> };

export interface ExplainedDecision {
  /** The decision's reasons: the policy's, then the model's when it decided. */
  reasons: Decision['reasons'];
  explanation: Explanation;
  logged: LoggedExplanation;
}

/**
 * The model's reasons for a decision, when the policy asks for them for its action (else null):
 * after the policy's own reasons when the model decided; otherwise the explanation says it did
 * not. `explain` computes the row's contributions only when needed.
 */
export function explainDecision(policy: Policy | null, explainer: Explainer | null, decision: Decision, row: RawRow, explain: () => RowExplanation): ExplainedDecision | null {
  const asked = policy?.modelReasons;
  if (!asked || !asked.actions.has(decision.action)) return null;
  if (decision.stage === 'pre_rule' || decision.stage === 'fallback') {
    const by = decision.stage === 'pre_rule' ? `pre_rule ${decision.reasons[0]?.code}` : `the fallback (${decision.cause ?? 'model unavailable'})`;
    const explanation: Explanation = { model_decided: false, stage: decision.stage, note: `decided by ${by}, not by the model: no model reasons` };
    return { reasons: decision.reasons, explanation, logged: explanation };
  }
  // The bundle was refused at load when its policy asks for reasons its model cannot give.
  if (!explainer) throw new Error('model_reasons without an explainer: the bundle should not have loaded');
  const explained = explain();
  const modelReasons = asked.rank(explained.values);
  for (const reason of modelReasons) for (const f of reason.features) f.value = servedValue(row[f.feature]);
  const reasons = [...decision.reasons, ...modelReasons];
  const explanation: Explanation = { model_decided: true, method: explainer.method, ...(explainer.classes ? { class: explainer.classes[explained.group] } : {}) };
  const contributions: Record<string, number> = {};
  explainer.features.forEach((f, i) => (contributions[f] = explained.values[i]));
  return { reasons, explanation, logged: { ...explanation, bias: explained.bias, contributions } };
}

/** A feature's value as the decision used it (validation admitted only scalars); null when missing. */
function servedValue(v: unknown): string | number | boolean | null {
  return typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v)) ? v : null;
}
