/**
 * Generates big XGBoost JSON models for tests and load measurements, without Python: `trees`
 * complete trees of `depth` levels of numeric splits, drawn from a seeded generator, written in
 * XGBoost 1.7's JSON layout (the same keys `booster.save_model` writes).
 */
import { mulberry32 } from './prng.ts';

export interface ForestSpec {
  trees: number;
  /** Levels of splits per tree (a complete binary tree: 2^(depth+1) - 1 nodes). */
  depth: number;
  features: number;
  seed?: number;
}

export interface GeneratedForest {
  /** The model file's text (built as text: a 100 MB model as objects would be slow to stringify). */
  text: string;
  /**
   * P(label 1) for one row, by a walk of the generated trees written independently of rtml's
   * evaluators (a float32 margin summed in tree order, then the logistic function): expected
   * values for golden files without parsing the text back.
   */
  predict(x: Float32Array): number;
}

export function forestModel({ trees, depth, features, seed = 1 }: ForestSpec): GeneratedForest {
  const random = mulberry32(seed);
  const nodes = 2 ** (depth + 1) - 1;
  const inner = 2 ** depth - 1;
  const left: number[] = [];
  const right: number[] = [];
  const parents: number[] = [2147483647];
  for (let i = 0; i < nodes; i++) {
    left.push(i < inner ? 2 * i + 1 : -1);
    right.push(i < inner ? 2 * i + 2 : -1);
    if (i > 0) parents.push((i - 1) >> 1);
  }
  const fixed = `"left_children":[${left}],"right_children":[${right}],"parents":[${parents}],"split_type":[${new Array(nodes).fill(0)}],"categories":[],"categories_nodes":[],"categories_segments":[],"categories_sizes":[]`;
  const parts: string[] = [];
  const allFeatures = new Int32Array(trees * nodes);
  const allValues = new Float32Array(trees * nodes);
  const allDefaults = new Uint8Array(trees * nodes);
  for (let t = 0; t < trees; t++) {
    const splitIndices: number[] = [];
    const conditions: number[] = [];
    const defaults: number[] = [];
    for (let i = 0; i < nodes; i++) {
      if (i < inner) {
        splitIndices.push(Math.floor(random() * features));
        conditions.push(Math.fround(random()));
        defaults.push(random() < 0.5 ? 1 : 0);
      } else {
        splitIndices.push(0);
        conditions.push(Math.fround((random() - 0.5) * 0.01));
        defaults.push(0);
      }
    }
    allFeatures.set(splitIndices, t * nodes);
    allValues.set(conditions, t * nodes);
    allDefaults.set(defaults, t * nodes);
    parts.push(`{${fixed},"split_indices":[${splitIndices}],"split_conditions":[${conditions}],"default_left":[${defaults}],"base_weights":[${conditions}],"id":${t}}`);
  }
  const names = Array.from({ length: features }, (_, f) => `f${f}`);
  const text =
    `{"version":[1,7,4],"learner":{"feature_names":${JSON.stringify(names)},"feature_types":${JSON.stringify(names.map(() => 'float'))},` +
    `"learner_model_param":{"base_score":"5E-1","num_class":"0","num_feature":"${features}","num_target":"1"},"objective":{"name":"binary:logistic"},` +
    `"gradient_booster":{"name":"gbtree","model":{"gbtree_model_param":{"num_trees":"${trees}","num_parallel_tree":"1"},` +
    `"tree_info":[${new Array(trees).fill(0)}],"trees":[${parts.join(',')}]}}}}`;
  const predict = (x: Float32Array): number => {
    let margin = 0; // base_score 0.5 is a margin of 0
    for (let t = 0, o = 0; t < trees; t++, o += nodes) {
      let i = 0;
      while (i < inner) {
        const v = x[allFeatures[o + i]];
        const goLeft = Number.isNaN(v) ? allDefaults[o + i] === 1 : v < allValues[o + i];
        i = goLeft ? 2 * i + 1 : 2 * i + 2;
      }
      margin = Math.fround(margin + allValues[o + i]);
    }
    return 1 / (1 + Math.exp(-margin));
  };
  return { text, predict };
}
