/**
 * Exact feature contributions of an XGBoost forest: the numbers XGBoost 1.7's
 * `predict(pred_contribs=True)` gives, bit for bit (path-dependent TreeSHAP, Lundberg et al.
 * 2018, in margin units, one vector per output group with the bias last).
 *
 * What XGBoost computes (src/tree/tree_model.cc `TreeShap`, `ExtendPath`, `UnwindPath`,
 * `UnwoundPathSum`; src/predictor/cpu_predictor.cc `PredictContribution`), all in float32:
 * - A node's weight is its cover, the JSON model's `sum_hessian`; going from node n to child c
 *   keeps the fraction cover(c) / cover(n) of the "feature unknown" mass (the zero fraction).
 * - The hot child, the one the row follows, is chosen by prediction's own routing: missing to
 *   the default child, a category in the node's set goes right, else `x < threshold` goes left.
 *   The hot child is visited first with a one fraction carried from above (1 at first), the
 *   cold child second with 0.
 * - A feature split on again along a path is unwound from the path and extended anew at the
 *   end: its zero fractions multiply, its one fraction is 1 only if the row followed every split.
 * - At a leaf, each path feature i gets unwoundPathSum(i) × (one_i − zero_i) × leaf value,
 *   added to the tree's float32 vector; the tree's vector (times its dart weight) is added to
 *   the row's float32 totals, tree after tree; the bias column is the trees' expected values
 *   (leaf values weighted by cover, bottom-up) summed the same way, plus the base margin.
 *
 * Three ways to compute the same numbers, chosen per tree at load within a memory budget:
 * 1. Leaf tables. A leaf's additions depend only on the row's hot/cold choice at each node of
 *    the leaf's own path (L bits), not on the rest of the row: for a fixed model they are
 *    tabulated once at load, 2^L rows of d numbers for a leaf with d distinct path features,
 *    each by replaying XGBoost's float32 recursion along that path (the idea of Fast TreeSHAP
 *    v2, Yang 2021, here with XGBoost's own arithmetic). A row then walks the tree depth-first,
 *    hot child first as XGBoost does, carrying the path bits, and adds d table numbers per
 *    leaf in XGBoost's order: O(leaves × depth) per tree instead of O(leaves × depth²).
 * 2. Whole-tree tables. For a tree with s splits, the tree's whole float32 vector depends only
 *    on the row's s decisions: when 2^s rows of its features fit the budget, they are computed
 *    at load by the leaf-table walk, and a row costs s comparisons and one table row. The
 *    credit example's 200 trees (at most 13 splits each) take 2.4 M entries, 9.7 MB.
 * 3. The recursion itself (`treeShapF32`), for trees whose tables would not fit.
 * Leaf tables go first to every tree (in tree order) that fits, then trees are upgraded to
 * whole-tree tables, cheapest first, while the budget lasts; the rest use the recursion.
 * Every float32 rounding happens where XGBoost rounds, so all three give identical results.
 *
 * Division. Where XGBoost divides float32 x by float32 d, this file may multiply by the double
 * 1/d instead: fround(x · (1/d)) = fround(x / d) for float32 x and d. The exact quotient is never
 * a float32 rounding midpoint, and lies at least |q|·2^-49 away from one (x − d·m, for a midpoint
 * m, is a nonzero multiple of ulp(d)·ulp(m)/2), while the double product is within 2^-51·|q|
 * of it; so both round the same way (subnormals: the same bound holds on their fixed grid).
 * Multiplying instead of dividing halves the recursion's time; the golden tests check the
 * results bit for bit.
 *
 * Everything is numbers in typed arrays, validated by format.ts; no code is generated.
 * Rounding: Math.fround of an operation on float32 values is the float32 operation itself
 * (double has more than 2 × 24 + 2 bits, so rounding twice never differs), and a store into a
 * Float32Array rounds the same way.
 */
import { binaryHas } from './compile.ts';
import type { XgbModel, XgbTree } from './format.ts';

const f32 = Math.fround;

/** Categories at or above 2^24 are invalid in XGBoost (float32 cannot hold them exactly): they go left. */
const MAX_CATEGORY = 16777216;

/** How these contributions are computed, in words. */
export const TREESHAP_METHOD = 'path-dependent TreeSHAP, exactly as XGBoost predict(pred_contribs=True)';

