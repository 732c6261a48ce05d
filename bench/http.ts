/**
 * HTTP load benchmark: the real `rtml serve` process against a bare fastify server, on
 * loopback (127.0.0.1), with autocannon.
 *
 *     node --import tsx bench/http.ts [--reps N] [--duration S] [--connections C] [--quick]
 *                                     [--profile | --no-profile] [--json FILE]
 *
 * or `import { benchHttp } from './http.ts'` and `await benchHttp()` (returns the figures).
 *
 * What it measures (every server is its own child process; the load generator runs in this
 * process, so on a 2-core machine client and server compete for CPU: compare ratios, which
 * come from the same run, rather than absolute figures):
 *
 *  1. Saturation, closed loop (autocannon, C connections, a warm-up then a timed run):
 *     - `bare`: bench/bare-server.ts, the same fastify, one route `POST /bare` that parses the
 *       same JSON bodies and answers a small constant JSON;
 *     - `rtml full` / `rtml normal`: `rtml serve` on a temporary copy of examples/credit with a
 *       temporary --data-dir and `--log-level warn`, `--log-sync full` (the default) and
 *       `normal`: the whole pipeline (validation, model, policy, durable decision log).
 *     - `FastAPI + XGBoost`: bench/fastapi_peer.py (Debian's /usr/bin/python3, one uvicorn worker)
 *       serving the same credit model on the same path and bodies: validation, the same encoding,
 *       XGBoost's predictor, the policy's bands. Before the runs, a sample of rows goes to both
 *       rtml and the peer, and their scores are compared (the max difference is printed).
 *     Bodies are real lending_club.csv rows (Class removed), each checked to answer 200 first;
 *     every request carries a unique `id` (autocannon's idReplacement), so every decision is a
 *     new row in the log. Each connection cycles through the rows from its own offset.
 *     The three targets are interleaved within each repetition so that a noisy neighbour
 *     spreads over all of them; figures are medians over the repetitions.
 *  2. Half load: rate = 50% of rtml full's median saturation throughput.
 *     - `paced`: an open-loop generator (a minimal keep-alive HTTP/1.1 client on raw sockets,
 *       cheaper than node:http; requests sent on a fixed schedule); latency counts from the
 *       moment a request was due, so a server stall shows in full (no coordinated omission).
 *       This is the figure the p99 target is checked on.
 *     - `autocannon overallRate`: what was asked for, reported alongside. Caveat: autocannon
 *       rate-limits per connection per second window (each connection sends back to back until
 *       its quota for the second is used, then pauses), so its "half load" is bursts at full
 *       concurrency followed by idle time; its latencies are closer to saturation latencies.
 *     Latencies are the client's own per-request figures (float ms), not autocannon's
 *     integer-millisecond histogram (whose coordinated-omission correction assumes a 1 ms
 *     interval when rate-limited).
 *  3. Correctness: non-2xx, socket errors and timeouts are counted per run; the paced run
 *     parses every answer (decision present, fallback not used); after the run each decision
 *     log is opened and its row count compared with the 2xx answers the bench received.
 *  4. Where the time goes: per-stage server timings (`timings_ms` of the paced answers),
 *     server CPU time per request (/proc), and, when a target is missed (or --profile), V8
 *     CPU profiles (node --cpu-prof) of rtml servers (log-sync full, then normal) under
 *     saturation load, summarized by component; the .cpuprofile files are kept (paths printed).
 *
 * Default run: 3 × (bare, full, normal) × (2 s warm-up + 7 s), 3 × (5 s paced + 5 s
 * autocannon-rate), 5 s paced on normal, and ~25 s of profiling when a target is missed:
 * about 2.5 minutes. `--quick` is one repetition of shorter runs (about 40 s).
 */
import autocannon from 'autocannon';
import Database from 'better-sqlite3';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parse } from 'csv-parse/sync';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CREDIT = join(ROOT, 'examples', 'credit');
export const DECISIONS_PATH = '/v1/services/credit/decisions';
const BARE_PATH = '/bare';

/** Issue 14's targets: rtml (log FULL, monitors on) at least 0.4x the bare route's decisions/s, at least 10x FastAPI + XGBoost's. */
export const TARGET_THROUGHPUT_RATIO = 0.4;
export const TARGET_OVER_FASTAPI = 10;
export const TARGET_HALF_LOAD_P99_MS = 5;
const PYTHON = '/usr/bin/python3';
/** Rows posted to both rtml and the FastAPI peer to check that they score alike. */
const PEER_CHECK_ROWS = 300;

// ---------------------------------------------------------------------------------------------
// Types

export interface HttpBenchOptions {
  /** Repetitions of each measurement; figures are medians (default 3). */
  reps: number;
  /** Concurrent connections for the saturation runs (default 32). */
  connections: number;
  /** Timed seconds per saturation run (default 7). */
  durationS: number;
  /** Warm-up seconds before each saturation run (default 2). */
  warmupS: number;
  /** Timed seconds per half-load run (default 5). */
  halfLoadDurationS: number;
  /** Fraction of rtml full's saturation throughput used for the latency runs (default 0.5). */
  halfLoadFraction: number;
  /** Distinct lending_club rows used as bodies (default 2000). */
  rows: number;
  /** 'auto' profiles the rtml server only when a target is missed (default 'auto'). */
  profile: 'auto' | 'always' | 'never';
  /** Progress lines (default: to stderr). */
  log: (msg: string) => void;
}

export interface LatencyStats {
  /** Milliseconds. */
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
  /** Samples (2xx answers). */
  count: number;
}

export interface LoadRun {
  target: string;
  kind: 'saturation' | 'autocannon-rate' | 'paced';
  /** 2xx answers per second. */
  rps: number;
  /** Requested rate (rate-limited runs only). */
  offeredRps: number | null;
  durationS: number;
  ok: number;
  non2xx: number;
  /** Socket errors (timeouts included). */
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  latency: LatencyStats;
  /** Paced runs: latency from the actual send, not from the schedule. */
  serviceLatency?: LatencyStats;
  /** Server process CPU (user + system) per 2xx answer, microseconds. */
  serverCpuUsPerReq: number;
  /** Server process CPU use over the run, in cores (1.0 = one core busy). */
  serverCores: number;
  /** The server's main thread (its event loop: one core at most) per 2xx answer, µs; NaN where /proc has no threads. */
  mainThreadUsPerReq: number;
  /** This (client) process's CPU use over the run, in cores. */
  clientCores: number;
  /** Paced runs against rtml: answers whose `fallback.used` was true, or without a decision. */
  fallbacks?: number;
  badBodies?: number;
}

export interface Summary {
  rps: number;
  p50: number;
  p99: number;
  p999: number;
  serverCpuUsPerReq: number;
  mainThreadUsPerReq: number;
  /** Cores the server process and the load generator used (medians). */
  serverCores: number;
  clientCores: number;
  non2xx: number;
  errors: number;
}

export interface StageStats {
  p50: number;
  p99: number;
}

export interface ProfileSummary {
  /** Server the profile was taken on, and the load. */
  target: string;
  rps: number;
  /** Sampled milliseconds inside the load window. */
  sampledMs: number;
  /** 2xx answers inside the window. */
  requests: number;
  /**
   * Main-thread time per component (idle included), sorted: share of the sampled time and
   * microseconds per answered request. Sampled time is wall time of the main thread, so a
   * blocking fsync inside a COMMIT counts (as the decision log) although it uses no CPU.
   */
  components: { name: string; ms: number; share: number; usPerReq: number }[];
  /** Busiest functions by self time. */
  topFunctions: { name: string; where: string; ms: number; share: number; usPerReq: number }[];
  file: string | null;
}

