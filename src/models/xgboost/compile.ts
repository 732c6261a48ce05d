/**
 * Compiles a validated XGBoost forest into straight-line JavaScript, once, at load.
 *
 * Each tree becomes a nested conditional expression; trees are grouped into chunk
 * functions small enough for V8 to optimise (its limit is about 60 KB of bytecode), each
 * scoring one row; a batch runs chunk by chunk over its rows.
 *
 * Safety: the generated source is made only of this file's fixed text and numbers that
 * `format.ts` validated (integers in range, finite float32 values), each printed by
 * `literal()`, which refuses anything else. No string from the model file reaches it.
 *
 * Exactness: inputs are float32 (the caller passes a Float32Array), thresholds and leaf
 * values are float32 constants, and the per-row sum is rounded to float32 after every
 * tree, in tree order, exactly as XGBoost accumulates.
 */
import type { XgbModel, XgbTree } from './format.ts';

const f32 = Math.fround;

/** Categories at or above 2^24 are invalid in XGBoost (float32 cannot hold them exactly). */
const MAX_CATEGORY = 16777216;

export interface CompileOptions {
  /** Trees deeper than this are walked by a loop instead of compiled (bounds generated nesting). */
  maxCompiledDepth?: number;
  /** Roughly how many tree nodes go into one generated function. */
  nodesPerChunk?: number;
}

/** Adds every tree's output to float32 margins laid out `rows × numGroup`, row-major. */
export type ForestAccumulator = (x: Float32Array, rows: number, margins: Float32Array) => void;

/** Per-leaf contribution to the margin: the leaf value, or for dart the weighted leaf. */
export function leafContributions(model: Pick<XgbModel, 'treeWeights'>, tree: XgbTree, treeIndex: number): Float32Array {
  const out = new Float32Array(tree.value.length);
  const w = model.treeWeights ? model.treeWeights[treeIndex] : null;
  for (let i = 0; i < out.length; i++) {
    if (tree.left[i] !== -1) continue;
    const leaf = tree.value[i];
    // Dart scales each tree's float32 output by the tree's float32 weight, rounding the
    // product to float32 before adding it: replayed here once per leaf.
    out[i] = w === null ? leaf : f32(leaf * w);
  }
  return out;
}

/** A tree walked by a loop: for trees too deep to compile into nested expressions. */
export function treeWalker(tree: XgbTree, leaves: Float32Array) {
  const { left, right, feature, value, defaultLeft, categories } = tree;
  return (x: Float32Array, o: number): number => {
    let i = 0;
    while (left[i] !== -1) {
      const v = x[o + feature[i]];
      const set = categories[i];
      if (v !== v) i = defaultLeft[i] ? left[i] : right[i];
      else if (set !== null) i = v >= 0 && v < MAX_CATEGORY && binaryHas(set, Math.trunc(v)) ? right[i] : left[i];
      else i = v < value[i] ? left[i] : right[i];
    }
    return leaves[i];
  };
}

/** Whether a sorted set of category codes holds `v`. */
export function binaryHas(sorted: Int32Array, v: number): boolean {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] === v) return true;
    if (sorted[mid] < v) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

function bitset(set: Int32Array): Uint32Array {
  const bits = new Uint32Array((set.length === 0 ? 0 : set[set.length - 1] >>> 5) + 1);
  for (const c of set) bits[c >>> 5] |= 1 << (c & 31);
  return bits;
}

/** Prints a validated number as a JavaScript literal; anything else is a bug, not input. */
function literal(v: number): string {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`refusing to emit non-finite literal ${String(v)}`);
  const text = Object.is(v, -0) ? '0' : String(v);
  if (!/^-?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(text)) throw new Error(`refusing to emit literal ${text}`);
  return text;
}

function int(v: number): string {
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`refusing to emit index ${String(v)}`);
  return String(v);
}

