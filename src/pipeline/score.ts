/**
 * The scoring pipeline every mode shares (file, batch, real-time): validate and encode each
 * row with the bundle's encoding, score the valid rows as one matrix, name the outputs.
 * A bad row is reported with its field errors and never stops the others.
 *
 * The stages are exposed separately (`encode`, `predict`) so the real-time decision path
 * can time each one and put its policy between them, while still running these functions
 * and no second implementation.
 */
import type { ModelBundle } from '../bundle/load.ts';
import type { FieldError, RawRow, RowEncoder } from '../bundle/encoding.ts';
import type { OutputValue } from '../bundle/outputs.ts';
import { createExplainer, type Explainer } from './explain.ts';

/** A scored row points at its slot in the batch's matrices rather than copying them. */
export type RowOutcome = { ok: true; score: number; outputs: OutputValue[]; slot: number } | { ok: false; errors: FieldError[] };

export interface EncodedBatch {
  /** Per input row: its slot in `inputs`, or its errors. */
  rows: ({ ok: true; slot: number } | { ok: false; errors: FieldError[] })[];
  /** Encoded model inputs of the valid rows, `inputWidth` per slot. */
  inputs: Float32Array;
  /** Number of valid rows (slots). */
  valid: number;
}

export interface ScoredBatch {
  outcomes: RowOutcome[];
  /** Encoded model inputs of the scored rows, `inputWidth` per slot. */
  inputs: Float32Array;
  /** Raw model outputs of the scored rows, `rawWidth` per slot. */
  raw: Float64Array;
  inputWidth: number;
  rawWidth: number;
}

export interface ScoreOptions {
  /** Values arrive as text (CSV cells) rather than typed JSON. */
  fromText: boolean;
  /** Build the explainer the policy's model reasons need now (default), or on first use (a batch without decisions never uses it). */
  explainerNow?: boolean;
}

export interface Scorer {
  readonly bundle: ModelBundle;
  /** Names of the output columns each scored row gets. */
  readonly outputColumns: readonly string[];
  /** Stage 1: validate and encode. */
  encode(rows: readonly RawRow[]): EncodedBatch;
  /** Stage 2: run the model on `valid` encoded rows; synchronous where the runtime can be. */
  predict(inputs: Float32Array, valid: number): Float64Array | Promise<Float64Array>;
  /** All stages for a batch. */
  scoreRows(rows: readonly RawRow[]): Promise<ScoredBatch>;
  /**
   * The model's exact contributions per feature (explain.ts), or null when it has none. Built on
   * first use, or at once when the policy asks for model reasons, so no decision waits for it.
   */
  explainer(): Explainer | null;
}

export function createScorer(bundle: ModelBundle, options: ScoreOptions): Scorer {
  const encodeRow: RowEncoder = bundle.encoding.encoder({ fromText: options.fromText });
  const width = bundle.encoding.width;
  const { model, outputs } = bundle;
  const rawWidth = model.outputWidth;

  function encode(rows: readonly RawRow[]): EncodedBatch {
    const inputs = new Float32Array(rows.length * width);
    const result: EncodedBatch['rows'] = new Array(rows.length);
    let valid = 0;
    let errors: FieldError[] = [];
    for (let i = 0; i < rows.length; i++) {
      encodeRow(rows[i], inputs, valid * width, errors);
      if (errors.length > 0) {
        result[i] = { ok: false, errors };
        errors = [];
      } else result[i] = { ok: true, slot: valid++ };
    }
    return { rows: result, inputs, valid };
  }

  const predict = (inputs: Float32Array, valid: number) => (model.predictSync ? model.predictSync(inputs, valid) : model.predict(inputs, valid));

  async function scoreRows(rows: readonly RawRow[]): Promise<ScoredBatch> {
    const encoded = encode(rows);
    const raw = encoded.valid === 0 ? new Float64Array(0) : await predict(encoded.inputs, encoded.valid);
    const outcomes = encoded.rows.map((r): RowOutcome => (r.ok ? { ok: true, score: outputs.score(raw, r.slot), outputs: outputs.values(raw, r.slot), slot: r.slot } : r));
    return { outcomes, inputs: encoded.inputs, raw, inputWidth: width, rawWidth };
  }

  let explainer: Explainer | null | undefined;
  const explainerOnce = () => (explainer === undefined ? (explainer = createExplainer(bundle)) : explainer);
  if (bundle.policy?.modelReasons && options.explainerNow !== false) explainerOnce();

  return { bundle, outputColumns: outputs.columns, encode, predict, scoreRows, explainer: explainerOnce };
}
