/**
 * `rtml profile`: measures the reference profile of a bundle on a data set (usually its
 * training data) through the same encoding, model and policy that serve live traffic, and
 * writes it into the bundle as reference.json.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RawRow } from '../bundle/encoding.ts';
import { hasModel, type Bundle } from '../bundle/load.ts';
import type { FeatureSpec } from '../bundle/manifest.ts';
import { bundleColumns, ColumnCheck, openRecords, type ReadOptions } from '../batch/records.ts';
import { textRowConverter } from '../decision/index.ts';
import { decideAfterModel, namedOutputs } from '../pipeline/policy.ts';
import { createScorer } from '../pipeline/score.ts';
import { brierScore, logLoss, rocAuc } from './performance.ts';
import { REFERENCE_FILE, REFERENCE_FORMAT, type CategoricalReference, type FeatureReference, type NumericReference, type ReferenceProfile } from './reference.ts';

export interface ProfileOptions {
  data: string;
  /** Bins per numeric column (at reference quantiles; fewer when values tie). */
  bins?: number;
  /** A label column, to record realized performance on the reference rows. */
  label?: string;
  /** The label value that is the positive class (default: the bundle's positive class). */
  positive?: string;
  /**
   * Held-out rows to measure the reference performance on. Without it, performance is
   * measured on `data`, which for training data is optimistic (in-sample).
   */
  holdout?: string;
  /** Feature columns deliberately absent from the data: profiled as missing, or their default. */
  allowMissing?: readonly string[];
  /** CSV field separator (default `,`). */
  delimiter?: string;
  chunkSize?: number;
}

