/**
 * Reads XGBoost's JSON model format (`booster.save_model("model.json")`) into plain typed
 * arrays, checking every number and index on the way in. Nothing downstream trusts the
 * file: the compiler only ever sees values this module has validated.
 *
 * Semantics are those of `../shared/notes/xgboost-json.md` and dmlc/xgboost's
 * `doc/model.schema`.
 */
import { z } from 'zod';

/** One regression tree, flattened. Node i is a leaf when `left[i] === -1`. */
export interface XgbTree {
  readonly left: Int32Array;
  readonly right: Int32Array;
  readonly feature: Int32Array;
  /** Split threshold (inner nodes) or leaf value (leaves), rounded to float32. */
  readonly value: Float32Array;
  readonly defaultLeft: Uint8Array;
  /** Per node: the sorted category codes that go right, for categorical splits; else null. */
  readonly categories: (Int32Array | null)[];
  /** Output group (class) this tree contributes to. */
  readonly group: number;
  /** Length of the longest root-to-leaf path, in edges. */
  readonly depth: number;
  /**
   * Per node: its cover (`sum_hessian`, the training rows' hessian sum that reached it), which
   * TreeSHAP weighs paths by; null when the file does not carry it (prediction does not need it).
   */
  readonly cover: Float32Array | null;
}

export interface XgbModel {
  readonly version: readonly number[];
  readonly objective: string;
  /** base_score in response space, one per output group (usually all equal). */
  readonly baseScore: readonly number[];
  readonly numFeature: number;
  /** Number of output groups: num_class for multi-class objectives, else 1. */
  readonly numGroup: number;
  readonly booster: 'gbtree' | 'dart';
  readonly trees: readonly XgbTree[];
  /** dart only: the weight each tree's output is multiplied by. */
  readonly treeWeights: Float32Array | null;
  readonly featureNames: readonly string[] | null;
  readonly featureTypes: readonly string[] | null;
}

/** Raised with a JSON path so a user can find the bad spot in the file. */
export class XgbFormatError extends Error {
  constructor(
    readonly path: string,
    readonly rule: string,
  ) {
    super(`${path}: ${rule}`);
    this.name = 'XgbFormatError';
  }
}

const numberLike = z.union([z.number(), z.string()]);

const treeSchema = z.object({
  left_children: z.array(z.unknown()),
  right_children: z.array(z.unknown()),
  split_indices: z.array(z.unknown()),
  split_conditions: z.array(z.unknown()),
  default_left: z.array(z.unknown()),
  split_type: z.array(z.unknown()).optional(),
  categories: z.array(z.unknown()).optional(),
  categories_nodes: z.array(z.unknown()).optional(),
  categories_segments: z.array(z.unknown()).optional(),
  categories_sizes: z.array(z.unknown()).optional(),
  sum_hessian: z.array(z.unknown()).optional(),
  id: z.unknown().optional(),
  tree_param: z.object({ num_nodes: numberLike.optional() }).passthrough().optional(),
});

const gbtreeModelSchema = z.object({
  gbtree_model_param: z.object({ num_trees: numberLike, num_parallel_tree: numberLike.optional() }).passthrough().optional(),
  tree_info: z.array(z.unknown()),
  trees: z.array(z.unknown()),
  /** XGBoost 2: where each boosting round's trees start. */
  iteration_indptr: z.array(z.unknown()).optional(),
});

const learnerSchema = z.object({
  version: z.array(z.number().int().nonnegative()).min(1),
  learner: z.object({
    feature_names: z.array(z.string()).optional(),
    feature_types: z.array(z.string()).optional(),
    learner_model_param: z
      .object({
        base_score: numberLike,
        num_class: numberLike.optional(),
        num_feature: numberLike,
        num_target: numberLike.optional(),
      })
      .passthrough(),
    objective: z.object({ name: z.string().min(1) }).passthrough(),
    gradient_booster: z
      .object({
        name: z.enum(['gbtree', 'dart']),
        model: gbtreeModelSchema.optional(),
        gbtree: z.object({ model: gbtreeModelSchema }).passthrough().optional(),
        weight_drop: z.array(z.unknown()).optional(),
      })
      .passthrough(),
  }),
});

/**
 * XGBoost's JSON writer prints non-finite floats as bare `NaN` / `Infinity` (categorical
 * splits carry NaN thresholds), which JSON.parse refuses. Outside strings, turn those
 * tokens into `null`; the validator below then decides where a missing number is allowed.
 */
