/**
 * The service monitor on its own, with a controlled clock: decay detection from outcomes,
 * safe mode hysteresis, and time windows that forget.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { ModelBundle } from '../src/bundle/load.ts';
import { monitoringSchema } from '../src/monitor/config.ts';
import type { ReferenceProfile } from '../src/monitor/reference.ts';
import { ServiceMonitor } from '../src/monitor/service-monitor.ts';
import { loadCreditTraffic } from './helpers/credit-traffic.ts';

let bundle: ModelBundle;
let reference: ReferenceProfile;
let rows: Record<string, unknown>[];
let scores: number[];
let labels: string[];

before(async () => {
  ({ bundle, reference, rows, scores, labels } = await loadCreditTraffic());
});

function monitor(overrides: Record<string, unknown> = {}, clock = { t: Date.parse('2026-11-01T00:00:00Z') }) {
  const config = monitoringSchema.parse({ on_critical: 'fallback', release_after_s: 10, ...overrides });
  return { m: new ServiceMonitor({ bundle, reference, config, sinks: [], now: () => clock.t }), clock };
}

const outcome = (i: number, label: string) => ({ seq: i, service: 'credit', id: `d${i}`, time: '', modelVersion: '1', score: scores[i % scores.length], decision: 'approve', fallbackUsed: false, label, outcomeTime: '' });

describe('service monitor', () => {
  it('flags performance decay when outcomes turn much worse than the reference, not before', () => {
    const { m } = monitor();
    for (let i = 0; i < 4000; i++) m.observeOutcome(outcome(i, labels[i % labels.length]));
    assert.equal(m.evaluate().decay.decayed, false);
    // The world changes: a third of loans now go bad whatever the score said.
    let flaggedAfter = -1;
    for (let i = 0; i < 3000 && flaggedAfter < 0; i++) {
      m.observeOutcome(outcome(4000 + i, i % 3 === 0 ? 'bad' : labels[(4000 + i) % labels.length]));
      if (i % 50 === 49 && m.evaluate().decay.decayed) flaggedAfter = i + 1;
    }
    assert.ok(flaggedAfter > 0 && flaggedAfter <= 1000, `decay flagged after ${flaggedAfter} outcomes`);
    assert.ok(m.state().alerts.active.some((a) => a.rule === 'performance_decay'));
  });

  it('holds safe mode until the service has been clear for release_after_s (hysteresis)', () => {
    const { m, clock } = monitor({ count_window: 500, min_observations: 300 });
    const observe = (from: number, n: number, perturb: boolean) => {
      for (let i = from; i < from + n; i++) {
        const row = { ...rows[i] };
        if (perturb) row.emp_length = null;
        m.observeDecision(row, scores[i], null, null);
        clock.t += 100;
      }
      return m.evaluate();
    };
    observe(0, 600, false);
    assert.equal(m.safeModeActive, false);
    observe(600, 300, true);
    assert.equal(m.safeModeActive, true);
    assert.match(m.safeModeReason ?? '', /emp_length missing/);
    // Clean again: the alert clears once the faulty rows leave the window, but safe mode waits 10 s more.
    observe(900, 600, false);
    assert.equal(m.state().alerts.active.length, 0);
    const clearedAt = clock.t;
    while (m.safeModeActive && clock.t - clearedAt < 30_000) observe(1500 + (clock.t - clearedAt) / 100, 10, false);
    assert.equal(m.safeModeActive, false);
    assert.ok(clock.t - clearedAt >= 9_000, `released after ${(clock.t - clearedAt) / 1000} s`);
  });

  it('forgets in its time windows: the 5 minute window empties after five quiet minutes', () => {
    const { m, clock } = monitor();
    for (let i = 0; i < 200; i++) m.observeDecision(rows[i], scores[i], null, null);
    assert.equal(m.evaluate().windows['5m'].observations, 200);
    clock.t += 6 * 60_000;
    const later = m.evaluate();
    assert.equal(later.windows['5m'].observations, 0);
    assert.equal(later.windows['1h'].observations, 200);
    assert.equal(later.windows.count.observations, 200);
  });

  it('on traffic, re-evaluates the alerting count window every evaluate_every decisions, the time windows at most once a second', async () => {
    const { m, clock } = monitor({ evaluate_every: 50 });
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    const observe = async (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        m.observeDecision(rows[i], scores[i], null, null);
        if (i % 50 === 49) await turn(); // the evaluation runs after the response, in setImmediate
      }
    };
    await observe(0, 200);
    let state = m.state();
    assert.equal(state.windows.count.observations, 200);
    assert.equal(state.windows['5m'].observations, 50, 'computed at the first evaluation, carried over within the second');
    clock.t += 1000;
    await observe(200, 250);
    state = m.state();
    assert.deepEqual([state.windows.count.observations, state.windows['5m'].observations, state.windows['1d'].observations], [250, 250, 250]);
    // Any other evaluation (timer, operator, API) computes every window.
    await observe(250, 300);
    assert.equal(m.evaluate().windows['1h'].observations, 300);
  });

  it('counts rejections at the edge by field and alerts on a field that keeps failing', () => {
    const { m } = monitor({ min_observations: 100 });
    for (let i = 0; i < 200; i++) m.observeDecision(rows[i], scores[i], null, null);
    for (let i = 0; i < 40; i++) m.observeRejection(['annual_inc']);
    const state = m.evaluate();
    assert.equal(state.windows.count.data_quality.rejections_by_field.annual_inc, 40);
    assert.ok(state.alerts.active.some((a) => a.key === 'rejections:annual_inc' && a.severity === 'critical'));
  });
});