export interface HttpBenchResult {
  config: Omit<HttpBenchOptions, 'log'> & { uniqueIds: true; host: '127.0.0.1' };
  machine: { cpus: number; model: string; node: string; loadavgBefore: number[]; loadavgAfter: number[] };
  rowsUsed: number;
  rowsRejected: number;
  saturation: {
    bare: { runs: LoadRun[]; median: Summary };
    rtmlFull: { runs: LoadRun[]; median: Summary };
    rtmlNormal: { runs: LoadRun[]; median: Summary };
    /** The FastAPI + XGBoost peer; null when it could not start (see problems). */
    fastapi: { runs: LoadRun[]; median: Summary; check: PeerCheck } | null;
  };
  /** rtml / bare throughput: median of the per-repetition ratios; overFastapi: rtml full / FastAPI, likewise. */
  ratio: { full: number; normal: number; fullPerRep: number[]; normalPerRep: number[]; overFastapi: number; overFastapiPerRep: number[] };
  halfLoad: {
    rate: number;
    paced: { runs: LoadRun[]; median: Summary };
    autocannonRate: { runs: LoadRun[]; median: Summary };
    normalPaced: { rate: number; runs: LoadRun[]; median: Summary } | null;
    /** The bare route, paced at the same rate and interleaved with rtml's runs: what this client and machine add to any server's p99. */
    bare: { runs: LoadRun[]; median: Summary };
    /** Server-side stage timings (timings_ms) of rtml full's paced answers, ms. */
    stages: Record<string, StageStats>;
    /** Client-observed latency minus the pipeline's `total`: HTTP, fastify, JSON, queueing, client. */
    outsidePipeline: StageStats;
  };
  decisionLog: { target: string; rows: number; answered2xx: number; ok: boolean }[];
  /** What the throughput targets leave rtml per decision on this machine (see cpuBudget). */
  budget: { throughput: CpuBudget; overFastapi: CpuBudget | null };
  /** CPU profiles of rtml under saturation (log-sync full, then normal) when a target was missed or asked for. */
  profiles: ProfileSummary[];
  targets: {
    throughputRatio: { target: number; value: number; pass: boolean };
    overFastapi: { target: number; value: number; pass: boolean };
    halfLoadP99Ms: { target: number; value: number; pass: boolean };
  };
  /** Anything unexpected: non-2xx, socket errors, fallbacks, log row mismatches. */
  problems: string[];
  wallS: number;
}

/**
 * The server CPU a throughput target leaves per decision: the load generator runs on the same
 * cores, so at `rate` it takes its own measured µs per request, and the server gets the rest of
 * the machine's cores. If rtml needs more per decision than that, the target cannot be met on
 * this machine without making rtml cheaper by the difference; if even the bare route's own cost
 * is above it, no server doing rtml's work plus the bare route's could meet it here.
 */
export interface CpuBudget {
  /** Requests/s the target asks for. */
  rate: number;
  cores: number;
  /** The load generator's CPU per request (rtml full's saturation runs), µs. */
  clientUsPerReq: number;
  /** Server µs per decision the rest of the cores allow at `rate`. */
  serverUsPerDecision: number;
  /** What rtml full spends now (saturation median), and the bare route (parse JSON, answer). */
  rtmlUsPerDecision: number;
  bareUsPerReq: number;
  /** What rtml's main thread spends per decision, and what one core allows it at `rate` (its event loop runs on one core at a time). */
  rtmlMainThreadUsPerDecision: number;
  mainThreadUsLimit: number;
}

function cpuBudget(rate: number, cores: number, rtml: Summary, bare: Summary): CpuBudget {
  const clientUsPerReq = (rtml.clientCores * 1e6) / Math.max(1, rtml.rps);
  return {
    rate,
    cores,
    clientUsPerReq,
    serverUsPerDecision: (cores * 1e6) / rate - clientUsPerReq,
    rtmlUsPerDecision: rtml.serverCpuUsPerReq,
    bareUsPerReq: bare.serverCpuUsPerReq,
    rtmlMainThreadUsPerDecision: rtml.mainThreadUsPerReq,
    mainThreadUsLimit: 1e6 / rate,
  };
}

const DEFAULTS: HttpBenchOptions = {
  reps: 3,
  connections: 32,
  durationS: 7,
  warmupS: 2,
  halfLoadDurationS: 5,
  halfLoadFraction: 0.5,
  rows: 2000,
  profile: 'auto',
  log: (msg) => process.stderr.write(`[http ${((performance.now() - T0) / 1000).toFixed(0).padStart(3)}s] ${msg}\n`),
};
let T0 = performance.now();

// ---------------------------------------------------------------------------------------------
// Small helpers

function median(values: readonly number[]): number {
  const s = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Nearest-rank percentile of an ascending array. */
export function pct(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

export function latencyStats(samples: number[]): LatencyStats {
  const s = Float64Array.from(samples).sort();
  let sum = 0;
  for (const v of s) sum += v;
  return { p50: pct(s, 50), p90: pct(s, 90), p99: pct(s, 99), p999: pct(s, 99.9), max: s.length ? s[s.length - 1] : NaN, mean: s.length ? sum / s.length : NaN, count: s.length };
}

function summarize(runs: LoadRun[]): Summary {
  return {
    rps: median(runs.map((r) => r.rps)),
    p50: median(runs.map((r) => r.latency.p50)),
    p99: median(runs.map((r) => r.latency.p99)),
    p999: median(runs.map((r) => r.latency.p999)),
    serverCpuUsPerReq: median(runs.map((r) => r.serverCpuUsPerReq)),
    mainThreadUsPerReq: median(runs.map((r) => r.mainThreadUsPerReq)),
    serverCores: median(runs.map((r) => r.serverCores)),
    clientCores: median(runs.map((r) => r.clientCores)),
    non2xx: runs.reduce((a, r) => a + r.non2xx, 0),
    errors: runs.reduce((a, r) => a + r.errors, 0),
  };
}

export const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms));

