/**
 * The Redis feature store against a real redis-server (test/helpers/redis-server.ts; CI installs
 * it): the shared conformance suite, bit-for-bit agreement with the embedded store on the same
 * random events and queries, several instances (as several server processes) sharing one Redis,
 * eviction and idle expiry, the Redis Stream consumer, and outages: redis-server SIGKILLed under
 * load (calls fail fast, nothing hangs or leaks a rejection, the store recovers when Redis is
 * back on the same port), a hung server (SIGSTOP: command timeouts), Redis down at start.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { FeatureStoreError, type StreamStoreConfig } from '../src/features/aggregate.ts';
import { EmbeddedFeatureStore } from '../src/features/embedded.ts';
import type { StreamDefinition } from '../src/features/events.ts';
import {
  RedisFeatureStore,
  RedisStoreError,
  connectRedisFeatureStore,
  decodeEventMember,
  type RedisFeatureStoreOptions,
} from '../src/features/redis.ts';
import type { AggregateFunction, AggregateQuery, FeatureStore, IngestResult, StreamEvent } from '../src/features/types.ts';
import { CONFORMANCE_STREAMS, CONFORMANCE_T0, FUNCTIONS, ReferenceStore, assertValue, featureStoreConformance } from './helpers/feature-store-conformance.ts';
import { mulberry32 } from './helpers/prng.ts';
import { startRedis, type RunningRedis } from './helpers/redis-server.ts';
import { tempBundle, tempDir } from './helpers/tmp.ts';
import { readManifest } from '../src/bundle/load.ts';
import { buildResolver } from '../src/features/resolve.ts';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const T0 = CONFORMANCE_T0;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

let redis: RunningRedis;
let admin: Redis;
let prefixCount = 0;
const freshPrefix = (name: string) => `t${process.pid}-${prefixCount++}-${name}:`;
const dirs: string[] = [];
const stores: FeatureStore[] = [];

before(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url, { maxRetriesPerRequest: 1 });
});
after(async () => {
  for (const s of stores) await s.close().catch(() => {});
  admin?.disconnect();
  await redis?.stop();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * The semantic tests send calls far larger than a request's (hundreds of aggregates over 30-day
 * windows in one call, thousands of events): they get a generous timeout, so that a cold JIT or
 * a busy CI machine cannot fail them. The outage tests use the production-like 20 ms.
 */
const SEMANTIC_TIMEOUT_MS = 2000;

async function open(options: Partial<RedisFeatureStoreOptions> & { streams: Record<string, StreamStoreConfig> }): Promise<RedisFeatureStore> {
  const store = await connectRedisFeatureStore({ url: redis.url, keyPrefix: freshPrefix('x'), commandTimeoutMs: SEMANTIC_TIMEOUT_MS, writeTimeoutMs: SEMANTIC_TIMEOUT_MS, ...options });
  stores.push(store);
  return store;
}

