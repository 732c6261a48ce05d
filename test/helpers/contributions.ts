/**
 * The golden contribution files (`contributions.jsonl`, written by
 * test/fixtures/make_contributions.py with XGBoost 1.7.4's `predict(pred_contribs=True)`):
 * their rows encoded by the bundle's own encoder, and XGBoost's numbers.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RawRow } from '../../src/bundle/encoding.ts';
import type { ModelBundle } from '../../src/bundle/load.ts';

const ROOT = new URL('../..', import.meta.url).pathname;

/** Every bundle that has a golden contribution file: the examples, then the fixtures. */
export function contributionBundles(): string[] {
  const fixtures = join(ROOT, 'test/fixtures/bundles');
  return [join(ROOT, 'examples/credit'), join(ROOT, 'examples/card-fraud'), ...readdirSync(fixtures).sort().map((d) => join(fixtures, d))].filter((dir) =>
    existsSync(join(dir, 'contributions.jsonl')),
  );
}

export interface GoldenContributions {
  rows: RawRow[];
  /** Encoded model inputs, `width` per row. */
  inputs: Float32Array;
  width: number;
  groups: number;
  /** XGBoost's values, rows × groups × (width + 1), bias last. */
  expected: Float64Array;
  /** XGBoost's margins, rows × groups. */
  margins: Float64Array;
}

export function readGoldenContributions(bundle: ModelBundle): GoldenContributions {
  const lines = readFileSync(join(bundle.dir, 'contributions.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as { row: RawRow; margin: number[]; contributions: number[][] });
  const width = bundle.encoding.width;
  const groups = lines[0].margin.length;
  const inputs = new Float32Array(lines.length * width);
  const encode = bundle.encoding.encoder({ fromText: false });
  lines.forEach((l, r) => {
    const errors: unknown[] = [];
    encode(l.row, inputs, r * width, errors as never[]);
    if (errors.length > 0) throw new Error(`${bundle.dir}: golden row ${r + 1} does not encode: ${JSON.stringify(errors)}`);
  });
  const expected = Float64Array.from(lines.flatMap((l) => l.contributions.flat()));
  if (expected.length !== lines.length * groups * (width + 1)) throw new Error(`${bundle.dir}: contributions are not rows × ${groups} × ${width + 1}`);
  return { rows: lines.map((l) => l.row), inputs, width, groups, expected, margins: Float64Array.from(lines.flatMap((l) => l.margin)) };
}
