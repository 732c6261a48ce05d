/**
 * Real-time features through a real server: events and entity fields ingested over HTTP
 * change the next decision's aggregate and entity features; every sourced feature reports
 * its status; a restart loses nothing acknowledged; batch backfill gives the same values.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, beforeEach, describe, it } from 'node:test';
import { parse } from 'csv-parse/sync';
import { minstd } from './helpers/prng.ts';
import { startServer, writeAuth, type RunningServer } from './helpers/server.ts';
import { startRedis, type RunningRedis } from './helpers/redis-server.ts';
import { stumpModel, tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;

const MANIFEST = `name: cards
version: "1"
keys: [card_id, customer_id]
sources:
  entities:
    card: { key: card_id }
    customer: { key: customer_id }
  streams:
    transactions: { entity: card, time: event_time, id: txn_id, lateness: 5m, fields: { amount: number, merchant_id: string } }
  deadline_ms: 200
model: { format: xgboost-json, path: model.json }
outputs: { type: binary, classes: [legit, fraud] }
features:
  - { name: amount, type: number, min: 0 }
  - { name: txn_count_10m, type: integer, default: 0, source: { aggregate: transactions, fn: count, window: 10m } }
  - { name: amount_sum_1h, type: number, default: 0, source: { aggregate: transactions, fn: sum, field: amount, window: 1h } }
  - { name: merchants_1h, type: integer, default: 0, source: { aggregate: transactions, fn: distinct, field: merchant_id, window: 1h } }
  - { name: account_age_days, type: number, nullable: true, source: { entity: customer, field: account_age_days, ttl: 1s } }
  - { name: amount_share_1h, type: number, nullable: true, source: { derived: "amount / (amount_sum_1h + amount)" } }
`;

const POLICY = `version: "p1"
actions: [approve, step_up, decline]
pre_rules:
  - { code: BURST, when: "txn_count_10m >= 3", action: decline, message: "Three or more transactions in ten minutes" }
  - { code: NEW_ACCOUNT, when: "account_age_days < 30", action: step_up, message: "Account younger than 30 days" }
fallback:
  default: { action: approve, code: OK, message: "Nothing unusual" }
`;

/** A one-split model over the six feature columns: enough to have the served inputs logged. */
function model() {
  const m = stumpModel();
  return { ...m, learner: { ...m.learner, feature_names: COLUMNS, feature_types: COLUMNS.map(() => 'float'), learner_model_param: { base_score: '5E-1', num_class: '0', num_feature: String(COLUMNS.length), num_target: '1' } } };
}
const COLUMNS = ['amount', 'txn_count_10m', 'amount_sum_1h', 'merchants_1h', 'account_age_days', 'amount_share_1h'];

function repository(): string {
  const repo = tempDir('rtml-features-');
  mkdirSync(join(repo, 'cards'));
  writeFileSync(join(repo, 'cards/rtml.yaml'), MANIFEST);
  writeFileSync(join(repo, 'cards/policy.yaml'), POLICY);
  writeFileSync(join(repo, 'cards/model.json'), JSON.stringify(model()));
  return repo;
}

const iso = (ms: number) => new Date(ms).toISOString();

async function decide(server: RunningServer, body: Record<string, unknown>) {
  const res = await server.post('/v1/services/cards/decisions', body);
  const json = await res.json();
  assert.equal(res.status, 200, JSON.stringify(json));
  return json;
}

/** Store-specific server arguments, so every scenario runs against each store. */
type StoreSetup = { name: string; args: () => Promise<string[]>; reset?: () => Promise<void>; teardown?: () => Promise<void> };

const embedded: StoreSetup = { name: 'embedded store', args: async () => [] };
let redis: RunningRedis | null = null;
const redisStore: StoreSetup = {
  name: 'redis store',
  args: async () => {
    redis ??= await startRedis();
    return ['--feature-store', 'redis', '--redis-url', redis.url];
  },
  // Each test starts from an empty Redis (no persistence: a restart empties it), as each embedded test has its own data dir.
  reset: async () => {
    if (redis) await redis.restart();
  },
  teardown: async () => {
    await redis?.stop();
    redis = null;
  },
};

