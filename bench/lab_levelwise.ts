/**
 * Lab prototype (bench/evaluator_lab.ts variants `level`, `treewise`; not shipped: 1.8x slower
 * than compile.ts on credit, 2.2x slower than flat.ts on large, see the lab's header).
 *
 * Level-synchronous complete-tree evaluator. Every tree padded to depth D in heap
 * order (children of i: 2i+1, 2i+2); for each level, every tree advances one step; trees are
 * independent, so the CPU overlaps them; no data-dependent branch.
 */
import { leafContributions, treeWalker, type ForestAccumulator } from '../src/models/xgboost/compile.ts';
import type { XgbModel, XgbTree } from '../src/models/xgboost/format.ts';

const f32 = Math.fround;
const MAX_DEPTH = 10;
const CODES = 63;

function takes(tree: XgbTree): boolean {
  if (tree.depth > MAX_DEPTH) return false;
  for (let i = 0; i < tree.left.length; i++) {
    const set = tree.categories[i];
    if (tree.left[i] !== -1 && set !== null && set.length > 0 && set[set.length - 1] >= CODES) return false;
  }
  return true;
}

export function levelForest(model: XgbModel, order: 'level' | 'tree' = 'level'): ForestAccumulator {
  const F = model.numFeature;
  const G = model.numGroup;
  const ok = model.trees.map(takes);
  let D = 0;
  model.trees.forEach((t, k) => {
    if (ok[k]) D = Math.max(D, t.depth);
  });
  const NI = (1 << D) - 1; // internal slots per tree
  const NL = 1 << D; // leaves per tree
  const slots = ok.filter(Boolean).length;
  const P = new Int32Array(4 * NI * slots);
  const PF = new Float32Array(P.buffer);
  PF.fill(NaN);
  for (let k = 0; k < P.length; k += 4) P[k] = 0, P[k + 2] = 0, P[k + 3] = 0;
  const LV = new Float32Array(NL * slots);
  const itemSlot: number[] = [];
  const itemGroup: number[] = [];
  const walkers: ((x: Float32Array, o: number) => number)[] = [];
  let categorical = false;
  let s = 0;
  model.trees.forEach((tree, t) => {
    const leaves = leafContributions(model, tree, t);
    if (!ok[t]) {
      if (tree.depth <= 64) for (let i = 0; i < leaves.length; i++) if (leaves[i] === 0) leaves[i] = 0;
      itemSlot.push(-1 - walkers.length);
      itemGroup.push(tree.group);
      walkers.push(treeWalker(tree, leaves));
      return;
    }
    const slot = s++;
    itemSlot.push(slot);
    itemGroup.push(tree.group);
    const place = (i: number, h: number, d: number): void => {
      if (tree.left[i] === -1) {
        // fill leaves under heap position h at depth D (pad nodes stay NaN: always left)
        const span = 1 << (D - d);
        const first = ((h + 1) << (D - d)) - 1 - NI;
        for (let j = 0; j < span; j++) LV[slot * NL + first + j] = leaves[i] === 0 ? 0 : leaves[i];
        return;
      }
      const n = 4 * (slot * NI + h);
      P[n] = tree.feature[i];
      const set = tree.categories[i];
      if (set === null) PF[n + 1] = tree.value[i];
      else {
        categorical = true;
        for (const c of set) P[n + 2 + (c >>> 5)] |= 1 << (c & 31);
      }
      if (!tree.defaultLeft[i]) P[n + 3] |= 1 << 31;
      place(tree.left[i], 2 * h + 1, d + 1);
      place(tree.right[i], 2 * h + 2, d + 1);
    };
    place(0, 0, 0);
  });
  const IS = Int32Array.from(itemSlot);
  const IG = Int32Array.from(itemGroup);
  const items = IS.length;
  const idx = new Int32Array(slots);
  const W = new Int32Array(2 * F);
  const simple = G === 1 && walkers.length === 0;

  return (x, rows, m) => {
    for (let r = 0, o = 0, mo = 0; r < rows; r++, o += F, mo += G) {
      for (let f = 0; f < F; f++) {
        const v = x[o + f];
        const okc = +(v >= 0) & +(v < CODES);
        const c = (okc === 1 ? v : 0) | 0;
        const lo = (1 << c) & -(+(c < 32)) & -okc;
        const hi = ((1 << (c - 32)) & -(+(c >= 32)) & -okc) | (+(v !== v) << 31);
        W[2 * f] = lo;
        W[2 * f + 1] = hi;
      }
      if (order === 'level') {
        idx.fill(0);
        for (let d = 0; d < D; d++) {
          for (let t = 0, base = 0; t < slots; t++, base += NI) {
            const i = idx[t];
            const n = (base + i) << 2;
            const f = P[n];
            const v = x[o + f];
            const rgt = +(v >= PF[n + 1]) | +(((W[2 * f] & P[n + 2]) | (W[2 * f + 1] & P[n + 3])) !== 0);
            idx[t] = 2 * i + 1 + rgt;
          }
        }
      } else {
        for (let t = 0, base = 0; t < slots; t++, base += NI) {
          let i = 0;
          for (let d = 0; d < D; d++) {
            const n = (base + i) << 2;
            const f = P[n];
            const v = x[o + f];
            i = 2 * i + 1 + (+(v >= PF[n + 1]) | +(((W[2 * f] & P[n + 2]) | (W[2 * f + 1] & P[n + 3])) !== 0));
          }
          idx[t] = i;
        }
      }
      if (simple) {
        let sum = m[mo];
        for (let t = 0, lb = -NI; t < items; t++, lb += NL) sum = f32(sum + LV[lb + idx[t]]);
        m[mo] = sum;
      } else {
        for (let t = 0; t < items; t++) {
          const slot = IS[t];
          const g = mo + IG[t];
          m[g] = f32(m[g] + (slot >= 0 ? LV[slot * NL + idx[slot] - NI] : walkers[-1 - slot](x, o)));
        }
      }
    }
    void categorical;
  };
}
