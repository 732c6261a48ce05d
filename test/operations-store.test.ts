/**
 * The operations stores: the shared conformance suite on the embedded store (SQLite under a
 * data dir) and on PostgreSQL (a real server, test/helpers/postgres-server.ts); then what only
 * a shared store does: two instances as two replicas see each other's changes within 2 s, by
 * notification and, with the listener connection terminated, by the poll; during an outage
 * reads keep the last state and writes reject as unavailable; after it, both recover.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { openEmbeddedOperationsStore } from '../src/ops/embedded.ts';
import { openPostgresOperationsStore, type PostgresOperationsStore } from '../src/ops/postgres.ts';
import { isOperationsUnavailable, type OperationChange } from '../src/ops/types.ts';
import { operationsConformance } from './helpers/operations-conformance.ts';
import { startPostgres, type RunningPostgres } from './helpers/postgres-server.ts';
import { tempDir } from './helpers/tmp.ts';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Resolves with the ms it took for `check` to hold; fails after `timeoutMs`. */
async function within(what: string, timeoutMs: number, check: () => boolean): Promise<number> {
  const started = performance.now();
  while (!check()) {
    if (performance.now() - started > timeoutMs) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await sleep(10);
  }
  return performance.now() - started;
}

const embeddedDir = tempDir('rtml-ops-');
operationsConformance('embedded', {
  open: async () => openEmbeddedOperationsStore({ dataDir: embeddedDir }),
  reopen: async (store) => {
    await store.close();
    return openEmbeddedOperationsStore({ dataDir: embeddedDir });
  },
});

