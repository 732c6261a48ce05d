/**
 * Fleet-wide monitoring: three replicas' windows, exported and merged, judge the fleet's
 * traffic as one process seeing all of it would; with a real PostgreSQL exchange, a drift in
 * every replica's traffic raises each alert once and puts every replica in safe mode, and the
 * leader's death moves monitoring to another replica without firing anything twice.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { AlertEvent, AlertSink } from '../src/monitor/alerts.ts';
import { monitoringSchema } from '../src/monitor/config.ts';
import { EmbeddedMonitorHub } from '../src/monitor/exchange/embedded.ts';
import { openPostgresMonitorExchange } from '../src/monitor/exchange/postgres.ts';
import type { MonitorExchange } from '../src/monitor/exchange/types.ts';
import { FleetMonitor } from '../src/monitor/fleet.ts';
import { MonitorWindows, ProfileHistogram, ProfileLayout } from '../src/monitor/histogram.ts';
import { ServiceMonitor, type ColumnReport, type MonitorState } from '../src/monitor/service-monitor.ts';
import { exportWindowState, MergedWindows, readWindowExport } from '../src/monitor/window-export.ts';
import { openSqliteDecisionLog } from '../src/log/sqlite.ts';
import { createServer, DEFAULT_CONFIG, type Server } from '../src/server/app.ts';
import { startPostgres, type RunningPostgres } from './helpers/postgres-server.ts';
import { creditRepository } from './helpers/server.ts';
import { tempDir } from './helpers/tmp.ts';
import { loadCreditTraffic, type CreditTraffic } from './helpers/credit-traffic.ts';

let credit: CreditTraffic;
before(async () => {
  credit = await loadCreditTraffic();
});

const CONFIG = { on_critical: 'fallback', release_after_s: 10, count_window: 1000, min_observations: 500 };
const config = () => monitoringSchema.parse(CONFIG);

/** A sink that remembers what it was given. */
function recordingSink(): AlertSink & { events: AlertEvent[] } {
  const events: AlertEvent[] = [];
  return { name: 'recording', events, deliver: (e) => events.push(e) };
}

const close = (a: number, b: number, what: string) => {
  if (Number.isNaN(a) && Number.isNaN(b)) return;
  assert.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b)), `${what}: ${a} vs ${b}`);
};

function sameColumn(fleet: ColumnReport, one: ColumnReport, what: string): void {
  assert.equal(fleet.n, one.n, `${what} n`);
  close(fleet.missing_rate, one.missing_rate, `${what} missing rate`);
  if (one.mean !== undefined) {
    close(fleet.mean!, one.mean, `${what} mean`);
    close(fleet.std!, one.std!, `${what} std`);
  }
  assert.deepEqual(
    fleet.tests.map((t) => t.test),
    one.tests.map((t) => t.test),
    `${what} tests`,
  );
  fleet.tests.forEach((t, i) => close(t.value, one.tests[i].value, `${what} ${t.test}`));
  assert.equal(fleet.verdict, one.verdict, `${what} verdict`);
}