for (const store of [embedded, redisStore]) describe(`real-time features (${store.name})`, () => {
  beforeEach(async () => {
    await store.reset?.();
  });
  after(async () => {
    await store.teardown?.();
  });
  it('updates aggregate and entity features as events and entities arrive, with statuses', async () => {
    const repo = repository();
    let server = await startServer({ repository: repo, args: await store.args() });
    try {
      const request = { card_id: 'c1', customer_id: 'u1', amount: 50 };

      const first = await decide(server, request);
      assert.equal(first.decision, 'approve');
      // No events yet: a count of 0 is a true value, not a default; the unknown customer is missing.
      assert.deepEqual(first.features, { txn_count_10m: 'present', amount_sum_1h: 'present', merchants_1h: 'present', account_age_days: 'missing', amount_share_1h: 'present' });

      const now = Date.now();
      const events = [
        { txn_id: 't1', card_id: 'c1', event_time: iso(now - 50 * 60_000), amount: 500, merchant_id: 'm1' },
        { txn_id: 't2', card_id: 'c1', event_time: iso(now - 5 * 60_000), amount: 20, merchant_id: 'm2' },
        { txn_id: 't3', card_id: 'c1', event_time: iso(now - 60_000), amount: 30, merchant_id: 'm2' },
        { txn_id: 't3', card_id: 'c1', event_time: iso(now - 60_000), amount: 30, merchant_id: 'm2' },
        { txn_id: 'x1', card_id: 'c2', event_time: iso(now - 60_000), amount: 999, merchant_id: 'm9' },
        { txn_id: 'bad', card_id: 'c1', event_time: 'yesterday', amount: 1 },
      ];
      const ingest = await server.write('/v1/events/transactions', events);
      const result = await ingest.json();
      assert.equal(ingest.status, 200, JSON.stringify(result));
      assert.deepEqual([result.accepted, result.duplicates, result.late, result.rejected], [4, 1, 0, 1]);
      assert.match(result.errors[0].message, /event_time: required, an ISO 8601/);

      const put = await fetch(`${server.url}/v1/entities/customer/u1`, { method: 'PUT', headers: { 'content-type': 'application/json', ...writeAuth }, body: JSON.stringify({ account_age_days: 400 }) });
      assert.equal(put.status, 200);

      const second = await decide(server, { ...request, id: 'second' });
      assert.equal(second.decision, 'approve');
      assert.deepEqual(second.features, { txn_count_10m: 'present', amount_sum_1h: 'present', merchants_1h: 'present', account_age_days: 'present', amount_share_1h: 'present' });

      // One more event makes three in ten minutes: the pre-rule sees the aggregate move.
      await server.write('/v1/events/transactions', { txn_id: 't4', card_id: 'c1', event_time: iso(Date.now() - 1000), amount: 10, merchant_id: 'm3' });
      const third = await decide(server, { ...request, id: 'after-burst' });
      assert.equal(third.decision, 'decline');
      assert.equal(third.reasons[0].code, 'BURST');

      // Restart: acknowledged events and entities are all still there (the entity field,
      // older than its 1 s TTL by now, is served as stale: read, but not trusted).
      await server.stop();
      server = await startServer({ repository: repo, dataDir: server.dataDir, args: await store.args() });
      await new Promise((r) => setTimeout(r, 1100));
      const again = await decide(server, request);
      assert.equal(again.decision, 'decline');
      assert.equal(again.features.txn_count_10m, 'present');
      assert.equal(again.features.account_age_days, 'stale');
    } finally {
      await server.stop();
    }
  });

  it('serves a stream that a bundle loaded after start declares, without a restart', async () => {
    const repo = repository();
    const server = await startServer({ repository: repo, args: await store.args(), env: { RTML_ADMIN_TOKEN: 'admin-secret-0123456789' } });
    try {
      assert.equal((await server.write('/v1/events/logins', { login_id: 'l0', user_id: 'u1', event_time: iso(Date.now()) })).status, 404);
      // A new rules-only service reading a new stream, loaded into the running server.
      mkdirSync(join(repo, 'logins'));
      writeFileSync(
        join(repo, 'logins/rtml.yaml'),
        `name: logins
version: "1"
keys: [user_id]
sources:
  entities: { user: { key: user_id } }
  streams: { logins: { entity: user, time: event_time, id: login_id, lateness: 5m, fields: { ok: number } } }
features:
  - { name: failed_1h, type: number, default: 0, source: { aggregate: logins, fn: count, window: 1h } }
policy: policy.yaml
`,
      );
      writeFileSync(join(repo, 'logins/policy.yaml'), `version: "p1"\nactions: [allow, lock]\npre_rules:\n  - { code: MANY_FAILURES, when: "failed_1h >= 3", action: lock, message: "Three failed logins in an hour" }\nfallback:\n  default: { action: allow, code: OK, message: "Nothing unusual" }\n`);
      const load = await server.post('/v2/repository/models/logins/load', {}, { authorization: 'Bearer admin-secret-0123456789' });
      assert.equal(load.status, 200, await load.clone().text());
      const now = Date.now();
      const ingest = await server.write('/v1/events/logins', [0, 1, 2].map((i) => ({ login_id: `l${i}`, user_id: 'u1', event_time: iso(now - i * 60_000), ok: 0 })));
      assert.equal(ingest.status, 200);
      assert.equal((await ingest.json()).accepted, 3);
      const res = await server.post('/v1/services/logins/decisions', { user_id: 'u1' });
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.deepEqual([body.decision, body.features], ['lock', { failed_1h: 'present' }]);
      // The log keeps the status with the value served, for an admin to look up.
      const logged = await fetch(`${server.url}/v1/services/logins/decisions/${body.id}`, { headers: { authorization: 'Bearer admin-secret-0123456789' } });
      assert.deepEqual((await logged.json()).features, { failed_1h: { status: 'present', value: 3 } });
      // The service that was already serving is undisturbed.
      assert.equal((await decide(server, { card_id: 'c1', customer_id: 'u1', amount: 50 })).decision, 'approve');
    } finally {
      await server.stop();
    }
  });

  it("enforces an entity field's TTL on read: a stale value is not served as fresh", async () => {
    const server = await startServer({ repository: repository(), args: await store.args() });
    try {
      const put = await fetch(`${server.url}/v1/entities/customer/u2`, { method: 'PUT', headers: { 'content-type': 'application/json', ...writeAuth }, body: JSON.stringify({ account_age_days: 10 }) });
      assert.equal(put.status, 200);
      const fresh = await decide(server, { card_id: 'c9', customer_id: 'u2', amount: 5 });
      assert.equal(fresh.decision, 'step_up');
      assert.equal(fresh.features.account_age_days, 'present');
      await new Promise((r) => setTimeout(r, 1100));
      const stale = await decide(server, { card_id: 'c9', customer_id: 'u2', amount: 5 });
      assert.equal(stale.features.account_age_days, 'stale');
      assert.equal(stale.decision, 'approve');
    } finally {
      await server.stop();
    }
  });

  it('refuses unknown streams and entities, and events without a key, id or time', async () => {
    const server = await startServer({ repository: repository(), args: await store.args() });
    try {
      assert.equal((await server.write('/v1/events/clicks', { x: 1 })).status, 404);
      const bad = await server.write('/v1/events/transactions', [{ txn_id: 'a', event_time: iso(Date.now()), amount: 1 }]);
      assert.equal(bad.status, 400);
      assert.match((await bad.json()).errors[0].message, /card_id: required/);
      const future = await server.write('/v1/events/transactions', [{ txn_id: 'f', card_id: 'c', event_time: iso(Date.now() + 3600_000), amount: 1 }]);
      assert.match((await future.json()).errors[0].message, /in the future/);
      const entity = await fetch(`${server.url}/v1/entities/merchant/m1`, { method: 'PUT', headers: { 'content-type': 'application/json', ...writeAuth }, body: '{"risk": 1}' });
      assert.equal(entity.status, 404);
      const missingKey = await server.post('/v1/services/cards/decisions', { amount: 5 });
      assert.equal(missingKey.status, 400);
      assert.deepEqual((await missingKey.json()).errors.map((e: { field: string }) => e.field), ['card_id', 'customer_id']);
    } finally {
      await server.stop();
    }
  });

  it('backfills the same features in batch that the server served in real time', async () => {
    const repo = repository();
    const server = await startServer({ repository: repo, args: await store.args() });
    const dir = tempDir();
    try {
      // A few hundred events in time order over the last 2 hours, on 5 cards.
      const random = minstd(42);
      const start = Date.now() - 2 * 3600_000;
      const events = Array.from({ length: 300 }, (_, i) => ({
        txn_id: `e${i}`,
        card_id: `k${Math.floor(random() * 5)}`,
        event_time: iso(start + i * 20_000 + Math.floor(random() * 1000)),
        amount: Math.round(random() * 10000) / 100,
        merchant_id: `m${Math.floor(random() * 8)}`,
      }));
      assert.equal((await server.write('/v1/events/transactions', events)).status, 200);
      const served: Record<string, Record<string, unknown>> = {};
      const at = Date.now();
      for (let k = 0; k < 5; k++) {
        const res = await decide(server, { id: `q${k}`, card_id: `k${k}`, customer_id: 'none', amount: 10 });
        served[`k${k}`] = res;
      }
      const header = 'txn_id,card_id,event_time,amount,merchant_id';
      writeFileSync(join(dir, 'events.csv'), [header, ...events.map((e) => [e.txn_id, e.card_id, e.event_time, e.amount, e.merchant_id].join(','))].join('\n'));
      writeFileSync(join(dir, 'rows.csv'), ['card_id,customer_id,amount,at', ...[0, 1, 2, 3, 4].map((k) => `k${k},none,10,${iso(at)}`)].join('\n'));
      const { spawnSync } = await import('node:child_process');
      const run = spawnSync(process.execPath, [join(ROOT, 'bin/rtml.mjs'), 'backfill', join(repo, 'cards'), '--events', `transactions=${join(dir, 'events.csv')}`, '-i', join(dir, 'rows.csv'), '-o', join(dir, 'out.csv'), '--at', 'at'], { encoding: 'utf8' });
      assert.equal(run.status, 0, run.stderr);
      const rows = parse(readFileSync(join(dir, 'out.csv')), { columns: true, cast: true }) as Record<string, number | string>[];
      // Outcomes arrive later (log-and-wait); q4's never does.
      for (let k = 0; k < 4; k++) {
        const res = await fetch(`${server.url}/v1/services/cards/decisions/q${k}/outcome`, { method: 'PUT', headers: { 'content-type': 'application/json', ...writeAuth }, body: JSON.stringify({ label: k === 0 ? 'fraud' : 'legit' }) });
        assert.equal(res.status, 200);
      }
      const log = await import('../src/log/sqlite.ts');
      await server.stop();
      const decisions = log.openSqliteDecisionLog(server.dataDir);
      try {
        for (const row of rows) {
          const record = await decisions.get('cards', `q${String(row.card_id).slice(1)}`);
          assert.ok(record);
          // The logged model inputs are the served features, in model column order.
          const servedValues = record.inputs!;
          const backfilled = [row.amount, row.txn_count_10m, row.amount_sum_1h, row.merchants_1h, row.amount_share_1h].map((v) => Math.fround(Number(v)));
          assert.deepEqual(backfilled, [0, 1, 2, 3, 5].map((j) => servedValues[j]), `card ${row.card_id}`);
          // The log also keeps each sourced feature's status and served value, unrounded.
          assert.deepEqual(record.features, {
            txn_count_10m: { status: 'present', value: row.txn_count_10m },
            amount_sum_1h: { status: 'present', value: row.amount_sum_1h },
            merchants_1h: { status: 'present', value: row.merchants_1h },
            account_age_days: { status: 'missing', value: null },
            amount_share_1h: { status: 'present', value: row.amount_share_1h },
          });
        }
      } finally {
        await decisions.close();
      }
      // `rtml export` joins the served features with the outcomes: the same values backfill computed.
      const exported = spawnSync(process.execPath, [join(ROOT, 'bin/rtml.mjs'), 'export', join(repo, 'cards'), '--data-dir', server.dataDir, '-o', join(dir, 'train.csv'), '--with-status'], { encoding: 'utf8' });
      assert.equal(exported.status, 0, exported.stderr);
      assert.match(exported.stderr, /wrote 4 labelled decisions/);
      const training = parse(readFileSync(join(dir, 'train.csv')), { columns: true }) as Record<string, string>[];
      const backfilledText = parse(readFileSync(join(dir, 'out.csv')), { columns: true }) as Record<string, string>[];
      const statusColumns = COLUMNS.slice(1).map((c) => `${c}_status`);
      assert.deepEqual(Object.keys(training[0]), ['id', 'time', 'model_version', ...COLUMNS, ...statusColumns, 'label']);
      assert.deepEqual(training.map((r) => r.account_age_days_status), ['missing', 'missing', 'missing', 'missing']);
      assert.deepEqual(
        training.map((r) => r.id),
        ['q0', 'q1', 'q2', 'q3'],
      );
      for (const r of training) {
        const k = Number(r.id.slice(1));
        for (const c of COLUMNS) assert.equal(r[c], backfilledText[k][c], `${r.id} ${c}`);
        assert.equal(r.label, k === 0 ? 'fraud' : 'legit');
      }
    } finally {
      await server.stop();
    }
  });
});

