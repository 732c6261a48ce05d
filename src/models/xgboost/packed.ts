/**
 * Trees packed into a few flat typed arrays, to move them between threads. A parsed forest is
 * six small typed arrays per tree: structured clone copies each one as an object of its own, and
 * receiving the 1.2 million arrays of a 200,000-tree forest took ~5 s of the receiving thread
 * (measured: v8 deserialize of such a model). Packed, the same trees are a dozen buffers that
 * are transferred without a copy, and unpacking makes views into them.
 */
import type { XgbTree } from './format.ts';

export interface PackedTrees {
  /** The model's index of each packed tree, in order. */
  readonly index: Int32Array;
  /** Packed tree k's nodes are offset[k] .. offset[k + 1] in the node arrays. */
  readonly offset: Int32Array;
  readonly left: Int32Array;
  readonly right: Int32Array;
  readonly feature: Int32Array;
  readonly value: Float32Array;
  readonly defaultLeft: Uint8Array;
  readonly group: Int32Array;
  readonly depth: Int32Array;
  /** Node covers (sum_hessian, for exact contributions), meaningful where `hasCover` is 1 for the tree. */
  readonly cover: Float32Array;
  readonly hasCover: Uint8Array;
  /** Categorical splits: node (packed node index) and its sorted codes `codes[catOffset[j] .. catOffset[j + 1]]`. */
  readonly catNode: Int32Array;
  readonly catOffset: Int32Array;
  readonly codes: Int32Array;
}

/** Packs the trees at `indices` (all of them by default). */
export function packTrees(trees: readonly XgbTree[], indices: readonly number[] = trees.map((_, t) => t)): PackedTrees {
  let nodes = 0;
  let sets = 0;
  let codes = 0;
  for (const t of indices) {
    const tree = trees[t];
    nodes += tree.left.length;
    for (const set of tree.categories) {
      if (set === null) continue;
      sets++;
      codes += set.length;
    }
  }
  const packed = {
    index: Int32Array.from(indices),
    offset: new Int32Array(indices.length + 1),
    left: new Int32Array(nodes),
    right: new Int32Array(nodes),
    feature: new Int32Array(nodes),
    value: new Float32Array(nodes),
    defaultLeft: new Uint8Array(nodes),
    group: new Int32Array(indices.length),
    depth: new Int32Array(indices.length),
    cover: new Float32Array(nodes),
    hasCover: new Uint8Array(indices.length),
    catNode: new Int32Array(sets),
    catOffset: new Int32Array(sets + 1),
    codes: new Int32Array(codes),
  };
  let at = 0;
  let set = 0;
  let code = 0;
  indices.forEach((t, k) => {
    const tree = trees[t];
    packed.offset[k] = at;
    packed.left.set(tree.left, at);
    packed.right.set(tree.right, at);
    packed.feature.set(tree.feature, at);
    packed.value.set(tree.value, at);
    packed.defaultLeft.set(tree.defaultLeft, at);
    packed.group[k] = tree.group;
    packed.depth[k] = tree.depth;
    if (tree.cover !== null) {
      packed.cover.set(tree.cover, at);
      packed.hasCover[k] = 1;
    }
    tree.categories.forEach((codes, i) => {
      if (codes === null) return;
      packed.catNode[set] = at + i;
      packed.catOffset[set] = code;
      packed.codes.set(codes, code);
      code += codes.length;
      set++;
    });
    at += tree.left.length;
  });
  packed.offset[indices.length] = at;
  packed.catOffset[sets] = code;
  return packed;
}

/**
 * Packed tree k as an XgbTree of views into the packed arrays (no copy). `nextSet` is the
 * index of its first categorical set in `catNode`: unpacking trees in order, pass the value
 * returned by the previous call (0 for the first tree).
 */
export function unpackTree(p: PackedTrees, k: number, nextSet: number): { tree: XgbTree; nextSet: number } {
  const from = p.offset[k];
  const to = p.offset[k + 1];
  const categories = new Array<Int32Array | null>(to - from).fill(null);
  let j = nextSet;
  for (; j < p.catNode.length && p.catNode[j] < to; j++) categories[p.catNode[j] - from] = p.codes.subarray(p.catOffset[j], p.catOffset[j + 1]);
  const tree: XgbTree = {
    left: p.left.subarray(from, to),
    right: p.right.subarray(from, to),
    feature: p.feature.subarray(from, to),
    value: p.value.subarray(from, to),
    defaultLeft: p.defaultLeft.subarray(from, to),
    categories,
    group: p.group[k],
    depth: p.depth[k],
    cover: p.hasCover[k] ? p.cover.subarray(from, to) : null,
  };
  return { tree, nextSet: j };
}

/** The buffers to transfer with a message holding `p`. */
export function packedBuffers(p: PackedTrees): ArrayBuffer[] {
  return [p.index, p.offset, p.left, p.right, p.feature, p.value, p.defaultLeft, p.group, p.depth, p.cover, p.hasCover, p.catNode, p.catOffset, p.codes].map((a) => a.buffer as ArrayBuffer);
}
