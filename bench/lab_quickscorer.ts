/**
 * Lab prototype (bench/evaluator_lab.ts variants `qs`, `qs-int`; not shipped: it did not beat
 * compile.ts, see the lab's header for the figures).
 *
 * A QuickScorer evaluator (Lucchese et al., "QuickScorer: a fast algorithm to rank documents
 * with additive ensembles of regression trees", SIGIR 2015), table-driven: no code is
 * generated, the model file only ever becomes numbers in typed arrays.
 *
 * Idea. Number each tree's leaves left to right (at most 32: one Uint32 word per tree). A
 * split node that sends the row RIGHT ("false" node) rules out every leaf of its left
 * subtree: AND the tree's word with a mask that clears them. After all false nodes of all
 * trees are applied, the exit leaf of each tree is the lowest bit still set (the leftmost
 * leaf not ruled out; the rightmost leaf is never ruled out, so a bit is always left). The
 * false nodes are found feature by feature, with no per-tree branching:
 * - numeric nodes of feature f, sorted by threshold ascending: the row goes right iff
 *   v >= threshold (XGBoost: left iff v < t, float32 both), so the false nodes are a prefix
 *   of the sorted run, scanned until the first threshold above v (a NaN sentinel ends it);
 * - a missing value (NaN) sends each node on f to its default child: the false nodes are the
 *   default-right ones, a precomputed list per feature;
 * - categorical nodes of feature f: a valid code c (0 <= v < 2^24, truncated, as compile.ts's
 *   bitset test) goes right iff c is in the node's set: one precomputed list per code; a code
 *   in no set (negative, too large) goes left everywhere, so rules nothing out.
 * The exit leaves are then added to the margins in tree order, each sum rounded to float32,
 * exactly as compile.ts (and XGBoost) accumulates: bit-identical margins.
 *
 * Fallback. A tree with more than 32 leaves, or a categorical set holding a code >= 4096
 * (the per-code lists would grow large), is scored by compile.ts's `treeWalker` in its place
 * in tree order.
 *
 * Bounds. Every table index is built here from `format.ts`'s validated trees; `checkTables`
 * re-verifies them (tree slots in range, runs inside the tables, every mask keeps its tree's
 * rightmost leaf), so whatever the input values, a row's walk stays inside the arrays and
 * every tree word keeps a set bit below its leaf count.
 */
import { leafContributions, treeWalker, type ForestAccumulator } from '../src/models/xgboost/compile.ts';
import type { XgbModel, XgbTree } from '../src/models/xgboost/format.ts';

const f32 = Math.fround;

/** Trees whose leaves fit one 32-bit word. */
export const QS_MAX_LEAVES = 32;
/** Categorical codes up to this (exclusive) get a list per code; larger sets fall back. */
export const QS_MAX_CODE = 4096;

export interface QuickScorerForest {
  readonly accumulate: ForestAccumulator;
  /** Trees scored by bitvectors, and trees scored by compile.ts's walker in their place. */
  readonly scoredTrees: number;
  readonly walkedTrees: number;
  /** Split nodes in the per-feature tables. */
  readonly nodes: number;
}

type Walker = (x: Float32Array, o: number) => number;

/** Whether QuickScorer scores this tree itself (else it is walked in its place). */
export function quickScorerTakes(tree: XgbTree): boolean {
  let leaves = 0;
  for (let i = 0; i < tree.left.length; i++) {
    if (tree.left[i] === -1) leaves++;
    else {
      const set = tree.categories[i];
      if (set !== null && set.length > 0 && set[set.length - 1] >= QS_MAX_CODE) return false;
    }
  }
  return leaves <= QS_MAX_LEAVES;
}

interface NodeRef {
  slot: number;
  mask: number;
}

