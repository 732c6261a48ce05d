/**
 * Bounded-memory, mergeable window state for live monitoring.
 *
 * Every decision is observed once: each feature's raw value is binned against the reference
 * profile's fixed edges (numeric) or declared categories (categorical), along with the score
 * and the action. The counts live in one flat Float64Array per histogram, so merging two
 * histograms of the same layout is adding arrays (min/max cells take the min/max), and
 * per-process or per-minute state rolls up by addition.
 *
 * Windows keep a fixed ring of such histograms, so memory does not grow with traffic:
 *   - count window: the last N observations as B+1 blocks of ⌈N/B⌉ (B full blocks plus the
 *     one being filled): a snapshot covers between the last N and the last N + N/B
 *     observations (exactly B·⌈N/B⌉ + the current block's fill, 1 to ⌈N/B⌉, once warm; N
 *     is in effect rounded up to a multiple of B). Also keeps the last N
 *     raw values of every numeric column (features and score) in Float64Array rings, for KS
 *     tests on small windows (exactly the last N observations; missing values are skipped).
 *     Memory: O(columns × bins × B + N × numeric columns).
 *   - time windows (default 5 min, 1 h, 1 day): rings of 60 buckets of duration/60 (5 s,
 *     1 min, 24 min), keyed by ⌊now / width⌋. A snapshot at `now` merges the buckets of the
 *     last 60 widths including the current one: it covers between duration − width and
 *     duration of history. A bucket is reset when its slot is reused for a newer period.
 * Time comes from the caller (`now`, ms), so tests control the clock.
 *
 * Cells per column (the rest of the file calls a column's run of cells its block):
 *   numeric:     missing, typeErrors, outOfRange, Σ(x−c), Σ(x−c)², min, max, counts[k]
 *   categorical: missing, typeErrors, unseen, counts[k]
 * with k = edges + 1 (numeric) or the number of declared categories, and c a fixed shift
 * (the reference mean) that keeps the variance accurate without giving up additivity.
 *
 * Value rules (the raw JSON value of the request, before defaults are applied):
 *   - null / undefined → missing; a number NaN → missing (NaN is how missing is encoded).
 *   - numeric column: a finite number is binned (and also counts as out of range when
 *     outside the schema's [min, max]); ±Infinity or a non-number → typeErrors.
 *   - categorical column: a string is looked up; booleans as 'true' / 'false'; a finite
 *     number as String(n) (as the encoding does); anything else → typeErrors; a value not
 *     among the categories → unseen (not in counts, so counts line up with the reference).
 */
import type { FeatureSpec } from '../bundle/manifest.ts';
import type { CategoricalReference, NumericReference, ReferenceProfile } from './reference.ts';

// ---------------------------------------------------------------------------------------
// Column specs and layout

export interface NumericColumn {
  kind: 'numeric';
  name: string;
  /** Interior bin edges, strictly increasing (reference.ts: bin i is edges[i−1] <= x < edges[i]). */
  edges: readonly number[];
  /** Schema bounds: values outside are counted as out of range (and still binned). */
  min?: number;
  max?: number;
  /** Subtracted before summing x and x² (use the reference mean); 0 by default. */
  shift?: number;
}

export interface CategoricalColumn {
  kind: 'categorical';
  name: string;
  /** Declared categories, in the order of `counts`. */
  categories: readonly string[];
}

export type ColumnSpec = NumericColumn | CategoricalColumn;

/** All columns of a service: its features, the model score and the decision mix. */
export interface ProfileSpec {
  features: readonly ColumnSpec[];
  score: NumericColumn | null;
  decisions: CategoricalColumn | null;
  /**
   * Features whose absolute contributions to the score are summed (attribution monitoring), in
   * the order contributions are given; null or absent: none.
   */
  contributions?: readonly string[] | null;
}

/** Cell offsets within a numeric column's block. */
export const NUMERIC_CELLS = Object.freeze({ missing: 0, typeErrors: 1, outOfRange: 2, sum: 3, sumSquares: 4, min: 5, max: 6, counts: 7 });
/** Cell offsets within a categorical column's block. */
export const CATEGORICAL_CELLS = Object.freeze({ missing: 0, typeErrors: 1, unseen: 2, counts: 3 });

const N_MISSING = 0;
const N_TYPE = 1;
const N_OOR = 2;
const N_SUM = 3;
const N_SUMSQ = 4;
const N_MIN = 5;
const N_MAX = 6;
const N_COUNTS = 7;
const C_MISSING = 0;
const C_TYPE = 1;
const C_UNSEEN = 2;
const C_COUNTS = 3;

/** A column compiled for fast observation. */
class CompiledColumn {
  readonly numeric: boolean;
  readonly size: number;
  readonly k: number;
  readonly edges: Float64Array;
  readonly lo: number;
  readonly hi: number;
  readonly shift: number;
  readonly index: Map<string, number>;
  readonly trueCell: number;
  readonly falseCell: number;

  constructor(readonly spec: ColumnSpec) {
    if (spec.kind === 'numeric') {
      this.numeric = true;
      this.edges = Float64Array.from(spec.edges);
      for (let i = 0; i < this.edges.length; i++) {
        if (!Number.isFinite(this.edges[i]) || (i > 0 && !(this.edges[i] > this.edges[i - 1]))) {
          throw new RangeError(`column ${spec.name}: edges must be finite and strictly increasing`);
        }
      }
      this.k = this.edges.length + 1;
      this.size = N_COUNTS + this.k;
      this.lo = spec.min ?? -Infinity;
      this.hi = spec.max ?? Infinity;
      this.shift = spec.shift !== undefined && Number.isFinite(spec.shift) ? spec.shift : 0;
      this.index = new Map();
      this.trueCell = -1;
      this.falseCell = -1;
    } else {
      this.numeric = false;
      this.edges = new Float64Array(0);
      this.k = spec.categories.length;
      this.size = C_COUNTS + this.k;
      this.lo = -Infinity;
      this.hi = Infinity;
      this.shift = 0;
      this.index = new Map();
      spec.categories.forEach((c, i) => {
        if (this.index.has(c)) throw new RangeError(`column ${spec.name}: duplicate category ${JSON.stringify(c)}`);
        this.index.set(c, C_COUNTS + i);
      });
      this.trueCell = this.index.get('true') ?? C_UNSEEN;
      this.falseCell = this.index.get('false') ?? C_UNSEEN;
    }
  }

  /** Same bins / categories (so counts can be added). */
  compatible(other: CompiledColumn): boolean {
    if (this === other) return true;
    if (this.numeric !== other.numeric || this.k !== other.k || this.shift !== other.shift) return false;
    if (this.numeric) return this.edges.every((e, i) => e === other.edges[i]) && this.lo === other.lo && this.hi === other.hi;
    const a = (this.spec as CategoricalColumn).categories;
    const b = (other.spec as CategoricalColumn).categories;
    return a.every((c, i) => c === b[i]);
  }

