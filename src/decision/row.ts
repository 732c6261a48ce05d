/**
 * Rules read raw typed values (the JSON a caller sends). Rows read from CSV hold text, so
 * `annual_inc < 12000` would compare a string with a number and never fire. `typedRow`
 * turns text cells into the values the same request would carry as JSON, following the
 * bundle's feature declarations: numbers for number/integer features, booleans for
 * boolean ones, trimmed strings for categories, null for empty cells. Text that does not
 * parse stays text (the encoder reports it; rules treat it as a type mismatch).
 */
import type { RawRow } from '../bundle/encoding.ts';
import type { FeatureSpec } from '../bundle/manifest.ts';

const NUMBER_TEXT = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;

function fromText(f: FeatureSpec | undefined, v: unknown): unknown {
  if (typeof v !== 'string') return v;
  if (v.trim() === '') return null;
  switch (f?.type) {
    case 'number':
    case 'integer':
      return NUMBER_TEXT.test(v) ? Number(v) : v;
    case 'boolean':
      if (/^\s*(true|1)\s*$/i.test(v)) return true;
      if (/^\s*(false|0)\s*$/i.test(v)) return false;
      return v;
    case 'category':
      return v.trim();
    default:
      // Not a declared feature: a number if it reads as one, else the text.
      return NUMBER_TEXT.test(v) ? Number(v) : v;
  }
}

/** A copy of a text row (CSV cells) with typed values; own properties only, null prototype. */
export function typedRow(row: RawRow, features: readonly FeatureSpec[]): RawRow {
  return textRowConverter(features)(row);
}

/** `typedRow` with the feature lookup built once, for many rows. */
export function textRowConverter(features: readonly FeatureSpec[]): (row: RawRow) => RawRow {
  const byName = new Map(features.map((f) => [f.name, f]));
  return (row) => {
    const out: Record<string, unknown> = Object.create(null);
    for (const key of Object.keys(row)) out[key] = fromText(byName.get(key), row[key]);
    return out;
  };
}
