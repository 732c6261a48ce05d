/**
 * `npm run bench`: rtml's native XGBoost evaluator against XGBoost itself (Python, C++
 * predictor) and against onnxruntime-node, on the same rows, in one run.
 *
 * For each model (examples/credit, and the generated 500-tree `large` model):
 *   a. single-row latency: rtml `predictSync` on one row, and the full pipeline
 *      `scoreRows([row])` from a raw JSON row, vs `booster.inplace_predict(one_row)`;
 *   b. single-thread batch throughput on 10,000 rows vs XGBoost's predictor with nthread=1
 *      (`predict(DMatrix)` and `inplace_predict`), with an exactness check of every row;
 *   c. where an ONNX twin exists, onnxruntime-node (1 intra-op thread), single row and batch.
 *
 * Every figure is a median over repetitions after a warmup; each rtml measurement runs in a
 * fresh Node process (`bench/worker.ts`) so one access pattern's JIT state does not colour
 * another's. The machine may be shared: compare the ratios, which come from the same run.
 * Results also go to bench/.models/results.json.
 *
 * `bench/evaluator_lab.ts` (run separately, after this) compares the shipped evaluator with
 * prototype alternatives on the same rows.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'csv-parse/sync';
import type { FieldError, RawRow } from '../src/bundle/encoding.ts';
import { formatTargets, type TargetFigures } from './targets.ts';
import { benchBatch, formatBatchBench } from './batch.ts';
import { benchMonitor, formatMonitorBench } from './monitor.ts';
import { loadModelBundle, fmtNs, fmtRate, fmtRatio, maxAbsDiff, readF32, readF64, writeTyped, type Measurement, type Task, type Warmup } from './common.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MODELS = join(ROOT, 'bench', '.models');
const PYTHON = '/usr/bin/python3';
const BATCH_ROWS = 10_000;
const TOLERANCE = 1e-6;

/** Repetition counts: enough for a stable median, small enough for ~5 minutes on 2 cores. */
const SINGLE_CALLS = 10_000;
const SINGLE_REPS = 7;
const BATCH_REPS = 7;
/** Warm until the last 5 reps agree within 15%: V8 needs seconds to settle on a big generated forest. */
const NATIVE_WARMUP: Warmup = { minMs: 2000, maxMs: 20000 };
const ONNX_WARMUP: Warmup = { minMs: 1000, maxMs: 5000 };

const TARGET_SINGLE = 20;
const TARGET_BATCH = 1;

interface ModelCase {
  name: string;
  bundleDir: string;
  modelJson: string;
  rowsFile: string;
  width: number;
  rows: number;
  goldenFile: string;
  onnx: { file: string; input: string } | null;
  onnxMissingReason?: string;
  info: Readonly<Record<string, string | number | boolean>>;
  rowsSource: string;
}

interface PyBaseline {
  xgboost: string;
  rows: number;
  feature_types: string[] | null;
  single_row: {
    inplace_predict_ns: number[];
    inplace_predict_median_ns: number;
    inplace_predict_mean_ns: number[];
    inplace_predict_mean_median_ns: number;
    dmatrix_predict_ns: number[];
    dmatrix_predict_median_ns: number;
  };
  batch: {
    dmatrix_predict_ns: number[];
    dmatrix_predict_median_ns: number;
    inplace_predict_ns: number[];
    inplace_predict_median_ns: number;
    inplace_vs_dmatrix_max_diff: number;
  };
}

const rel = (p: string) => relative(ROOT, p) || '.';

function log(msg: string): void {
  process.stderr.write(`[bench ${((performance.now() - started) / 1000).toFixed(0).padStart(3)}s] ${msg}\n`);
}
const started = performance.now();

// ---------------------------------------------------------------------------------------------
// 1. Models and rows

