/**
 * What every decision log adapter checks and builds the same way: the validation of an appended
 * record and its serialization as one JSON row tuple (the column order of `sqlite-schema.ts`
 * COLUMNS, which the PostgreSQL log shares), outcomes, and time bounds of queries.
 */
import { DECISION_TIME_PATTERN, InvalidDecisionRecordError, type DecisionRecord, type DecisionRecordToAppend, type Outcome } from './types.ts';

export function normalizeBound(name: string, value: string): string {
  const ms = Date.parse(value);
  if (typeof value !== 'string' || Number.isNaN(ms)) throw new TypeError(`decision log: ${name} must be a date string, got ${JSON.stringify(value)}`);
  return new Date(ms).toISOString();
}

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A JSON column's text: undefined as 'null'; a value JSON cannot carry (a cycle, a BigInt) fails naming its field. */
export function jsonColumn(field: string, value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new InvalidDecisionRecordError(`${field} is not serializable as JSON: ${(err as Error).message}`, { cause: err });
  }
  return text ?? 'null';
}

/** Throws the error of a malformed record. A function, not a closure in toRowText: tsx names each closure it creates (Object.defineProperty), per record there. */
function invalidRecord(r: DecisionRecordToAppend, msg: string): never {
  throw new InvalidDecisionRecordError(`${msg} (service ${JSON.stringify(r.service)}, id ${JSON.stringify(r.id)})`);
}

/**
 * Validates a record's shape (cheaply: the types already say most of it) and serializes it as
 * one JSON text of the row tuple ({@link recordTuple}): one stringify per record, its JSON
 * columns embedded as values, not as JSON strings. A Float32Array input vector goes as its
 * length (`floatInputs: 'length'`: the SQLite writer gets the floats as binary, `insertBatch`)
 * or as its values, NaN as null (`'values'`).
 */
export function recordTupleText(r: DecisionRecordToAppend, floatInputs: 'length' | 'values'): string {
  const t = recordTuple(r, floatInputs);
  if (r.requestText === undefined) return stringifyRecord(r, t);
  // The request's own text spliced in (`request` stays null in the tuple): no stringify of it.
  const head = stringifyRecord(r, t.slice(0, 11));
  const tail = stringifyRecord(r, t.slice(12));
  return `${head.slice(0, -1)},${r.requestText},${tail.slice(1)}`;
}

/**
 * The same as one JSON object keyed by column name (COLUMNS of sqlite-schema.ts), input vectors
 * as values: what PostgreSQL's json_to_recordset takes apart in one parse per record.
 */
export function recordObjectText(r: DecisionRecordToAppend): string {
  const t = recordTuple(r, 'values');
  const text = stringifyRecord(r, {
    service: t[0],
    id: t[1],
    time: t[2],
    decision: t[3],
    model_name: t[4],
    model_version: t[5],
    policy_version: t[6],
    score: t[7],
    fallback_used: t[8],
    fallback_cause: t[9],
    safe_mode: t[10],
    request: t[11],
    inputs: t[12],
    outputs: t[13],
    reasons: t[14],
    timings_ms: t[15],
    features: t[16],
    explanation: t[17],
  });
  if (r.requestText === undefined) return text;
  // The request's own text spliced in for its null (recordTuple): the first `,"request":null,` is
  // the key's, as no JSON string value before it can hold an unescaped quote.
  const at = text.indexOf(',"request":null,') + ',"request":'.length;
  return `${text.slice(0, at)}${r.requestText}${text.slice(at + 'null'.length)}`;
}

/** The calendar day (`YYYY-MM-DD`) of the last time that passed the full check of {@link isDecisionTime}. */
let lastValidDay = '';

/**
 * Whether `time` is a real instant written as `YYYY-MM-DDTHH:MM:SS.sssZ`: the pattern, then a
 * round trip through Date (which rejects February 30th, hour 24...) the first time a day is seen;
 * later times of the same day only need their clock fields in range (a round trip costs ~0.6 µs,
 * a good part of the validation of a record, and a server's times share their day).
 */
