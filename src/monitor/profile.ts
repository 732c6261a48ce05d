/**
 * `rtml profile`: measures the reference profile of a bundle on a data set (usually its
 * training data) through the same encoding, model and policy that serve live traffic, and
 * writes it into the bundle as reference.json.
 */
import { writeFile } from 'node:fs/promises';
import type { RawRow } from '../bundle/encoding.ts';
import { hasModel, type Bundle } from '../bundle/load.ts';
import { bundleFileForWriting } from '../bundle/files.ts';
import type { FeatureSpec } from '../bundle/manifest.ts';
import { bundleColumns, ColumnCheck, formatOf, openRecords, type ReadOptions } from '../batch/records.ts';
import { textRowConverter } from '../decision/index.ts';
import { decideAfterModel, namedOutputs } from '../pipeline/policy.ts';
import { createScorer } from '../pipeline/score.ts';
import type { Explainer } from '../pipeline/explain.ts';
import { brierScore, logLoss, rocAuc } from './performance.ts';
import { positiveLabel, readLabel } from '../pipeline/outcomes.ts';
import { nearMisses } from '../config/names.ts';
import { REFERENCE_FILE, REFERENCE_FORMAT, type CategoricalReference, type ContributionsReference, type FeatureReference, type NumericReference, type ReferenceProfile } from './reference.ts';

export interface ProfileOptions {
  data: string;
  /** Bins per numeric column (at reference quantiles; fewer when values tie). */
  bins?: number;
  /** A label column, to record realized performance on the reference rows; read as outcomes are (`readLabel`). */
  label?: string;
  /** The label that is the positive class (default: the bundle's positive class). */
  positive?: string;
  /** Write the reference even when the labelled AUC is below 0.5 (classes deliberately the other way round). */
  allowReversedAuc?: boolean;
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
  /** Rows explained at most for attribution (a uniform sample beyond it; default ATTRIBUTION_ROWS). */
  contributionRows?: number;
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
  // Each file is read by its own format: the data may be CSV and the holdout JSON lines.
  const fromText = textRowConverter(features);
  const typedFor = (file: string) => (formatOf(file) === 'csv' ? fromText : (row: RawRow) => row);
  const typed = typedFor(options.data);
  const scorer = hasModel(bundle) ? createScorer(bundle, { fromText: false }) : null;
  const encoder = bundle.encoding.encoder({ fromText: false });
  const scoreColumn = new ColumnCollector({ name: 'score', type: 'number', nullable: true });
  const actions = new Map<string, number>();
  // Performance is measured on the held-out rows when there are some, else on the data.
  const labelled = options.label ? new LabelledScores(bundle, options.label, options.positive, options.holdout ?? options.data) : null;
  if (labelled && !scorer) throw new Error(`--label: ${bundle.name} has no model, so there is no score to measure against labels`);
  let rows = 0;
  let rejected = 0;

  // Attribution: the mean absolute contribution of each feature over the rows the model decides
  // (as live monitoring sees them: pre-rule decisions never run the model).
  const explainer = scorer?.explainer() ?? null;
  const attribution = explainer ? new AttributionSample(options.contributionRows ?? ATTRIBUTION_ROWS) : null;

