/**
 * A table-driven XGBoost evaluator: the forest laid out once in flat typed arrays and walked
 * by one fixed loop. No code is generated (no `new Function`, no `eval`): the model file only
 * ever becomes numbers in typed arrays, which makes this path a good default where generated
 * code is unwelcome, and it needs no JIT warm-up per model (the same few loops serve every
 * model, so they are hot after the first rows and never deoptimise on an unseen branch).
 *
 * Layout. Every tree that is not walked (see below) is laid out breadth-first in one node
 * table, siblings adjacent: an inner node stores its left child `c`, its right child is
 * `c + 1`. Each node is one 16-byte record in `P` (Int32Array, 4 per node):
 *
 *     P[4k]     feature index (0 for leaves: a valid column, read and ignored)
 *     P[4k + 1] left child node index; a leaf points at itself
 *     P[4k + 2] 1 when a missing value goes right, else 0
 *     P[4k + 3] float32 threshold bits (read through the Float32Array view PF); NaN for
 *               leaves and categorical nodes, so `v >= threshold` is false there
 *
 * plus the leaf's contribution to the margin in `L` (dart: already times the tree's weight,
 * via compile.ts's `leafContributions`; a -0 leaf is stored as 0, as compile.ts prints it),
 * and, when some tree has categorical splits, a mask record per node in `M` (Int32Array, 4
 * per node, aligned with P): the codes 0..31 and 32..63 that go right, then an always-empty
 * word for "no valid code", and padding. Node 0 is a dummy leaf worth -0, which pads the last
 * group of four trees: x + (-0) === x for every float, so padding never changes a sum.
 *
 * Walk. One step from node k for a value v is branch-free:
 *     next = child(k) + (v >= threshold(k) | (v is NaN & defaultRight(k)) | (v in set(k)))
 * which is the compiled path's rule exactly: for a numeric node, v < t goes left, NaN takes
 * the default child, so "right" is `v >= t` (both float32) or NaN with default right; for a
 * categorical node, NaN takes the default child, a valid code in the set goes right, anything
 * else (negative, >= 64 when the set is below 64) goes left; non-integer codes truncate, as
 * compile.ts's bitset test and XGBoost's own cast do. Because leaves loop on themselves, every
 * tree is walked a fixed number of steps (the largest depth among the trees walked together)
 * and lands on its leaf. For categorical splits each input value of the current row block is
 * first turned into a code: trunc(v) when 0 <= v < 64, else 64 (negative, too large, NaN),
 * which reads the empty mask word; the step then ORs in one mask bit, with no further tests.
 * Groups with no categorical split use a cheaper step without the mask.
 *
 * Schedule. Trees are taken four at a time in tree order and walked interleaved (four
 * independent dependency chains keep the CPU busy while one waits on memory); rows are
 * scored in blocks of 64 so a group's nodes stay in cache across the block. After the walk
 * the four leaves are added to the row's margins in tree order, a then b, c, d, each rounded
 * to float32: per row and per output group the float32 sum sees the trees in exactly the
 * order the compiled path (and XGBoost) adds them. Trees of different output groups add into
 * different margins (`margins[row * numGroup + tree.group]`), so grouping them is free.
 *
 * Fallback. A tree deeper than `maxDepth` (64 by default), or with a categorical split whose
 * set holds a code >= 64, is scored by compile.ts's `treeWalker` in its place in tree order
 * (groups are cut around it).
 *
 * Bounds. Node indices come from `format.ts`'s validated trees (every node reached exactly
 * once from the root, children in range) and are assigned here by the breadth-first layout;
 * `checkLayout` then re-verifies the finished tables (inner nodes point strictly forward to a
 * sibling pair inside the table, leaves point at themselves and cannot move, features are
 * below numFeature, mask words 2 and 3 are empty), so every walk stays in the arrays whatever
 * the input values are: features index the row, codes (0..64) index mask words 0..2.
 */
import { leafContributions, treeWalker, type ForestAccumulator } from './compile.ts';
import type { XgbModel, XgbTree } from './format.ts';

const f32 = Math.fround;

/** Categorical sets whose codes are all below this are tested with two 32-bit mask words. */
const MASK_CODES = 64;

/** Item kinds: four trees with numeric splits only, four trees with mask splits, one walked tree. */
const NUMERIC = 0;
const MASKED = 1;
const WALKED = 2;

