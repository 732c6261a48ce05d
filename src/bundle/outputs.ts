/**
 * Names the model's raw output vector: the probability of the positive class, per-class
 * probabilities with class names, or a regression value.
 */
import type { OutputsSpec } from './manifest.ts';
import type { ModelTask } from '../models/runtime.ts';

export type OutputValue = number | string;

export interface OutputMapping {
  /** Output column names, in the order `values` writes them. */
  readonly columns: readonly string[];
  /** The raw values per row the model must produce for this mapping. */
  readonly rawWidth: number;
  /** How raw outputs compare with golden ones: absolute for probabilities, relative for values, exact for classes. */
  readonly tolerance: 'absolute' | 'relative' | 'exact';
  /** The row's single headline number: P(positive class), the top class probability or index, or the value. */
  score(raw: Float64Array, row: number): number;
  /** The row's output columns. */
  values(raw: Float64Array, row: number): OutputValue[];
}

export class OutputMismatchError extends Error {}

/**
 * Why `spec` cannot read the outputs of a model trained for `task`, or null when it can.
 * The output width alone lets a regression read P(label 1) as a value and any class list
 * name a class index; the objective does not.
 */
export function taskMismatch(spec: OutputsSpec, task: ModelTask): { path: string; rule: string } | null {
  if (!task.readAs.includes(spec.type)) {
    return { path: 'outputs.type', rule: `${spec.type} does not fit the model's objective ${task.objective}, which outputs ${task.outputs}: declare ${task.readAs.join(' or ')}` };
  }
  if (spec.type === 'multiclass' && task.classes !== null && spec.classes.length !== task.classes) {
    return { path: 'outputs.classes', rule: `lists ${spec.classes.length} classes but the model (${task.objective}) tells ${task.classes} apart: list every class, in label order` };
  }
  return null;
}

export function buildOutputMapping(spec: OutputsSpec, modelWidth: number, modelKind?: 'probability' | 'class' | 'value'): OutputMapping {
  switch (spec.type) {
    case 'binary': {
      if (modelKind !== undefined && modelKind !== 'probability') {
        throw new OutputMismatchError(`outputs.type binary needs probabilities, but this model outputs ${modelKind === 'class' ? 'class labels' : 'raw values (a margin?)'}; declare outputs.type regression or export probabilities`);
      }
      const positive = spec.positive_class ?? spec.classes[1];
      const positiveIndex = spec.classes.indexOf(positive);
      if (modelWidth !== 1 && modelWidth !== 2) {
        throw new OutputMismatchError(`outputs.type binary needs a model with 1 output (P(label 1)) or 2 (per-class probabilities); this model has ${modelWidth}`);
      }
      const at = modelWidth === 2 ? (raw: Float64Array, r: number) => raw[r * 2 + positiveIndex] : positiveIndex === 1 ? (raw: Float64Array, r: number) => raw[r] : (raw: Float64Array, r: number) => 1 - raw[r];
      return { columns: [spec.name ?? `p_${positive}`], rawWidth: modelWidth, tolerance: 'absolute', score: at, values: (raw, r) => [at(raw, r)] };
    }
    case 'multiclass': {
      const k = spec.classes.length;
      if (modelWidth === k) {
        const argmax = (raw: Float64Array, r: number) => {
          let best = 0;
          for (let g = 1; g < k; g++) if (raw[r * k + g] > raw[r * k + best]) best = g;
          return best;
        };
        return {
          columns: [...spec.classes.map((c) => `p_${c}`), spec.name ?? 'class'],
          rawWidth: k,
          tolerance: 'absolute',
          score: (raw, r) => raw[r * k + argmax(raw, r)],
          values: (raw, r) => [...raw.subarray(r * k, r * k + k), spec.classes[argmax(raw, r)]],
        };
      }
      if (modelWidth === 1 && modelKind !== 'probability' && modelKind !== 'value') {
        const label = (raw: Float64Array, r: number) => spec.classes[raw[r]] ?? `unknown class ${raw[r]}`;
        return { columns: [spec.name ?? 'class'], rawWidth: 1, tolerance: 'exact', score: (raw, r) => raw[r], values: (raw, r) => [label(raw, r)] };
      }
      throw new OutputMismatchError(`outputs.type multiclass with ${k} classes needs a model with ${k} outputs (probabilities) or 1 (class index); this model has ${modelWidth}`);
    }
    case 'regression':
      if (modelWidth !== 1) throw new OutputMismatchError(`outputs.type regression needs a model with 1 output; this model has ${modelWidth}`);
      return { columns: [spec.name ?? 'prediction'], rawWidth: 1, tolerance: 'relative', score: (raw, r) => raw[r], values: (raw, r) => [raw[r]] };
  }
}
