/**
 * Alerts fire once per condition, escalate, resolve, respect a cooldown against flapping,
 * and reach a real webhook receiver with retries.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { AlertManager, webhookSink, type AlertCandidate, type AlertEvent } from '../src/monitor/alerts.ts';

const drift = (severity: 'warning' | 'critical', value = 0.3): AlertCandidate => ({
  key: 'feature_drift:annual_inc',
  rule: 'feature_drift',
  subject: 'annual_inc',
  severity,
  message: `annual_inc drifted: PSI ${value}`,
  value,
  threshold: 0.25,
  window: 'last_1000',
});

describe('alert manager', () => {
  it('fires once while a condition holds, escalates, and resolves when it clears', () => {
    const events: AlertEvent[] = [];
    const manager = new AlertManager('credit', [{ name: 'memory', deliver: (e) => events.push(e) }]);
    manager.update([drift('warning', 0.12)], 0);
    manager.update([drift('warning', 0.15)], 1000);
    manager.update([drift('critical', 0.4)], 2000);
    assert.equal(manager.active()[0].value, 0.4);
    assert.ok(manager.hasCritical());
    manager.update([], 3000);
    assert.deepEqual(events.map((e) => `${e.type}:${e.alert.severity}`), ['fired:warning', 'escalated:critical', 'resolved:critical']);
    assert.equal(manager.active().length, 0);
    assert.equal(manager.history()[0].resolvedAt, new Date(3000).toISOString());
  });

  it('does not re-fire a warning within the cooldown after it resolved, but a critical one always fires', () => {
    const manager = new AlertManager('credit', [], { cooldownMs: 10_000, historySize: 10 });
    manager.update([drift('warning')], 0);
    manager.update([], 1000);
    assert.deepEqual(manager.update([drift('warning')], 2000), []);
    assert.equal(manager.update([drift('critical')], 3000)[0].type, 'fired');
    manager.update([], 4000);
    assert.equal(manager.update([drift('warning')], 20_000)[0].type, 'fired');
  });

  it('acknowledges an active alert without resolving it', () => {
    const manager = new AlertManager('credit', []);
    manager.update([drift('critical')], 0);
    const [alert] = manager.active();
    assert.equal(manager.acknowledge(alert.id, 'oncall', 'looking', 5)?.acknowledged?.by, 'oncall');
    assert.equal(manager.active().length, 1);
    assert.equal(manager.acknowledge('nope', 'x', '', 5), null);
  });
});

describe('webhook sink', () => {
  it('POSTs each event as JSON, retrying 5xx answers with backoff', async () => {
    const received: Record<string, unknown>[] = [];
    let calls = 0;
    const receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        calls++;
        if (calls === 1) {
          res.writeHead(503).end();
          return;
        }
        received.push(JSON.parse(body));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const { port } = receiver.address() as AddressInfo;
    try {
      const sink = webhookSink({ url: `http://127.0.0.1:${port}/hook`, attempts: 3, timeoutMs: 2000, backoffMs: 10, maxQueue: 100 });
      const manager = new AlertManager('credit', [sink]);
      manager.update([drift('critical')], 0);
      manager.update([], 1000);
      await sink.drain();
      assert.deepEqual(received.map((r) => [r.type, r.service, r.rule, r.subject, r.severity]), [
        ['fired', 'credit', 'feature_drift', 'annual_inc', 'critical'],
        ['resolved', 'credit', 'feature_drift', 'annual_inc', 'critical'],
      ]);
      assert.deepEqual(sink.stats, { delivered: 2, failed: 0, dropped: 0, queued: 0 });
    } finally {
      receiver.close();
    }
  });

  it('gives up on a dead receiver after its attempts without blocking, and bounds its queue', async () => {
    const errors: string[] = [];
    const sink = webhookSink({ url: 'http://127.0.0.1:9/unreachable', attempts: 2, timeoutMs: 200, backoffMs: 5, maxQueue: 3 }, (e) => errors.push(e));
    const event: AlertEvent = { type: 'fired', alert: { ...drift('critical'), id: 'a', service: 'credit', firedAt: '', resolvedAt: null, acknowledged: null } };
    for (let i = 0; i < 6; i++) sink.deliver(event);
    await sink.drain();
    assert.equal(sink.stats.delivered, 0);
    assert.ok(sink.stats.dropped >= 2);
    assert.equal(sink.stats.failed + sink.stats.dropped, 6);
    assert.match(errors[0], /failed after 2 attempt/);
  });
});
