/**
 * Decision log micro-benchmark: appends/s and append latency (call → promise resolved, i.e.
 * the moment the server could answer 2xx) for the SQLite adapter, group commit vs one
 * transaction per record, synchronous NORMAL vs FULL, with many appends in flight as a busy
 * server has. The database lives under RTML_BENCH_DIR or the OS temp dir: put that on the
 * disk production uses, fsync cost is the whole story for FULL.
 *
 * Closed-loop variants keep N appends in flight (each awaits, then appends again). Paced
 * variants are open loop, as a server's traffic is: appends are due on a fixed schedule at a
 * rate, each after `workUs` of busy main-thread work standing for the rest of a request
 * (HTTP, validation, model), and latency counts from the due time, so a stall of the main
 * thread shows in full. `loop p99` is the main thread's event-loop delay (perf_hooks
 * monitorEventLoopDelay sampling every 1 ms, so 1 ms means no delay): what the log costs
 * every other request the server is handling at the same time.
 *
 * The PostgreSQL log (src/log/postgres.ts) runs the paced variants too, against
 * RTML_BENCH_POSTGRES_URL or else a throwaway local cluster (test/helpers/postgres-server.ts;
 * skipped when PostgreSQL is not installed). `cpu µs` is this process's CPU time per append (all
 * threads, the variant's busy work excluded): what the log costs the server's cores, then the
 * ratio to issue 14's target (LOG_CPU_TARGET_US) and the split by thread (main / writer /
 * checkpointer / other: V8's GC helpers and libuv's pool; Linux only). A second
 * table compares the two ways of handing PostgreSQL a batch: one JSON array of row tuples taken
 * apart by json_array_elements and `->` per column, one JSON array of objects keyed by column taken
 * apart by json_to_recordset (what the log does), or one array parameter per column and unnest.
 *
 *   node --import tsx bench/log.ts            # prints every variant
 *   import { benchDecisionLog } from './log.ts'  // the bench runner: the default config's figures
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
import { INSERT_DECISIONS, openPostgresDecisionLog, POSTGRES_LOG_COMPONENT, POSTGRES_LOG_MIGRATIONS } from '../src/log/postgres.ts';
import { recordObjectText, recordTupleText } from '../src/log/record.ts';
import { COLUMNS } from '../src/log/sqlite-schema.ts';
import { openSqliteDecisionLog, type SqliteDecisionLogOptions } from '../src/log/sqlite.ts';
import type { DecisionLog, DecisionRecordToAppend } from '../src/log/types.ts';
import { migrate, openPool } from '../src/store/postgres.ts';
import { findPostgresBin, startPostgres } from '../test/helpers/postgres-server.ts';

export interface LogBenchResult {
  appendsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

export interface LogBenchVariant extends LogBenchResult {
  name: string;
  options: SqliteDecisionLogOptions;
  /** Appends in flight at once (closed loop); 0 for paced variants. */
  concurrency: number;
  /** Paced (open loop) variants: appends due per second, and busy main-thread work before each. */
  rate?: number;
  workUs?: number;
  appends: number;
  /** Mean records per transaction. */
  meanBatch: number;
  /** Main-thread event-loop delay while appending, ms (1 ms sampling interval included). */
  loopP99Ms: number;
  loopMaxMs: number;
  /** This process's CPU time per append, µs (every thread; the variant's busy work excluded). */
  cpuUsPerAppend: number;
  /** The same by thread (Linux /proc, 10 ms ticks; the busy work excluded from `main`): null elsewhere. */
  threadUsPerAppend: ThreadCpu | null;
}

/** The CPU target of issue 14 for the log: µs per decision, every thread, synchronous FULL. */
export const LOG_CPU_TARGET_US = 20;

/**
 * What a commit costs and what a record costs, apart: a least-squares line through the SQLite
 * FULL variants' points (1 / records per commit, CPU per append), whose slope is the CPU of one
 * commit (BEGIN, page writes, the fsync's kernel time, the messages and wake-ups around it) and
 * whose intercept is the CPU of one record. From them, the least CPU per decision possible at a
 * rate when every decision must be answered within a latency budget: a commit can then gather
 * at most the decisions arriving within that budget.
 */