/** Clock ticks per second of /proc/<pid>/stat times (100 on practically every Linux); asked once, on first use. */
let clkTck = 0;
function ticksPerSecond(): number {
  if (clkTck === 0) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** User + system CPU seconds of a process (Linux /proc), NaN elsewhere; `mainThread`: of its main thread only. */
export function processCpuS(pid: number | undefined, mainThread = false): number {
  if (pid === undefined) return NaN;
  try {
    const stat = readFileSync(mainThread ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond();
  } catch {
    return NaN;
  }
}

function selfCpuS(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

export async function freePort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((done, fail) => {
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => done());
  });
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((done) => srv.close(() => done()));
  return port;
}

// ---------------------------------------------------------------------------------------------
// Server processes

export interface ServerProcess {
  name: string;
  url: string;
  child: ChildProcess;
  dataDir: string | null;
  /** Last lines the process printed. */
  output: string[];
  /** 2xx answers the bench received from it (for the decision-log check). */
  answered2xx: number;
  stop(): Promise<number | null>;
}

async function startProcess(name: string, args: string[], dataDir: string | null, readyPath: string, command = process.execPath): Promise<ServerProcess> {
  const port = await freePort();
  const child = spawn(command, args.map((a) => a.replace('{port}', String(port))), {
    cwd: ROOT,
    env: { ...process.env, RTML_ADMIN_TOKEN: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream }).on('line', (line) => {
      output.push(line);
      if (output.length > 200) output.shift();
    });
  }
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((done) =>
    child.once('exit', (code, signal) => {
      exitCode = code ?? (signal ? -1 : null);
      done(exitCode);
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = performance.now() + 60_000;
  for (;;) {
    if (exitCode !== undefined) throw new Error(`${name} exited (${exitCode}) before it was ready:\n${output.join('\n')}`);
    if (performance.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${name} was not ready within 60 s:\n${output.join('\n')}`);
    }
    try {
      const res = await fetch(url + readyPath, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      break; // any HTTP answer: listening, and (rtml) the repository is loaded before listen
    } catch {
      await sleep(100);
    }
  }
  return {
    name,
    url,
    child,
    dataDir,
    output,
    answered2xx: 0,
    async stop() {
      if (exitCode === undefined) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
      return exitCode ?? null;
    },
  };
}

function startBare(): Promise<ServerProcess> {
  return startProcess('bare', ['--import', 'tsx', join(ROOT, 'bench', 'bare-server.ts'), '{port}'], null, BARE_PATH);
}

/** bench/fastapi_peer.py serving examples/credit (one uvicorn worker, Debian's python3 with FastAPI and XGBoost). */
function startFastapi(): Promise<ServerProcess> {
  return startProcess('fastapi', [join(ROOT, 'bench', 'fastapi_peer.py'), CREDIT, '{port}'], null, '/health', PYTHON);
}

export interface PeerCheck {
  rows: number;
  /** Largest |rtml score - FastAPI score| over the rows. */
  maxScoreDiff: number;
  /** Rows whose decision is the same; rtml's rules (pre/post) explain the others, the peer has only the bands. */
  sameDecision: number;
}

/** Posts the same rows to rtml and the FastAPI peer and compares their scores and decisions. */
async function checkPeer(rtml: ServerProcess, peer: ServerProcess, rows: string[]): Promise<PeerCheck> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  let maxScoreDiff = 0;
  let sameDecision = 0;
  try {
    for (const row of rows) {
      const [a, b] = await Promise.all([post(agent, rtml.url, DECISIONS_PATH, row), post(agent, peer.url, DECISIONS_PATH, row)]);
      if (a.status !== 200 || b.status !== 200) throw new Error(`a row answered ${a.status} by rtml, ${b.status} by FastAPI: ${b.body.slice(0, 300)}`);
      rtml.answered2xx++;
      const x = JSON.parse(a.body) as { score: number; decision: string };
      const y = JSON.parse(b.body) as { score: number; decision: string };
      maxScoreDiff = Math.max(maxScoreDiff, Math.abs(x.score - y.score));
      if (x.decision === y.decision) sameDecision++;
    }
  } finally {
    agent.destroy();
  }
  return { rows: rows.length, maxScoreDiff, sameDecision };
}

/** A temporary repository with a copy of the credit example as service `credit`. */
function creditRepository(work: string): string {
  const repo = join(work, 'repo');
  if (existsSync(repo)) return repo;
  mkdirSync(join(repo, 'credit'), { recursive: true });
  for (const file of ['rtml.yaml', 'model.json', 'golden.jsonl', 'policy.yaml', 'reference.json']) {
    if (existsSync(join(CREDIT, file))) cpSync(join(CREDIT, file), join(repo, 'credit', file));
  }
  return repo;
}

export function startRtml(work: string, name: string, sync: 'full' | 'normal', nodeArgs: string[] = [], serveArgs: string[] = []): Promise<ServerProcess> {
  const dataDir = join(work, `data-${name.replace(/\W+/g, '-')}`);
  mkdirSync(dataDir, { recursive: true });
  const args = [...nodeArgs, join(ROOT, 'bin', 'rtml.mjs'), 'serve', creditRepository(work), '--port', '{port}', '--data-dir', dataDir, '--log-level', 'warn', '--log-sync', sync, ...serveArgs];
  return startProcess(name, args, dataDir, '/v2/health/ready');
}

// ---------------------------------------------------------------------------------------------
// Request bodies

/** Distinct lending_club rows (Class removed) as JSON text, spread over the whole file. */
export function loadRows(count: number): string[] {
  const records = parse(readFileSync(join(CREDIT, 'lending_club.csv')), { columns: true, cast: true, skip_empty_lines: true }) as Record<string, unknown>[];
  const step = Math.max(1, Math.floor(records.length / count));
  const out: string[] = [];
  for (let i = 0; i < records.length && out.length < count; i += step) {
    const { Class: _label, ...features } = records[i];
    out.push(JSON.stringify(features));
  }
  return out;
}

/** Posts every row once (no id: the server makes one); keeps the rows answered 200 with a decision. */
export async function preflight(server: ServerProcess, rows: string[], problems: string[]): Promise<string[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const kept: string[] = [];
  const rejected: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < rows.length) {
      const row = rows[next++];
      const { status, body } = await post(agent, server.url, DECISIONS_PATH, row);
      let ok = status === 200;
      if (ok) {
        const r = JSON.parse(body) as { decision?: unknown; fallback?: { used?: boolean } };
        ok = typeof r.decision === 'string' && r.fallback?.used === false;
      }
      if (ok) {
        kept.push(row);
        server.answered2xx++;
      } else rejected.push(`${status} ${body.slice(0, 200)}`);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  agent.destroy();
  if (rejected.length > 0) problems.push(`preflight: ${rejected.length} of ${rows.length} rows not answered 200 with a model decision, e.g. ${rejected[0]}`);
  return kept;
}

function post(agent: http.Agent, base: string, path: string, body: string): Promise<{ status: number; body: string }> {
  return new Promise((done, fail) => {
    const req = http.request(base + path, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => done({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', fail);
    });
    req.on('error', fail);
    req.end(body);
  });
}

/** Request lists for autocannon: one per connection, each starting at its own offset; `[<id>]` becomes a unique id. */
function cannonRequests(rows: string[], connections: number, path: string): autocannon.Request[][] {
  const perClient = Math.min(rows.length, 256);
  return Array.from({ length: connections }, (_, k) => {
    const offset = Math.floor((k * rows.length) / connections);
    return Array.from({ length: perClient }, (_, j) => ({
      method: 'POST' as const,
      path,
      headers: { 'content-type': 'application/json' },
      body: `{"id":"ac-[<id>]",${rows[(offset + j) % rows.length].slice(1)}`,
    }));
  });
}

// ---------------------------------------------------------------------------------------------
// Load generators

export interface CannonSpec {
  server: ServerProcess;
  path: string;
  rows: string[];
  connections: number;
  durationS: number;
  overallRate?: number;
  kind: LoadRun['kind'];
  target: string;
}

export function runCannon(spec: CannonSpec): Promise<LoadRun> {
  const lists = cannonRequests(spec.rows, spec.connections, spec.path);
  let nextList = 0;
  const latencies: number[] = [];
  return new Promise((done, fail) => {
    const cpu0 = processCpuS(spec.server.child.pid);
    const main0 = processCpuS(spec.server.child.pid, true);
    const self0 = selfCpuS();
    const t0 = performance.now();
    const instance = autocannon(
      {
        url: spec.server.url + spec.path,
        method: 'POST',
        connections: spec.connections,
        duration: spec.durationS,
        overallRate: spec.overallRate,
        timeout: 10,
        idReplacement: true,
        requests: lists[0],
        setupClient: (client) => client.setRequests(lists[nextList++ % lists.length]),
      },
      (err, result) => {
        if (err) return fail(err);
        const wall = (performance.now() - t0) / 1000;
        const cpu = processCpuS(spec.server.child.pid) - cpu0;
        const main = processCpuS(spec.server.child.pid, true) - main0;
        const self = selfCpuS() - self0;
        const statusCodes: Record<string, number> = {};
        for (const [code, v] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = (v as { count?: number }).count ?? 0;
        const ok = result['2xx'];
        spec.server.answered2xx += ok;
        const durationS = result.duration > 0 ? result.duration : wall;
        done({
          target: spec.target,
          kind: spec.kind,
          rps: ok / durationS,
          offeredRps: spec.overallRate ?? null,
          durationS,
          ok,
          non2xx: result.non2xx,
          errors: result.errors,
          timeouts: result.timeouts,
          statusCodes,
          latency: latencyStats(latencies),
          serverCpuUsPerReq: (cpu * 1e6) / Math.max(1, ok),
          serverCores: cpu / wall,
          mainThreadUsPerReq: (main * 1e6) / Math.max(1, ok),
          clientCores: self / wall,
        });
      },
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
    });
  });
}

/** One keep-alive HTTP/1.1 connection that carries one request at a time (no pipelining). */
class RawConnection {
  readonly socket: Socket;
  busy = false;
  private buf: Buffer | null = null;
  private headerEnd = -1;
  private contentLength = -1;
  private status = 0;
  private onDone: ((status: number, body: Buffer | null, sentAt: number) => void) | null = null;
  private sentAt = 0;

  constructor(port: number, private readonly onLost: (conn: RawConnection) => void) {
    this.socket = connect({ port, host: '127.0.0.1', noDelay: true });
    this.socket.on('data', (chunk: Buffer) => this.data(chunk));
    const lost = () => {
      const done = this.onDone;
      this.onDone = null;
      this.busy = false;
      this.onLost(this);
      done?.(0, null, this.sentAt);
    };
    this.socket.on('error', lost);
    this.socket.on('close', lost);
  }

  send(request: Buffer, done: (status: number, body: Buffer | null, sentAt: number) => void): void {
    this.busy = true;
    this.sentAt = performance.now();
    this.onDone = done;
    this.buf = null;
    this.headerEnd = -1;
    this.socket.write(request);
  }

  private data(chunk: Buffer): void {
    this.buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
    if (this.headerEnd < 0) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      this.headerEnd = end + 4;
      const head = this.buf.toString('latin1', 0, end).toLowerCase();
      this.status = Number(head.slice(9, 12));
      const m = /\r\ncontent-length:\s*(\d+)/.exec(head);
      if (!m) {
        // fastify answers JSON with a content-length; anything else is unexpected here.
        this.socket.destroy(new Error('answer without content-length'));
        return;
      }
      this.contentLength = Number(m[1]);
    }
    if (this.buf.length < this.headerEnd + this.contentLength) return;
    const body = this.buf.subarray(this.headerEnd, this.headerEnd + this.contentLength);
    const done = this.onDone;
    this.onDone = null;
    this.buf = null;
    this.busy = false;
    done?.(this.status, body, this.sentAt);
  }
}

/**
 * An open-loop load generator with its own minimal HTTP/1.1 client (raw sockets, prebuilt
 * request text, content-length framing): node:http costs several times more CPU per request,
 * CPU the server would not get on a 2-core machine. Up to `maxSockets` keep-alive connections;
 * a request due while all are busy waits in a FIFO queue, and that wait is counted.
 */
export class PacedClient {
  private readonly idle: RawConnection[] = [];
  private readonly all = new Set<RawConnection>();
  private readonly queue: (() => void)[] = [];
  private queueHead = 0;

  constructor(
    readonly server: ServerProcess,
    private readonly maxSockets: number,
  ) {}

  private get port(): number {
    return Number(new URL(this.server.url).port);
  }

  request(path: string, body: string, done: (status: number, body: Buffer | null, sentAt: number) => void): void {
    const text = Buffer.from(`POST ${path} HTTP/1.1\r\nhost: 127.0.0.1:${this.port}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    const go = () => {
      const conn = this.idle.pop() ?? this.open();
      conn.send(text, (status, answer, sentAt) => {
        if (!conn.socket.destroyed) this.idle.push(conn);
        done(status, answer, sentAt);
        this.next();
      });
    };
    if (this.idle.length > 0 || this.all.size < this.maxSockets) go();
    else this.queue.push(go);
  }

  private open(): RawConnection {
    const conn = new RawConnection(this.port, (lost) => {
      this.all.delete(lost);
      const i = this.idle.indexOf(lost);
      if (i >= 0) this.idle.splice(i, 1);
    });
    this.all.add(conn);
    return conn;
  }

  private next(): void {
    if (this.queueHead < this.queue.length && (this.idle.length > 0 || this.all.size < this.maxSockets)) {
      const go = this.queue[this.queueHead++];
      if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
        this.queue.splice(0, this.queueHead);
        this.queueHead = 0;
      }
      go();
    }
  }

  close(): void {
    for (const c of this.all) c.socket.destroy();
    this.all.clear();
    this.idle.length = 0;
  }
}

export interface PacedSpec {
  client: PacedClient;
  path: string;
  rows: string[];
  rate: number;
  durationS: number;
  target: string;
  /** Parse answers: decision present, fallback unused; collect timings_ms. */
  inspect: boolean;
  stages?: { outside: number[]; byStage: Record<string, number[]> };
}

let pacedRunNo = 0;

/**
 * Open loop: request i is due at t0 + i / rate and is sent as soon as the timer loop sees it
 * due (the loop wakes about every millisecond). Latency counts from the due time, so time a
 * request waits for a connection or for a stalled server is counted (no coordinated omission).
 */
export async function runPaced(spec: PacedSpec): Promise<LoadRun> {
  const server = spec.client.server;
  const tag = `hp${process.pid}x${++pacedRunNo}`;
  const total = Math.max(1, Math.round(spec.rate * spec.durationS));
  const interval = 1000 / spec.rate;
  const latencies: number[] = [];
  const service: number[] = [];
  const statusCodes: Record<string, number> = {};
  let ok = 0;
  let non2xx = 0;
  let errors = 0;
  let fallbacks = 0;
  let badBodies = 0;
  let answered = 0;
  let sent = 0;
  let allAnswered!: () => void;
  const finished = new Promise<void>((done) => (allAnswered = done));

  const send = (i: number, due: number) => {
    const row = spec.rows[i % spec.rows.length];
    const body = `{"id":"${tag}-${i}",${row.slice(1)}`;
    spec.client.request(spec.path, body, (status, answer, start) => {
      const end = performance.now();
      if (status === 0) errors++;
      else {
        statusCodes[status] = (statusCodes[status] ?? 0) + 1;
        if (status >= 200 && status < 300) {
          ok++;
          latencies.push(end - due);
          service.push(end - start);
          if (spec.inspect && answer) {
            try {
              const r = JSON.parse(answer.toString()) as { decision?: unknown; fallback?: { used?: boolean }; timings_ms?: Record<string, number> };
              if (typeof r.decision !== 'string' || r.fallback?.used !== false) fallbacks++;
              if (spec.stages && r.timings_ms) {
                for (const [k, v] of Object.entries(r.timings_ms)) (spec.stages.byStage[k] ??= []).push(v);
                spec.stages.outside.push(end - start - r.timings_ms.total);
              }
            } catch {
              badBodies++;
            }
          }
        } else non2xx++;
      }
      if (++answered === total) allAnswered();
    });
  };

  const cpu0 = processCpuS(server.child.pid);
  const main0 = processCpuS(server.child.pid, true);
  const self0 = selfCpuS();
  const t0 = performance.now() + 2;
  await new Promise<void>((scheduleDone) => {
    const tick = () => {
      const now = performance.now();
      while (sent < total && t0 + sent * interval <= now) {
        send(sent, t0 + sent * interval);
        sent++;
      }
      if (sent < total) setTimeout(tick, 1);
      else scheduleDone();
    };
    setTimeout(tick, 2);
  });
  let giveUp: NodeJS.Timeout | undefined;
  await Promise.race([finished, new Promise<void>((done) => (giveUp = setTimeout(done, 15_000)))]);
  clearTimeout(giveUp);
  const wall = (performance.now() - t0) / 1000;
  const cpu = processCpuS(server.child.pid) - cpu0;
  const main = processCpuS(server.child.pid, true) - main0;
  const self = selfCpuS() - self0;
  server.answered2xx += ok;
  const lost = total - answered;
  return {
    target: spec.target,
    kind: 'paced',
    rps: ok / wall,
    offeredRps: spec.rate,
    durationS: wall,
    ok,
    non2xx,
    errors: errors + lost,
    timeouts: lost,
    statusCodes,
    latency: latencyStats(latencies),
    serviceLatency: latencyStats(service),
    serverCpuUsPerReq: (cpu * 1e6) / Math.max(1, ok),
    serverCores: cpu / wall,
    mainThreadUsPerReq: (main * 1e6) / Math.max(1, ok),
    clientCores: self / wall,
    ...(spec.inspect ? { fallbacks, badBodies } : {}),
  };
}

function noteProblems(run: LoadRun, problems: string[]): void {
  const bits: string[] = [];
  if (run.non2xx > 0) bits.push(`${run.non2xx} non-2xx (${JSON.stringify(run.statusCodes)})`);
  if (run.errors > 0) bits.push(`${run.errors} socket errors (${run.timeouts} timeouts)`);
  if (run.fallbacks) bits.push(`${run.fallbacks} answers used the fallback or had no decision`);
  if (run.badBodies) bits.push(`${run.badBodies} unparsable answers`);
  if (bits.length > 0) problems.push(`${run.target} ${run.kind}: ${bits.join(', ')}`);
}

// ---------------------------------------------------------------------------------------------
// CPU profile of the rtml server

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Component of a source URL; '' for builtins without a script (JSON.parse, native bindings). */
function componentOf(url: string): string {
  if (!url) return '';
  const u = url.replace(/^file:\/\//, '');
  if (u.includes('/node_modules/better-sqlite3/') || u.includes('/src/log/')) return 'decision log (src/log, better-sqlite3)';
  if (u.includes('/src/models/')) return 'model (src/models)';
  if (u.includes('/src/bundle/')) return 'validation/encoding (src/bundle)';
  if (u.includes('/src/decision/')) return 'policy (src/decision)';
  if (u.includes('/src/pipeline/')) return 'pipeline glue (src/pipeline)';
  if (u.includes('/src/monitor/')) return 'monitors (src/monitor)';
  if (u.includes('/src/server/metrics') || u.includes('/node_modules/prom-client/') || u.includes('/node_modules/tdigest/') || u.includes('/node_modules/bintrees/')) return 'metrics (prom-client)';
  if (u.includes('/src/server/')) return 'rtml routes (src/server)';
  if (u.includes('/node_modules/zod/')) return 'zod (route params)';
  if (u.includes('/node_modules/pino') || u.includes('/node_modules/sonic-boom/') || u.includes('/node_modules/thread-stream/')) return 'pino logger';
  if (/\/node_modules\/(fastify|@fastify|find-my-way|avvio|fast-json-stringify|secure-json-parse|light-my-request|toad-cache|fast-querystring|abstract-logging|process-warning|rfdc|fast-decode-uri-component|ret|safe-regex2|json-schema-ref-resolver|fast-uri|ajv)/.test(u)) return 'fastify';
  if (u.includes('/node_modules/tsx/') || u.includes('/node_modules/esbuild/')) return 'tsx loader';
  if (u.includes('/node_modules/')) return `other deps (${u.split('/node_modules/')[1].split('/')[0]})`;
  if (u.startsWith('node:internal/http') || u.startsWith('node:_http') || u.startsWith('node:http') || u.includes('_http_')) return 'node http';
  if (u.startsWith('node:net') || u.startsWith('node:internal/stream') || u.startsWith('node:stream') || u.startsWith('node:internal/net') || u.includes('stream_base')) return 'node net/streams';
  if (u.startsWith('node:')) return 'node other (events, timers, crypto…)';
  if (u.includes('/src/')) return 'rtml other';
  return 'other';
}

/**
 * Self time per component, inside [fromUs, toUs] (profile clock, µs). A frame without a
 * script (a builtin or native binding) is charged to the nearest caller that has one, so
 * JSON.parse under fastify counts as fastify, a SQLite COMMIT (and its fsync) as the log.
 */
function summarizeProfile(profile: CpuProfile, fromUs: number, toUs: number, target: string, rps: number, requests: number, file: string | null): ProfileSummary {
  const byId = new Map<number, CpuProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const special = new Set(['(idle)', '(garbage collector)', '(program)', '(root)']);
  const compCache = new Map<number, string>();
  const componentOfNode = (id: number): string => {
    const cached = compCache.get(id);
    if (cached !== undefined) return cached;
    const n = byId.get(id)!;
    let comp: string;
    if (special.has(n.callFrame.functionName)) comp = n.callFrame.functionName === '(garbage collector)' ? 'GC' : n.callFrame.functionName === '(idle)' ? 'idle' : 'V8/native (program)';
    else {
      comp = componentOf(n.callFrame.url);
      if (!comp) {
        const p = parent.get(id);
        comp = p === undefined ? 'native' : componentOfNode(p);
        if (comp === 'V8/native (program)' || comp === 'idle' || comp === 'GC') comp = 'native (no JS caller)';
      }
    }
    compCache.set(id, comp);
    return comp;
  };
  const selfUs = new Map<number, number>();
  let t = profile.startTime;
  let windowUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i];
    if (t < fromUs || t > toUs) continue;
    // The delta before sample i+1 is the time sample i stood for; the difference is negligible at 1 kHz.
    const d = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + d);
    windowUs += d;
  }
  const comps = new Map<string, number>();
  const funcs = new Map<string, { where: string; us: number }>();
  for (const [id, us] of selfUs) {
    const c = componentOfNode(id);
    comps.set(c, (comps.get(c) ?? 0) + us);
    const n = byId.get(id)!;
    const key = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url}:${n.callFrame.lineNumber + 1}`;
    // Line numbers of .ts files are those of tsx's output, not of the source: name the file only.
    const file = n.callFrame.url.replace(/^file:\/\//, '').replace(ROOT + '/', '');
    const where = n.callFrame.url ? (file.endsWith('.ts') ? file : `${file}:${n.callFrame.lineNumber + 1}`) : `native, under ${c}`;
    const f = funcs.get(key) ?? { where, us: 0 };
    f.us += us;
    funcs.set(key, f);
  }
  const share = (us: number) => (windowUs > 0 ? us / windowUs : 0);
  const perReq = (us: number) => us / Math.max(1, requests);
  return {
    target,
    rps,
    sampledMs: windowUs / 1000,
    requests,
    components: [...comps].map(([name, us]) => ({ name, ms: us / 1000, share: share(us), usPerReq: perReq(us) })).sort((a, b) => b.ms - a.ms),
    topFunctions: [...funcs]
      .map(([key, f]) => ({ name: key.split(' ')[0], where: f.where, ms: f.us / 1000, share: share(f.us), usPerReq: perReq(f.us) }))
      .sort((a, b) => b.ms - a.ms)
      .slice(0, 20),
    file,
  };
}

async function profileRtml(work: string, rows: string[], opts: HttpBenchOptions, sync: 'full' | 'normal'): Promise<ProfileSummary> {
  const dir = join(work, `cpu-prof-${sync}`);
  mkdirSync(dir, { recursive: true });
  const server = await startRtml(work, `rtml-${sync}-profiled`, sync, ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-interval', '500']);
  const target = `rtml log-sync=${sync} (profiled)`;
  let run: LoadRun;
  let fromUs: number;
  let toUs: number;
  try {
    await runCannon({ server, path: DECISIONS_PATH, rows, connections: opts.connections, durationS: opts.warmupS, kind: 'saturation', target });
    fromUs = Number(process.hrtime.bigint() / 1000n);
    run = await runCannon({ server, path: DECISIONS_PATH, rows, connections: opts.connections, durationS: opts.durationS, kind: 'saturation', target });
    toUs = Number(process.hrtime.bigint() / 1000n);
  } finally {
    // The profile is written when the process exits.
    await server.stop();
  }
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) throw new Error(`the profiled server wrote no .cpuprofile:\n${server.output.join('\n')}`);
  const file = join(dir, files[0]);
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  // V8's profile clock and process.hrtime are both CLOCK_MONOTONIC on Linux; if they disagree, keep the whole profile.
  const inWindow = profile.startTime <= toUs && profile.endTime >= fromUs;
  return summarizeProfile(profile, inWindow ? fromUs : -Infinity, inWindow ? toUs : Infinity, `rtml log-sync=${sync}, saturation`, run.rps, run.ok, file);
}

// ---------------------------------------------------------------------------------------------
// The benchmark

export async function benchHttp(options: Partial<HttpBenchOptions> = {}): Promise<HttpBenchResult> {
  const opts: HttpBenchOptions = { ...DEFAULTS, ...options };
  const log = opts.log;
  T0 = performance.now();
  const loadBefore = loadavg();
  const problems: string[] = [];
  const work = mkdtempSync(join(tmpdir(), 'rtml-bench-http-'));
  const servers: ServerProcess[] = [];
  let keepWork = false;
  try {
    log(`starting servers (bare fastify, rtml --log-sync full, rtml --log-sync normal); scratch ${work}`);
    const [bare, full, normal] = await Promise.all([startBare(), startRtml(work, 'rtml-full', 'full'), startRtml(work, 'rtml-normal', 'normal')]);
    servers.push(bare, full, normal);

    const candidates = loadRows(opts.rows);
    const rows = await preflight(full, candidates, problems);
    if (rows.length === 0) throw new Error(`no lending_club row was answered 200 by rtml:\n${problems.join('\n')}`);
    await preflight(normal, rows.slice(0, 200), problems);
    log(`${rows.length} distinct lending_club rows answered 200 by rtml (${candidates.length - rows.length} rejected); each request gets a unique id`);

    let fastapi: ServerProcess | null = null;
    let peerCheck: PeerCheck | null = null;
    try {
      fastapi = await startFastapi();
      servers.push(fastapi);
      peerCheck = await checkPeer(full, fastapi, rows.slice(0, PEER_CHECK_ROWS));
      log(`FastAPI peer: ${peerCheck.rows} rows, scores within ${peerCheck.maxScoreDiff.toExponential(2)} of rtml's, ${peerCheck.sameDecision} same decisions`);
    } catch (err) {
      problems.push(`FastAPI peer not measured: ${(err as Error).message.slice(0, 1000)}`);
      fastapi = null;
    }

    // 1-2. Saturation, interleaved.
    const targets = [
      { key: 'bare' as const, server: bare, path: BARE_PATH, label: 'bare fastify' },
      { key: 'rtmlFull' as const, server: full, path: DECISIONS_PATH, label: 'rtml log-sync=full' },
      { key: 'rtmlNormal' as const, server: normal, path: DECISIONS_PATH, label: 'rtml log-sync=normal' },
      ...(fastapi ? [{ key: 'fastapi' as const, server: fastapi, path: DECISIONS_PATH, label: 'FastAPI + XGBoost' }] : []),
    ];
    const runs: Record<'bare' | 'rtmlFull' | 'rtmlNormal' | 'fastapi', LoadRun[]> = { bare: [], rtmlFull: [], rtmlNormal: [], fastapi: [] };
    for (let rep = 0; rep < opts.reps; rep++) {
      for (const t of targets) {
        const base = { server: t.server, path: t.path, rows, connections: opts.connections, kind: 'saturation' as const, target: t.label };
        const warm = await runCannon({ ...base, durationS: opts.warmupS });
        noteProblems({ ...warm, kind: 'saturation', target: `${t.label} (warm-up)` }, problems);
        const run = await runCannon({ ...base, durationS: opts.durationS });
        noteProblems(run, problems);
        runs[t.key].push(run);
        log(`rep ${rep + 1}/${opts.reps} ${t.label.padEnd(20)} ${run.rps.toFixed(0).padStart(6)} req/s  p50 ${run.latency.p50.toFixed(2)} ms  p99 ${run.latency.p99.toFixed(2)} ms  server ${run.serverCpuUsPerReq.toFixed(0)} µs CPU/req (${run.serverCores.toFixed(2)} cores), client ${run.clientCores.toFixed(2)} cores`);
      }
    }
    const ratioFull = runs.rtmlFull.map((r, i) => r.rps / runs.bare[i].rps);
    const ratioNormal = runs.rtmlNormal.map((r, i) => r.rps / runs.bare[i].rps);
    const ratioFastapi = runs.fastapi.map((r, i) => runs.rtmlFull[i].rps / r.rps);
    const satFull = summarize(runs.rtmlFull);

    // 3. Half load.
    const rate = Math.max(50, Math.round(satFull.rps * opts.halfLoadFraction));
    log(`half load: ${rate} req/s (${Math.round(opts.halfLoadFraction * 100)}% of rtml full's ${satFull.rps.toFixed(0)} req/s)`);
    const stages = { outside: [] as number[], byStage: {} as Record<string, number[]> };
    const pacedFull = new PacedClient(full, opts.connections);
    const pacedNormal = new PacedClient(normal, opts.connections);
    const pacedBare = new PacedClient(bare, opts.connections);
    const paced: LoadRun[] = [];
    const bareAtRate: LoadRun[] = [];
    const cannonRate: LoadRun[] = [];
    // Open the paced client's sockets and settle the server at the new rate (not measured).
    await runPaced({ client: pacedFull, path: DECISIONS_PATH, rows, rate, durationS: 1, target: 'rtml log-sync=full', inspect: false });
    await runPaced({ client: pacedBare, path: BARE_PATH, rows, rate, durationS: 1, target: 'bare fastify', inspect: false });
    for (let rep = 0; rep < opts.reps; rep++) {
      const p = await runPaced({ client: pacedFull, path: DECISIONS_PATH, rows, rate, durationS: opts.halfLoadDurationS, target: 'rtml log-sync=full', inspect: true, stages });
      noteProblems(p, problems);
      paced.push(p);
      log(`rep ${rep + 1}/${opts.reps} paced @${rate}/s     got ${p.rps.toFixed(0)}/s  p50 ${p.latency.p50.toFixed(2)}  p99 ${p.latency.p99.toFixed(2)}  p99.9 ${p.latency.p999.toFixed(2)} ms`);
      const b = await runPaced({ client: pacedBare, path: BARE_PATH, rows, rate, durationS: opts.halfLoadDurationS, target: 'bare fastify', inspect: false });
      noteProblems(b, problems);
      bareAtRate.push(b);
      log(`rep ${rep + 1}/${opts.reps} bare paced @${rate}/s got ${b.rps.toFixed(0)}/s  p50 ${b.latency.p50.toFixed(2)}  p99 ${b.latency.p99.toFixed(2)}  p99.9 ${b.latency.p999.toFixed(2)} ms`);
      const a = await runCannon({ server: full, path: DECISIONS_PATH, rows, connections: opts.connections, durationS: opts.halfLoadDurationS, overallRate: rate, kind: 'autocannon-rate', target: 'rtml log-sync=full' });
      noteProblems(a, problems);
      cannonRate.push(a);
      log(`rep ${rep + 1}/${opts.reps} autocannon overallRate=${rate}  got ${a.rps.toFixed(0)}/s  p50 ${a.latency.p50.toFixed(2)}  p99 ${a.latency.p99.toFixed(2)}  p99.9 ${a.latency.p999.toFixed(2)} ms`);
    }
    const satNormal = summarize(runs.rtmlNormal);
    const rateNormal = Math.max(50, Math.round(satNormal.rps * opts.halfLoadFraction));
    await runPaced({ client: pacedNormal, path: DECISIONS_PATH, rows, rate: rateNormal, durationS: 1, target: 'rtml log-sync=normal', inspect: false });
    const normalRun = await runPaced({ client: pacedNormal, path: DECISIONS_PATH, rows, rate: rateNormal, durationS: opts.halfLoadDurationS, target: 'rtml log-sync=normal', inspect: true });
    pacedFull.close();
    pacedNormal.close();
    pacedBare.close();
    noteProblems(normalRun, problems);
    log(`paced @${rateNormal}/s rtml log-sync=normal  p50 ${normalRun.latency.p50.toFixed(2)}  p99 ${normalRun.latency.p99.toFixed(2)}  p99.9 ${normalRun.latency.p999.toFixed(2)} ms`);

    const stageStats: Record<string, StageStats> = {};
    for (const [k, v] of Object.entries(stages.byStage)) {
      const s = Float64Array.from(v).sort();
      stageStats[k] = { p50: pct(s, 50), p99: pct(s, 99) };
    }
    const outside = Float64Array.from(stages.outside).sort();

    // Stop the servers, then check each decision log against the 2xx answers received.
    for (const s of servers.splice(0)) {
      const code = await s.stop();
      if (code !== 0) problems.push(`${s.name} exited with ${code} on SIGTERM`);
    }
    const decisionLog: HttpBenchResult['decisionLog'] = [];
    for (const s of [full, normal]) {
      const db = new Database(join(s.dataDir!, 'decisions.sqlite'), { readonly: true });
      const n = (db.prepare('SELECT count(*) AS n FROM decisions').get() as { n: number }).n;
      db.close();
      // Requests in flight when a timed run ends are logged but their answers are not counted: rows >= answers.
      const ok = n >= s.answered2xx;
      decisionLog.push({ target: s.name, rows: n, answered2xx: s.answered2xx, ok });
      if (!ok) problems.push(`${s.name}: the decision log holds ${n} rows but ${s.answered2xx} decisions were answered 2xx`);
    }

    const ratio = { full: median(ratioFull), normal: median(ratioNormal), fullPerRep: ratioFull, normalPerRep: ratioNormal, overFastapi: median(ratioFastapi), overFastapiPerRep: ratioFastapi };
    const pacedSummary = summarize(paced);
    const targetsResult = {
      throughputRatio: { target: TARGET_THROUGHPUT_RATIO, value: ratio.full, pass: ratio.full >= TARGET_THROUGHPUT_RATIO },
      overFastapi: { target: TARGET_OVER_FASTAPI, value: ratio.overFastapi, pass: ratio.overFastapi >= TARGET_OVER_FASTAPI },
      halfLoadP99Ms: { target: TARGET_HALF_LOAD_P99_MS, value: pacedSummary.p99, pass: pacedSummary.p99 < TARGET_HALF_LOAD_P99_MS },
    };

    // 5. Profile when a target is missed (or asked for).
    const profiles: ProfileSummary[] = [];
    const missed = !targetsResult.throughputRatio.pass || !targetsResult.halfLoadP99Ms.pass || (fastapi !== null && !targetsResult.overFastapi.pass);
    if (opts.profile === 'always' || (opts.profile === 'auto' && missed)) {
      for (const sync of ['full', 'normal'] as const) {
        log(`profiling rtml --log-sync ${sync} (node --cpu-prof) under saturation load${missed ? ': a target was missed' : ''}`);
        try {
          profiles.push(await profileRtml(work, rows, opts, sync));
          keepWork = true;
        } catch (err) {
          problems.push(`profile (${sync}) failed: ${(err as Error).message.slice(0, 500)}`);
        }
      }
    }

    const cpuModel = cpus()[0]?.model ?? 'unknown';
    return {
      config: { reps: opts.reps, connections: opts.connections, durationS: opts.durationS, warmupS: opts.warmupS, halfLoadDurationS: opts.halfLoadDurationS, halfLoadFraction: opts.halfLoadFraction, rows: opts.rows, profile: opts.profile, uniqueIds: true, host: '127.0.0.1' },
      machine: { cpus: cpus().length, model: cpuModel, node: process.version, loadavgBefore: loadBefore, loadavgAfter: loadavg() },
      rowsUsed: rows.length,
      rowsRejected: candidates.length - rows.length,
      saturation: {
        bare: { runs: runs.bare, median: summarize(runs.bare) },
        rtmlFull: { runs: runs.rtmlFull, median: satFull },
        rtmlNormal: { runs: runs.rtmlNormal, median: satNormal },
        fastapi: fastapi && peerCheck ? { runs: runs.fastapi, median: summarize(runs.fastapi), check: peerCheck } : null,
      },
      ratio,
      halfLoad: {
        rate,
        paced: { runs: paced, median: pacedSummary },
        autocannonRate: { runs: cannonRate, median: summarize(cannonRate) },
        normalPaced: { rate: rateNormal, runs: [normalRun], median: summarize([normalRun]) },
        bare: { runs: bareAtRate, median: summarize(bareAtRate) },
        stages: stageStats,
        outsidePipeline: { p50: pct(outside, 50), p99: pct(outside, 99) },
      },
      decisionLog,
      budget: {
        throughput: cpuBudget(TARGET_THROUGHPUT_RATIO * summarize(runs.bare).rps, cpus().length, satFull, summarize(runs.bare)),
        overFastapi: fastapi && runs.fastapi.length > 0 ? cpuBudget(TARGET_OVER_FASTAPI * summarize(runs.fastapi).rps, cpus().length, satFull, summarize(runs.bare)) : null,
      },
      profiles,
      targets: targetsResult,
      problems,
      wallS: (performance.now() - T0) / 1000,
    };
  } finally {
    for (const s of servers) await s.stop().catch(() => undefined);
    // Keep only the CPU profiles (their paths are in the result); decision logs run to hundreds of MB.
    for (const entry of readdirSync(work)) if (!(keepWork && entry.startsWith('cpu-prof-'))) rmSync(join(work, entry), { recursive: true, force: true });
    if (!keepWork) rmSync(work, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Report

const f1 = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : 'n/a');
const f2 = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');
const f0 = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');
const pass = (ok: boolean) => (ok ? 'PASS' : 'FAIL');

export function formatHttpBench(r: HttpBenchResult): string {
  const c = r.config;
  const lines: string[] = [];
  const row = (label: string, s: Summary) =>
    `  ${label.padEnd(26)} ${f0(s.rps).padStart(8)} ${f2(s.p50).padStart(8)} ${f2(s.p99).padStart(8)} ${f2(s.p999).padStart(8)} ${f0(s.serverCpuUsPerReq).padStart(10)} ${f0(s.mainThreadUsPerReq).padStart(7)} ${f2(s.serverCores).padStart(6)} ${f2(s.clientCores).padStart(6)} ${String(s.non2xx).padStart(7)} ${String(s.errors).padStart(6)}`;
  const head = `  ${''.padEnd(26)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'p99.9 ms'.padStart(8)} ${'µs CPU/rq'.padStart(10)} ${'main µs'.padStart(7)} ${'server'.padStart(6)} ${'client'.padStart(6)} ${'non-2xx'.padStart(7)} ${'errors'.padStart(6)}`;
  lines.push(`HTTP benchmark: 127.0.0.1, ${r.machine.cpus} × ${r.machine.model}, Node ${r.machine.node}; load average ${r.machine.loadavgBefore.map((v) => v.toFixed(2)).join(' ')} before, ${r.machine.loadavgAfter.map((v) => v.toFixed(2)).join(' ')} after`);
  lines.push(`client (autocannon) in the bench process, each server in its own process, all on the same cores; medians of ${c.reps}`);
  lines.push(`bodies: ${r.rowsUsed} distinct lending_club rows (${r.rowsRejected} rejected by the preflight), unique id per request`);
  lines.push('');
  lines.push(`Saturation: ${c.connections} connections, ${c.durationS} s after ${c.warmupS} s warm-up; server CPU per answer from /proc (all threads; main µs: its main thread, the event loop); server/client: cores used`);
  lines.push(head);
  lines.push(row('bare fastify POST /bare', r.saturation.bare.median));
  lines.push(row('rtml  --log-sync full', r.saturation.rtmlFull.median));
  lines.push(row('rtml  --log-sync normal', r.saturation.rtmlNormal.median));
  const peer = r.saturation.fastapi;
  if (peer) lines.push(row('FastAPI + XGBoost (1 worker)', peer.median));
  lines.push(
    `  per repetition req/s: bare ${r.saturation.bare.runs.map((x) => f0(x.rps)).join(' / ')}; full ${r.saturation.rtmlFull.runs.map((x) => f0(x.rps)).join(' / ')}; normal ${r.saturation.rtmlNormal.runs.map((x) => f0(x.rps)).join(' / ')}` +
      (peer ? `; FastAPI ${peer.runs.map((x) => f0(x.rps)).join(' / ')}` : ''),
  );
  lines.push(`  rtml/bare throughput: full ${f2(r.ratio.full)} (per rep ${r.ratio.fullPerRep.map(f2).join(', ')}), normal ${f2(r.ratio.normal)} (per rep ${r.ratio.normalPerRep.map(f2).join(', ')})`);
  if (peer) {
    lines.push(`  rtml full/FastAPI throughput: ${f1(r.ratio.overFastapi)}x (per rep ${r.ratio.overFastapiPerRep.map(f1).join(', ')}); server CPU per decision FastAPI/rtml ${f1(peer.median.serverCpuUsPerReq / r.saturation.rtmlFull.median.serverCpuUsPerReq)}x`);
    lines.push(`  FastAPI peer (bench/fastapi_peer.py: pydantic validation, the bundle's encoding, xgboost inplace_predict, the policy's bands; no rules, reasons, log or monitors) vs rtml on ${peer.check.rows} rows: max |score diff| ${peer.check.maxScoreDiff.toExponential(2)}, same decision ${peer.check.sameDecision}/${peer.check.rows} (the others: rtml's rules)`);
  }
  lines.push('');
  const h = r.halfLoad;
  lines.push(`Half load: ${f0(h.rate)} req/s offered (${Math.round(c.halfLoadFraction * 100)}% of rtml full saturation), ${c.halfLoadDurationS} s per run`);
  lines.push(head);
  lines.push(row('rtml full, paced open loop', h.paced.median));
  lines.push(row('rtml full, autocannon rate', h.autocannonRate.median));
  if (h.normalPaced) lines.push(row(`rtml normal, paced @${f0(h.normalPaced.rate)}`, h.normalPaced.median));
  lines.push(row('bare fastify, paced', h.bare.median));
  lines.push(`  paced p99 per rep: ${h.paced.runs.map((x) => f2(x.latency.p99)).join(', ')} ms (from due time); from actual send: p50 ${f2(median(h.paced.runs.map((x) => x.serviceLatency!.p50)))} p99 ${f2(median(h.paced.runs.map((x) => x.serviceLatency!.p99)))} ms`);
  lines.push(`  autocannon overallRate sends each connection's per-second quota back to back, then idles: bursts at full concurrency, so its latency is near saturation latency`);
  const st = Object.entries(h.stages).map(([k, v]) => `${k} ${f2(v.p50)}/${f2(v.p99)}`).join(', ');
  lines.push(`  server stages p50/p99 ms (timings_ms): ${st}; outside the pipeline (HTTP, fastify, JSON, client) ${f2(h.outsidePipeline.p50)}/${f2(h.outsidePipeline.p99)}`);
  lines.push('');
  for (const [what, b] of [['0.4x bare', r.budget.throughput], ['10x FastAPI', r.budget.overFastapi]] as const) {
    if (b) lines.push(budgetLine(what, b));
  }
  lines.push('');
  lines.push(`Decision log rows vs 2xx answers: ${r.decisionLog.map((d) => `${d.target} ${d.rows} rows >= ${d.answered2xx} answers ${d.ok ? 'ok' : 'MISMATCH'}`).join('; ')}`);
  lines.push('');
  const t = r.targets;
  lines.push(`Targets: rtml/bare throughput ${f2(t.throughputRatio.value)} >= ${t.throughputRatio.target}: ${pass(t.throughputRatio.pass)}; rtml/FastAPI ${f1(t.overFastapi.value)}x >= ${t.overFastapi.target}x: ${peer ? pass(t.overFastapi.pass) : 'not measured'}; p99 at half load ${f2(t.halfLoadP99Ms.value)} ms < ${t.halfLoadP99Ms.target} ms: ${pass(t.halfLoadP99Ms.pass)}`);
  for (const p of r.profiles) {
    lines.push('');
    lines.push(`CPU profile of ${p.target}: ${f0(p.rps)} req/s, ${f0(p.sampledMs)} ms of main thread sampled over ${f0(p.requests)} answers${p.file ? ` (${p.file})` : ''}`);
    lines.push(`  ${'component (a builtin or native call counts for its JS caller)'.padEnd(62)} ${'share'.padStart(6)} ${'µs/req'.padStart(7)}`);
    for (const comp of p.components) lines.push(`  ${comp.name.padEnd(62)} ${f1(comp.share * 100).padStart(5)}% ${f1(comp.usPerReq).padStart(7)}`);
    lines.push('  top functions by self time:');
    for (const fn of p.topFunctions.slice(0, 12)) lines.push(`  ${f1(fn.share * 100).padStart(5)}% ${f1(fn.usPerReq).padStart(6)} µs/req  ${fn.name}  ${fn.where}`);
  }
  endReport(lines, r.problems, r.wallS);
  return lines.join('\n');
}

/** What a throughput target leaves rtml per decision, in one line. */
export function budgetLine(what: string, b: CpuBudget): string {
  return (
    `CPU budget for ${what} (${f0(b.rate)}/s): the load generator takes ${f0(b.clientUsPerReq)} µs/request, so the server may spend ${f0(b.serverUsPerDecision)} µs/decision on ${b.cores} cores; ` +
    `rtml spends ${f0(b.rtmlUsPerDecision)} (${f2(b.rtmlUsPerDecision / Math.max(1, b.serverUsPerDecision))}x), the bare route alone ${f0(b.bareUsPerReq)}; ` +
    `rtml's main thread, one core at most, may spend ${f0(b.mainThreadUsLimit)} µs/decision and spends ${f0(b.rtmlMainThreadUsPerDecision)} (${f2(b.rtmlMainThreadUsPerDecision / b.mainThreadUsLimit)}x)`
  );
}

/** A report's last lines: anything unexpected, and the wall time. */
export function endReport(lines: string[], problems: readonly string[], wallS: number): void {
  if (problems.length > 0) {
    lines.push('');
    lines.push('Problems:');
    for (const p of problems) lines.push(`  - ${p}`);
  }
  lines.push('');
  lines.push(`wall time ${f1(wallS)} s`);
}

// ---------------------------------------------------------------------------------------------
// Command line

/**
 * A bench's command line: `option(name, value, num)` applies one option and says whether it
 * knew it (`value()` takes the next argument, `num()` the next as a positive number);
 * `--json FILE` is common to all.
 */
export function parseBenchArgs(argv: string[], option: (name: string, value: () => string, num: () => number) => boolean): { json: string | null } {
  let json: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => argv[++i];
    const num = () => {
      const v = Number(value());
      if (!(v > 0)) throw new Error(`${a} needs a positive number`);
      return v;
    };
    if (a === '--json') json = value();
    else if (!option(a, value, num)) throw new Error(`unknown option ${a}`);
  }
  return { json };
}

function parseArgs(argv: string[]): { options: Partial<HttpBenchOptions>; json: string | null } {
  const options: Partial<HttpBenchOptions> = {};
  const { json } = parseBenchArgs(argv, (a, _value, num) => {
    if (a === '--reps') options.reps = Math.round(num());
    else if (a === '--duration') options.durationS = num();
    else if (a === '--warmup') options.warmupS = num();
    else if (a === '--half-duration') options.halfLoadDurationS = num();
    else if (a === '--connections') options.connections = Math.round(num());
    else if (a === '--rows') options.rows = Math.round(num());
    else if (a === '--profile') options.profile = 'always';
    else if (a === '--no-profile') options.profile = 'never';
    else if (a === '--quick') Object.assign(options, { reps: 1, durationS: 4, warmupS: 1, halfLoadDurationS: 3 });
    else return false;
    return true;
  });
  return { options, json };
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const { options, json } = parseArgs(process.argv.slice(2));
  const result = await benchHttp(options);
  process.stdout.write(formatHttpBench(result) + '\n');
  if (json) writeFileSync(json, JSON.stringify(result, null, 2) + '\n');
}
