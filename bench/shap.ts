/**
 * `npm run bench -- --only shap`: rtml's exact contributions (TreeSHAP, shap.ts) against
 * XGBoost's own `predict(pred_contribs=True)` on the same rows, in the same run, one thread
 * each, with an exactness check of every value; plus what a decision's explain stage and
 * attribution monitoring cost.
 *
 * Each rtml figure comes from a fresh process (bench/worker.ts), after the JIT has settled.
 * The machine may be shared: compare the ratios, which come from the same run.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fmtNs, fmtRate, fmtRatio, maxAbsDiff, readF64, type Measurement, type Task, type Warmup } from './common.ts';

const PYTHON = '/usr/bin/python3';

/** What bench/run.ts knows of a benchmarked model. */
export interface ShapCase {
  name: string;
  bundleDir: string;
  modelJson: string;
  rowsFile: string;
  width: number;
  goldenFile: string;
}

interface XgbContribsBaseline {
  xgboost: string;
  single_row: { predict_median_ns: number; with_dmatrix_median_ns: number };
  batch: { rows: number; predict_median_ns: number };
}

export interface ShapResult {
  name: string;
  single: Measurement;
  batch: Measurement;
  python: XgbContribsBaseline;
  maxDiff: number;
  /** The credit example only: a decision's explain stage, and attribution monitoring per decision. */
  reasons: Measurement | null;
  monitor: { without: Measurement; every10: Measurement; every1: Measurement } | null;
}

/** Per model: rows for the single-row loop and for the batch (deep forests are slow to explain, in XGBoost too). */
function sizes(c: ShapCase): { calls: number; batchRows: number; warmup: Warmup; reps: number } {
  return c.name === 'credit' ? { calls: 5000, batchRows: 10_000, warmup: { minMs: 2000, maxMs: 20000 }, reps: 7 } : { calls: 20, batchRows: 100, warmup: { minMs: 0, maxMs: 10000 }, reps: 3 };
}

export async function benchShap(root: string, models: string, cases: readonly ShapCase[], runWorker: (task: Task) => Measurement, log: (msg: string) => void): Promise<ShapResult[]> {
  const results: ShapResult[] = [];
  for (const c of cases) {
    const { calls, batchRows, warmup, reps } = sizes(c);
    const xgbOut = join(models, `${c.name}.xgb_contribs.f64`);
    const rtmlOut = join(models, `${c.name}.rtml_contribs.f64`);
    log(`${c.name}: xgboost pred_contribs baseline (python)`);
    const args = [join(root, 'bench', 'xgb_contribs_baseline.py'), '--model', c.modelJson, '--rows', c.rowsFile, '--features', String(c.width), '--batch-rows', String(batchRows), '--contribs-out', xgbOut];
    if (c.name !== 'credit') args.push('--single-calls', '20', '--single-reps', '3', '--batch-reps', '1');
    const py = spawnSync(PYTHON, args, { cwd: root, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    if (py.status !== 0) throw new Error(`bench/xgb_contribs_baseline.py failed (exit ${py.status ?? py.signal}):\n${py.stderr.slice(-3000)}`);
    const python = JSON.parse(py.stdout.trim().split('\n').pop()!) as XgbContribsBaseline;

    const base = { bundle: c.bundleDir, rowsFile: c.rowsFile, width: c.width };
    log(`${c.name}: rtml contributions, one row`);
    const single = runWorker({ kind: 'shap-single', ...base, calls, reps, warmup });
    log(`${c.name}: rtml contributions, batch of ${batchRows}`);
    const batch = runWorker({ kind: 'shap-batch', ...base, rows: batchRows, reps, warmup, contribsOut: rtmlOut });
    const maxDiff = maxAbsDiff(readF64(rtmlOut), readF64(xgbOut));

    let reasons: Measurement | null = null;
    let monitor: ShapResult['monitor'] = null;
    if (c.name === 'credit') {
      log('credit: explain stage (contributions per feature, ranked into reason codes)');
      reasons = runWorker({ kind: 'shap-reasons', bundle: c.bundleDir, jsonRowsFile: c.goldenFile, calls, reps, warmup });
      log('credit: monitor per decision without attribution, with it (sample_every 10, 1)');
      const m = { kind: 'monitor-cost' as const, bundle: c.bundleDir, jsonRowsFile: c.goldenFile, decisions: 2000, reps: 7 };
      monitor = {
        without: runWorker({ ...m, sampleEvery: 10, attribution: false }),
        every10: runWorker({ ...m, sampleEvery: 10, attribution: true }),
        every1: runWorker({ ...m, sampleEvery: 1, attribution: true }),
      };
    }
    results.push({ name: c.name, single, batch, python, maxDiff, reasons, monitor });
  }
  return results;
}

export function formatShapBench(results: readonly ShapResult[]): string {
  const lines: string[] = [];
  for (const r of results) {
    const py = r.python;
    const info = r.single.extra.info as Record<string, number>;
    const xgbBatchRow = py.batch.predict_median_ns / py.batch.rows;
    lines.push(
      `${r.name}: trees by whole-tree tables ${info.whole_table_trees}, leaf tables ${info.leaf_table_trees}, recursion ${info.recursive_trees}; tables ${(info.table_bytes / 1e6).toFixed(1)} MB built in ${info.build_ms} ms`,
    );
    lines.push(
      `${r.name}: one row   rtml p50 ${fmtNs(r.single.extra.p50Ns as number)} (p99 ${fmtNs(r.single.extra.p99Ns as number)}, mean ${fmtNs(r.single.medianNsPerRow)})  xgboost predict(DMatrix(1 row), pred_contribs) ${fmtNs(py.single_row.predict_median_ns)} (${fmtNs(py.single_row.with_dmatrix_median_ns)} with the DMatrix)  ratio ${fmtRatio(py.single_row.predict_median_ns / (r.single.extra.p50Ns as number))}${r.name === 'credit' ? ` (target p50 <= 50 us: ${(r.single.extra.p50Ns as number) <= 50_000 ? 'met' : 'NOT met'})` : ''}`,
    );
    lines.push(
      `${r.name}: batch ${py.batch.rows}  rtml ${fmtRate(1e9 / r.batch.medianNsPerRow)}  xgboost ${fmtRate(1e9 / xgbBatchRow)}  ratio ${fmtRatio(xgbBatchRow / r.batch.medianNsPerRow)}`,
    );
    lines.push(`${r.name}: exact   rtml vs xgboost pred_contribs max |diff| ${r.maxDiff.toExponential(2)} over ${py.batch.rows} rows${r.maxDiff === 0 ? ' (identical)' : ''}`);
    if (r.reasons) lines.push(`${r.name}: explain stage of a decision (contributions per feature + ranked reason codes): ${fmtNs(r.reasons.medianNsPerRow)} a decision`);
    if (r.monitor) {
      const m = r.monitor;
      const added = (x: Measurement) => fmtNs(x.medianNsPerRow - m.without.medianNsPerRow);
      lines.push(
        `${r.name}: monitor per decision ${fmtNs(m.without.medianNsPerRow)} without attribution; attribution adds ${added(m.every10)} at sample_every 10 (default), ${added(m.every1)} at 1 (explained ${m.every10.extra.explained} and ${m.every1.extra.explained} of the count window)`,
      );
    }
  }
  return lines.join('\n');
}
