/** The `xgboost-json` runtime: a native TypeScript evaluator of XGBoost's JSON models (files are loaded by load.ts). */
import { Slices } from '../../threads.ts';
import type { ContributionExplainer, ContributionSupport, ModelRuntime } from '../runtime.ts';
import { compileForest, type CompileOptions, type ForestAccumulator } from './compile.ts';
import { flatForest, flatStepRatio, type FlatOptions } from './flat.ts';
import { XgbFormatError, type XgbModel, type XgbTree } from './format.ts';
import { buildTreeShapInSteps, contributionsUnavailable, TREESHAP_METHOD, type TreeShap } from './shap.ts';
import { objectiveFor, SUPPORTED_OBJECTIVES, type Objective } from './objectives.ts';

/**
 * Which evaluator scores the forest: `compiled` generates JavaScript per chunk of trees
 * (compile.ts; fastest on small forests once V8 has optimised it, which takes seconds on big
 * ones, and deoptimises on branches warm-up traffic never took), `flat` walks typed-array
 * tables without generating any code (flat.ts; warm after a few calls, single-row scoring
 * 1.3-2.5x faster than compiled on big balanced forests). Both give bit-identical margins.
 * `auto` (the default) picks one per model: see chooseEvaluator.
 */
export type XgbEvaluator = 'compiled' | 'flat' | 'auto';

export interface XgbRuntimeOptions extends CompileOptions {
  evaluator?: XgbEvaluator;
  /** Options of the flat evaluator. */
  flat?: FlatOptions;
}

/** `auto` picks the flat evaluator for forests of at least this many nodes in all... */
export const FLAT_MIN_NODES = 10_000;
/** ...whose fixed-depth walks take at most this many steps per needed step (`flatStepRatio`). */
export const FLAT_MAX_STEP_RATIO = 1.35;

/**
 * The evaluator `auto` resolves to for a model. Measured with `bench/evaluator_lab.ts table`
 * (bench/worker.ts in a fresh process per figure; forests from 4k to 141k nodes, depth 4
 * categorical and depth 8 numeric, plus unbalanced deep ones):
 * - below ~5k nodes the two are even once warm (compiled up to 15% faster in batches);
 * - from ~8-11k nodes on, compiled single-row latency grows faster than the forest (V8's code
 *   for a big generated forest is slow to settle and slow to run: 2.9 us at 4k nodes, 37 us at
 *   24k, 43 us at 141k) while flat stays linear: flat is 1.3-2.5x faster single-row, its first
 *   1,000 calls 2-10x faster, and batches within -13%..+100% of compiled;
 * - but when trees are deep and unbalanced (lossguide growth: walk ratio 1.6-1.8), the fixed-
 *   depth walk wastes work and compiled wins (1.2-1.6x single-row, 2-2.5x batch); at ratio 1.27
 *   (depthwise depth 10, pruned) flat still wins single-row 1.3x, batch 13% behind.
 */
export function chooseEvaluator(model: XgbModel, requested: XgbEvaluator = 'auto'): 'compiled' | 'flat' {
  if (requested !== 'auto') return requested;
  let nodes = 0;
  for (const tree of model.trees) nodes += tree.left.length;
  return nodes >= FLAT_MIN_NODES && flatStepRatio(model) <= FLAT_MAX_STEP_RATIO ? 'flat' : 'compiled';
}

/** What a runtime needs of a model besides its evaluator: everything but the trees. */
export interface XgbModelHeader extends Omit<XgbModel, 'trees'> {
  readonly treeCount: number;
  readonly maxDepth: number;
  /** Per feature, the largest category code a split tests (-1: none). */
  readonly maxCategoryCode: readonly number[];
  /** Why the model has no exact contributions (shap.ts), or null when it has them (all its trees then travel with it). */
  readonly noContributions: string | null;
}

export function modelHeader(model: XgbModel): XgbModelHeader {
  const { trees, ...rest } = model;
  return {
    ...rest,
    treeCount: trees.length,
    maxDepth: trees.reduce((d, t) => Math.max(d, t.depth), 0),
    maxCategoryCode: maxCategoryCodes(model),
    noContributions: contributionsUnavailable(model),
  };
}

/** The model's objective and its base margins; an XgbFormatError when rtml cannot evaluate them. */
export function modelObjective(model: Pick<XgbModel, 'objective' | 'baseScore'>): { objective: Objective; baseMargins: number[] } {
  const objective = objectiveFor(model.objective);
  if (!objective) throw new XgbFormatError('$.learner.objective.name', `unsupported objective ${model.objective}; supported: ${SUPPORTED_OBJECTIVES.join(', ')}`);
  try {
    return { objective, baseMargins: model.baseScore.map((bs) => objective.baseMargin(bs)) };
  } catch (err) {
    throw new XgbFormatError('$.learner.learner_model_param.base_score', (err as Error).message);
  }
}

/** Builds a runtime from an already parsed model, on this thread (tests, benchmarks; load.ts for files). */
export function xgboostRuntime(model: XgbModel, options: XgbRuntimeOptions = {}): ModelRuntime {
  modelObjective(model);
  const evaluator = chooseEvaluator(model, options.evaluator);
  if (evaluator !== 'compiled' && evaluator !== 'flat') throw new TypeError(`unknown evaluator ${String(options.evaluator)}: compiled, flat or auto`);
  const accumulate = evaluator === 'flat' ? flatForest(model, options.flat) : compileForest(model, options);
  return runtimeOf(modelHeader(model), evaluator, accumulate, model.trees);
}