/** Same double, bit for bit (distinguishes -0 from 0), or the same string / null. */
function sameBits(a: unknown, b: unknown): boolean {
  if (typeof a === 'number' && typeof b === 'number') {
    const u = new BigUint64Array(new Float64Array([a, b]).buffer);
    return u[0] === u[1];
  }
  return a === b;
}

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<number> {
  const start = Date.now();
  while (!(await condition())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
  return Date.now() - start;
}

// ------------------------------------------------------------------------------------------

const semantic = { commandTimeoutMs: SEMANTIC_TIMEOUT_MS, writeTimeoutMs: SEMANTIC_TIMEOUT_MS };
featureStoreConformance('redis', async (streams) => connectRedisFeatureStore({ url: redis.url, streams, keyPrefix: freshPrefix('conformance'), ...semantic }), {
  reopen: async (store) => {
    const s = store as RedisFeatureStore;
    await s.close();
    return connectRedisFeatureStore({ url: redis.url, streams: CONFORMANCE_STREAMS, keyPrefix: s.keyPrefix, ...semantic });
  },
});

// ------------------------------------------------------------------------------------------

describe('redis store: agreement with the embedded store', () => {
  const STREAMS: Record<string, StreamStoreConfig> = {
    pay: { latenessMs: 10 * MIN, retentionMs: DAY + 10 * MIN },
    views: { latenessMs: 0, retentionMs: HOUR },
    'app:events%x': { latenessMs: MIN, retentionMs: 2 * HOUR + MIN },
  };
  const KEYS = ['c1', 'c2', 'a:b', 'a', 'b:c', 'ü-ключ', 'with space', '', '0', '{}'];

  /** Events designed so order matters: full-precision floats of very different magnitudes, ties, -0, unicode, mixed types. */
  function events(rand: () => number, stream: string, n: number, spanMs: number, quantumMs: number, disorderMs: number): StreamEvent[] {
    const out: StreamEvent[] = [];
    for (let i = 0; i < n; i++) {
      if (out.length > 0 && rand() < 0.06) {
        // A re-send of a recent event (within the last fifth of the span: its id is remembered by every store).
        const again = out[out.length - 1 - Math.floor(rand() * Math.min(out.length, n / 5))];
        out.push(rand() < 0.5 ? again : { ...again, fields: { amount: 12345.678 } }); // a re-send, sometimes altered
        continue;
      }
      let time = T0 - spanMs + Math.floor(((i + 1) / n) * spanMs);
      if (rand() < 0.25) time -= Math.floor(rand() * disorderMs);
      time = Math.min(T0, Math.floor(time / quantumMs) * quantumMs);
      const r = rand();
      const amount =
        r < 0.05 ? null
        : r < 0.08 ? '17'
        : r < 0.1 ? -0
        : r < 0.2 ? (rand() - 0.5) * 1e15
        : r < 0.3 ? (rand() - 0.5) * 1e-9
        : (rand() - 0.5) * 2000;
      const fields: StreamEvent['fields'] = { amount, merchant: rand() < 0.1 ? null : ['m1', 'm2', 'Zürich', '東京', 'a"b\\c', '1'][Math.floor(rand() * 6)] };
      if (rand() < 0.9) fields.qty = Math.floor(rand() * 4) - 1;
      if (rand() < 0.1) fields.mixed = rand() < 0.5 ? 1 : '1';
      out.push({ stream, key: KEYS[Math.floor(rand() * KEYS.length)], id: `${stream}-${i}-${Math.floor(rand() * 3)}`, time, fields });
    }
    return out;
  }

  it('ingests the same random events with the same outcomes and answers every query bit for bit', async () => {
    const rand = mulberry32(424242);
    const dir = tempDir('rtml-redis-agree-');
    dirs.push(dir);
    const embedded = new EmbeddedFeatureStore({ dataDir: dir, streams: STREAMS, synchronous: 'normal', cleanupIntervalMs: 0 });
    stores.push(embedded);
    const prefix = freshPrefix('agree');
    let store = await open({ streams: STREAMS, keyPrefix: prefix });
    const all = [
      ...events(rand, 'pay', 2500, 2 * DAY, MIN, 25 * MIN),
      ...events(rand, 'views', 1500, 3 * HOUR, 1000, 5000),
      ...events(rand, 'app:events%x', 800, 4 * HOUR, 30_000, 3 * MIN),
    ].sort(() => 0); // keep per-stream arrival order; streams one after the other
    // Interleave the streams at random, keeping each one's arrival order.
    const byStream = new Map<string, StreamEvent[]>();
    for (const e of all) byStream.set(e.stream, [...(byStream.get(e.stream) ?? []), e]);
    const queues = [...byStream.values()];
    const arrival: StreamEvent[] = [];
    while (queues.some((q) => q.length > 0)) {
      const live = queues.filter((q) => q.length > 0);
      arrival.push(live[Math.floor(rand() * live.length)].shift()!);
    }

    const totals: IngestResult = { accepted: 0, duplicates: 0, late: 0 };
    const check = async (count: number) => {
      const queries: AggregateQuery[] = [];
      const maxTimes = embedded.stats.streams;
      for (let i = 0; i < count; i++) {
        const stream = Object.keys(STREAMS)[Math.floor(rand() * 3)];
        const cfg = STREAMS[stream];
        const maxTime = maxTimes[stream].maxTime;
        if (!Number.isFinite(maxTime)) continue;
        const horizon = maxTime - cfg.retentionMs;
        const windowMs = [MIN, 10 * MIN, HOUR, DAY][Math.floor(rand() * 4)];
        // Any `at` whose window starts after the retention horizon: those windows are exact in every store.
        const lo = horizon + windowMs;
        const at = Math.floor(lo + rand() * (maxTime + 10 * MIN - lo));
        if (at - windowMs < horizon) continue;
        const fn = FUNCTIONS[i % FUNCTIONS.length];
        const field = fn === 'count' ? undefined : ['amount', 'merchant', 'qty', 'mixed', 'absent'][Math.floor(rand() * 5)];
        queries.push({ stream, key: KEYS[Math.floor(rand() * KEYS.length)], fn, field, windowMs, at });
      }
      const [want, got] = await Promise.all([embedded.aggregates(queries), store.aggregates(queries)]);
      let nonTrivial = 0;
      queries.forEach((q, i) => {
        assert.ok(sameBits(got[i], want[i]), `${JSON.stringify(q)}: redis ${String(got[i])} (${Object.is(got[i], -0) ? '-0' : typeof got[i]}), embedded ${String(want[i])}`);
        if (want[i] !== null && want[i] !== 0) nonTrivial++;
      });
      // One by one too (aggregate() and groups of one).
      for (const q of queries.slice(0, 50)) assert.ok(sameBits(await store.aggregate(q), await embedded.aggregate(q)), JSON.stringify(q));
      return { queries: queries.length, nonTrivial };
    };

    let checked = 0;
    let nonTrivial = 0;
    for (let i = 0, round = 0; i < arrival.length; round++) {
      const n = rand() < 0.3 ? 1 : 1 + Math.floor(rand() * 120);
      const batch = arrival.slice(i, i + n);
      i += n;
      const [a, b] = await Promise.all([store.ingest(batch), embedded.ingest(batch)]);
      assert.deepEqual(a, b, `ingest of arrivals ${i - n}..${i}`);
      for (const k of ['accepted', 'duplicates', 'late'] as const) totals[k] += a[k];
      if (round % 25 === 0) {
        const r = await check(60);
        checked += r.queries;
        nonTrivial += r.nonTrivial;
      }
    }
    // A new connection (another process, or after a restart of this one) reads the same.
    await store.close();
    store = await open({ streams: STREAMS, keyPrefix: prefix });
    const r = await check(3000);
    checked += r.queries;
    nonTrivial += r.nonTrivial;
    assert.ok(totals.late > 50 && totals.duplicates > 100, `the events exercise late (${totals.late}) and duplicate (${totals.duplicates}) arrivals`);
    assert.ok(checked > 2000 && nonTrivial > checked / 4, `${checked} queries compared, ${nonTrivial} non-trivial`);
    // The stream's state in Redis is the embedded store's.
    for (const [name, s] of Object.entries(embedded.stats.streams)) {
      const maxInRedis = await admin.hget(`${prefix}st:${name.replace(/%/g, '%25').replace(/:/g, '%3A')}`, 'max');
      assert.equal(Number(maxInRedis), s.maxTime, `maxTime of ${name}`);
    }
  });

  it('returns the same floating-point sum as the embedded store where the order of addition matters', async () => {
    const streams = { s: { latenessMs: HOUR, retentionMs: 2 * HOUR } };
    const dir = tempDir('rtml-redis-agree-');
    dirs.push(dir);
    const embedded = new EmbeddedFeatureStore({ dataDir: dir, streams, synchronous: 'normal', cleanupIntervalMs: 0 });
    stores.push(embedded);
    const store = await open({ streams });
    // 1e16 + 1 + 1 - 1e16 is 0 or 2 or 4 depending on the order; ties on time are in ingestion order.
    const batch: StreamEvent[] = [
      { stream: 's', key: 'k', id: 'a', time: T0, fields: { v: 1 } },
      { stream: 's', key: 'k', id: 'b', time: T0 - 1, fields: { v: 1e16 } },
      { stream: 's', key: 'k', id: 'c', time: T0, fields: { v: 1 } },
      { stream: 's', key: 'k', id: 'd', time: T0, fields: { v: -1e16 } },
      { stream: 's', key: 'k', id: 'e', time: T0, fields: { v: 1 } },
      { stream: 's', key: 'k', id: 'f', time: T0 - 2, fields: { v: -0 } },
    ];
    await Promise.all([store.ingest(batch), embedded.ingest(batch)]);
    for (const fn of ['sum', 'mean', 'min', 'max', 'last'] as const) {
      for (const at of [T0 - 2, T0 - 1, T0]) {
        const q: AggregateQuery = { stream: 's', key: 'k', fn, field: 'v', windowMs: HOUR, at };
        const [a, b] = [await store.aggregate(q), await embedded.aggregate(q)];
        assert.ok(sameBits(a, b), `${fn} at T0${at - T0}: redis ${String(a)}, embedded ${String(b)}`);
      }
    }
    assert.ok(Object.is(await store.aggregate({ stream: 's', key: 'k', fn: 'min', field: 'v', windowMs: HOUR, at: T0 - 2 }), -0), '-0 is kept');
  });
});

// ------------------------------------------------------------------------------------------

describe('redis store: several instances share one Redis', () => {
  const streams = { tx: { latenessMs: 5 * MIN, retentionMs: DAY + 5 * MIN } };

  it('shares the watermark, dedupe, tie order and entities', async () => {
    const prefix = freshPrefix('shared');
    const [a, b, c] = await Promise.all([open({ streams, keyPrefix: prefix }), open({ streams, keyPrefix: prefix }), open({ streams, keyPrefix: prefix })]);
    const ev = (id: string, time: number, fields: StreamEvent['fields'], key = 'k1'): StreamEvent => ({ stream: 'tx', key, id, time, fields });
    assert.deepEqual(await a.ingest([ev('e1', T0, { amount: 1, m: 'first' })]), { accepted: 1, duplicates: 0, late: 0 });
    // B sees A's watermark (on another key, too) and A's ids.
    assert.deepEqual(await b.ingest([ev('e2', T0 - 5 * MIN - 1, { amount: 2 }, 'k2')]), { accepted: 0, duplicates: 0, late: 1 });
    assert.deepEqual(await b.ingest([ev('e1', T0, { amount: 100 })]), { accepted: 0, duplicates: 1, late: 0 });
    // Ties on time across instances: ingestion order, wherever it happened.
    await b.ingest([ev('e3', T0, { m: 'second' })]);
    await c.ingest([ev('e4', T0, { m: 'third' })]);
    for (const s of [a, b, c]) {
      assert.deepEqual(
        await s.aggregates([
          { stream: 'tx', key: 'k1', fn: 'last', field: 'm', windowMs: HOUR, at: T0 },
          { stream: 'tx', key: 'k1', fn: 'sum', field: 'amount', windowMs: HOUR, at: T0 },
          { stream: 'tx', key: 'k1', fn: 'count', windowMs: HOUR, at: T0 },
        ]),
        ['third', 1, 3],
      );
    }
    assert.deepEqual(await c.streamInfo(), { tx: { maxTime: T0, watermark: T0 - 5 * MIN, ingested: 3 } });
    await a.putEntity('customer', 'c1', { score: 0.5 }, T0);
    await b.putEntity('customer', 'c1', { score: 0.1 }, T0 - 1); // older: ignored
    assert.deepEqual(await c.getEntity('customer', 'c1', ['score']), [{ value: 0.5, updatedAt: T0 }]);
  });

  it('agrees with the reference model when four instances ingest concurrently', async () => {
    const prefix = freshPrefix('concurrent');
    const instances = await Promise.all([0, 1, 2, 3].map(() => open({ streams, keyPrefix: prefix })));
    const rand = mulberry32(99);
    // Distinct ids, all within lateness of each other, each sent by two instances at once: the outcome does not depend on the interleaving.
    const events: StreamEvent[] = Array.from({ length: 2000 }, (_, i) => ({
      stream: 'tx',
      key: `k${i % 17}`,
      id: `e${i}`,
      time: T0 - 4 * MIN + Math.floor(rand() * 4 * MIN),
      fields: { amount: Math.round(rand() * 1e6) / 100, m: `m${i % 5}` },
    }));
    const ref = new ReferenceStore(streams);
    ref.ingest(events);
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, j) => {
        const batch = events.slice(j * 10, j * 10 + 10);
        return Promise.all([instances[j % 4].ingest(batch), instances[(j + 1) % 4].ingest(batch)]);
      }),
    );
    const sum = results.flat().reduce((t, r) => ({ accepted: t.accepted + r.accepted, duplicates: t.duplicates + r.duplicates, late: t.late + r.late }), { accepted: 0, duplicates: 0, late: 0 });
    assert.deepEqual(sum, { accepted: 2000, duplicates: 2000, late: 0 }, 'each event accepted exactly once');
    for (let k = 0; k < 17; k++) {
      for (const fn of ['count', 'sum', 'min', 'max', 'distinct'] as const) {
        const q: AggregateQuery = { stream: 'tx', key: `k${k}`, fn, field: fn === 'distinct' ? 'm' : 'amount', windowMs: 10 * MIN, at: T0 };
        const want = ref.aggregate(q);
        for (const s of instances) assertValue(await s.aggregate(q), want, `${fn} k${k}`);
      }
    }
  });
});

