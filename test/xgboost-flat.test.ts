/**
 * The flat (table-driven, no code generation) XGBoost evaluator gives bit-identical margins to
 * the compiled evaluator on every XGBoost bundle, and passes the golden parity itself.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { checkGolden } from '../src/bundle/golden.ts';
import { loadModelBundle, readManifest } from '../src/bundle/load.ts';
import type { ModelRuntime } from '../src/models/runtime.ts';
import { compileForest } from '../src/models/xgboost/compile.ts';
import { buildFlatForest, flatStepRatio, type FlatOptions } from '../src/models/xgboost/flat.ts';
import { parseXgbJson, parseXgbModel, type XgbModel } from '../src/models/xgboost/format.ts';
import { objectiveFor } from '../src/models/xgboost/objectives.ts';
import { chooseEvaluator, FLAT_MAX_STEP_RATIO, FLAT_MIN_NODES, xgboostRuntime } from '../src/models/xgboost/runtime.ts';
import { minstd0 } from './helpers/prng.ts';
import { stumpModel } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const FIXTURES = join(ROOT, 'test/fixtures/bundles');
const dirs = [join(ROOT, 'examples/credit'), ...readdirSync(FIXTURES).sort().map((d) => join(FIXTURES, d))];

/** The XGBoost bundles among the fixtures, with their model file. */
async function xgboostBundles(): Promise<{ dir: string; modelFile: string }[]> {
  const out: { dir: string; modelFile: string }[] = [];
  for (const dir of dirs) {
    const manifest = await readManifest(dir);
    if (manifest.model?.format === 'xgboost-json') out.push({ dir, modelFile: join(dir, manifest.model.path) });
  }
  return out;
}
const bundles = await xgboostBundles();

function readModel(file: string): XgbModel {
  return parseXgbModel(parseXgbJson(readFileSync(file, 'utf8')));
}

/** Margins after every tree, starting from the model's base margins, as raw float32 bits. */
function margins(model: XgbModel, x: Float32Array, rows: number, evaluator: 'compiled' | 'flat', flat: FlatOptions = {}): Uint32Array {
  const objective = objectiveFor(model.objective)!;
  const base = Float32Array.from(model.baseScore, (bs) => objective.baseMargin(bs));
  const m = new Float32Array(rows * model.numGroup);
  for (let r = 0; r < rows; r++) m.set(base, r * model.numGroup);
  const accumulate = evaluator === 'compiled' ? compileForest(model) : buildFlatForest(model, flat).accumulate;
  accumulate(x, rows, m);
  return new Uint32Array(m.buffer);
}

function sameMargins(model: XgbModel, x: Float32Array, rows: number, flat: FlatOptions = {}): void {
  const expected = margins(model, x, rows, 'compiled');
  const actual = margins(model, x, rows, 'flat', flat);
  for (let i = 0; i < expected.length; i++) {
    if (actual[i] !== expected[i]) {
      const f = (bits: number) => new Float32Array(Uint32Array.of(bits).buffer)[0];
      assert.fail(`row ${Math.floor(i / model.numGroup)} group ${i % model.numGroup}: flat ${f(actual[i])}, compiled ${f(expected[i])} (options ${JSON.stringify(flat)})`);
    }
  }
}

/** The float32 next to v, upwards (+1) or downwards (-1). */
function ulp(v: number, dir: 1 | -1): number {
  const f = Float32Array.of(v);
  const i = new Int32Array(f.buffer);
  if (v === 0) return dir * 1.4e-45;
  i[0] += (v > 0 ? 1 : -1) * dir;
  return f[0];
}

/**
 * Random rows that probe every rule: missing values, each feature's own thresholds exactly and
 * one float32 step either side, category codes (integer and not, in and beyond 0..63),
 * negative, huge and infinite values.
 */