export function parseXgbJson(text: string): unknown {
  if (!text.includes('NaN') && !text.includes('Infinity')) return JSON.parse(text);
  let out = '';
  let from = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 92 /* backslash */) i++;
      else if (ch === 34 /* " */) inString = false;
      continue;
    }
    if (ch === 34) inString = true;
    else if (ch === 78 /* N */ && text.startsWith('NaN', i)) {
      out += text.slice(from, i) + 'null';
      from = i + 3;
      i += 2;
    } else if ((ch === 73 /* I */ && text.startsWith('Infinity', i)) || (ch === 45 /* - */ && text.startsWith('-Infinity', i))) {
      const len = ch === 45 ? 9 : 8;
      out += text.slice(from, i) + 'null';
      from = i + len;
      i += len - 1;
    }
  }
  return JSON.parse(out + text.slice(from));
}

/** Categories are category codes; XGBoost treats codes >= 2^24 as invalid (float32 precision). */
const MAX_CATEGORY = 1 << 24;

export function parseXgbModel(json: unknown): XgbModel {
  const parsed = learnerSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new XgbFormatError(`$.${issue.path.join('.')}`, issue.message);
  }
  const { version, learner } = parsed.data;
  const params = learner.learner_model_param;
  const numFeature = parseCount(params.num_feature, '$.learner.learner_model_param.num_feature');
  const numClass = params.num_class === undefined ? 0 : parseCount(params.num_class, '$.learner.learner_model_param.num_class');
  const objective = learner.objective.name;
  const numGroup = Math.max(1, numClass);
  if (numClass > 0 && !objective.startsWith('multi:')) {
    throw new XgbFormatError('$.learner.learner_model_param.num_class', `num_class ${numClass} needs a multi: objective, got ${objective}`);
  }
  if (params.num_target !== undefined && parseCount(params.num_target, '$.learner.learner_model_param.num_target') > 1) {
    throw new XgbFormatError('$.learner.learner_model_param.num_target', 'multi-target models are not supported');
  }
  const baseScore = parseBaseScore(params.base_score, numGroup);

  const gb = learner.gradient_booster;
  const model = gb.name === 'dart' ? (gb.gbtree?.model ?? gb.model) : gb.model;
  const modelPath = gb.name === 'dart' ? '$.learner.gradient_booster.gbtree.model' : '$.learner.gradient_booster.model';
  if (!model) throw new XgbFormatError(modelPath, 'missing: the booster holds no tree model');
  checkForestHeader(model, numGroup, modelPath);
  const trees = model.trees.map((raw, t) => {
    const group = integerIn(model.tree_info[t], 0, numGroup - 1, `${modelPath}.tree_info[${t}]`);
    return parseTree(raw, t, group, numFeature, `${modelPath}.trees[${t}]`);
  });

  let treeWeights: Float32Array | null = null;
  if (gb.name === 'dart') {
    const weights = gb.weight_drop ?? [];
    if (weights.length !== trees.length) {
      throw new XgbFormatError('$.learner.gradient_booster.weight_drop', `has ${weights.length} weights for ${trees.length} trees`);
    }
    treeWeights = Float32Array.from(weights, (w, i) => finite(w, `$.learner.gradient_booster.weight_drop[${i}]`));
  }

  const featureNames = learner.feature_names && learner.feature_names.length > 0 ? learner.feature_names : null;
  if (featureNames && featureNames.length !== numFeature) {
    throw new XgbFormatError('$.learner.feature_names', `has ${featureNames.length} names for num_feature ${numFeature}`);
  }
  const featureTypes = learner.feature_types && learner.feature_types.length > 0 ? learner.feature_types : null;
  return { version, objective, baseScore, numFeature, numGroup, booster: gb.name, trees, treeWeights, featureNames, featureTypes };
}

/**
 * The forest must agree with its own header: a trees array shorter than num_trees (a
 * truncated or hand-edited file) would otherwise score with trees missing, silently;
 * XGBoost itself crashes on it.
 */