  initBlock(data: Float64Array, base: number): void {
    data.fill(0, base, base + this.size);
    if (this.numeric) {
      data[base + N_MIN] = Infinity;
      data[base + N_MAX] = -Infinity;
    }
  }
}

// Scratch output of cellFor for a valid numeric value (single-threaded: no allocation).
let scratchValue = 0;
let scratchOor = 0;

/**
 * The cell (relative to the column's block) of a finite number in a numeric column: its bin,
 * the number of edges <= value, after the fixed cells. The one binning rule, used by cellFor
 * and by EncodedObservation.encode's fast path.
 */
function numericCell(col: CompiledColumn, value: number): number {
  const e = col.edges;
  let lo = 0;
  let hi = e.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (e[mid] <= value) lo = mid + 1;
    else hi = mid;
  }
  return N_COUNTS + lo;
}

/**
 * The cell (relative to the column's block) a value increments. For a valid numeric value
 * (a returned cell >= N_COUNTS), the value is left in scratchValue and the out-of-range flag
 * in scratchOor.
 */
function cellFor(col: CompiledColumn, value: unknown): number {
  if (value === null || value === undefined) return N_MISSING; // == C_MISSING
  if (col.numeric) {
    if (typeof value !== 'number') return N_TYPE;
    if (value !== value) return N_MISSING;
    if (value === Infinity || value === -Infinity) return N_TYPE;
    scratchValue = value;
    scratchOor = value < col.lo || value > col.hi ? 1 : 0;
    return numericCell(col, value);
  }
  let key: string;
  if (typeof value === 'string') key = value;
  else if (typeof value === 'boolean') return value ? col.trueCell : col.falseCell;
  else if (typeof value === 'number') {
    if (value !== value) return C_MISSING;
    if (!Number.isFinite(value)) return C_TYPE;
    key = String(value);
  } else return C_TYPE;
  return col.index.get(key) ?? C_UNSEEN;
}

/** Adds one numeric observation's moments to a block (sums are shifted by the column's `shift` for precision). */
function addMoments(data: Float64Array, base: number, shift: number, value: number, oor: number): void {
  const v = value - shift;
  data[base + N_SUM] += v;
  data[base + N_SUMSQ] += v * v;
  if (value < data[base + N_MIN]) data[base + N_MIN] = value;
  if (value > data[base + N_MAX]) data[base + N_MAX] = value;
  if (oor !== 0) data[base + N_OOR] += oor;
}

/** Merge rule of a cell: add, take the minimum, take the maximum. */
const ADD = 0;
const MIN = 1;
const MAX = 2;

function mergeCells(target: Float64Array, source: Float64Array, rule: Uint8Array, from: number, to: number): void {
  for (let i = from; i < to; i++) {
    const r = rule[i];
    if (r === ADD) target[i] += source[i];
    else if (r === MIN) {
      if (source[i] < target[i]) target[i] = source[i];
    } else if (source[i] > target[i]) target[i] = source[i];
  }
}

// ---------------------------------------------------------------------------------------
// FeatureHistogram: one column

/**
 * The histogram of one column against its reference: numeric → counts per reference bin,
 * missing, type errors, out of range (schema bounds), moments, min and max; categorical →
 * counts per declared category, unseen, missing, type errors. A view over a block of a
 * shared buffer (inside a ProfileHistogram) or standalone with its own buffer.
 */
export class FeatureHistogram {
  /** Counts per bin / category: a live view, aligned with the reference frequencies. */
  readonly counts: Float64Array;
  /** @internal */
  readonly compiled: CompiledColumn;

  constructor(
    column: ColumnSpec | CompiledColumn,
    /** @internal */ readonly data?: Float64Array,
    /** @internal */ readonly offset = 0,
  ) {
    this.compiled = column instanceof CompiledColumn ? column : new CompiledColumn(column);
    if (!data) {
      this.data = new Float64Array(this.compiled.size);
      this.compiled.initBlock(this.data, 0);
      this.offset = 0;
    }
    const start = this.offset + (this.compiled.numeric ? N_COUNTS : C_COUNTS);
    this.counts = this.data!.subarray(start, start + this.compiled.k);
  }

  get column(): ColumnSpec {
    return this.compiled.spec;
  }

  get name(): string {
    return this.compiled.spec.name;
  }

  get kind(): 'numeric' | 'categorical' {
    return this.compiled.spec.kind;
  }

  private cell(i: number): number {
    return this.data![this.offset + i];
  }

  /** Values binned (numeric) or in a declared category (categorical): Σ counts. */
  get n(): number {
    let n = 0;
    const c = this.counts;
    for (let i = 0; i < c.length; i++) n += c[i];
    return n;
  }

  get missing(): number {
    return this.cell(N_MISSING);
  }

  get typeErrors(): number {
    return this.cell(N_TYPE);
  }

  /** Numeric: binned values outside the schema's [min, max] (0 for categorical). */
  get outOfRange(): number {
    return this.compiled.numeric ? this.cell(N_OOR) : 0;
  }

  /** Categorical: values that are not a declared category (0 for numeric). */
  get unseen(): number {
    return this.compiled.numeric ? 0 : this.cell(C_UNSEEN);
  }

  /** Every observation of the column: n + missing + typeErrors + unseen. */
  get total(): number {
    return this.n + this.missing + this.typeErrors + this.unseen;
  }

  /** Numeric: Σ x over binned values. */
  get sum(): number {
    if (!this.compiled.numeric) return NaN;
    return this.cell(N_SUM) + this.n * this.compiled.shift;
  }

  /** Numeric: Σ x² over binned values. */
  get sumSquares(): number {
    if (!this.compiled.numeric) return NaN;
    const c = this.compiled.shift;
    return this.cell(N_SUMSQ) + 2 * c * this.cell(N_SUM) + this.n * c * c;
  }

  get mean(): number {
    const n = this.n;
    if (!this.compiled.numeric || n === 0) return NaN;
    return this.compiled.shift + this.cell(N_SUM) / n;
  }

  /** Population variance (ddof 0, as np.var), from the shifted sums. */
  get variance(): number {
    const n = this.n;
    if (!this.compiled.numeric || n === 0) return NaN;
    const s = this.cell(N_SUM) / n;
    return Math.max(0, this.cell(N_SUMSQ) / n - s * s);
  }

  get std(): number {
    return Math.sqrt(this.variance);
  }

  /** Numeric: smallest binned value (Infinity when none). */
  get min(): number {
    return this.compiled.numeric ? this.cell(N_MIN) : NaN;
  }

  /** Numeric: largest binned value (−Infinity when none). */
  get max(): number {
    return this.compiled.numeric ? this.cell(N_MAX) : NaN;
  }

  /** counts / n (all zero when n is 0). */
  shares(): Float64Array {
    const n = this.n;
    const out = new Float64Array(this.counts.length);
    if (n > 0) for (let i = 0; i < out.length; i++) out[i] = this.counts[i] / n;
    return out;
  }