export interface FlatOptions {
  /** Trees deeper than this are scored by compile.ts's tree walker instead (default 64). */
  maxDepth?: number;
  /** Rows scored together per group of trees (default 64). */
  rowBlock?: number;
}

/** The built evaluator and what its layout holds (for tests and diagnostics). */
export interface FlatForest {
  readonly accumulate: ForestAccumulator;
  /** Nodes in the flat table, including the dummy node 0. */
  readonly nodes: number;
  /** Trees by how they are scored: numeric splits only, mask-tested category sets, tree walker. */
  readonly numericTrees: number;
  readonly maskedTrees: number;
  readonly walkedTrees: number;
}

type Walker = (x: Float32Array, o: number) => number;

function kindOf(tree: XgbTree, maxDepth: number): number {
  if (tree.depth > maxDepth) return WALKED;
  let kind = NUMERIC;
  for (let i = 0; i < tree.left.length; i++) {
    const set = tree.categories[i];
    if (tree.left[i] === -1 || set === null) continue;
    if (set.length > 0 && set[set.length - 1] >= MASK_CODES) return WALKED;
    kind = MASKED;
  }
  return kind;
}

/**
 * The flat evaluator's tables: typed arrays only, so that the loader's worker thread can lay a
 * big forest out and hand it over by transfer (see load.ts). Only `layOutFlatForest` makes them,
 * and it checks them (`checkLayout`) before returning.
 */
export interface FlatTables {
  readonly numFeature: number;
  readonly numGroup: number;
  readonly rowBlock: number;
  /** Node records (4 words per node) and leaf contributions, as the file comment describes. */
  readonly P: Int32Array;
  readonly L: Float32Array;
  /** Category masks, 4 words per node; empty when no laid-out tree has a categorical split. */
  readonly M: Int32Array;
  /** Per item: its kind, steps, and per slot (4 per item) its root record offset and output group. */
  readonly kind: Int32Array;
  readonly steps: Int32Array;
  readonly root: Int32Array;
  readonly group: Int32Array;
  /** Per item: the tree a WALKED item scores (by compile.ts's tree walker), else -1. */
  readonly walkedTree: Int32Array;
  readonly numericTrees: number;
  readonly maskedTrees: number;
}

export function buildFlatForest(model: XgbModel, options: FlatOptions = {}): FlatForest {
  const tables = layOutFlatForest(model, options);
  return describeFlat(tables, flatAccumulator(tables, (t) => flatWalker(model.treeWeights, model.trees[t], t)));
}

/** What a built flat forest holds, for tests and diagnostics. */
function describeFlat(tables: FlatTables, accumulate: ForestAccumulator): FlatForest {
  let walkedTrees = 0;
  for (const t of tables.walkedTree) if (t !== -1) walkedTrees++;
  return { accumulate, nodes: tables.L.length, numericTrees: tables.numericTrees, maskedTrees: tables.maskedTrees, walkedTrees };
}

/** Trees that the flat layout cannot hold and that are walked in their place instead. */
export function flatWalkedTrees(tables: FlatTables): number[] {
  return [...tables.walkedTree].filter((t) => t !== -1);
}

/** The walker scoring tree `t` in the flat evaluator's place (a deep tree, or one with categories >= 64). */
export function flatWalker(treeWeights: Float32Array | null, tree: XgbTree, t: number): Walker {
  const leaves = leafContributions({ treeWeights }, tree, t);
  // As in the layout: compile.ts prints -0 leaves as 0 in the trees it compiles (all trees
  // of depth <= 64 by default); it walks deeper ones with the leaves as they are.
  if (tree.depth <= 64) for (let i = 0; i < leaves.length; i++) if (leaves[i] === 0) leaves[i] = 0;
  return treeWalker(tree, leaves);
}

