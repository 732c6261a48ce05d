/**
 * Decisions per second on this machine: one `rtml serve` process against `--workers 2`, and
 * the SQLite decision log against the PostgreSQL one, measured in the same run so their ratios
 * can be compared (the machine may be shared: absolute figures drift, ratios less so).
 *
 *     node --import tsx bench/fleet.ts [--reps N] [--duration S] [--warmup S] [--connections C] [--quick] [--json FILE]
 *
 * or `npm run bench -- --only fleet`.
 *
 * Targets, each a real `rtml serve` on a temporary copy of examples/credit (`--log-level warn`,
 * `--log-sync full`, the default):
 *   - `sqlite, 1 process`: the embedded default (SQLite under --data-dir);
 *   - `postgres, 1 process` and `postgres, 2 workers` (`--decision-log postgres://...`, a
 *     throwaway PostgreSQL from test/helpers/postgres-server.ts): only in a build with the
 *     PostgreSQL decision log (src/log/postgres.ts), else reported as skipped;
 *   - SQLite with 2 workers does not exist: `rtml serve` refuses several workers without the
 *     shared log (see src/cli/workers.ts).
 *
 * Load: wrk (C, one thread, C keep-alive connections; far cheaper per request than a Node
 * client, so more of the 2 cores is left to the servers), closed loop, saturation: a warm-up,
 * then a timed run, the targets interleaved within each repetition; medians over repetitions.
 * Bodies are real lending_club rows (Class removed), those the server answers 200 with a model
 * decision, each request with a unique id (a new decision log row). With several workers the
 * cluster hands connections out round-robin: C connections are spread over them.
 * Reported per target: decisions/s (2xx), wrk's latency p50/p99, non-2xx and socket errors,
 * CPU (cores) of the server's process tree, of PostgreSQL's processes and of wrk; each log's row count is checked against
 * the 2xx answers.
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DECISIONS_PATH, endReport, loadRows, parseBenchArgs, preflight, processCpuS, sleep, startRtml, type ServerProcess } from './http.ts';
import { median } from './common.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const WRK = '/usr/bin/wrk';
const POSTGRES_LOG_SOURCE = join(ROOT, 'src', 'log', 'postgres.ts');

export interface FleetBenchOptions {
  /** Repetitions; figures are medians (default 3). */
  reps: number;
  /** Timed seconds per run (default 7). */
  durationS: number;
  /** Warm-up seconds before each timed run (default 2). */
  warmupS: number;
  /** wrk's keep-alive connections (default 32). */
  connections: number;
  /** Distinct lending_club rows used as bodies (default 2000). */
  rows: number;
  log: (msg: string) => void;
}

export interface WrkRun {
  /** 2xx answers per second. */
  rps: number;
  requests: number;
  ok: number;
  non2xx: number;
  /** connect + read + write errors and timeouts. */
  errors: number;
  durationS: number;
  /** wrk's latency percentiles, ms. */
  p50: number;
  p99: number;
  /** Cores used over the run: the server's process tree (the primary and its workers), and wrk. */
  serverCores: number;
  clientCores: number;
  /** The PostgreSQL cluster's processes (postmaster and backends), for the targets that use it; 0 otherwise. */
  databaseCores: number;
}

export interface TargetResult {
  name: string;
  log: 'sqlite' | 'postgres';
  workers: number;
  /** Why the target was not measured; null when it was. */
  skipped: string | null;
  runs: WrkRun[];
  median: { rps: number; p50: number; p99: number; serverCores: number; clientCores: number; databaseCores: number; non2xx: number; errors: number } | null;
  /** Rows in the log after the runs, against the 2xx answers (the PostgreSQL targets share one database: checked together). */
  logRows: { rows: number; answered2xx: number; ok: boolean } | null;
}

