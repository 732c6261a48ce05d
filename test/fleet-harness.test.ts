/**
 * The fleet harness (test/helpers/fleet.ts) that the multi-process tests stand on, exercised
 * with what runs without external servers: independent embedded replicas, each with its own
 * data dir. Each replica keeps only the decisions it acknowledged; the client knows which.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startFleet, type Fleet } from './helpers/fleet.ts';

describe('fleet harness: two embedded replicas', { timeout: 60_000 }, () => {
  let fleet: Fleet;
  before(async () => {
    fleet = await startFleet({ replicas: 2, probePorts: true });
  });
  after(() => fleet?.stop());

  it('starts each replica on its own port and data dir, with the tokens the harness names', async () => {
    const [a, b] = fleet.replicas;
    assert.notEqual(a.url, b.url);
    assert.notEqual(a.dataDir, b.dataDir);
    assert.ok(a.pid !== null && b.pid !== null && a.pid !== b.pid);
    for (const replica of fleet.replicas) {
      assert.equal((await fetch(`${replica.probeUrl}/v2/health/ready`)).status, 200);
      // Admin operations are enabled with the harness's token, refused without it.
      assert.equal((await replica.request('/v1/services/credit/decisions/none', { auth: 'admin' })).status, 404);
      assert.equal((await replica.request('/v1/services/credit/decisions/none')).status, 401);
    }
  });

  it('spreads decisions round-robin and records which replica acknowledged each id', async () => {
    const client = await fleet.client({ rows: 200 });
    await client.decide(40, 4);
    assert.deepEqual({ refused: client.refused, failed: client.failed }, { refused: [], failed: [] });
    assert.equal(client.acknowledged.size, 40);
    const [a, b] = fleet.replicas;
    const byReplica = [0, 0];
    for (const ack of client.acknowledged.values()) {
      byReplica[ack.replica]++;
      assert.equal(ack.pid, fleet.replicas[ack.replica].pid, 'x-rtml-pid names the process that answered');
      assert.match(ack.label, /^(good|bad)$/);
    }
    assert.deepEqual(byReplica, [20, 20]);
    // Separate data dirs: each decision is in the log of the replica that acknowledged it, only there.
    const sample = [...client.acknowledged.values()].slice(0, 6);
    for (const ack of sample) {
      const [own, other] = ack.replica === 0 ? [a, b] : [b, a];
      assert.equal((await own.request(`/v1/services/credit/decisions/${ack.id}`, { auth: 'admin' })).status, 200);
      assert.equal((await other.request(`/v1/services/credit/decisions/${ack.id}`, { auth: 'admin' })).status, 404);
    }
  });

  it('sends outcomes to the replica that decided or to another; with embedded logs only the former join', async () => {
    const client = await fleet.client({ rows: 50, idPrefix: 'outcomes' });
    await client.decide(20, 4);
    const acks = [...client.acknowledged.values()];
    assert.deepEqual(await client.sendOutcomes(acks.slice(0, 10), 0), { joined: 10, unknown: 0, rejected: 0 });
    // Each embedded replica keeps its own log: an outcome sent to the other one finds no decision.
    assert.deepEqual(await client.sendOutcomes(acks.slice(10), 1), { joined: 0, unknown: 10, rejected: 0 });
  });

  it('applies a transform to every row sent (a drift to inject)', async () => {
    const client = await fleet.client({ rows: 50, idPrefix: 'drift' });
    client.transform = (features) => ({ ...features, int_rate: -1 });
    await client.decide(4, 2);
    // The drifted value breaks the bundle's rule (int_rate >= 0): refused with 400, nothing acknowledged.
    assert.equal(client.acknowledged.size, 0);
    assert.deepEqual(client.refused.map((r) => r.status), [400, 400, 400, 400]);
    assert.match(client.refused[0].body, /int_rate/);
  });

  it('kill -9 of a replica under load: the others keep answering, its acknowledged decisions survive its restart', async () => {
    const client = await fleet.client({ rows: 200, idPrefix: 'kill9' });
    const [a, b] = fleet.replicas;
    const load = client.load(4);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const before = client.acknowledged.size;
    assert.deepEqual(await a.kill('SIGKILL'), { code: null, signal: 'SIGKILL' });
    assert.equal(a.running, false);
    const afterKill = client.acknowledged.size;
    await new Promise((resolve) => setTimeout(resolve, 500));
    await load.stop();
    assert.ok(before > 0, 'decisions were acknowledged before the kill');
    assert.ok(client.acknowledged.size > afterKill, 'the surviving replica kept acknowledging');
    const oldPid = [...client.acknowledged.values()].find((ack) => ack.replica === 0)?.pid;

    await a.restart();
    assert.ok(a.running && a.pid !== null && a.pid !== oldPid);
    // Nothing acknowledged by the killed replica was lost: its SQLite log is back with it.
    const fromA = [...client.acknowledged.values()].filter((ack) => ack.replica === 0);
    assert.ok(fromA.length > 0);
    for (const ack of fromA) assert.equal((await a.request(`/v1/services/credit/decisions/${ack.id}`, { auth: 'admin' })).status, 200, ack.id);
    assert.equal((await b.request(`/v1/services/credit/decisions/${fromA[0].id}`, { auth: 'admin' })).status, 404);
    assert.ok(a.logs.some((line) => line.startsWith('--- replica 0 started')));
  });
});