// ------------------------------------------------------------------------------------------

describe('redis store: layout, eviction and expiry', () => {
  it('keeps events as sorted-set members in (time, ingestion) order, evicts beyond retention on write and lets idle keys expire', async () => {
    const prefix = freshPrefix('evict');
    const streams = { s: { latenessMs: 0, retentionMs: 1000 } };
    const store = await open({ streams, keyPrefix: prefix, idleGraceMs: 0 });
    await store.ingest([
      { stream: 's', key: 'k', id: 'old', time: T0 - 5000, fields: { v: 1 } },
      { stream: 's', key: 'k', id: 'x', time: T0, fields: { v: 2, w: 'é' } },
      { stream: 's', key: 'k', id: 'y', time: T0, fields: { v: -0 } },
    ]);
    const members = await admin.zrange(`${prefix}ev:s:k`, '0', '-1');
    assert.deepEqual(
      members.map((m) => decodeEventMember(m)),
      [
        { seq: 2, id: 'x', fields: { v: 2, w: 'é' } },
        { seq: 3, id: 'y', fields: { v: -0 } },
      ],
      'the old event was evicted (older than newest - retention); ties in ingestion order',
    );
    assert.ok(Object.is(decodeEventMember(members[1]).fields.v, -0));
    assert.deepEqual(await admin.zrange(`${prefix}ids:s:k`, '0', '-1'), ['x', 'y'], 'its id too (older than newest - 2 × retention)');
    assert.deepEqual(await admin.hgetall(`${prefix}st:s`), { max: String(T0), seq: '3' });
    const ttl = await admin.pttl(`${prefix}ev:s:k`);
    assert.ok(ttl > 0 && ttl <= 1000, `idle expiry set: ${ttl} ms`);
    await waitFor('the idle key to expire', async () => (await admin.exists(`${prefix}ev:s:k`, `${prefix}ids:s:k`)) === 0, 3000);
    assert.equal(await admin.exists(`${prefix}st:s`), 1, 'the stream watermark does not expire');
    assert.deepEqual(await store.ingest([{ stream: 's', key: 'k', id: 'z', time: T0 - 1, fields: {} }]), { accepted: 0, duplicates: 0, late: 1 }, 'still late after expiry');
  });

  it('escapes names so that streams, entity types, keys and fields cannot collide', async () => {
    const prefix = freshPrefix('names');
    const store = await open({ streams: { a: { latenessMs: HOUR, retentionMs: DAY }, 'a:b': { latenessMs: HOUR, retentionMs: DAY } }, keyPrefix: prefix });
    await store.ingest([
      { stream: 'a:b', key: 'c', id: '1', time: T0, fields: {} },
      { stream: 'a', key: 'b:c', id: '1', time: T0, fields: {} },
      { stream: 'a', key: 'b:c', id: '2', time: T0, fields: {} },
    ]);
    assert.deepEqual(
      await store.aggregates([
        { stream: 'a:b', key: 'c', fn: 'count', windowMs: HOUR, at: T0 },
        { stream: 'a', key: 'b:c', fn: 'count', windowMs: HOUR, at: T0 },
      ]),
      [1, 2],
    );
    await store.putEntity('t', 'i', { x: 1, 'x@t': 'not a time', '@': true, 'a@@t': 'q' }, T0);
    assert.deepEqual(await store.getEntity('t', 'i', ['x', 'x@t', '@', 'a@@t', 'a@']), [
      { value: 1, updatedAt: T0 },
      { value: 'not a time', updatedAt: T0 },
      { value: true, updatedAt: T0 },
      { value: 'q', updatedAt: T0 },
      null,
    ]);
    await store.putEntity('t:u', 'v', { x: 'A' }, T0);
    await store.putEntity('t', 'u:v', { x: 'B' }, T0);
    assert.deepEqual((await store.getEntity('t:u', 'v', ['x']))[0]?.value, 'A');
    assert.deepEqual((await store.getEntity('t', 'u:v', ['x']))[0]?.value, 'B');
  });

  it('rejects bad calls like the embedded store, and calls after close with CLOSED', async () => {
    const store = await open({ streams: { s: { latenessMs: 0, retentionMs: HOUR } } });
    await assert.rejects(store.ingest([{ stream: 'nope', key: 'k', id: '1', time: T0, fields: {} }]), (e: unknown) => e instanceof FeatureStoreError && e.code === 'UNKNOWN_STREAM');
    await assert.rejects(store.aggregate({ stream: 's', key: 'k', fn: 'sum', windowMs: HOUR, at: T0 }), (e: unknown) => e instanceof FeatureStoreError && e.code === 'INVALID');
    await assert.rejects(store.aggregate({ stream: 's', key: 'k', fn: 'count', windowMs: 0, at: T0 }), (e: unknown) => e instanceof FeatureStoreError && e.code === 'INVALID');
    await assert.rejects(store.putEntity('t', 'i', { x: {} as unknown as string }), (e: unknown) => e instanceof FeatureStoreError && e.code === 'INVALID');
    await assert.rejects(store.putEntity('t', 'i', { x: 1 }, NaN), (e: unknown) => e instanceof FeatureStoreError && e.code === 'INVALID');
    await store.putEntity('t', 'i', { inf: Infinity }, T0);
    assert.deepEqual(await store.getEntity('t', 'i', ['inf']), [{ value: null, updatedAt: T0 }], 'a non-finite number is stored as null, as embedded does');
    await store.close();
    await assert.rejects(store.aggregate({ stream: 's', key: 'k', fn: 'count', windowMs: HOUR, at: T0 }), (e: unknown) => e instanceof FeatureStoreError && e.code === 'CLOSED');
    await assert.rejects(store.ingest([]), (e: unknown) => e instanceof FeatureStoreError && e.code === 'CLOSED');
    assert.equal(store.healthy, false);
  });
});