export interface CommitCost {
  perCommitUs: number;
  perRecordUs: number;
  /** Variants fitted, and the fit's R². */
  points: number;
  r2: number;
}

export function commitCostFit(variants: readonly LogBenchVariant[]): CommitCost | null {
  const points = variants
    .filter((v) => !v.name.startsWith('postgres') && (v.options.synchronous ?? 'full') === 'full' && v.meanBatch >= 1)
    .map((v) => ({ x: 1 / v.meanBatch, y: v.cpuUsPerAppend }));
  if (points.length < 3) return null;
  const n = points.length;
  const mx = points.reduce((a, p) => a + p.x, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  const sxx = points.reduce((a, p) => a + (p.x - mx) ** 2, 0);
  const sxy = points.reduce((a, p) => a + (p.x - mx) * (p.y - my), 0);
  const syy = points.reduce((a, p) => a + (p.y - my) ** 2, 0);
  if (sxx === 0) return null;
  const slope = sxy / sxx;
  return { perCommitUs: slope, perRecordUs: my - slope * mx, points: n, r2: syy === 0 ? 1 : (sxy * sxy) / (sxx * syy) };
}

/** The least log CPU per decision at `rate`/s if no decision may wait more than `budgetMs` for its commit. */
export function logCpuFloorUs(cost: CommitCost, rate: number, budgetMs: number): number {
  return cost.perRecordUs + cost.perCommitUs / Math.max(1, (rate * budgetMs) / 1000);
}

/** The fit and the floor it implies at a paced variant's rate, in words. */
export function commitCostLine(cost: CommitCost, rate: number, budgetMs: number): string {
  return (
    `SQLite FULL, fitted over ${cost.points} variants (R² ${cost.r2.toFixed(2)}): ${cost.perCommitUs.toFixed(0)} µs per commit + ${cost.perRecordUs.toFixed(1)} µs per record; ` +
    `at ${rate.toLocaleString('en-US')}/s with every decision committed within ${budgetMs} ms (at most ${Math.round((rate * budgetMs) / 1000)} records a commit), ` +
    `the log needs at least ${logCpuFloorUs(cost, rate, budgetMs).toFixed(1)} µs per decision`
  );
}

/** CPU time by thread: the main thread, the log's writer and checkpointer threads (they name themselves), and the rest (V8's GC helpers, libuv's pool). */
interface ThreadCpu {
  main: number;
  writer: number;
  checkpointer: number;
  other: number;
}

/** This process's CPU time so far by thread, in µs (from /proc; null where there is none). */
function threadCpu(): ThreadCpu | null {
  const out: ThreadCpu = { main: 0, writer: 0, checkpointer: 0, other: 0 };
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return null;
  }
  for (const tid of tids) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const us = (Number(fields[11]) + Number(fields[12])) * 10_000; // utime + stime, in clock ticks of 10 ms (USER_HZ 100)
    const key = Number(tid) === process.pid ? 'main' : name === 'rtml-log-writer' ? 'writer' : name === 'rtml-log-ckpt' ? 'checkpointer' : 'other';
    out[key] += us;
  }
  return out;
}

interface VariantSpec {
  name: string;
  options: SqliteDecisionLogOptions;
  /** Run against the PostgreSQL log at this URL instead of SQLite. */
  postgresUrl?: string;
  concurrency: number;
  rate?: number;
  workUs?: number;
}