function isDecisionTime(time: string): boolean {
  if (!DECISION_TIME_PATTERN.test(time)) return false;
  if (lastValidDay !== '' && time.startsWith(lastValidDay)) {
    // HH <= 23, MM <= 59, SS <= 59 (digits, by the pattern)
    const h = (time.charCodeAt(11) - 48) * 10 + time.charCodeAt(12) - 48;
    return h <= 23 && time.charCodeAt(14) <= 53 && time.charCodeAt(17) <= 53;
  }
  const ms = Date.parse(time);
  if (Number.isNaN(ms) || new Date(ms).toISOString() !== time) return false;
  lastValidDay = time.slice(0, 10);
  return true;
}

/** Throws the InvalidDecisionRecordError of a malformed record (cheaply: the types already say most of it). */
export function validateRecord(r: DecisionRecordToAppend): void {
  if (!isObject(r)) throw new InvalidDecisionRecordError('not an object');
  if (typeof r.id !== 'string' || r.id === '') invalidRecord(r, 'id must be a non-empty string');
  if (typeof r.service !== 'string' || r.service === '') invalidRecord(r, 'service must be a non-empty string');
  if (typeof r.time !== 'string' || !isDecisionTime(r.time)) {
    invalidRecord(r, `time must be ISO 8601 UTC with milliseconds (YYYY-MM-DDTHH:MM:SS.sssZ), got ${JSON.stringify(r.time)}`);
  }
  if (typeof r.decision !== 'string') invalidRecord(r, 'decision must be a string');
  if (r.model !== null && !(isObject(r.model) && typeof r.model.name === 'string' && typeof r.model.version === 'string')) {
    invalidRecord(r, 'model must be null or { name: string, version: string }');
  }
  if (r.policyVersion !== null && typeof r.policyVersion !== 'string') invalidRecord(r, 'policyVersion must be a string or null');
  if (r.inputs !== null && !Array.isArray(r.inputs) && !(r.inputs instanceof Float32Array)) invalidRecord(r, 'inputs must be an array, a Float32Array or null');
  if (r.outputs !== null && !isObject(r.outputs)) invalidRecord(r, 'outputs must be an object or null');
  if (r.score !== null && typeof r.score !== 'number') invalidRecord(r, 'score must be a number or null');
  if (!Array.isArray(r.reasons)) invalidRecord(r, 'reasons must be an array');
  if (!isObject(r.fallback) || typeof r.fallback.used !== 'boolean' || (r.fallback.cause !== null && typeof r.fallback.cause !== 'string')) {
    invalidRecord(r, 'fallback must be { used: boolean, cause: string | null }');
  }
  if (r.safeMode !== undefined && typeof r.safeMode !== 'boolean') invalidRecord(r, 'safeMode must be a boolean when present');
  if (!isObject(r.timingsMs)) invalidRecord(r, 'timingsMs must be an object');
  if (r.features !== undefined && !isObject(r.features)) invalidRecord(r, 'features must be an object when present');
  if (r.explanation !== undefined && !isObject(r.explanation)) invalidRecord(r, 'explanation must be an object when present');
  if (r.requestText !== undefined && (typeof r.requestText !== 'string' || r.requestText.charCodeAt(0) !== 123)) invalidRecord(r, 'requestText must be the JSON text of an object when present');
}

