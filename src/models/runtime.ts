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
  /** Returns `rows * outputWidth` values, row-major. */
  predict(input: Float32Array, rows: number): Promise<Float64Array>;
  /** Same as `predict`, without a promise, for runtimes that can (the real-time hot path). */
  predictSync?(input: Float32Array, rows: number): Float64Array;
  close?(): Promise<void>;
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