/** Lays the forest out in flat tables and checks them (the work of building a flat evaluator). */
export function layOutFlatForest(model: XgbModel, options: FlatOptions = {}): FlatTables {
  const maxDepth = options.maxDepth ?? 64;
  const block = options.rowBlock ?? 64;
  if (!Number.isInteger(block) || block < 1) throw new RangeError(`rowBlock must be a positive integer, got ${block}`);
  const F = model.numFeature;
  const G = model.numGroup;

  const kinds = model.trees.map((tree) => kindOf(tree, maxDepth));
  let total = 1; // node 0: the dummy leaf
  model.trees.forEach((tree, t) => {
    if (kinds[t] !== WALKED) total += tree.left.length;
  });
  const P = new Int32Array(4 * total);
  const PF = new Float32Array(P.buffer);
  // Masks, only when some tree has mask-tested sets: 4 words per node, aligned with P.
  const masked = kinds.includes(MASKED);
  const M = new Int32Array(masked ? 4 * total : 0);
  const L = new Float32Array(total);
  PF[3] = NaN;
  L[0] = -0;

  let next = 1;
  /** Lays tree t out breadth-first, siblings adjacent; returns its root's node index. */
  const layOut = (t: number): number => {
    const tree = model.trees[t];
    const leaves = leafContributions(model, tree, t);
    const at = new Int32Array(tree.left.length);
    const root = next++;
    at[0] = root;
    const queue = new Int32Array(tree.left.length);
    let tail = 1;
    for (let head = 0; head < tail; head++) {
      const i = queue[head];
      const k = at[i];
      if (tree.left[i] === -1) {
        P[4 * k + 1] = k;
        PF[4 * k + 3] = NaN;
        // compile.ts prints a -0 leaf as the literal 0; do the same so the sums are identical.
        L[k] = leaves[i] === 0 ? 0 : leaves[i];
        continue;
      }
      const l = tree.left[i];
      const r = tree.right[i];
      at[l] = next;
      at[r] = next + 1;
      next += 2;
      P[4 * k] = tree.feature[i];
      P[4 * k + 1] = at[l];
      P[4 * k + 2] = tree.defaultLeft[i] ? 0 : 1;
      const set = tree.categories[i];
      if (set === null) PF[4 * k + 3] = tree.value[i];
      else {
        PF[4 * k + 3] = NaN;
        for (let j = 0; j < set.length; j++) M[4 * k + (set[j] >>> 5)] |= 1 << (set[j] & 31);
      }
      queue[tail++] = l;
      queue[tail++] = r;
    }
    if (tail !== tree.left.length) throw new Error(`flat layout: tree ${t} has ${tree.left.length} nodes, ${tail} reached`);
    return root;
  };

  // Items in tree order: a group of up to four laid-out trees, or one walked tree.
  const itemKind: number[] = [];
  const itemRoot: number[] = []; // 4 per item: record offsets (4 * node)
  const itemGroup: number[] = []; // 4 per item: output group of each slot
  const itemSteps: number[] = [];
  const itemWalked: number[] = [];
  let pending: number[] = [];
  const flush = () => {
    if (pending.length === 0) return;
    itemKind.push(pending.some((t) => kinds[t] === MASKED) ? MASKED : NUMERIC);
    let steps = 0;
    for (let j = 0; j < 4; j++) {
      const t = pending[j];
      itemRoot.push(t === undefined ? 0 : 4 * layOut(t));
      itemGroup.push(t === undefined ? 0 : model.trees[t].group);
      if (t !== undefined) steps = Math.max(steps, model.trees[t].depth);
    }
    itemSteps.push(steps);
    itemWalked.push(-1);
    pending = [];
  };
  let numericTrees = 0;
  let maskedTrees = 0;
  model.trees.forEach((tree, t) => {
    if (kinds[t] === WALKED) {
      flush();
      itemKind.push(WALKED);
      itemRoot.push(0, 0, 0, 0);
      itemGroup.push(tree.group, 0, 0, 0);
      itemSteps.push(0);
      itemWalked.push(t);
      return;
    }
    if (kinds[t] === MASKED) maskedTrees++;
    else numericTrees++;
    pending.push(t);
    if (pending.length === 4) flush();
  });
  flush();
  if (next !== total) throw new Error(`flat layout: ${next} nodes placed, ${total} expected`);
  checkLayout(P, PF, M, L, F, G, itemRoot, itemGroup);
  return {
    numFeature: F,
    numGroup: G,
    rowBlock: block,
    P,
    L,
    M,
    kind: Int32Array.from(itemKind),
    steps: Int32Array.from(itemSteps),
    root: Int32Array.from(itemRoot),
    group: Int32Array.from(itemGroup),
    walkedTree: Int32Array.from(itemWalked),
    numericTrees,
    maskedTrees,
  };
}

