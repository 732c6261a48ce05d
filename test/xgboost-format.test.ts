/**
 * The XGBoost JSON runtime refuses corrupt, truncated and hostile files with a clear error
 * that says where the problem is, and never executes anything from the file.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadModel, ModelLoadError } from '../src/models/index.ts';
import { parseXgbJson, parseXgbModel } from '../src/models/xgboost/format.ts';
import { xgboostRuntime } from '../src/models/xgboost/runtime.ts';
import { ansiCLcg, minstd0 } from './helpers/prng.ts';
import { stumpModel, tempDir } from './helpers/tmp.ts';

async function loadFails(model: unknown, pattern: RegExp): Promise<void> {
  const file = join(tempDir(), 'model.json');
  writeFileSync(file, typeof model === 'string' ? model : JSON.stringify(model));
  await assert.rejects(loadModel('xgboost-json', file), (err: unknown) => {
    assert.ok(err instanceof ModelLoadError, `expected ModelLoadError, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  });
}

describe('xgboost-json model files', () => {
  it('scores a valid stump with strict less-than going left and missing taking the default', () => {
    const rt = xgboostRuntime(parseXgbModel(stumpModel()));
    const out = rt.predictSync!(Float32Array.from([0.49, 0, 0.5, 0, NaN, 0]), 3);
    const sigmoid = (m: number) => 1 / (1 + Math.exp(-m));
    assert.deepEqual([...out], [sigmoid(-1), sigmoid(1), sigmoid(-1)]);
  });

  it('compares in float32: a value that rounds to the threshold is not below it', () => {
    // 0.1 as float32 is 0.100000001490116...; the double 0.1 is below it but the float32 input equals it.
    const rt = xgboostRuntime(parseXgbModel(stumpModel({ tree: { split_conditions: [0.1, -1, 1] } })));
    const out = rt.predictSync!(Float32Array.from([0.1, 0]), 1);
    assert.equal(out[0], 1 / (1 + Math.exp(-1)));
  });

  it('refuses truncated JSON', async () => {
    const text = JSON.stringify(stumpModel());
    await loadFails(text.slice(0, text.length / 2), /not valid JSON/);
  });

  it('refuses an empty file and a missing file', async () => {
    await loadFails('', /not valid JSON/);
    await assert.rejects(loadModel('xgboost-json', '/nonexistent/model.json'), ModelLoadError);
  });

  it('refuses a child index outside the tree', async () => {
    await loadFails(stumpModel({ tree: { left_children: [7, -1, -1] } }), /left_children\[0\]: must be a whole number in \[-1, 2\]/);
  });

  it('refuses a cycle or shared node instead of looping forever', async () => {
    await loadFails(stumpModel({ tree: { left_children: [1, 0, -1], right_children: [2, 2, -1] } }), /reached twice|not a tree/);
  });

  it('refuses a split on a feature the model does not have', async () => {
    await loadFails(stumpModel({ tree: { split_indices: [5, 0, 0] } }), /split_indices\[0\]/);
  });

  it('refuses non-finite and float32-overflowing numbers', async () => {
    const text = JSON.stringify(stumpModel()).replace('"split_conditions":[0.5', '"split_conditions":[1e999');
    await loadFails(text, /split_conditions\[0\]: must be a finite number/);
    await loadFails(stumpModel({ tree: { split_conditions: [1e39, -1, 1] } }), /overflows float32/);
  });

  it('refuses text where numbers belong, so nothing from the file can reach generated code', async () => {
    await loadFails(stumpModel({ tree: { split_conditions: ['0.5); process.exit(9); (', -1, 1] } }), /split_conditions\[0\]/);
    await loadFails(stumpModel({ tree: { split_indices: ['0]; globalThis.pwned = 1; x[0', 0, 0] } }), /split_indices\[0\]/);
  });

  it('treats hostile names as data: feature names never reach generated code', () => {
    const hostile = stumpModel({ learner: { feature_names: ['a"); globalThis.pwned = 1; ("', 'b'] } });
    const rt = xgboostRuntime(parseXgbModel(hostile));
    rt.predictSync!(Float32Array.from([1, 2]), 1);
    assert.equal((globalThis as Record<string, unknown>).pwned, undefined);
    assert.equal(rt.featureNames?.[0], 'a"); globalThis.pwned = 1; ("');
  });

  it("reads XGBoost's bare NaN thresholds of categorical splits, and only there", async () => {
    const text = JSON.stringify(stumpModel({ learner: { feature_names: ['NaN count "Infinity"', 'b'] } }));
    const ok = JSON.parse(text.replace('"split_type":[0,0,0]', '"split_type":[1,0,0]').replace('"categories_nodes":[]', '"categories_nodes":[0]').replace('"categories":[]', '"categories":[2]').replace('"categories_segments":[]', '"categories_segments":[0]').replace('"categories_sizes":[]', '"categories_sizes":[1]').replace('"split_conditions":[0.5', '"split_conditions":["NaN_TOKEN"'));
    const file = join(tempDir(), 'model.json');
    writeFileSync(file, JSON.stringify(ok).replace('"NaN_TOKEN"', 'NaN'));
    const rt = await loadModel('xgboost-json', file);
    assert.equal(rt.featureNames?.[0], 'NaN count "Infinity"');
    // Category 2 is in the set and goes right (+1); 1 and 2.5→2 truncation; -1 is invalid and goes left.
    const out = rt.predictSync!(Float32Array.from([2, 0, 1, 0, 2.5, 0, -1, 0]), 4);
    const p = (m: number) => 1 / (1 + Math.exp(-m));
    assert.deepEqual([...out], [p(1), p(-1), p(1), p(-1)]);
    await loadFails(JSON.stringify(stumpModel()).replace('"split_conditions":[0.5', '"split_conditions":[NaN'), /split_conditions\[0\]: must be a finite number/);
  });

  it('refuses a malformed base_score and an unsupported objective', async () => {
    await loadFails(stumpModel({ learner: { learner_model_param: { base_score: 'abc', num_feature: '2' } } }), /base_score/);
    await loadFails(stumpModel({ learner: { learner_model_param: { base_score: '1.5', num_feature: '2' } } }), /base_score must be in \(0, 1\)/);
    await loadFails(stumpModel({ objective: 'rank:made_up' }), /unsupported objective rank:made_up/);
  });

  it('reads both base_score spellings', () => {
    for (const base of ['3E-1', '[3E-1]', 0.3]) {
      const model = parseXgbModel(stumpModel({ learner: { learner_model_param: { base_score: base, num_feature: '2' } } }));
      assert.deepEqual(model.baseScore, [0.3]);
    }
  });

  it('refuses a categorical split without its category set', async () => {
    await loadFails(stumpModel({ tree: { split_type: [1, 0, 0] } }), /categorical split without a category set/);
  });

  it('refuses a dart model whose weights do not match its trees', async () => {
    const m = stumpModel();
    const gb = m.learner.gradient_booster;
    const dart = { ...m, learner: { ...m.learner, gradient_booster: { name: 'dart', gbtree: { name: 'gbtree', model: gb.model }, weight_drop: [1, 1] } } };
    await loadFails(dart, /weight_drop: has 2 weights for 1 trees/);
  });

  describe('the forest must agree with its own header', () => {
    const fixture = (name: string) => JSON.parse(readFileSync(new URL(`fixtures/bundles/${name}/model.json`, import.meta.url), 'utf8'));
    type Forest = { gbtree_model_param: Record<string, string>; tree_info: number[]; trees: { id: number; tree_param: Record<string, string> }[]; iteration_indptr?: number[] };
    const forestOf = (m: { learner: { gradient_booster: { model: Forest } } }) => m.learner.gradient_booster.model;

    it('refuses a trees array shorter than num_trees (XGBoost itself crashes on it)', async () => {
      const m = fixture('binary_logistic');
      const forest = forestOf(m);
      forest.trees.pop();
      forest.tree_info.pop();
      await loadFails(m, /gbtree_model_param\.num_trees: is 40 but the file holds 39 trees/);
    });

    it('refuses a forest that is not a whole number of rounds of num_parallel_tree × num_class', async () => {
      const rf = fixture('rf_binary'); // 6 rounds of 5 parallel trees
      const forest = forestOf(rf);
      forest.trees.splice(28);
      forest.tree_info.splice(28);
      forest.gbtree_model_param.num_trees = '28';
      await loadFails(rf, /trees: holds 28 trees: not a whole number of rounds of num_parallel_tree 5 × 1 output group/);
      const multi = fixture('multi_softprob'); // 4 classes
      const mf = forestOf(multi);
      mf.trees.pop();
      mf.tree_info.pop();
      mf.gbtree_model_param.num_trees = String(mf.trees.length);
      await loadFails(multi, /holds 59 trees: not a whole number of rounds of num_parallel_tree 1 × 4 output group/);
    });

    it('refuses trees moved from their position, a num_nodes that disagrees, and a bad iteration_indptr', async () => {
      const swapped = fixture('binary_logistic');
      const trees = forestOf(swapped).trees;
      [trees[3], trees[4]] = [trees[4], trees[3]];
      await loadFails(swapped, /trees\[3\]\.id: is 4 at position 3/);
      const nodes = fixture('binary_logistic');
      forestOf(nodes).trees[2].tree_param.num_nodes = '5';
      await loadFails(nodes, /trees\[2\]\.tree_param\.num_nodes: is 5 but the tree has \d+ nodes/);
      const indptr = fixture('binary_logistic');
      forestOf(indptr).iteration_indptr = Array.from({ length: 40 }, (_, i) => i);
      await loadFails(indptr, /iteration_indptr: ends at 39 but the file holds 40 trees/);
      forestOf(indptr).iteration_indptr = Array.from({ length: 41 }, (_, i) => i);
      assert.equal(xgboostRuntime(parseXgbModel(indptr)).info.trees, 40);
    });
  });

  it('survives random corruption of a real model: every outcome is a clean load or a ModelLoadError', async () => {
    const real = readFileSync(new URL('../examples/credit/model.json', import.meta.url), 'utf8');
    const random = ansiCLcg(12345);
    const dir = tempDir();
    for (let trial = 0; trial < 40; trial++) {
      const chars = real.split('');
      for (let k = 0; k < 5; k++) chars[Math.floor(random() * chars.length)] = '0123456789-[]{},:"e'[Math.floor(random() * 19)];
      const file = join(dir, `m${trial}.json`);
      writeFileSync(file, chars.join(''));
      try {
        const rt = await loadModel('xgboost-json', file);
        rt.predictSync!(new Float32Array(rt.inputWidth), 1);
      } catch (err) {
        assert.ok(err instanceof ModelLoadError, `trial ${trial}: ${String(err)}`);
      }
    }
  });
});

describe('compiled trees and the tree walker agree', () => {
  it('gives identical margins on the credit model with every tree walked instead of compiled', async () => {
    const json = parseXgbJson(readFileSync(new URL('../examples/credit/model.json', import.meta.url), 'utf8'));
    const compiled = xgboostRuntime(parseXgbModel(json));
    const walked = xgboostRuntime(parseXgbModel(json), { maxCompiledDepth: -1 });
    const rows = 500;
    const x = new Float32Array(rows * compiled.inputWidth);
    const random = minstd0(7);
    for (let i = 0; i < x.length; i++) {
      const u = random();
      // Mix of small codes (categoricals), large values, negatives, non-integers and missing.
      x[i] = u < 0.1 ? NaN : u < 0.5 ? Math.floor(u * 60) : u < 0.6 ? -u : (u - 0.6) * 1e5;
    }
    assert.deepEqual(compiled.predictSync!(x, rows), walked.predictSync!(x, rows));
  });
});
