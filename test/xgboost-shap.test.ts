/**
 * Exact contributions: rtml's TreeSHAP gives the very numbers XGBoost 1.7.4's
 * `predict(pred_contribs=True)` gives (golden files written by
 * test/fixtures/make_contributions.py), bit for bit, for every objective family, dart,
 * missing values and categorical splits, through each of its three strategies; and they add
 * up to the margin rtml's own evaluator computes.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadModelBundle, type ModelBundle } from '../src/bundle/load.ts';
import { flatForest } from '../src/models/xgboost/flat.ts';
import { OFF_THREAD_BYTES, prepareOffThread, runtimeFromForest } from '../src/models/xgboost/load.ts';
import { tempDir } from './helpers/tmp.ts';
import { parseXgbJson, parseXgbModel, type XgbModel } from '../src/models/xgboost/format.ts';
import { objectiveFor } from '../src/models/xgboost/objectives.ts';
import { buildTreeShap, contributionsUnavailable, type TreeShapOptions } from '../src/models/xgboost/shap.ts';
import { contributionBundles, readGoldenContributions } from './helpers/contributions.ts';

const ROOT = new URL('..', import.meta.url).pathname;

async function open(dir: string): Promise<{ bundle: ModelBundle; model: XgbModel; baseMargins: number[] }> {
  const bundle = await loadModelBundle(dir);
  const model = parseXgbModel(parseXgbJson(readFileSync(join(dir, bundle.manifest.model!.path), 'utf8')));
  const objective = objectiveFor(model.objective)!;
  return { bundle, model, baseMargins: model.baseScore.map((b) => objective.baseMargin(b)) };
}

/** Rows where rtml and XGBoost differ, as "row r group g column c: rtml x, xgboost y" (the first few). */
function differences(actual: Float64Array, expected: Float64Array, groups: number, width: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < expected.length && out.length < 5; i++) {
    if (Object.is(actual[i], expected[i]) || actual[i] === expected[i]) continue;
    const c = i % (width + 1);
    const g = Math.floor(i / (width + 1)) % groups;
    out.push(`row ${Math.floor(i / ((width + 1) * groups))} group ${g} column ${c === width ? 'bias' : c}: rtml ${actual[i]}, xgboost ${expected[i]}`);
  }
  return out;
}

const STRATEGIES: [string, TreeShapOptions, (s: ReturnType<typeof buildTreeShap>) => boolean][] = [
  ['default (tables within the budget)', {}, (s) => s.wholeTableTrees + s.leafTableTrees + s.recursiveTrees > 0],
  ['leaf tables only', { wholeTreeTables: false }, (s) => s.wholeTableTrees === 0 && s.recursiveTrees === 0],
  ['the recursion only', { tableBudget: 0 }, (s) => s.wholeTableTrees === 0 && s.leafTableTrees === 0],
];

describe('TreeSHAP contributions are XGBoost pred_contribs, bit for bit', () => {
  for (const dir of contributionBundles()) {
    it(dir.slice(ROOT.length), async () => {
      const { bundle, model, baseMargins } = await open(dir);
      const golden = readGoldenContributions(bundle);
      const rows = golden.rows.length;
      const width = golden.width;
      assert.equal(golden.groups, model.numGroup);
      assert.equal(contributionsUnavailable(model), null);

      for (const [name, options, took] of STRATEGIES) {
        const shap = buildTreeShap(model, baseMargins, options);
        assert.ok(took(shap), `${name}: strategy not taken (${shap.wholeTableTrees} whole, ${shap.leafTableTrees} leaf, ${shap.recursiveTrees} recursive)`);
        const batch = new Float64Array(rows * golden.groups * (width + 1));
        shap.contributions(golden.inputs, rows, batch);
        assert.deepEqual(differences(batch, golden.expected, golden.groups, width), [], name);
        // One row at a time (the real-time path) gives the same.
        const one = new Float64Array(golden.groups * (width + 1));
        for (const r of [0, Math.floor(rows / 2), rows - 1]) {
          shap.contributions(golden.inputs.subarray(r * width, (r + 1) * width), 1, one);
          assert.deepEqual([...one], [...golden.expected.subarray(r * one.length, (r + 1) * one.length)], `${name}: row ${r} alone`);
        }
      }

      // Contributions plus bias add up to the margin rtml itself computes, to float32 rounding
      // of the terms (XGBoost's own sum is float32: large terms that cancel lose low bits).
      const shap = buildTreeShap(model, baseMargins);
      const out = new Float64Array(rows * golden.groups * (width + 1));
      shap.contributions(golden.inputs, rows, out);
      const margins = new Float32Array(rows * model.numGroup);
      for (let r = 0; r < rows; r++) margins.set(Float32Array.from(baseMargins, Math.fround), r * model.numGroup);
      flatForest(model)(golden.inputs, rows, margins);
      let worst = 0;
      for (let r = 0; r < rows; r++) {
        for (let g = 0; g < golden.groups; g++) {
          const at = (r * golden.groups + g) * (width + 1);
          let sum = 0;
          let scale = 1;
          for (let c = 0; c <= width; c++) {
            sum += out[at + c];
            scale += Math.abs(out[at + c]);
          }
          worst = Math.max(worst, Math.abs(sum - margins[r * golden.groups + g]) / scale);
          assert.equal(margins[r * golden.groups + g], golden.margins[r * golden.groups + g], 'rtml margin is XGBoost margin');
        }
      }
      assert.ok(worst < 1e-6, `contributions + bias differ from the margin by ${worst} of the terms`);
      await bundle.model.close?.();
    });
  }

  it('covers binary, multi-class (per class), regression, dart, missing values, categorical and one-hot columns', async () => {
    const seen = new Set<string>();
    for (const dir of contributionBundles()) {
      const { bundle, model } = await open(dir);
      seen.add(model.objective);
      if (model.booster === 'dart') seen.add('dart');
      if (model.trees.some((t) => t.categories.some((c) => c !== null))) seen.add('categorical');
      if (bundle.encoding.features.some((f) => f.type === 'category' && f.encoding === 'onehot')) seen.add('onehot');
      const golden = readGoldenContributions(bundle);
      if (golden.inputs.some((v) => Number.isNaN(v))) seen.add('missing');
      await bundle.model.close?.();
    }
    for (const required of ['binary:logistic', 'binary:logitraw', 'multi:softprob', 'multi:softmax', 'reg:squarederror', 'reg:logistic', 'count:poisson', 'reg:gamma', 'reg:tweedie', 'dart', 'categorical', 'onehot', 'missing']) {
      assert.ok(seen.has(required), `no golden contribution file covers ${required}`);
    }
  });
});

