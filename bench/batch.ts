/**
 * Batch scoring as whole processes: `rtml score` against what a data scientist would write
 * in Python (bench/batch_baseline.py: pandas `read_csv`, the bundle's encoding, XGBoost's C++
 * predictor, `to_csv`), on the same 100,000 lending_club rows, writing the same columns (the
 * input's and `p_bad`; rtml with `--no-decisions`, since the script has no policy).
 *
 * The rows are examples/credit/lending_club.csv's 9,857 loans repeated and shuffled with a
 * fixed seed. Runs alternate (rtml, python, rtml, ...) so a noisy neighbour hits both alike;
 * medians of wall time per process, start-up included; peak memory is `/usr/bin/time`'s
 * maximum resident set size. Every row's score is checked against XGBoost's (1e-6).
 * rtml with its decision columns (policy, reasons) is measured too, for the record.
 *
 * Alone: `node --import tsx bench/batch.ts [--reps N] [--rtml-root DIR]` (DIR: another checkout's rtml, for a before/after); in the suite: `npm run bench -- --only batch`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'csv-parse/sync';
import { loadModelBundle, median } from './common.ts';
import { mulberry32 } from '../test/helpers/prng.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BUNDLE = join(ROOT, 'examples', 'credit');
const PYTHON = '/usr/bin/python3';
const TIME = '/usr/bin/time';
const ROWS = 100_000;
const TOLERANCE = 1e-6;
/** Compiled CLI entry points the build may produce; measured when present. */
const COMPILED_ENTRIES = ['dist/src/cli/main.js', 'dist/cli/main.js'];

export interface ProcessRuns {
  label: string;
  command: string[];
  wallMs: number[];
  peakRssMiB: number[];
  /** User + system CPU of the process, all threads: steadier than wall time on a busy machine. */
  cpuMs: number[];
  medianMs: number;
  medianPeakRssMiB: number;
  medianCpuMs: number;
}

export interface BatchBench {
  rows: number;
  reps: number;
  rtmlMedianMs: number;
  pythonMedianMs: number;
  /** rtml time / python time (target <= 1). */
  ratio: number;
  /** rtml CPU / python CPU (user + system). */
  cpuRatio: number;
  rtmlPeakRssMiB: number;
  pythonPeakRssMiB: number;
  /** Largest |rtml p_bad - xgboost p_bad| over every row. */
  maxScoreDiff: number;
  /** Every variant measured: rtml through tsx (bin/rtml.mjs), compiled if present, with decisions, python. */
  runs: ProcessRuns[];
  /** The python script's own phase timings (s), from its median run. */
  pythonPhases: Record<string, number>;
  loadavgStart: number[];
  loadavgEnd: number[];
}

/** lending_club.csv's rows repeated, each pass shuffled, to `rows` data lines. */
export function writeRows(file: string, rows: number): void {
  const [header, ...loans] = readFileSync(join(BUNDLE, 'lending_club.csv'), 'utf8').trimEnd().split('\n');
  const random = mulberry32(14); // the same 100k rows every run
  const out: string[] = [header];
  while (out.length <= rows) {
    const pass = [...loans];
    for (let i = pass.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [pass[i], pass[j]] = [pass[j], pass[i]];
    }
    out.push(...pass.slice(0, rows + 1 - out.length));
  }
  writeFileSync(file, out.join('\n') + '\n');
}