/** Validates a record and returns its row tuple, in COLUMNS order, JSON columns as values (score ±Infinity as a string, flags as 0/1). */
function recordTuple(r: DecisionRecordToAppend, floatInputs: 'length' | 'values'): unknown[] {
  validateRecord(r);
  const score = r.score === null || Number.isNaN(r.score) ? null : Number.isFinite(r.score) ? r.score : String(r.score);
  const tuple = [
    r.service,
    r.id,
    r.time,
    r.decision,
    r.model?.name ?? null,
    r.model?.version ?? null,
    r.policyVersion,
    score,
    r.fallback.used ? 1 : 0,
    r.fallback.cause,
    r.safeMode === undefined ? null : r.safeMode ? 1 : 0,
    r.requestText === undefined ? r.request : null, // undefined becomes null, stored as 'null' as before; requestText is spliced in
    r.inputs instanceof Float32Array ? (floatInputs === 'length' ? r.inputs.length : Array.from(r.inputs)) : r.inputs, // JSON turns NaN into null
    r.outputs,
    r.reasons,
    r.timingsMs,
    r.features ?? null,
    r.explanation ?? null,
  ];
  return tuple;
}

/** JSON.stringify of a record's row, naming the field at fault when it cannot be serialized. */
function stringifyRecord(r: DecisionRecordToAppend, row: unknown): string {
  try {
    return JSON.stringify(row);
  } catch (err) {
    // Name the field at fault (a cycle, a BigInt): only on this path, one stringify per field.
    const fields = { request: r.request, inputs: r.inputs instanceof Float32Array ? null : r.inputs, outputs: r.outputs, reasons: r.reasons, timingsMs: r.timingsMs, features: r.features, explanation: r.explanation };
    for (const [field, value] of Object.entries(fields)) jsonColumn(field, value);
    throw new InvalidDecisionRecordError(`not serializable as JSON: ${(err as Error).message}`, { cause: err });
  }
}

/** An outcome as stored: validated, time filled in. */
export interface OutcomeRow {
  id: string;
  label: string;
  time: string;
}

/** Validates outcomes (all or none) and stamps those without a time with `now`. */
export function outcomeRows(outcomes: readonly Outcome[], now = new Date().toISOString()): OutcomeRow[] {
  const rows: OutcomeRow[] = [];
  for (const o of outcomes) {
    if (typeof o.id !== 'string' || typeof o.label !== 'string' || (o.time !== undefined && !DECISION_TIME_PATTERN.test(o.time))) {
      throw new InvalidDecisionRecordError(`outcome ${JSON.stringify(o).slice(0, 200)}: needs a string id and label, and time as YYYY-MM-DDTHH:MM:SS.sssZ`);
    }
    rows.push({ id: o.id, label: o.label, time: o.time ?? now });
  }
  return rows;
}

/** A decision row as a store reads it back (COLUMNS): JSON columns as text, flags as 0/1 (SQLite) or booleans (PostgreSQL). */
export interface StoredDecisionRow<Flag extends number | boolean> {
  service: string;
  id: string;
  time: string;
  decision: string;
  model_name: string | null;
  model_version: string | null;
  policy_version: string | null;
  score: number | null;
  fallback_used: Flag;
  fallback_cause: string | null;
  safe_mode: Flag | null;
  request: string;
  inputs: string | null;
  outputs: string | null;
  reasons: string;
  timings_ms: string;
  features: string | null;
  explanation: string | null;
}

export function fromStoredRow(row: StoredDecisionRow<number | boolean>): DecisionRecord {
  const record: DecisionRecord = {
    id: row.id,
    time: row.time,
    service: row.service,
    model: row.model_name === null ? null : { name: row.model_name, version: row.model_version ?? '' },
    policyVersion: row.policy_version,
    request: JSON.parse(row.request),
    inputs: row.inputs === null ? null : JSON.parse(row.inputs),
    outputs: row.outputs === null ? null : JSON.parse(row.outputs),
    score: row.score,
    decision: row.decision,
    reasons: JSON.parse(row.reasons),
    fallback: { used: row.fallback_used === true || row.fallback_used === 1, cause: row.fallback_cause },
    timingsMs: JSON.parse(row.timings_ms),
  };
  if (row.safe_mode !== null) record.safeMode = row.safe_mode === true || row.safe_mode === 1;
  if (row.features !== null) record.features = JSON.parse(row.features);
  if (row.explanation !== null) record.explanation = JSON.parse(row.explanation);
  return record;
}
