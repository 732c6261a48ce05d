/**
 * Replay throughput and memory on a million logged decisions (`npm run bench -- --only replay`,
 * or `node --import tsx bench/replay.ts [N]`).
 *
 * The log: the 9,857 lending_club loans decided by the server's own decide() (the credit
 * example, v1) into a throwaway log, then those records appended again under new ids and times
 * until there are N (default 1,000,000), every 10th with its loan's real outcome. Then, each in
 * a fresh `rtml replay` process under /usr/bin/time (peak RSS): the candidate v2 on the first
 * 10% of the log and on all of it (memory bounded: the peak should barely move), and the
 * baseline in the same run: reading the same pages without re-deciding (`scan` alone), so the
 * ratio says what re-deciding costs over reading the log. Last, the whole log again with V8's
 * old space capped at 64 MB: it completes only if the heap does not grow with the log (RSS
 * alone also counts what V8 keeps because it may).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parse } from 'csv-parse/sync';
import { loadModelBundle } from '../src/bundle/load.ts';
import { textRowConverter } from '../src/decision/index.ts';
import { openSqliteDecisionLog } from '../src/log/sqlite.ts';
import type { DecisionRecord } from '../src/log/types.ts';
import { createScorer } from '../src/pipeline/score.ts';
import { decide } from '../src/pipeline/decide.ts';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const STEP_MS = 10;

export interface ReplayBench {
  decisions: number;
  labelled: number;
  buildSeconds: number;
  runs: { what: string; decisions: number; seconds: number; perSecond: number; peakRssMb: number }[];
  loadavg: { start: number[]; end: number[] };
}

async function buildLog(dir: string, n: number): Promise<{ labelled: number; seconds: number }> {
  const started = performance.now();
  const bundle = await loadModelBundle(join(ROOT, 'examples/credit'));
  const typed = textRowConverter(bundle.encoding.features);
  const loans = parse(readFileSync(join(ROOT, 'examples/credit/lending_club.csv')), { columns: true }) as Record<string, string>[];
  // The originals, by the server's decision path into a log of their own.
  const seedDir = mkdtempSync(join(tmpdir(), 'rtml-bench-replay-seed-'));
  const seedLog = openSqliteDecisionLog(seedDir, { synchronous: 'normal' });
  const target = { bundle, scorer: createScorer(bundle, { fromText: false }), featureNames: new Set(bundle.encoding.features.map((f) => f.name)) };
  for (let i = 0; i < loans.length; i++) {
    const { Class: _label, ...features } = loans[i];
    await decide(target, { id: `seed-${i}`, ...typed(features) }, { log: seedLog, deadline: Infinity, forcedFallback: null });
  }
  const originals: DecisionRecord[] = [];
  for (let cursor: string | undefined; ; ) {
    const page = await seedLog.scan('credit', { after: cursor });
    if (page.items.length === 0) break;
    originals.push(...page.items);
    cursor = page.cursor;
  }
  await seedLog.close();
  rmSync(seedDir, { recursive: true, force: true });
  originals.sort((a, b) => Number(a.id.slice(5)) - Number(b.id.slice(5)));

  const log = openSqliteDecisionLog(dir, { synchronous: 'normal' });
  let labelled = 0;
  const CHUNK = 10_000;
  for (let from = 0; from < n; from += CHUNK) {
    const appends: Promise<void>[] = [];
    const outcomes: { id: string; label: string; time: string }[] = [];
    for (let k = from; k < Math.min(n, from + CHUNK); k++) {
      const i = k % originals.length;
      const id = `d${k}`;
      const time = new Date(T0 + k * STEP_MS).toISOString();
      appends.push(log.append({ ...originals[i], id, time }));
      if (k % 10 === 0) outcomes.push({ id, label: loans[i].Class, time: new Date(T0 + k * STEP_MS + 86_400_000).toISOString() });
    }
    await Promise.all(appends);
    await log.recordOutcomes('credit', outcomes);
    labelled += outcomes.length;
  }
  await log.close();
  return { labelled, seconds: (performance.now() - started) / 1000 };
}

/**
 * One `rtml replay` (or the scan-only baseline) in a fresh process: its own time for the
 * decisions (start-up and loading excluded: the replay report's, the baseline's line) and the
 * process's peak RSS (/usr/bin/time).
 */