/**
 * The runtime around a built evaluator. `trees`: every tree of the model, for its exact
 * contributions (needed when the header says it has them).
 */
export function runtimeOf(model: XgbModelHeader, evaluator: 'compiled' | 'flat', accumulate: ForestAccumulator, trees: readonly XgbTree[] | null): ModelRuntime {
  const { objective, baseMargins } = modelObjective(model);
  const groups = model.numGroup;
  const width = objective.outputWidth(groups);
  const initial = Float32Array.from(baseMargins);
  const scratch = new Float32Array(64 * groups);

  const predictSync = (input: Float32Array, rows: number): Float64Array => {
    if (input.length < rows * model.numFeature) throw new RangeError(`input holds ${input.length} values, ${rows} rows need ${rows * model.numFeature}`);
    // Small batches (the real-time path) reuse one margin buffer: predictSync never yields.
    const margins = rows * groups <= scratch.length ? scratch.subarray(0, rows * groups) : new Float32Array(rows * groups);
    if (groups === 1) margins.fill(initial[0]);
    else for (let r = 0; r < rows; r++) margins.set(initial, r * groups);
    accumulate(input, rows, margins);
    const out = new Float64Array(rows * width);
    for (let r = 0; r < rows; r++) objective.transform(margins, r * groups, groups, out, r * width);
    return out;
  };

  return {
    format: 'xgboost-json',
    inputWidth: model.numFeature,
    outputWidth: width,
    outputKind: objective.outputKind,
    featureNames: model.featureNames ?? undefined,
    featureTypes: model.featureTypes ?? undefined,
    maxCategoryCode: model.maxCategoryCode,
    task: { objective: model.objective, outputs: objective.outputs, readAs: objective.readAs(groups), classes: objective.classes(groups) },
    info: {
      objective: model.objective,
      booster: model.booster,
      trees: model.treeCount,
      max_depth: model.maxDepth,
      num_feature: model.numFeature,
      num_class: groups,
      xgboost_version: model.version.join('.'),
      evaluator,
    },
    predictSync,
    predict: async (input, rows) => predictSync(input, rows),
    contributions: contributionsOf(model, trees, baseMargins),
  };
}

/**
 * Exact TreeSHAP contributions (shap.ts), or why the model has none. Their tables are built once:
 * by `prepare()` in slices that let the event loop run (what a server does when it loads a
 * model that will need them), or at the first `explainer()`, at once.
 */
function contributionsOf(header: XgbModelHeader, trees: readonly XgbTree[] | null, baseMargins: readonly number[]): ContributionSupport {
  if (header.noContributions !== null) return { exact: false, reason: `this model file cannot give exact contributions: ${header.noContributions}` };
  if (trees === null || trees.length !== header.treeCount) throw new Error(`exact contributions need all ${header.treeCount} trees, got ${trees?.length ?? 0}`);
  const model: XgbModel = { ...header, trees };
  let explainer: ContributionExplainer | null = null;
  let building: Promise<void> | null = null;
  let buildMs = 0;
  const steps = buildTreeShapInSteps(model, baseMargins);
  /** Runs the build's remaining steps; with `slices`, pausing whenever one is used up. */
  const build = async (slices: Slices | null): Promise<ContributionExplainer> => {
    let step = steps.next();
    let started = performance.now();
    while (!step.done) {
      if (slices?.due) {
        buildMs += performance.now() - started;
        await slices.pause();
        started = performance.now();
      }
      step = steps.next();
    }
    buildMs += performance.now() - started;
    return (explainer ??= explainerOf(step.value, Math.round(buildMs)));
  };
  const explainerOf = (shap: TreeShap, ms: number): ContributionExplainer => {
    const width = model.numFeature + 1;
    return {
      groups: model.numGroup,
      info: { whole_table_trees: shap.wholeTableTrees, leaf_table_trees: shap.leafTableTrees, recursive_trees: shap.recursiveTrees, table_bytes: 4 * shap.tableEntries, build_ms: ms },
      contributions(input, rows, out = new Float64Array(rows * model.numGroup * width)) {
        shap.contributions(input, rows, out);
        return out;
      },
    };
  };
  return {
    exact: true,
    method: TREESHAP_METHOD,
    async prepare() {
      building ??= build(new Slices()).then(() => undefined);
      await building;
    },
    explainer() {
      if (explainer) return explainer;
      // No await: a synchronous build (generator steps run to the end here).
      let step = steps.next();
      const started = performance.now();
      while (!step.done) step = steps.next();
      return (explainer = explainerOf(step.value, Math.round(buildMs + performance.now() - started)));
    },
  };
}

/** Per feature, the largest category code any categorical split tests; -1 where none does. */
function maxCategoryCodes(model: XgbModel): number[] {
  const max = new Array<number>(model.numFeature).fill(-1);
  for (const tree of model.trees) {
    tree.categories.forEach((set, node) => {
      // Sets are sorted, so the last code is the largest.
      if (set && set.length > 0 && tree.left[node] !== -1) max[tree.feature[node]] = Math.max(max[tree.feature[node]], set[set.length - 1]);
    });
  }
  return max;
}
