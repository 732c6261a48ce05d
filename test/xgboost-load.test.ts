/**
 * Loading XGBoost model files off the event loop (src/models/xgboost/load.ts): a model prepared
 * in the loader's worker thread and handed over packed scores bit for bit as the same model
 * parsed and built on this thread, for every fixture, for both evaluators; the worker's errors
 * are the same load errors; generated code is built in slices that let the event loop run.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ModelLoadError, type ModelRuntime } from '../src/models/runtime.ts';
import { parseXgbJson, parseXgbModel } from '../src/models/xgboost/format.ts';
import { flatWalkedTrees } from '../src/models/xgboost/flat.ts';
import { loadXgboostModel, OFF_THREAD_BYTES, prepareForest, prepareOffThread, runtimeFromForest, type PreparedForest } from '../src/models/xgboost/load.ts';
import { packTrees } from '../src/models/xgboost/packed.ts';
import { modelHeader, xgboostRuntime } from '../src/models/xgboost/runtime.ts';
import { forestModel } from './helpers/forest.ts';
import { mulberry32 } from './helpers/prng.ts';
import { stumpModel, tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const FIXTURES = join(ROOT, 'test/fixtures/bundles');
const modelFiles = [join(ROOT, 'examples/credit/model.json'), ...readdirSync(FIXTURES).sort().map((d) => join(FIXTURES, d, 'model.json'))].filter((file) => {
  try {
    return readFileSync(file, 'utf8').startsWith('{');
  } catch {
    return false; // an ONNX bundle
  }
});

/** Rows with missing values, small whole numbers (category codes) and fractions. */
function rows(width: number, count: number, seed: number): Float32Array {
  const random = mulberry32(seed);
  return Float32Array.from({ length: width * count }, () => {
    const u = random();
    return u < 0.1 ? NaN : u < 0.5 ? Math.floor(random() * 70) : random() * 4 - 1;
  });
}

function sameScores(actual: ModelRuntime, expected: ModelRuntime, what: string): void {
  assert.deepEqual(actual.info, expected.info, what);
  const x = rows(expected.inputWidth, 300, 3);
  assert.deepEqual(actual.predictSync!(x, 300), expected.predictSync!(x, 300), what);
}

/** The part of XGBoost's JSON this test edits. */
interface GbtreeJson {
  trees: Record<string, unknown>[];
  tree_info: number[];
  gbtree_model_param: { num_trees: string };
}

function writeModel(json: unknown): string {
  const file = join(tempDir(), 'model.json');
  writeFileSync(file, typeof json === 'string' ? json : JSON.stringify(json));
  return file;
}

/** Counts turns of the event loop (a 1 ms interval's ticks) while `work` runs. */
async function turnsDuring<T>(work: () => Promise<T>): Promise<{ result: T; turns: number }> {
  let turns = 0;
  const timer = setInterval(() => turns++, 1);
  try {
    const result = await work();
    return { result, turns };
  } finally {
    clearInterval(timer);
  }
}

