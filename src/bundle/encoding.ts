/**
 * The one encoding from input features to the model's vector, used by every mode
 * (file scoring, batch, real-time): validate each field against its declared type and
 * bounds, then write float32 columns. Written once so training/serving skew cannot creep
 * in through a second implementation.
 *
 * Missing values become NaN so tree models take their default branch; one-hot columns of
 * a missing category are all zero.
 */
import type { FeatureSpec } from './manifest.ts';

/** One problem with one input field, named by field and rule. */
export interface FieldError {
  field: string;
  rule: 'required' | 'type' | 'finite' | 'integer' | 'min' | 'max' | 'category';
  message: string;
}

/** An input row as a caller sends it: flat feature name → value. */
export type RawRow = Readonly<Record<string, unknown>>;

export interface EncodeOptions {
  /** Values arrive as text (CSV): parse numbers and booleans, read '' as missing. */
  fromText: boolean;
}

/**
 * Writes one row's model columns to `out` starting at `offset`. Returns the errors; on
 * errors the written columns are meaningless and the row must not be scored.
 */
export type RowEncoder = (row: RawRow, out: Float32Array, offset: number, errors: FieldError[]) => void;

export interface Encoding {
  readonly features: readonly FeatureSpec[];
  /** The model's input columns, in order (one per feature, or one per value when one-hot). */
  readonly columns: readonly string[];
  readonly width: number;
  encoder(options: EncodeOptions): RowEncoder;
  /**
   * Per feature, in order, for CSV text read straight from the file's bytes (batch scoring
   * without a string per cell): the same rules, values and messages as `encoder({ fromText: true })`.
   */
  cellEncoders(): readonly CellEncoder[];
}

/** Writes one feature's model columns at `at`, or pushes why it cannot. */
export type FieldWriter = (value: unknown, out: Float32Array, at: number, errors: FieldError[]) => void;

export interface CellEncoder {
  readonly name: string;
  /** Where the feature's columns start in a row of the model's input. */
  readonly offset: number;
  /** From a cell's text. */
  readonly text: FieldWriter;
  /** From a cell's UTF-8 bytes `[start, end)`, unquoted. */
  readonly bytes: (bytes: Buffer, start: number, end: number, out: Float32Array, at: number, errors: FieldError[]) => void;
}

const NUMBER_TEXT = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;

const isMissing = (v: unknown, fromText: boolean): boolean => v === undefined || v === null || (fromText && typeof v === 'string' && v.trim() === '');

/**
 * A value as an error message shows it. Never String() or JSON.stringify() a caller's object or
 * array: one holding a `toString` key throws, one nested thousands deep overflows the stack.
 */
export function describe(v: unknown): string {
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'object' && v !== null) return 'an object';
  return `${typeof v} ${String(v)}`;
}

function numberWriter(f: Extract<FeatureSpec, { type: 'number' | 'integer' }>, fromText: boolean): FieldWriter {
  const { name, min, max } = f;
  const integer = f.type === 'integer';
  const fallback = f.default ?? (f.nullable ? NaN : undefined);
  return (value, out, at, errors) => {
    if (isMissing(value, fromText)) {
      if (fallback === undefined) errors.push({ field: name, rule: 'required', message: `${name} is required` });
      else out[at] = fallback;
      return;
    }
    let v: number;
    if (typeof value === 'number') v = value;
    else if (fromText && typeof value === 'string' && NUMBER_TEXT.test(value)) v = Number(value);
    else {
      errors.push({ field: name, rule: 'type', message: `${name} must be ${integer ? 'an integer' : 'a number'}, got ${describe(value)}` });
      return;
    }
    if (!Number.isFinite(v)) errors.push({ field: name, rule: 'finite', message: `${name} must be a finite number, got ${v}` });
    else if (integer && !Number.isInteger(v)) errors.push({ field: name, rule: 'integer', message: `${name} must be an integer, got ${v}` });
    else if (min !== undefined && v < min) errors.push({ field: name, rule: 'min', message: `${name} must be >= ${min}, got ${v}` });
    else if (max !== undefined && v > max) errors.push({ field: name, rule: 'max', message: `${name} must be <= ${max}, got ${v}` });
    else out[at] = v;
  };
}

function booleanWriter(f: Extract<FeatureSpec, { type: 'boolean' }>, fromText: boolean): FieldWriter {
  const { name } = f;
  const fallback = f.default === undefined ? (f.nullable ? NaN : undefined) : Number(f.default);
  return (value, out, at, errors) => {
    if (isMissing(value, fromText)) {
      if (fallback === undefined) errors.push({ field: name, rule: 'required', message: `${name} is required` });
      else out[at] = fallback;
      return;
    }
    if (value === true || value === false) out[at] = value ? 1 : 0;
    else if (fromText && typeof value === 'string' && /^\s*(true|1)\s*$/i.test(value)) out[at] = 1;
    else if (fromText && typeof value === 'string' && /^\s*(false|0)\s*$/i.test(value)) out[at] = 0;
    else errors.push({ field: name, rule: 'type', message: `${name} must be true or false, got ${describe(value)}` });
  };
}