export interface FleetBenchResult {
  config: Omit<FleetBenchOptions, 'log'> & { client: string };
  machine: { cpus: number; model: string; node: string; loadavgBefore: number[]; loadavgAfter: number[] };
  rowsUsed: number;
  targets: TargetResult[];
  /** Throughput ratios, each the median of per-repetition ratios (null while a side is skipped). */
  ratios: { twoWorkersOverOne: number | null; postgresOverSqlite: number | null; twoWorkersPostgresOverSqlite: number | null };
  problems: string[];
  wallS: number;
}

interface Target {
  result: TargetResult;
  server: ServerProcess | null;
}

/** wrk's script: unique ids (prefix, thread, counter) on cycled rows; prints a JSON summary at the end. */
const WRK_SCRIPT = `
local rows, prefix, counter, offset, threads = {}, "", 0, 0, {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  for line in io.lines(args[1]) do table.insert(rows, line) end
  prefix = args[2] .. "-" .. tostring(tid) .. "-"
  offset = (tid * 7919) % #rows
end
function request()
  counter = counter + 1
  local row = rows[((offset + counter) % #rows) + 1]
  local body = '{"id":"' .. prefix .. counter .. '",' .. string.sub(row, 2)
  return wrk.format("POST", nil, { ["content-type"] = "application/json" }, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_RESULT {"requests":%d,"duration_us":%d,"non2xx":%d,"errors":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
`;

/** The pids of `pid` and its descendants (the cluster primary and its workers). */
function processTree(pid: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // exited meanwhile
    }
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) for (const [child, parent] of parents) if (parent === tree[i]) tree.push(child);
  return tree;
}

const treeCpuS = (pids: readonly number[]) => pids.reduce((sum, pid) => sum + (processCpuS(pid) || 0), 0);

/** Pid (x-rtml-pid) answering a request on a connection of its own. */
function answeringPid(url: string): Promise<number> {
  return new Promise((done, fail) => {
    const req = request(`${url}/v2/health/ready`, { agent: false, headers: { connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => done(Number(res.headers['x-rtml-pid'])));
    });
    req.on('error', fail);
    req.end();
  });
}

/** Waits until `workers` distinct processes answer (the first ready worker answers before the others have loaded). */
async function waitForWorkers(url: string, workers: number, timeoutMs = 60_000): Promise<void> {
  const seen = new Set<number>();
  const deadline = performance.now() + timeoutMs;
  while (seen.size < workers) {
    if (performance.now() > deadline) throw new Error(`only ${seen.size} of ${workers} workers answered within ${timeoutMs / 1000} s`);
    seen.add(await answeringPid(url).catch(() => 0));
    seen.delete(0);
    if (seen.size < workers) await sleep(50);
  }
}