function ensureModels(): void {
  const large = join(MODELS, 'large');
  const needed = ['rtml.yaml', 'model.json', 'model.onnx', 'golden.jsonl', 'bench_rows.f32', 'bench_rows.json'];
  if (needed.every((f) => existsSync(join(large, f)))) return;
  log(`generating benchmark models: ${PYTHON} bench/make_models.py ${rel(MODELS)} (about a minute, once)`);
  const r = spawnSync(PYTHON, [join(ROOT, 'bench', 'make_models.py'), MODELS], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`bench/make_models.py failed (exit ${r.status ?? r.signal})`);
  for (const f of needed) if (!existsSync(join(large, f))) throw new Error(`bench/make_models.py did not write ${rel(join(large, f))}`);
}

async function largeCase(): Promise<ModelCase> {
  const dir = join(MODELS, 'large');
  const bundle = await loadModelBundle(dir);
  const meta = JSON.parse(readFileSync(join(dir, 'bench_rows.json'), 'utf8')) as { rows: number; cols: number; file: string };
  if (meta.cols !== bundle.model.inputWidth) throw new Error(`bench rows have ${meta.cols} columns, the model takes ${bundle.model.inputWidth}`);
  const rowsFile = join(dir, meta.file);
  const x = readF32(rowsFile);
  if (x.length !== meta.rows * meta.cols) throw new Error(`${rel(rowsFile)} holds ${x.length} floats, expected ${meta.rows}x${meta.cols}`);
  return {
    name: 'large',
    bundleDir: dir,
    modelJson: join(dir, bundle.manifest.model!.path),
    rowsFile,
    width: meta.cols,
    rows: meta.rows,
    goldenFile: bundle.goldenPath!,
    onnx: { file: join(dir, 'model.onnx'), input: 'input' },
    info: bundle.model.info,
    rowsSource: `${rel(rowsFile)} (written by make_models.py)`,
  };
}

/** The credit bundle's raw CSV rows, encoded by rtml's own encoder, tiled to 10,000 rows. */
async function creditCase(): Promise<ModelCase | null> {
  const dir = join(ROOT, 'examples', 'credit');
  const csv = join(dir, 'lending_club.csv');
  if (!existsSync(join(dir, 'rtml.yaml')) || !existsSync(csv)) {
    log('examples/credit is missing (rtml.yaml, lending_club.csv): skipping the credit model');
    return null;
  }
  const bundle = await loadModelBundle(dir);
  if (!bundle.goldenPath) throw new Error('examples/credit has no golden file');
  const width = bundle.encoding.width;
  const encode = bundle.encoding.encoder({ fromText: true });
  const records = parse(readFileSync(csv), { columns: true, skip_empty_lines: true }) as RawRow[];
  const encoded = new Float32Array(records.length * width);
  let valid = 0;
  let errors: FieldError[] = [];
  for (const rec of records) {
    encode(rec, encoded, valid * width, errors);
    if (errors.length === 0) valid++;
    else errors = [];
  }
  if (valid === 0) throw new Error(`no row of ${rel(csv)} encodes`);
  const x = new Float32Array(BATCH_ROWS * width);
  for (let r = 0; r < BATCH_ROWS; r++) x.set(encoded.subarray((r % valid) * width, ((r % valid) + 1) * width), r * width);
  const rowsFile = join(MODELS, 'credit_rows.f32');
  writeTyped(rowsFile, x);
  const onnxFile = join(dir, 'model.onnx');
  return {
    name: 'credit',
    bundleDir: dir,
    modelJson: join(dir, bundle.manifest.model!.path),
    rowsFile,
    width,
    rows: BATCH_ROWS,
    goldenFile: bundle.goldenPath,
    onnx: existsSync(onnxFile) ? { file: onnxFile, input: 'input' } : null,
    onnxMissingReason: 'no ONNX twin (native categorical splits have no ai.onnx.ml equivalent)',
    info: bundle.model.info,
    rowsSource: `${rel(csv)}: ${valid} of ${records.length} rows encode, tiled to ${BATCH_ROWS}`,
  };
}

// ---------------------------------------------------------------------------------------------
// 2. Measuring