/** The evaluator walking laid-out tables; `walkerOf(t)` scores each walked tree `t`. */
export function flatAccumulator(tables: FlatTables, walkerOf: (t: number) => Walker): ForestAccumulator {
  const { numFeature: F, numGroup: G, rowBlock: block, P, L, M, kind: K, steps: S, root: R, group: GR } = tables;
  const PF = new Float32Array(P.buffer, P.byteOffset, P.length);
  const masked = M.length > 0;
  const items = K.length;
  if (S.length !== items || R.length !== 4 * items || GR.length !== 4 * items || tables.walkedTree.length !== items || P.length !== 4 * L.length || (masked && M.length !== P.length)) {
    throw new Error('flat tables are inconsistent (a bug, not the model file)');
  }
  const noWalker: Walker = () => 0;
  const walkers = Array.from(tables.walkedTree, (t) => (t === -1 ? noWalker : walkerOf(t)));
  // Category codes of the current block's rows, one per input value: the value itself when it
  // is in [0, 64) (truncated), else 64, which reads the always-empty third mask word.
  const C = new Int32Array(masked ? block * F : 0);

  const accumulate: ForestAccumulator = (x, rows, m) => {
    if (!(rows >= 0 && x.length >= rows * F && m.length >= rows * G)) {
      throw new RangeError(`flat forest: ${rows} rows need ${rows * F} inputs and ${rows * G} margins, got ${x.length} and ${m.length}`);
    }
    for (let r0 = 0; r0 < rows; r0 += block) {
      const r1 = r0 + block < rows ? r0 + block : rows;
      if (masked) {
        for (let i = r0 * F, j = 0, end = r1 * F; i < end; i++, j++) {
          const v = x[i];
          C[j] = v >= 0 && v < MASK_CODES ? v | 0 : MASK_CODES;
        }
      }
      for (let g = 0; g < items; g++) {
        const kind = K[g];
        const ga = GR[4 * g];
        if (kind === WALKED) {
          const walk = walkers[g];
          for (let r = r0, o = r0 * F, mo = r0 * G + ga; r < r1; r++, o += F, mo += G) m[mo] = f32(m[mo] + walk(x, o));
          continue;
        }
        const gb = GR[4 * g + 1];
        const gc = GR[4 * g + 2];
        const gd = GR[4 * g + 3];
        const ra = R[4 * g];
        const rb = R[4 * g + 1];
        const rc = R[4 * g + 2];
        const rd = R[4 * g + 3];
        const steps = S[g];
        for (let r = r0, o = r0 * F, mo = r0 * G; r < r1; r++, o += F, mo += G) {
          let a = ra;
          let b = rb;
          let c = rc;
          let d = rd;
          if (kind === NUMERIC) {
            for (let k = 0; k < steps; k++) {
              const va = x[o + P[a]];
              const vb = x[o + P[b]];
              const vc = x[o + P[c]];
              const vd = x[o + P[d]];
              a = (P[a + 1] + (+(va >= PF[a + 3]) | (+(va !== va) & P[a + 2]))) << 2;
              b = (P[b + 1] + (+(vb >= PF[b + 3]) | (+(vb !== vb) & P[b + 2]))) << 2;
              c = (P[c + 1] + (+(vc >= PF[c + 3]) | (+(vc !== vc) & P[c + 2]))) << 2;
              d = (P[d + 1] + (+(vd >= PF[d + 3]) | (+(vd !== vd) & P[d + 2]))) << 2;
            }
          } else {
            const oc = o - r0 * F;
            for (let k = 0; k < steps; k++) {
              const fa = P[a];
              const fb = P[b];
              const fc = P[c];
              const fd = P[d];
              a = maskStep(x[o + fa], C[oc + fa], a, P, PF, M);
              b = maskStep(x[o + fb], C[oc + fb], b, P, PF, M);
              c = maskStep(x[o + fc], C[oc + fc], c, P, PF, M);
              d = maskStep(x[o + fd], C[oc + fd], d, P, PF, M);
            }
          }
          // In tree order, one float32 rounding per tree.
          if (G === 1) {
            let s = m[r];
            s = f32(s + L[a >> 2]);
            s = f32(s + L[b >> 2]);
            s = f32(s + L[c >> 2]);
            s = f32(s + L[d >> 2]);
            m[r] = s;
          } else {
            // Output groups may coincide: each add reads the margin the previous one wrote.
            m[mo + ga] = f32(m[mo + ga] + L[a >> 2]);
            m[mo + gb] = f32(m[mo + gb] + L[b >> 2]);
            m[mo + gc] = f32(m[mo + gc] + L[c >> 2]);
            m[mo + gd] = f32(m[mo + gd] + L[d >> 2]);
          }
        }
      }
    }
  };
  return accumulate;
}

