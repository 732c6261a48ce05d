/** Temporary bundle directories for tests. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function tempDir(prefix = 'rtml-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Writes files (name → text or JSON value) into a new temporary directory. */
export function tempBundle(files: Record<string, string | object>): string {
  const dir = tempDir();
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
  }
  return dir;
}

/** A minimal valid XGBoost 1.7 JSON model: one stump on feature 0 (x < 0.5 → -1, else 1). */
export function stumpModel(overrides: { tree?: Record<string, unknown>; learner?: Record<string, unknown>; objective?: string } = {}) {
  return {
    version: [1, 7, 4],
    learner: {
      feature_names: ['a', 'b'],
      feature_types: ['float', 'float'],
      learner_model_param: { base_score: '5E-1', num_class: '0', num_feature: '2', num_target: '1' },
      objective: { name: overrides.objective ?? 'binary:logistic' },
      gradient_booster: {
        name: 'gbtree',
        model: {
          gbtree_model_param: { num_trees: '1', num_parallel_tree: '1' },
          tree_info: [0],
          trees: [
            {
              left_children: [1, -1, -1],
              right_children: [2, -1, -1],
              parents: [2147483647, 0, 0],
              split_indices: [0, 0, 0],
              split_conditions: [0.5, -1, 1],
              default_left: [1, 0, 0],
              split_type: [0, 0, 0],
              categories: [],
              categories_nodes: [],
              categories_segments: [],
              categories_sizes: [],
              base_weights: [0, -1, 1],
              ...overrides.tree,
            },
          ],
        },
      },
      ...overrides.learner,
    },
  };
}
