/**
 * Issue 14's targets, one table at the end of `npm run bench`: each target's figure, the
 * baseline it is measured against in the same run, the ratio, and whether it is met. Each
 * part of the bench fills in its own figures (`--only` runs some: the others say so).
 */
import type { BatchBench } from './batch.ts';
import { budgetLine, type HttpBenchResult } from './http.ts';
import { commitCostFit, commitCostLine, LOG_CPU_TARGET_US as TARGET_LOG_CPU_US, type LogBenchVariant } from './log.ts';
import type { MonitorBench } from './monitor.ts';

export interface TargetFigures {
  http?: HttpBenchResult;
  log?: LogBenchVariant[];
  batch?: BatchBench;
  monitor?: MonitorBench;
  /** Why a part that was asked for was not measured. */
  missing: Record<string, string>;
}

export const TARGET_MONITOR_US = 3;
export const TARGET_BATCH_RATIO = 1;
/** The log variant whose CPU per decision the target reads: a server's open-loop traffic, synchronous FULL. */
export const LOG_TARGET_VARIANT = 'paced 5,000/s + 80 µs work, full';

interface Row {
  target: string;
  figure: string;
  baseline: string;
  ratio: string;
  verdict: string;
}

const f0 = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');
const f2 = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');
const met = (ok: boolean) => (ok ? 'met' : 'NOT met');

function notMeasured(target: string, part: string, figures: TargetFigures): Row {
  return { target, figure: '-', baseline: '-', ratio: '-', verdict: `not measured (${figures.missing[part] ?? `--only ${part}`})` };
}

export function targetRows(figures: TargetFigures): Row[] {
  const rows: Row[] = [];
  const h = figures.http;
  const decisions = 'decisions/s >= 0.4x bare fastify (log FULL, monitors on)';
  const fastapi = 'decisions/s >= 10x FastAPI + XGBoost (1 worker)';
  const p99 = 'p99 <= 5 ms at half saturation (log FULL)';
  if (h) {
    const s = h.saturation;
    rows.push({ target: decisions, figure: `${f0(s.rtmlFull.median.rps)}/s`, baseline: `bare ${f0(s.bare.median.rps)}/s`, ratio: `${f2(h.ratio.full)}x`, verdict: met(h.targets.throughputRatio.pass) });
    rows.push(
      s.fastapi
        ? { target: fastapi, figure: `${f0(s.rtmlFull.median.rps)}/s`, baseline: `FastAPI ${f0(s.fastapi.median.rps)}/s`, ratio: `${f2(h.ratio.overFastapi)}x`, verdict: met(h.targets.overFastapi.pass) }
        : { target: fastapi, figure: `${f0(s.rtmlFull.median.rps)}/s`, baseline: '-', ratio: '-', verdict: 'not measured (the FastAPI peer did not start: see the HTTP problems)' },
    );
    const t = h.targets.halfLoadP99Ms;
    rows.push({ target: p99, figure: `${f2(t.value)} ms @${f0(h.halfLoad.rate)}/s`, baseline: `target ${t.target} ms; bare ${f2(h.halfLoad.bare.median.p99)} ms`, ratio: `${f2(t.value / t.target)}x of target`, verdict: met(t.pass) });
  } else {
    rows.push(notMeasured(decisions, 'http', figures), notMeasured(fastapi, 'http', figures), notMeasured(p99, 'http', figures));
  }

  const batch = 'batch 100k rows: time <= 1.0x pandas + XGBoost + to_csv';
  const b = figures.batch;
  if (b) {
    rows.push({ target: batch, figure: `${(b.rtmlMedianMs / 1000).toFixed(2)} s, ${f0(b.rtmlPeakRssMiB)} MiB`, baseline: `${(b.pythonMedianMs / 1000).toFixed(2)} s, ${f0(b.pythonPeakRssMiB)} MiB`, ratio: `${f2(b.ratio)}x`, verdict: met(b.ratio <= TARGET_BATCH_RATIO && b.rtmlPeakRssMiB <= b.pythonPeakRssMiB) + (b.rtmlPeakRssMiB > b.pythonPeakRssMiB ? ' (memory)' : '') });
  } else rows.push(notMeasured(batch, 'batch', figures));

  const logTarget = `log CPU <= ${TARGET_LOG_CPU_US} µs/decision, all threads (FULL)`;
  const v = figures.log?.find((x) => x.name === LOG_TARGET_VARIANT);
  if (v) rows.push({ target: logTarget, figure: `${v.cpuUsPerAppend.toFixed(1)} µs`, baseline: `target ${TARGET_LOG_CPU_US} µs`, ratio: `${f2(v.cpuUsPerAppend / TARGET_LOG_CPU_US)}x of target`, verdict: met(v.cpuUsPerAppend <= TARGET_LOG_CPU_US) });
  else rows.push(figures.log ? { ...notMeasured(logTarget, 'log', figures), verdict: `not measured (no log variant "${LOG_TARGET_VARIANT}")` } : notMeasured(logTarget, 'log', figures));

  const monitorTarget = `monitors <= ${TARGET_MONITOR_US} µs/decision on the request path`;
  const m = figures.monitor;
  if (m) rows.push({ target: monitorTarget, figure: `${m.worker.mainThreadUs.toFixed(2)} µs`, baseline: `inline ${m.inline.mainThreadUs.toFixed(2)} µs`, ratio: `${f2(m.worker.mainThreadUs / TARGET_MONITOR_US)}x of target`, verdict: met(m.worker.mainThreadUs <= TARGET_MONITOR_US) });
  else rows.push(notMeasured(monitorTarget, 'monitor', figures));
  return rows;
}

