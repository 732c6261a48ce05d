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
import { ServiceMonitor, type MonitorState } from '../src/monitor/service-monitor.ts';
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