function checkForestHeader(model: z.output<typeof gbtreeModelSchema>, numGroup: number, modelPath: string): void {
  const count = model.trees.length;
  if (model.tree_info.length !== count) throw new XgbFormatError(`${modelPath}.tree_info`, `has ${model.tree_info.length} entries for ${count} trees`);
  const header = model.gbtree_model_param;
  if (header) {
    const numTrees = parseCount(header.num_trees, `${modelPath}.gbtree_model_param.num_trees`);
    if (numTrees !== count) throw new XgbFormatError(`${modelPath}.gbtree_model_param.num_trees`, `is ${numTrees} but the file holds ${count} trees (truncated or edited?)`);
    // Every boosting round adds num_parallel_tree trees per output group.
    const parallel = header.num_parallel_tree === undefined ? 1 : parseCount(header.num_parallel_tree, `${modelPath}.gbtree_model_param.num_parallel_tree`);
    if (parallel < 1) throw new XgbFormatError(`${modelPath}.gbtree_model_param.num_parallel_tree`, 'must be at least 1');
    if (count % (parallel * numGroup) !== 0) {
      throw new XgbFormatError(`${modelPath}.trees`, `holds ${count} trees: not a whole number of rounds of num_parallel_tree ${parallel} × ${numGroup} output group(s)`);
    }
  }
  const indptr = model.iteration_indptr;
  if (indptr) {
    const path = `${modelPath}.iteration_indptr`;
    if (indptr.length === 0 || indptr[0] !== 0) throw new XgbFormatError(path, 'must start at 0');
    for (let i = 1; i < indptr.length; i++) integerIn(indptr[i], indptr[i - 1] as number, count, `${path}[${i}]`);
    if (indptr[indptr.length - 1] !== count) throw new XgbFormatError(path, `ends at ${JSON.stringify(indptr[indptr.length - 1])} but the file holds ${count} trees`);
  }
}

function parseTree(raw: unknown, index: number, group: number, numFeature: number, path: string): XgbTree {
  const parsed = treeSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new XgbFormatError(`${path}.${issue.path.join('.')}`, issue.message);
  }
  const t = parsed.data;
  const n = t.left_children.length;
  if (n === 0) throw new XgbFormatError(`${path}.left_children`, 'a tree needs at least one node');
  // XGBoost writes each tree's position as its id: another id means trees were moved or spliced.
  if (t.id !== undefined && t.id !== index) throw new XgbFormatError(`${path}.id`, `is ${JSON.stringify(t.id)?.slice(0, 40)} at position ${index}`);
  if (t.tree_param?.num_nodes !== undefined) {
    const nodes = parseCount(t.tree_param.num_nodes, `${path}.tree_param.num_nodes`);
    if (nodes !== n) throw new XgbFormatError(`${path}.tree_param.num_nodes`, `is ${nodes} but the tree has ${n} nodes`);
  }
  for (const key of ['right_children', 'split_indices', 'split_conditions', 'default_left'] as const) {
    if (t[key].length !== n) throw new XgbFormatError(`${path}.${key}`, `has ${t[key].length} entries, left_children has ${n}`);
  }
  if (t.split_type && t.split_type.length !== n) {
    throw new XgbFormatError(`${path}.split_type`, `has ${t.split_type.length} entries, left_children has ${n}`);
  }
  const left = new Int32Array(n);
  const right = new Int32Array(n);
  const feature = new Int32Array(n);
  const value = new Float32Array(n);
  const defaultLeft = new Uint8Array(n);
  const categories: (Int32Array | null)[] = new Array<Int32Array | null>(n).fill(null);
  for (let i = 0; i < n; i++) {
    left[i] = integerIn(t.left_children[i], -1, n - 1, `${path}.left_children[${i}]`);
    // A categorical split has no threshold (XGBoost writes NaN); every other node needs one.
    const categorical = t.split_type?.[i] === 1 && left[i] !== -1;
    if (!(categorical && t.split_conditions[i] === null)) {
      value[i] = finite(t.split_conditions[i], `${path}.split_conditions[${i}]`);
      if (!Number.isFinite(value[i])) throw new XgbFormatError(`${path}.split_conditions[${i}]`, 'overflows float32');
    }
    if (left[i] === -1) continue;
    right[i] = integerIn(t.right_children[i], 0, n - 1, `${path}.right_children[${i}]`);
    feature[i] = integerIn(t.split_indices[i], 0, numFeature - 1, `${path}.split_indices[${i}]`);
    const d = t.default_left[i];
    if (d === true || d === 1) defaultLeft[i] = 1;
    else if (d !== false && d !== 0) throw new XgbFormatError(`${path}.default_left[${i}]`, 'must be 0, 1, true or false');
  }

  // Categorical splits: node k's set is categories[segments[k] .. + sizes[k]].
  const catNodes = t.categories_nodes ?? [];
  const splitType = t.split_type ?? [];
  if (catNodes.length > 0) {
    const all = t.categories ?? [];
    const segments = t.categories_segments ?? [];
    const sizes = t.categories_sizes ?? [];
    if (segments.length !== catNodes.length || sizes.length !== catNodes.length) {
      throw new XgbFormatError(`${path}.categories_segments`, 'categories_nodes, categories_segments and categories_sizes must have equal lengths');
    }
    for (let k = 0; k < catNodes.length; k++) {
      const node = integerIn(catNodes[k], 0, n - 1, `${path}.categories_nodes[${k}]`);
      const start = integerIn(segments[k], 0, all.length, `${path}.categories_segments[${k}]`);
      const size = integerIn(sizes[k], 0, all.length - start, `${path}.categories_sizes[${k}]`);
      const set = new Int32Array(size);
      for (let j = 0; j < size; j++) set[j] = integerIn(all[start + j], 0, MAX_CATEGORY - 1, `${path}.categories[${start + j}]`);
      set.sort();
      categories[node] = set;
    }
  }
  for (let i = 0; i < splitType.length; i++) {
    const s = integerIn(splitType[i], 0, 1, `${path}.split_type[${i}]`);
    if (s === 1 && left[i] !== -1 && categories[i] === null) {
      throw new XgbFormatError(`${path}.split_type[${i}]`, 'categorical split without a category set in categories_nodes');
    }
    if (s === 0) categories[i] = null;
  }

  let cover: Float32Array | null = null;
  if (t.sum_hessian) {
    if (t.sum_hessian.length !== n) throw new XgbFormatError(`${path}.sum_hessian`, `has ${t.sum_hessian.length} entries, left_children has ${n}`);
    cover = Float32Array.from(t.sum_hessian, (h, i) => nonNegative(h, `${path}.sum_hessian[${i}]`));
  }

  return { left, right, feature, value, defaultLeft, categories, group, depth: checkTreeShape(left, right, path), cover };
}