/** Table entries (float32) a model may use by default: 16 MiB. */
export const DEFAULT_TABLE_BUDGET = 4 * 1024 * 1024;
/** Leaves deeper than this are not tabulated (a table of 2^L rows). */
const MAX_LEAF_TABLE_DEPTH = 12;
/** Trees with more splits than this get no whole-tree table (2^splits rows). */
const MAX_WHOLE_TABLE_SPLITS = 20;

export interface TreeShapOptions {
  /** Table entries (float32) the fast paths may use for the whole model; 0 explains every tree by the recursion. */
  tableBudget?: number;
  /** Whether trees may get whole-tree tables (default true); false keeps them on leaf tables. */
  wholeTreeTables?: boolean;
}

/** Exact contributions of one model; `contributions` writes rows × groups × (numFeature + 1) values. */
export interface TreeShap {
  readonly numFeature: number;
  readonly numGroup: number;
  /** Per group: the bias column (expected value of the trees + base margin), as XGBoost gives it. */
  readonly bias: Float64Array;
  /** Trees explained by a whole-tree table, by leaf tables, and by the recursion. */
  readonly wholeTableTrees: number;
  readonly leafTableTrees: number;
  readonly recursiveTrees: number;
  /** Table entries allocated (float32). */
  readonly tableEntries: number;
  /**
   * Writes `out[(r * numGroup + g) * (numFeature + 1) + f]`: feature f's contribution to row r's
   * margin of group g, and the bias at f = numFeature. `x` is row-major float32, NaN = missing.
   */
  contributions(x: Float32Array, rows: number, out: Float64Array): void;
}

/**
 * Why this model has no exact contributions, or null when it has: TreeSHAP weighs each node by
 * its cover, which the model file must carry (`sum_hessian`) and which must be positive on
 * every split (XGBoost divides by it).
 */
export function contributionsUnavailable(model: XgbModel): string | null {
  for (let t = 0; t < model.trees.length; t++) {
    const tree = model.trees[t];
    if (tree.cover === null) return `trees[${t}] has no sum_hessian (node cover), which TreeSHAP weighs paths by`;
    for (let i = 0; i < tree.left.length; i++) {
      if (tree.left[i] !== -1 && !(tree.cover[i] > 0)) return `trees[${t}].sum_hessian[${i}] is ${tree.cover[i]} on a split: TreeSHAP divides by it`;
    }
  }
  return null;
}

/** The tree's expected value as XGBoost computes it (cpu_predictor FillNodeMeanValues): float32, bottom-up by cover. */
function expectedValue(tree: XgbTree, cover: Float32Array): number {
  const mean = (i: number): number => {
    if (tree.left[i] === -1) return tree.value[i];
    const l = tree.left[i];
    const r = tree.right[i];
    const result = f32(f32(mean(l) * cover[l]) + f32(mean(r) * cover[r]));
    return f32(result / cover[i]);
  };
  return mean(0);
}

/** Whether a row goes left at a node: prediction's routing exactly (see compile.ts). */
function goesLeft(tree: XgbTree, i: number, v: number): boolean {
  if (v !== v) return tree.defaultLeft[i] === 1;
  const set = tree.categories[i];
  if (set === null) return v < tree.value[i];
  return !(v >= 0 && v < MAX_CATEGORY && binaryHas(set, Math.trunc(v)));
}

// ---------------------------------------------------------------------------------------------
// XGBoost's path arithmetic, in float32.

/**
 * The unique path of the recursion: parallel arrays of elements (feature, zero fraction, one
 * fraction, permutation weight), one frame per level, each a copy of its parent's with room for
 * one more element. Level k's frame starts at slot (k + 1)(k + 2)/2 + k at most; the frames of
 * a tree of depth D fit in (D + 2)(D + 3)/2 slots (XGBoost allocates the same).
 */
class UniquePath {
  readonly feature: Int32Array;
  readonly zero: Float32Array;
  readonly one: Float32Array;
  readonly weight: Float32Array;
  /** leafTerms' scratch: running values (float32 values, kept as doubles) and zero fractions by slot, each element's slot. */
  private readonly next: Float64Array;
  private readonly total: Float64Array;
  private readonly zeroOf: Float64Array;
  private readonly slot: Int32Array;
  /** A leaf's terms, in element order. */
  readonly terms: Float32Array;
  constructor(maxDepth: number) {
    const slots = ((maxDepth + 2) * (maxDepth + 3)) / 2;
    this.next = new Float64Array(maxDepth + 2);
    this.total = new Float64Array(maxDepth + 2);
    this.zeroOf = new Float64Array(maxDepth + 2);
    this.slot = new Int32Array(maxDepth + 2);
    this.terms = new Float32Array(maxDepth + 2);
    this.feature = new Int32Array(slots);
    this.zero = new Float32Array(slots);
    this.one = new Float32Array(slots);
    this.weight = new Float32Array(slots);
  }