describe('merged window exports', () => {
  it('equal one monitor seeing every decision: time windows exactly, the count window within its stated bound, the same verdicts', () => {
    const clock = { t: Date.parse('2026-11-01T00:00:00Z') };
    const make = () => new ServiceMonitor({ bundle: credit.bundle, reference: credit.reference, config: config(), sinks: [], now: () => clock.t });
    const one = make();
    const replicas = [make(), make(), make()];
    const decisions = 3000;
    // A drift in the last third, so verdicts have something to say.
    for (let i = 0; i < decisions; i++) {
      const row = i >= 2000 ? { ...credit.rows[i], emp_length: null } : credit.rows[i];
      one.observeDecision(row, credit.scores[i], null, null);
      replicas[i % 3].observeDecision(row, credit.scores[i], null, null);
      clock.t += 97;
    }
    for (let i = 0; i < 30; i++) {
      one.observeRejection(['annual_inc']);
      replicas[i % 3].observeRejection(['annual_inc']);
    }
    const layout = replicas[0].windows.layout;
    const exports = replicas.map((r) => exportWindowState(r.windows, clock.t));
    const merged = new MergedWindows(layout, exports.map((e) => readWindowExport(e, layout)), 1000);
    const leader = make();
    const fleet = leader.evaluateFleet(merged);
    const single = one.evaluate();

    for (const name of ['5m', '1h', '1d']) {
      const f = fleet.windows[name];
      const s = single.windows[name];
      assert.equal(f.observations, s.observations, `${name} observations`);
      for (const feature of Object.keys(s.features)) sameColumn(f.features[feature], s.features[feature], `${name} ${feature}`);
      sameColumn(f.score!, s.score!, `${name} score`);
      assert.deepEqual(f.data_quality, s.data_quality, `${name} data quality`);
      // Cells: the same sums (up to the order of additions).
      const a = merged.snapshot(name, clock.t).data;
      const b = one.windows.snapshot(name, clock.t).data;
      a.forEach((v, i) => close(v, b[i], `${name} cell ${i}`));
    }

    // Count window: between N and N + b − 1 credit.rows, within (k + 1)·b credit.rows of the fleet's exact last N.
    const block = replicas[0].windows.countWindow!.blockSize;
    const covered = fleet.windows.count.observations;
    assert.ok(covered >= 1000 && covered < 1000 + block, `covers ${covered}`);
    const exact = new ProfileHistogram(layout);
    for (let i = decisions - 1000; i < decisions; i++) exact.observe(i >= 2000 ? { ...credit.rows[i], emp_length: null } : credit.rows[i], credit.scores[i], null);
    const snapshot = merged.snapshot('count', clock.t);
    for (const [c, fh] of snapshot.features.entries()) {
      let l1 = 0;
      fh.counts.forEach((v, j) => (l1 += Math.abs(v - exact.features[c].counts[j])));
      l1 += Math.abs(fh.missing - exact.features[c].missing);
      assert.ok(l1 <= 4 * block, `${fh.name}: ${l1} credit.rows differ from the exact last 1000`);
    }
    assert.deepEqual(
      fleet.alerts.active.map((a) => [a.key, a.severity]).sort(),
      single.alerts.active.map((a) => [a.key, a.severity]).sort(),
    );
    assert.ok(fleet.alerts.active.some((a) => a.key === 'missing_values:emp_length' && a.severity === 'critical'));
    assert.equal(fleet.safe_mode.active, single.safe_mode.active);
    // KS raw values travel with their blocks: the merged sample is the credit.rows the blocks cover (all in the rings here).
    assert.equal(merged.sortedRawScores()!.length, covered);
  });

  it('carry each count block\'s time span and the raw values of its rows still in the rings', () => {
    const layout = new ProfileLayout({ features: [{ kind: 'numeric', name: 'x', edges: [5] }], score: null, decisions: null });
    const windows = new MonitorWindows(layout, { count: { size: 10, blocks: 5 }, time: [] }); // blocks of 2, 6 slots
    for (let i = 0; i < 11; i++) windows.observe({ x: i === 7 ? null : i }, null, null, null, 1000 + i);
    const exported = readWindowExport(exportWindowState(windows, 2000), layout);
    const blocks = exported.count!.blocks;
    assert.deepEqual(
      blocks.map((b) => [b.firstAt, b.lastAt, b.histogram.observations, [...b.raw[0]]]),
      [
        // Row 0 has left the ring of the last 10; row 7 is missing.
        [1000, 1001, 2, [1]],
        [1002, 1003, 2, [2, 3]],
        [1004, 1005, 2, [4, 5]],
        [1006, 1007, 2, [6]],
        [1008, 1009, 2, [8, 9]],
        [1010, 1010, 1, [10]],
      ],
    );
    // Merged alone: the newest blocks until they hold at least N = 10, here all six (11 rows); KS reads the raw values still held.
    const merged = new MergedWindows(layout, [exported], 10);
    assert.equal(merged.snapshot('count', 2000).observations, 11);
    assert.deepEqual([...merged.sortedRawValues('x')!], [1, 2, 3, 4, 5, 6, 8, 9, 10]);
  });

  it('refuse an export of another layout, and a truncated one, by name', () => {
    const m = new ServiceMonitor({ bundle: credit.bundle, reference: credit.reference, config: config(), sinks: [] });
    for (let i = 0; i < 10; i++) m.observeDecision(credit.rows[i], credit.scores[i], null, null);
    const bytes = exportWindowState(m.windows, Date.now());
    const other = new ServiceMonitor({ bundle: credit.bundle, reference: { ...credit.reference, score: null }, config: config(), sinks: [] });
    assert.throws(() => readWindowExport(bytes, other.windows.layout), /another layout/);
    assert.throws(() => readWindowExport(bytes.subarray(0, bytes.length - 3), m.windows.layout), /truncated/);
  });

  it('count each outcome once at the leader: every replica reads every outcome of the shared log', async () => {
    const hub = new EmbeddedMonitorHub();
    const replicas = [0, 1, 2].map(() => new ServiceMonitor({ bundle: credit.bundle, reference: credit.reference, config: config(), sinks: [] }));
    const fleets = replicas.map((monitor) => new FleetMonitor({ exchange: hub.connect(), monitors: () => [{ service: 'credit', version: '1', monitor }], logger: quiet }));
    for (let i = 0; i < 300; i++) {
      const outcome = { seq: i, service: 'credit', id: `d${i}`, time: '', modelVersion: '1', score: credit.scores[i], decision: 'approve', fallbackUsed: false, label: credit.labels[i], outcomeTime: '' };
      for (const r of replicas) r.observeOutcome(outcome);
    }
    for (const f of fleets) await f.cycle();
    assert.deepEqual(
      fleets.map((f) => f.isLeader),
      [true, false, false],
    );
    for (const r of replicas) assert.equal(r.state().decay.outcomes, 300);
    for (const f of fleets) await f.close();
  });
});

