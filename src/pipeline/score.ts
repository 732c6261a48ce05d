/**
 * The scoring pipeline every mode shares (file, batch, real-time): validate and encode each
 * row with the bundle's encoding, score the valid rows as one matrix, name the outputs.
 * A bad row is reported with its field errors and never stops the others.
 */
import type { Bundle } from '../bundle/load.ts';
import type { FieldError, RawRow, RowEncoder } from '../bundle/encoding.ts';
import type { OutputValue } from '../bundle/outputs.ts';

/** A scored row points at its slot in the batch's matrices rather than copying them. */
export type RowOutcome = { ok: true; score: number; outputs: OutputValue[]; slot: number } | { ok: false; errors: FieldError[] };

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
}

export interface Scorer {
  readonly bundle: Bundle;
  /** Names of the output columns each scored row gets. */
  readonly outputColumns: readonly string[];
  scoreRows(rows: readonly RawRow[]): Promise<ScoredBatch>;
}

export function createScorer(bundle: Bundle, options: ScoreOptions): Scorer {
  const encode: RowEncoder = bundle.encoding.encoder({ fromText: options.fromText });
  const width = bundle.encoding.width;
  const { model, outputs } = bundle;
  const outWidth = model.outputWidth;

  async function scoreRows(rows: readonly RawRow[]): Promise<ScoredBatch> {
    const matrix = new Float32Array(rows.length * width);
    const results: RowOutcome[] = new Array(rows.length);
    const validRows: number[] = [];
    let errors: FieldError[] = [];
    for (let i = 0; i < rows.length; i++) {
      encode(rows[i], matrix, validRows.length * width, errors);
      if (errors.length > 0) {
        results[i] = { ok: false, errors };
        errors = [];
      } else validRows.push(i);
    }
    const n = validRows.length;
    if (n === 0) return { outcomes: results, inputs: matrix, raw: new Float64Array(0), inputWidth: width, rawWidth: outWidth };
    const raw = model.predictSync ? model.predictSync(matrix, n) : await model.predict(matrix, n);
    for (let k = 0; k < n; k++) {
      results[validRows[k]] = { ok: true, score: outputs.score(raw, k), outputs: outputs.values(raw, k), slot: k };
    }
    return { outcomes: results, inputs: matrix, raw, inputWidth: width, rawWidth: outWidth };
  }

  return { bundle, outputColumns: outputs.columns, scoreRows };
}
