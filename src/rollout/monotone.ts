/**
 * Directional expectations on tree models, proven on the trees: "more annual_inc never raises
 * P(bad)", whatever the other features are.
 *
 * A forest's margin is the sum of its trees' leaves, and the score a monotone increasing
 * function of the margin (binary:logistic, regression objectives). Each tree is checked
 * exactly: every leaf is a box (an interval or a category set per input column, and whether a
 * missing value reaches it), and the tree is monotone in feature f, all else fixed, iff for
 * every two leaves A and B whose f-intervals are ordered (A below B) and whose boxes over the
 * other columns intersect (some row reaches both, moving only f), the leaf values are ordered
 * the same way. The declared ranges (min, max, integer, nullable) bound every box. If every
 * tree is monotone, so is their sum: proven. If some tree is not, trees may still compensate
 * one another (the exact question over all combinations is exponential), so the reference rows
 * are searched for a counterexample: every threshold of f, and the value just below it, moving
 * only f. Found: the expectation fails with that row; not found: "checked", not proven.
 */
import type { ModelBundle } from '../bundle/load.ts';
import type { FeatureSpec } from '../bundle/manifest.ts';
import type { XgbModel, XgbTree } from '../models/xgboost/format.ts';

/** What a box holds for one input column. */
interface ColumnBox {
  lo: number;
  hi: number;
  /** Allowed category codes, for a categorical column (null: numeric). */
  codes: Set<number> | null;
  missing: boolean;
  integer: boolean;
}

interface Leaf {
  node: number;
  value: number;
  /** The feature's interval [lo, hi) (present values only). */
  lo: number;
  hi: number;
  /** Constraints on the other columns met on the path (unconstrained columns are absent). */
  box: Map<number, ColumnBox>;
}

export interface TreeViolation {
  tree: number;
  /** Leaf reached with the lower values of the feature, and its value. */
  lowerLeaf: { node: number; value: number; range: [number, number] };
  higherLeaf: { node: number; value: number; range: [number, number] };
}

export interface MonotoneProof {
  /** Trees that are monotone in the feature on their own / that are not. */
  trees: number;
  violations: TreeViolation[];
}

const SCORE_RISES_WITH_MARGIN = new Set(['binary:logistic', 'reg:logistic', 'binary:logitraw', 'reg:squarederror', 'reg:linear', 'reg:squaredlogerror', 'reg:pseudohubererror', 'reg:absoluteerror', 'count:poisson', 'reg:gamma', 'reg:tweedie']);

/**
 * Whether the bundle's score moves with the margin in a known direction (+1 or -1), or null
 * when the proof does not apply (multi-class: softmax couples the classes; unknown objective).
 */
export function scoreSign(bundle: ModelBundle, model: XgbModel): 1 | -1 | null {
  if (model.numGroup !== 1 || !SCORE_RISES_WITH_MARGIN.has(model.objective)) return null;
  if (model.treeWeights && model.treeWeights.some((w) => w < 0)) return null;
  const outputs = bundle.manifest.outputs;
  if (outputs?.type === 'binary' && outputs.positive_class !== undefined && outputs.positive_class === outputs.classes[0]) return -1;
  return 1;
}

/** The starting box of every column: its declared range, whether it may be missing, its categories. */
function domains(bundle: ModelBundle): (ColumnBox | null)[] {
  const columns = bundle.encoding.columns;
  const byName = new Map<string, FeatureSpec>(bundle.encoding.features.map((f) => [f.name, f]));
  return columns.map((name) => {
    const f = byName.get(name);
    if (!f) return null; // a one-hot column: 0/1, left unconstrained
    const missing = f.nullable && f.default === undefined;
    if (f.type === 'category') return f.encoding === 'ordinal' ? { lo: -Infinity, hi: Infinity, codes: new Set(f.values.map((_, i) => i)), missing, integer: true } : null;
    if (f.type === 'boolean') return { lo: 0, hi: 2, codes: null, missing, integer: true };
    return { lo: f.min ?? -Infinity, hi: f.max === undefined ? Infinity : nextAbove(f.max), codes: null, missing, integer: f.type === 'integer' };
  });
}

/** The smallest float32 above v: [lo, hi) with hi = nextAbove(max) holds max itself. */
function nextAbove(v: number): number {
  const f = new Float32Array([v]);
  const i = new Int32Array(f.buffer);
  if (v >= 0) i[0]++;
  else i[0]--;
  return v === 0 ? 1.4e-45 : f[0];
}

function presentFeasible(b: ColumnBox): boolean {
  if (b.codes) return b.codes.size > 0;
  return b.integer ? Math.ceil(b.lo) < b.hi : b.lo < b.hi;
}

function feasible(b: ColumnBox): boolean {
  return b.missing || presentFeasible(b);
}

function intersect(a: ColumnBox, b: ColumnBox): ColumnBox {
  return {
    lo: Math.max(a.lo, b.lo),
    hi: Math.min(a.hi, b.hi),
    codes: a.codes && b.codes ? new Set([...a.codes].filter((c) => b.codes!.has(c))) : (a.codes ?? b.codes),
    missing: a.missing && b.missing,
    integer: a.integer || b.integer,
  };
}