export function buildQuickScorer(model: XgbModel, intKeys = false): QuickScorerForest {
  const F = model.numFeature;
  const G = model.numGroup;
  const trees = model.trees;

  // Per feature: numeric nodes (threshold, ref), default-right nodes, per-code categorical lists.
  const numeric: { t: number; ref: NodeRef }[][] = Array.from({ length: F }, () => []);
  const missing: NodeRef[][] = Array.from({ length: F }, () => []);
  const byCode: NodeRef[][][] = Array.from({ length: F }, () => []);

  // Tree order items: slot >= 0 (bitvector tree) or walker index encoded as -1 - k.
  const itemSlot: number[] = [];
  const itemGroup: number[] = [];
  const walkers: Walker[] = [];
  const leafValues: number[] = [];
  const leafCounts: number[] = [];
  let slots = 0;
  let nodes = 0;

  trees.forEach((tree, t) => {
    const leaves = leafContributions(model, tree, t);
    if (!quickScorerTakes(tree)) {
      // As flat.ts: compile.ts prints -0 leaves as 0 in the trees it compiles (depth <= 64).
      if (tree.depth <= 64) for (let i = 0; i < leaves.length; i++) if (leaves[i] === 0) leaves[i] = 0;
      itemSlot.push(-1 - walkers.length);
      itemGroup.push(tree.group);
      walkers.push(treeWalker(tree, leaves));
      return;
    }
    const slot = slots++;
    itemSlot.push(slot);
    itemGroup.push(tree.group);
    // Leaves numbered left to right; each node's left subtree covers leaves [first, end).
    const first = new Int32Array(tree.left.length);
    const end = new Int32Array(tree.left.length);
    let count = 0;
    const number = (i: number): void => {
      // Iterative post-order would do; depth is bounded by the 32-leaf limit (at most 31).
      if (tree.left[i] === -1) {
        first[i] = count;
        end[i] = count + 1;
        // compile.ts prints a -0 leaf as the literal 0; do the same so sums are identical.
        leafValues[slot * QS_MAX_LEAVES + count] = leaves[i] === 0 ? 0 : leaves[i];
        count++;
        return;
      }
      number(tree.left[i]);
      number(tree.right[i]);
      first[i] = first[tree.left[i]];
      end[i] = end[tree.right[i]];
    };
    number(0);
    leafCounts.push(count);
    for (let j = count; j < QS_MAX_LEAVES; j++) leafValues[slot * QS_MAX_LEAVES + j] = 0;
    for (let i = 0; i < tree.left.length; i++) {
      if (tree.left[i] === -1) continue;
      nodes++;
      const l = tree.left[i];
      const a = first[l];
      const b = end[l];
      const ref = { slot, mask: ~(((1 << (b - a)) - 1) << a) | 0 };
      const f = tree.feature[i];
      if (!tree.defaultLeft[i]) missing[f].push(ref);
      const set = tree.categories[i];
      if (set === null) numeric[f].push({ t: tree.value[i], ref });
      else for (const c of set) (byCode[f][c] ??= []).push(ref);
    }
  });

  // Flatten into typed arrays.
  const features: number[] = [];
  const NS = new Int32Array(F); // start of feature f's numeric run in T/NT/NM
  const MS = new Int32Array(F + 1); // start of feature f's default-right nodes in AT/AM (end: ME[f])
  const CB = new Int32Array(F); // feature f's code c list: AT/AM[CO[CB[f] + c] .. CO[CB[f] + c + 1])
  const CN = new Int32Array(F); // number of codes with a list (max code + 1), 0 if none
  const T: number[] = [];
  const NT: number[] = [];
  const NM: number[] = [];
  const AT: number[] = [];
  const AM: number[] = [];
  const CO: number[] = [];
  for (let f = 0; f < F; f++) {
    const run = numeric[f].sort((p, q) => p.t - q.t);
    NS[f] = T.length;
    for (const { t, ref } of run) {
      T.push(t);
      NT.push(ref.slot);
      NM.push(ref.mask);
    }
    T.push(NaN); // sentinel: v >= NaN is false
    NT.push(0);
    NM.push(-1);
    MS[f] = AT.length;
    for (const ref of missing[f]) {
      AT.push(ref.slot);
      AM.push(ref.mask);
    }
    const codes = byCode[f];
    CN[f] = codes.length;
    CB[f] = CO.length;
    for (let c = 0; c < codes.length; c++) {
      CO.push(AT.length);
      for (const ref of codes[c] ?? []) {
        AT.push(ref.slot);
        AM.push(ref.mask);
      }
    }
    CO.push(AT.length);
    if (run.length > 0 || missing[f].length > 0 || codes.length > 0) features.push(f);
  }
  // Feature f's default-right list is AT/AM[MS[f] .. ME[f]).
  const ME = new Int32Array(F);
  for (let f = 0; f < F; f++) ME[f] = MS[f] + missing[f].length;
  MS[F] = AT.length;

  const tables = {
    T: Float32Array.from(T),
    NT: Int32Array.from(NT),
    NM: Int32Array.from(NM),
    AT: Int32Array.from(AT),
    AM: Int32Array.from(AM),
    CO: Int32Array.from(CO),
  };
  const FL = Int32Array.from(features);
  const IS = Int32Array.from(itemSlot);
  const IG = Int32Array.from(itemGroup);
  const LC = Int32Array.from(leafCounts);
  const LV = Float32Array.from(leafValues);
  checkTables(tables, NS, MS, ME, CB, CN, FL, IS, IG, LC, LV, F, G, slots, walkers.length);

  const { T: TT, NT: TS, NM: TM, AT: XT, AM: XM, CO: XO } = tables;
  // Integer keys ordering float32 values (sign-magnitude to two's complement; -0 as +0).
  const KT = new Int32Array(TT.length);
  const kf = new Float32Array(1);
  const ki = new Int32Array(kf.buffer);
  for (let k = 0; k < TT.length; k++) {
    kf[0] = TT[k] + 0;
    KT[k] = Number.isNaN(TT[k]) ? 0x7fffffff : ki[0] ^ ((ki[0] >> 31) & 0x7fffffff);
  }
  const RF = new Float32Array(F);
  const RI = new Int32Array(RF.buffer);
  const bv = new Int32Array(slots);
  const items = IS.length;
  const nf = FL.length;
  const simple = G === 1 && walkers.length === 0;

  const accumulate: ForestAccumulator = (x, rows, m) => {
    if (!(rows >= 0 && x.length >= rows * F && m.length >= rows * G)) {
      throw new RangeError(`quickscorer: ${rows} rows need ${rows * F} inputs and ${rows * G} margins, got ${x.length} and ${m.length}`);
    }
    for (let r = 0, o = 0, mo = 0; r < rows; r++, o += F, mo += G) {
      bv.fill(-1);
      for (let fi = 0; fi < nf; fi++) {
        const f = FL[fi];
        const v = x[o + f];
        if (v !== v) {
          for (let k = MS[f], e = ME[f]; k < e; k++) bv[XT[k]] &= XM[k];
          continue;
        }
        if (intKeys) {
          RF[0] = v + 0;
          const bits = RI[0];
          const kv = bits ^ ((bits >> 31) & 0x7fffffff);
          for (let k = NS[f]; kv >= KT[k]; k++) bv[TS[k]] &= TM[k];
        } else for (let k = NS[f]; v >= TT[k]; k++) bv[TS[k]] &= TM[k];
        if (v >= 0 && v < CN[f]) {
          const c = CB[f] + (v | 0);
          for (let k = XO[c], e = XO[c + 1]; k < e; k++) bv[XT[k]] &= XM[k];
        }
      }
      if (simple) {
        let s = m[mo];
        for (let t = 0; t < items; t++) {
          const b = bv[t];
          s = f32(s + LV[(t << 5) | (31 - Math.clz32(b & -b))]);
        }
        m[mo] = s;
      } else {
        for (let t = 0; t < items; t++) {
          const slot = IS[t];
          const g = mo + IG[t];
          if (slot >= 0) {
            const b = bv[slot];
            m[g] = f32(m[g] + LV[(slot << 5) | (31 - Math.clz32(b & -b))]);
          } else {
            m[g] = f32(m[g] + walkers[-1 - slot](x, o));
          }
        }
      }
    }
  };
  return { accumulate, scoredTrees: slots, walkedTrees: walkers.length, nodes };
}