  /** Copies the parent's frame (`depth + 1` elements at `from`) to `to`. */
  copy(from: number, to: number, depth: number): void {
    for (let i = 0; i <= depth; i++) {
      this.feature[to + i] = this.feature[from + i];
      this.zero[to + i] = this.zero[from + i];
      this.one[to + i] = this.one[from + i];
      this.weight[to + i] = this.weight[from + i];
    }
  }

  /** ExtendPath: element `depth` of the frame at `at` becomes (feature, zero, one). */
  extend(at: number, depth: number, zero: number, one: number, feature: number): void {
    const w = this.weight;
    this.feature[at + depth] = feature;
    this.zero[at + depth] = zero;
    this.one[at + depth] = one;
    w[at + depth] = depth === 0 ? 1 : 0;
    const rn = 1 / (depth + 1);
    for (let i = depth - 1; i >= 0; i--) {
      w[at + i + 1] = f32(w[at + i + 1] + f32(f32(f32(one * w[at + i]) * (i + 1)) * rn));
      w[at + i] = f32(f32(f32(zero * w[at + i]) * (depth - i)) * rn);
    }
  }

  /** UnwindPath: removes element `index` of a frame of `depth + 1` elements (the rest shift down). */
  unwind(at: number, depth: number, index: number): void {
    const w = this.weight;
    const one = this.one[at + index];
    const zero = this.zero[at + index];
    const n = depth + 1;
    const rn = 1 / n;
    let next = w[at + depth];
    for (let i = depth - 1; i >= 0; i--) {
      if (one !== 0) {
        const tmp = w[at + i];
        const pw = f32(f32(next * n) / f32((i + 1) * one));
        w[at + i] = pw;
        next = f32(tmp - f32(f32(f32(pw * zero) * (depth - i)) * rn));
      } else {
        w[at + i] = f32(f32(w[at + i] * n) / f32(zero * (depth - i)));
      }
    }
    for (let i = index; i < depth; i++) {
      this.feature[at + i] = this.feature[at + i + 1];
      this.zero[at + i] = this.zero[at + i + 1];
      this.one[at + i] = this.one[at + i + 1];
    }
  }

  /**
   * What each element 1..depth of a leaf's frame adds, into `out[0 .. depth)`:
   * UnwoundPathSum(e) × (one − zero) × leaf value. UnwoundPathSum is the total permutation
   * weight were element e unwound; its float32 operations are XGBoost's, element by element,
   * but the elements' independent chains are interleaved (the recursion's cost is almost all
   * here, O(depth²) a leaf), hot elements (one fraction ≠ 0) and cold ones in separate loops.
   */
  leafTerms(at: number, depth: number, leaf: number, out: Float32Array): void {
    const w = this.weight;
    const n = depth + 1;
    const rn = 1 / n;
    // Hot elements' running values at [0, hots), cold ones' totals after them; `slot` maps back.
    const { next, total, slot, zeroOf } = this;
    let hots = 0;
    let allOnes = true;
    for (let e = 1; e <= depth; e++) {
      if (this.one[at + e] === 0) continue;
      slot[e] = hots;
      next[hots] = w[at + depth];
      total[hots] = 0;
      zeroOf[hots] = this.zero[at + e];
      if (this.one[at + e] !== 1) allOnes = false;
      hots++;
    }
    let colds = hots;
    for (let e = 1; e <= depth; e++) {
      if (this.one[at + e] !== 0) continue;
      slot[e] = colds;
      total[colds] = 0;
      // Cold elements divide by their zero fraction: its inverse, once (see Division above).
      zeroOf[colds] = this.zero[at + e] !== 0 ? 1 / this.zero[at + e] : 0;
      colds++;
    }
    for (let i = depth - 1; i >= 0; i--) {
      const wi = w[at + i];
      const share = f32((depth - i) * rn);
      if (allOnes) {
        // One fractions are 1 or 0 (a row follows a branch or not): the divisor is i + 1.
        const inverseI = 1 / (i + 1);
        for (let k = 0; k < hots; k++) {
          const tmp = f32(f32(next[k] * n) * inverseI);
          total[k] = f32(total[k] + tmp);
          next[k] = f32(wi - f32(f32(tmp * zeroOf[k]) * share));
        }
      } else {
        for (let e = 1; e <= depth; e++) {
          const k = slot[e];
          if (k >= hots) continue;
          const tmp = f32(f32(next[k] * n) / f32((i + 1) * this.one[at + e]));
          total[k] = f32(total[k] + tmp);
          next[k] = f32(wi - f32(f32(tmp * zeroOf[k]) * share));
        }
      }
      const inverseShare = 1 / share;
      for (let k = hots; k < colds; k++) if (zeroOf[k] !== 0) total[k] = f32(total[k] + f32(f32(wi * zeroOf[k]) * inverseShare));
    }
    for (let e = 1; e <= depth; e++) out[e - 1] = f32(f32(total[slot[e]] * f32(this.one[at + e] - this.zero[at + e])) * leaf);
  }