/** Every reachable leaf of a tree, with its box, the feature's column `f` kept to present values in [fLo, fHi). */
function leaves(tree: XgbTree, f: number, fDomain: ColumnBox, start: (ColumnBox | null)[]): Leaf[] {
  const out: Leaf[] = [];
  const walk = (node: number, lo: number, hi: number, box: Map<number, ColumnBox>) => {
    if (tree.left[node] === -1) {
      out.push({ node, value: tree.value[node], lo, hi, box });
      return;
    }
    const column = tree.feature[node];
    const categories = tree.categories[node];
    const threshold = tree.value[node];
    if (column === f) {
      // Only present values of the feature: missing ones are not "more" or "less".
      const leftHi = Math.min(hi, threshold);
      const rightLo = Math.max(lo, threshold);
      const fits = (a: number, b: number) => presentFeasible({ ...fDomain, lo: a, hi: b });
      if (!categories) {
        if (fits(lo, leftHi)) walk(tree.left[node], lo, leftHi, box);
        if (fits(rightLo, hi)) walk(tree.right[node], rightLo, hi, box);
        return;
      }
      // A categorical split on the feature itself: no order to prove along; both sides, unbounded.
      walk(tree.left[node], lo, hi, box);
      walk(tree.right[node], lo, hi, box);
      return;
    }
    const current = box.get(column) ?? start[column] ?? { lo: -Infinity, hi: Infinity, codes: null, missing: true, integer: false };
    const defaultLeft = tree.defaultLeft[node] === 1;
    // A categorical split on a column whose categories are unknown (not declared ordinal): left unconstrained, which only ever finds more violations.
    const sides: [number, ColumnBox][] = categories && !current.codes
      ? [
          [tree.left[node], { ...current, missing: current.missing && defaultLeft }],
          [tree.right[node], { ...current, missing: current.missing && !defaultLeft }],
        ]
      : categories
      ? [
          [tree.left[node], { ...current, codes: new Set([...current.codes!].filter((c) => !categories.includes(c))), missing: current.missing && defaultLeft }],
          [tree.right[node], { ...current, codes: new Set([...current.codes!].filter((c) => categories.includes(c))), missing: current.missing && !defaultLeft }],
        ]
      : [
          [tree.left[node], { ...current, hi: Math.min(current.hi, threshold), missing: current.missing && defaultLeft }],
          [tree.right[node], { ...current, lo: Math.max(current.lo, threshold), missing: current.missing && !defaultLeft }],
        ];
    for (const [child, narrowed] of sides) {
      if (!feasible(narrowed)) continue;
      const next = new Map(box);
      next.set(column, narrowed);
      walk(child, lo, hi, next);
    }
  };
  walk(0, fDomain.lo, fDomain.hi, new Map());
  return out;
}

/** Whether some row reaches both leaves (their boxes over the other columns intersect). */
function compatible(a: Leaf, b: Leaf): boolean {
  for (const [column, boxA] of a.box) {
    const boxB = b.box.get(column);
    if (boxB && !feasible(intersect(boxA, boxB))) return false;
  }
  return true;
}

/**
 * Checks every tree: `rises` is +1 when the score must not go down as the feature goes up
 * (direction increasing, on the score's sign), -1 when it must not go up.
 */
export function proveMonotone(bundle: ModelBundle, model: XgbModel, feature: string, rises: 1 | -1): MonotoneProof {
  const f = bundle.encoding.columns.indexOf(feature);
  if (f < 0) throw new Error(`${feature} is not one of the model's columns`);
  const start = domains(bundle);
  const fDomain = start[f] ?? { lo: -Infinity, hi: Infinity, codes: null, missing: false, integer: false };
  const violations: TreeViolation[] = [];
  model.trees.forEach((tree, t) => {
    const all = leaves(tree, f, fDomain, start);
    const weight = model.treeWeights ? model.treeWeights[t] : 1;
    outer: for (const a of all) {
      for (const b of all) {
        if (a.hi > b.lo || a === b) continue; // a's interval must lie wholly below b's
        const change = weight * (b.value - a.value) * rises;
        if (change < 0 && compatible(a, b)) {
          violations.push({ tree: t, lowerLeaf: { node: a.node, value: a.value, range: [a.lo, a.hi] }, higherLeaf: { node: b.node, value: b.value, range: [b.lo, b.hi] } });
          break outer;
        }
      }
    }
  });
  return { trees: model.trees.length, violations };
}

/** The feature's values worth trying on a row: every split threshold in its range and the value just below each. */
export function probePoints(bundle: ModelBundle, model: XgbModel | null, feature: string, extra: readonly number[]): number[] {
  const f = bundle.encoding.columns.indexOf(feature);
  const spec = bundle.encoding.features.find((s) => s.name === feature);
  const integer = spec?.type === 'integer';
  const min = spec && 'min' in spec && spec.min !== undefined ? spec.min : -Infinity;
  const max = spec && 'max' in spec && spec.max !== undefined ? spec.max : Infinity;
  const points = new Set<number>(extra);
  for (const tree of model?.trees ?? []) {
    for (let n = 0; n < tree.left.length; n++) {
      if (tree.left[n] === -1 || tree.feature[n] !== f || tree.categories[n]) continue;
      const t = tree.value[n];
      if (integer) {
        points.add(Math.ceil(t));
        points.add(Math.ceil(t) - 1);
      } else {
        points.add(t);
        points.add(prevBelow(t));
      }
    }
  }
  if (Number.isFinite(min)) points.add(min);
  if (Number.isFinite(max)) points.add(max);
  return [...points].filter((v) => Number.isFinite(v) && v >= min && v <= max).sort((a, b) => a - b);
}

/** The largest float32 below v. */
function prevBelow(v: number): number {
  const f = new Float32Array([v]);
  const i = new Int32Array(f.buffer);
  if (v > 0) i[0]--;
  else if (v < 0) i[0]++;
  else return -1.4e-45;
  return f[0];
}
