/** Chooses the runtime adapter for a bundle's `model.format`. New formats register here. */
import { onnxAdapter } from './onnx/runtime.ts';
import type { ModelRuntime, RuntimeAdapter, RuntimeOptions } from './runtime.ts';
import { xgboostAdapter } from './xgboost/load.ts';

export type { ContributionExplainer, ContributionSupport, ModelRuntime, RuntimeOptions } from './runtime.ts';
export { contributionSupport, describeContributions, ModelLoadError } from './runtime.ts';

const ADAPTERS: readonly RuntimeAdapter[] = [xgboostAdapter, onnxAdapter];

export const MODEL_FORMATS = ADAPTERS.map((a) => a.format) as [string, ...string[]];

export function loadModel(format: string, file: string, options: RuntimeOptions = {}): Promise<ModelRuntime> {
  const adapter = ADAPTERS.find((a) => a.format === format);
  if (!adapter) throw new Error(`unknown model format ${format}; known: ${MODEL_FORMATS.join(', ')}`);
  return adapter.load(file, options);
}