/** Every node must be reached exactly once from the root: no cycles, no shared or orphan nodes. */
function checkTreeShape(left: Int32Array, right: Int32Array, path: string): number {
  const n = left.length;
  const seen = new Uint8Array(n);
  const depthOf = new Int32Array(n);
  const stack = [0];
  seen[0] = 1;
  let maxDepth = 0;
  let visited = 0;
  while (stack.length > 0) {
    const i = stack.pop()!;
    visited++;
    if (depthOf[i] > maxDepth) maxDepth = depthOf[i];
    if (left[i] === -1) continue;
    for (const child of [left[i], right[i]]) {
      if (seen[child]) throw new XgbFormatError(`${path}`, `node ${child} is reached twice: not a tree`);
      seen[child] = 1;
      depthOf[child] = depthOf[i] + 1;
      stack.push(child);
    }
  }
  if (visited !== n) throw new XgbFormatError(`${path}`, `${n - visited} node(s) are not reachable from the root`);
  return maxDepth;
}

function parseBaseScore(raw: string | number, numGroup: number): number[] {
  const path = '$.learner.learner_model_param.base_score';
  let values: number[];
  if (typeof raw === 'number') values = [raw];
  else {
    const text = raw.trim();
    const inner = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
    values = inner.split(',').map((part) => strictNumber(part.trim(), path));
  }
  for (const v of values) if (!Number.isFinite(v)) throw new XgbFormatError(path, `must be a finite number, got ${String(raw)}`);
  if (values.length === 1) return new Array<number>(numGroup).fill(values[0]);
  if (values.length !== numGroup) throw new XgbFormatError(path, `has ${values.length} values for ${numGroup} output groups`);
  return values;
}

function strictNumber(text: string, path: string): number {
  // Number() accepts '' and whitespace as 0; the model file must say what it means.
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) throw new XgbFormatError(path, `not a number: ${JSON.stringify(text.slice(0, 40))}`);
  return Number(text);
}

function parseCount(raw: string | number, path: string): number {
  const v = typeof raw === 'number' ? raw : strictNumber(raw.trim(), path);
  if (!Number.isInteger(v) || v < 0 || v > 1e7) throw new XgbFormatError(path, `must be a whole number between 0 and 10^7, got ${String(raw)}`);
  return v;
}

function integerIn(raw: unknown, min: number, max: number, path: string): number {
  if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < min || raw > max) {
    throw new XgbFormatError(path, `must be a whole number in [${min}, ${max}], got ${JSON.stringify(raw)?.slice(0, 40)}`);
  }
  return raw;
}

function nonNegative(raw: unknown, path: string): number {
  const v = finite(raw, path);
  if (!(v >= 0) || !Number.isFinite(Math.fround(v))) throw new XgbFormatError(path, `must be a non-negative float32, got ${v}`);
  return v;
}

function finite(raw: unknown, path: string): number {
  if (typeof raw !== 'number' || !Number.isFinite(raw)) throw new XgbFormatError(path, `must be a finite number, got ${JSON.stringify(raw)?.slice(0, 40)}`);
  return raw;
}