const quiet = { info() {}, warn() {}, error() {} };

describe('operator inputs on a fleet (the operations store calls these hooks on every replica)', () => {
  it('a safe-mode override applies on every replica at once; an acknowledgement reaches every replica through the leader\'s verdict', async () => {
    const hub = new EmbeddedMonitorHub();
    const monitors = [0, 1, 2].map(() => new ServiceMonitor({ bundle: credit.bundle, reference: credit.reference, config: config(), sinks: [] }));
    const fleets = monitors.map((monitor) => new FleetMonitor({ exchange: hub.connect(), monitors: () => [{ service: 'credit', version: '1', monitor }], logger: quiet, publishIntervalMs: 1 }));
    const cycle = async () => {
      await new Promise((r) => setTimeout(r, 2));
      for (const f of fleets) await f.cycle();
    };
    for (const f of fleets) f.applySafeModeOverride('credit', 'on', 'maintenance');
    await cycle();
    assert.ok(monitors.every((m) => m.safeModeActive && m.safeModeReason === 'maintenance'));
    for (const f of fleets) f.applySafeModeOverride('credit', 'off', null);
    assert.ok(monitors.every((m) => !m.safeModeActive), 'off: at once, before any cycle');
    await cycle();
    await cycle();
    for (const f of fleets) f.applySafeModeOverride('credit', 'auto', null);
    await cycle();
    await cycle();
    assert.ok(monitors.every((m) => m.state().safe_mode.mode === 'auto' && !m.safeModeActive), 'auto: the clean fleet\'s verdict');

    for (let i = 0; i < 900; i++) monitors[i % 3].observeDecision({ ...credit.rows[i], emp_length: null }, credit.scores[i], null, null);
    await cycle();
    await cycle();
    const alert = monitors[2].state().alerts.active.find((a) => a.key === 'missing_values:emp_length')!;
    assert.ok(alert);
    for (const f of fleets) f.applyAcknowledgement('credit', alert.id, 'ops@example.com', 'looking into the feed', Date.now());
    await cycle();
    await cycle();
    for (const m of monitors) assert.equal(m.state().alerts.active.find((a) => a.id === alert.id)!.acknowledged?.by, 'ops@example.com');
    for (const f of fleets) await f.close();
  });
});