  /** The fractions a feature already on the path brings into its next split (set by `takeOut`). */
  incomingZero = 1;
  incomingOne = 1;

  /**
   * TreeShap's "see if we have already split on this feature, if so undo that split so we can
   * redo it": unwinds `feature`'s element from the frame when it is there, keeping its fractions
   * in incomingZero / incomingOne (else 1 and 1); returns the frame's depth afterwards.
   */
  takeOut(at: number, depth: number, feature: number): number {
    let index = 0;
    while (index <= depth && this.feature[at + index] !== feature) index++;
    if (index === depth + 1) {
      this.incomingZero = 1;
      this.incomingOne = 1;
      return depth;
    }
    this.incomingZero = this.zero[at + index];
    this.incomingOne = this.one[at + index];
    this.unwind(at, depth, index);
    return depth - 1;
  }
}

/**
 * XGBoost's TreeShap for one tree and the row at `x[o ..]`: adds each feature's float32
 * contribution to `phi` (a Float32Array, so every addition rounds as XGBoost's does).
 */
export function treeShapF32(tree: XgbTree, x: Float32Array, o: number, phi: Float32Array, path: UniquePath = new UniquePath(tree.depth)): void {
  const walk = walks.get(tree) ?? new TreeWalk(tree);
  walks.set(tree, walk);
  walk.x = x;
  walk.o = o;
  walk.phi = phi;
  walk.path = path;
  // The root's frame (slot 1) holds only the empty path's element (feature -1, fractions 1).
  shapNode(walk, 0, 0, 0, 1, 1, -1);
}

/** One tree's arrays and the current row, for the recursion (one object of one shape: no closure per call). */
class TreeWalk {
  readonly left: Int32Array;
  readonly right: Int32Array;
  readonly cover: Float32Array;
  x: Float32Array = new Float32Array(0);
  o = 0;
  phi: Float32Array = new Float32Array(0);
  path = new UniquePath(0);
  constructor(readonly tree: XgbTree) {
    this.left = tree.left;
    this.right = tree.right;
    this.cover = tree.cover!;
  }
}

const walks = new WeakMap<XgbTree, TreeWalk>();

function shapNode(w: TreeWalk, node: number, parentAt: number, depth: number, parentZero: number, parentOne: number, parentFeature: number): void {
  const path = w.path;
  const at = parentAt + depth + 1;
  path.copy(parentAt, at, depth);
  path.extend(at, depth, parentZero, parentOne, parentFeature);
  const tree = w.tree;
  if (w.left[node] === -1) {
    const phi = w.phi;
    const leaf = tree.value[node];
    const terms = path.terms;
    path.leafTerms(at, depth, leaf, terms);
    for (let i = 1; i <= depth; i++) phi[path.feature[at + i]] += terms[i - 1];
    return;
  }
  const split = tree.feature[node];
  const left = goesLeft(tree, node, w.x[w.o + split]);
  const hot = left ? w.left[node] : w.right[node];
  const cold = left ? w.right[node] : w.left[node];
  const cover = w.cover;
  const inverseCover = 1 / cover[node];
  const hotZero = f32(cover[hot] * inverseCover);
  const coldZero = f32(cover[cold] * inverseCover);
  const d = path.takeOut(at, depth, split);
  const incomingZero = path.incomingZero;
  const incomingOne = path.incomingOne;
  shapNode(w, hot, at, d + 1, f32(hotZero * incomingZero), incomingOne, split);
  shapNode(w, cold, at, d + 1, f32(coldZero * incomingZero), 0, split);
}

