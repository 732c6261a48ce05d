/**
 * The model stage's front door: every model format is an adapter that loads a file into a
 * `ModelRuntime`, and every runtime scores a row-major float32 matrix into a row-major
 * float64 matrix. Nothing above this layer knows which format it is talking to.
 */

/** Scores a batch: `input` holds `rows * inputWidth` float32 values, row-major. */
export interface ModelRuntime {
  readonly format: string;
  /** Columns of the input matrix the model expects. */
  readonly inputWidth: number;
  /** Values the model outputs per row. */
  readonly outputWidth: number;
  /** What the outputs are, when the format tells: probabilities, a class index, or plain values. */
  readonly outputKind?: 'probability' | 'class' | 'value';
  /** Column names carried by the model file itself, when it has them. */
  readonly featureNames?: readonly string[];
  /** Column types carried by the model file (XGBoost: `float`, `int`, `i`, `q`, `c` for categorical). */
  readonly featureTypes?: readonly string[];
  /** Per input column, the largest category code a categorical split tests (-1: none), for formats with such splits. */
  readonly maxCategoryCode?: readonly number[];
  /** What the training objective made the outputs, when the format records it (XGBoost does, ONNX does not). */
  readonly task?: ModelTask;
  /** Facts worth showing a human (objective, tree count, opset...). */
  readonly info: Readonly<Record<string, string | number | boolean>>;
  /** Whether the model gives exact per-column contributions to its margins, and how; absent: it does not. */
  readonly contributions?: ContributionSupport;
  /** Returns `rows * outputWidth` values, row-major. */
  predict(input: Float32Array, rows: number): Promise<Float64Array>;
  /** Same as `predict`, without a promise, for runtimes that can (the real-time hot path). */
  predictSync?(input: Float32Array, rows: number): Float64Array;
  close?(): Promise<void>;
}

/**
 * Exact contributions of each input column to each of a model's margins (output groups), in
 * margin units, with the bias (expected value plus base margin) last: for XGBoost, the numbers
 * of its `predict(pred_contribs=True)`. Never an approximation: a format that cannot give them
 * says so, with the reason.
 */
export type ContributionSupport =
  | {
      readonly exact: true;
      readonly method: string;
      /** Builds what the explainer needs (tables) in slices that let the event loop run; then `explainer()` is immediate. */
      prepare?(): Promise<void>;
      /** The explainer, built now if `prepare` has not finished. */
      explainer(): ContributionExplainer;
    }
  | { readonly exact: false; readonly reason: string };

export interface ContributionExplainer {
  /** Margins explained per row: the output groups (1, or one per class). */
  readonly groups: number;
  /** Facts worth showing a human (how the trees are explained, table memory, build time). */
  readonly info: Readonly<Record<string, number>>;
  /** Writes rows × groups × (inputWidth + 1) values into `out` (allocated when absent) and returns it. */
  contributions(input: Float32Array, rows: number, out?: Float64Array): Float64Array;
}

/** What a runtime says about contributions, also when it says nothing (it has none). */
export function contributionSupport(model: ModelRuntime): ContributionSupport {
  return model.contributions ?? { exact: false, reason: `the ${model.format} runtime computes no exact contributions` };
}

/** The same, as a service description shows it. */
export function describeContributions(model: ModelRuntime): { exact: true; method: string } | { exact: false; reason: string } {
  const support = contributionSupport(model);
  return support.exact ? { exact: true, method: support.method } : { exact: false, reason: support.reason };
}

/** The ways a bundle's manifest may read a model's outputs (`outputs.type`). */
export type OutputReading = 'binary' | 'multiclass' | 'regression';

export interface ModelTask {
  /** The objective as the model file names it. */
  readonly objective: string;
  /** What the outputs are, in words, for messages. */
  readonly outputs: string;
  /** How the outputs may be read: a regression on `binary:logistic` would take probabilities for values. */
  readonly readAs: readonly OutputReading[];
  /** Classes the model tells apart (num_class for multi-class objectives, 2 for binary ones); null for a regression. */
  readonly classes: number | null;
}

/** Options a bundle manifest may pass to a runtime. */
export interface RuntimeOptions {
  /** ONNX: name of the input tensor to feed. */
  input?: string;
  /** ONNX: name of the output tensor to read. */
  output?: string;
}

export interface RuntimeAdapter {
  readonly format: string;
  load(file: string, options: RuntimeOptions): Promise<ModelRuntime>;
}

/** A model file that cannot be used: corrupt, truncated, unsupported or hostile. */
export class ModelLoadError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`cannot load model ${file}: ${reason}`);
    this.name = 'ModelLoadError';
  }
}