describe('real-time features through a Redis outage', () => {
  it('keeps deciding on defaults, marked as such, while Redis is down, and recovers when it returns', async () => {
    const r = await startRedis();
    const server = await startServer({ repository: repository(), args: ['--feature-store', 'redis', '--redis-url', r.url] });
    try {
      const now = Date.now();
      const events = [0, 1, 2].map((i) => ({ txn_id: `o${i}`, card_id: 'c1', event_time: iso(now - (i + 1) * 60_000), amount: 10, merchant_id: 'm1' }));
      assert.equal((await server.write('/v1/events/transactions', events)).status, 200);
      const before = await decide(server, { card_id: 'c1', customer_id: 'u1', amount: 5 });
      assert.equal(before.decision, 'decline');
      assert.equal(before.features.txn_count_10m, 'present');

      await r.kill();
      const during = [];
      for (let i = 0; i < 20; i++) {
        const started = performance.now();
        const body = await decide(server, { card_id: 'c1', customer_id: 'u1', amount: 5 });
        during.push({ ms: performance.now() - started, body });
      }
      for (const { body } of during) {
        assert.ok(['error', 'timeout'].includes(body.features.txn_count_10m), JSON.stringify(body.features));
        // Defaults stand in: a count of 0, so the burst rule does not fire on data it cannot see.
        assert.equal(body.decision, 'approve');
      }
      const slowest = Math.max(...during.map((d) => d.ms));
      assert.ok(slowest < 500, `a decision took ${slowest.toFixed(0)} ms during the outage`);
      const ingest = await server.write('/v1/events/transactions', [{ txn_id: 'o9', card_id: 'c1', event_time: iso(Date.now()), amount: 1, merchant_id: 'm1' }]);
      assert.equal(ingest.status, 503);

      await r.restart();
      let after = during[0].body;
      for (let i = 0; i < 50 && after.features.txn_count_10m !== 'present'; i++) {
        await new Promise((res) => setTimeout(res, 100));
        after = await decide(server, { card_id: 'c1', customer_id: 'u1', amount: 5 });
      }
      assert.equal(after.features.txn_count_10m, 'present');
      // Writes use their own connection, which may take a moment longer to come back.
      let status = 0;
      for (let i = 0; i < 50 && status !== 200; i++) {
        status = (await server.write('/v1/events/transactions', events)).status;
        if (status !== 200) await new Promise((res) => setTimeout(res, 100));
      }
      assert.equal(status, 200);
      assert.equal((await decide(server, { card_id: 'c1', customer_id: 'u1', amount: 5 })).decision, 'decline');
    } finally {
      await server.stop();
      await r.stop();
    }
  });
});