describe('loading XGBoost models off the event loop', () => {
  it('scores every fixture prepared in the worker thread as the model built on this thread', async () => {
    assert.ok(modelFiles.length >= 15, `${modelFiles.length} XGBoost fixtures`);
    for (const file of modelFiles) {
      const offThread = await runtimeFromForest(await prepareOffThread(file));
      sameScores(offThread, xgboostRuntime(parseXgbModel(parseXgbJson(readFileSync(file, 'utf8')))), file);
    }
  });

  it('hands a flat forest over as tables, with the trees it walks instead (deep ones)', async () => {
    // The credit forest four times over (categorical splits; past the flat evaluator's size),
    // plus a chain 70 levels deep, which the flat tables leave to the tree walker.
    const credit = parseXgbJson(readFileSync(join(ROOT, 'examples/credit/model.json'), 'utf8')) as { learner: { gradient_booster: { model: GbtreeJson } } };
    const model = credit.learner.gradient_booster.model;
    const depth = 70;
    const n = 2 * depth + 1;
    const chain = {
      ...model.trees[0],
      left_children: Array.from({ length: n }, (_, i) => (i % 2 === 0 && i + 1 < n ? i + 1 : -1)),
      right_children: Array.from({ length: n }, (_, i) => (i % 2 === 0 && i + 1 < n ? i + 2 : -1)),
      split_indices: Array.from({ length: n }, (_, i) => i % 5),
      split_conditions: Array.from({ length: n }, (_, i) => (i % 7) / 3 - 0.5),
      default_left: Array.from({ length: n }, (_, i) => i % 2),
      split_type: new Array(n).fill(0),
      categories: [],
      categories_nodes: [],
      categories_segments: [],
      categories_sizes: [],
      parents: new Array(n).fill(0),
      base_weights: new Array(n).fill(0),
      tree_param: { ...(model.trees[0].tree_param as object), num_nodes: String(n) },
      // No node covers: this forest has no exact contributions, so only the trees the flat
      // evaluator walks travel (explainable forests send all theirs: xgboost-shap.test.ts).
      sum_hessian: undefined,
    };
    model.trees = [...model.trees, ...model.trees, chain, ...model.trees, ...model.trees].map((tree, t) => ({ ...tree, id: t }));
    model.tree_info = model.trees.map(() => 0);
    model.gbtree_model_param.num_trees = String(model.trees.length);
    const file = writeModel(credit);

    const forest = await prepareOffThread(file);
    assert.equal(forest.evaluator, 'flat');
    assert.deepEqual(flatWalkedTrees(forest.flat!), [400]);
    assert.deepEqual([...forest.trees.index], [400], 'only the walked tree travels as a tree');
    const parsed = parseXgbModel(parseXgbJson(readFileSync(file, 'utf8')));
    sameScores(await runtimeFromForest(forest), xgboostRuntime(parsed), 'flat');
    const compiled = xgboostRuntime(parsed, { evaluator: 'compiled' });
    const x = rows(compiled.inputWidth, 300, 4);
    assert.deepEqual((await runtimeFromForest(forest)).predictSync!(x, 300), compiled.predictSync!(x, 300), 'flat equals compiled');
  });

  it('reports the worker thread’s load errors as this thread’s', async () => {
    const cases: [string, RegExp][] = [
      [writeModel('{"version": [1'), /not valid JSON/],
      [writeModel(stumpModel({ tree: { left_children: [1, 7, -1] } })), /trees\[0\]\.left_children\[1\]: must be a whole number in \[-1, 2\]/],
      [writeModel(stumpModel({ objective: 'rank:pairwise' })), /unsupported objective rank:pairwise/],
      [join(tempDir(), 'missing.json'), /ENOENT/],
    ];
    for (const [file, reason] of cases) {
      for (const load of [() => prepareOffThread(file), () => loadXgboostModel(file)]) {
        await assert.rejects(load(), (err: unknown) => {
          assert.ok(err instanceof ModelLoadError, String(err));
          assert.equal(err.file, file);
          assert.match(err.reason, reason);
          return true;
        });
      }
    }
  });

  it('loads a big file through the worker thread while the event loop keeps turning', async (t) => {
    const forest = forestModel({ trees: 6000, depth: 2, features: 10 });
    const file = writeModel(forest.text);
    assert.ok(forest.text.length >= OFF_THREAD_BYTES);
    const { result, turns } = await turnsDuring(() => loadXgboostModel(file));
    t.diagnostic(`${turns} turns`);
    assert.ok(turns >= 5, `${turns} turns of the event loop during the load`);
    const x = rows(10, 50, 5);
    for (let r = 0; r < 50; r++) assert.ok(Math.abs(result.predictSync!(x.subarray(r * 10, r * 10 + 10), 1)[0] - forest.predict(x.subarray(r * 10, r * 10 + 10))) < 1e-6);
  });

  it('generates a big forest’s code in slices, letting the event loop run between them', async (t) => {
    // Compiled as `auto` compiles big forests of deep, unbalanced trees (here chosen outright).
    const text = forestModel({ trees: 12_000, depth: 2, features: 10 }).text;
    const model = parseXgbModel(parseXgbJson(text));
    const forest: PreparedForest = { header: modelHeader(model), evaluator: 'compiled', trees: packTrees(model.trees), flat: null };
    const { result, turns } = await turnsDuring(() => runtimeFromForest(forest));
    assert.equal(result.info.evaluator, 'compiled');
    t.diagnostic(`${turns} turns`);
    assert.ok(turns >= 3, `${turns} turns of the event loop while compiling ${model.trees.length} trees`);
    sameScores(result, xgboostRuntime(model, { evaluator: 'compiled' }), 'compiled in slices');
    // The same path prepares small files on this thread.
    assert.equal((await runtimeFromForest(prepareForest(text, 'model.json'))).info.evaluator, 'flat');
  });
});