  const flush = async (chunk: RawRow[], lines: number[]) => {
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
      const preRule = bundle.policy?.preDecide(row) ?? null;
      if (attribution && scored && outcome?.ok && preRule === null) {
        const width = scored.inputWidth;
        const rawWidth = scored.rawWidth;
        attribution.add(scored.inputs.subarray(outcome.slot * width, (outcome.slot + 1) * width), scored.raw.subarray(outcome.slot * rawWidth, (outcome.slot + 1) * rawWidth));
      }
      if (bundle.policy) {
        const pre = preRule;
        const action = pre
          ? pre.action
          : outcome?.ok && scorer
            ? decideAfterModel(bundle.policy, row, { ok: true, score: outcome.score, outputs: namedOutputs(scorer.outputColumns, outcome.outputs) }).decision.action
            : bundle.policy.fallback(row, 'rules_only').action;
        actions.set(action, (actions.get(action) ?? 0) + 1);
      }
      if (labelled && !options.holdout && score !== null) labelled.add(row, lines[i], score);
    }
  };

  // A reference measured without a feature's column (a sourced one, or a misspelt one) would
  // describe its default or missing values: the data must have them all, unless said otherwise.
  const expected = bundleColumns(bundle, { allowMissing: options.allowMissing });
  ColumnCheck.requireKnown(options.allowMissing ?? [], [expected], bundle.name);
  const read: ReadOptions = { delimiter: options.delimiter, columns: expected };
  let chunk: RawRow[] = [];
  let lines: number[] = [];
  for await (const record of openRecords(options.data, read)) {
    if (record.row === null) {
      rejected++;
      continue;
    }
    chunk.push(typed(record.row));
    lines.push(record.line);
    if (chunk.length >= chunkSize) {
      await flush(chunk, lines);
      chunk = [];
      lines = [];
    }
  }
  if (chunk.length > 0) await flush(chunk, lines);
  if (rows === 0) throw new Error(`${options.data}: no row could be used (${rejected} rejected)`);

  if (options.holdout && scorer && labelled) {
    // Performance comes from held-out rows: the model has seen the training rows.
    let batch: RawRow[] = [];
    let batchLines: number[] = [];
    const take = async () => {
      const scored = await scorer.scoreRows(batch);
      batch.forEach((row, i) => {
        const o = scored.outcomes[i];
        if (o.ok) labelled.add(row, batchLines[i], o.score);
      });
      batch = [];
      batchLines = [];
    };
    const typedHoldout = typedFor(options.holdout);
    for await (const record of openRecords(options.holdout, read)) {
      if (record.row === null) continue;
      batch.push(typedHoldout(record.row));
      batchLines.push(record.line);
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
    performance: labelled ? labelled.performance(options.allowReversedAuc ?? false) : null,
    contributions: explainer && attribution ? attribution.meanAbs(explainer) : null,
  };
}

/** Rows the profile explains at most for attribution (deep forests take milliseconds a row). */
export const ATTRIBUTION_ROWS = 10_000;

/**
 * A uniform sample of at most `size` of the rows the model decides (reservoir sampling with a
 * fixed seed, so a profile is reproducible), explained at the end. Below `size` rows, all.
 */
class AttributionSample {
  private readonly inputs: Float32Array[] = [];
  private readonly raws: Float64Array[] = [];
  private seen = 0;
  private state = 0x9e3779b9;

  constructor(private readonly size: number) {}

  add(inputs: Float32Array, raw: Float64Array): void {
    this.seen++;
    if (this.inputs.length < this.size) {
      this.inputs.push(inputs.slice());
      this.raws.push(raw.slice());
      return;
    }
    const j = Math.floor(this.random() * this.seen);
    if (j < this.size) {
      this.inputs[j] = inputs.slice();
      this.raws[j] = raw.slice();
    }
  }

  /** mulberry32: a small deterministic generator of [0, 1). */
  private random(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Each feature's mean absolute contribution over the sample; null when it is empty. */
  meanAbs(explainer: Explainer): ContributionsReference | null {
    const n = this.inputs.length;
    if (n === 0) return null;
    const width = this.inputs[0].length;
    const rawWidth = this.raws[0].length;
    const x = new Float32Array(n * width);
    const raw = new Float64Array(n * rawWidth);
    for (let r = 0; r < n; r++) {
      x.set(this.inputs[r], r * width);
      raw.set(this.raws[r], r * rawWidth);
    }
    const explained = explainer.explain(x, n, raw);
    const k = explainer.features.length;
    const sums = new Float64Array(k);
    for (let r = 0; r < n; r++) for (let f = 0; f < k; f++) sums[f] += Math.abs(explained.values[r * k + f]);
    return { rows: n, meanAbs: Object.fromEntries(explainer.features.map((f, j) => [f, sums[j] / n])) };
  }
}

/** A labelled AUC below 0.5: the score ranks the classes the wrong way round. */
export class ReversedAucError extends Error {
  override name = 'ReversedAucError';
}

/**
 * The labels of the rows performance is measured on, read as outcomes are (`readLabel`): a
 * label that is none of the bundle's classes (or their indices, or true/false) is an error
 * naming its line, never a silent negative.
 */
class LabelledScores {
  private readonly labels: number[] = [];
  private readonly scores: number[] = [];
  /** Rows that had the label column at all, and the first row's columns, to suggest a near miss. */
  private withColumn = 0;
  private columns: readonly string[] = [];
  private readonly positive: string;

