/**
 * Compiled JavaScript (dist/) against the TypeScript sources through tsx, for the real
 * `rtml serve examples` process (bin/rtml.mjs with RTML_RUNTIME=dist or =source):
 *   - start-up: from spawning the process to the first 200 of /v2/health/ready (both services
 *     loaded, listening), each run in a fresh process on a fresh --data-dir;
 *   - run time: credit decisions/s at saturation (autocannon, as `--only http` does) and the
 *     server's CPU per decision, on one server of each kind.
 * Runs alternate (dist, source, dist, ...) so a noisy neighbour hits both alike; medians.
 *
 *     node --import tsx bench/startup.ts [--reps N]     or: npm run bench -- --only startup
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { median } from './common.ts';
import { DECISIONS_PATH, freePort, loadRows, parseBenchArgs, preflight, runCannon, sleep, startRtml } from './http.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const RUNTIMES = ['dist', 'source'] as const;
type Runtime = (typeof RUNTIMES)[number];

export interface StartupBench {
  reps: number;
  /** Milliseconds from spawn to ready, per run. */
  readyMs: Record<Runtime, number[]>;
  medianReadyMs: Record<Runtime, number>;
  /** Saturation decisions/s and server CPU µs per decision, per repetition. */
  decisionsPerSec: Record<Runtime, number[]>;
  cpuUsPerDecision: Record<Runtime, number[]>;
  loadavgStart: number[];
  loadavgEnd: number[];
}

/** Spawns `rtml serve examples` with RTML_RUNTIME=`runtime` and times it to its first ready 200. */
async function timeToReady(runtime: Runtime): Promise<number> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'rtml-bench-startup-'));
  const t0 = performance.now();
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'rtml.mjs'), 'serve', join(ROOT, 'examples'), '--port', String(port), '--data-dir', dataDir, '--log-level', 'warn'], {
    cwd: ROOT,
    env: { ...process.env, RTML_RUNTIME: runtime, RTML_ADMIN_TOKEN: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`rtml serve (${runtime}) exited ${child.exitCode} before ready:\n${stderr}`);
      if (performance.now() - t0 > 60_000) throw new Error(`rtml serve (${runtime}) not ready within 60 s:\n${stderr}`);
      try {
        const res = await fetch(`http://127.0.0.1:${port}/v2/health/ready`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        if (res.status === 200) return performance.now() - t0;
      } catch {
        // not listening yet
      }
      await sleep(10);
    }
  } finally {
    child.kill('SIGTERM');
    await exited;
    rmSync(dataDir, { recursive: true, force: true });
  }
}

export async function benchStartup(options: { reps?: number; saturationS?: number; log?: (line: string) => void } = {}): Promise<StartupBench> {
  const reps = options.reps ?? 5;
  const saturationS = options.saturationS ?? 5;
  const log = options.log ?? ((line: string) => process.stderr.write(`[startup] ${line}\n`));
  if (!existsSync(join(ROOT, 'dist', '.built'))) throw new Error('dist/ is not built: npm run build');
  const loadavgStart = loadavg();
  const readyMs: Record<Runtime, number[]> = { dist: [], source: [] };
  await timeToReady('source'); // the first run warms the file cache for both
  for (let rep = 0; rep < reps; rep++) {
    for (const runtime of RUNTIMES) {
      const ms = await timeToReady(runtime);
      readyMs[runtime].push(ms);
      log(`rep ${rep + 1}/${reps} ${runtime.padEnd(6)} ready in ${ms.toFixed(0)} ms`);
    }
  }

  const decisionsPerSec: Record<Runtime, number[]> = { dist: [], source: [] };
  const cpuUsPerDecision: Record<Runtime, number[]> = { dist: [], source: [] };
  const work = mkdtempSync(join(tmpdir(), 'rtml-bench-startup-http-'));
  const servers = [];
  try {
    const problems: string[] = [];
    const before = process.env.RTML_RUNTIME;
    const started: Partial<Record<Runtime, Awaited<ReturnType<typeof startRtml>>>> = {};
    for (const runtime of RUNTIMES) {
      process.env.RTML_RUNTIME = runtime; // startRtml passes this process's environment on
      started[runtime] = await startRtml(work, `rtml-${runtime}`, 'full');
      servers.push(started[runtime]);
    }
    if (before === undefined) delete process.env.RTML_RUNTIME;
    else process.env.RTML_RUNTIME = before;
    const rows = await preflight(started.dist!, loadRows(500), problems);
    await preflight(started.source!, rows.slice(0, 100), problems);
    for (let rep = 0; rep < 3; rep++) {
      for (const runtime of RUNTIMES) {
        const server = started[runtime]!;
        const spec = { server, path: DECISIONS_PATH, rows, connections: 32, kind: 'saturation' as const, target: runtime };
        await runCannon({ ...spec, durationS: 1 });
        const run = await runCannon({ ...spec, durationS: saturationS });
        decisionsPerSec[runtime].push(run.rps);
        cpuUsPerDecision[runtime].push(run.serverCpuUsPerReq);
        log(`rep ${rep + 1}/3 ${runtime.padEnd(6)} ${run.rps.toFixed(0)} decisions/s, ${run.serverCpuUsPerReq.toFixed(0)} µs server CPU per decision`);
      }
    }
    if (problems.length > 0) log(`problems: ${problems.join('; ')}`);
  } finally {
    for (const s of servers) await s.stop();
    rmSync(work, { recursive: true, force: true });
  }
  return {
    reps,
    readyMs,
    medianReadyMs: { dist: median(readyMs.dist), source: median(readyMs.source) },
    decisionsPerSec,
    cpuUsPerDecision,
    loadavgStart,
    loadavgEnd: loadavg(),
  };
}

export function formatStartupBench(r: StartupBench): string {
  const ms = (v: readonly number[]) => v.map((x) => x.toFixed(0)).join(' / ');
  const d = r.medianReadyMs;
  const rpsD = median(r.decisionsPerSec.dist);
  const rpsS = median(r.decisionsPerSec.source);
  return [
    `rtml serve examples, spawn to first ready 200 (medians of ${r.reps}, alternating; load average ${r.loadavgStart.map((v) => v.toFixed(2)).join(' ')} at start, ${r.loadavgEnd.map((v) => v.toFixed(2)).join(' ')} at end)`,
    `  compiled (dist/)   ${d.dist.toFixed(0).padStart(6)} ms   runs ${ms(r.readyMs.dist)}`,
    `  sources via tsx    ${d.source.toFixed(0).padStart(6)} ms   runs ${ms(r.readyMs.source)}`,
    `  tsx/compiled start-up ${(d.source / d.dist).toFixed(2)}x`,
    `credit decisions at saturation (autocannon, 32 connections, log FULL, medians of 3): compiled ${rpsD.toFixed(0)}/s, ${median(r.cpuUsPerDecision.dist).toFixed(0)} µs CPU each; ` +
      `tsx ${rpsS.toFixed(0)}/s, ${median(r.cpuUsPerDecision.source).toFixed(0)} µs CPU each; compiled/tsx ${(rpsD / rpsS).toFixed(2)}x`,
  ].join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  let reps: number | undefined;
  parseBenchArgs(process.argv.slice(2), (a, _value, num) => {
    if (a !== '--reps') return false;
    reps = Math.round(num());
    return true;
  });
  process.stdout.write(`${formatStartupBench(await benchStartup({ reps }))}\n`);
}