function timed(what: string, args: string[]): { seconds: number; peakRssMb: number } {
  const run = spawnSync('/usr/bin/time', ['-f', 'RTML_BENCH %e %M', process.execPath, ...args], { cwd: ROOT, encoding: 'utf8', maxBuffer: 1 << 26 });
  const m = /RTML_BENCH ([\d.]+) (\d+)/.exec(run.stderr);
  const own = /(?:on \d+ decisions|scanned \d+) \(([\d.]+) s/.exec(run.stderr);
  if (run.status !== 0 || !m || !own) throw new Error(`${what} failed (${run.status}):\n${run.stderr.slice(-2000)}`);
  return { seconds: Number(own[1]), peakRssMb: Number(m[2]) / 1024 };
}

export async function benchReplay(n = 1_000_000, log: (line: string) => void = () => {}): Promise<ReplayBench> {
  const start = loadavg();
  const dir = mkdtempSync(join(tmpdir(), 'rtml-bench-replay-'));
  try {
    log(`replay bench: building a log of ${n} decisions in ${dir}`);
    const built = await buildLog(dir, n);
    log(`replay bench: built in ${built.seconds.toFixed(1)} s`);
    const runs: ReplayBench['runs'] = [];
    const tenth = new Date(T0 + Math.floor(n / 10) * STEP_MS).toISOString();
    const cli = [join(ROOT, 'bin/rtml.mjs'), 'replay', 'examples/candidates/credit/v2', '--service', 'credit', '--data-dir', dir, '-o', '/dev/null'];
    const scanOnly = ['--import', 'tsx', fileURLToPath(import.meta.url), '--scan-only', dir];
    const cases: [string, string[], number][] = [
      ['scan only (baseline): read every page, decide nothing', scanOnly, n],
      ['replay v2, first 10% of the log', [...cli, '--until', tenth], Math.floor(n / 10)],
      ['replay v2, the whole log', cli, n],
      // Bounded: the whole log again with V8's old space capped (it fails if the heap grows with the log).
      ['replay v2, the whole log, old space capped at 64 MB', ['--max-old-space-size=64', ...cli], n],
    ];
    for (const [what, args, decisions] of cases) {
      const r = timed(what, args);
      runs.push({ what, decisions, seconds: r.seconds, perSecond: decisions / r.seconds, peakRssMb: r.peakRssMb });
      log(`replay bench: ${what}: ${r.seconds.toFixed(1)} s, peak RSS ${r.peakRssMb.toFixed(0)} MB`);
    }
    return { decisions: n, labelled: built.labelled, buildSeconds: built.seconds, runs, loadavg: { start, end: loadavg() } };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function formatReplayBench(r: ReplayBench): string {
  const base = r.runs[0].perSecond;
  const lines = [`replay: ${r.decisions} logged decisions (${r.labelled} with outcomes), log built in ${r.buildSeconds.toFixed(0)} s; load average ${r.loadavg.start.map((v) => v.toFixed(2)).join(' ')} -> ${r.loadavg.end.map((v) => v.toFixed(2)).join(' ')}`];
  for (const run of r.runs) lines.push(`  ${run.what}: ${run.decisions} in ${run.seconds.toFixed(1)} s = ${Math.round(run.perSecond)}/s (${(run.perSecond / base).toFixed(2)}x the scan), peak RSS ${run.peakRssMb.toFixed(0)} MB`);
  return lines.join('\n');
}

/** The baseline's process: every page of the log read, nothing decided. */
async function scanOnly(dir: string): Promise<void> {
  const log = openSqliteDecisionLog(dir);
  let n = 0;
  const started = performance.now();
  for (let cursor: string | undefined; ; ) {
    const page = await log.scan('credit', { after: cursor, limit: 2000 });
    if (page.items.length === 0) break;
    n += page.items.length;
    cursor = page.cursor;
  }
  await log.close();
  process.stderr.write(`scanned ${n} (${((performance.now() - started) / 1000).toFixed(3)} s)\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv[2] === '--scan-only') await scanOnly(process.argv[3]);
  else console.log(formatReplayBench(await benchReplay(Number(process.argv[2] ?? 1_000_000), (l) => console.error(l))));
}