describe('contributions of a model loaded off the event loop', () => {
  it('a flat forest sends all its trees to this thread when it can be explained; prepare() builds the same tables in slices', async () => {
    // The credit forest four times over: past the flat evaluator's size, a file over the size
    // prepared in a worker thread.
    const json = parseXgbJson(readFileSync(join(ROOT, 'examples/credit/model.json'), 'utf8')) as { learner: { gradient_booster: { model: { trees: Record<string, unknown>[]; tree_info: number[]; gbtree_model_param: { num_trees: string } } } } };
    const m = json.learner.gradient_booster.model;
    m.trees = [...m.trees, ...m.trees, ...m.trees, ...m.trees].map((tree, t) => ({ ...tree, id: t }));
    m.tree_info = m.trees.map(() => 0);
    m.gbtree_model_param.num_trees = String(m.trees.length);
    const file = join(tempDir(), 'model.json');
    writeFileSync(file, JSON.stringify(json));
    assert.ok(statSync(file).size >= OFF_THREAD_BYTES);

    const forest = await prepareOffThread(file);
    assert.equal(forest.evaluator, 'flat');
    assert.equal(forest.trees.index.length, 800, 'every tree travels: contributions need them');
    const runtime = await runtimeFromForest(forest);
    const support = runtime.contributions!;
    assert.ok(support.exact);
    await support.prepare!();
    const model = parseXgbModel(parseXgbJson(readFileSync(file, 'utf8')));
    const direct = buildTreeShap(model, model.baseScore.map((b) => objectiveFor(model.objective)!.baseMargin(b)));
    const bundle = await loadModelBundle(join(ROOT, 'examples/credit'));
    const golden = readGoldenContributions(bundle);
    const rows = golden.rows.length;
    const expected = new Float64Array(rows * (golden.width + 1));
    direct.contributions(golden.inputs, rows, expected);
    assert.deepEqual([...support.explainer().contributions(golden.inputs, rows)], [...expected]);
    assert.equal(support.explainer().info.whole_table_trees + support.explainer().info.leaf_table_trees, 800);
  });
});

describe('models without exact contributions', () => {
  const credit = readFileSync(join(ROOT, 'examples/credit/model.json'), 'utf8');
  const withTrees = (edit: (trees: Record<string, unknown>[]) => void): XgbModel => {
    const json = parseXgbJson(credit) as { learner: { gradient_booster: { model: { trees: Record<string, unknown>[] } } } };
    edit(json.learner.gradient_booster.model.trees);
    return parseXgbModel(json);
  };

  it('a model file without sum_hessian says so, naming the tree', () => {
    const model = withTrees((trees) => delete trees[3].sum_hessian);
    assert.match(contributionsUnavailable(model) ?? '', /^trees\[3\] has no sum_hessian/);
    assert.throws(() => buildTreeShap(model, [0]), /no exact contributions for this model: trees\[3\]/);
  });

  it('a split with zero cover says so (TreeSHAP divides by it)', () => {
    const model = withTrees((trees) => ((trees[0].sum_hessian as number[])[0] = 0));
    assert.match(contributionsUnavailable(model) ?? '', /^trees\[0\]\.sum_hessian\[0\] is 0 on a split/);
  });

  it('a negative or non-numeric cover is a load error naming the spot', () => {
    assert.throws(() => withTrees((trees) => ((trees[1].sum_hessian as number[])[2] = -1)), /trees\[1\]\.sum_hessian\[2\]: must be a non-negative float32/);
    assert.throws(() => withTrees((trees) => ((trees[1].sum_hessian as unknown[])[2] = 'x')), /trees\[1\]\.sum_hessian\[2\]: must be a finite number/);
    assert.throws(() => withTrees((trees) => (trees[1].sum_hessian as number[]).pop()), /trees\[1\]\.sum_hessian: has \d+ entries, left_children has \d+/);
  });
});