// ------------------------------------------------------------------------------------------

describe('redis store: consuming a Redis Stream', () => {
  const streams = { tx: { latenessMs: HOUR, retentionMs: DAY + HOUR } };

  it('XREADs entries from the start, maps their fields, skips invalid ones and stops promptly', async () => {
    const store = await open({ streams });
    const key = `${store.keyPrefix}source`;
    for (let i = 0; i < 30; i++) {
      await admin.xadd(key, '*', 'key', `c${i % 3}`, 'event_id', `x${i}`, 'event_time', i % 2 ? String(T0 - i * 1000) : new Date(T0 - i * 1000).toISOString(), 'amount', String(i + 0.5), 'merchant', `m${i % 4}`);
    }
    await admin.xadd(key, '*', 'event_id', 'nokey', 'amount', '1'); // no key: invalid
    await admin.xadd(key, '*', 'key', 'c0', 'event_id', 'badtime', 'event_time', 'yesterday-ish'); // invalid time
    await admin.xadd(key, '*', 'key', 'c0', 'event_id', 'x0', 'event_time', String(T0), 'amount', '1000'); // a re-send: duplicate
    const batches: { accepted: number; duplicates: number; invalid: number }[] = [];
    const stop = store.consumeStream(key, 'tx', { from: '0', block: 200, count: 7, onBatch: (r) => batches.push(r) });
    await waitFor('33 entries', () => batches.reduce((n, b) => n + b.accepted + b.duplicates + b.invalid, 0) === 33);
    assert.equal(batches.reduce((n, b) => n + b.accepted, 0), 30);
    assert.equal(store.counters.streamInvalid, 2);
    // Entries added while it runs are picked up.
    await admin.xadd(key, '*', 'key', 'c1', 'event_id', 'late-arrival', 'event_time', String(T0), 'amount', '0.25');
    await waitFor('the new entry', async () => (await store.aggregate({ stream: 'tx', key: 'c1', fn: 'count', windowMs: HOUR, at: T0 })) === 11);
    assert.equal(await store.aggregate({ stream: 'tx', key: 'c0', fn: 'sum', field: 'amount', windowMs: HOUR, at: T0 }), [0, 3, 6, 9, 12, 15, 18, 21, 24, 27].reduce((s, i) => s + i + 0.5, 0));
    assert.equal(await store.aggregate({ stream: 'tx', key: 'c2', fn: 'last', field: 'merchant', windowMs: HOUR, at: T0 }), 'm2');
    const t = Date.now();
    await stop();
    assert.ok(Date.now() - t < 500, `stop took ${Date.now() - t} ms (a blocked read is interrupted)`);
  });

  it('starts at new entries by default ($), without missing any added between reads', async () => {
    const store = await open({ streams });
    const key = `${store.keyPrefix}source`;
    await admin.xadd(key, '*', 'key', 'c', 'event_id', 'before', 'amount', '1');
    const stop = store.consumeStream(key, 'tx', { block: 50 });
    await sleep(100);
    for (let i = 0; i < 20; i++) {
      await admin.xadd(key, '*', 'key', 'c', 'event_id', `after${i}`, 'amount', '1');
      if (i % 5 === 0) await sleep(60); // some between two blocking reads
    }
    const now = Date.now();
    await waitFor('20 events', async () => (await store.aggregate({ stream: 'tx', key: 'c', fn: 'count', windowMs: HOUR, at: now + MIN })) === 20);
    await stop();
  });

  it('reads with a consumer group: entries split between instances, each ingested once and acknowledged; pending entries are recovered', async () => {
    const prefix = freshPrefix('group');
    const [a, b] = await Promise.all([open({ streams, keyPrefix: prefix }), open({ streams, keyPrefix: prefix })]);
    const key = `${prefix}source`;
    const definition: StreamDefinition = {
      name: 'tx',
      spec: { entity: 'card', time: 'ts', id: 'tx_id', lateness: '1h', fields: { amount: 'number', merchant: 'string' } },
      keyField: 'card_id',
      latenessMs: HOUR,
      retentionMs: DAY + HOUR,
    };
    const add = (i: number) => admin.xadd(key, '*', 'card_id', `card${i % 5}`, 'tx_id', `t${i}`, 'ts', String(T0 - 1000 * i), 'amount', String(i), 'merchant', `m${i % 3}`, 'ignored', 'x');
    // A consumer that crashed after reading 10 entries, before acknowledging them.
    await admin.xgroup('CREATE', key, 'rtml', '0', 'MKSTREAM');
    for (let i = 0; i < 10; i++) await add(i);
    await admin.xreadgroup('GROUP', 'rtml', 'crashed', 'COUNT', '10', 'STREAMS', key, '>');
    assert.equal((await admin.xpending(key, 'rtml'))[0], 10);
    for (let i = 10; i < 200; i++) await add(i);
    const seen = { a: 0, b: 0 };
    const stops = [
      a.consumeStream(key, 'tx', { group: 'rtml', consumer: 'crashed', definition, block: 100, count: 16, onBatch: (r) => (seen.a += r.entries) }),
      b.consumeStream(key, 'tx', { group: 'rtml', consumer: 'other', definition, block: 100, count: 16, onBatch: (r) => (seen.b += r.entries) }),
    ];
    await waitFor('200 entries', () => seen.a + seen.b === 200);
    await waitFor('no pending entries', async () => (await admin.xpending(key, 'rtml'))[0] === 0);
    assert.ok(seen.a >= 10 && seen.b > 0, `both consumers took entries: ${JSON.stringify(seen)}`);
    assert.equal(a.counters.accepted + b.counters.accepted, 200, 'each entry ingested once');
    const q = (fn: AggregateFunction, field?: string): AggregateQuery => ({ stream: 'tx', key: 'card0', fn, field, windowMs: DAY, at: T0 });
    assert.deepEqual(await a.aggregates([q('count'), q('sum', 'amount'), q('distinct', 'merchant'), q('last', 'amount')]), [40, Array.from({ length: 40 }, (_, j) => j * 5).reduce((s, x) => s + x, 0), 3, 0]);
    await Promise.all(stops.map((stop) => stop()));
  });
});