/** Under the table: for each throughput target missed, the CPU it leaves rtml per decision on this machine. */
function budgetNotes(figures: TargetFigures): string[] {
  const notes: string[] = [];
  const v = figures.log?.find((x) => x.name === LOG_TARGET_VARIANT);
  const cost = figures.log ? commitCostFit(figures.log) : null;
  if (v?.rate && cost && v.cpuUsPerAppend > TARGET_LOG_CPU_US) notes.push(`log CPU: ${commitCostLine(cost, v.rate, 5)}`);
  const h = figures.http;
  if (!h) return notes;
  if (!h.targets.throughputRatio.pass) notes.push(budgetLine('0.4x bare', h.budget.throughput));
  if (h.budget.overFastapi && !h.targets.overFastapi.pass) notes.push(budgetLine('10x FastAPI', h.budget.overFastapi));
  if (!h.targets.halfLoadP99Ms.pass) {
    const stages = h.halfLoad.stages;
    notes.push(
      `p99 at half load: the bare route paced at the same rate has p99 ${f2(h.halfLoad.bare.median.p99)} ms with this client; rtml's server stages p99: log ${f2(stages.log?.p99 ?? NaN)} ms, ` +
        `pipeline total ${f2(stages.total?.p99 ?? NaN)} ms; outside the pipeline ${f2(h.halfLoad.outsidePipeline.p99)} ms`,
    );
  }
  return notes;
}

export function formatTargets(figures: TargetFigures): string {
  const head: Row = { target: 'target (issue 14)', figure: 'rtml', baseline: 'baseline', ratio: 'ratio', verdict: '' };
  const rows = [head, ...targetRows(figures)];
  const keys = ['target', 'figure', 'baseline', 'ratio', 'verdict'] as const;
  const widths = keys.map((k) => Math.max(...rows.map((r) => r[k].length)));
  const table = rows.map((r) => keys.map((k, i) => (i === 0 || i === 4 ? r[k].padEnd(widths[i]) : r[k].padStart(widths[i]))).join('  ').trimEnd());
  return [...table, ...budgetNotes(figures).map((n) => `- ${n}`)].join('\n');
}