  constructor(
    private readonly bundle: Bundle,
    private readonly column: string,
    positive: string | undefined,
    private readonly file: string,
  ) {
    const chosen = positive ?? positiveLabel(bundle) ?? undefined;
    if (chosen === undefined) throw new Error(`--label needs --positive for a ${bundle.manifest.outputs?.type ?? 'rules-only'} bundle: which label is the positive class?`);
    const read = readLabel(bundle, chosen);
    if (!read.ok) throw new Error(`--positive: ${read.message}`);
    this.positive = read.label;
  }

  add(row: RawRow, line: number, score: number): void {
    if (this.columns.length === 0) this.columns = Object.keys(row);
    if (!Object.hasOwn(row, this.column)) return;
    this.withColumn++;
    const value = row[this.column];
    if (value === null || value === undefined || value === '') return;
    const read = readLabel(this.bundle, value);
    if (!read.ok) throw new Error(`${this.file}:${line}: label ${this.column} ${read.message}`);
    this.labels.push(read.label === this.positive ? 1 : 0);
    this.scores.push(score);
  }

  /** Realized performance, computed as scikit-learn does; refused where it would mislead. */
  performance(allowReversedAuc: boolean): NonNullable<ReferenceProfile['performance']> {
    const { labels, scores, file } = this;
    if (this.withColumn === 0) {
      const near = nearMisses([this.column], this.columns).get(this.column);
      throw new Error(`${file} has no label column ${JSON.stringify(this.column)}${near ? ` (did you mean ${JSON.stringify(near)}?)` : ''}`);
    }
    if (labels.length === 0) throw new Error(`${file}: no row has a label in column ${JSON.stringify(this.column)}`);
    const positives = labels.reduce((a, b) => a + b, 0);
    if (positives === 0 || positives === labels.length) {
      const which = positives === 0 ? `none of the ${labels.length} labelled rows is ${this.positive}` : `all ${labels.length} labelled rows are ${this.positive}`;
      throw new Error(`${file}: ${which}: with one class the AUC is undefined; profile on data holding both classes`);
    }
    const auc = rocAuc(scores, labels);
    if (auc < 0.5 && !allowReversedAuc) {
      throw new ReversedAucError(
        `${file}: AUC ${auc.toFixed(4)} is below 0.5: the classes look reversed (the score ranks ${this.positive} lowest). ` +
          `Check outputs.classes (label 0, label 1, … as in training) and positive_class in rtml.yaml; ` +
          `if a model worse than chance is deliberate, pass --allow-reversed-auc. The reference was not written.`,
      );
    }
    return { label: this.column, positiveClass: this.positive, positiveRate: positives / labels.length, auc, logLoss: logLoss(scores, labels), brier: brierScore(scores, labels), data: file, rows: labels.length };
  }
}

/** Writes the profile where the bundle's monitoring reads it (`monitoring.reference`, by default reference.json). */
export async function writeProfile(bundle: Bundle, profile: ReferenceProfile): Promise<string> {
  const file = await bundleFileForWriting(bundle.dir, bundle.manifest.monitoring?.reference ?? REFERENCE_FILE, 'reference');
  // One line per feature keeps the file diffable without spreading 1,001 quantiles over 1,001 lines.
  const lines = Object.entries(profile).map(([key, value]) =>
    key === 'features'
      ? `  "features": {\n${Object.entries(value as object).map(([name, f]) => `    ${JSON.stringify(name)}: ${JSON.stringify(f)}`).join(',\n')}\n  }`
      : `  ${JSON.stringify(key)}: ${JSON.stringify(value)}`,
  );
  await writeFile(file, `{\n${lines.join(',\n')}\n}\n`);
  return file;
}