export function quickScorerForest(model: XgbModel, intKeys = false): ForestAccumulator {
  return buildQuickScorer(model, intKeys).accumulate;
}

/** Re-checks the finished tables, so no row can read outside them (a failure is a bug). */
function checkTables(
  tb: { T: Float32Array; NT: Int32Array; NM: Int32Array; AT: Int32Array; AM: Int32Array; CO: Int32Array },
  NS: Int32Array,
  MS: Int32Array,
  ME: Int32Array,
  CB: Int32Array,
  CN: Int32Array,
  FL: Int32Array,
  IS: Int32Array,
  IG: Int32Array,
  LC: Int32Array,
  LV: Float32Array,
  F: number,
  G: number,
  slots: number,
  walkers: number,
): void {
  const fail = (why: string): never => {
    throw new Error(`quickscorer tables are inconsistent (a bug, not the model file): ${why}`);
  };
  const keeps = (slot: number, mask: number) => slot >= 0 && slot < slots && ((mask >>> (LC[slot] - 1)) & 1) === 1;
  if (LV.length !== slots * QS_MAX_LEAVES) fail(`leaf table of ${LV.length} for ${slots} trees`);
  for (let s = 0; s < slots; s++) if (!(LC[s] >= 1 && LC[s] <= QS_MAX_LEAVES)) fail(`tree slot ${s} has ${LC[s]} leaves`);
  for (const f of FL) if (!(f >= 0 && f < F)) fail(`feature ${f}`);
  for (let f = 0; f < F; f++) {
    let k = NS[f];
    if (!(k >= 0 && k < tb.T.length)) fail(`numeric run of feature ${f}`);
    for (; !Number.isNaN(tb.T[k]); k++) {
      if (k + 1 >= tb.T.length) fail(`numeric run of feature ${f} has no sentinel`);
      if (!keeps(tb.NT[k], tb.NM[k])) fail(`numeric entry ${k}`);
    }
    if (!(MS[f] >= 0 && MS[f] <= ME[f] && ME[f] <= tb.AT.length)) fail(`missing list of feature ${f}`);
    if (!(CN[f] >= 0 && CN[f] <= QS_MAX_CODE && CB[f] >= 0 && CB[f] + CN[f] < tb.CO.length)) fail(`code lists of feature ${f}`);
    for (let c = CB[f]; c < CB[f] + CN[f]; c++) if (!(tb.CO[c] >= 0 && tb.CO[c] <= tb.CO[c + 1] && tb.CO[c + 1] <= tb.AT.length)) fail(`code list ${c}`);
  }
  for (let k = 0; k < tb.AT.length; k++) if (!keeps(tb.AT[k], tb.AM[k])) fail(`list entry ${k}`);
  let seen = 0;
  for (let t = 0; t < IS.length; t++) {
    const s = IS[t];
    if (s >= 0) {
      if (s !== seen++) fail(`tree ${t} has slot ${s}`);
    } else if (!(-1 - s < walkers)) fail(`tree ${t} walker ${-1 - s}`);
    if (!(IG[t] >= 0 && IG[t] < G)) fail(`tree ${t} output group ${IG[t]}`);
  }
}