/** Linear-interpolated quantile of sorted values (NumPy's default method). */
export function quantileSorted(sorted: Float64Array, q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** Edges, bin shares, quantiles and moments of a numeric column. */
export function numericReference(values: Float64Array, rows: number, bounds: { min?: number; max?: number }, bins: number): NumericReference {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  if (n === 0) {
    return { kind: 'numeric', count: 0, missingRate: rows === 0 ? 0 : 1, outOfRangeRate: 0, edges: [], frequencies: [1], quantiles: [], min: NaN, max: NaN, mean: NaN, std: NaN };
  }
  // Interior edges at quantiles; ties collapse, and an edge at the minimum would leave the first bin empty.
  const edges: number[] = [];
  for (let b = 1; b < bins; b++) {
    const q = quantileSorted(sorted, b / bins);
    if (q > sorted[0] && (edges.length === 0 || q > edges[edges.length - 1])) edges.push(q);
  }
  const counts = new Array<number>(edges.length + 1).fill(0);
  let bin = 0;
  for (const v of sorted) {
    while (bin < edges.length && v >= edges[bin]) bin++;
    counts[bin]++;
  }
  let sum = 0;
  let outOfRange = 0;
  for (const v of sorted) {
    sum += v;
    if ((bounds.min !== undefined && v < bounds.min) || (bounds.max !== undefined && v > bounds.max)) outOfRange++;
  }
  const mean = sum / n;
  let squares = 0;
  for (const v of sorted) squares += (v - mean) ** 2;
  const points = Math.min(1001, n);
  const quantiles = Array.from({ length: points }, (_, i) => quantileSorted(sorted, points === 1 ? 0 : i / (points - 1)));
  return {
    kind: 'numeric',
    count: n,
    missingRate: rows === 0 ? 0 : (rows - n) / rows,
    outOfRangeRate: outOfRange / n,
    edges,
    frequencies: counts.map((c) => c / n),
    quantiles,
    min: sorted[0],
    max: sorted[n - 1],
    mean,
    std: Math.sqrt(squares / n),
  };
}

function categoricalReference(counts: Map<string, number>, declared: readonly string[], rows: number): CategoricalReference {
  let n = 0;
  for (const c of counts.values()) n += c;
  const frequencies: Record<string, number> = {};
  for (const v of declared) frequencies[v] = n === 0 ? 0 : (counts.get(v) ?? 0) / n;
  return { kind: 'categorical', count: n, missingRate: rows === 0 ? 0 : (rows - n) / rows, frequencies };
}

/** Collects one column's values; numbers for numeric features, labels for categorical ones. */
class ColumnCollector {
  private values = new Float64Array(1024);
  private size = 0;
  private readonly categories = new Map<string, number>();
  constructor(readonly feature: FeatureSpec) {}

  add(value: unknown): void {
    if (value === null || value === undefined) return;
    if (this.feature.type === 'number' || this.feature.type === 'integer') {
      if (typeof value !== 'number' || !Number.isFinite(value)) return;
      if (this.size === this.values.length) {
        const grown = new Float64Array(this.size * 2);
        grown.set(this.values);
        this.values = grown;
      }
      this.values[this.size++] = value;
    } else {
      const key = String(value);
      this.categories.set(key, (this.categories.get(key) ?? 0) + 1);
    }
  }

  reference(rows: number, bins: number): FeatureReference {
    const f = this.feature;
    if (f.type === 'number' || f.type === 'integer') return numericReference(this.values.subarray(0, this.size), rows, f, bins);
    return categoricalReference(this.categories, f.type === 'boolean' ? ['true', 'false'] : f.values, rows);
  }
}

export async function buildProfile(bundle: Bundle, options: ProfileOptions): Promise<ReferenceProfile> {
  const bins = options.bins ?? 10;
  const chunkSize = options.chunkSize ?? 2048;
  const features = bundle.encoding.features;
  const columns = features.map((f) => new ColumnCollector(f));
  const fromCsv = !/\.(jsonl|ndjson|json)$/i.test(options.data);
  const typed = fromCsv ? textRowConverter(features) : (row: RawRow) => row;
  const scorer = hasModel(bundle) ? createScorer(bundle, { fromText: false }) : null;
  const encoder = bundle.encoding.encoder({ fromText: false });
  const scoreColumn = new ColumnCollector({ name: 'score', type: 'number', nullable: true });
  const actions = new Map<string, number>();
  const positive = options.positive ?? (bundle.manifest.outputs?.type === 'binary' ? (bundle.manifest.outputs.positive_class ?? bundle.manifest.outputs.classes[1]) : undefined);
  const labels: number[] = [];
  const scores: number[] = [];
  let rows = 0;
  let rejected = 0;

  const flush = async (chunk: RawRow[]) => {
    const scored = scorer ? await scorer.scoreRows(chunk) : null;
    for (let i = 0; i < chunk.length; i++) {
      const row = chunk[i];
      const outcome = scored?.outcomes[i];
      if (outcome && !outcome.ok) {
        rejected++;
        continue;
      }
      if (!scorer) {
        const errors: never[] = [];
        encoder(row, new Float32Array(bundle.encoding.width), 0, errors);
        if (errors.length > 0) {
          rejected++;
          continue;
        }
      }
      rows++;
      features.forEach((f, j) => columns[j].add(f.type === 'boolean' && typeof row[f.name] === 'boolean' ? String(row[f.name]) : row[f.name]));
      const score = outcome?.ok ? outcome.score : null;
      if (score !== null) scoreColumn.add(score);
      if (bundle.policy) {
        const pre = bundle.policy.preDecide(row);
        const action = pre
          ? pre.action
          : outcome?.ok && scorer
            ? decideAfterModel(bundle.policy, row, { ok: true, score: outcome.score, outputs: namedOutputs(scorer.outputColumns, outcome.outputs) }).decision.action
            : bundle.policy.fallback(row, 'rules_only').action;
        actions.set(action, (actions.get(action) ?? 0) + 1);
      }
      if (options.label && positive !== undefined && score !== null) {
        const label = row[options.label];
        if (label !== null && label !== undefined && label !== '') {
          labels.push(String(label) === positive ? 1 : 0);
          scores.push(score);
        }
      }
    }
  };

  // A reference measured without a feature's column (a sourced one, or a misspelt one) would
  // describe its default or missing values: the data must have them all, unless said otherwise.
  const expected = bundleColumns(bundle, { allowMissing: options.allowMissing });
  ColumnCheck.requireKnown(options.allowMissing ?? [], [expected], bundle.name);
  const read: ReadOptions = { delimiter: options.delimiter, columns: expected };
  let chunk: RawRow[] = [];
  for await (const record of openRecords(options.data, read)) {
    if (record.row === null) {
      rejected++;
      continue;
    }
    chunk.push(typed(record.row));
    if (chunk.length >= chunkSize) {
      await flush(chunk);
      chunk = [];
    }
  }
  if (chunk.length > 0) await flush(chunk);
  if (rows === 0) throw new Error(`${options.data}: no row could be used (${rejected} rejected)`);

  if (options.holdout && scorer && options.label && positive !== undefined) {
    // Performance comes from held-out rows: the model has seen the training rows.
    labels.length = 0;
    scores.length = 0;
    let batch: RawRow[] = [];
    const take = async () => {
      const scored = await scorer.scoreRows(batch);
      batch.forEach((row, i) => {
        const o = scored.outcomes[i];
        const label = row[options.label!];
        if (o.ok && label !== null && label !== undefined && label !== '') {
          labels.push(String(label) === positive ? 1 : 0);
          scores.push(o.score);
        }
      });
      batch = [];
    };
    for await (const record of openRecords(options.holdout, read)) {
      if (record.row === null) continue;
      batch.push(typed(record.row));
      if (batch.length >= chunkSize) await take();
    }
    if (batch.length > 0) await take();
  }

  const decisions = bundle.policy ? Object.fromEntries(bundle.policy.actions.map((a) => [a, (actions.get(a) ?? 0) / rows])) : null;
  return {
    format: REFERENCE_FORMAT,
    created: new Date().toISOString(),
    bundle: { name: bundle.name, version: bundle.version },
    data: { file: options.data, rows, rejected },
    features: Object.fromEntries(features.map((f, j) => [f.name, columns[j].reference(rows, bins)])),
    score: scorer ? (scoreColumn.reference(rows, bins) as NumericReference) : null,
    decisions,
    performance:
      options.label && positive !== undefined && labels.length > 0
        ? { ...labelledPerformance(scores, labels, options.label, positive), data: options.holdout ?? options.data, rows: labels.length }
        : null,
  };
}

/** Realized performance on the reference rows, computed as scikit-learn does. */
function labelledPerformance(scores: number[], labels: number[], label: string, positiveClass: string): Omit<NonNullable<ReferenceProfile['performance']>, 'data' | 'rows'> {
  const positives = labels.reduce((a, b) => a + b, 0);
  return { label, positiveClass, positiveRate: positives / labels.length, auc: rocAuc(scores, labels), logLoss: logLoss(scores, labels), brier: brierScore(scores, labels) };
}

export async function writeProfile(bundle: Bundle, profile: ReferenceProfile): Promise<string> {
  const file = join(bundle.dir, REFERENCE_FILE);
  // One line per feature keeps the file diffable without spreading 1,001 quantiles over 1,001 lines.
  const lines = Object.entries(profile).map(([key, value]) =>
    key === 'features'
      ? `  "features": {\n${Object.entries(value as object).map(([name, f]) => `    ${JSON.stringify(name)}: ${JSON.stringify(f)}`).join(',\n')}\n  }`
      : `  ${JSON.stringify(key)}: ${JSON.stringify(value)}`,
  );
  await writeFile(file, `{\n${lines.join(',\n')}\n}\n`);
  return file;
}