function randomRows(model: XgbModel, rows: number, seed: number, maxCode = 80): Float32Array {
  const thresholds: number[][] = Array.from({ length: model.numFeature }, () => []);
  for (const t of model.trees) for (let i = 0; i < t.left.length; i++) if (t.left[i] !== -1 && t.categories[i] === null) thresholds[t.feature[i]].push(t.value[i]);
  const x = new Float32Array(rows * model.numFeature);
  const random = minstd0(seed);
  for (let r = 0; r < rows; r++) {
    for (let f = 0; f < model.numFeature; f++) {
      const u = random();
      const ts = thresholds[f];
      let v: number;
      if (u < 0.12) v = NaN;
      else if (u < 0.37 && ts.length > 0) {
        const t = ts[Math.floor(random() * ts.length)];
        const w = random();
        v = w < 0.4 ? t : w < 0.7 ? ulp(t, -1) : ulp(t, 1);
      } else if (u < 0.55) v = Math.floor(random() * maxCode);
      else if (u < 0.63) v = Math.floor(random() * maxCode) + [0.5, 0.25, 0.999][Math.floor(random() * 3)];
      else if (u < 0.7) v = -random() * (random() < 0.5 ? 1 : 1e6);
      else if (u < 0.76) v = [1e30, -1e30, Infinity, -Infinity, 3.4e38, -3.4e38, 2 ** 24, 2 ** 24 + 2, -0, 0][Math.floor(random() * 10)];
      else v = (random() - 0.5) * 8;
      x[r * model.numFeature + f] = v;
    }
  }
  return x;
}

describe('flat evaluator: bit-identical to the compiled evaluator', () => {
  it('finds the XGBoost bundles (credit, objectives, dart, multiclass, categorical, missing values)', () => {
    const names = bundles.map((b) => b.dir.slice(ROOT.length));
    for (const want of ['examples/credit', 'dart_binary', 'dart_regression', 'multi_softprob', 'multi_softmax', 'categorical', 'missing_values']) {
      assert.ok(names.some((n) => n.endsWith(want)), `no bundle ${want} among ${names.join(', ')}`);
    }
  });

  for (const { dir, modelFile } of bundles) {
    it(`${dir.slice(ROOT.length)}: golden parity at 1e-6, and identical margins on golden and random rows`, async () => {
      const model = readModel(modelFile);
      const flat = xgboostRuntime(model, { evaluator: 'flat' });
      const compiled = xgboostRuntime(model, { evaluator: 'compiled' });
      assert.equal(flat.info.evaluator, 'flat');
      assert.equal(compiled.info.evaluator, 'compiled');

      // Golden parity through the bundle's own encoder, with the flat runtime in the model's
      // place; every encoded input row is kept for the margin comparison below.
      const seen: Float32Array[] = [];
      const width = flat.inputWidth;
      const recording: ModelRuntime = {
        ...flat,
        predictSync(x, rows) {
          seen.push(x.slice(0, rows * width));
          return flat.predictSync!(x, rows);
        },
        async predict(x, rows) {
          seen.push(x.slice(0, rows * width));
          return flat.predictSync!(x, rows);
        },
      };
      const bundle = await loadModelBundle(dir);
      const report = await checkGolden({ ...bundle, model: recording }, 1e-6);
      assert.deepEqual(report.failures.slice(0, 5), []);
      assert.ok(report.rows >= 100, `only ${report.rows} golden rows`);

      const golden = new Float32Array(seen.reduce((n, a) => n + a.length, 0));
      let at = 0;
      for (const a of seen) {
        golden.set(a, at);
        at += a.length;
      }
      const goldenRows = width === 0 ? report.rows : golden.length / width;
      assert.ok(goldenRows >= report.rows);
      sameMargins(model, golden, goldenRows);
      assert.deepEqual(flat.predictSync!(golden, goldenRows), compiled.predictSync!(golden, goldenRows));

      const rows = 1500;
      const x = randomRows(model, rows, 1 + dirs.indexOf(dir));
      sameMargins(model, x, rows);
      // Row blocks of other sizes, and every tree through the walker fallback.
      sameMargins(model, x, 200, { rowBlock: 1 });
      sameMargins(model, x, rows, { rowBlock: 7 });
      sameMargins(model, x, 300, { maxDepth: -1 });
      sameMargins(model, x, 300, { maxDepth: 2 });
      assert.deepEqual(flat.predictSync!(x, rows), compiled.predictSync!(x, rows));
      // One row at a time (the real-time path reuses the runtime's margin buffer).
      for (let r = 0; r < 50; r++) {
        const row = x.subarray(r * width, (r + 1) * width);
        assert.deepEqual(flat.predictSync!(row, 1), compiled.predictSync!(row, 1));
      }
      await bundle.model.close?.();
    });
  }
});