export function compileForest(model: XgbModel, options: CompileOptions = {}): ForestAccumulator {
  const steps = compileForestInSteps(model, options);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/**
 * compileForest one chunk at a time: the generator yields after each chunk function it
 * generated, so that a caller on the event loop can compile a big forest in slices
 * (load.ts); the generator's return value is the accumulator.
 */
export function* compileForestInSteps(model: XgbModel, options: CompileOptions = {}): Generator<void, ForestAccumulator> {
  const maxDepth = options.maxCompiledDepth ?? 64;
  const nodesPerChunk = options.nodesPerChunk ?? 1500;
  const numFeature = model.numFeature;
  const numGroup = model.numGroup;

  // Chunk boundaries: consecutive trees until the node budget is spent.
  const chunks: number[][] = [];
  let current: number[] = [];
  let nodes = 0;
  model.trees.forEach((tree, t) => {
    if (current.length > 0 && nodes + tree.left.length > nodesPerChunk) {
      chunks.push(current);
      current = [];
      nodes = 0;
    }
    current.push(t);
    nodes += tree.left.length;
  });
  if (current.length > 0) chunks.push(current);

  const chunkFns: ChunkFunction[] = [];
  for (const treeIndices of chunks) {
    chunkFns.push(compileChunk(model, treeIndices, maxDepth));
    yield;
  }
  // Rows loop here, outside the generated code: each chunk function scores one row, so it is
  // optimised as an ordinary hot function (not by on-stack replacement of a loop), single-row
  // and batch calls share that optimised code, and one chunk's code stays hot across a batch.
  return (x, rows, margins) => {
    for (let c = 0; c < chunkFns.length; c++) {
      const chunk = chunkFns[c];
      for (let r = 0, o = 0, mo = 0; r < rows; r++, o += numFeature, mo += numGroup) chunk(x, o, margins, mo);
    }
  };
}

/** One chunk of trees for one row: reads row `x[o ..]`, adds into margins `m[mo ..]`. */
type ChunkFunction = (x: Float32Array, o: number, m: Float32Array, mo: number) => void;

function compileChunk(model: XgbModel, treeIndices: number[], maxDepth: number): ChunkFunction {
  const bitsets: Uint32Array[] = [];
  const walkers: ((x: Float32Array, o: number) => number)[] = [];
  const groups = [...new Set(treeIndices.map((t) => model.trees[t].group))].sort((a, b) => a - b);
  const used = new Set<number>();

  const lines: string[] = [];
  for (const t of treeIndices) {
    const tree = model.trees[t];
    const leaves = leafContributions(model, tree, t);
    let expr: string;
    if (tree.depth > maxDepth) {
      walkers.push(treeWalker(tree, leaves));
      expr = `W${int(walkers.length - 1)}(x, o)`;
    } else {
      expr = treeExpression(tree, leaves, 0, bitsets, used);
    }
    lines.push(`  s${int(tree.group)} = fround(s${int(tree.group)} + ${expr});`);
  }

  const source = [
    '"use strict";',
    ...bitsets.map((_, k) => `const B${int(k)} = B[${int(k)}];`),
    ...walkers.map((_, k) => `const W${int(k)} = W[${int(k)}];`),
    'return function chunk(x, o, m, mo) {',
    '  let c;',
    // Every feature the chunk reads is loaded once, unconditionally: no index arithmetic
    // hides in branches that warm-up traffic never took (which would deoptimise later).
    ...[...used].sort((a, b) => a - b).map((f) => `  const v${int(f)} = x[o + ${int(f)}];`),
    ...groups.map((g) => `  let s${int(g)} = m[mo + ${int(g)}];`),
    ...lines,
    ...groups.map((g) => `  m[mo + ${int(g)}] = s${int(g)};`),
    '};',
  ].join('\n');
  // The source holds only fixed text and literals printed by literal()/int() above.
  const factory = new Function('fround', 'B', 'W', source) as (
    fround: (v: number) => number,
    b: Uint32Array[],
    w: ((x: Float32Array, o: number) => number)[],
  ) => ChunkFunction;
  return factory(Math.fround, bitsets, walkers);
}

function treeExpression(tree: XgbTree, leaves: Float32Array, i: number, bitsets: Uint32Array[], used: Set<number>): string {
  if (tree.left[i] === -1) return literal(leaves[i]);
  const left = treeExpression(tree, leaves, tree.left[i], bitsets, used);
  const right = treeExpression(tree, leaves, tree.right[i], bitsets, used);
  used.add(tree.feature[i]);
  const x = `v${int(tree.feature[i])}`;
  const set = tree.categories[i];
  if (set !== null) {
    // Missing takes the default child; an invalid code goes left; a code in the set goes right.
    bitsets.push(bitset(set));
    const b = `B${int(bitsets.length - 1)}`;
    const fallback = tree.defaultLeft[i] ? left : right;
    return `((c = ${x}) !== c ? ${fallback} : c >= 0 && c < ${int(MAX_CATEGORY)} && ((${b}[c >>> 5] >>> (c & 31)) & 1) === 1 ? ${right} : ${left})`;
  }
  // NaN fails every comparison, so the comparison is chosen to send it to the default child.
  const threshold = literal(tree.value[i]);
  return tree.defaultLeft[i] ? `(${x} >= ${threshold} ? ${right} : ${left})` : `(${x} < ${threshold} ? ${left} : ${right})`;
}
