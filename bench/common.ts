/** Helpers shared by the benchmark orchestrator (`run.ts`) and its measuring child (`worker.ts`). */
import { readFileSync, writeFileSync } from 'node:fs';
import { hasModel, loadBundle, type ModelBundle } from '../src/bundle/load.ts';

/** Loads a bundle that must have a model (every benchmarked bundle does). */
export async function loadModelBundle(dir: string): Promise<ModelBundle> {
  const bundle = await loadBundle(dir);
  if (!hasModel(bundle)) throw new Error(`bundle ${dir} has no model`);
  return bundle;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export const now = (): number => Number(process.hrtime.bigint());

/** Reads a little-endian float32 file into a Float32Array (copied, so it is aligned). */
export function readF32(file: string): Float32Array {
  const buf = readFileSync(file);
  const out = new Float32Array(buf.byteLength / 4);
  new Uint8Array(out.buffer).set(buf);
  return out;
}

export function readF64(file: string): Float64Array {
  const buf = readFileSync(file);
  const out = new Float64Array(buf.byteLength / 8);
  new Uint8Array(out.buffer).set(buf);
  return out;
}

export function writeTyped(file: string, data: Float32Array | Float64Array): void {
  writeFileSync(file, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

/** Largest |a[i] - b[i]|; NaN on either side (but not both) counts as Infinity. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (Number.isNaN(x) && Number.isNaN(y)) continue;
    const d = Math.abs(x - y);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

export function fmtNs(ns: number): string {
  if (!Number.isFinite(ns)) return 'n/a';
  if (ns < 1e3) return `${ns.toFixed(0)} ns`;
  if (ns < 1e4) return `${(ns / 1e3).toFixed(2)} us`;
  if (ns < 1e6) return `${(ns / 1e3).toFixed(1)} us`;
  if (ns < 1e9) return `${(ns / 1e6).toFixed(1)} ms`;
  return `${(ns / 1e9).toFixed(2)} s`;
}

export function fmtRate(rowsPerSec: number): string {
  if (!Number.isFinite(rowsPerSec)) return 'n/a';
  if (rowsPerSec >= 1e6) return `${(rowsPerSec / 1e6).toFixed(2)} M rows/s`;
  if (rowsPerSec >= 1e3) return `${(rowsPerSec / 1e3).toFixed(1)} k rows/s`;
  return `${rowsPerSec.toFixed(0)} rows/s`;
}

export function fmtRatio(r: number): string {
  if (!Number.isFinite(r)) return 'n/a';
  return r >= 10 ? `${r.toFixed(0)}x` : `${r.toFixed(2)}x`;
}

/**
 * Warmup policy: repeat until the last 5 repetitions agree within 15% (V8 has finished tiering
 * up and deoptimising), but at least `minMs` and at most `maxMs`.
 */
export interface Warmup {
  minMs: number;
  maxMs: number;
}

/** What a measuring child is asked to do; one task per fresh process so JIT states do not mix. */
export type Task =
  | { kind: 'native-single'; bundle: string; rowsFile: string; width: number; calls: number; reps: number; warmup: Warmup }
  | { kind: 'native-batch'; bundle: string; rowsFile: string; width: number; reps: number; warmup: Warmup; predsOut: string }
  | { kind: 'pipeline-single'; bundle: string; jsonRowsFile: string; calls: number; reps: number; warmup: Warmup }
  | { kind: 'onnx-single'; model: string; input: string; rowsFile: string; width: number; calls: number; reps: number; warmup: Warmup }
  | { kind: 'onnx-batch'; model: string; input: string; rowsFile: string; width: number; reps: number; warmup: Warmup; predsOut: string }
  /** JIT-state diagnostic: one mode warmed first, then the other mode measured in the same process. */
  | { kind: 'native-switch'; bundle: string; rowsFile: string; width: number; calls: number; reps: number; warmup: Warmup; first: 'batch' | 'single' }
  /** Exact contributions (TreeSHAP) of one row at a time, through the runtime's explainer. */
  | { kind: 'shap-single'; bundle: string; rowsFile: string; width: number; calls: number; reps: number; warmup: Warmup }
  /** Exact contributions of the first `rows` rows in one call; written to `contribsOut` for the exactness check. */
  | { kind: 'shap-batch'; bundle: string; rowsFile: string; width: number; rows: number; reps: number; warmup: Warmup; contribsOut: string }
  /** A decision's inline explain stage: one row's contributions per feature, ranked into the policy's model reasons. */
  | { kind: 'shap-reasons'; bundle: string; jsonRowsFile: string; calls: number; reps: number; warmup: Warmup }
  /** What attribution monitoring adds per decision (sampling, copying, explaining later), against the monitor without it. */
  | { kind: 'monitor-cost'; bundle: string; jsonRowsFile: string; decisions: number; reps: number; sampleEvery: number; attribution: boolean };

/** What a child reports: per-row times (ns) of each timed repetition, and of the warmup. */
export interface Measurement {
  kind: Task['kind'];
  /** ns per row (per call for single-row tasks), one per timed repetition. */
  repsNsPerRow: number[];
  medianNsPerRow: number;
  /** ns per row of each warmup repetition, in order: shows how long the JIT takes to settle. */
  warmupNsPerRow: number[];
  /** How long the warmup of the measured mode took, and whether it settled before `maxMs`. */
  warmupMs: number;
  settled: boolean;
  /** The very first call after load, in ns (for batch tasks, the first whole batch per row). */
  firstCallNs: number;
  loadMs: number;
  rows: number;
  /** Task-specific facts (golden diff, model info...). */
  extra: Record<string, unknown>;
}