describe('a fleet of three replicas on PostgreSQL', () => {
  let postgres: RunningPostgres;
  let admin: pg.Client;
  before(async () => {
    postgres = await startPostgres();
    admin = new pg.Client({ connectionString: postgres.url });
    await admin.connect();
  });
  after(async () => {
    await admin.end();
    await postgres.stop();
  });

  interface Replica {
    monitor: ServiceMonitor;
    sink: ReturnType<typeof recordingSink>;
    exchange: MonitorExchange;
    fleet: FleetMonitor;
  }
  const replicas: Replica[] = [];
  const fired = () => replicas.flatMap((r) => r.sink.events.filter((e) => e.type === 'fired').map((e) => e.alert.key));
  const leaders = () => replicas.filter((r) => r.fleet.isLeader);
  async function until(what: string, condition: () => boolean, ms = 8000): Promise<number> {
    const started = Date.now();
    while (!condition()) {
      if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return Date.now() - started;
  }

  it('raises each drift alert once across the fleet, and every replica reports safe mode within seconds', async () => {
    for (let k = 0; k < 3; k++) {
      const sink = recordingSink();
      const monitor = new ServiceMonitor({ bundle: credit.bundle, reference: credit.reference, config: config(), sinks: [sink] });
      const exchange = await openPostgresMonitorExchange({ url: postgres.url, replica: `replica-${k}` });
      const fleet = new FleetMonitor({ exchange, monitors: () => [{ service: 'credit', version: '1', monitor }], publishIntervalMs: 300, logger: quiet });
      fleet.start();
      replicas.push({ monitor, sink, exchange, fleet });
    }
    await until('one leader', () => leaders().length === 1);
    // Before any traffic, means are NaN, and stay numbers (not null) through the stored verdict.
    await until('a first verdict', () => replicas.every((r) => r.monitor.state().fleet?.leader !== null));
    assert.ok(Number.isNaN(replicas.find((r) => !r.fleet.isLeader)!.monitor.state().windows.count.features.annual_inc.mean));
    // Clean traffic, round robin: no alert anywhere.
    for (let i = 0; i < 1500; i++) replicas[i % 3].monitor.observeDecision(credit.rows[i], credit.scores[i], null, null);
    await until('a verdict on clean traffic', () => replicas.every((r) => (r.monitor.state().windows.count?.observations ?? 0) >= 1000));
    assert.deepEqual(fired(), []);
    // Each replica alone holds 500 of the last 1,500: its own share would never reach a verdict this soon.
    for (const r of replicas) assert.equal(r.monitor.windows.snapshot('count', Date.now()).observations, 500);

    // emp_length goes missing in every replica's traffic.
    const drifted = Date.now();
    for (let i = 1500; i < 3000; i++) replicas[i % 3].monitor.observeDecision({ ...credit.rows[i], emp_length: null }, credit.scores[i], null, null);
    const took = await until('safe mode on every replica', () => replicas.every((r) => r.monitor.safeModeActive));
    assert.ok(Date.now() - drifted < 5000, `safe mode everywhere after ${took} ms`);
    const state = replicas[2].monitor.state() as MonitorState;
    assert.equal(state.fleet!.replica, 'replica-2');
    assert.equal(state.fleet!.leader, leaders()[0].fleet.replica);
    assert.deepEqual(state.fleet!.replicas.map((r) => r.id).sort(), ['replica-0', 'replica-1', 'replica-2']);
    assert.match(replicas[1].monitor.safeModeReason ?? '', /emp_length missing/);
    // A few more evaluations: still one delivery per alert, all from the leader.
    await new Promise((r) => setTimeout(r, 1000));
    const keys = fired();
    assert.ok(keys.includes('missing_values:emp_length'));
    assert.equal(new Set(keys).size, keys.length, `fired twice: ${keys}`);
    for (const r of replicas) if (!r.fleet.isLeader) assert.equal(r.sink.events.length, 0, `${r.fleet.replica} delivered alerts`);
    const leader = leaders()[0];
    const p = leader.fleet.stats.lastPublish!;
    console.log(`  export ${p.bytes} bytes (${p.packedBytes} deflated), encoded in ${p.exportMs.toFixed(2)} ms, stored after ${p.ms.toFixed(1)} ms; merge+evaluate of ${leader.fleet.stats.lastEvaluation!.exports} exports ${leader.fleet.stats.lastEvaluation!.ms.toFixed(1)} ms`);
  });

  it('moves leadership to a live replica when the leader\'s connection is cut, then when it dies, firing nothing twice', async () => {
    const before = fired();
    const alertIds = replicas[0].monitor.state().alerts.active.map((a) => a.id).sort();
    const first = leaders()[0];
    const { rows: sessions } = await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [`rtml monitor leader ${first.fleet.replica}`]);
    assert.equal(sessions.length, 1);
    await admin.query('SELECT pg_terminate_backend($1)', [sessions[0].pid]);
    // Whoever wins the lock next (the cut replica competes too), a new term begins.
    const terms = () => replicas.reduce((n, r) => n + r.fleet.stats.terms, 0);
    const termsBefore = terms();
    const cutOver = await until('a leader again after the cut', () => leaders().length === 1 && terms() > termsBefore);
    // The leader dies: its exchange closes, its session ends.
    const second = leaders()[0];
    await second.fleet.close();
    await second.exchange.close();
    const live = replicas.filter((r) => r !== second);
    const tookOver = await until('another leader after the death', () => live.some((r) => r.fleet.isLeader));
    const third = live.find((r) => r.fleet.isLeader)!;
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(fired(), before, 'no alert fired again');
    assert.deepEqual(third.monitor.state().alerts.active.map((a) => a.id).sort(), alertIds, 'the same alerts, resumed');
    assert.ok(live.every((r) => r.monitor.safeModeActive));
    assert.equal(third.monitor.state().fleet!.leader, third.fleet.replica);
    console.log(`  leader again ${cutOver} ms after its session was cut; another replica led ${tookOver} ms after the leader died`);
    for (const r of live) {
      await r.fleet.close();
      await r.exchange.close();
    }
  });
});