describe('a Redis Stream as an event source', () => {
  it('rtml serve --redis-stream ingests the entries of a Redis Stream into the declared stream, as HTTP ingestion would', async () => {
    const r = await startRedis();
    const { Redis } = await import('ioredis');
    const client = new Redis(r.url);
    const server = await startServer({
      repository: repository(),
      args: ['--feature-store', 'redis', '--redis-url', r.url, '--redis-stream', 'transactions=shop:txns', '--redis-stream-from', '0'],
    });
    try {
      assert.equal((await decide(server, { card_id: 'c7', customer_id: 'u1', amount: 5 })).decision, 'approve');
      const now = Date.now();
      for (let i = 0; i < 3; i++) await client.xadd('shop:txns', '*', 'txn_id', `s${i}`, 'card_id', 'c7', 'event_time', iso(now - (i + 1) * 60_000), 'amount', '12.5', 'merchant_id', 'm1');
      await client.xadd('shop:txns', '*', 'txn_id', 'no-card', 'event_time', iso(now), 'amount', '1'); // invalid: skipped, not fatal
      let decision = '';
      for (let i = 0; i < 50 && decision !== 'decline'; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        decision = (await decide(server, { card_id: 'c7', customer_id: 'u1', amount: 5 })).decision;
      }
      assert.equal(decision, 'decline', 'three events from the Redis Stream make a burst');
      // The consumer group acknowledged every entry it read.
      const pending = (await client.xpending('shop:txns', 'rtml')) as [number, ...unknown[]];
      assert.equal(pending[0], 0);
    } finally {
      await server.stop();
      client.disconnect();
      await r.stop();
    }
  });

  it('refuses --redis-stream without Redis, or for a stream no bundle declares', async () => {
    const { spawnSync } = await import('node:child_process');
    const run = (args: string[]) => spawnSync(process.execPath, [join(ROOT, 'bin/rtml.mjs'), 'serve', repository(), '--port', '0', '--data-dir', tempDir(), ...args], { encoding: 'utf8', timeout: 30_000 });
    const embedded = run(['--redis-stream', 'transactions=k']);
    assert.equal(embedded.status, 2);
    assert.match(embedded.stderr, /--redis-stream needs --feature-store redis/);
    const r = await startRedis();
    try {
      const unknown = run(['--feature-store', 'redis', '--redis-url', r.url, '--redis-stream', 'clicks=k']);
      assert.equal(unknown.status, 2);
      assert.match(unknown.stderr, /--redis-stream clicks=k: no loaded bundle declares a stream named "clicks"/);
    } finally {
      await r.stop();
    }
  });
});

