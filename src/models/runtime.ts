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
  /** Facts worth showing a human (objective, tree count, opset...). */
  readonly info: Readonly<Record<string, string | number | boolean>>;
  /** Returns `rows * outputWidth` values, row-major. */
  predict(input: Float32Array, rows: number): Promise<Float64Array>;
  /** Same as `predict`, without a promise, for runtimes that can (the real-time hot path). */
  predictSync?(input: Float32Array, rows: number): Float64Array;
  close?(): Promise<void>;
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
