/**
 * Overload benchmark: does `rtml serve` answer every request, 200 or 503 + Retry-After, when
 * far more is asked of it than it can do, and does its health stay answerable meanwhile?
 *
 *     node --import tsx bench/overload.ts [--connections 2000] [--factor 3] [--duration 20]
 *                                         [--serve-args "--max-in-flight 512 ..."] [--json FILE]
 *
 * or `npm run bench -- --only overload`.
 *
 *  1. Saturation: autocannon with 32 connections (2 s warm-up, 5 s timed) on the credit example
 *     at `--log-sync full`: the 2xx throughput rtml sustains on this machine today.
 *  2. Overload: `factor` x that rate offered by autocannon over `connections` connections
 *     (opened at once), for `duration` seconds, 10 s client timeout. Every answer's status and
 *     Retry-After are counted; latency is autocannon's per-request time (from the write of a
 *     request to its answer, so queueing in the server shows; waiting in the client does not).
 *     Meanwhile a separate process probes `/v2/health/live` and `/v2/health/ready` every
 *     100 ms, each on a new connection (as a load balancer would), open loop, both on the main
 *     port and on the probe port (`--probe-port`), and the server's RSS is sampled every
 *     100 ms from /proc. The server's own event-loop lag and its 503s by reason come from
 *     /metrics (scraped before and after), the kernel's accept-queue overflows from
 *     /proc/net/netstat.
 *  3. After: the server stops on SIGTERM (its exit code is reported) and its decision log must
 *     hold a row for every 2xx the bench received.
 *
 * Client and server share the machine's cores: compare runs made in the same conditions,
 * not absolute figures. About a minute.
 */
import autocannon from 'autocannon';
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DECISIONS_PATH, endReport, freePort, latencyStats, loadRows, parseBenchArgs, preflight, runCannon, sleep, startRtml, type LatencyStats, type ServerProcess } from './http.ts';

const HEALTH_PATHS = ['/v2/health/live', '/v2/health/ready'] as const;
const PROBE_INTERVAL_MS = 100;
const CLIENT_TIMEOUT_S = 10;

export interface OverloadBenchOptions {
  /** Connections opened at once for the overload run (default 2000). */
  connections: number;
  /** Offered rate as a multiple of the measured saturation throughput (default 3); 0: closed loop, each connection sends as fast as it is answered. */
  factor: number;
  /** Seconds of overload (default 20). */
  durationS: number;
  /** Extra `rtml serve` arguments, e.g. to compare settings. */
  serveArgs: string[];
  /** Also probe on a port of their own (`--probe-port`; default true; false to measure a server without one). */
  probePort: boolean;
  log: (msg: string) => void;
}

interface HealthProbe {
  /** 'main': the port scoring traffic uses; 'probe port': `rtml serve --probe-port`. */
  port: 'main' | 'probe port';
  path: string;
  /** Milliseconds from the connect to the end of the answer (or the failure). */
  ms: number;
  status: number;
  /** Error code when no answer came. */
  error: string | null;
}

export interface HealthSummary {
  port: HealthProbe['port'];
  probes: number;
  answered200: number;
  failures: string[];
  latency: LatencyStats;
}

export interface OverloadBenchResult {
  machine: { cpus: number; model: string; node: string; loadavgBefore: number[]; loadavgAfter: number[] };
  serveArgs: string[];
  saturation: { rps: number; p50: number; p99: number };
  overload: {
    connections: number;
    /** null: closed loop. */
    offeredRps: number | null;
    durationS: number;
    answers: number;
    ok2xx: number;
    /** 2xx per second during the overload. */
    okRps: number;
    status503WithRetryAfter: number;
    status503WithoutRetryAfter: number;
    otherStatuses: Record<string, number>;
    timeouts: number;
    /** Socket errors other than timeouts (resets, refused connections). */
    socketErrors: number;
    latency2xx: LatencyStats;
    latency503: LatencyStats;
    /** The server's event-loop lag over the run (prom-client's histogram; includes its 10 ms period) and its 503s by reason. */
    server: { lagP99Ms: number; lagMaxMs: number; refusals: Record<string, number> };
    /** This process's (the load generator's) event-loop lag: latency it adds to every figure. */
    client: { lagP99Ms: number; lagMaxMs: number };
  };
  /** Probes on the main port and on the probe port. */
  health: HealthSummary[];
  rssMiB: { before: number; peak: number; after: number };
  /** Increase of the kernel's TCP counters over the overload run (system-wide: other processes count too). */
  tcp: TcpCounters;
  shutdown: { exitCode: number | null; logRows: number; answered2xx: number; ok: boolean };
  problems: string[];
  wallS: number;
}

