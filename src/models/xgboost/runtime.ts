/** The `xgboost-json` runtime: a native TypeScript evaluator of XGBoost's JSON models. */
import { readFile } from 'node:fs/promises';
import { ModelLoadError, type ModelRuntime, type RuntimeAdapter } from '../runtime.ts';
import { compileForest, type CompileOptions } from './compile.ts';
import { parseXgbJson, parseXgbModel, XgbFormatError, type XgbModel } from './format.ts';
import { objectiveFor, SUPPORTED_OBJECTIVES } from './objectives.ts';

/** Builds a runtime from an already parsed model (also used by tests and benchmarks). */
export function xgboostRuntime(model: XgbModel, options: CompileOptions = {}): ModelRuntime {
  const objective = objectiveFor(model.objective);
  if (!objective) throw new XgbFormatError('$.learner.objective.name', `unsupported objective ${model.objective}; supported: ${SUPPORTED_OBJECTIVES.join(', ')}`);
  let baseMargins: number[];
  try {
    baseMargins = model.baseScore.map((bs) => objective.baseMargin(bs));
  } catch (err) {
    throw new XgbFormatError('$.learner.learner_model_param.base_score', (err as Error).message);
  }
  const accumulate = compileForest(model, options);
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
    info: {
      objective: model.objective,
      booster: model.booster,
      trees: model.trees.length,
      max_depth: model.trees.reduce((d, t) => Math.max(d, t.depth), 0),
      num_feature: model.numFeature,
      num_class: groups,
      xgboost_version: model.version.join('.'),
    },
    predictSync,
    predict: async (input, rows) => predictSync(input, rows),
  };
}

export const xgboostAdapter: RuntimeAdapter = {
  format: 'xgboost-json',
  async load(file) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new ModelLoadError(file, (err as Error).message);
    }
    let json: unknown;
    try {
      json = parseXgbJson(text);
    } catch (err) {
      throw new ModelLoadError(file, `not valid JSON (truncated or corrupt?): ${(err as Error).message}`);
    }
    try {
      return xgboostRuntime(parseXgbModel(json));
    } catch (err) {
      if (err instanceof XgbFormatError) throw new ModelLoadError(file, err.message);
      throw err;
    }
  },
};
