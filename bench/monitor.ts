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
 *   - main thread: record plus everything the monitor runs on the main thread between bursts
 *     (the evaluations), i.e. what the monitors take from the event loop that serves requests.
 * The clock advances 2 ms per decision (500 decisions/s), so the time windows roll over.
 * Target: at most 3 µs per decision on the main thread (issue 14).
 */
import { readFileSync } from 'node:fs';
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
  /** µs per decision: synchronous observeDecision only. */
  recordUs: number;
  /** µs per decision: observeDecision plus the monitor's work between bursts, on the main thread. */
  mainThreadUs: number;
  recordPerRep: number[];
  mainThreadPerRep: number[];
  evaluations: number;
  loadavg: number[];
}

const turn = () => new Promise<void>((done) => setImmediate(done));

export async function benchMonitor(options: { decisions?: number; reps?: number } = {}): Promise<MonitorBench> {
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
  const recordPerRep: number[] = [];
  const mainThreadPerRep: number[] = [];
  let evaluations = 0;
  for (let rep = -1; rep < reps; rep++) {
    const clock = { t: Date.parse('2026-11-01T00:00:00Z') };
    const monitor = new ServiceMonitor({ bundle, reference, config, sinks: [], now: () => clock.t });
    let record = 0;
    let total = 0;
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
      await turn(); // the evaluations the burst triggered run here
      const t2 = performance.now();
      record += t1 - t0;
      total += t2 - t0;
      const at = monitor.state().evaluated_at;
      if (at !== before) evaluations++;
      before = at;
    }
    if (rep < 0) continue; // warm-up
    recordPerRep.push((record * 1000) / decisions);
    mainThreadPerRep.push((total * 1000) / decisions);
  }
  return { decisions, reps, recordUs: median(recordPerRep), mainThreadUs: median(mainThreadPerRep), recordPerRep, mainThreadPerRep, evaluations, loadavg: loadavg() };
}

export function formatMonitorBench(r: MonitorBench): string {
  const f = (v: number) => `${v.toFixed(2)} us`;
  return [
    `monitor (credit, ${r.decisions} decisions x ${r.reps} reps, default config; load average ${r.loadavg.map((v) => v.toFixed(2)).join(' ')})`,
    `  record (observeDecision, inline)      ${f(r.recordUs)} / decision  [${r.recordPerRep.map((v) => v.toFixed(2)).join(' ')}]`,
    `  main thread (record + evaluations)    ${f(r.mainThreadUs)} / decision  [${r.mainThreadPerRep.map((v) => v.toFixed(2)).join(' ')}]`,
    `  target <= ${MONITOR_TARGET_US} us on the main thread: ${(r.mainThreadUs / MONITOR_TARGET_US).toFixed(2)}x the target (${r.mainThreadUs <= MONITOR_TARGET_US ? 'met' : 'NOT met'})`,
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : undefined;
  };
  console.log(formatMonitorBench(await benchMonitor({ decisions: arg('--decisions'), reps: arg('--reps') })));
}