/** One process under /usr/bin/time: wall ms (measured here), peak RSS in MiB, CPU ms. */
function runOnce(command: string[], rssFile: string): { wallMs: number; peakRssMiB: number; cpuMs: number; stdout: string } {
  const started = performance.now();
  const run = spawnSync(TIME, ['-f', '%M %U %S', '-o', rssFile, ...command], { cwd: ROOT, encoding: 'utf8', maxBuffer: 1 << 24 });
  const wallMs = performance.now() - started;
  if (run.status !== 0) throw new Error(`${command.join(' ')} exited ${run.status}: ${run.stderr.slice(-2000)}`);
  const [kib, user, system] = readFileSync(rssFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  return { wallMs, peakRssMiB: kib / 1024, cpuMs: (user + system) * 1000, stdout: run.stdout };
}

function scores(file: string, column: string): Float64Array {
  const rows = parse(readFileSync(file), { columns: true }) as Record<string, string>[];
  return Float64Array.from(rows, (r) => Number(r[column]));
}

/** `rtmlRoot`: the checkout whose rtml runs (default this one; another, such as main's, for a before/after). */
export async function benchBatch(options: { reps?: number; rtmlRoot?: string; log?: (line: string) => void } = {}): Promise<BatchBench> {
  const reps = options.reps ?? 3;
  const rtmlRoot = resolve(options.rtmlRoot ?? ROOT);
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const loadavgStart = loadavg();
  const dir = mkdtempSync(join(tmpdir(), 'rtml-bench-batch-'));
  try {
    const input = join(dir, 'rows.csv');
    writeRows(input, ROWS);
    const bundle = await loadModelBundle(BUNDLE);
    const column = bundle.outputs.columns[0];
    const features = join(dir, 'features.json');
    writeFileSync(features, JSON.stringify(bundle.encoding.features.map((f) => ({ name: f.name, type: f.type, values: f.type === 'category' ? f.values : undefined }))));
    await bundle.model.close?.();

    const out = (name: string) => join(dir, name);
    const score = ['score', BUNDLE, '--input', input, '--quiet'];
    const variants: { label: string; command: string[]; output: string }[] = [
      { label: 'rtml score --no-decisions (bin/rtml.mjs)', command: [process.execPath, join(rtmlRoot, 'bin/rtml.mjs'), ...score, '--no-decisions', '--output', out('rtml.csv')], output: out('rtml.csv') },
      {
        label: 'python: pandas read_csv + XGBoost inplace_predict + to_csv',
        command: [PYTHON, join(ROOT, 'bench/batch_baseline.py'), '--model', join(BUNDLE, 'model.json'), '--features', features, '--input', input, '--output', out('python.csv'), '--column', column],
        output: out('python.csv'),
      },
    ];
    const compiled = COMPILED_ENTRIES.map((p) => join(rtmlRoot, p)).find((p) => existsSync(p));
    if (compiled) variants.push({ label: `rtml score --no-decisions (compiled, ${compiled.slice(rtmlRoot.length + 1)})`, command: [process.execPath, compiled, ...score, '--no-decisions', '--output', out('compiled.csv')], output: out('compiled.csv') });
    variants.push({ label: 'rtml score with decisions and reasons (bin/rtml.mjs)', command: [process.execPath, join(rtmlRoot, 'bin/rtml.mjs'), ...score, '--output', out('decisions.csv')], output: out('decisions.csv') });

    const runs: ProcessRuns[] = variants.map((v) => ({ label: v.label, command: v.command, wallMs: [], peakRssMiB: [], cpuMs: [], medianMs: NaN, medianPeakRssMiB: NaN, medianCpuMs: NaN }));
    const pythonOut: { ms: number; phases: Record<string, number> }[] = [];
    for (let rep = 0; rep < reps; rep++) {
      for (let v = 0; v < variants.length; v++) {
        const r = runOnce(variants[v].command, out('rss.txt'));
        runs[v].wallMs.push(r.wallMs);
        runs[v].peakRssMiB.push(r.peakRssMiB);
        runs[v].cpuMs.push(r.cpuMs);
        if (v === 1) pythonOut.push({ ms: r.wallMs, phases: JSON.parse(r.stdout) as Record<string, number> });
        log(`batch rep ${rep + 1}/${reps}: ${variants[v].label}: ${(r.wallMs / 1000).toFixed(2)} s (CPU ${(r.cpuMs / 1000).toFixed(2)} s), peak RSS ${r.peakRssMiB.toFixed(0)} MiB`);
      }
    }
    for (const r of runs) {
      r.medianMs = median(r.wallMs);
      r.medianPeakRssMiB = median(r.peakRssMiB);
      r.medianCpuMs = median(r.cpuMs);
    }

    // Every row's score against XGBoost's (and the compiled run's and the decisions run's against it too).
    const reference = scores(out('python.csv'), column);
    let maxScoreDiff = 0;
    for (const v of variants) {
      if (v.output === out('python.csv')) continue;
      const mine = scores(v.output, column);
      if (mine.length !== reference.length) throw new Error(`${v.label} wrote ${mine.length} rows, python ${reference.length}`);
      for (let i = 0; i < mine.length; i++) {
        const d = Math.abs(mine[i] - reference[i]);
        if (!(d <= TOLERANCE)) throw new Error(`${v.label}: row ${i + 1} scores ${mine[i]}, XGBoost ${reference[i]}`);
        if (d > maxScoreDiff) maxScoreDiff = d;
      }
    }
    const [rtml, python] = runs;
    const middle = [...pythonOut].sort((a, b) => a.ms - b.ms)[pythonOut.length >> 1];
    return {
      rows: ROWS,
      reps,
      rtmlMedianMs: rtml.medianMs,
      pythonMedianMs: python.medianMs,
      ratio: rtml.medianMs / python.medianMs,
      cpuRatio: rtml.medianCpuMs / python.medianCpuMs,
      rtmlPeakRssMiB: rtml.medianPeakRssMiB,
      pythonPeakRssMiB: python.medianPeakRssMiB,
      maxScoreDiff,
      runs,
      pythonPhases: middle.phases,
      loadavgStart,
      loadavgEnd: loadavg(),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function formatBatchBench(r: BatchBench): string {
  const python = r.runs[1];
  const lines = r.runs.map(
    (run) =>
      `${run.label.padEnd(62)} median ${(run.medianMs / 1000).toFixed(2)} s (reps ${run.wallMs.map((ms) => (ms / 1000).toFixed(2)).join(', ')}), ` +
      `CPU ${(run.medianCpuMs / 1000).toFixed(2)} s, peak RSS ${run.medianPeakRssMiB.toFixed(0)} MiB, time ${(run.medianMs / python.medianMs).toFixed(2)}x python, CPU ${(run.medianCpuMs / python.medianCpuMs).toFixed(2)}x`,
  );
  const phases = Object.entries(r.pythonPhases)
    .filter(([k]) => k.endsWith('_s'))
    .map(([k, v]) => `${k.slice(0, -2)} ${v.toFixed(2)} s`)
    .join(', ');
  lines.push(`python phases (median run): ${phases}`);
  lines.push(`scores agree with XGBoost's on all ${r.rows} rows (max diff ${r.maxScoreDiff.toExponential(1)}); load average ${r.loadavgStart[0].toFixed(2)} at start, ${r.loadavgEnd[0].toFixed(2)} at end`);
  const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
  lines.push(
    `batch ${r.rows} rows: rtml/python time ${r.ratio.toFixed(2)}x (target <= 1.0x: ${verdict(r.ratio <= 1)}; CPU ${r.cpuRatio.toFixed(2)}x); ` +
      `peak RSS rtml ${r.rtmlPeakRssMiB.toFixed(0)} MiB vs python ${r.pythonPeakRssMiB.toFixed(0)} MiB (target no higher: ${verdict(r.rtmlPeakRssMiB <= r.pythonPeakRssMiB)})`,
  );
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name: string) => (process.argv.indexOf(name) > 0 ? process.argv[process.argv.indexOf(name) + 1] : undefined);
  const reps = arg('--reps');
  const r = await benchBatch({ reps: reps === undefined ? undefined : Number(reps), rtmlRoot: arg('--rtml-root') });
  console.log(formatBatchBench(r));
}
