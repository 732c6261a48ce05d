/**
 * One service, three processes: real `rtml serve` replicas (as users start them) sharing one
 * PostgreSQL (decision log, outcomes, operations, monitor exchange) and one Redis (features),
 * each on its own loopback port, and a client spreading lending_club decisions round-robin.
 * What a load balancer in front of them would need to be true:
 *   - a decision taken by one replica is found, joined to its outcome and exported by any;
 *   - features written through one replica are served by another;
 *   - a drift in every replica's traffic raises each alert once (one webhook delivery) and
 *     puts every replica in safe mode; an acknowledgement or a safe-mode override given to any
 *     replica reaches the whole fleet; a kill switch set through one replica is obeyed by
 *     another within 2 s;
 *   - kill -9 of the monitoring leader moves monitoring to a live replica, firing nothing twice;
 *   - kill -9 of a replica under load loses no acknowledged decision.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { DECISIONS_PATH, startFleet, type DecisionAck, type Fleet, type FleetClient, type Replica } from './helpers/fleet.ts';
import { startPostgres, type RunningPostgres } from './helpers/postgres-server.ts';
import { startRedis, type RunningRedis } from './helpers/redis-server.ts';
import { lendingClubExamples } from './helpers/server.ts';
import { tempDir } from './helpers/tmp.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MONITORING = '/v1/services/credit/monitoring';

interface FleetMonitoring {
  safe_mode: { active: boolean; reason: string | null; mode: string };
  alerts: { active: { id: string; key: string; acknowledged: { by: string } | null }[] };
  windows: { count: { observations: number } };
  fleet?: { replica: string; leader: string | null; replicas: { id: string }[] };
}

interface Answer {
  id: string;
  decision: string;
  fallback: { used: boolean; cause: string | null };
}

/** A repository serving the credit example (no sourced features) and card-fraud (features from the store). */
function repository(): string {
  const repo = tempDir('rtml-fleet-repo-');
  for (const [service, files] of [
    ['credit', ['rtml.yaml', 'model.json', 'golden.jsonl', 'policy.yaml', 'reference.json']],
    ['card-fraud', ['rtml.yaml', 'model.json', 'golden.jsonl', 'policy.yaml', 'reference.json']],
  ] as const) {
    mkdirSync(join(repo, service));
    for (const file of files) cpSync(join(ROOT, 'examples', service, file), join(repo, service, file));
  }
  return repo;
}