const DEFAULTS: OverloadBenchOptions = {
  connections: 2000,
  factor: 3,
  durationS: 20,
  serveArgs: [],
  probePort: true,
  log: (msg) => process.stderr.write(`[overload ${((performance.now() - T0) / 1000).toFixed(0).padStart(3)}s] ${msg}\n`),
};
let T0 = performance.now();

/** Resident set size of a process in MiB (Linux /proc), NaN elsewhere. */
function rssMiB(pid: number | undefined): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

// (The abort counters are left out: the load generator's own teardown of 2,000 connections moves them.)
const TCP_COUNTERS = ['ListenOverflows', 'TCPSynRetrans'] as const;
type TcpCounters = Record<(typeof TCP_COUNTERS)[number], number>;

/** The kernel's TCP counters that show an overflowing accept queue (system-wide, Linux). */
function tcpCounters(): TcpCounters {
  const out = Object.fromEntries(TCP_COUNTERS.map((k) => [k, NaN])) as TcpCounters;
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n');
    const names = lines[0].split(' ');
    const values = lines[1].split(' ');
    for (const k of TCP_COUNTERS) out[k] = Number(values[names.indexOf(k)]);
  } catch {
    // not Linux: NaN
  }
  return out;
}

/** The server's own view from /metrics: its event-loop lag since the last scrape (prom-client resets it), and its 503s by reason. */
async function scrape(url: string): Promise<{ lagP99Ms: number; lagMaxMs: number; refusals: Record<string, number> }> {
  const text = await (await fetch(url + '/metrics', { signal: AbortSignal.timeout(CLIENT_TIMEOUT_S * 1000) })).text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  const refusals: Record<string, number> = {};
  for (const m of text.matchAll(/^rtml_overload_rejections_total(?:\{reason="(\w+)"\})? (\S+)$/gm)) refusals[m[1] ?? 'all'] = Number(m[2]);
  return { lagP99Ms: value('rtml_process_nodejs_eventloop_lag_p99_seconds') * 1000, lagMaxMs: value('rtml_process_nodejs_eventloop_lag_max_seconds') * 1000, refusals };
}

/** Request lists for the overload run: a few shared lists (2,000 private ones would hold ~500 MB of bodies). */
function overloadRequests(rows: string[], onAnswer: (status: number, retryAfter: boolean) => void): autocannon.Request[][] {
  const lists = 64;
  const perList = 16;
  // autocannon passes the header names as the server sent them; rtml sends them lower case.
  const onResponse = (status: number, _body: string, _context: object, headers: IncomingHttpHeaders | undefined) => onAnswer(status, headers?.['retry-after'] !== undefined);
  return Array.from({ length: lists }, (_, k) =>
    Array.from({ length: perList }, (_, j) => ({
      method: 'POST' as const,
      path: DECISIONS_PATH,
      headers: { 'content-type': 'application/json' },
      body: `{"id":"ov-[<id>]",${rows[(k * perList + j) % rows.length].slice(1)}`,
      onResponse,
    })),
  );
}

interface OverloadRun {
  answers: number;
  ok2xx: number;
  with503RetryAfter: number;
  without503RetryAfter: number;
  other: Record<string, number>;
  timeouts: number;
  socketErrors: number;
  latency2xx: number[];
  latency503: number[];
  durationS: number;
}

function runOverload(server: ServerProcess, rows: string[], connections: number, rate: number | undefined, durationS: number): Promise<OverloadRun> {
  const run: OverloadRun = { answers: 0, ok2xx: 0, with503RetryAfter: 0, without503RetryAfter: 0, other: {}, timeouts: 0, socketErrors: 0, latency2xx: [], latency503: [], durationS };
  const lists = overloadRequests(rows, (status, retryAfter) => {
    run.answers++;
    if (status >= 200 && status < 300) run.ok2xx++;
    else if (status === 503 && retryAfter) run.with503RetryAfter++;
    else if (status === 503) run.without503RetryAfter++;
    else run.other[status] = (run.other[status] ?? 0) + 1;
  });
  let nextList = 0;
  return new Promise((done, fail) => {
    const instance = autocannon(
      {
        url: server.url + DECISIONS_PATH,
        method: 'POST',
        connections,
        overallRate: rate,
        duration: durationS,
        timeout: CLIENT_TIMEOUT_S,
        idReplacement: true,
        requests: lists[0],
        setupClient: (client) => client.setRequests(lists[nextList++ % lists.length]),
      },
      (err, result) => {
        if (err) return fail(err);
        run.timeouts = result.timeouts;
        run.socketErrors = result.errors - result.timeouts;
        run.durationS = result.duration > 0 ? result.duration : durationS;
        server.answered2xx += run.ok2xx;
        done(run);
      },
    );
    instance.on('response', (_client, status, _bytes, ms) => {
      if (status >= 200 && status < 300) run.latency2xx.push(ms);
      else if (status === 503) run.latency503.push(ms);
    });
  });
}