export { UniquePath };

// ---------------------------------------------------------------------------------------------
// The tables.

/** One leaf's tabulated additions: its distinct path features in XGBoost's order and, per path pattern, their values. */
interface LeafTable {
  readonly features: number[];
  /** 2^L rows of `features.length` float32 values; row bit j set: the row followed the path at depth j. */
  readonly values: Float32Array;
}

/** The nodes from the root to a leaf (the leaf excluded), by leaf. */
function pathsToLeaves(tree: XgbTree): Map<number, number[]> {
  const out = new Map<number, number[]>();
  const walk = (node: number, above: number[]) => {
    if (tree.left[node] === -1) out.set(node, above);
    else {
      walk(tree.left[node], [...above, node]);
      walk(tree.right[node], [...above, node]);
    }
  };
  walk(0, []);
  return out;
}

/**
 * Replays XGBoost's recursion along one leaf's path for every hot/cold pattern of its nodes:
 * along the path the child taken is the hot one (pattern bit 1: one fraction carried from
 * above) or the cold one (bit 0: one fraction 0); its zero fraction is the same either way.
 */
function tabulateLeaf(tree: XgbTree, cover: Float32Array, leaf: number, nodes: number[], path: UniquePath): LeafTable {
  const L = nodes.length;
  let features: number[] | null = null;
  let values = new Float32Array(0);
  const visit = (j: number, parentAt: number, depth: number, parentZero: number, parentOne: number, parentFeature: number, pattern: number): void => {
    const at = parentAt + depth + 1;
    path.copy(parentAt, at, depth);
    path.extend(at, depth, parentZero, parentOne, parentFeature);
    if (j === L) {
      if (features === null) {
        features = Array.from(path.feature.subarray(at + 1, at + depth + 1));
        values = new Float32Array((1 << L) * depth);
      }
      path.leafTerms(at, depth, tree.value[leaf], path.terms);
      values.set(path.terms.subarray(0, depth), pattern * depth);
      return;
    }
    const node = nodes[j];
    const child = j + 1 < L ? nodes[j + 1] : leaf;
    const split = tree.feature[node];
    const zero = f32(cover[child] / cover[node]);
    const d = path.takeOut(at, depth, split);
    const incomingZero = path.incomingZero;
    const incomingOne = path.incomingOne;
    visit(j + 1, at, d + 1, f32(zero * incomingZero), incomingOne, split, pattern | (1 << j));
    visit(j + 1, at, d + 1, f32(zero * incomingZero), 0, split, pattern);
  };
  visit(0, 0, 0, 1, 1, -1, 0);
  return { features: features!, values };
}

/** Entries a tree's leaf tables need (2^L × d per leaf), or Infinity when a leaf is too deep to tabulate. */
function leafTableSize(tree: XgbTree, paths: Map<number, number[]>): number {
  let size = 0;
  for (const nodes of paths.values()) {
    if (nodes.length > MAX_LEAF_TABLE_DEPTH) return Infinity;
    size += (1 << nodes.length) * new Set(nodes.map((n) => tree.feature[n])).size;
  }
  return size;
}

/** How each tree is explained, fastest first. */
const WHOLE = 0;
const LEAVES = 1;
const RECURSION = 2;