describe('flat evaluator: layouts and fallbacks', () => {
  const categoricalFile = bundles.find((b) => b.dir.endsWith('categorical'))!.modelFile;
  const creditFile = bundles.find((b) => b.dir.endsWith('examples/credit'))!.modelFile;

  it('tests category sets below 64 with masks, and walks trees whose sets hold larger codes', () => {
    const json = parseXgbJson(readFileSync(categoricalFile, 'utf8')) as { learner: { gradient_booster: { model: { trees: { categories: number[] }[] } } } };
    const trees = json.learner.gradient_booster.model.trees;
    // Shift every other tree's codes up by 60: some sets then reach past 63, some do not.
    trees.forEach((tree, t) => {
      if (t % 2 === 1) tree.categories = tree.categories.map((c) => c + 60);
    });
    const model = parseXgbModel(json);
    const forest = buildFlatForest(model);
    assert.ok(forest.walkedTrees > 0 && forest.maskedTrees > 0, `masked ${forest.maskedTrees}, walked ${forest.walkedTrees}`);
    sameMargins(model, randomRows(model, 3000, 99, 130), 3000);
    // The unmodified model: every categorical tree fits the masks.
    const plain = buildFlatForest(readModel(categoricalFile));
    assert.equal(plain.walkedTrees, 0);
    assert.ok(plain.maskedTrees > 0);
  });

  it('groups trees of different output groups and keeps each group in tree order around walked trees', () => {
    const model = readModel(bundles.find((b) => b.dir.endsWith('multi_softprob'))!.modelFile);
    assert.ok(model.numGroup > 1);
    const x = randomRows(model, 1000, 5);
    for (const maxDepth of [0, 1, 2, 3]) sameMargins(model, x, 1000, { maxDepth });
    // Permuted tree order across groups: a model whose consecutive trees share a group.
    const byGroup = { ...model, trees: [...model.trees].sort((a, b) => a.group - b.group) };
    sameMargins(byGroup, x, 1000);
  });

  it('walks trees deeper than maxDepth with the tree walker, and fixed-depth walks up to it', () => {
    // Chains: node 2k is inner on feature k % 3 (x < k/10 goes left to a leaf), node 2k+2 the next.
    const chain = (depth: number, salt: number) => {
      const n = 2 * depth + 1;
      const left: number[] = [];
      const right: number[] = [];
      const cond: number[] = [];
      const feat: number[] = [];
      const dflt: number[] = [];
      for (let i = 0; i < n; i++) {
        const inner = i % 2 === 0 && i < n - 1;
        left.push(inner ? i + 1 : -1);
        right.push(inner ? i + 2 : -1);
        feat.push(inner ? (i / 2) % 3 : 0);
        cond.push(inner ? i / 20 - 2 : ((i * 7 + salt) % 13) / 64 - 0.1);
        dflt.push((i + salt) % 3 === 0 ? 1 : 0);
      }
      const z = new Array<number>(n).fill(0);
      return { left_children: left, right_children: right, parents: z, split_indices: feat, split_conditions: cond, default_left: dflt, split_type: z, categories: [], categories_nodes: [], categories_segments: [], categories_sizes: [], base_weights: z };
    };
    const depths = [70, 64, 3, 1, 65, 8, 0, 100, 2, 64];
    const base = stumpModel({ objective: 'reg:squarederror', learner: { learner_model_param: { base_score: '0.5', num_class: '0', num_feature: '3', num_target: '1' }, feature_names: ['a', 'b', 'c'], feature_types: ['float', 'float', 'float'] } });
    base.learner.gradient_booster.model.trees = depths.map((d, t) => chain(d, t) as never);
    base.learner.gradient_booster.model.tree_info = depths.map(() => 0);
    base.learner.gradient_booster.model.gbtree_model_param.num_trees = String(depths.length);
    const model = parseXgbModel(base);
    const forest = buildFlatForest(model);
    assert.equal(forest.walkedTrees, 3);
    assert.equal(forest.numericTrees, 7);
    const rows = 2000;
    const x = new Float32Array(rows * 3);
    const random = minstd0(11);
    for (let i = 0; i < x.length; i++) {
      const u = random();
      x[i] = u < 0.1 ? NaN : u * 12 - 2.5;
    }
    sameMargins(model, x, rows);
    sameMargins(model, x, rows, { maxDepth: 200 });
  });

  it('builds without generating code', () => {
    const model = readModel(creditFile);
    const x = randomRows(model, 100, 3);
    const realFunction = globalThis.Function;
    const realEval = globalThis.eval;
    const refuse = () => {
      throw new Error('code generation attempted');
    };
    globalThis.Function = new Proxy(realFunction, { construct: refuse, apply: refuse });
    globalThis.eval = refuse as typeof eval;
    let flatOut: Float64Array;
    try {
      assert.throws(() => compileForest(model), /code generation attempted/, 'the trap catches the compiled path');
      flatOut = xgboostRuntime(model, { evaluator: 'flat' }).predictSync!(x, 100);
    } finally {
      globalThis.Function = realFunction;
      globalThis.eval = realEval;
    }
    assert.deepEqual(flatOut, xgboostRuntime(model, { evaluator: 'compiled' }).predictSync!(x, 100));
    const source = readFileSync(join(ROOT, 'src/models/xgboost/flat.ts'), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    assert.doesNotMatch(source, /new Function|\beval\s*\(|Function\s*\(/);
  });

  it('refuses inputs shorter than the rows it is asked to score', () => {
    const model = readModel(creditFile);
    const accumulate = buildFlatForest(model).accumulate;
    assert.throws(() => accumulate(new Float32Array(model.numFeature * 2 - 1), 2, new Float32Array(2)), RangeError);
    assert.throws(() => accumulate(new Float32Array(model.numFeature * 2), 2, new Float32Array(1)), RangeError);
  });

  it("'auto' picks compiled for small or unbalanced forests and flat for big balanced ones", () => {
    const credit = readModel(creditFile);
    const nodes = (m: XgbModel) => m.trees.reduce((n, t) => n + t.left.length, 0);
    assert.ok(nodes(credit) < FLAT_MIN_NODES);
    assert.equal(chooseEvaluator(credit), 'compiled');
    assert.equal(xgboostRuntime(credit).info.evaluator, 'compiled');
    const copies = Math.ceil(FLAT_MIN_NODES / nodes(credit));
    const big = { ...credit, trees: Array.from({ length: copies }, () => credit.trees).flat() };
    assert.equal(chooseEvaluator(big), 'flat');
    assert.equal(chooseEvaluator(big, 'compiled'), 'compiled');
    assert.equal(chooseEvaluator(credit, 'flat'), 'flat');
    const auto = xgboostRuntime(big);
    assert.equal(auto.info.evaluator, 'flat');
    const x = randomRows(big, 200, 17);
    assert.deepEqual(auto.predictSync!(x, 200), xgboostRuntime(big, { evaluator: 'compiled' }).predictSync!(x, 200));
    assert.ok(flatStepRatio(big) <= FLAT_MAX_STEP_RATIO, `credit's walk ratio ${flatStepRatio(big)}`);

    // As many nodes, but each tree a long chain next to a stump: the fixed-depth walk would
    // take far more steps than the paths need.
    const chainTree = (depth: number) => {
      const n = 2 * depth + 1;
      const left = new Int32Array(n).fill(-1);
      const right = new Int32Array(n).fill(-1);
      for (let i = 0; i + 1 < n; i += 2) {
        left[i] = i + 1;
        right[i] = i + 2;
      }
      return { ...credit.trees[0], left, right, feature: new Int32Array(n), value: new Float32Array(n), defaultLeft: new Uint8Array(n), categories: new Array(n).fill(null), depth };
    };
    const stump = { ...chainTree(1) };
    const chains = { ...credit, trees: Array.from({ length: 800 }, (_, t) => (t % 4 === 0 ? chainTree(24) : stump)) };
    assert.ok(chains.trees.reduce((n, t) => n + t.left.length, 0) >= FLAT_MIN_NODES);
    assert.ok(flatStepRatio(chains) > FLAT_MAX_STEP_RATIO);
    assert.equal(chooseEvaluator(chains), 'compiled');
  });
});