describe('the card-fraud example', () => {
  it('serves decisions whose aggregate features update as events arrive', async () => {
    const repo = tempDir('rtml-cardfraud-');
    mkdirSync(join(repo, 'card-fraud'));
    for (const f of ['rtml.yaml', 'model.json', 'golden.jsonl', 'policy.yaml', 'reference.json']) {
      writeFileSync(join(repo, 'card-fraud', f), readFileSync(join(ROOT, 'examples/card-fraud', f)));
    }
    const server = await startServer({ repository: repo });
    try {
      const purchase = { card_id: 'c0042', customer_id: 'u0035', amount: 249.99, merchant_category: 'electronics' };
      const put = await fetch(`${server.url}/v1/entities/customer/u0035`, { method: 'PUT', headers: { 'content-type': 'application/json', ...writeAuth }, body: JSON.stringify({ account_age_days: 41, home_region: 'north' }) });
      assert.equal(put.status, 200);
      const calm = await (await server.post('/v1/services/card-fraud/decisions', { id: 'calm', ...purchase })).json();
      assert.equal(calm.decision, 'approve', JSON.stringify(calm));
      assert.equal(calm.features.txn_count_10m, 'present');
      assert.equal(calm.features.account_age_days, 'present');

      // Six rapid charges at six merchants in the last five minutes: a compromised card's burst.
      const now = Date.now();
      const burst = [1, 2, 3, 4, 5, 6].map((i) => ({ txn_id: `burst-${i}`, card_id: 'c0042', event_time: iso(now - 280_000 + 40_000 * i), amount: i < 3 ? 1.5 : 120.5, merchant_id: `m010${i}`, merchant_category: 'online_retail' }));
      const ingest = await (await server.write('/v1/events/transactions', burst)).json();
      assert.equal(ingest.accepted, 6);
      const after = await (await server.post('/v1/services/card-fraud/decisions', { id: 'after-burst', ...purchase })).json();
      assert.equal(after.decision, 'decline', JSON.stringify(after));
      assert.ok(after.score > calm.score * 10, `score ${calm.score} -> ${after.score}`);
    } finally {
      await server.stop();
    }
  });
});
