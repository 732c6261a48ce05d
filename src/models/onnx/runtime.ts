/**
 * The `onnx` runtime: any ONNX model through onnxruntime-node, including the `ai.onnx.ml`
 * operators that scikit-learn and LightGBM converters emit. A batch is one tensor.
 */
import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import { ModelLoadError, type ModelRuntime, type RuntimeAdapter, type RuntimeOptions } from '../runtime.ts';

/** ONNX files are protobuf; refuse anything implausibly large before handing it to native code. */
const MAX_MODEL_BYTES = 2 * 1024 * 1024 * 1024 - 1;

export const onnxAdapter: RuntimeAdapter = {
  format: 'onnx',
  async load(file: string, options: RuntimeOptions): Promise<ModelRuntime> {
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (err) {
      throw new ModelLoadError(file, (err as Error).message);
    }
    if (bytes.length === 0) throw new ModelLoadError(file, 'the file is empty');
    if (bytes.length > MAX_MODEL_BYTES) throw new ModelLoadError(file, 'the file is larger than 2 GiB');

    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, {
        executionProviders: ['cpu'],
        graphOptimizationLevel: 'all',
        intraOpNumThreads: 1,
        interOpNumThreads: 1,
      });
    } catch (err) {
      throw new ModelLoadError(file, `onnxruntime refused it: ${firstLine(err)}`);
    }

    const inputName = options.input ?? session.inputNames[0];
    if (!session.inputNames.includes(inputName)) {
      throw new ModelLoadError(file, `no input named ${JSON.stringify(inputName)}; inputs: ${session.inputNames.join(', ')}`);
    }
    if (session.inputNames.length > 1) {
      throw new ModelLoadError(file, `the model has ${session.inputNames.length} inputs (${session.inputNames.join(', ')}); rtml feeds one [rows, features] float tensor`);
    }
    const outputName = options.output ?? session.outputNames[0];
    if (!session.outputNames.includes(outputName)) {
      throw new ModelLoadError(file, `no output named ${JSON.stringify(outputName)}; outputs: ${session.outputNames.join(', ')}`);
    }
    const inputMeta = session.inputMetadata.find((m) => m.name === inputName);
    const outputMeta = session.outputMetadata.find((m) => m.name === outputName);
    if (!inputMeta?.isTensor || inputMeta.type !== 'float32' || inputMeta.shape.length !== 2 || typeof inputMeta.shape[1] !== 'number') {
      throw new ModelLoadError(file, `input ${inputName} must be a float32 tensor of shape [rows, features] with a fixed feature count`);
    }
    if (!outputMeta?.isTensor) {
      throw new ModelLoadError(file, `output ${outputName} is not a tensor (a ZipMap? convert with zipmap disabled, or choose the probabilities output)`);
    }
    const inputWidth = inputMeta.shape[1];

    const run = async (input: Float32Array, rows: number): Promise<Float64Array> => {
      if (rows === 0) return new Float64Array(0);
      const tensor = new ort.Tensor('float32', input.subarray(0, rows * inputWidth), [rows, inputWidth]);
      const result = await session.run({ [inputName]: tensor }, [outputName]);
      const out = result[outputName];
      const data = out.data;
      if (typeof data[0] === 'string' || out.size % rows !== 0) {
        throw new Error(`onnx output ${outputName} has ${out.size} values for ${rows} rows (type ${out.type})`);
      }
      const values = new Float64Array(out.size);
      for (let i = 0; i < out.size; i++) values[i] = Number(data[i]);
      return values;
    };

    // Learn the output width by scoring one row of zeros: this also proves the graph runs.
    let outputWidth: number;
    try {
      outputWidth = (await run(new Float32Array(inputWidth), 1)).length;
    } catch (err) {
      throw new ModelLoadError(file, `the model fails on a probe row: ${firstLine(err)}`);
    }

    return {
      format: 'onnx',
      inputWidth,
      outputWidth,
      info: { input: inputName, output: outputName, outputs: session.outputNames.join(','), bytes: bytes.length },
      predict: run,
      // A graph of operators carries no tree statistics (node covers) to compute exact
      // contributions from, and rtml never gives approximate ones.
      contributions: { exact: false, reason: 'an ONNX graph carries no tree statistics (node covers) to compute exact contributions from; rtml computes them for XGBoost models' },
      close: () => session.release(),
    };
  },
};

function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split('\n')[0].slice(0, 300);
}
