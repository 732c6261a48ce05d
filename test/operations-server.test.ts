/**
 * Shared operations across replicas: two servers (createServer, in this process) with their
 * own decision logs and data dirs, one real PostgreSQL holding their operations. What an
 * operator sets through one is obeyed by the other within 2 s: the kill switch, a safe-mode
 * override, acknowledgements, unloads and loads; a restarted replica still obeys them. The
 * embedded default keeps them across a restart too. And the alert manager's side of
 * acknowledgements taken elsewhere.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { openSqliteDecisionLog } from '../src/log/sqlite.ts';
import { AlertManager, type AlertCandidate } from '../src/monitor/alerts.ts';
import { openPostgresOperationsStore } from '../src/ops/postgres.ts';
import { createServer, DEFAULT_CONFIG, type Server } from '../src/server/app.ts';
import { startPostgres, type RunningPostgres } from './helpers/postgres-server.ts';
import { creditRepository, lendingClubRows, startServer } from './helpers/server.ts';
import { tempDir } from './helpers/tmp.ts';

const ADMIN_TOKEN = 'ops-admin-token-0123456789';
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface Replica {
  server: Server;
  dataDir: string;
}

let postgres: RunningPostgres;
let rows: Record<string, unknown>[];
before(async () => {
  [postgres, rows] = await Promise.all([startPostgres({ settings: { fsync: 'off' } }), lendingClubRows(700)]);
});
after(async () => {
  await postgres?.stop();
});

/** A new empty database on the test's PostgreSQL, so that one case's operations do not leak into the next. */
let databases = 0;
async function freshDatabase(): Promise<string> {
  const name = `ops_case_${++databases}`;
  const client = new pg.Client({ connectionString: postgres.url });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  return postgres.url.replace(/\/rtml$/, `/${name}`);
}

/** A replica: a server on `repository` with its own data dir (reused on restart); operations in the PostgreSQL database `shared`, else embedded. */
async function replica(repository: string, options: { dataDir?: string; shared: string | null }): Promise<Replica> {
  const dataDir = options.dataDir ?? tempDir('rtml-ops-replica-');
  const operations = options.shared !== null ? await openPostgresOperationsStore({ url: options.shared }) : undefined;
  const config = { ...DEFAULT_CONFIG, repository, adminToken: ADMIN_TOKEN, watchIntervalMs: 0, drainGraceMs: 0, logLevel: 'silent', dataDir };
  const server = await createServer(config, openSqliteDecisionLog(dataDir, { synchronous: 'normal' }), null, { operations });
  return { server, dataDir };
}

async function decide(r: Replica, row: Record<string, unknown> = rows[0]) {
  const res = await r.server.app.inject({ method: 'POST', url: '/v1/services/credit/decisions', payload: row });
  return { status: res.statusCode, body: res.json() as { fallback?: { used: boolean; cause: string | null } } };
}

const put = (r: Replica, url: string, payload: object) => r.server.app.inject({ method: 'PUT', url, headers: admin, payload });
const post = (r: Replica, url: string, payload: object = {}) => r.server.app.inject({ method: 'POST', url, headers: admin, payload });