  /** Counts one raw value (see the value rules at the top of the file). */
  observe(value: unknown): void {
    const cell = cellFor(this.compiled, value);
    const data = this.data!;
    data[this.offset + cell] += 1;
    if (this.compiled.numeric && cell >= N_COUNTS) addMoments(data, this.offset, this.compiled.shift, scratchValue, scratchOor);
  }

  /** Adds another histogram of the same column (same bins or categories). */
  merge(other: FeatureHistogram): this {
    if (!this.compiled.compatible(other.compiled)) throw new RangeError(`cannot merge histograms of different columns (${this.name}, ${other.name})`);
    const size = this.compiled.size;
    const a = this.data!;
    const b = other.data!;
    for (let i = 0; i < size; i++) {
      const x = b[other.offset + i];
      const at = this.offset + i;
      if (this.compiled.numeric && i === N_MIN) {
        if (x < a[at]) a[at] = x;
      } else if (this.compiled.numeric && i === N_MAX) {
        if (x > a[at]) a[at] = x;
      } else a[at] += x;
    }
    return this;
  }

  /** A standalone copy. */
  clone(): FeatureHistogram {
    const h = new FeatureHistogram(this.compiled);
    h.data!.set(this.data!.subarray(this.offset, this.offset + this.compiled.size));
    return h;
  }

  reset(): void {
    this.compiled.initBlock(this.data!, this.offset);
  }
}

// ---------------------------------------------------------------------------------------
// ProfileHistogram: every column of a service, plus counters

/** Distinct keys kept per counter map; further keys are counted under OTHER_KEY. */
export const DEFAULT_MAX_COUNTER_KEYS = 256;
export const OTHER_KEY = '(other)';

/** The compiled layout shared by every histogram and window of one ProfileSpec. */
export class ProfileLayout {
  /** Features, then the score, then the decisions. */
  readonly columns: readonly CompiledColumn[];
  readonly names: readonly string[];
  readonly offsets: Int32Array;
  /** Indexes into columns of the numeric ones. */
  readonly numericColumns: Int32Array;
  /** Block offset and shift of each numeric column (parallel to numericColumns). */
  readonly numericOffsets: Int32Array;
  readonly numericShifts: Float64Array;
  readonly featureCount: number;
  readonly scoreIndex: number;
  readonly decisionIndex: number;
  /** Cells per histogram: 1 (observations) + every column's block + the contributions block. */
  readonly size: number;
  /**
   * The contributions block: rows explained, then per contribution feature the sum of its
   * absolute contributions (all added when merging); -1 when the spec has no contributions.
   */
  readonly contributionsAt: number;
  readonly contributionFeatures: readonly string[];
  /** Merge rule per cell. */
  readonly rules: Uint8Array;
  /** A fresh histogram's cells. */
  readonly initial: Float64Array;
  readonly maxCounterKeys: number;

  constructor(
    readonly spec: ProfileSpec,
    options: { maxCounterKeys?: number } = {},
  ) {
    const columns: CompiledColumn[] = spec.features.map((c) => new CompiledColumn(c));
    const names = new Set<string>();
    for (const c of columns) {
      if (names.has(c.spec.name)) throw new RangeError(`duplicate column ${c.spec.name}`);
      names.add(c.spec.name);
    }
    this.featureCount = columns.length;
    this.scoreIndex = spec.score ? columns.push(new CompiledColumn(spec.score)) - 1 : -1;
    this.decisionIndex = spec.decisions ? columns.push(new CompiledColumn(spec.decisions)) - 1 : -1;
    this.columns = columns;
    this.names = columns.map((c) => c.spec.name);
    this.offsets = new Int32Array(columns.length);
    let size = 1;
    const numeric: number[] = [];
    columns.forEach((c, i) => {
      this.offsets[i] = size;
      size += c.size;
      if (c.numeric) numeric.push(i);
    });
    this.contributionFeatures = spec.contributions ?? [];
    this.contributionsAt = this.contributionFeatures.length > 0 ? size : -1;
    if (this.contributionsAt >= 0) size += 1 + this.contributionFeatures.length;
    this.size = size;
    this.numericColumns = Int32Array.from(numeric);
    this.numericOffsets = Int32Array.from(numeric, (i) => this.offsets[i]);
    this.numericShifts = Float64Array.from(numeric, (i) => columns[i].shift);
    this.rules = new Uint8Array(size);
    this.initial = new Float64Array(size);
    columns.forEach((c, i) => {
      const base = this.offsets[i];
      c.initBlock(this.initial, base);
      if (c.numeric) {
        this.rules[base + N_MIN] = MIN;
        this.rules[base + N_MAX] = MAX;
      }
    });
    this.maxCounterKeys = options.maxCounterKeys ?? DEFAULT_MAX_COUNTER_KEYS;
  }

  /** Index of a feature column by name (−1 when absent). */
  featureIndex(name: string): number {
    const i = this.names.indexOf(name);
    return i >= 0 && i < this.featureCount ? i : -1;
  }
}

/** One observation, encoded once and applied to every histogram it belongs to. */
export class EncodedObservation {
  /** Absolute cell per column. */
  readonly cells: Int32Array;
  /** Raw value per column (numeric, binned), NaN otherwise. */
  readonly values: Float64Array;
  readonly oor: Uint8Array;
  fallbackCause: string | null = null;

  constructor(readonly layout: ProfileLayout) {
    const n = layout.columns.length;
    this.cells = new Int32Array(n);
    this.values = new Float64Array(n);
    this.oor = new Uint8Array(n);
  }

  private encodeColumn(i: number, value: unknown): void {
    const col = this.layout.columns[i];
    const cell = cellFor(col, value);
    this.cells[i] = this.layout.offsets[i] + cell;
    if (col.numeric && cell >= N_COUNTS) {
      this.values[i] = scratchValue;
      this.oor[i] = scratchOor;
    } else {
      this.values[i] = NaN;
      this.oor[i] = 0;
    }
  }

  /** Encodes a typed raw row (feature name → JSON value), the score, the action and the fallback cause. */
  encode(row: Readonly<Record<string, unknown>>, score: number | null, action: string | null, fallbackCause: string | null): this {
    const layout = this.layout;
    const names = layout.names;
    const columns = layout.columns;
    const offsets = layout.offsets;
    const cells = this.cells;
    const values = this.values;
    const oor = this.oor;
    for (let i = 0; i < layout.featureCount; i++) {
      const value = row[names[i]];
      const col = columns[i];
      // Fast path for a finite number in a numeric column (no scratch round trip); everything
      // else via cellFor. Both bin through numericCell.
      if (col.numeric && typeof value === 'number' && value - value === 0) {
        cells[i] = offsets[i] + numericCell(col, value);
        values[i] = value;
        oor[i] = value < col.lo || value > col.hi ? 1 : 0;
      } else this.encodeColumn(i, value);
    }
    if (layout.scoreIndex >= 0) this.encodeColumn(layout.scoreIndex, score);
    if (layout.decisionIndex >= 0) this.encodeColumn(layout.decisionIndex, action);
    this.fallbackCause = fallbackCause;
    return this;
  }
}

