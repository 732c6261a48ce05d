/**
 * Evaluations in a worker thread (`evaluateOffThread`, as the server runs monitors) give the
 * same reports, alerts and safe mode, after the same number of decisions, as evaluations on the
 * main thread: the same credit traffic, clean then with a feature gone missing and another
 * shifted, fed to both.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ModelBundle } from '../src/bundle/load.ts';
import { monitoringSchema } from '../src/monitor/config.ts';
import type { ReferenceProfile } from '../src/monitor/reference.ts';
import { MIN_JOB_INTERVAL_MS, ServiceMonitor, type MonitorState } from '../src/monitor/service-monitor.ts';
import { loadCreditTraffic } from './helpers/credit-traffic.ts';

let bundle: ModelBundle;
let reference: ReferenceProfile;
let rows: Record<string, unknown>[];
let scores: number[];
const monitors: ServiceMonitor[] = [];

before(async () => {
  ({ bundle, reference, rows, scores } = await loadCreditTraffic());
});
after(() => monitors.forEach((m) => m.close()));

function pair(clock: { t: number }) {
  const config = monitoringSchema.parse({ on_critical: 'fallback', release_after_s: 10, count_window: 500, min_observations: 300 });
  const make = (evaluateOffThread: boolean) => new ServiceMonitor({ bundle, reference, config, sinks: [], now: () => clock.t, evaluateOffThread });
  const both = { inline: make(false), worker: make(true) };
  monitors.push(both.inline, both.worker);
  return both;
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
/** What must agree: every window's report, the active alerts and safe mode. */
const verdict = (s: MonitorState) => ({ evaluated_at: s.evaluated_at, windows: s.windows, alerts: s.alerts.active.map((a) => [a.key, a.severity, a.message]), safe: s.safe_mode.active });

describe('service monitor evaluated in a worker thread', () => {
  it('reaches the same verdicts after the same decisions as inline evaluation, drift and safe mode included', async () => {
    const clock = { t: Date.parse('2026-11-01T00:00:00Z') };
    const { inline, worker } = pair(clock);
    let engagedAt: Record<string, number> = {};
    const raised = new Set<string>();
    for (let i = 0; i < 1500; i++) {
      const row = { ...rows[i] };
      if (i >= 600 && i < 1100) {
        row.emp_length = null; // a source stops sending a field
        row.annual_inc = (row.annual_inc as number) * 3; // and another one shifts
      }
      for (const [name, m] of Object.entries({ inline, worker })) {
        m.observeDecision(row, scores[i], scores[i] > 0.5 ? 'decline' : 'approve', null);
        if (m.safeModeActive && engagedAt[name] === undefined) engagedAt = { ...engagedAt, [name]: i };
      }
      clock.t += 20;
      if (i % 50 === 49) {
        await turn(); // inline: the evaluation runs here; worker: the job is posted here
        await worker.settled();
        assert.deepEqual(verdict(worker.state()), verdict(inline.state()), `after ${i + 1} decisions`);
        for (const a of inline.state().alerts.active) raised.add(a.key);
      }
    }
    assert.ok(engagedAt.inline !== undefined, 'the faults engage safe mode');
    assert.equal(engagedAt.worker, engagedAt.inline);
    assert.ok(raised.has('missing_values:emp_length') && raised.has('feature_drift:annual_inc'), [...raised].join(', '));
  });
});

describe('service monitor evaluated in a worker thread, with traffic in bursts', () => {
  it('agrees with inline evaluation whatever number of rows arrives between two jobs (read from the shared rings, copied, or the rings resent)', async () => {
    const clock = { t: Date.parse('2026-11-01T00:00:00Z') };
    const { inline, worker } = pair(clock);
    // count_window 500: up to 250 new rows the worker reads from the shared rings, more are copied, more than 500 resend the rings.
    const bursts = [30, 200, 260, 50, 700, 120, 251, 1200, 60];
    let i = 0;
    for (const [b, burst] of bursts.entries()) {
      for (const end = i + burst; i < end; i++) {
        const row = { ...rows[i] };
        if (b >= 4) row.annual_inc = (row.annual_inc as number) * 3; // drift from the fifth burst on: KS sees it in the raw values
        inline.observeDecision(row, scores[i], scores[i] > 0.5 ? 'decline' : 'approve', null);
        worker.observeDecision(row, scores[i], scores[i] > 0.5 ? 'decline' : 'approve', null);
        clock.t += 20;
      }
      await turn();
      await worker.settled();
      assert.deepEqual(verdict(worker.state()), verdict(inline.state()), `after the burst of ${burst} (${i} decisions)`);
    }
    assert.ok(inline.state().alerts.active.some((a) => a.key === 'feature_drift:annual_inc'));
  });

  it('posts at most one job per MIN_JOB_INTERVAL_MS under fast traffic, and the held-back one when the interval ends without more traffic', async () => {
    const clock = { t: Date.parse('2026-11-01T00:00:00Z') };
    const { worker } = pair(clock);
    const observe = async (n: number, from: number) => {
      for (let i = from; i < from + n; i++) {
        worker.observeDecision(rows[i], scores[i], 'approve', null);
        clock.t += 1; // 1,000 decisions a second: 50 decisions take 50 ms, less than the interval
      }
      await turn();
      await worker.settled();
    };
    await observe(50, 0);
    const first = worker.state();
    assert.equal(first.windows.count.observations, 50);
    await observe(50, 50);
    assert.equal(worker.state().evaluated_at, first.evaluated_at, 'held back: the last job went out 50 ms ago');
    // No more traffic: the timer posts the held-back job once the interval has passed.
    await new Promise((resolve) => setTimeout(resolve, MIN_JOB_INTERVAL_MS + 100));
    await worker.settled();
    assert.notEqual(worker.state().evaluated_at, first.evaluated_at);
    assert.equal(worker.state().windows.count.observations, 100);
  });
});