/** An alert webhook receiver: every replica is given its URL; each delivery is kept. */
async function webhookReceiver(): Promise<{ url: string; events: { type: string; key: string; id: string }[]; close(): Promise<void> }> {
  const events: { type: string; key: string; id: string }[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      events.push(JSON.parse(body) as { type: string; key: string; id: string });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/alerts`,
    events,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

async function until<T>(what: string, probe: () => Promise<T | null | undefined | false>, ms = 15_000, everyMs = 50): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (value) return { value, ms: Date.now() - started };
    if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

const monitoringOf = async (replica: Replica) => (await (await replica.request(MONITORING)).json()) as FleetMonitoring;

describe('three rtml processes on one PostgreSQL and one Redis', { timeout: 300_000 }, () => {
  let postgres: RunningPostgres;
  let redis: RunningRedis;
  let webhook: Awaited<ReturnType<typeof webhookReceiver>>;
  let fleet: Fleet;
  let db: pg.Client;
  let client: FleetClient;

  before(async () => {
    [postgres, redis, webhook] = await Promise.all([startPostgres(), startRedis(), webhookReceiver()]);
    fleet = await startFleet({
      replicas: 3,
      repository: repository(),
      args: ['--decision-log', postgres.url, '--feature-store', 'redis', '--redis-url', `redis://127.0.0.1:${redis.port}`, '--alert-webhook', webhook.url],
    });
    db = new pg.Client({ connectionString: postgres.url });
    await db.connect();
    client = await fleet.client({ rows: 3000, idPrefix: 'fleet' });
  });
  after(async () => {
    await db?.end();
    await fleet?.stop();
    await Promise.all([postgres?.stop(), redis?.stop(), webhook?.close()]);
  });

  /** Of `ids`, those the shared decision log does not hold. */
  async function missingFromLog(ids: string[]): Promise<string[]> {
    const { rows } = await db.query<{ id: string }>('SELECT id FROM decisions WHERE service = $1 AND id = ANY($2)', ['credit', ids]);
    const logged = new Set(rows.map((r) => r.id));
    return ids.filter((id) => !logged.has(id));
  }

  it('serves features written through one replica from another (one Redis)', async () => {
    const [a, b, c] = fleet.replicas;
    const purchase = { card_id: 'c0042', customer_id: 'u0035', amount: 249.99, merchant_category: 'electronics' };
    assert.equal((await a.request('/v1/entities/customer/u0035', { method: 'PUT', body: { account_age_days: 41, home_region: 'north' }, auth: 'write' })).status, 200);
    const calm = (await (await c.request('/v1/services/card-fraud/decisions', { body: { id: 'calm', ...purchase } })).json()) as Answer & { score: number; features: Record<string, string> };
    assert.equal(calm.decision, 'approve', JSON.stringify(calm));
    assert.equal(calm.features.account_age_days, 'present', 'the entity written through replica 0 is served by replica 2');
    // A burst of charges ingested through replica 1 changes what replica 2 decides.
    const now = Date.now();
    const burst = [1, 2, 3, 4, 5, 6].map((i) => ({ txn_id: `burst-${i}`, card_id: 'c0042', event_time: new Date(now - 280_000 + 40_000 * i).toISOString(), amount: i < 3 ? 1.5 : 120.5, merchant_id: `m010${i}`, merchant_category: 'online_retail' }));
    assert.equal(((await (await b.request('/v1/events/transactions', { body: burst, auth: 'write' })).json()) as { accepted: number }).accepted, 6);
    const after = (await (await c.request('/v1/services/card-fraud/decisions', { body: { id: 'after-burst', ...purchase } })).json()) as Answer & { score: number };
    assert.equal(after.decision, 'decline', JSON.stringify(after));
  });

  it('logs every decision once in the shared log, found through any replica; outcomes sent to other replicas all join', async () => {
    await client.decide(900, 6);
    assert.deepEqual({ refused: client.refused, failed: client.failed }, { refused: [], failed: [] });
    const acks = [...client.acknowledged.values()];
    assert.equal(acks.length, 900);
    const perReplica = [0, 1, 2].map((k) => acks.filter((a) => a.replica === k).length);
    assert.deepEqual(perReplica, [300, 300, 300]);
    assert.deepEqual(await missingFromLog(acks.map((a) => a.id)), []);
    // The admin look-up answers from the shared log, whichever replica took the decision.
    for (const ack of acks.slice(0, 9)) {
      const other = fleet.replicas[(ack.replica + 2) % 3];
      const res = await other.request(`/v1/services/credit/decisions/${ack.id}`, { auth: 'admin' });
      assert.equal(res.status, 200, `${ack.id} (decided by replica ${ack.replica}) looked up on replica ${other.index}`);
    }
    // Each outcome to a replica that did not take the decision: every one joins.
    assert.deepEqual(await client.sendOutcomes(acks, 1), { joined: 900, unknown: 0, rejected: 0 });
    const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM outcomes WHERE service = $1 AND id = ANY($2)', ['credit', acks.map((a) => a.id)]);
    assert.equal(Number(rows[0].n), 900);
  });

  let leaderIndex = -1;
  let alertId = '';

  it('raises a drift in every replica\'s traffic once, and puts every replica in safe mode', async () => {
    const started = Date.now();
    client.transform = (features) => ({ ...features, emp_length: null });
    // Drifted traffic until every replica reports safe mode (the fleet's window: 1,000 decisions).
    const load = client.load(6);
    let states: FleetMonitoring[];
    try {
      ({ value: states } = await until('safe mode on every replica', async () => {
        const all = await Promise.all(fleet.replicas.map(monitoringOf));
        return all.every((s) => s.safe_mode.active) && all;
      }, 30_000, 200));
    } finally {
      await load.stop();
    }
    client.transform = null;
    const took = Date.now() - started;
    const ids = states.map((s) => s.fleet!.replica);
    assert.equal(new Set(ids).size, 3, 'three replicas in the fleet');
    const leader = states[0].fleet!.leader;
    assert.ok(leader !== null && ids.includes(leader), `leader ${leader} is one of ${ids}`);
    leaderIndex = ids.indexOf(leader);
    for (const s of states) {
      assert.equal(s.fleet!.leader, leader);
      assert.deepEqual(s.fleet!.replicas.map((r) => r.id).sort(), [...ids].sort());
      assert.match(s.safe_mode.reason ?? '', /emp_length/);
      assert.deepEqual(s.alerts.active.map((a) => a.id), states[0].alerts.active.map((a) => a.id));
    }
    // Every replica decides by the fallback policy now.
    for (const replica of fleet.replicas) {
      const ack = (await client.send())!;
      assert.ok(ack, 'a decision in safe mode is still answered');
      const answer = (await (await replica.request(`/v1/services/credit/decisions/${ack.id}`, { auth: 'admin' })).json()) as { fallback_used?: boolean; fallback?: { used: boolean } };
      assert.ok(answer.fallback_used ?? answer.fallback?.used, `replica ${replica.index} logged ${ack.id} as decided by the fallback policy`);
    }
    // Each alert delivered once, by one replica, however many replicas saw the drift.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const fired = webhook.events.filter((e) => e.type === 'fired');
    const keys = fired.map((e) => e.key);
    assert.ok(keys.includes('missing_values:emp_length'), `fired: ${keys}`);
    assert.equal(new Set(keys).size, keys.length, `an alert fired twice: ${keys}`);
    alertId = fired.find((e) => e.key === 'missing_values:emp_length')!.id;
    console.log(`  drift to safe mode on all 3 replicas: ${took} ms; alerts fired once each: ${keys.join(', ')}`);
  });

  it('takes an acknowledgement and a safe-mode override on any replica for the whole fleet', async () => {
    const follower = fleet.replicas[(leaderIndex + 1) % 3];
    const res = await follower.request(`/v1/services/credit/alerts/${alertId}/acknowledge`, { body: { by: 'oncall', note: 'known upstream outage' }, auth: 'admin' });
    assert.ok(res.status === 200 || res.status === 202, `acknowledge answered ${res.status}`);
    const acked = await until('the acknowledgement on every replica', async () => {
      const all = await Promise.all(fleet.replicas.map(monitoringOf));
      return all.every((s) => s.alerts.active.find((a) => a.id === alertId)?.acknowledged?.by === 'oncall');
    }, 8000, 100);
    // An operator releases safe mode through another follower: every replica obeys within 2 s.
    const other = fleet.replicas[(leaderIndex + 2) % 3];
    assert.equal((await other.request('/v1/services/credit/safe-mode', { method: 'PUT', body: { mode: 'off', reason: 'drill', by: 'oncall' }, auth: 'admin' })).status, 200);
    const released = await until('safe mode off on every replica', async () => (await Promise.all(fleet.replicas.map(monitoringOf))).every((s) => !s.safe_mode.active), 2000, 50);
    const answer = (await client.send())!;
    const logged = (await (await fleet.replicas[answer.replica].request(`/v1/services/credit/decisions/${answer.id}`, { auth: 'admin' })).json()) as { fallback_used?: boolean; fallback?: { used: boolean } };
    assert.equal(logged.fallback_used ?? logged.fallback?.used, false, 'the model decides again');
    assert.equal((await other.request('/v1/services/credit/safe-mode', { method: 'PUT', body: { mode: 'auto' }, auth: 'admin' })).status, 200);
    console.log(`  acknowledgement on every replica after ${acked.ms} ms; safe mode released everywhere after ${released.ms} ms`);
  });

  it('obeys a kill switch set through one replica on the third within 2 s', async () => {
    const [a, , c] = fleet.replicas;
    const set = await a.request('/v1/services/credit/kill-switch', { method: 'PUT', body: { enabled: true, reason: 'fleet drill', by: 'oncall' }, auth: 'admin' });
    assert.equal(set.status, 200);
    let n = 0;
    const obeyed = await until('the kill switch on replica 2', async () => {
      const res = await c.request(DECISIONS_PATH, { body: { id: `ks-${n++}`, ...(await firstRow()) } });
      const answer = (await res.json()) as Answer;
      return answer.fallback?.cause?.startsWith('kill_switch') === true;
    }, 2000, 20);
    assert.equal((await a.request('/v1/services/credit/kill-switch', { method: 'PUT', body: { enabled: false }, auth: 'admin' })).status, 200);
    await until('the kill switch off on replica 2', async () => {
      const answer = (await (await c.request(DECISIONS_PATH, { body: { id: `ks-${n++}`, ...(await firstRow()) } })).json()) as Answer;
      return !answer.fallback.cause?.startsWith('kill_switch');
    }, 2000, 20);
    console.log(`  kill switch set on replica 0, obeyed by replica 2 after ${obeyed.ms} ms`);
  });

  it('moves monitoring to a live replica when the leader is killed, firing nothing twice', async () => {
    const leader = fleet.replicas[leaderIndex];
    const survivors = fleet.replicas.filter((r) => r !== leader);
    const oldId = (await monitoringOf(leader)).fleet!.replica;
    const firedBefore = webhook.events.filter((e) => e.type === 'fired').length;
    await leader.kill('SIGKILL');
    const { value: newLeader, ms } = await until('a live leader', async () => {
      const states = await Promise.all(survivors.map(monitoringOf));
      const ids = states.map((s) => s.fleet!.replica);
      const named = states[0].fleet!.leader;
      return named !== null && named !== oldId && ids.includes(named) && states.every((s) => s.fleet!.leader === named) && named;
    }, 15_000, 100);
    // The new leader evaluates: the fleet's alerts are still active and acknowledged, nothing fired again.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const states = await Promise.all(survivors.map(monitoringOf));
    for (const s of states) assert.equal(s.fleet!.leader, newLeader);
    assert.equal(webhook.events.filter((e) => e.type === 'fired').length, firedBefore, 'no alert fired twice on failover');
    await leader.restart();
    const rejoined = await until('the restarted replica in the fleet', async () => {
      const s = await monitoringOf(leader);
      return s.fleet!.leader === newLeader && s.fleet!.replica !== oldId;
    }, 10_000, 100);
    console.log(`  leader killed: ${newLeader} leads after ${ms} ms; the restarted replica follows after ${rejoined.ms} ms`);
  });

  it('loses no acknowledged decision when a replica is killed with kill -9 under load', async () => {
    const load = client.load(8);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const victim = fleet.replicas[1];
    const before = client.acknowledged.size;
    await victim.kill('SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await load.stop();
    const acks: DecisionAck[] = [...client.acknowledged.values()];
    const byVictim = acks.filter((a) => a.replica === 1).length;
    assert.ok(client.acknowledged.size > before, 'the others kept acknowledging');
    assert.ok(byVictim > 300, `replica 1 acknowledged ${byVictim} decisions`);
    assert.deepEqual(await missingFromLog(acks.map((a) => a.id)), [], 'every acknowledged decision is in the shared log');
    // Requests in flight at the kill failed (connection reset) rather than being acknowledged.
    assert.ok(client.failed.every((f) => f.replica === 1), JSON.stringify(client.failed.slice(0, 3)));
    assert.deepEqual(client.refused.filter((r) => r.status >= 500 || r.status < 400), []);
    await victim.restart();
    assert.equal((await victim.request(`/v1/services/credit/decisions/${acks.find((a) => a.replica === 0)!.id}`, { auth: 'admin' })).status, 200);
    console.log(`  kill -9 under load: ${acks.length} acknowledged (${byVictim} by the killed replica), 0 missing; ${client.failed.length} in flight failed`);
  });
});

let cachedRow: Record<string, unknown> | null = null;
async function firstRow(): Promise<Record<string, unknown>> {
  cachedRow ??= (await lendingClubExamples(1))[0].features;
  return cachedRow;
}