function bump(map: Map<string, number>, key: string, by: number, maxKeys: number): void {
  const v = map.get(key);
  if (v !== undefined) map.set(key, v + by);
  else if (map.size < maxKeys) map.set(key, by);
  else map.set(OTHER_KEY, (map.get(OTHER_KEY) ?? 0) + by);
}

/**
 * The histograms of all features of a service, the score (numeric) and the decision mix
 * (categorical over actions), plus counters:
 *   - fallbacks: fallback count by cause kind (pass a low-cardinality kind such as
 *     'model_error', 'timeout', 'guard', 'kill_switch', not a free-text message);
 *   - counters: generic named counts fed by the caller, by convention 'guard_failure',
 *     'rejected:<field>' (type errors at the edge), 'default:<feature>', 'stale:<feature>'.
 * Both maps keep at most maxCounterKeys distinct keys (default 256); further keys are counted
 * under '(other)' (so a map holds at most maxCounterKeys + 1 entries).
 */
export class ProfileHistogram {
  readonly data: Float64Array;
  readonly features: readonly FeatureHistogram[];
  readonly score: FeatureHistogram | null;
  readonly decisions: FeatureHistogram | null;
  readonly fallbacks = new Map<string, number>();
  readonly counters = new Map<string, number>();
  private readonly byName = new Map<string, FeatureHistogram>();

  constructor(readonly layout: ProfileLayout) {
    this.data = Float64Array.from(layout.initial);
    const views = layout.columns.map((c, i) => new FeatureHistogram(c, this.data, layout.offsets[i]));
    this.features = views.slice(0, layout.featureCount);
    for (const f of this.features) this.byName.set(f.name, f);
    this.score = layout.scoreIndex >= 0 ? views[layout.scoreIndex] : null;
    this.decisions = layout.decisionIndex >= 0 ? views[layout.decisionIndex] : null;
  }

  /** Rows observed. */
  get observations(): number {
    return this.data[0];
  }

  feature(name: string): FeatureHistogram | undefined {
    return this.byName.get(name);
  }

  /** Observes one decision. See EncodedObservation.encode for the arguments. */
  observe(row: Readonly<Record<string, unknown>>, score: number | null, action: string | null, fallbackCause: string | null = null): void {
    const enc = scratchEncoding(this.layout);
    this.apply(enc.encode(row, score, action, fallbackCause));
  }

  /** Adds an encoded observation. The hot path: no allocation unless a new counter key appears. */
  apply(enc: EncodedObservation): void {
    const data = this.data;
    const layout = this.layout;
    data[0] += 1;
    const cells = enc.cells;
    for (let i = 0; i < cells.length; i++) data[cells[i]] += 1;
    const numeric = layout.numericColumns;
    const numericOffsets = layout.numericOffsets;
    const numericShifts = layout.numericShifts;
    const values = enc.values;
    const oor = enc.oor;
    for (let j = 0; j < numeric.length; j++) {
      const i = numeric[j];
      const x = values[i];
      if (x !== x) continue;
      addMoments(data, numericOffsets[j], numericShifts[j], x, oor[i]);
    }
    if (enc.fallbackCause !== null) bump(this.fallbacks, enc.fallbackCause, 1, layout.maxCounterKeys);
  }

  /** Adds to a named counter. */
  count(key: string, by = 1): void {
    bump(this.counters, key, by, this.layout.maxCounterKeys);
  }

  /** Adds one explained row: its contributions, one per contribution feature (their absolute values are summed). */
  addContributions(values: ArrayLike<number>): void {
    const at = this.layout.contributionsAt;
    if (at < 0) return;
    const data = this.data;
    data[at] += 1;
    for (let i = 0; i < this.layout.contributionFeatures.length; i++) data[at + 1 + i] += Math.abs(values[i]);
  }

  /** Rows explained. */
  get explained(): number {
    return this.layout.contributionsAt < 0 ? 0 : this.data[this.layout.contributionsAt];
  }

  /** Per contribution feature, the sum of absolute contributions (a live view; empty without contributions). */
  get contributionSums(): Float64Array {
    const at = this.layout.contributionsAt;
    return at < 0 ? new Float64Array(0) : this.data.subarray(at + 1, at + 1 + this.layout.contributionFeatures.length);
  }

  /** Adds another histogram of the same layout (or an equivalent one). */
  merge(other: ProfileHistogram): this {
    if (other.layout !== this.layout) {
      const a = this.layout.columns;
      const b = other.layout.columns;
      if (a.length !== b.length || this.layout.size !== other.layout.size || !a.every((c, i) => c.compatible(b[i]))) {
        throw new RangeError('cannot merge profile histograms of different layouts');
      }
    }
    mergeCells(this.data, other.data, this.layout.rules, 0, this.layout.size);
    for (const [k, v] of other.fallbacks) bump(this.fallbacks, k, v, this.layout.maxCounterKeys);
    for (const [k, v] of other.counters) bump(this.counters, k, v, this.layout.maxCounterKeys);
    return this;
  }

  clone(): ProfileHistogram {
    const h = new ProfileHistogram(this.layout);
    h.data.set(this.data);
    for (const [k, v] of this.fallbacks) h.fallbacks.set(k, v);
    for (const [k, v] of this.counters) h.counters.set(k, v);
    return h;
  }

  reset(): void {
    this.data.set(this.layout.initial);
    this.fallbacks.clear();
    this.counters.clear();
  }
}

const scratchEncodings = new WeakMap<ProfileLayout, EncodedObservation>();
function scratchEncoding(layout: ProfileLayout): EncodedObservation {
  let enc = scratchEncodings.get(layout);
  if (!enc) scratchEncodings.set(layout, (enc = new EncodedObservation(layout)));
  return enc;
}

/** Replaces a histogram's contents with another's cells and counters (a copy posted from another thread). */
export function loadHistogram(target: ProfileHistogram, data: Float64Array, fallbacks: Iterable<[string, number]>, counters: Iterable<[string, number]>): void {
  target.data.set(data);
  target.fallbacks.clear();
  target.counters.clear();
  for (const [k, v] of fallbacks) target.fallbacks.set(k, v);
  for (const [k, v] of counters) target.counters.set(k, v);
}