/** A record shaped like a credit decision: a 20-field request, a 30-wide input vector (a Float32Array, NaN for missing, as the pipeline's encoder gives it). */
function makeRecord(i: number): DecisionRecordToAppend {
  const request: Record<string, unknown> = { applicant: `a-${i}`, term: 'term_36', purpose: 'debt_consolidation', emp_length: null };
  for (let k = 0; k < 16; k++) request[`f${k}`] = (i * 7919 + k * 104729) % 100000 / 100;
  const inputs = new Float32Array(30);
  for (let k = 0; k < 30; k++) inputs[k] = k % 11 === 3 ? NaN : ((i + k) % 997) / 7;
  const score = (i % 1000) / 1000;
  return {
    id: `d-${i}`,
    time: new Date().toISOString(),
    service: 'credit',
    model: { name: 'credit', version: '3' },
    policyVersion: 'p-7',
    request,
    inputs,
    outputs: { p_bad: score, p_good: 1 - score },
    score,
    decision: score > 0.7 ? 'decline' : score > 0.4 ? 'review' : 'approve',
    reasons: [
      { code: 'score_band', message: `score ${score.toFixed(3)} in band` },
      { code: 'policy', message: 'standard policy' },
    ],
    fallback: { used: false, cause: null },
    timingsMs: { validation: 0.02, features: 0.01, model: 0.05, policy: 0.01, log: 0, total: 0.1 },
  };
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

/** Busy main-thread work: stands for the rest of a request. */
function spin(us: number): void {
  const until = performance.now() + us / 1000;
  while (performance.now() < until);
}

/**
 * Closed loop: `concurrency` workers each append, await, repeat, until `durationMs` or
 * `maxAppends`. Paced (`rate`): appends due every 1/rate s, issued by a 1 ms timer loop.
 */
async function runVariant(spec: VariantSpec, durationMs: number, maxAppends: number): Promise<LogBenchVariant> {
  const dir = mkdtempSync(join(process.env.RTML_BENCH_DIR ?? tmpdir(), 'rtml-bench-log-'));
  const log: DecisionLog = spec.postgresUrl ? await openPostgresDecisionLog(spec.postgresUrl) : openSqliteDecisionLog(dir, spec.options);
  try {
    // Warm-up: statement caches, file growth, the JIT on every thread that runs the log, and
    // the start of the log's threads where it has some (measured from a running server's state).
    for (let round = 0; round < 32; round++) {
      await Promise.all(Array.from({ length: 64 }, (_, i) => log.append({ ...makeRecord(i), id: `warm-${round}-${i}` })));
    }
    await new Promise((settle) => setTimeout(settle, 200));
    const commits0 = log.stats.commits;
    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    const cpu0 = process.cpuUsage();
    const threads0 = threadCpu();
    const latencies = new Float64Array(spec.rate ? Math.ceil((spec.rate * durationMs) / 1000) : maxAppends);
    let next = 0;
    const start = performance.now();
    if (spec.rate) {
      const rate = spec.rate;
      const total = latencies.length;
      await new Promise<void>((finish, fail) => {
        let done = 0;
        const tick = () => {
          const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
          while (next < due) {
            const i = next++;
            const dueAt = start + (i * 1000) / rate;
            spin(spec.workUs ?? 0);
            log.append(makeRecord(i)).then(() => {
              latencies[i] = performance.now() - dueAt;
              if (++done === total) finish();
            }, fail);
          }
          if (next < total) setTimeout(tick, 1);
        };
        tick();
      });
    } else {
      const deadline = start + durationMs;
      async function worker(): Promise<void> {
        while (next < maxAppends && performance.now() < deadline) {
          const i = next++;
          const record = makeRecord(i);
          const t0 = performance.now();
          await log.append(record);
          latencies[i] = performance.now() - t0;
        }
      }
      await Promise.all(Array.from({ length: spec.concurrency }, worker));
    }
    const elapsed = performance.now() - start;
    const cpu = process.cpuUsage(cpu0);
    const threads1 = threadCpu();
    loop.disable();
    const done = latencies.subarray(0, next).sort();
    const commits = log.stats.commits - commits0;
    return {
      name: spec.name,
      options: spec.options,
      concurrency: spec.concurrency,
      ...(spec.rate ? { rate: spec.rate, workUs: spec.workUs ?? 0 } : {}),
      appends: next,
      appendsPerSec: Math.round((next / elapsed) * 1000),
      p50Ms: percentile(done, 0.5),
      p99Ms: percentile(done, 0.99),
      meanBatch: commits ? next / commits : 0,
      loopP99Ms: loop.percentile(99) / 1e6,
      loopMaxMs: loop.max / 1e6,
      cpuUsPerAppend: next ? (cpu.user + cpu.system) / next - (spec.workUs ?? 0) : 0,
      threadUsPerAppend:
        threads0 && threads1 && next
          ? {
              main: (threads1.main - threads0.main) / next - (spec.workUs ?? 0),
              writer: (threads1.writer - threads0.writer) / next,
              checkpointer: (threads1.checkpointer - threads0.checkpointer) / next,
              other: (threads1.other - threads0.other) / next,
            }
          : null,
    };
  } finally {
    await log.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export const LOG_BENCH_VARIANTS: VariantSpec[] = [
  { name: 'group commit, full (default)', options: {}, concurrency: 64 },
  { name: 'group commit, normal', options: { synchronous: 'normal' }, concurrency: 64 },
  { name: 'group commit 2ms timer, full', options: { maxDelayMs: 2 }, concurrency: 64 },
  { name: 'group commit 2ms timer, normal', options: { synchronous: 'normal', maxDelayMs: 2 }, concurrency: 64 },
  { name: 'per-record commit, full', options: { maxBatch: 1 }, concurrency: 64 },
  { name: 'per-record commit, normal', options: { synchronous: 'normal', maxBatch: 1 }, concurrency: 64 },
  { name: 'group commit, full, 512 in flight', options: {}, concurrency: 512 },
  { name: 'group commit, normal, 512 in flight', options: { synchronous: 'normal' }, concurrency: 512 },
  { name: 'one in flight, full', options: {}, concurrency: 1 },
  { name: 'one in flight, normal', options: { synchronous: 'normal' }, concurrency: 1 },
  { name: 'paced 5,000/s + 80 µs work, full', options: {}, concurrency: 0, rate: 5000, workUs: 80 },
  { name: 'paced 5,000/s + 80 µs work, normal', options: { synchronous: 'normal' }, concurrency: 0, rate: 5000, workUs: 80 },
  { name: 'paced 10,000/s + 40 µs work, full', options: {}, concurrency: 0, rate: 10000, workUs: 40 },
];

/** The PostgreSQL log's variants (one database, fresh tables per variant). */
function postgresVariants(url: string): VariantSpec[] {
  return [
    { name: 'postgres: paced 3,000/s', options: {}, postgresUrl: url, concurrency: 0, rate: 3000 },
    { name: 'postgres: paced 3,000/s + 80 µs work', options: {}, postgresUrl: url, concurrency: 0, rate: 3000, workUs: 80 },
    { name: 'postgres: 64 in flight', options: {}, postgresUrl: url, concurrency: 64 },
    { name: 'postgres: one in flight', options: {}, postgresUrl: url, concurrency: 1 },
  ];
}

/** RTML_BENCH_POSTGRES_URL, or a throwaway cluster (null when PostgreSQL is not installed). */
async function benchPostgres(): Promise<{ url: string; stop(): Promise<void> } | null> {
  if (process.env.RTML_BENCH_POSTGRES_URL) return { url: process.env.RTML_BENCH_POSTGRES_URL, stop: async () => {} };
  try {
    findPostgresBin();
  } catch {
    return null;
  }
  return startPostgres();
}

/** Empties the log's tables between variants, so that each starts from the same state. */
async function resetPostgres(url: string): Promise<void> {
  const pool = openPool(url, { max: 1 });
  try {
    await migrate(pool, POSTGRES_LOG_COMPONENT, POSTGRES_LOG_MIGRATIONS);
    await pool.query('TRUNCATE decisions, outcomes');
  } finally {
    await pool.end();
  }
}

/** Every variant, in order (the PostgreSQL ones where PostgreSQL is available). */
export async function benchDecisionLogVariants(durationMs = 2000, maxAppends = 1_000_000, only?: string): Promise<LogBenchVariant[]> {
  const out: LogBenchVariant[] = [];
  for (const spec of LOG_BENCH_VARIANTS) if (!only || spec.name.includes(only)) out.push(await runVariant(spec, durationMs, maxAppends));
  const postgres = !only || postgresVariants('').some((v) => v.name.includes(only)) ? await benchPostgres() : null;
  if (postgres) {
    try {
      for (const spec of postgresVariants(postgres.url)) {
        if (only && !spec.name.includes(only)) continue;
        await resetPostgres(postgres.url);
        out.push(await runVariant(spec, durationMs, maxAppends));
      }
    } finally {
      await postgres.stop();
    }
  }
  return out;
}

export interface InsertFormResult {
  form: string;
  /** Main-thread time to build a batch's parameters (pg's own serialization included), µs per record. */
  prepareUsPerRecord: number;
  /** Round trip of the batch's INSERT (committed), ms per batch. */
  statementMs: number;
}

/**
 * The two ways of handing PostgreSQL a batch of `batch` records, each timed over `rounds`
 * batches: building the parameters as pg sends them (its array literal escaping included), and
 * the committed INSERT. Both use the log's table and validation (record.ts).
 */
export async function benchInsertForms(url: string, batch = 256, rounds = 40): Promise<InsertFormResult[]> {
  await resetPostgres(url);
  const pool = openPool(url, { max: 1 });
  // pg's own parameter serialization (what pool.query does to each value before sending it).
  const { prepareValue: serialize } = createRequire(import.meta.url)('pg/lib/utils.js') as { prepareValue: (v: unknown) => unknown };
  const columns = COLUMNS.split(', ');
  const jsonColumn = (i: number) => i >= 11;
  const tupleJson = (i: number) => `CASE WHEN json_typeof(e->${i}) = 'null' THEN NULL ELSE e->${i} END`;
  const unnestSql = `INSERT INTO decisions (${COLUMNS}) SELECT * FROM unnest(${columns
    .map((_, i) => `$${i + 1}::${i === 7 ? 'float8' : i === 8 || i === 10 ? 'bool' : jsonColumn(i) ? 'json' : 'text'}[]`)
    .join(', ')}) ON CONFLICT (service, id) DO NOTHING RETURNING service, id`;
  const forms: { form: string; prepare: (records: DecisionRecordToAppend[]) => unknown[]; sql: string }[] = [
    {
      form: 'tuples, json_array_elements',
      sql: `INSERT INTO decisions (${COLUMNS})
        SELECT e->>0, e->>1, e->>2, e->>3, e->>4, e->>5, e->>6, (e->>7)::float8, e->>8 = '1', e->>9, CASE e->>10 WHEN '1' THEN true WHEN '0' THEN false END,
          e->11, ${tupleJson(12)}, ${tupleJson(13)}, e->14, e->15, ${tupleJson(16)}, ${tupleJson(17)}
        FROM json_array_elements($1::json) AS t(e) ON CONFLICT (service, id) DO NOTHING RETURNING service, id`,
      prepare: (records) => {
        let text = '[';
        for (let i = 0; i < records.length; i++) text += (i ? ',' : '') + recordTupleText(records[i], 'values');
        return [text + ']'];
      },
    },
    {
      form: 'objects, json_to_recordset (the log)',
      sql: INSERT_DECISIONS,
      prepare: (records) => {
        let text = '[';
        for (let i = 0; i < records.length; i++) text += (i ? ',' : '') + recordObjectText(records[i]);
        return [text + ']'];
      },
    },
    {
      form: 'an array per column, unnest',
      sql: unnestSql,
      prepare: (records) => {
        const cols: unknown[][] = columns.map(() => []);
        for (const r of records) {
          recordTupleText(r, 'values'); // the same validation (and its stringify): what the log would still run
          const row = [r.service, r.id, r.time, r.decision, r.model?.name ?? null, r.model?.version ?? null, r.policyVersion, r.score, r.fallback.used, r.fallback.cause, r.safeMode ?? null];
          for (let c = 0; c < row.length; c++) cols[c].push(row[c]);
          const json = [r.request ?? null, r.inputs instanceof Float32Array ? Array.from(r.inputs) : r.inputs, r.outputs, r.reasons, r.timingsMs, r.features ?? null, r.explanation ?? null];
          for (let c = 0; c < json.length; c++) cols[11 + c].push(c === 0 || json[c] !== null ? JSON.stringify(json[c]) : null);
        }
        return cols;
      },
    },
  ];
  const out: InsertFormResult[] = [];
  try {
    let n = 0;
    for (const { form, prepare, sql } of forms) {
      await pool.query('TRUNCATE decisions');
      let prepareMs = 0;
      let statementMs = 0;
      for (let round = 0; round < rounds + 5; round++) {
        const records = Array.from({ length: batch }, () => makeRecord(n++));
        const t0 = performance.now();
        const params = prepare(records).map(serialize);
        const t1 = performance.now();
        await pool.query(sql, params);
        const t2 = performance.now();
        if (round >= 5) {
          // the first rounds warm the JIT and the connection
          prepareMs += t1 - t0;
          statementMs += t2 - t1;
        }
      }
      out.push({ form, prepareUsPerRecord: (prepareMs * 1000) / (rounds * batch), statementMs: statementMs / rounds });
    }
  } finally {
    await pool.end();
  }
  return out;
}

/** The default configuration (group commit, synchronous FULL, 64 appends in flight). */
export async function benchDecisionLog(durationMs = 2000): Promise<LogBenchResult & { variant: LogBenchVariant }> {
  const variant = await runVariant(LOG_BENCH_VARIANTS[0], durationMs, 1_000_000);
  return { appendsPerSec: variant.appendsPerSec, p50Ms: variant.p50Ms, p99Ms: variant.p99Ms, variant };
}

export function formatLogBench(variants: LogBenchVariant[]): string {
  const rows = variants.map((v) => [
    v.name,
    v.rate ? 'paced' : String(v.concurrency),
    v.appendsPerSec.toLocaleString('en-US'),
    v.p50Ms.toFixed(3),
    v.p99Ms.toFixed(3),
    v.meanBatch.toFixed(1),
    v.loopP99Ms.toFixed(2),
    v.loopMaxMs.toFixed(2),
    v.cpuUsPerAppend.toFixed(1),
    (v.cpuUsPerAppend / LOG_CPU_TARGET_US).toFixed(2),
    v.threadUsPerAppend ? [v.threadUsPerAppend.main, v.threadUsPerAppend.writer, v.threadUsPerAppend.checkpointer, v.threadUsPerAppend.other].map((us) => us.toFixed(1)).join(' / ') : '-',
  ]);
  const head = ['variant', 'in flight', 'appends/s', 'p50 ms', 'p99 ms', 'records/commit', 'loop p99 ms', 'loop max ms', 'cpu µs', `x ${LOG_CPU_TARGET_US} µs`, 'main/writer/ckpt/other µs'];
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (r: string[]) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ');
  const target = variants.find((v) => v.name === LOG_BENCH_VARIANTS[0].name);
  const cost = commitCostFit(variants);
  const paced = LOG_BENCH_VARIANTS.find((v) => v.rate && (v.options.synchronous ?? 'full') === 'full');
  const fit = cost && paced?.rate ? [commitCostLine(cost, paced.rate, 5)] : [];
  const verdict = target
    ? [
        `\nlog CPU per decision, every thread, ${target.name}: ${target.cpuUsPerAppend.toFixed(1)} µs = ${(target.cpuUsPerAppend / LOG_CPU_TARGET_US).toFixed(2)}x the ${LOG_CPU_TARGET_US} µs target ` +
          '(the bench loop building each record on the main thread included)',
      ]
    : [];
  return [line(head), ...rows.map(line), ...verdict, ...fit].join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const durationMs = Number(process.env.RTML_BENCH_MS ?? 2000);
  const only = process.env.RTML_BENCH_ONLY; // a substring of the variant names to run
  console.log(formatLogBench(await benchDecisionLogVariants(durationMs, 1_000_000, only)));
  if (!only || only.includes('postgres')) {
    const postgres = await benchPostgres();
    if (postgres) {
      try {
        for (const r of await benchInsertForms(postgres.url)) console.log(`${r.form}: ${r.prepareUsPerRecord.toFixed(1)} µs/record to prepare, ${r.statementMs.toFixed(2)} ms per 256-record INSERT`);
      } finally {
        await postgres.stop();
      }
    }
  }
}