function runWrk(server: ServerProcess, rowsFile: string, prefix: string, connections: number, durationS: number, databasePid: number | null): Promise<WrkRun> {
  const pids = processTree(server.child.pid!);
  const cpu0 = treeCpuS(pids);
  // The pool's backends live as long as the server's connections: the tree taken now is the run's.
  const dbPids = databasePid === null ? [] : processTree(databasePid);
  const db0 = treeCpuS(dbPids);
  const t0 = performance.now();
  const child = spawn(WRK, ['-t1', `-c${connections}`, `-d${durationS}s`, '--timeout', '10s', '-s', join(dirname(rowsFile), 'fleet.lua'), server.url + DECISIONS_PATH, '--', rowsFile, prefix], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  // wrk's CPU is read while it still runs (after exit /proc forgets it): the last sample counts.
  let clientCpu = { s: 0, at: t0 };
  const sampler = setInterval(() => {
    const s = processCpuS(child.pid);
    if (Number.isFinite(s)) clientCpu = { s, at: performance.now() };
  }, 250);
  return new Promise((done, fail) => {
    child.on('error', fail);
    child.on('exit', (code) => {
      clearInterval(sampler);
      const wall = (performance.now() - t0) / 1000;
      const serverCpu = treeCpuS(pids) - cpu0;
      const databaseCpu = treeCpuS(dbPids) - db0;
      const line = out.split('\n').find((l) => l.startsWith('WRK_RESULT '));
      if (code !== 0 || !line) return fail(new Error(`wrk exited ${code}:\n${out.slice(-2000)}`));
      const r = JSON.parse(line.slice('WRK_RESULT '.length)) as { requests: number; duration_us: number; non2xx: number; errors: number; p50_us: number; p99_us: number };
      const durationS = r.duration_us / 1e6;
      const ok = r.requests - r.non2xx;
      server.answered2xx += ok;
      done({
        rps: ok / durationS,
        requests: r.requests,
        ok,
        non2xx: r.non2xx,
        errors: r.errors,
        durationS,
        p50: r.p50_us / 1000,
        p99: r.p99_us / 1000,
        serverCores: serverCpu / wall,
        databaseCores: databaseCpu / wall,
        clientCores: clientCpu.s / Math.max(0.001, (clientCpu.at - t0) / 1000),
      });
    });
  });
}

function summarize(runs: readonly WrkRun[]): NonNullable<TargetResult['median']> {
  return {
    rps: median(runs.map((r) => r.rps)),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    serverCores: median(runs.map((r) => r.serverCores)),
    clientCores: median(runs.map((r) => r.clientCores)),
    databaseCores: median(runs.map((r) => r.databaseCores)),
    non2xx: runs.reduce((a, r) => a + r.non2xx, 0),
    errors: runs.reduce((a, r) => a + r.errors, 0),
  };
}

/** Median over repetitions of a/b throughput, where both were measured. */
function ratioOf(a: TargetResult, b: TargetResult): number | null {
  if (a.skipped || b.skipped || a.runs.length === 0 || a.runs.length !== b.runs.length) return null;
  return median(a.runs.map((r, i) => r.rps / b.runs[i].rps));
}

export async function benchFleet(options: Partial<FleetBenchOptions> = {}): Promise<FleetBenchResult> {
  const opts: FleetBenchOptions = { reps: 3, durationS: 7, warmupS: 2, connections: 32, rows: 2000, log: (msg) => process.stderr.write(`[fleet] ${msg}\n`), ...options };
  const t0 = performance.now();
  const loadavgBefore = loadavg();
  const problems: string[] = [];
  // The targets say which log and how many workers; the environment must not.
  delete process.env.RTML_DECISION_LOG;
  delete process.env.RTML_WORKERS;
  if (!existsSync(WRK)) throw new Error(`${WRK} not found: the fleet bench drives the servers with wrk (apt-get install wrk)`);
  const work = mkdtempSync(join(tmpdir(), 'rtml-bench-fleet-'));
  writeFileSync(join(work, 'fleet.lua'), WRK_SCRIPT);
  const noPostgresLog = existsSync(POSTGRES_LOG_SOURCE) ? null : 'skipped: no PostgreSQL decision log in this build';
  const target = (name: string, log: TargetResult['log'], workers: number, skipped: string | null): Target => ({ result: { name, log, workers, skipped, runs: [], median: null, logRows: null }, server: null });
  const targets: Target[] = [target('sqlite, 1 process', 'sqlite', 1, null), target('postgres, 1 process', 'postgres', 1, noPostgresLog), target('postgres, 2 workers', 'postgres', 2, noPostgresLog)];
  let stopPostgres: (() => Promise<void>) | null = null;
  let rowsUsed = 0;
  try {
    let postgresUrl: string | null = null;
    let postgresPid: number | null = null;
    if (!noPostgresLog) {
      const { startPostgres } = await import('../test/helpers/postgres-server.ts');
      const pg = await startPostgres();
      stopPostgres = () => pg.stop();
      postgresUrl = pg.url;
      postgresPid = pg.pid;
      opts.log(`PostgreSQL ${pg.url}`);
    }
    for (const t of targets) {
      if (t.result.skipped) continue;
      const args = t.result.log === 'postgres' ? ['--decision-log', postgresUrl!] : [];
      if (t.result.workers > 1) args.push('--workers', String(t.result.workers));
      t.server = await startRtml(work, t.result.name, 'full', [], args);
      if (t.result.workers > 1) await waitForWorkers(t.server.url, t.result.workers);
      opts.log(`${t.result.name}: ${t.server.url}`);
    }
    const first = targets.find((t) => t.server)!.server!;
    const rows = await preflight(first, loadRows(opts.rows), problems);
    if (rows.length === 0) throw new Error('no lending_club row was answered 200 with a model decision');
    rowsUsed = rows.length;
    const rowsFile = join(work, 'rows.jsonl');
    writeFileSync(rowsFile, rows.join('\n') + '\n');

    for (let rep = 0; rep < opts.reps; rep++) {
      for (const t of targets) {
        if (!t.server) continue;
        const tag = `${t.result.name.replace(/\W+/g, '')}-r${rep}`;
        const dbPid = t.result.log === 'postgres' ? postgresPid : null;
        await runWrk(t.server, rowsFile, `${tag}-warm`, opts.connections, opts.warmupS, dbPid);
        const run = await runWrk(t.server, rowsFile, tag, opts.connections, opts.durationS, dbPid);
        t.result.runs.push(run);
        if (run.non2xx > 0 || run.errors > 0) problems.push(`${t.result.name} rep ${rep + 1}: ${run.non2xx} non-2xx answers, ${run.errors} socket errors`);
        opts.log(`rep ${rep + 1}/${opts.reps} ${t.result.name.padEnd(20)} ${run.rps.toFixed(0)} decisions/s  p50 ${run.p50.toFixed(2)} ms  p99 ${run.p99.toFixed(2)} ms  server ${run.serverCores.toFixed(2)} cores, postgres ${run.databaseCores.toFixed(2)}, wrk ${run.clientCores.toFixed(2)}`);
      }
    }
    for (const t of targets) {
      if (!t.server) continue;
      t.result.median = summarize(t.result.runs);
      const code = await t.server.stop();
      if (code !== 0) problems.push(`${t.result.name} exited with ${code} on SIGTERM`);
      if (t.result.log === 'sqlite') {
        const db = new Database(join(t.server.dataDir!, 'decisions.sqlite'), { readonly: true });
        const rowsLogged = (db.prepare('SELECT count(*) AS n FROM decisions').get() as { n: number }).n;
        db.close();
        // Requests in flight when a run ends are logged but their answers not counted: rows >= answers.
        t.result.logRows = { rows: rowsLogged, answered2xx: t.server.answered2xx, ok: rowsLogged >= t.server.answered2xx };
        if (!t.result.logRows.ok) problems.push(`${t.result.name}: the decision log holds ${rowsLogged} rows but ${t.server.answered2xx} decisions were answered 2xx`);
      }
    }
    const onPostgres = targets.filter((t) => t.server && t.result.log === 'postgres');
    if (postgresUrl && onPostgres.length > 0) {
      const { default: pg } = await import('pg');
      const db = new pg.Client({ connectionString: postgresUrl });
      await db.connect();
      const rowsLogged = Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM decisions')).rows[0].n);
      await db.end();
      const answered2xx = onPostgres.reduce((n, t) => n + t.server!.answered2xx, 0);
      const logRows = { rows: rowsLogged, answered2xx, ok: rowsLogged >= answered2xx };
      for (const t of onPostgres) t.result.logRows = logRows;
      if (!logRows.ok) problems.push(`postgres: the decision log holds ${rowsLogged} rows but ${answered2xx} decisions were answered 2xx`);
    }
  } finally {
    for (const t of targets) await t.server?.stop().catch(() => undefined);
    await stopPostgres?.().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
  const [sqlite1, postgres1, postgres2] = targets.map((t) => t.result);
  return {
    config: { reps: opts.reps, durationS: opts.durationS, warmupS: opts.warmupS, connections: opts.connections, rows: opts.rows, client: 'wrk -t1' },
    machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', node: process.version, loadavgBefore, loadavgAfter: loadavg() },
    rowsUsed,
    targets: targets.map((t) => t.result),
    ratios: { twoWorkersOverOne: ratioOf(postgres2, postgres1), postgresOverSqlite: ratioOf(postgres1, sqlite1), twoWorkersPostgresOverSqlite: ratioOf(postgres2, sqlite1) },
    problems,
    wallS: (performance.now() - t0) / 1000,
  };
}

const f2 = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');
const f0 = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');
const ratio = (v: number | null, what: string) => (v === null ? `${what}: n/a (a side was skipped)` : `${what}: ${f2(v)}x`);

export function formatFleetBench(r: FleetBenchResult): string {
  const c = r.config;
  const lines: string[] = [];
  lines.push(`Fleet benchmark: 127.0.0.1, ${r.machine.cpus} × ${r.machine.model}, Node ${r.machine.node}; load average ${r.machine.loadavgBefore.map(f2).join(' ')} before, ${r.machine.loadavgAfter.map(f2).join(' ')} after`);
  lines.push(`${c.client}, ${c.connections} connections, ${c.durationS} s after ${c.warmupS} s warm-up, targets interleaved, medians of ${c.reps}; lending_club rows, a unique id per decision; cores: CPU used by the server's process tree, PostgreSQL's processes and wrk`);
  lines.push(`  ${'target'.padEnd(22)} ${'decisions/s'.padStart(11)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'server'.padStart(6)} ${'pg'.padStart(5)} ${'wrk'.padStart(5)} ${'non-2xx'.padStart(7)} ${'errors'.padStart(6)}  per rep`);
  for (const t of r.targets) {
    const m = t.median;
    if (!m) lines.push(`  ${t.name.padEnd(22)} ${t.skipped ?? 'not measured'}`);
    else lines.push(`  ${t.name.padEnd(22)} ${f0(m.rps).padStart(11)} ${f2(m.p50).padStart(7)} ${f2(m.p99).padStart(7)} ${f2(m.serverCores).padStart(6)} ${(t.log === 'postgres' ? f2(m.databaseCores) : '-').padStart(5)} ${f2(m.clientCores).padStart(5)} ${String(m.non2xx).padStart(7)} ${String(m.errors).padStart(6)}  ${t.runs.map((x) => f0(x.rps)).join(' / ')}`);
  }
  lines.push('  sqlite, 2 workers      refused by design: several workers need the shared PostgreSQL log');
  lines.push(`  ratios (median of per-repetition ratios): ${ratio(r.ratios.twoWorkersOverOne, 'postgres 2 workers / 1 process')}; ${ratio(r.ratios.postgresOverSqlite, 'postgres / sqlite, 1 process')}; ${ratio(r.ratios.twoWorkersPostgresOverSqlite, 'postgres 2 workers / sqlite 1 process')}`);
  const checked = r.targets.filter((t) => t.logRows);
  const distinct = [...new Map(checked.map((t) => [t.logRows, t.log === 'postgres' ? 'postgres (both targets)' : t.name])).entries()];
  if (distinct.length > 0) lines.push(`  decision log rows vs 2xx answers: ${distinct.map(([rows, name]) => `${name} ${rows!.rows} rows >= ${rows!.answered2xx} answers ${rows!.ok ? 'ok' : 'MISMATCH'}`).join('; ')}`);
  endReport(lines, r.problems, r.wallS);
  return lines.join('\n');
}

function parseArgs(argv: string[]): { options: Partial<FleetBenchOptions>; json: string | null } {
  const options: Partial<FleetBenchOptions> = {};
  const { json } = parseBenchArgs(argv, (a, _value, num) => {
    if (a === '--reps') options.reps = Math.round(num());
    else if (a === '--duration') options.durationS = num();
    else if (a === '--warmup') options.warmupS = num();
    else if (a === '--connections') options.connections = Math.round(num());
    else if (a === '--rows') options.rows = Math.round(num());
    else if (a === '--quick') Object.assign(options, { reps: 1, durationS: 4, warmupS: 1 });
    else return false;
    return true;
  });
  return { options, json };
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const { options, json } = parseArgs(process.argv.slice(2));
  const result = await benchFleet(options);
  process.stdout.write(formatFleetBench(result) + '\n');
  if (json) writeFileSync(json, JSON.stringify(result, null, 2) + '\n');
}
