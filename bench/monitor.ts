/**
 * The monitors' cost per decision on the main thread (the request path):
 *
 *     node --import tsx bench/monitor.ts [--decisions N] [--reps R]
 *
 * A ServiceMonitor for examples/credit (its reference profile, default monitoring config:
 * count window 1,000, evaluated every 50 decisions, the 5m/1h/1d time windows) observes real
 * lending_club rows with their model scores, as the server's `observe` hook does: a burst of
 * `evaluate_every` decisions, then one turn of the event loop, where the evaluations the
 * traffic triggers run. Two figures per decision, medians over the repetitions:
 *   - record: the synchronous `observeDecision` calls alone (what each request pays inline);
 *   - main thread: the main thread's CPU time over the whole run (Linux schedstat, so neither
 *     idle waits nor time preempted by the worker or a neighbour count): record plus everything
 *     the monitor runs on the main thread (evaluations, posting, receiving the worker's reports),
 *     i.e. what the monitors take from the event loop that serves requests.
 * The clock advances 2 ms per decision (500 decisions/s), so the time windows roll over.
 * Two ways to run the monitor, interleaved within each repetition:
 *   - inline: the evaluations run on the main thread (how every monitor ran before issue 14,
 *     and still how `evaluate()` runs when called directly);
 *   - worker: `evaluateOffThread`, as the server runs it: the main thread records and posts the
 *     windows every `evaluate_every` decisions, at most once per MIN_JOB_INTERVAL_MS of the
 *     monitor's clock (here every 125-150 decisions: see the evaluations printed); a worker
 *     thread runs the statistics.
 * Target: at most 3 µs per decision on the main thread (issue 14).
 */
import { existsSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'csv-parse/sync';
import { loadModelBundle, median } from './common.ts';
import { textRowConverter } from '../src/decision/index.ts';
import { monitoringSchema } from '../src/monitor/config.ts';
import { readReference } from '../src/monitor/reference.ts';
import { ServiceMonitor } from '../src/monitor/service-monitor.ts';
import { createScorer } from '../src/pipeline/score.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CREDIT = join(ROOT, 'examples', 'credit');
export const MONITOR_TARGET_US = 3;

export interface MonitorBench {
  decisions: number;
  reps: number;
  inline: MonitorMode;
  worker: MonitorMode;
  loadavg: number[];
}

export interface MonitorMode {
  /** µs per decision: synchronous observeDecision only. */
  recordUs: number;
  /** µs per decision: observeDecision plus the monitor's work between bursts, on the main thread. */
  mainThreadUs: number;
  recordPerRep: number[];
  mainThreadPerRep: number[];
  /** Evaluations that completed during the timed decisions (all reps). */
  evaluations: number;
  alerts: number;
}

const SCHEDSTAT = '/proc/thread-self/schedstat';
/** CPU time of the calling thread, ms: Linux's schedstat (ns), else the wall clock (then waits and preemption count too). */
function threadCpuMs(): number {
  return existsSync(SCHEDSTAT) ? Number(readFileSync(SCHEDSTAT, 'utf8').split(' ')[0]) / 1e6 : performance.now();
}

const turn = () => new Promise<void>((done) => setImmediate(done));

export async function benchMonitor(options: { decisions?: number; reps?: number; modes?: readonly ('inline' | 'worker')[] } = {}): Promise<MonitorBench> {
  const decisions = options.decisions ?? 20_000;
  const reps = options.reps ?? 7;
  const bundle = await loadModelBundle(CREDIT);
  const reference = await readReference(join(CREDIT, 'reference.json'));
  const text = parse(readFileSync(join(CREDIT, 'lending_club.csv')), { columns: true }) as Record<string, string>[];
  const typed = textRowConverter(bundle.encoding.features);
  const rows = text.map(({ Class: _label, ...features }) => ({ ...typed(features) }));
  const scorer = createScorer(bundle, { fromText: false });
  const scored = await scorer.scoreRows(rows);
  const scores = scored.outcomes.map((o) => (o.ok ? o.score : null));
  const actions = scores.map((s) => (s === null ? null : s > 0.5 ? 'decline' : 'approve'));

  const config = monitoringSchema.parse({});
  const every = config.evaluate_every;
  const modes = { inline: newMode(), worker: newMode() };
  for (let rep = -1; rep < reps; rep++) {
    for (const name of options.modes ?? (['inline', 'worker'] as const)) {
      const mode = modes[name];
      const clock = { t: Date.parse('2026-11-01T00:00:00Z') };
      const monitor = new ServiceMonitor({ bundle, reference, config, sinks: [], now: () => clock.t, evaluateOffThread: name === 'worker' });
      if (name === 'worker') await new Promise((done) => setTimeout(done, 300)); // the worker starts
      let record = 0;
      const busy = threadCpuMs();
      let before = monitor.state().evaluated_at;
      for (let i = 0; i < decisions; ) {
        const t0 = performance.now();
        const end = Math.min(decisions, i + every);
        for (; i < end; i++) {
          const r = i % rows.length;
          monitor.observeDecision(rows[r], scores[r], actions[r], null);
          clock.t += 2;
        }
        const t1 = performance.now();
        await turn(); // the evaluations the burst triggered run here (inline) or are posted (worker)
        record += t1 - t0;
        // Then the worker's answer, as in a server, where 50 decisions take several ms: idle
        // waiting is not counted (the main thread's CPU time is).
        await monitor.settled();
        const at = monitor.state().evaluated_at;
        if (at !== before && rep >= 0) mode.evaluations++;
        before = at;
      }
      const total = threadCpuMs() - busy;
      monitor.close();
      if (rep < 0) continue; // warm-up
      mode.alerts += monitor.state().alerts.active.length;
      mode.recordPerRep.push((record * 1000) / decisions);
      mode.mainThreadPerRep.push((total * 1000) / decisions);
    }
  }
  for (const mode of Object.values(modes)) {
    mode.recordUs = median(mode.recordPerRep);
    mode.mainThreadUs = median(mode.mainThreadPerRep);
  }
  return { decisions, reps, ...modes, loadavg: loadavg() };
}

function newMode(): MonitorMode {
  return { recordUs: NaN, mainThreadUs: NaN, recordPerRep: [], mainThreadPerRep: [], evaluations: 0, alerts: 0 };
}

export function formatMonitorBench(r: MonitorBench): string {
  const f = (v: number) => `${v.toFixed(2)} us`;
  const list = (v: number[]) => `[${v.map((x) => x.toFixed(2)).join(' ')}]`;
  const lines = [`monitor (credit, ${r.decisions} decisions x ${r.reps} reps, default config; load average ${r.loadavg.map((v) => v.toFixed(2)).join(' ')})`];
  for (const [name, m] of [['inline (before)', r.inline], ['worker (after) ', r.worker]] as const) {
    lines.push(`  ${name}  record ${f(m.recordUs)} ${list(m.recordPerRep)}; main thread ${f(m.mainThreadUs)} / decision ${list(m.mainThreadPerRep)}; ${m.evaluations} evaluations, ${m.alerts} alerts`);
  }
  const w = r.worker.mainThreadUs;
  lines.push(`  main thread worker / inline: ${(w / r.inline.mainThreadUs).toFixed(2)}x; target <= ${MONITOR_TARGET_US} us: ${(w / MONITOR_TARGET_US).toFixed(2)}x the target (${w <= MONITOR_TARGET_US ? 'met' : 'NOT met'})`);
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : undefined;
  };
  console.log(formatMonitorBench(await benchMonitor({ decisions: arg('--decisions'), reps: arg('--reps'), modes: process.argv.includes('--worker-only') ? ['worker'] : undefined })));
}