function takeChanged(changed: Uint8Array, histograms: readonly ProfileHistogram[]): { index: number; histogram: ProfileHistogram }[] {
  const out: { index: number; histogram: ProfileHistogram }[] = [];
  for (let i = 0; i < changed.length; i++) {
    if (changed[i] === 0) continue;
    changed[i] = 0;
    out.push({ index: i, histogram: histograms[i] });
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Windows

/** The last N observations as B+1 blocks of ⌈N/B⌉ plus raw-value rings for numeric columns. */
export class CountWindow {
  readonly blocks: readonly ProfileHistogram[];
  readonly blockSize: number;
  /**
   * Last `size` raw values per numeric column (NaN where missing), by column index; empty without
   * raw values. Row r (counted from the last reset) is at r % size. On SharedArrayBuffers when
   * `sharedRaw`, so that another thread can read them (`pushRawRows`).
   */
  readonly raw: readonly Float64Array[];
  private current = 0;
  private fill = 0;
  private rawPos = 0;
  private rawCount = 0;
  /** Observations since the last reset: the next one's row number (a block's rows are consecutive). */
  private seen = 0;
  /** Per block: changed since `takeChanged` last returned it. */
  private readonly changed: Uint8Array;
  /** Per block: the row number of its first observation. */
  private readonly blockFirstRow: Float64Array;
  /** Per block: wall-clock ms of its first and latest observation or count (NaN: none yet), for merging replicas' blocks by time. */
  private readonly blockFirstAt: Float64Array;
  private readonly blockLastAt: Float64Array;
  /**
   * Per numeric column, the ring's values sorted (what the KS test needs at every evaluation),
   * kept up to date by merging instead of sorting 1,000 values again each time: between two
   * reads the values that entered and left the ring are noted (`entered`, `left`), and a read
   * removes the ones that left and merges in the ones that entered, O(N) instead of O(N log N).
   * Null until first read, and again after reset or when too much changed between two reads.
   */
  private readonly sorted: (SortedRing | null)[];

  constructor(
    readonly layout: ProfileLayout,
    readonly size: number,
    blocks: number,
    keepRaw = true,
    sharedRaw = false,
  ) {
    if (!(Number.isInteger(size) && size >= 1) || !(Number.isInteger(blocks) && blocks >= 1 && blocks <= size)) {
      throw new RangeError(`count window: size ${size} and blocks ${blocks} must be integers with 1 <= blocks <= size`);
    }
    this.blockSize = Math.ceil(size / blocks);
    this.blocks = Array.from({ length: blocks + 1 }, () => new ProfileHistogram(layout));
    const ring = () => (sharedRaw ? new Float64Array(new SharedArrayBuffer(size * Float64Array.BYTES_PER_ELEMENT)) : new Float64Array(size));
    this.raw = layout.columns.map((c) => (keepRaw && c.numeric ? ring().fill(NaN) : new Float64Array(0)));
    this.sorted = layout.columns.map(() => null);
    this.blockFirstRow = new Float64Array(blocks + 1);
    this.blockFirstAt = new Float64Array(blocks + 1).fill(NaN);
    this.blockLastAt = new Float64Array(blocks + 1).fill(NaN);
    this.changed = new Uint8Array(blocks + 1).fill(1);
  }

  /** The blocks changed since the last call (index, live histogram), for a copy kept elsewhere (`loadBlock`). */
  takeChanged(): { index: number; histogram: ProfileHistogram }[] {
    return takeChanged(this.changed, this.blocks);
  }

  /** The block observations and counters currently go to; `now` (ms, NaN: unknown) stamps it. */
  private head(now = NaN): ProfileHistogram {
    if (this.fill === this.blockSize) {
      this.current = (this.current + 1) % this.blocks.length;
      this.blocks[this.current].reset();
      this.fill = 0;
      this.blockFirstRow[this.current] = this.seen;
      this.blockFirstAt[this.current] = NaN;
      this.blockLastAt[this.current] = NaN;
    }
    const c = this.current;
    this.changed[c] = 1;
    if (now === now) {
      if (!(this.blockFirstAt[c] <= now)) this.blockFirstAt[c] = now;
      if (!(this.blockLastAt[c] >= now)) this.blockLastAt[c] = now;
    }
    return this.blocks[c];
  }

  apply(enc: EncodedObservation, now = NaN): void {
    this.head(now).apply(enc);
    this.fill++;
    const numeric = this.layout.numericColumns;
    const full = this.rawCount === this.size;
    for (let j = 0; j < numeric.length; j++) this.writeRaw(numeric[j], full, enc.values[numeric[j]]);
    this.nextRawRow();
  }

  /** Writes a numeric column's value of the row being added at the ring's position, noting it for the sorted copy. */
  private writeRaw(c: number, full: boolean, value: number): void {
    const ring = this.raw[c];
    if (ring.length === 0) return;
    const pos = this.rawPos;
    const sorted = this.sorted[c];
    if (sorted !== null && !sorted.note(full ? ring[pos] : NaN, value)) this.sorted[c] = null;
    ring[pos] = value;
  }

  private nextRawRow(): void {
    this.rawPos = this.rawPos + 1 === this.size ? 0 : this.rawPos + 1;
    if (this.rawCount < this.size) this.rawCount++;
    this.seen++;
  }

  count(key: string, by = 1, now = NaN): void {
    this.head(now).count(key, by);
  }

  /** Observations since the last reset. */
  get observed(): number {
    return this.seen;
  }

  /**
   * The raw values of the last `rows` observations (at most N), oldest first, row-major: per
   * row one value per numeric column in layout.numericColumns order (NaN where missing).
   */
  recentRaw(rows: number): Float64Array {
    const numeric = this.layout.numericColumns;
    const n = Math.min(rows, this.rawCount);
    const out = new Float64Array(n * numeric.length);
    for (let r = 0; r < n; r++) {
      const pos = (this.rawPos - n + r + this.size) % this.size;
      for (let j = 0; j < numeric.length; j++) {
        const ring = this.raw[numeric[j]];
        out[r * numeric.length + j] = ring.length === 0 ? NaN : ring[pos];
      }
    }
    return out;
  }

  /** Empties the raw-value rings only (a copy's, before it is fed from scratch). */
  resetRaw(): void {
    this.sorted.fill(null);
    for (const r of this.raw) r.fill(NaN);
    this.rawPos = 0;
    this.rawCount = 0;
    this.seen = 0;
  }

  /**
   * Adds rows of raw values only (as `recentRaw` gives them), not their histograms: a copy of
   * another window's raw rings (the evaluation worker's), for the KS tests.
   */
  pushRaw(rows: Float64Array): void {
    const numeric = this.layout.numericColumns;
    const width = numeric.length;
    for (let at = 0; at + width <= rows.length && width > 0; at += width) {
      const full = this.rawCount === this.size;
      for (let j = 0; j < width; j++) this.writeRaw(numeric[j], full, rows[at + j]);
      this.nextRawRow();
    }
  }

  /**
   * Adds rows `from` to `to` (exclusive; row numbers of `source`, as `observed` counts them) of
   * another count window's raw rings of the same size and layout (the monitor's, shared with its
   * evaluation worker): raw values only, not their histograms, for the KS tests. The caller makes
   * sure those rows are still in `source` (fewer than `size` rows observed after `from`).
   */
  pushRawRows(source: readonly Float64Array[], from: number, to: number): void {
    const numeric = this.layout.numericColumns;
    for (let row = from; row < to; row++) {
      const at = row % this.size;
      const full = this.rawCount === this.size;
      for (let j = 0; j < numeric.length; j++) this.writeRaw(numeric[j], full, source[numeric[j]][at]);
      this.nextRawRow();
    }
  }

  addContributions(values: ArrayLike<number>, now = NaN): void {
    this.head(now).addContributions(values);
  }

  /**
   * The blocks holding anything, oldest first, each with its time span and the non-missing raw
   * values of its rows still in the raw rings (every row but, in the oldest block once more than
   * N rows are covered, those that left the rings), per numeric column in layout order. The
   * histograms are the live blocks: copy before keeping them.
   */
  exportBlocks(): CountBlockExport[] {
    const out: CountBlockExport[] = [];
    const count = this.blocks.length;
    const ringFrom = this.seen - this.rawCount;
    for (let k = 1; k <= count; k++) {
      const b = (this.current + k) % count;
      const h = this.blocks[b];
      if (h.observations === 0 && h.counters.size === 0 && h.explained === 0) continue;
      const first = Math.max(this.blockFirstRow[b], ringFrom);
      const last = this.blockFirstRow[b] + h.observations;
      const raw: Float64Array[] = [];
      for (const c of this.layout.numericColumns) {
        const ring = this.raw[c];
        const values = new Float64Array(Math.max(0, last - first));
        let n = 0;
        if (ring.length > 0) {
          for (let row = first; row < last; row++) {
            const v = ring[row % this.size];
            if (v === v) values[n++] = v;
          }
        }
        raw.push(values.subarray(0, n));
      }
      out.push({ firstAt: this.blockFirstAt[b], lastAt: this.blockLastAt[b], histogram: h, raw });
    }
    return out;
  }

  /** Observations currently covered by a snapshot (N to N + N/B once warm). */
  get covered(): number {
    let n = 0;
    for (const b of this.blocks) n += b.observations;
    return n;
  }

  /** Merge of all blocks: the last N to N + ⌈N/B⌉ observations. */
  snapshot(): ProfileHistogram {
    const out = new ProfileHistogram(this.layout);
    for (const b of this.blocks) out.merge(b);
    return out;
  }

  /**
   * The non-missing raw values of a numeric column over exactly the last N observations,
   * oldest first (a fresh array). Null when the column is not numeric or raw values are off.
   */
  rawValues(column: number | string): Float64Array | null {
    const i = typeof column === 'number' ? column : this.layout.featureIndex(column);
    const ring = this.raw[i];
    if (!ring || ring.length === 0) return null;
    const out = new Float64Array(this.rawCount);
    let k = 0;
    const start = this.rawCount < this.size ? 0 : this.rawPos;
    for (let j = 0; j < this.rawCount; j++) {
      const v = ring[(start + j) % this.size];
      if (v === v) out[k++] = v;
    }
    return out.slice(0, k);
  }

  /**
   * The same values as `rawValues`, sorted ascending: a view that stays valid until the next
   * observation (do not modify it). Null when the column is not numeric or raw values are off.
   */
  sortedRawValues(column: number): Float64Array | null {
    let sorted = this.sorted[column];
    if (sorted === null) {
      const values = this.rawValues(column);
      if (values === null) return null;
      sorted = this.sorted[column] = new SortedRing(values.sort(), this.size);
    }
    return sorted.values();
  }

  reset(): void {
    this.changed.fill(1);
    this.sorted.fill(null);
    for (const b of this.blocks) b.reset();
    for (const r of this.raw) r.fill(NaN);
    this.current = 0;
    this.fill = 0;
    this.rawPos = 0;
    this.rawCount = 0;
    this.seen = 0;
    this.blockFirstRow.fill(0);
    this.blockFirstAt.fill(NaN);
    this.blockLastAt.fill(NaN);
  }
}

/** One count-window block as exported for merging (see CountWindow.exportBlocks). */
export interface CountBlockExport {
  /** Wall-clock ms of its first and latest observation or count (NaN when never stamped). */
  firstAt: number;
  lastAt: number;
  histogram: ProfileHistogram;
  /** Per numeric column (layout.numericColumns order), the non-missing raw values of its rows. */
  raw: Float64Array[];
}

/** The sorted values of one raw-value ring, and what entered and left it since the last read. */
class SortedRing {
  private data: Float64Array;
  private length: number;
  private readonly entered: Float64Array;
  private readonly left: Float64Array;
  private enteredN = 0;
  private leftN = 0;

  constructor(sorted: Float64Array, size: number) {
    this.data = new Float64Array(size);
    this.data.set(sorted);
    this.length = sorted.length;
    // Beyond half a ring of changes, a value could enter and leave between two reads: the caller
    // drops this and sorts afresh (rare: the monitor reads every few dozen observations).
    const most = Math.max(1, size >> 1);
    this.entered = new Float64Array(most);
    this.left = new Float64Array(most);
  }

  /** Notes one ring update (NaN: nothing); false when too much changed since the last read. */
  note(leaving: number, entering: number): boolean {
    if (leaving === leaving) {
      if (this.leftN === this.left.length) return false;
      this.left[this.leftN++] = leaving;
    }
    if (entering === entering) {
      if (this.enteredN === this.entered.length) return false;
      this.entered[this.enteredN++] = entering;
    }
    return true;
  }

  values(): Float64Array {
    if (this.enteredN > 0 || this.leftN > 0) this.apply();
    return this.data.subarray(0, this.length);
  }

  /** Removes the values that left (each is in `data`), merges in the ones that entered. */
  private apply(): void {
    const old = this.data;
    const n = this.length;
    const left = this.left.subarray(0, this.leftN).sort();
    const entered = this.entered.subarray(0, this.enteredN).sort();
    const out = new Float64Array(old.length);
    let i = 0;
    let l = 0;
    let e = 0;
    let k = 0;
    while (i < n) {
      const v = old[i++];
      if (l < left.length && v === left[l]) {
        l++; // -0 and 0 are interchangeable here: nothing downstream tells them apart
        continue;
      }
      while (e < entered.length && entered[e] < v) out[k++] = entered[e++];
      out[k++] = v;
    }
    while (e < entered.length) out[k++] = entered[e++];
    this.data = out;
    this.length = k;
    this.enteredN = 0;
    this.leftN = 0;
  }
}

/** A sliding time window: a ring of buckets of duration/buckets ms each. */
export class TimeWindow {
  readonly buckets: readonly ProfileHistogram[];
  /** The period (⌊t / width⌋) each bucket holds; −Infinity when unused. */
  readonly periods: Float64Array;
  readonly width: number;
  private latest = -Infinity;
  /** Per bucket: changed since `takeChanged` last returned it. */
  private readonly changed: Uint8Array;
  /** Observations and counts dropped because they arrived for a period that has left the window. */
  late = 0;

  constructor(
    readonly layout: ProfileLayout,
    readonly name: string,
    readonly duration: number,
    bucketCount = 60,
  ) {
    if (!(duration > 0) || !(Number.isInteger(bucketCount) && bucketCount >= 1)) throw new RangeError(`time window ${name}: bad duration or bucket count`);
    this.width = duration / bucketCount;
    this.buckets = Array.from({ length: bucketCount }, () => new ProfileHistogram(layout));
    this.periods = new Float64Array(bucketCount).fill(-Infinity);
    this.changed = new Uint8Array(bucketCount).fill(1);
  }

  /** The buckets changed since the last call (index, live histogram; periods[index] is its period), for a copy kept elsewhere. */
  takeChanged(): { index: number; histogram: ProfileHistogram }[] {
    return takeChanged(this.changed, this.buckets);
  }

  /** The bucket for time `now`, rolled over if its slot held an older period; null if too late. */
  private bucketAt(now: number): ProfileHistogram | null {
    const period = Math.floor(now / this.width);
    const count = this.buckets.length;
    if (period > this.latest) this.latest = period;
    else if (period <= this.latest - count) return null;
    const slot = ((period % count) + count) % count;
    const held = this.periods[slot];
    this.changed[slot] = 1;
    if (held === period) return this.buckets[slot];
    if (held > period) return null;
    this.buckets[slot].reset();
    this.periods[slot] = period;
    return this.buckets[slot];
  }

  apply(enc: EncodedObservation, now: number): void {
    const b = this.bucketAt(now);
    if (b) b.apply(enc);
    else this.late++;
  }

  /** Adds a histogram of `operations` observations, counts and contributions, all at time `now`. */
  add(h: ProfileHistogram, now: number, operations: number): void {
    const b = this.bucketAt(now);
    if (b) b.merge(h);
    else this.late += operations;
  }

  count(key: string, now: number, by = 1): void {
    const b = this.bucketAt(now);
    if (b) b.count(key, by);
    else this.late++;
  }

  addContributions(values: ArrayLike<number>, now: number): void {
    const b = this.bucketAt(now);
    if (b) b.addContributions(values);
    else this.late++;
  }

  /** Merge of the buckets of the last `buckets` periods up to and including now's. */
  snapshot(now: number): ProfileHistogram {
    const out = new ProfileHistogram(this.layout);
    const period = Math.floor(now / this.width);
    const count = this.buckets.length;
    for (let s = 0; s < count; s++) {
      const p = this.periods[s];
      if (p <= period && p > period - count) out.merge(this.buckets[s]);
    }
    return out;
  }

  /** The buckets a snapshot at `now` would merge that hold anything, with their periods (live histograms: copy before keeping). */
  exportBuckets(now: number): { period: number; histogram: ProfileHistogram }[] {
    const period = Math.floor(now / this.width);
    const count = this.buckets.length;
    const out: { period: number; histogram: ProfileHistogram }[] = [];
    for (let s = 0; s < count; s++) {
      const p = this.periods[s];
      const h = this.buckets[s];
      if (p <= period && p > period - count && (h.observations > 0 || h.counters.size > 0 || h.explained > 0)) out.push({ period: p, histogram: h });
    }
    return out.sort((a, b) => a.period - b.period);
  }

  reset(): void {
    this.changed.fill(1);
    for (const b of this.buckets) b.reset();
    this.periods.fill(-Infinity);
    this.latest = -Infinity;
    this.late = 0;
  }
}

export interface TimeWindowSpec {
  name: string;
  durationMs: number;
  /** Buckets in the ring (default 60). */
  buckets?: number;
}

export interface MonitorWindowOptions {
  /**
   * The count window: last `size` observations in `blocks` blocks (default 10,000 in 10); false
   * for none. `sharedRaw`: its raw-value rings on SharedArrayBuffers (see CountWindow.raw).
   */
  count?: { size: number; blocks: number; keepRaw?: boolean; sharedRaw?: boolean } | false;
  /** Default: 5m, 1h, 1d with 60 buckets each (5 s, 1 min, 24 min). */
  time?: readonly TimeWindowSpec[];
  /** Distinct counter / fallback keys per histogram (default 256). */
  maxCounterKeys?: number;
}

export const DEFAULT_TIME_WINDOWS: readonly TimeWindowSpec[] = Object.freeze([
  { name: '5m', durationMs: 5 * 60_000 },
  { name: '1h', durationMs: 60 * 60_000 },
  { name: '1d', durationMs: 24 * 60 * 60_000 },
]);

/** The window name of the count window in MonitorWindows.snapshot. */
export const COUNT_WINDOW = 'count';

/**
 * What the monitor's evaluation reads of a set of windows: one process's MonitorWindows, or
 * a fleet's merged exports (window-export.ts).
 */
export interface WindowSource {
  readonly windowNames: string[];
  snapshot(window: string, now: number): ProfileHistogram;
  /** A numeric feature's raw values over the count window, sorted ascending (for KS), or null. */
  sortedRawValues(feature: string): Float64Array | null;
  sortedRawScores(): Float64Array | null;
}

/**
 * Every window of one service's monitoring state. `observe` encodes a decision once and adds
 * it to the count window and to every time window; `snapshot(name, now)` returns a merged
 * ProfileHistogram of one window ('count' or a time window's name).
 */
export class MonitorWindows implements WindowSource {
  readonly layout: ProfileLayout;
  readonly countWindow: CountWindow | null;
  private readonly times: readonly TimeWindow[];
  private readonly enc: EncodedObservation;
  /**
   * What the time windows have not been given yet: the observations, counts and contributions
   * since `stagedPeriods` last changed, all in the same bucket of every time window, kept as one
   * histogram (one `apply` per decision instead of one per time window). It is added to each
   * window's bucket when time moves to another bucket of any of them, or before anything reads
   * the time windows (`timeWindows`, `snapshot`, `reset`).
   */
  private readonly staged: ProfileHistogram;
  /** Per time window, the period of the staged operations; `stagedAt`: the time of one of them. */
  private readonly stagedPeriods: Float64Array;
  private stagedAt = NaN;
  private stagedOperations = 0;

  constructor(spec: ProfileSpec | ProfileLayout, options: MonitorWindowOptions = {}) {
    this.layout = spec instanceof ProfileLayout ? spec : new ProfileLayout(spec, { maxCounterKeys: options.maxCounterKeys });
    const count = options.count === undefined ? { size: 10_000, blocks: 10 } : options.count;
    this.countWindow = count ? new CountWindow(this.layout, count.size, count.blocks, count.keepRaw ?? true, count.sharedRaw ?? false) : null;
    const names = new Set<string>([COUNT_WINDOW]);
    this.times = (options.time ?? DEFAULT_TIME_WINDOWS).map((w) => {
      if (names.has(w.name)) throw new RangeError(`duplicate window name ${w.name}`);
      names.add(w.name);
      return new TimeWindow(this.layout, w.name, w.durationMs, w.buckets ?? 60);
    });
    this.enc = new EncodedObservation(this.layout);
    this.staged = new ProfileHistogram(this.layout);
    this.stagedPeriods = new Float64Array(this.times.length).fill(NaN);
  }

  /** The time windows, up to date. */
  get timeWindows(): readonly TimeWindow[] {
    this.flushStaged();
    return this.times;
  }

  get windowNames(): string[] {
    return [...(this.countWindow ? [COUNT_WINDOW] : []), ...this.times.map((w) => w.name)];
  }

  /** The staging histogram for an operation at `now`, after handing the staged ones over if `now` is in another bucket. */
  private stage(now: number): ProfileHistogram {
    const times = this.times;
    const periods = this.stagedPeriods;
    for (let i = 0; i < times.length; i++) {
      if (Math.floor(now / times[i].width) === periods[i]) continue;
      this.flushStaged();
      for (let j = 0; j < times.length; j++) periods[j] = Math.floor(now / times[j].width);
      this.stagedAt = now;
      break;
    }
    this.stagedOperations++;
    return this.staged;
  }

  /** Adds the staged operations to every time window. */
  private flushStaged(): void {
    if (this.stagedOperations === 0) return;
    for (const w of this.times) w.add(this.staged, this.stagedAt, this.stagedOperations);
    this.staged.reset();
    this.stagedOperations = 0;
  }

  /**
   * Observes one decision at time `now` (ms): the typed raw row, the score (null without one),
   * the action (null without a policy) and the fallback cause kind (null when the model decided).
   */
  observe(row: Readonly<Record<string, unknown>>, score: number | null, action: string | null, fallbackCause: string | null, now: number): void {
    const enc = this.enc.encode(row, score, action, fallbackCause);
    this.countWindow?.apply(enc, now);
    if (this.times.length > 0) this.stage(now).apply(enc);
  }

  /** Adds to a named counter in every window (rejected requests, guard failures, defaults served). */
  count(key: string, now: number, by = 1): void {
    this.countWindow?.count(key, by, now);
    if (this.times.length > 0) this.stage(now).count(key, by);
  }

  /** Adds one explained decision's contributions (in the layout's contribution feature order) to every window. */
  observeContributions(values: ArrayLike<number>, now: number): void {
    this.countWindow?.addContributions(values, now);
    if (this.times.length > 0) this.stage(now).addContributions(values);
  }

  snapshot(window: string, now: number): ProfileHistogram {
    if (window === COUNT_WINDOW) {
      if (!this.countWindow) throw new RangeError('no count window');
      return this.countWindow.snapshot();
    }
    const w = this.timeWindows.find((t) => t.name === window);
    if (!w) throw new RangeError(`no window ${window}; have ${this.windowNames.join(', ')}`);
    return w.snapshot(now);
  }

  /** Raw values of a numeric feature over the last N observations (count window), or null. */
  rawValues(feature: string): Float64Array | null {
    const i = this.layout.featureIndex(feature);
    return i < 0 ? null : (this.countWindow?.rawValues(i) ?? null);
  }

  /** `rawValues`, sorted ascending (a view valid until the next observation), for the KS test. */
  sortedRawValues(feature: string): Float64Array | null {
    const i = this.layout.featureIndex(feature);
    return i < 0 ? null : (this.countWindow?.sortedRawValues(i) ?? null);
  }

  /** `rawScores`, sorted ascending (a view valid until the next observation). */
  sortedRawScores(): Float64Array | null {
    return this.layout.scoreIndex < 0 ? null : (this.countWindow?.sortedRawValues(this.layout.scoreIndex) ?? null);
  }

  /** Raw scores over the last N observations (count window), or null. */
  rawScores(): Float64Array | null {
    return this.layout.scoreIndex < 0 ? null : (this.countWindow?.rawValues(this.layout.scoreIndex) ?? null);
  }

  reset(): void {
    this.countWindow?.reset();
    this.staged.reset();
    this.stagedOperations = 0;
    this.stagedPeriods.fill(NaN);
    for (const w of this.times) w.reset();
  }
}

// ---------------------------------------------------------------------------------------
// Building the spec from a bundle and its reference profile

export interface ProfileSpecOptions {
  /** The policy's actions, in order; default: the reference's decision keys; none → no decisions column. */
  actions?: readonly string[] | null;
  /** Score column bounds (e.g. {min: 0, max: 1} for a probability); the column exists when the reference has a score or this is given. */
  score?: { min?: number; max?: number } | null;
  /** Sum absolute contributions of every feature (attribution monitoring). */
  contributions?: boolean;
}

/**
 * Column specs for a bundle's features against its reference profile: number/integer →
 * numeric with the reference edges, schema min/max and the reference mean as shift (one
 * bin without a numeric reference); boolean → categorical 'false'/'true'; category →
 * categorical over the declared values. Throws when the reference disagrees on a column's kind.
 */
export function profileSpec(features: readonly FeatureSpec[], reference: ReferenceProfile | null, options: ProfileSpecOptions = {}): ProfileSpec {
  const cols: ColumnSpec[] = features.map((f) => {
    const ref = reference?.features[f.name];
    if (f.type === 'number' || f.type === 'integer') {
      if (ref && ref.kind !== 'numeric') throw new RangeError(`reference for ${f.name} is ${ref.kind}, the feature is ${f.type}`);
      const r = ref as NumericReference | undefined;
      return { kind: 'numeric', name: f.name, edges: r?.edges ?? [], min: f.min, max: f.max, shift: r && Number.isFinite(r.mean) ? r.mean : 0 };
    }
    if (ref && ref.kind !== 'categorical') throw new RangeError(`reference for ${f.name} is ${ref.kind}, the feature is ${f.type}`);
    return { kind: 'categorical', name: f.name, categories: f.type === 'boolean' ? ['false', 'true'] : f.values };
  });
  let score: NumericColumn | null = null;
  if (reference?.score || options.score) {
    const r = reference?.score ?? null;
    score = { kind: 'numeric', name: 'score', edges: r?.edges ?? [], min: options.score?.min, max: options.score?.max, shift: r && Number.isFinite(r.mean) ? r.mean : 0 };
  }
  const actions = options.actions ?? (reference?.decisions ? Object.keys(reference.decisions) : null);
  const decisions: CategoricalColumn | null = actions ? { kind: 'categorical', name: 'decision', categories: actions } : null;
  return { features: cols, score, decisions, contributions: options.contributions ? features.map((f) => f.name) : null };
}

/**
 * Reference shares aligned with a categorical column's counts (0 for a category the
 * reference does not list).
 */
export function categoryShares(column: CategoricalColumn, frequencies: CategoricalReference['frequencies'] | Record<string, number>): Float64Array {
  return Float64Array.from(column.categories, (c) => frequencies[c] ?? 0);
}
