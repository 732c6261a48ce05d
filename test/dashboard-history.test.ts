/**
 * The dashboard's per-minute history: the same contract on the embedded SQLite file, in memory
 * and in PostgreSQL (a real throwaway cluster): rows come back in minute order, a minute
 * written twice keeps the last, reads are bounded, pruning drops old minutes, the SQLite file
 * survives a reopen and refuses a foreign file; PostgreSQL adds up the replicas of a fleet.
 * The collector's quantiles from Prometheus buckets are checked against exact values.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { bucketQuantile } from '../src/dashboard/collector.ts';
import { HISTORY_FILE, MINUTE_MS, memoryHistoryStore, openEmbeddedHistoryStore, type HistoryStore, type MinuteAggregate } from '../src/dashboard/history.ts';
import { openPostgresHistoryStore } from '../src/dashboard/history-postgres.ts';
import { startPostgres, type RunningPostgres } from './helpers/postgres-server.ts';
import { tempDir } from './helpers/tmp.ts';

const T0 = Date.UTC(2026, 0, 1, 12, 0);

function minute(i: number, overrides: Partial<MinuteAggregate> = {}): MinuteAggregate {
  return {
    service: 'credit',
    minute: T0 + i * MINUTE_MS,
    version: '1',
    decisions: 100 + i,
    fallbacks: i % 3,
    mix: { approve: 60 + i, decline: 40 },
    latency_ms: { total: { p50: 2 + i / 10, p99: 9 }, model: { p50: 1, p99: null } },
    drift: { annual_inc: { psi: 0.01 * i, verdict: i > 5 ? 'critical' : 'ok' } },
    score_psi: 0.02,
    decision_mix_psi: null,
    alerts_active: i > 5 ? 1 : 0,
    safe_mode: i > 5,
    performance: { outcomes: i, brier: 0.15, reference_brier: 0.16, estimated_brier: 0.155 },
    ...overrides,
  };
}

function conformance(kind: string, open: () => Promise<HistoryStore>) {
  describe(`history store (${kind})`, () => {
    it('returns a service’s minutes in order, the last write of a minute, within the range and limit', async () => {
      const store = await open();
      try {
        await store.write([minute(2), minute(0), minute(1), minute(0, { service: 'fraud' })]);
        await store.write([minute(1, { decisions: 7 })]);
        const rows = await store.read('credit', { since: T0 });
        assert.deepEqual(rows.map((r) => r.minute), [T0, T0 + MINUTE_MS, T0 + 2 * MINUTE_MS]);
        assert.equal(rows[1].decisions, 7);
        assert.deepEqual(rows[2], minute(2));
        assert.deepEqual((await store.read('credit', { since: T0 + MINUTE_MS, until: T0 + 2 * MINUTE_MS })).map((r) => r.minute), [T0 + MINUTE_MS]);
        assert.deepEqual((await store.read('credit', { since: T0, limit: 2 })).map((r) => r.minute), [T0 + MINUTE_MS, T0 + 2 * MINUTE_MS], 'the latest ones');
        assert.equal((await store.read('fraud', { since: 0 })).length, 1);
        assert.deepEqual(await store.read('nobody', { since: 0 }), []);
      } finally {
        await store.close();
      }
    });

    it('prunes minutes before the retention', async () => {
      const store = await open();
      try {
        // A shared database may hold other tests' minutes: clear them first, so the count is exact.
        await store.prune(T0 + 4 * MINUTE_MS);
        await store.write(Array.from({ length: 10 }, (_, i) => minute(i, { service: 'pruned' })));
        assert.equal(await store.prune(T0 + 4 * MINUTE_MS), 4);
        assert.deepEqual((await store.read('pruned', { since: 0 })).map((r) => (r.minute - T0) / MINUTE_MS), [4, 5, 6, 7, 8, 9]);
      } finally {
        await store.close();
      }
    });
  });
}

conformance('memory', async () => memoryHistoryStore());
conformance('sqlite', async () => openEmbeddedHistoryStore(tempDir('rtml-history-')));

describe('history store (sqlite file)', () => {
  it('keeps its minutes across a reopen, in its own file beside the decision log', async () => {
    const dir = tempDir('rtml-history-');
    const first = openEmbeddedHistoryStore(dir);
    await first.write([minute(0), minute(1)]);
    await first.close();
    const again = openEmbeddedHistoryStore(dir);
    try {
      assert.equal((await again.read('credit', { since: 0 })).length, 2);
    } finally {
      await again.close();
    }
    const db = new Database(join(dir, HISTORY_FILE), { readonly: true });
    assert.equal(db.prepare("SELECT value FROM meta WHERE key = 'kind'").pluck().get(), 'rtml dashboard history');
    db.close();
  });

  it('refuses a file that is not a history store', () => {
    const dir = tempDir('rtml-history-');
    const db = new Database(join(dir, HISTORY_FILE));
    db.exec('CREATE TABLE something (x)');
    db.close();
    assert.throws(() => openEmbeddedHistoryStore(dir), /history: .*not an rtml dashboard history/);
  });
});

describe('history store (postgres)', () => {
  let postgres: RunningPostgres;
  before(async () => {
    postgres = await startPostgres({ settings: { fsync: 'off' } });
  });
  after(async () => {
    await postgres?.stop();
  });
  conformance('postgres', () => openPostgresHistoryStore({ url: postgres.url, replica: `r-${Math.random()}` }));

  it('adds up the decisions of a fleet’s replicas and keeps the busiest replica’s latency', async () => {
    const a = await openPostgresHistoryStore({ url: postgres.url, replica: 'a' });
    const b = await openPostgresHistoryStore({ url: postgres.url, replica: 'b' });
    try {
      await a.write([minute(0, { service: 'fleet', decisions: 30, mix: { approve: 30 }, latency_ms: { total: { p50: 1, p99: 5 } } })]);
      await b.write([minute(0, { service: 'fleet', decisions: 70, mix: { approve: 50, decline: 20 }, latency_ms: { total: { p50: 2, p99: 8 } }, safe_mode: true })]);
      const [row] = await a.read('fleet', { since: 0 });
      assert.equal(row.decisions, 100);
      assert.deepEqual(row.mix, { approve: 80, decline: 20 });
      assert.deepEqual(row.latency_ms.total, { p50: 2, p99: 8 });
      assert.equal(row.safe_mode, true);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('latency quantiles from cumulative buckets', () => {
  const bounds = [0.001, 0.002, 0.005, 0.01, Infinity];
  it('interpolates within the bucket holding the rank, over the difference of two samples', () => {
    // 100 decisions in the span: 50 under 1 ms, 40 in (1, 2], 10 in (2, 5].
    const older = [10, 10, 10, 10, 10];
    const newer = [60, 100, 110, 110, 110];
    assert.equal(bucketQuantile(bounds, newer, older, 0.5), 1);
    assert.ok(Math.abs(bucketQuantile(bounds, newer, older, 0.7)! - 1.5) < 1e-9);
    assert.ok(Math.abs(bucketQuantile(bounds, newer, older, 0.99)! - 4.7) < 1e-9);
  });
  it('answers null without decisions and the last finite bound above it', () => {
    assert.equal(bucketQuantile(bounds, [5, 5, 5, 5, 5], [5, 5, 5, 5, 5], 0.5), null);
    assert.equal(bucketQuantile(bounds, [0, 0, 0, 0, 4], undefined, 0.5), 10);
  });
});