describe('embedded operations store: processes sharing one data dir (workers)', () => {
  it('a change written through one store on the file is obeyed by another within 2 s, heard as not local', async (t) => {
    const dir = tempDir('rtml-ops-workers-');
    const [a, b] = [openEmbeddedOperationsStore({ dataDir: dir }), openEmbeddedOperationsStore({ dataDir: dir })];
    try {
      const heard: OperationChange[] = [];
      b.subscribe((c) => heard.push(c));
      await a.setKillSwitch('credit', { enabled: true, reason: 'from worker A', by: 'alice' });
      await a.acknowledge('credit', { alertId: 'al-9', alertKey: null, by: 'alice', note: '' });
      const ms = await within('B sees the kill switch', 2000, () => b.current().service('credit').killSwitch.enabled);
      t.diagnostic(`seen by the other store after ${ms.toFixed(0)} ms`);
      await within('B sees the acknowledgement', 2000, () => b.current().service('credit').acknowledgements.length === 1);
      assert.deepEqual(
        heard.map((c) => [c.kind, c.local]),
        [
          ['kill_switch', false],
          ['acknowledge', false],
        ],
      );
      await b.setKillSwitch('credit', { enabled: false, reason: null, by: 'bob' });
      await within('A sees it off', 2000, () => !a.current().service('credit').killSwitch.enabled);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

let postgres: RunningPostgres;
before(async () => {
  postgres = await startPostgres({ settings: { fsync: 'off' } });
});
after(async () => {
  await postgres?.stop();
});

const openShared = (options: { pollIntervalMs?: number } = {}): Promise<PostgresOperationsStore> => openPostgresOperationsStore({ url: postgres.url, ...options });

operationsConformance('postgres', {
  open: () => openShared(),
  reopen: async (store) => {
    await store.close();
    return openShared();
  },
});

describe('PostgreSQL operations store: a fleet of replicas', () => {
  it('a kill switch set through one replica is obeyed by another within 2 s (notification), and the other hears it as not local', async (t) => {
    // A slow poll, so that promptness comes from LISTEN/NOTIFY.
    const [a, b] = [await openShared({ pollIntervalMs: 5000 }), await openShared({ pollIntervalMs: 5000 })];
    try {
      const heard: OperationChange[] = [];
      b.subscribe((c) => heard.push(c));
      await a.setKillSwitch('credit', { enabled: true, reason: 'from A', by: 'alice' });
      const ms = await within('B sees the kill switch', 2000, () => b.current().service('credit').killSwitch.enabled);
      t.diagnostic(`seen by the other replica after ${ms.toFixed(0)} ms (notification)`);
      assert.ok(ms < 1000, `${ms} ms: the notification should have been prompt`);
      assert.equal(b.current().service('credit').killSwitch.reason, 'from A');
      assert.deepEqual(
        heard.filter((c) => c.service === 'credit').map((c) => [c.kind, c.local]),
        [['kill_switch', false]],
      );
      await a.setKillSwitch('credit', { enabled: false, reason: null, by: 'alice' });
      await within('B sees it off', 2000, () => !b.current().service('credit').killSwitch.enabled);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('with its LISTEN connection terminated, a replica still learns of a change within 2 s through the poll, and listens again', async (t) => {
    const [a, b] = [await openShared(), await openShared()];
    const admin = new pg.Client({ connectionString: postgres.url });
    await admin.connect();
    try {
      const pid = b.listenerPid();
      assert.ok(pid !== null, 'B listens');
      const { rows } = await admin.query<{ ok: boolean }>('SELECT pg_terminate_backend($1) AS ok', [pid]);
      assert.equal(rows[0].ok, true);
      // Written right away: B's listener is down (it reconnects after a backoff), so the poll must catch it.
      await a.setSafeMode('credit', { mode: 'on', reason: 'listener down', by: 'alice' });
      const ms = await within('B sees the override', 2000, () => b.current().service('credit').safeMode.mode === 'on');
      t.diagnostic(`seen after ${ms.toFixed(0)} ms with the listener terminated`);
      await within('B listens again', 5000, () => b.listenerPid() !== null && b.listenerPid() !== pid);
      await a.setSafeMode('credit', { mode: 'auto', reason: null, by: 'alice' });
      await within('B sees auto', 2000, () => b.current().service('credit').safeMode.mode === 'auto');
    } finally {
      await admin.end();
      await a.close();
      await b.close();
    }
  });

  it('a change whose notification never came (written without NOTIFY) is read by the poll within 2 s', async (t) => {
    const b = await openShared();
    const admin = new pg.Client({ connectionString: postgres.url });
    await admin.connect();
    try {
      const value = { enabled: true, reason: 'no notification', since: new Date().toISOString(), by: 'sql' };
      await admin.query('BEGIN');
      const { rows } = await admin.query<{ seq: string }>("INSERT INTO rtml_ops_audit (service, kind, by, at, reason, value, origin) VALUES ('silent', 'kill_switch', 'sql', now(), $1, $2, 'test') RETURNING seq::text", [value.reason, JSON.stringify(value)]);
      await admin.query("INSERT INTO rtml_ops_state (service, kind, seq, value) VALUES ('silent', 'kill_switch', $1, $2)", [rows[0].seq, JSON.stringify(value)]);
      await admin.query('COMMIT');
      const ms = await within('B sees the silent change', 2000, () => b.current().service('silent').killSwitch.enabled);
      t.diagnostic(`seen after ${ms.toFixed(0)} ms by the poll alone`);
    } finally {
      await admin.end();
      await b.close();
    }
  });

  it('concurrent writers: every replica ends on the last committed value of each service', async () => {
    const replicas = [await openShared(), await openShared(), await openShared()];
    try {
      const writes = [];
      for (let i = 0; i < 30; i++) {
        const r = replicas[i % 3];
        writes.push(r.setKillSwitch(`svc-${i % 4}`, { enabled: i % 2 === 0, reason: `w${i}`, by: `r${i % 3}` }));
      }
      await Promise.all(writes);
      for (const r of replicas) await r.sync();
      for (let s = 0; s < 4; s++) {
        const [last] = await replicas[0].history(`svc-${s}`, { limit: 1 });
        for (const r of replicas) assert.deepEqual(r.current().service(`svc-${s}`).killSwitch, last.value, `svc-${s}`);
      }
    } finally {
      for (const r of replicas) await r.close();
    }
  });

  it('during an outage: reads keep the last state, writes reject as unavailable; after it, both recover and catch up', async (t) => {
    const [a, b] = [await openShared(), await openShared()];
    try {
      await a.setKillSwitch('outage', { enabled: true, reason: 'before the outage', by: 'alice' });
      await within('B sees it', 2000, () => b.current().service('outage').killSwitch.enabled);
      await postgres.kill();
      await sleep(600); // a few polls fail
      assert.equal(b.current().service('outage').killSwitch.enabled, true, 'B keeps obeying the last known state');
      assert.equal(b.status().connected, false);
      const started = performance.now();
      await assert.rejects(a.setKillSwitch('outage', { enabled: false, reason: null, by: 'alice' }), (err) => isOperationsUnavailable(err));
      t.diagnostic(`a write during the outage rejected after ${(performance.now() - started).toFixed(0)} ms`);
      assert.equal(a.current().service('outage').killSwitch.enabled, true, 'a rejected write changed nothing');
      await assert.rejects(a.history('outage'), (err) => isOperationsUnavailable(err));

      await postgres.restart();
      await a.setKillSwitch('outage', { enabled: false, reason: null, by: 'alice' });
      const ms = await within('B catches up after the outage', 6000, () => !b.current().service('outage').killSwitch.enabled);
      t.diagnostic(`B caught up ${ms.toFixed(0)} ms after the first write that followed the restart`);
      await within('B listens again', 10_000, () => b.listenerPid() !== null);
      assert.equal(b.status().connected, true);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('refuses to open when PostgreSQL is unreachable, as unavailable', async () => {
    await assert.rejects(openPostgresOperationsStore({ url: 'postgres://postgres@127.0.0.1:1/rtml' }), (err) => isOperationsUnavailable(err));
  });
});