function runWorker(task: Task): Measurement {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'worker.ts'), JSON.stringify(task)], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`bench worker ${task.kind} failed (exit ${r.status ?? r.signal}):\n${r.stderr.slice(-3000)}`);
  const last = r.stdout.trim().split('\n').pop()!;
  return JSON.parse(last) as Measurement;
}

function runPython(c: ModelCase, predsOut: string): PyBaseline {
  const args = [join(ROOT, 'bench', 'xgb_baseline.py'), '--model', c.modelJson, '--rows', c.rowsFile, '--features', String(c.width), '--preds-out', predsOut];
  const r = spawnSync(PYTHON, args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`bench/xgb_baseline.py failed (exit ${r.status ?? r.signal}):\n${r.stderr.slice(-3000)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as PyBaseline;
}

interface CaseResult {
  name: string;
  info: ModelCase['info'];
  rowsSource: string;
  python: PyBaseline;
  native: { single: Measurement; batch: Measurement; singleAfterBatch: Measurement; batchAfterSingle: Measurement };
  pipeline: Measurement;
  onnx: { single: Measurement; batch: Measurement } | null;
  onnxMissingReason?: string;
  diffs: Record<string, number>;
  ratios: Record<string, number>;
}

async function measure(c: ModelCase): Promise<CaseResult> {
  const xgbPreds = join(MODELS, `${c.name}.xgb_preds.f64`);
  const rtmlPreds = join(MODELS, `${c.name}.rtml_preds.f64`);
  const onnxPreds = join(MODELS, `${c.name}.onnx_preds.f64`);
  const base = { bundle: c.bundleDir, rowsFile: c.rowsFile, width: c.width };

  log(`${c.name}: xgboost baseline (python)`);
  const python = runPython(c, xgbPreds);
  log(`${c.name}: rtml native single-row`);
  const single = runWorker({ kind: 'native-single', ...base, calls: SINGLE_CALLS, reps: SINGLE_REPS, warmup: NATIVE_WARMUP });
  log(`${c.name}: rtml native batch`);
  const batch = runWorker({ kind: 'native-batch', ...base, reps: BATCH_REPS, warmup: NATIVE_WARMUP, predsOut: rtmlPreds });
  log(`${c.name}: rtml full pipeline single-row`);
  const pipeline = runWorker({ kind: 'pipeline-single', bundle: c.bundleDir, jsonRowsFile: c.goldenFile, calls: SINGLE_CALLS, reps: SINGLE_REPS, warmup: NATIVE_WARMUP });
  log(`${c.name}: rtml native, one access pattern after the other (JIT diagnostic)`);
  const singleAfterBatch = runWorker({ kind: 'native-switch', ...base, calls: SINGLE_CALLS, reps: SINGLE_REPS, warmup: NATIVE_WARMUP, first: 'batch' });
  const batchAfterSingle = runWorker({ kind: 'native-switch', ...base, calls: SINGLE_CALLS, reps: BATCH_REPS, warmup: NATIVE_WARMUP, first: 'single' });

  let onnx: CaseResult['onnx'] = null;
  if (c.onnx) {
    log(`${c.name}: onnxruntime-node single-row and batch`);
    const o = { model: c.onnx.file, input: c.onnx.input, rowsFile: c.rowsFile, width: c.width };
    onnx = {
      single: runWorker({ kind: 'onnx-single', ...o, calls: SINGLE_CALLS / 2, reps: SINGLE_REPS, warmup: ONNX_WARMUP }),
      batch: runWorker({ kind: 'onnx-batch', ...o, reps: BATCH_REPS, warmup: ONNX_WARMUP, predsOut: onnxPreds }),
    };
  }

  const xgb = readF64(xgbPreds);
  const rtml = readF64(rtmlPreds);
  const diffs: Record<string, number> = {
    rtml_vs_xgboost: maxAbsDiff(rtml, xgb),
    xgboost_inplace_vs_dmatrix: python.batch.inplace_vs_dmatrix_max_diff,
    pipeline_vs_golden: pipeline.extra.goldenMaxDiff as number,
  };
  if (onnx) {
    const ox = readF64(onnxPreds);
    diffs.onnx_vs_xgboost = maxAbsDiff(ox, xgb);
    diffs.onnx_vs_rtml = maxAbsDiff(ox, rtml);
  }

  const xgbSingle = python.single_row.inplace_predict_median_ns;
  const xgbBatchRow = python.batch.dmatrix_predict_median_ns / python.rows;
  const xgbInplaceRow = python.batch.inplace_predict_median_ns / python.rows;
  const ratios: Record<string, number> = {
    single_xgboost_over_rtml: xgbSingle / single.medianNsPerRow,
    single_xgboost_over_pipeline: xgbSingle / pipeline.medianNsPerRow,
    batch_rtml_over_xgboost_dmatrix: xgbBatchRow / batch.medianNsPerRow,
    batch_rtml_over_xgboost_inplace: xgbInplaceRow / batch.medianNsPerRow,
    single_after_batch_slowdown: singleAfterBatch.medianNsPerRow / single.medianNsPerRow,
    batch_after_single_slowdown: batchAfterSingle.medianNsPerRow / batch.medianNsPerRow,
  };
  if (onnx) {
    ratios.single_onnx_over_rtml = onnx.single.medianNsPerRow / single.medianNsPerRow;
    ratios.batch_onnx_over_rtml = onnx.batch.medianNsPerRow / batch.medianNsPerRow;
  }
  return {
    name: c.name,
    info: c.info,
    rowsSource: c.rowsSource,
    python,
    native: { single, batch, singleAfterBatch, batchAfterSingle },
    pipeline,
    onnx,
    onnxMissingReason: c.onnx ? undefined : c.onnxMissingReason,
    diffs,
    ratios,
  };
}

// ---------------------------------------------------------------------------------------------
// 3. Reporting

const spread = (v: readonly number[]) => (v.length ? `${fmtNs(Math.min(...v))}..${fmtNs(Math.max(...v))}` : '');
const rate = (nsPerRow: number) => 1e9 / nsPerRow;
const verdict = (ratio: number, target: number) => (ratio >= target ? 'meets' : 'BELOW');

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ')).join('\n');
}

function report(r: CaseResult): string {
  const p = r.python;
  const n = r.native;
  const lines: string[] = [];
  lines.push(`== ${r.name}: ${r.info.trees} trees, max depth ${r.info.max_depth}, ${r.info.num_feature} features, ${r.info.objective} (xgboost ${p.xgboost})`);
  lines.push(`   rows: ${r.rowsSource}`);
  const single: string[][] = [
    ['single row (median per call)', 'median', 'reps min..max', 'xgboost/this'],
    ['rtml predictSync', fmtNs(n.single.medianNsPerRow), spread(n.single.repsNsPerRow), fmtRatio(r.ratios.single_xgboost_over_rtml)],
    ['rtml scoreRows([json row]) full pipeline', fmtNs(r.pipeline.medianNsPerRow), spread(r.pipeline.repsNsPerRow), fmtRatio(r.ratios.single_xgboost_over_pipeline)],
  ];
  if (r.onnx) single.push(['onnxruntime-node predict (1 thread)', fmtNs(r.onnx.single.medianNsPerRow), spread(r.onnx.single.repsNsPerRow), fmtRatio(p.single_row.inplace_predict_median_ns / r.onnx.single.medianNsPerRow)]);
  single.push(['xgboost-py inplace_predict(1-row numpy)', fmtNs(p.single_row.inplace_predict_median_ns), spread(p.single_row.inplace_predict_ns), '1x']);
  single.push(['xgboost-py predict(DMatrix(1 row))', fmtNs(p.single_row.dmatrix_predict_median_ns), spread(p.single_row.dmatrix_predict_ns), fmtRatio(p.single_row.inplace_predict_median_ns / p.single_row.dmatrix_predict_median_ns)]);
  lines.push(table(single));
  lines.push('');
  const rowsN = p.rows;
  const batch: string[][] = [
    [`batch of ${rowsN} rows, 1 thread`, 'median', 'throughput', 'reps min..max', 'this/xgboost'],
    ['rtml predictSync', fmtNs(n.batch.medianNsPerRow * rowsN), fmtRate(rate(n.batch.medianNsPerRow)), spread(n.batch.repsNsPerRow.map((v) => v * rowsN)), fmtRatio(r.ratios.batch_rtml_over_xgboost_dmatrix)],
  ];
  if (r.onnx) {
    batch.push(['onnxruntime-node predict', fmtNs(r.onnx.batch.medianNsPerRow * rowsN), fmtRate(rate(r.onnx.batch.medianNsPerRow)), spread(r.onnx.batch.repsNsPerRow.map((v) => v * rowsN)), fmtRatio(p.batch.dmatrix_predict_median_ns / rowsN / r.onnx.batch.medianNsPerRow)]);
  }
  batch.push(['xgboost predict(DMatrix), nthread=1', fmtNs(p.batch.dmatrix_predict_median_ns), fmtRate((rowsN * 1e9) / p.batch.dmatrix_predict_median_ns), spread(p.batch.dmatrix_predict_ns), '1x']);
  batch.push(['xgboost inplace_predict, nthread=1', fmtNs(p.batch.inplace_predict_median_ns), fmtRate((rowsN * 1e9) / p.batch.inplace_predict_median_ns), spread(p.batch.inplace_predict_ns), fmtRatio(p.batch.dmatrix_predict_median_ns / p.batch.inplace_predict_median_ns)]);
  lines.push(table(batch));
  lines.push('');
  const d = r.diffs;
  lines.push(
    `   exactness (max |diff| over ${rowsN} rows): rtml vs xgboost ${d.rtml_vs_xgboost.toExponential(2)}` +
      (r.onnx ? `, onnx vs xgboost ${d.onnx_vs_xgboost.toExponential(2)}, onnx vs rtml ${d.onnx_vs_rtml.toExponential(2)}` : '') +
      `; pipeline vs golden.jsonl ${d.pipeline_vs_golden.toExponential(2)} (${r.pipeline.rows} rows)` +
      (d.rtml_vs_xgboost <= TOLERANCE && d.pipeline_vs_golden <= TOLERANCE ? `: within ${TOLERANCE}` : `: EXCEEDS ${TOLERANCE}`),
  );
  if (!r.onnx && r.onnxMissingReason) lines.push(`   onnx: ${r.onnxMissingReason}`);
  const settle = (m: Measurement) => `${m.settled ? 'settled after' : 'NOT settled after'} ${(m.warmupMs / 1000).toFixed(1)} s`;
  lines.push(
    `   cold start (rtml native): load ${n.single.loadMs.toFixed(0)} ms; first single-row call ${fmtNs(n.single.firstCallNs)}, ` +
      `next 1000 calls ${fmtNs(n.single.warmupNsPerRow[0])}/call, ${settle(n.single)}; ` +
      `first batch ${fmtNs(n.batch.firstCallNs)} (${fmtNs(n.batch.firstCallNs / rowsN)}/row), ${settle(n.batch)}`,
  );
  lines.push(
    `   JIT diagnostic: single-row after batch warmup ${fmtNs(n.singleAfterBatch.medianNsPerRow)} (${fmtRatio(r.ratios.single_after_batch_slowdown)} the isolated figure); ` +
      `batch after single-row warmup ${fmtNs(n.batchAfterSingle.medianNsPerRow * rowsN)} (${fmtRatio(r.ratios.batch_after_single_slowdown)})`,
  );
  return lines.join('\n');
}

function summary(results: CaseResult[]): string {
  const out: string[] = ['== summary (medians; ratios from this run; "(unsettled)": the JIT had not settled when timing began)'];
  const name = (s: string) => s.padEnd(Math.max(...results.map((r) => r.name.length)));
  const flag = (...ms: Measurement[]) => (ms.every((m) => m.settled) ? '' : ' (unsettled)');
  for (const r of results) {
    const p = r.python;
    const rs = r.ratios;
    const n = r.native;
    out.push(
      `${name(r.name)}  single-row  rtml ${fmtNs(n.single.medianNsPerRow)}  xgboost-py ${fmtNs(p.single_row.inplace_predict_median_ns)}  ratio ${fmtRatio(rs.single_xgboost_over_rtml)} (target ${TARGET_SINGLE}x: ${verdict(rs.single_xgboost_over_rtml, TARGET_SINGLE)})${flag(n.single)}`,
    );
    out.push(
      `${name(r.name)}  pipeline    rtml ${fmtNs(r.pipeline.medianNsPerRow)}  xgboost-py ${fmtNs(p.single_row.inplace_predict_median_ns)}  ratio ${fmtRatio(rs.single_xgboost_over_pipeline)} (target ${TARGET_SINGLE}x: ${verdict(rs.single_xgboost_over_pipeline, TARGET_SINGLE)})${flag(r.pipeline)}`,
    );
    out.push(
      `${name(r.name)}  batch 10k   rtml ${fmtRate(rate(n.batch.medianNsPerRow))}  xgboost-c++ ${fmtRate((p.rows * 1e9) / p.batch.dmatrix_predict_median_ns)}  ratio ${fmtRatio(rs.batch_rtml_over_xgboost_dmatrix)} (target ${TARGET_BATCH}x: ${verdict(rs.batch_rtml_over_xgboost_dmatrix, TARGET_BATCH)}; vs inplace ${fmtRatio(rs.batch_rtml_over_xgboost_inplace)})${flag(n.batch)}`,
    );
    if (r.onnx) {
      out.push(
        `${name(r.name)}  onnx        single ${fmtNs(r.onnx.single.medianNsPerRow)}, onnx/rtml ${fmtRatio(rs.single_onnx_over_rtml)}  batch ${fmtRate(rate(r.onnx.batch.medianNsPerRow))}, onnx/rtml ${fmtRatio(rs.batch_onnx_over_rtml)}  (time ratios: >1 = rtml faster)${flag(n.single, n.batch)}`,
      );
    }
    out.push(
      `${name(r.name)}  cold start  first call ${fmtNs(n.single.firstCallNs)}; single-row ${n.single.settled ? 'settled' : 'NOT settled'} after ${(n.single.warmupMs / 1000).toFixed(1)} s, batch ${n.batch.settled ? 'settled' : 'NOT settled'} after ${(n.batch.warmupMs / 1000).toFixed(1)} s; single-row after batch use ${fmtRatio(rs.single_after_batch_slowdown)} slower`,
    );
    out.push(`${name(r.name)}  exact       rtml vs xgboost max |diff| ${r.diffs.rtml_vs_xgboost.toExponential(2)} (tolerance ${TOLERANCE})`);
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------

/** `npm run bench -- --only models,shap,log,monitor,http,batch,startup,features,overload,fleet,replay,shadow` runs a subset; all of them by default. */
const onlyAt = process.argv.indexOf('--only');
const only = new Set((process.argv.find((a) => a.startsWith('--only='))?.slice(7) ?? (onlyAt > 0 ? process.argv[onlyAt + 1] : undefined) ?? 'models,shap,log,monitor,http,batch,startup,features,overload,fleet,replay,shadow').split(','));

async function main(): Promise<void> {
  mkdirSync(MODELS, { recursive: true });
  const load0 = loadavg();
  const results: CaseResult[] = [];
  if (only.has('models')) {
    ensureModels();
    const cases = [await creditCase(), await largeCase()].filter((c): c is ModelCase => c !== null);
    for (const c of cases) results.push(await measure(c));
  }
  let shapText = '';
  if (only.has('shap')) {
    ensureModels();
    const { benchShap, formatShapBench } = await import('./shap.ts');
    const cases = [await creditCase(), await largeCase()].filter((c): c is ModelCase => c !== null);
    shapText = formatShapBench(await benchShap(ROOT, MODELS, cases, runWorker, log));
  }
  const figures: TargetFigures = { missing: {} };
  let logText = '';
  if (only.has('log')) {
    const { benchDecisionLogVariants, formatLogBench } = await import('./log.ts');
    figures.log = await benchDecisionLogVariants();
    logText = formatLogBench(figures.log);
  }
  let monitorText = '';
  if (only.has('monitor')) {
    figures.monitor = await benchMonitor();
    monitorText = formatMonitorBench(figures.monitor);
  }
  let batchText = '';
  if (only.has('batch')) {
    figures.batch = await benchBatch({ log });
    batchText = formatBatchBench(figures.batch);
  }
  let startupText = '';
  if (only.has('startup')) {
    const { benchStartup, formatStartupBench } = await import('./startup.ts');
    startupText = formatStartupBench(await benchStartup());
  }
  let featuresText = '';
  if (only.has('features')) {
    const lines: string[] = [];
    const { EmbeddedFeatureStore } = await import('../src/features/embedded.ts');
    const { benchFeatureStore } = await import('./features.ts');
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'rtml-bench-features-'));
    const store = new EmbeddedFeatureStore({ dataDir: dir, streams: { tx: { latenessMs: 300_000, retentionMs: 30 * 86_400_000 + 300_000 } }, synchronous: 'full' });
    try {
      const r = await benchFeatureStore(store);
      const k = (x: number) => `${(x / 1000).toFixed(1)}k`;
      lines.push(`embedded ingest (synchronous full): batches of 1, ${r.batch1.inFlight} in flight ${k(r.batch1.eventsPerSec)} events/s (${k(r.batch1.eventsPerCpuSec)} per CPU-s); batches of 100, 8 in flight ${k(r.batch100Concurrent.eventsPerSec)} events/s (${k(r.batch100Concurrent.eventsPerCpuSec)} per CPU-s)`);
      lines.push(`embedded lookup of 5 aggregates + 2 entity fields: p50 ${r.request.p50Us.toFixed(1)} us, p99 ${r.request.p99Us.toFixed(1)} us`);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
    try {
      const { benchRedisStore } = await import('./features-redis.ts');
      const r = await benchRedisStore({ log: () => {} });
      for (const i of r.ingest) lines.push(`redis ingest: batches of ${i.batch}, ${i.inFlight} in flight: ${(i.eventsPerSec / 1000).toFixed(1)}k events/s`);
      for (const q of r.request) lines.push(`${q.store} lookup of 5 aggregates + 2 entity fields, ${q.inFlight} in flight: p50 ${q.p50Ms.toFixed(3)} ms, p99 ${q.p99Ms.toFixed(3)} ms`);
    } catch (err) {
      lines.push(`redis: not measured (${(err as Error).message.split('\n')[0]})`);
    }
    const { benchFeatureDecisions, formatFeatureDecisions } = await import('./features-decision.ts');
    lines.push(formatFeatureDecisions(await benchFeatureDecisions()));
    featuresText = lines.join('\n');
  }
  let httpText = '';
  if (only.has('http')) {
    const { benchHttp, formatHttpBench } = await import('./http.ts');
    // Profiles rtml (V8, main thread) when a target is missed: where the time goes.
    figures.http = await benchHttp();
    httpText = formatHttpBench(figures.http);
  }
  let overloadText = '';
  if (only.has('overload')) {
    const { benchOverload, formatOverloadBench } = await import('./overload.ts');
    overloadText = formatOverloadBench(await benchOverload());
  }
  let fleetText = '';
  if (only.has('fleet')) {
    const { benchFleet, formatFleetBench } = await import('./fleet.ts');
    fleetText = formatFleetBench(await benchFleet());
  }
  let shadowText = '';
  if (only.has('shadow')) {
    log('shadow: the decision path with and without a shadow challenger (bench/shadow.ts, its own process)');
    const shadow = spawnSync(process.execPath, ['--import', 'tsx', join(dirname(fileURLToPath(import.meta.url)), 'shadow.ts')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    shadowText = shadow.status === 0 ? shadow.stdout.trimEnd() : `bench/shadow.ts failed (exit ${shadow.status})`;
  }
  let replayText = '';
  if (only.has('replay')) {
    const { benchReplay, formatReplayBench } = await import('./replay.ts');
    replayText = formatReplayBench(await benchReplay(1_000_000, log));
  }
  const wallS = (performance.now() - started) / 1000;
  const load1 = loadavg();

  const env = {
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    loadavgStart: load0.map((v) => +v.toFixed(2)),
    loadavgEnd: load1.map((v) => +v.toFixed(2)),
    wallSeconds: +wallS.toFixed(1),
    settings: { SINGLE_CALLS, SINGLE_REPS, BATCH_REPS, NATIVE_WARMUP, ONNX_WARMUP, BATCH_ROWS },
  };
  console.log(`rtml benchmark: node ${env.node}, ${env.cores} x ${env.cpu}; load average ${load0[0].toFixed(2)} at start, ${load1[0].toFixed(2)} at end`);
  console.log(`(single-row rtml/onnx figures: median over ${SINGLE_REPS} reps of the mean of ${SINGLE_CALLS} calls; xgboost-py: median of per-call perf_counter_ns; all after a warmup that runs until the last 5 reps agree within 15%)\n`);
  for (const r of results) console.log(`${report(r)}\n`);
  if (results.length > 0) console.log(summary(results));
  if (shapText) console.log(`\n== exact contributions (TreeSHAP) vs XGBoost predict(pred_contribs=True), one thread\n${shapText}`);
  if (logText) console.log(`\n== decision log (appends/s and append latency, 64 in flight)\n${logText}`);
  if (monitorText) console.log(`\n== monitors: main-thread cost per decision, evaluations inline (before) vs in a worker (after)\n${monitorText}`);
  if (httpText) console.log(`\n== HTTP: full decision pipeline with logging vs a bare fastify route and FastAPI + XGBoost\n${httpText}`);
  if (batchText) console.log(`\n== batch: rtml score vs pandas + XGBoost + to_csv, whole processes, 100k rows\n${batchText}`);
  if (startupText) console.log(`\n== runtime: compiled dist/ vs the TypeScript sources through tsx\n${startupText}`);
  if (featuresText) console.log(`\n== real-time features: ingestion, lookups, and the latency they add to a decision\n${featuresText}`);
  if (overloadText) console.log(`\n== overload: 3x saturation over 2,000 connections; every answer 200 or 503 + Retry-After, health answered\n${overloadText}`);
  if (fleetText) console.log(`\n== processes and logs: decisions/s with 1 process and 2 workers, SQLite log vs PostgreSQL log (wrk, saturation)\n${fleetText}`);
  if (shadowText) console.log(`\n== shadow: what a shadow challenger costs the decision path (issue 11)\n${shadowText}`);
  if (replayText) console.log(`\n== replay: a candidate re-deciding a million logged decisions (fresh processes; ratio to reading the log alone)\n${replayText}`);
  console.log(`\n== targets (issue 14): ratios from this run; load average ${load0[0].toFixed(2)} at start, ${load1[0].toFixed(2)} at end\n${formatTargets(figures)}`);
  console.log(`\nwall time ${wallS.toFixed(0)} s; results in ${rel(join(MODELS, 'results.json'))}`);

  writeFileSync(join(MODELS, 'results.json'), `${JSON.stringify({ env, results }, null, 2)}\n`);
  const bad = results.filter((r) => !(r.diffs.rtml_vs_xgboost <= TOLERANCE && r.diffs.pipeline_vs_golden <= TOLERANCE));
  if (bad.length > 0) {
    console.error(`rtml's outputs differ from xgboost's beyond ${TOLERANCE} for: ${bad.map((r) => r.name).join(', ')}`);
    process.exitCode = 1;
  }
}

await main();