/** Health probes from their own process, so the load generator's busy event loop does not delay them. */
function startProber(mainUrl: string, probeUrl: string | null): { stop(): Promise<HealthProbe[]> } {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--probe', mainUrl, ...(probeUrl ? [probeUrl] : [])], { stdio: ['pipe', 'pipe', 'inherit'] });
  const result = new Promise<HealthProbe[]>((done, fail) => {
    const lines: string[] = [];
    createInterface({ input: child.stdout! }).on('line', (line) => lines.push(line));
    child.once('exit', (code) => (code === 0 ? done(JSON.parse(lines.join('')) as HealthProbe[]) : fail(new Error(`health prober exited with ${code}`))));
  });
  return {
    stop() {
      child.stdin!.end(); // the prober stops probing when its stdin closes
      return result;
    },
  };
}

/** The prober process: every PROBE_INTERVAL_MS one probe per port, alternating paths, each on a new connection; prints JSON once stdin closes. */
async function probe(mainUrl: string, probeUrl: string | undefined): Promise<void> {
  const probes: HealthProbe[] = [];
  const pending = new Set<Promise<void>>();
  let n = 0;
  const once = (port: HealthProbe['port'], url: string, path: string) =>
    new Promise<void>((done) => {
      const t0 = performance.now();
      const finish = (status: number, error: string | null) => {
        probes.push({ port, path, ms: performance.now() - t0, status, error });
        done();
      };
      const req = http.get(url + path, { agent: false, timeout: CLIENT_TIMEOUT_S * 1000 }, (res) => {
        res.resume();
        res.on('end', () => finish(res.statusCode ?? 0, null));
        res.on('error', (err: NodeJS.ErrnoException) => finish(0, err.code ?? err.message));
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
      req.on('error', (err: NodeJS.ErrnoException) => finish(0, err.code ?? err.message));
    });
  const timer = setInterval(() => {
    const path = HEALTH_PATHS[n++ % HEALTH_PATHS.length];
    for (const p of [once('main', mainUrl, path), ...(probeUrl ? [once('probe port', probeUrl, path)] : [])]) {
      pending.add(p);
      void p.then(() => pending.delete(p));
    }
  }, PROBE_INTERVAL_MS);
  process.stdin.resume();
  await new Promise((done) => process.stdin.once('end', done));
  clearInterval(timer);
  await Promise.all(pending);
  process.stdout.write(JSON.stringify(probes) + '\n');
}

function healthSummary(all: HealthProbe[], port: HealthProbe['port']): HealthSummary {
  const probes = all.filter((p) => p.port === port);
  const failed = probes.filter((p) => p.status !== 200);
  return {
    port,
    probes: probes.length,
    answered200: probes.length - failed.length,
    failures: failed.slice(0, 5).map((p) => `${p.path}: ${p.error ?? p.status} after ${p.ms.toFixed(0)} ms`),
    latency: latencyStats(probes.map((p) => p.ms)),
  };
}

export async function benchOverload(options: Partial<OverloadBenchOptions> = {}): Promise<OverloadBenchResult> {
  const opts: OverloadBenchOptions = { ...DEFAULTS, ...options };
  const log = opts.log;
  T0 = performance.now();
  const loadBefore = loadavg();
  const problems: string[] = [];
  const work = mkdtempSync(join(tmpdir(), 'rtml-bench-overload-'));
  let server: ServerProcess | null = null;
  try {
    log(`starting rtml --log-sync full ${opts.serveArgs.join(' ')}; scratch ${work}`);
    const probePort = opts.probePort ? await freePort() : null;
    server = await startRtml(work, 'rtml', 'full', [], [...(probePort ? ['--probe-port', String(probePort)] : []), ...opts.serveArgs]);
    const rows = await preflight(server, loadRows(2000), problems);
    if (rows.length === 0) throw new Error(`no lending_club row was answered 200 by rtml:\n${problems.join('\n')}`);

    const base = { server, path: DECISIONS_PATH, rows, connections: 32, kind: 'saturation' as const, target: 'rtml' };
    await runCannon({ ...base, durationS: 2 });
    const sat = await runCannon({ ...base, durationS: 5 });
    if (sat.non2xx > 0 || sat.errors > 0) problems.push(`saturation run: ${sat.non2xx} non-2xx, ${sat.errors} socket errors`);
    log(`saturation: ${sat.rps.toFixed(0)} req/s, p50 ${sat.latency.p50.toFixed(2)} ms, p99 ${sat.latency.p99.toFixed(2)} ms`);

    const rate = opts.factor > 0 ? Math.round(sat.rps * opts.factor) : undefined;
    const pid = server.child.pid;
    const rssBefore = rssMiB(pid);
    let rssPeak = rssBefore;
    const rssTimer = setInterval(() => (rssPeak = Math.max(rssPeak, rssMiB(pid) || 0)), 100);
    await scrape(server.url);
    const clientLag = monitorEventLoopDelay({ resolution: 10 });
    clientLag.enable();
    const tcp0 = tcpCounters();
    const prober = startProber(server.url, probePort ? `http://127.0.0.1:${probePort}` : null);
    await sleep(500); // the prober's first probes see the server before the load
    log(`overload: ${rate ? `${rate} req/s offered (${opts.factor}x)` : 'closed loop'} over ${opts.connections} connections for ${opts.durationS} s`);
    const run = await runOverload(server, rows, opts.connections, rate, opts.durationS);
    clientLag.disable();
    const serverView = await scrape(server.url);
    await sleep(2000); // then the server settles
    clearInterval(rssTimer);
    const rssAfter = rssMiB(pid);
    const probes = await prober.stop();
    const health = [healthSummary(probes, 'main'), ...(probePort ? [healthSummary(probes, 'probe port')] : [])];
    const tcp1 = tcpCounters();
    const tcp = Object.fromEntries(TCP_COUNTERS.map((k) => [k, tcp1[k] - tcp0[k]])) as TcpCounters;

    const exitCode = await server.stop();
    const db = new Database(join(server.dataDir!, 'decisions.sqlite'), { readonly: true });
    const logRows = (db.prepare('SELECT count(*) AS n FROM decisions').get() as { n: number }).n;
    db.close();
    // Requests in flight when the run ends are logged but their answers are not counted: rows >= answers.
    const shutdown = { exitCode, logRows, answered2xx: server.answered2xx, ok: exitCode === 0 && logRows >= server.answered2xx };
    if (!shutdown.ok) problems.push(`shutdown: exit ${exitCode}, ${logRows} log rows for ${server.answered2xx} 2xx answers`);
    server = null;

    const o: OverloadBenchResult['overload'] = {
      connections: opts.connections,
      offeredRps: rate ?? null,
      durationS: run.durationS,
      answers: run.answers,
      ok2xx: run.ok2xx,
      okRps: run.ok2xx / run.durationS,
      status503WithRetryAfter: run.with503RetryAfter,
      status503WithoutRetryAfter: run.without503RetryAfter,
      otherStatuses: run.other,
      timeouts: run.timeouts,
      socketErrors: run.socketErrors,
      latency2xx: latencyStats(run.latency2xx),
      latency503: latencyStats(run.latency503),
      server: serverView,
      client: { lagP99Ms: clientLag.percentile(99) / 1e6, lagMaxMs: clientLag.max / 1e6 },
    };
    if (o.timeouts + o.socketErrors > 0) problems.push(`overload: ${o.timeouts} timeouts and ${o.socketErrors} socket errors`);
    if (o.status503WithoutRetryAfter > 0 || Object.keys(o.otherStatuses).length > 0) problems.push(`overload: ${o.status503WithoutRetryAfter} 503s without Retry-After, other statuses ${JSON.stringify(o.otherStatuses)}`);
    for (const h of health) if (h.answered200 < h.probes) problems.push(`health on the ${h.port}: ${h.probes - h.answered200} of ${h.probes} probes not answered 200`);
    return {
      machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', node: process.version, loadavgBefore: loadBefore, loadavgAfter: loadavg() },
      serveArgs: opts.serveArgs,
      saturation: { rps: sat.rps, p50: sat.latency.p50, p99: sat.latency.p99 },
      overload: o,
      health,
      rssMiB: { before: rssBefore, peak: rssPeak, after: rssAfter },
      tcp,
      shutdown,
      problems,
      wallS: (performance.now() - T0) / 1000,
    };
  } finally {
    if (server) await server.stop().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
}

const f0 = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');
const f1 = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : 'n/a');

export function formatOverloadBench(r: OverloadBenchResult): string {
  const o = r.overload;
  const lines: string[] = [];
  lines.push(`Overload: 127.0.0.1, ${r.machine.cpus} x ${r.machine.model}, Node ${r.machine.node}; load average ${r.machine.loadavgBefore.map((v) => v.toFixed(2)).join(' ')} before, ${r.machine.loadavgAfter.map((v) => v.toFixed(2)).join(' ')} after; client and server share the cores`);
  lines.push(`rtml serve --log-sync full ${r.serveArgs.join(' ')}`.trimEnd());
  lines.push(`saturation (32 connections): ${f0(r.saturation.rps)} 2xx/s, p50 ${f1(r.saturation.p50)} ms, p99 ${f1(r.saturation.p99)} ms`);
  lines.push(`overload: ${o.offeredRps === null ? 'closed loop' : `${f0(o.offeredRps)} req/s offered`} over ${f0(o.connections)} connections for ${f1(o.durationS)} s (client timeout ${CLIENT_TIMEOUT_S} s)`);
  lines.push(`  answers ${f0(o.answers)}: 2xx ${f0(o.ok2xx)} (${f0(o.okRps)}/s), 503 with Retry-After ${f0(o.status503WithRetryAfter)}, 503 without ${f0(o.status503WithoutRetryAfter)}, other ${JSON.stringify(o.otherStatuses)}`);
  lines.push(`  timeouts ${f0(o.timeouts)}, socket errors ${f0(o.socketErrors)}`);
  lines.push(`  latency 2xx p50 ${f1(o.latency2xx.p50)} / p99 ${f1(o.latency2xx.p99)} / max ${f1(o.latency2xx.max)} ms; 503 p50 ${f1(o.latency503.p50)} / p99 ${f1(o.latency503.p99)} / max ${f1(o.latency503.max)} ms`);
  lines.push(`  server event-loop lag p99 ${f1(o.server.lagP99Ms)} / max ${f1(o.server.lagMaxMs)} ms (10 ms period included); 503s by reason ${JSON.stringify(o.server.refusals)}; load generator's own lag p99 ${f1(o.client.lagP99Ms)} / max ${f1(o.client.lagMaxMs)} ms`);
  lines.push(`health probes (/v2/health/live and /ready alternately, each on a new connection, every ${PROBE_INTERVAL_MS} ms):`);
  for (const h of r.health) {
    lines.push(`  ${h.port.padEnd(10)} ${h.answered200}/${h.probes} answered 200; p50 ${f1(h.latency.p50)} ms, p99 ${f1(h.latency.p99)} ms, max ${f1(h.latency.max)} ms`);
    for (const f of h.failures) lines.push(`    failed: ${f}`);
  }
  lines.push(`server RSS: ${f1(r.rssMiB.before)} MiB before, ${f1(r.rssMiB.peak)} MiB peak, ${f1(r.rssMiB.after)} MiB 2 s after`);
  lines.push(`kernel TCP counters over the run (system-wide): ${Object.entries(r.tcp).map(([k, v]) => `${k} +${f0(v)}`).join(', ')}`);
  lines.push(`SIGTERM: exit ${r.shutdown.exitCode}; decision log ${f0(r.shutdown.logRows)} rows for ${f0(r.shutdown.answered2xx)} 2xx answers${r.shutdown.ok ? '' : ' MISMATCH'}`);
  endReport(lines, r.problems, r.wallS);
  return lines.join('\n');
}

function parseArgs(argv: string[]): { options: Partial<OverloadBenchOptions>; json: string | null } {
  const options: Partial<OverloadBenchOptions> = {};
  const { json } = parseBenchArgs(argv, (a, value, num) => {
    if (a === '--connections') options.connections = Math.round(num());
    else if (a === '--factor') options.factor = Number(value());
    else if (a === '--duration') options.durationS = num();
    else if (a === '--serve-args') options.serveArgs = value().split(/\s+/).filter(Boolean);
    else if (a === '--no-probe-port') options.probePort = false;
    else return false;
    return true;
  });
  return { options, json };
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  if (process.argv[2] === '--probe') {
    await probe(process.argv[3], process.argv[4]);
  } else {
    const { options, json } = parseArgs(process.argv.slice(2));
    const result = await benchOverload(options);
    process.stdout.write(formatOverloadBench(result) + '\n');
    if (json) writeFileSync(json, JSON.stringify(result, null, 2) + '\n');
  }
}