function categoryWriter(f: Extract<FeatureSpec, { type: 'category' }>, fromText: boolean): FieldWriter {
  const { name, values, encoding } = f;
  const index = new Map(values.map((v, i) => [v, i]));
  const width = encoding === 'onehot' ? values.length : 1;
  const defaultIndex = f.default === undefined ? undefined : index.get(f.default);
  const writeMissing = (out: Float32Array, at: number) => {
    if (encoding === 'onehot') out.fill(0, at, at + width);
    else out[at] = NaN;
  };
  const writeIndex = (i: number, out: Float32Array, at: number) => {
    if (encoding === 'onehot') {
      out.fill(0, at, at + width);
      out[at + i] = 1;
    } else out[at] = i;
  };
  return (value, out, at, errors) => {
    if (isMissing(value, fromText)) {
      if (defaultIndex !== undefined) writeIndex(defaultIndex, out, at);
      else if (f.nullable) writeMissing(out, at);
      else errors.push({ field: name, rule: 'required', message: `${name} is required` });
      return;
    }
    const key = typeof value === 'string' ? (fromText ? value.trim() : value) : typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined;
    if (key === undefined) {
      errors.push({ field: name, rule: 'type', message: `${name} must be a category string, got ${describe(value)}` });
      return;
    }
    const i = index.get(key);
    if (i !== undefined) writeIndex(i, out, at);
    else if (f.on_unknown === 'missing') writeMissing(out, at);
    else {
      const shown = values.length <= 12 ? values.join(', ') : `${values.slice(0, 12).join(', ')}, … (${values.length} in all)`;
      errors.push({ field: name, rule: 'category', message: `${name} must be one of ${shown}; got ${JSON.stringify(key.slice(0, 60))}` });
    }
  };
}

const DIGIT_0 = 0x30;
const MINUS = 0x2d;
const DOT = 0x2e;
/** Powers of ten exact in float64, for decimals of at most 15 digits. */
const POW10 = Array.from({ length: 16 }, (_, k) => 10 ** k);

/**
 * The plain decimal `-?d+(.d*)?` of at most 15 digits in `bytes[start, end)`, or NaN for any
 * other text (which then goes through `Number`). Exact: both integers are exact in float64 and
 * one IEEE division rounds their quotient correctly, as `Number(text)` rounds the decimal.
 */
function plainDecimal(bytes: Buffer, start: number, end: number): number {
  let i = start;
  const negative = bytes[i] === MINUS;
  if (negative) i++;
  let mantissa = 0;
  let digits = 0;
  let fraction = -1;
  for (; i < end; i++) {
    const b = bytes[i];
    const d = b - DIGIT_0;
    if (d >= 0 && d <= 9) {
      mantissa = mantissa * 10 + d;
      digits++;
    } else if (b === DOT && fraction < 0 && digits > 0) fraction = i;
    else return NaN;
  }
  if (digits === 0 || digits > 15) return NaN;
  const value = fraction < 0 ? mantissa : mantissa / POW10[end - fraction - 1];
  return negative ? -value : value;
}

function numberCellBytes(f: Extract<FeatureSpec, { type: 'number' | 'integer' }>, text: FieldWriter): CellEncoder['bytes'] {
  const { min, max } = f;
  const integer = f.type === 'integer';
  return (bytes, start, end, out, at, errors) => {
    const v = plainDecimal(bytes, start, end);
    // Anything else (blank, exponent, spaces, out of bounds) takes the text path, for its exact message.
    if (v !== v || (integer && !Number.isInteger(v)) || (min !== undefined && v < min) || (max !== undefined && v > max)) {
      text(bytes.toString('utf8', start, end), out, at, errors);
    } else out[at] = v;
  };
}

function featureWidth(f: FeatureSpec): number {
  return f.type === 'category' && f.encoding === 'onehot' ? f.values.length : 1;
}

export function buildEncoding(features: readonly FeatureSpec[]): Encoding {
  const columns: string[] = [];
  const offsets: number[] = [];
  for (const f of features) {
    offsets.push(columns.length);
    if (f.type === 'category' && f.encoding === 'onehot') for (const v of f.values) columns.push(`${f.name}=${v}`);
    else columns.push(f.name);
  }
  const width = columns.length;

  const writerOf = (f: FeatureSpec, fromText: boolean): FieldWriter => {
    switch (f.type) {
      case 'number':
      case 'integer':
        return numberWriter(f, fromText);
      case 'boolean':
        return booleanWriter(f, fromText);
      case 'category':
        return categoryWriter(f, fromText);
    }
  };
  const encoder = (options: EncodeOptions): RowEncoder => {
    const writers = features.map((f) => writerOf(f, options.fromText));
    const names = features.map((f) => f.name);
    const n = names.length;
    return (row, out, offset, errors) => {
      for (let i = 0; i < n; i++) {
        // Own properties only: a key like "__proto__" or "toString" is not a feature value.
        const value = Object.hasOwn(row, names[i]) ? row[names[i]] : undefined;
        writers[i](value, out, offset + offsets[i], errors);
      }
    };
  };
  const cellEncoders = (): CellEncoder[] =>
    features.map((f, i) => {
      const text = writerOf(f, true);
      const bytes: CellEncoder['bytes'] =
        f.type === 'number' || f.type === 'integer'
          ? numberCellBytes(f, text)
          : (cell, start, end, out, at, errors) => text(cell.toString('utf8', start, end), out, at, errors);
      return { name: f.name, offset: offsets[i], text, bytes };
    });
  return { features, columns, width, encoder, cellEncoders };
}

export { featureWidth };