// ------------------------------------------------------------------------------------------

describe('redis store: outages', () => {
  const streams = { tx: { latenessMs: HOUR, retentionMs: DAY + HOUR } };
  const COMMAND_TIMEOUT = 20;
  const WRITE_TIMEOUT = 50;
  /**
   * Scheduling slack on top of the timeouts: the test files run in parallel, and on a loaded
   * machine the event loop can stall for tens of ms. A hang would be seconds (a queued command
   * waiting for the reconnection); the median is checked to be immediate as well.
   */
  const SLACK = 100;

  it('fails fast while redis-server is SIGKILLed under load, and recovers when it is back on the same port', async () => {
    const server = await startRedis();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    const store = await connectRedisFeatureStore({ url: server.url, streams, commandTimeoutMs: COMMAND_TIMEOUT, writeTimeoutMs: WRITE_TIMEOUT, reconnectMaxDelayMs: 200 });
    const consumed: number[] = [];
    const consumedByGroup: number[] = [];
    const stopConsumer = store.consumeStream('source', 'tx', { from: '0', block: 100, onBatch: (r) => consumed.push(r.accepted) });
    const stopGroupConsumer = store.consumeStream('source2', 'tx', { group: 'g', from: '0', block: 100, onBatch: (r) => consumedByGroup.push(r.accepted) });
    try {
      type Call = { op: 'ingest' | 'read' | 'entity'; started: number; ms: number; ok: boolean; error?: unknown };
      const calls: Call[] = [];
      let running = true;
      let n = 0;
      const worker = async () => {
        while (running) {
          const i = n++;
          const op = (['ingest', 'read', 'entity'] as const)[i % 3];
          const started = performance.now();
          try {
            if (op === 'ingest') await store.ingest([{ stream: 'tx', key: `k${i % 10}`, id: `e${i}`, time: T0 - (i % 1000), fields: { amount: i } }]);
            else if (op === 'read') {
              await store.aggregates(
                (['count', 'sum', 'mean', 'max', 'distinct'] as const).map((fn) => ({ stream: 'tx', key: `k${i % 10}`, fn, field: 'amount', windowMs: HOUR, at: T0 })),
              );
            } else await store.getEntity('card', `k${i % 10}`, ['limit', 'segment']);
            calls.push({ op, started, ms: performance.now() - started, ok: true });
          } catch (error) {
            calls.push({ op, started, ms: performance.now() - started, ok: false, error });
          }
          await sleep(1);
        }
      };
      const workers = Array.from({ length: 4 }, () => worker());

      await sleep(300);
      // Up: calls succeed (a stalled event loop can make an occasional 20 ms timeout fire, never anything else).
      const up = calls.slice();
      assert.ok(up.length > 50 && up.filter((c) => c.ok).length >= 0.9 * up.length, `calls succeed while Redis is up: ${up.filter((c) => c.ok).length}/${up.length}`);
      for (const c of up.filter((c) => !c.ok)) {
        const cause = c.error instanceof FeatureStoreError ? c.error.cause : c.error;
        assert.ok(cause instanceof RedisStoreError && cause.reason === 'timeout', `only timeouts while up, got ${String(c.error)}`);
      }

      await server.kill();
      const downAt = performance.now();
      await sleep(1000);
      const during = calls.filter((c) => c.started > downAt + 5);
      assert.equal(store.healthy, false);
      assert.ok(during.length > 100, `calls kept being made during the outage (${during.length})`);
      assert.ok(during.every((c) => !c.ok), 'every call fails while Redis is down');
      for (const c of during) {
        const limit = (c.op === 'ingest' ? WRITE_TIMEOUT : COMMAND_TIMEOUT) + SLACK;
        assert.ok(c.ms <= limit, `${c.op} took ${c.ms.toFixed(1)} ms during the outage (limit ${limit})`);
        const e = c.error;
        const cause = e instanceof FeatureStoreError ? e.cause : e;
        assert.ok(cause instanceof RedisStoreError, `a RedisStoreError, got ${String(e)}`);
        if (c.op === 'ingest') assert.ok(e instanceof FeatureStoreError && e.code === 'WRITE_FAILED', 'a failed write is WRITE_FAILED');
      }
      const slowest = Math.max(...during.map((c) => c.ms));
      const median = during.map((c) => c.ms).sort((x, y) => x - y)[Math.floor(during.length / 2)];
      assert.ok(median < 5, `failing is immediate: median ${median.toFixed(2)} ms`);

      await server.restart();
      const upAt = performance.now();
      const recoveryMs = await waitFor('the store to be healthy again', () => store.healthy, 5000);
      await waitFor('calls to succeed again', () => calls.some((c) => c.started > upAt && c.ok), 5000);
      const recoveredAt = performance.now();
      await sleep(300);
      running = false;
      await Promise.all(workers);
      const afterRecovery = calls.filter((c) => c.started > recoveredAt + 50);
      const okAfter = afterRecovery.filter((c) => c.ok).length;
      assert.ok(afterRecovery.length > 50 && okAfter >= 0.9 * afterRecovery.length, `calls succeed after recovery: ${okAfter}/${afterRecovery.length}, e.g. ${String(afterRecovery.find((c) => !c.ok)?.error)}`);

      // The restarted Redis is empty (no persistence): new writes and reads are exact again.
      await store.ingest([{ stream: 'tx', key: 'after', id: 'a1', time: T0, fields: { amount: 2.5 } }, { stream: 'tx', key: 'after', id: 'a2', time: T0, fields: { amount: 4 } }]);
      await store.putEntity('card', 'after', { limit: 300 }, T0);
      assert.deepEqual(await store.aggregates([{ stream: 'tx', key: 'after', fn: 'sum', field: 'amount', windowMs: HOUR, at: T0 }]), [6.5]);
      assert.deepEqual(await store.getEntity('card', 'after', ['limit']), [{ value: 300, updatedAt: T0 }]);
      // The stream consumers came back too (the group one re-creates its group: this Redis lost it).
      const admin2 = new Redis(server.url);
      await admin2.xadd('source', '*', 'key', 'after', 'event_id', 's1', 'event_time', String(T0), 'amount', '1');
      await admin2.xadd('source2', '*', 'key', 'after', 'event_id', 's2', 'event_time', String(T0), 'amount', '1');
      await waitFor('the consumers to ingest after the outage', () => consumed.reduce((s, x) => s + x, 0) >= 1 && consumedByGroup.reduce((s, x) => s + x, 0) >= 1, 5000);
      await waitFor('the group entry to be acknowledged', async () => ((await admin2.xpending('source2', 'g')) as [number])[0] === 0, 5000);
      admin2.disconnect();

      const counters = store.counters;
      assert.ok(counters.failures >= during.length && counters.unavailable > 0, JSON.stringify(counters));
      assert.ok(counters.reconnects >= 2, `both connections reconnected: ${JSON.stringify(counters)}`);
      assert.deepEqual(unhandled, [], 'no unhandled rejection');
      console.log(
        `# outage: ${during.length} calls during 1 s down, median ${median.toFixed(2)} ms, slowest ${slowest.toFixed(2)} ms; healthy ${recoveryMs} ms after restart; counters ${JSON.stringify(counters)}`,
      );
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await stopConsumer();
      await stopGroupConsumer();
      await store.close();
      await server.stop();
    }
  });

  it('times out reads and writes on a hung server (SIGSTOP) and carries on when it resumes', async () => {
    const server = await startRedis();
    const store = await connectRedisFeatureStore({ url: server.url, streams, commandTimeoutMs: COMMAND_TIMEOUT, writeTimeoutMs: WRITE_TIMEOUT });
    try {
      await store.ingest([{ stream: 'tx', key: 'k', id: 'e1', time: T0, fields: { amount: 1 } }]);
      process.kill(server.pid!, 'SIGSTOP');
      const timed = async (what: string, call: () => Promise<unknown>, limit: number) => {
        const t = performance.now();
        await assert.rejects(call(), (e: unknown) => {
          const cause = e instanceof FeatureStoreError ? e.cause : e;
          return cause instanceof RedisStoreError && cause.reason === 'timeout';
        });
        const ms = performance.now() - t;
        assert.ok(ms >= limit - 5 && ms <= limit + SLACK, `${what} failed after ${ms.toFixed(1)} ms (timeout ${limit})`);
      };
      await timed('aggregates', () => store.aggregates([{ stream: 'tx', key: 'k', fn: 'count', windowMs: HOUR, at: T0 }, { stream: 'tx', key: 'k', fn: 'sum', field: 'amount', windowMs: HOUR, at: T0 }]), COMMAND_TIMEOUT);
      await timed('getEntity', () => store.getEntity('card', 'k', ['x']), COMMAND_TIMEOUT);
      await timed('ingest', () => store.ingest([{ stream: 'tx', key: 'k', id: 'e2', time: T0, fields: { amount: 2 } }]), WRITE_TIMEOUT);
      assert.ok(store.counters.timeouts >= 3);
      process.kill(server.pid!, 'SIGCONT');
      await sleep(50);
      // The timed-out write may have been applied once Redis resumed; re-sending is safe.
      const r = await store.ingest([{ stream: 'tx', key: 'k', id: 'e2', time: T0, fields: { amount: 2 } }]);
      assert.equal(r.accepted + r.duplicates, 1);
      assert.deepEqual(await store.aggregates([{ stream: 'tx', key: 'k', fn: 'sum', field: 'amount', windowMs: HOUR, at: T0 }]), [3]);
      assert.equal(store.healthy, true);
    } finally {
      if (server.pid) process.kill(server.pid, 'SIGCONT');
      await store.close();
      await server.stop();
    }
  });

  it('with Redis down at start: connect gives up after its wait, a store made anyway fails fast and recovers once Redis starts', async () => {
    const server = await startRedis();
    await server.kill();
    const t = Date.now();
    await assert.rejects(connectRedisFeatureStore({ url: server.url, streams }, 300), (e: unknown) => e instanceof RedisStoreError && e.reason === 'unavailable');
    assert.ok(Date.now() - t < 1000);
    const store = new RedisFeatureStore({ url: server.url, streams, reconnectMaxDelayMs: 100 });
    try {
      assert.equal(store.healthy, false);
      const s = performance.now();
      await assert.rejects(store.aggregate({ stream: 'tx', key: 'k', fn: 'count', windowMs: HOUR, at: T0 }), (e: unknown) => e instanceof RedisStoreError && e.reason === 'unavailable');
      assert.ok(performance.now() - s < SLACK, 'fails at once');
      await server.restart();
      await store.waitReady(3000);
      assert.deepEqual(await store.ingest([{ stream: 'tx', key: 'k', id: '1', time: T0, fields: {} }]), { accepted: 1, duplicates: 0, late: 0 });
      assert.equal(await store.aggregate({ stream: 'tx', key: 'k', fn: 'count', windowMs: HOUR, at: T0 }), 1);
    } finally {
      await store.close();
      await server.stop();
    }
  });

  it("reports a command timeout as the feature status `timeout`, not `error`; Redis down as `error`", async () => {
    // Sourced features of a bundle, with a feature deadline (200 ms) longer than the store's
    // command timeout (20 ms): the command timeout is what fails the lookups.
    const dir = tempBundle({
      'rtml.yaml': `name: cards
version: "1"
keys: [card_id]
sources:
  entities: { card: { key: card_id } }
  streams: { tx: { entity: card, time: at, id: id, lateness: 1h, fields: { amount: number } } }
  deadline_ms: 200
features:
  - { name: count_1h, type: integer, default: 0, source: { aggregate: tx, fn: count, window: 1h } }
  - { name: limit, type: number, default: 0, source: { entity: card, field: limit } }
`,
    });
    dirs.push(dir);
    const manifest = await readManifest(dir);
    const { resolver } = buildResolver(manifest, manifest.features!);
    const server = await startRedis();
    const store = await connectRedisFeatureStore({ url: server.url, streams, commandTimeoutMs: COMMAND_TIMEOUT, writeTimeoutMs: WRITE_TIMEOUT });
    const statuses = async () => (await resolver!.resolve({ card_id: 'c1' }, T0, store)).status;
    try {
      await store.putEntity('card', 'c1', { limit: 500 }, T0);
      assert.deepEqual(await statuses(), { count_1h: 'present', limit: 'present' });
      process.kill(server.pid!, 'SIGSTOP');
      const started = performance.now();
      assert.deepEqual(await statuses(), { count_1h: 'timeout', limit: 'timeout' });
      assert.ok(performance.now() - started < 200, 'the command timeout, not the feature deadline');
      process.kill(server.pid!, 'SIGCONT');
      await server.kill();
      assert.deepEqual(await statuses(), { count_1h: 'error', limit: 'error' });
    } finally {
      if (server.pid) process.kill(server.pid, 'SIGCONT');
      await store.close();
      await server.stop();
    }
  });
});