/**
 * How many node steps the flat walk takes per row, relative to the root-to-leaf paths it
 * needs: each group of four consecutive trees walks its deepest tree's depth, while a tree's
 * real path is (unweighted) its mean leaf depth. About 1.05-1.1 for depth-limited forests
 * (XGBoost's default depthwise growth); 1.6-1.8 for lossguide forests with deep, unbalanced
 * trees, where the fixed-depth walk wastes work. Trees with no split count as paths of 0.
 */
export function flatStepRatio(model: XgbModel): number {
  let walked = 0;
  let needed = 0;
  for (let t = 0; t < model.trees.length; t += 4) {
    const group = model.trees.slice(t, t + 4);
    walked += group.length * Math.max(...group.map((tree) => tree.depth));
    for (const tree of group) needed += meanLeafDepth(tree);
  }
  return needed === 0 ? 1 : walked / needed;
}

function meanLeafDepth(tree: XgbTree): number {
  const depth = new Int32Array(tree.left.length);
  const stack = [0];
  let sum = 0;
  let leaves = 0;
  while (stack.length > 0) {
    const i = stack.pop()!;
    if (tree.left[i] === -1) {
      sum += depth[i];
      leaves++;
      continue;
    }
    depth[tree.left[i]] = depth[tree.right[i]] = depth[i] + 1;
    stack.push(tree.left[i], tree.right[i]);
  }
  return sum / leaves;
}

/** The flat evaluator's accumulator alone (same contract as `compileForest`). */
export function flatForest(model: XgbModel, options: FlatOptions = {}): ForestAccumulator {
  return buildFlatForest(model, options).accumulate;
}

/**
 * One branch-free step from record offset `a` for value `v`, whose category code is `ci`;
 * returns the next record offset. Right when v >= threshold (numeric nodes; NaN threshold
 * elsewhere), when v is missing and the default is right, or when v's code is in the node's
 * set. `ci` is trunc(v) for 0 <= v < 64 (the compiled path's bitset test truncates the same
 * way), else 64; mask word M[a] holds codes 0..31, M[a + 1] codes 32..63 (`>>>` shifts by the
 * code mod 32), and M[a + 2], read for code 64, is always 0.
 */
function maskStep(v: number, ci: number, a: number, P: Int32Array, PF: Float32Array, M: Int32Array): number {
  return (P[a + 1] + (+(v >= PF[a + 3]) | (+(v !== v) & P[a + 2]) | ((M[a + (ci >>> 5)] >>> ci) & 1))) << 2;
}

/**
 * Re-checks the finished tables, so that no walk can leave them: leaves point at themselves
 * and can never move (NaN threshold, no default-right bit, empty masks); inner nodes point
 * strictly forward to a sibling pair inside the table and read a feature below numFeature.
 * Every root and group offset is in range. (The walk then also cannot cycle: it only moves
 * forward or stays on a leaf.)
 */
function checkLayout(P: Int32Array, PF: Float32Array, M: Int32Array, L: Float32Array, F: number, G: number, roots: number[], groups: number[]): void {
  const total = L.length;
  const fail = (why: string): never => {
    throw new Error(`flat layout is inconsistent (a bug, not the model file): ${why}`);
  };
  for (let k = 0; k < total; k++) {
    const child = P[4 * k + 1];
    const dr = P[4 * k + 2];
    const feat = P[4 * k];
    if (child === k) {
      if (feat !== 0 || dr !== 0 || !Number.isNaN(PF[4 * k + 3])) fail(`leaf ${k} can move`);
      if (M.length > 0 && (M[4 * k] !== 0 || M[4 * k + 1] !== 0)) fail(`leaf ${k} has a category set`);
    } else {
      if (!(child > k && child + 1 < total)) fail(`node ${k} points at ${child} of ${total}`);
      if (!(feat >= 0 && feat < F)) fail(`node ${k} reads feature ${feat} of ${F}`);
      if (dr !== 0 && dr !== 1) fail(`node ${k} has default ${dr}`);
    }
    if (M.length > 0 && (M[4 * k + 2] !== 0 || M[4 * k + 3] !== 0)) fail(`node ${k}: mask words 2 and 3 must stay empty`);
  }
  if (M.length !== 0 && M.length !== 4 * total) fail(`mask table of ${M.length} words for ${total} nodes`);
  for (const r of roots) if (!(r >= 0 && r % 4 === 0 && r / 4 < total)) fail(`root offset ${r}`);
  for (const g of groups) if (!(g >= 0 && g < G)) fail(`output group ${g} of ${G}`);
}