/** Waits until `check` holds; returns the ms it took; fails after `timeoutMs`. */
async function within(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<number> {
  const started = performance.now();
  while (!(await check())) {
    if (performance.now() - started > timeoutMs) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await sleep(20);
  }
  return performance.now() - started;
}

const fallbackCause = async (r: Replica) => (await decide(r)).body.fallback?.cause ?? null;

describe('shared operations: two replicas, one PostgreSQL', () => {
  it('a kill switch set through A is obeyed by B within 2 s; turned off through B, A follows', async (t) => {
    const repository = creditRepository();
    const url = await freshDatabase();
    const [a, b] = [await replica(repository, { shared: url }), await replica(repository, { shared: url })];
    try {
      assert.equal(await fallbackCause(b), null, 'B decides with the model before');
      const set = await put(a, '/v1/services/credit/kill-switch', { enabled: true, reason: 'incident 7', by: 'alice' });
      assert.equal(set.statusCode, 200, set.body);
      assert.equal(await fallbackCause(a), 'kill_switch: incident 7', 'A obeys it as soon as it answered');
      const ms = await within('B decides with the fallback', 2000, async () => (await fallbackCause(b)) === 'kill_switch: incident 7');
      t.diagnostic(`B obeyed the kill switch ${ms.toFixed(0)} ms after A answered`);
      const described = (await b.server.app.inject({ url: '/v1/services/credit' })).json();
      assert.equal(described.health.kill_switch.enabled, true);
      assert.equal(described.health.kill_switch.by, 'alice');

      assert.equal((await put(b, '/v1/services/credit/kill-switch', { enabled: false })).statusCode, 200);
      await within('A decides with the model again', 2000, async () => (await fallbackCause(a)) === null);

      const trail = (await a.server.app.inject({ url: '/v1/services/credit/operations', headers: admin })).json();
      assert.deepEqual(
        trail.history.map((h: { kind: string; by: string; reason: string | null }) => [h.kind, h.by, h.reason]),
        [
          ['kill_switch', 'admin', null],
          ['kill_switch', 'alice', 'incident 7'],
        ],
      );
      assert.equal(trail.store.kind, 'postgres');
      assert.equal((await a.server.app.inject({ url: '/v1/services/credit/operations' })).statusCode, 401, 'the trail is admin only');
    } finally {
      await a.server.close();
      await b.server.close();
    }
  });

  it('safe mode on through A: B decides with the fallback within 2 s, and still after a restart; off through B releases both', async (t) => {
    const repository = creditRepository();
    const url = await freshDatabase();
    const a = await replica(repository, { shared: url });
    let b = await replica(repository, { shared: url });
    try {
      const set = await put(a, '/v1/services/credit/safe-mode', { mode: 'on', reason: 'drift drill' });
      assert.equal(set.statusCode, 200, set.body);
      assert.equal(set.json().safe_mode.active, true);
      const ms = await within('B in safe mode', 2000, async () => (await fallbackCause(b)) === 'safe_mode: drift drill');
      t.diagnostic(`B entered safe mode ${ms.toFixed(0)} ms after A answered`);

      await b.server.close();
      b = await replica(repository, { dataDir: b.dataDir, shared: url });
      assert.equal(await fallbackCause(b), 'safe_mode: drift drill', 'the restarted replica is in safe mode from its first decision');

      // Off, not auto: auto hands safe mode back to the alerts, which release it only after release_after_s of calm.
      assert.equal((await put(b, '/v1/services/credit/safe-mode', { mode: 'off' })).statusCode, 200);
      assert.equal(await fallbackCause(b), null);
      await within('A released', 2000, async () => (await fallbackCause(a)) === null);
    } finally {
      await a.server.close();
      await b.server.close();
    }
  });

  it('an unload through A unloads B within 2 s and survives B restarting; a load through A brings it back on B', async () => {
    const repository = creditRepository();
    const url = await freshDatabase();
    const a = await replica(repository, { shared: url });
    let b = await replica(repository, { shared: url });
    try {
      assert.equal((await post(a, '/v2/repository/models/credit/unload')).statusCode, 200);
      assert.equal((await decide(a)).status, 404);
      await within('B unloaded it', 2000, async () => (await decide(b)).status === 404);

      await b.server.close();
      b = await replica(repository, { dataDir: b.dataDir, shared: url });
      assert.equal((await decide(b)).status, 404, 'still unloaded after a restart');
      const index = (await post(b, '/v2/repository/index')).json() as { name: string; reason: string }[];
      assert.equal(index.find((e) => e.name === 'credit')?.reason, 'unloaded by an operator');

      assert.equal((await post(a, '/v2/repository/models/credit/load')).statusCode, 200);
      // B learns of it within 2 s; loading the bundle (golden check included) then takes what it takes on a busy machine.
      await within('B learns of the load', 2000, async () => b.server.repository.unloadedByOperator('credit') === false);
      await within('B loaded it again', 20_000, async () => (await decide(b)).status === 200);

      // A load and at once an unload: B, still loading when the unload arrives, ends unloaded.
      assert.equal((await post(a, '/v2/repository/models/credit/load')).statusCode, 200);
      assert.equal((await post(a, '/v2/repository/models/credit/unload')).statusCode, 200);
      await within('B learns of the unload', 2000, async () => b.server.repository.unloadedByOperator('credit'));
      await sleep(3000); // the replayed load, if still running, finishes
      assert.equal((await decide(b)).status, 404, 'the last word (unload) holds on B');
    } finally {
      await a.server.close();
      await b.server.close();
    }
  });

  it('acknowledgements reach every replica: by key for the same condition held there, kept for the one that holds the id', async () => {
    const repository = creditRepository();
    const url = await freshDatabase();
    const [a, b] = [await replica(repository, { shared: url }), await replica(repository, { shared: url })];
    try {
      // Both replicas see emp_length go missing: each raises its own alert for it.
      const missing = rows.slice(0, 600).map(({ emp_length: _gone, ...row }) => row);
      for (const r of [a, b]) for (const row of missing) assert.equal((await decide(r, row)).status, 200);
      const alertOf = async (r: Replica) => {
        const state = (await r.server.app.inject({ url: '/v1/services/credit/monitoring' })).json();
        return state.alerts.active.find((x: { key: string }) => x.key === 'missing_values:emp_length') as { id: string; acknowledged: { by: string } | null } | undefined;
      };
      const [onA, onB] = [await alertOf(a), await alertOf(b)];
      assert.ok(onA && onB, 'both replicas hold the alert');

      const ack = await post(a, `/v1/services/credit/alerts/${onA.id}/acknowledge`, { by: 'oncall', note: 'upstream fix' });
      assert.equal(ack.statusCode, 200, ack.body);
      assert.equal(ack.json().acknowledged.by, 'oncall');
      await within("B's alert acknowledged", 2000, async () => (await alertOf(b))?.acknowledged?.by === 'oncall');

      // An alert id B does not hold (the replica evaluating the fleet's alerts holds it): recorded for the fleet, 202.
      const foreign = await post(b, '/v1/services/credit/alerts/leader-alert-1/acknowledge', { by: 'oncall' });
      assert.equal(foreign.statusCode, 202, foreign.body);
      // An id no replica could read back is refused, not recorded for the fleet: empty (400, by
      // the route), or longer than any alert id (414, by the router's parameter limit).
      const empty = await post(b, '/v1/services/credit/alerts//acknowledge', { by: 'oncall' });
      assert.equal(empty.statusCode, 400, empty.body);
      assert.match(empty.json().error, /alert id must be 1-200 characters/);
      assert.equal((await post(b, `/v1/services/credit/alerts/${'x'.repeat(201)}/acknowledge`, { by: 'oncall' })).statusCode, 414);
      const acks = (await b.server.app.inject({ url: '/v1/services/credit/operations', headers: admin })).json().acknowledgements as { alertId: string }[];
      assert.deepEqual(acks.map((x) => x.alertId).filter((x) => x === '' || x.length > 200), []);
      await within('A knows of it', 2000, async () => a.server.repository.get('credit') !== undefined && (await a.server.app.inject({ url: '/v1/services/credit/operations', headers: admin })).json().acknowledgements.some((x: { alertId: string }) => x.alertId === 'leader-alert-1'));
    } finally {
      await a.server.close();
      await b.server.close();
    }
  });

  it('answers 503 + Retry-After to admin writes while PostgreSQL is down, keeps obeying the last state, and recovers', async () => {
    const repository = creditRepository();
    const url = await freshDatabase();
    const a = await replica(repository, { shared: url });
    try {
      assert.equal((await put(a, '/v1/services/credit/kill-switch', { enabled: true, reason: 'before' })).statusCode, 200);
      await postgres.kill();
      const refused = await put(a, '/v1/services/credit/kill-switch', { enabled: false });
      assert.equal(refused.statusCode, 503, refused.body);
      assert.equal(refused.headers['retry-after'], '1');
      assert.match(refused.json().error, /nothing was changed/);
      assert.equal((await post(a, '/v2/repository/models/credit/unload')).statusCode, 503);
      const load = await post(a, '/v2/repository/models/credit/load');
      assert.equal(load.statusCode, 503);
      assert.match(load.json().error, /loaded here, but not recorded for the other replicas/);
      assert.equal(await fallbackCause(a), 'kill_switch: before', 'still obeyed during the outage');
      await within('the outage shows in /metrics', 3000, async () => /rtml_operations_store_connected\{kind="postgres"\} 0/.test((await a.server.app.inject({ url: '/metrics' })).body));
      assert.equal((await decide(a)).status, 200, 'and still served');
      await postgres.restart();
      assert.equal((await put(a, '/v1/services/credit/kill-switch', { enabled: false })).statusCode, 200);
      assert.equal(await fallbackCause(a), null);
      assert.match((await a.server.app.inject({ url: '/metrics' })).body, /rtml_operations_store_connected\{kind="postgres"\} 1/);
    } finally {
      await a.server.close();
    }
  });
});

describe('rtml serve processes in shared mode', () => {
  it('--decision-log postgres://... (flag or RTML_DECISION_LOG): a kill switch set through one process is obeyed by the other within 2 s', async (t) => {
    const env = { RTML_ADMIN_TOKEN: ADMIN_TOKEN };
    const url = await freshDatabase();
    const a = await startServer({ args: ['--decision-log', url], env });
    const b = await startServer({ repository: a.repository, env: { ...env, RTML_DECISION_LOG: url } });
    try {
      const set = await fetch(`${a.url}/v1/services/credit/kill-switch`, { method: 'PUT', headers: { 'content-type': 'application/json', ...admin }, body: JSON.stringify({ enabled: true, reason: 'cli' }) });
      assert.equal(set.status, 200);
      const ms = await within('process B decides with the fallback', 2000, async () => {
        const body = await (await b.post('/v1/services/credit/decisions', rows[0])).json();
        return body.fallback?.cause === 'kill_switch: cli';
      });
      t.diagnostic(`process B obeyed after ${ms.toFixed(0)} ms`);
      const ops = await (await fetch(`${b.url}/v1/services/credit/operations`, { headers: admin })).json();
      assert.equal(ops.store.kind, 'postgres');
      await fetch(`${a.url}/v1/services/credit/kill-switch`, { method: 'PUT', headers: { 'content-type': 'application/json', ...admin }, body: JSON.stringify({ enabled: false }) });
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});

describe('embedded operations (the default, no external server)', () => {
  it('keep the kill switch, the override and an unload across a restart on the same data dir', async () => {
    const repository = creditRepository();
    let r = await replica(repository, { shared: null });
    try {
      assert.equal((await put(r, '/v1/services/credit/kill-switch', { enabled: true, reason: 'kept' })).statusCode, 200);
      assert.equal((await put(r, '/v1/services/credit/safe-mode', { mode: 'on' })).statusCode, 200);
      await r.server.close();
      r = await replica(repository, { dataDir: r.dataDir, shared: null });
      assert.equal(await fallbackCause(r), 'kill_switch: kept');
      const monitoring = (await r.server.app.inject({ url: '/v1/services/credit/monitoring' })).json();
      assert.equal(monitoring.safe_mode.mode, 'on');
      assert.equal(monitoring.safe_mode.active, true);
      assert.equal((await post(r, '/v2/repository/models/credit/unload')).statusCode, 200);
      await r.server.close();
      r = await replica(repository, { dataDir: r.dataDir, shared: null });
      assert.equal((await decide(r)).status, 404, 'still unloaded');
      // Alone, an alert this process does not hold does not exist.
      assert.equal((await post(r, '/v2/repository/models/credit/load')).statusCode, 200);
      assert.equal((await post(r, '/v1/services/credit/alerts/nobody-holds-this/acknowledge', { by: 'x' })).statusCode, 404);
    } finally {
      await r.server.close();
    }
  });
});

describe('AlertManager: acknowledgements taken elsewhere', () => {
  const candidate = (key: string): AlertCandidate => ({ key, rule: key.split(':')[0], subject: key.split(':')[1], severity: 'warning', message: key, value: 1, threshold: 0.5, window: 'last_1000' });
  const ack = (alertId: string, alertKey: string | null, at: number) => ({ alertId, alertKey, by: 'oncall', note: 'n', at: new Date(at).toISOString() });

  it('keeps an acknowledgement for an id it does not hold, and applies it when that alert fires', () => {
    const alerts = new AlertManager('svc', [], { cooldownMs: 0, historySize: 10, newId: (c) => `fleet:${c.key}` });
    assert.equal(alerts.applyAcknowledgement(ack('fleet:feature_drift:x', null, 1000)), null);
    alerts.update([candidate('feature_drift:x')], 2000);
    assert.equal(alerts.active()[0].acknowledged?.by, 'oncall');
  });

  it('applies one naming a key to the alert of that key fired before it, not to one fired after', () => {
    const alerts = new AlertManager('svc', [], { cooldownMs: 0, historySize: 10 });
    alerts.update([candidate('feature_drift:x')], 1000);
    assert.ok(alerts.applyAcknowledgement(ack('elsewhere-1', 'feature_drift:x', 1500)));
    assert.equal(alerts.active()[0].acknowledged?.by, 'oncall');
    alerts.update([], 2000);
    alerts.update([candidate('feature_drift:x')], 3000);
    assert.equal(alerts.applyAcknowledgement(ack('elsewhere-2', 'feature_drift:x', 2500)), null, 'a new episode is not acknowledged by an older ack');
    assert.equal(alerts.active()[0].acknowledged, null);
  });
});