/** Builds the contributions of a model that has them (see `contributionsUnavailable`). */
export function buildTreeShap(model: XgbModel, baseMargins: readonly number[], options: TreeShapOptions = {}): TreeShap {
  const steps = buildTreeShapInSteps(model, baseMargins, options);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/**
 * The same, one tree's tables at a time: the caller may let its event loop run between steps
 * (the credit example's tables take ~180 ms, a depth-8 forest's ~0.7 s).
 */
export function* buildTreeShapInSteps(model: XgbModel, baseMargins: readonly number[], options: TreeShapOptions = {}): Generator<void, TreeShap, void> {
  const why = contributionsUnavailable(model);
  if (why !== null) throw new Error(`no exact contributions for this model: ${why}`);
  const F = model.numFeature;
  const G = model.numGroup;
  const T = model.trees.length;
  const width = F + 1;
  const budget = options.tableBudget ?? DEFAULT_TABLE_BUDGET;
  const weights = model.treeWeights;

  // Bias: per group, the float32 sum in tree order of each tree's expected value times its
  // weight (1 unless dart), then the base margin.
  const biasF32 = new Float32Array(G);
  model.trees.forEach((tree, t) => {
    biasF32[tree.group] += f32(expectedValue(tree, tree.cover!) * (weights ? weights[t] : 1));
  });
  const bias = Float64Array.from(biasF32, (b, g) => f32(b + f32(baseMargins[g])));

  // Per tree: the features it splits on (U[usedFrom[t] .. usedTo[t]]), the only ones its vector
  // can touch, and its inner nodes.
  const usedFrom = new Int32Array(T);
  const usedTo = new Int32Array(T);
  const usedFeatures: number[] = [];
  const innerCount = new Int32Array(T);
  model.trees.forEach((tree, t) => {
    const used = new Set<number>();
    for (let i = 0; i < tree.left.length; i++) {
      if (tree.left[i] === -1) continue;
      used.add(tree.feature[i]);
      innerCount[t]++;
    }
    usedFrom[t] = usedFeatures.length;
    usedFeatures.push(...[...used].sort((a, b) => a - b));
    usedTo[t] = usedFeatures.length;
  });

  // Strategy per tree, within the budget: leaf tables for every tree whose leaves are shallow
  // enough (in tree order while they fit), the recursion for the rest; then whole-tree tables
  // for the trees whose upgrade costs least, while the budget lasts.
  const paths = model.trees.map(pathsToLeaves);
  const kind = new Uint8Array(T).fill(RECURSION);
  const leafSize = model.trees.map((tree, t) => leafTableSize(tree, paths[t]));
  const wholeSize = model.trees.map((_, t) => (innerCount[t] <= MAX_WHOLE_TABLE_SPLITS ? 2 ** innerCount[t] * (usedTo[t] - usedFrom[t]) : Infinity));
  let entries = 0;
  for (let t = 0; t < T; t++) {
    if (entries + leafSize[t] > budget) continue;
    kind[t] = LEAVES;
    entries += leafSize[t];
  }
  const upgrades = [...kind.keys()].filter((t) => options.wholeTreeTables !== false && kind[t] === LEAVES && Number.isFinite(wholeSize[t])).sort((a, b) => wholeSize[a] - wholeSize[b] || a - b);
  let wholeEntries = 0;
  for (const t of upgrades) {
    if (entries + wholeEntries + wholeSize[t] > budget) break;
    kind[t] = WHOLE;
    wholeEntries += wholeSize[t];
  }

  // Split nodes of every tabulated tree, tree after tree (tree t's from innerFrom[t]), as the
  // decision loop reads them: feature, threshold (NaN on categorical nodes), 1 when a missing
  // value goes right, and the category set as bit words in CW (start, or -1 when numeric; count).
  const innerFrom = new Int32Array(T + 1);
  let inners = 0;
  for (let t = 0; t < T; t++) {
    innerFrom[t] = inners;
    if (kind[t] !== RECURSION) inners += innerCount[t];
  }
  innerFrom[T] = inners;
  const IF = new Int32Array(inners);
  const ITH = new Float32Array(inners);
  const IDR = new Int32Array(inners);
  const ICS = new Int32Array(inners).fill(-1);
  const ICW = new Int32Array(inners);
  const categoryWords: number[] = [];

  // The leaf-table walk's node records, 4 int32 each, tree after tree (tree t's root at
  // nodeRoot[t]). Inner node k: N[4k] its split's index in the arrays above, N[4k+1] left
  // child, N[4k+2] right child (node indices), N[4k+3] its bit in path patterns (1 << depth).
  // Leaf k: N[4k] -1, N[4k+1] its table's offset, N[4k+2] d, N[4k+3] where its d path
  // features start in PF.
  let nodeCount = 0;
  model.trees.forEach((tree, t) => {
    if (kind[t] !== RECURSION) nodeCount += tree.left.length;
  });
  const N = new Int32Array(4 * nodeCount);
  const nodeRoot = new Int32Array(T).fill(-1);
  const leafTable = new Float32Array(entries);
  const pathFeatures: number[] = [];
  const path = new UniquePath(model.trees.reduce((m, tree) => Math.max(m, tree.depth), 0));
  let base = 0;
  let at = 0;
  for (let t = 0; t < T; t++) {
    const tree = model.trees[t];
    if (kind[t] === RECURSION) continue;
    nodeRoot[t] = base;
    let split = innerFrom[t];
    for (let i = 0; i < tree.left.length; i++) {
      const k = 4 * (base + i);
      if (tree.left[i] === -1) {
        const leaf = tabulateLeaf(tree, tree.cover!, i, paths[t].get(i)!, path);
        N[k] = -1;
        N[k + 1] = at;
        N[k + 2] = leaf.features.length;
        N[k + 3] = pathFeatures.length;
        pathFeatures.push(...leaf.features);
        leafTable.set(leaf.values, at);
        at += leaf.values.length;
        continue;
      }
      N[k] = split;
      N[k + 1] = base + tree.left[i];
      N[k + 2] = base + tree.right[i];
      IF[split] = tree.feature[i];
      IDR[split] = tree.defaultLeft[i] ? 0 : 1;
      const set = tree.categories[i];
      if (set === null) ITH[split] = tree.value[i];
      else {
        ITH[split] = NaN;
        const words = set.length === 0 ? 0 : (set[set.length - 1] >>> 5) + 1;
        ICS[split] = categoryWords.length;
        ICW[split] = words;
        const bits = new Array<number>(words).fill(0);
        for (const c of set) bits[c >>> 5] |= 1 << (c & 31);
        categoryWords.push(...bits);
      }
      split++;
    }
    // An inner node's bit in the path patterns of the leaves below it: its depth.
    for (const above of paths[t].values()) above.forEach((node, j) => (N[4 * (base + node) + 3] = 1 << j));
    base += tree.left.length;
    yield;
  }
  if (at !== entries) throw new Error(`contribution tables: ${at} leaf entries written, ${entries} expected`);
  const PF = Int32Array.from(pathFeatures);
  const CW = Uint32Array.from(categoryWords);
  const U = Int32Array.from(usedFeatures);
  const maxDepth = model.trees.reduce((m, tree) => Math.max(m, tree.depth), 0);
  const maxInner = innerCount.reduce((m, c) => Math.max(m, c), 0);
  // Depth-first stack of (node, path pattern) pairs: at most one pending sibling per level.
  const stack = new Int32Array(2 * (maxDepth + 2));
  // The row's decision at each split of the current tree: 1 when it goes right.
  const right = new Uint8Array(maxInner);
  const tree32 = new Float32Array(F);
  const total32 = new Float32Array(G * F);

  /** Whether the row at x[o ..] goes right at split j: prediction's routing (see compile.ts). */
  const goesRight = (x: Float32Array, o: number, j: number): number => {
    const v = x[o + IF[j]];
    const cats = ICS[j];
    if (cats < 0 || v !== v) return +(v >= ITH[j]) | (+(v !== v) & IDR[j]);
    if (!(v >= 0 && v < MAX_CATEGORY)) return 0;
    const code = Math.trunc(v);
    const word = code >>> 5;
    return word < ICW[j] ? (CW[cats + word] >>> (code & 31)) & 1 : 0;
  };

  /**
   * Adds tree t's leaf-table terms to tree32 for the decisions in `right`: depth first, hot
   * child first, XGBoost's order of leaves and so of its float32 additions.
   */
  const walkLeaves = (t: number): void => {
    const first = innerFrom[t];
    stack[0] = nodeRoot[t];
    stack[1] = 0;
    let sp = 2;
    while (sp > 0) {
      sp -= 2;
      const k = stack[sp] << 2;
      const m = stack[sp + 1];
      const j = N[k];
      if (j < 0) {
        const d = N[k + 2];
        const row = N[k + 1] + m * d;
        const pa = N[k + 3];
        for (let i = 0; i < d; i++) tree32[PF[pa + i]] += leafTable[row + i];
        continue;
      }
      const l = N[k + 1];
      const r = N[k + 2];
      const goRight = right[j - first] === 1;
      stack[sp] = goRight ? l : r;
      stack[sp + 1] = m;
      stack[sp + 2] = goRight ? r : l;
      stack[sp + 3] = m | N[k + 3];
      sp += 4;
    }
  };

  // Whole-tree tables: tree t's float32 vector (its used features) for every combination of
  // decisions at its splits (bit j of the row index: split j goes right), computed by the leaf
  // walk, so identical to it.
  const wholeAt = new Int32Array(T).fill(-1);
  /** Where the touching loop's sum goes, so that its loads are not optimised away. */
  let touchSink = 0;
  /** A row's table row in each whole-table tree. */
  const wholeRow = new Int32Array(T);
  const wholeTable = new Float32Array(wholeEntries);
  let wat = 0;
  for (let t = 0; t < T; t++) {
    if (kind[t] !== WHOLE) continue;
    wholeAt[t] = wat;
    const splits = innerCount[t];
    for (let pattern = 0; pattern < 2 ** splits; pattern++) {
      for (let j = 0; j < splits; j++) right[j] = (pattern >>> j) & 1;
      for (let j = usedFrom[t]; j < usedTo[t]; j++) tree32[U[j]] = 0;
      walkLeaves(t);
      for (let j = usedFrom[t]; j < usedTo[t]; j++) wholeTable[wat++] = tree32[U[j]];
    }
    yield;
  }
  if (wat !== wholeEntries) throw new Error(`contribution tables: ${wat} whole-tree entries written, ${wholeEntries} expected`);
  const recursiveTrees = model.trees.map((tree, t) => (kind[t] === RECURSION ? tree : null));
  const group = Int32Array.from(model.trees, (tree) => tree.group);
  const weight = Float32Array.from(model.trees, (_, t) => (weights ? weights[t] : 1));

  const contributions = (x: Float32Array, rows: number, out: Float64Array): void => {
    if (!(rows >= 0 && x.length >= rows * F && out.length >= rows * G * width)) {
      throw new RangeError(`contributions: ${rows} rows need ${rows * F} inputs and ${rows * G * width} outputs, got ${x.length} and ${out.length}`);
    }
    for (let r = 0, o = 0; r < rows; r++, o += F) {
      total32.fill(0);
      // First every whole-table tree's table row, from the row's decisions at its splits. The
      // tables are megabytes: read between a server's other work, nearly every row is a miss.
      for (let t = 0; t < T; t++) {
        if (kind[t] !== WHOLE) continue;
        let index = 0;
        for (let j = innerFrom[t], b = 0; j < innerFrom[t + 1]; j++, b++) index |= goesRight(x, o, j) << b;
        wholeRow[t] = wholeAt[t] + index * (usedTo[t] - usedFrom[t]);
      }
      // Touch each table row first: independent loads in a tight loop, so that the processor has
      // many of their cache misses in flight at once (the additions below then hit the cache).
      let touched = 0;
      for (let t = 0; t < T; t++) if (kind[t] === WHOLE) touched += wholeTable[wholeRow[t]];
      touchSink = touched;
      for (let t = 0; t < T; t++) {
        const from = usedFrom[t];
        const to = usedTo[t];
        const go = group[t] * F;
        const w = weight[t];
        const how = kind[t];
        if (how === WHOLE) {
          const row = wholeRow[t];
          if (w === 1) for (let j = from; j < to; j++) total32[go + U[j]] += wholeTable[row + j - from];
          else for (let j = from; j < to; j++) total32[go + U[j]] += f32(wholeTable[row + j - from] * w);
          continue;
        }
        for (let j = from; j < to; j++) tree32[U[j]] = 0;
        if (how === LEAVES) {
          for (let j = innerFrom[t], b = 0; j < innerFrom[t + 1]; j++, b++) right[b] = goesRight(x, o, j);
          walkLeaves(t);
        } else treeShapF32(recursiveTrees[t]!, x, o, tree32, path);
        if (w === 1) for (let j = from; j < to; j++) total32[go + U[j]] += tree32[U[j]];
        else for (let j = from; j < to; j++) total32[go + U[j]] += f32(tree32[U[j]] * w);
      }
      const ro = r * G * width;
      for (let g = 0; g < G; g++) {
        for (let f = 0; f < F; f++) out[ro + g * width + f] = total32[g * F + f];
        out[ro + g * width + F] = bias[g];
      }
    }
  };

  const count = (k: number) => kind.reduce((n, v) => n + (v === k ? 1 : 0), 0);
  return { numFeature: F, numGroup: G, bias, wholeTableTrees: count(WHOLE), leafTableTrees: count(LEAVES), recursiveTrees: count(RECURSION), tableEntries: entries + wholeEntries, contributions };
}