describe('a PostgreSQL outage', () => {
  it('leaves every replica on the last verdict it read (safe mode included), and the fleet resumes once the database is back', async () => {
    const postgres = await startPostgres();
    const members = await Promise.all(
      [0, 1].map(async (k) => {
        const monitor = new ServiceMonitor({ bundle: credit.bundle, reference: credit.reference, config: config(), sinks: [] });
        const exchange = await openPostgresMonitorExchange({ url: postgres.url, replica: `outage-${k}` });
        const fleet = new FleetMonitor({ exchange, monitors: () => [{ service: 'credit', version: '1', monitor }], publishIntervalMs: 200, logger: quiet });
        fleet.start();
        return { monitor, exchange, fleet };
      }),
    );
    const within = async (what: string, condition: () => boolean, ms = 10_000) => {
      const started = Date.now();
      while (!condition()) {
        if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    try {
      for (let i = 0; i < 1200; i++) members[i % 2].monitor.observeDecision({ ...credit.rows[i], emp_length: null }, credit.scores[i], null, null);
      await within('safe mode everywhere', () => members.every((m) => m.monitor.safeModeActive));
      await postgres.kill();
      await new Promise((r) => setTimeout(r, 1500));
      assert.ok(members.every((m) => m.monitor.safeModeActive), 'the last verdict holds through the outage');
      assert.ok(members.every((m) => !m.fleet.isLeader), 'nobody leads without the database');
      const before = Date.parse(members[0].monitor.state().evaluated_at);
      await postgres.restart();
      await within('a leader and a fresh verdict after the outage', () => members.some((m) => m.fleet.isLeader) && Date.parse(members[0].monitor.state().evaluated_at) > before);
    } finally {
      for (const m of members) {
        await m.fleet.close();
        await m.exchange.close();
      }
      await postgres.stop();
    }
  });
});

describe('three servers sharing a PostgreSQL monitor exchange', () => {
  let postgres: RunningPostgres;
  const servers: Server[] = [];
  before(async () => {
    postgres = await startPostgres();
    const repository = creditRepository();
    for (let k = 0; k < 3; k++) {
      const exchange = await openPostgresMonitorExchange({ url: postgres.url, replica: `server-${k}` });
      const log = openSqliteDecisionLog(tempDir('rtml-fleet-log-'));
      servers.push(await createServer({ ...DEFAULT_CONFIG, repository, watchIntervalMs: 0, logLevel: 'silent' }, log, null, { monitorExchange: exchange, monitorPublishIntervalMs: 300 }));
    }
  });
  after(async () => {
    for (const s of servers) await s.close();
    await postgres.stop();
  });

  const decide = (k: number, row: Record<string, unknown>) => servers[k].app.inject({ method: 'POST', url: '/v1/services/credit/decisions', payload: row });
  const monitoring = async (k: number) => (await servers[k].app.inject({ method: 'GET', url: '/v1/services/credit/monitoring' })).json() as MonitorState;

  it('answer the fleet verdict on every replica, and every replica decides by the fallback policy once the fleet is in safe mode', async () => {
    for (let i = 0; i < 900; i++) assert.equal((await decide(i % 3, credit.rows[i])).statusCode, 200);
    for (let i = 900; i < 1500; i++) assert.equal((await decide(i % 3, { ...credit.rows[i], emp_length: null })).statusCode, 200);
    const started = Date.now();
    let states: MonitorState[] = [];
    while (Date.now() - started < 8000) {
      states = await Promise.all([0, 1, 2].map(monitoring));
      if (states.every((s) => s.safe_mode.active)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(states.every((s) => s.safe_mode.active), 'safe mode on every replica');
    const leader = servers.find((s) => s.fleet!.isLeader)!.fleet!.replica;
    for (const [k, s] of states.entries()) {
      assert.equal(s.fleet!.replica, `server-${k}`);
      assert.equal(s.fleet!.leader, leader);
      assert.deepEqual(s.fleet!.replicas.map((r) => r.id).sort(), ['server-0', 'server-1', 'server-2']);
      assert.ok(s.windows.count.observations >= 1000, 'the fleet\'s window, not a third of it');
      assert.deepEqual(s.alerts.active.map((a) => a.id), states[0].alerts.active.map((a) => a.id));
    }
    const follower = servers.findIndex((s) => !s.fleet!.isLeader);
    const answer = (await decide(follower, credit.rows[1600])).json() as { fallback: { used: boolean; cause: string } };
    assert.equal(answer.fallback.used, true);
    assert.match(answer.fallback.cause, /^safe_mode: critical alert: emp_length missing/);
  });
});
