/**
 * The behaviour every FeatureStore must have (embedded, Redis, ...): register it for a store
 * with
 *
 *   featureStoreConformance('redis', async (streams) => openRedisStore({ ..., streams }));
 *
 * `makeStore(streams)` must return a NEW, EMPTY store configured with exactly these streams
 * (CONFORMANCE_STREAMS; a store that keys its data by a prefix can use a fresh prefix per
 * call). Every case closes the stores it made. Event times are around the current time
 * (CONFORMANCE_T0, now rounded to the minute, within the last 35 days), so a store that also
 * expires data by wall clock at retention still passes.
 *
 * Optional `reopen(store)`: close the store and open it again on the same data; enables the
 * restart case (events, dedupe, watermark and entities survive).
 *
 * The semantics checked are those documented in src/features/aggregate.ts (windows
 * (at - window, at], the seven functions, dedupe per (stream, key, id) checked before lateness,
 * per-stream watermark = newest accepted time - lateness, `last` ties by ingestion order) and
 * src/features/embedded.ts (entity fields: merged, a write older than the stored updatedAt is
 * ignored). `referenceAggregate` and `ReferenceStore` are an independent brute-force model of
 * them, also used by the aggregate tests.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AggregateFunction, AggregateQuery, FeatureStore, IngestResult, StreamEvent } from '../../src/features/types.ts';
import { mulberry32 } from './prng.ts';

export interface ConformanceStreamConfig {
  latenessMs: number;
  retentionMs: number;
}

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

/** The streams every conformance store is made with. */
export const CONFORMANCE_STREAMS: Readonly<Record<string, ConformanceStreamConfig>> = Object.freeze({
  /** Card transactions: 5 min lateness, windows up to 30 days. */
  tx: { latenessMs: 5 * MIN, retentionMs: 30 * DAY + 5 * MIN },
  /** Clicks: no lateness at all, windows up to 1 hour. */
  clicks: { latenessMs: 0, retentionMs: HOUR },
});

export const CONFORMANCE_T0 = Math.floor(Date.now() / MIN) * MIN;

export interface ConformanceOptions {
  /** Closes the store and opens it again on the same data (enables the restart case). */
  reopen?: (store: FeatureStore) => Promise<FeatureStore>;
}

// ------------------------------------------------------------------------------------------
// The brute-force reference model.

export type Value = number | string | null;

/** An accepted event with its ingestion sequence number (the tie-breaker for `last`). */
export interface RefEvent extends StreamEvent {
  seq: number;
}

/** The aggregate by definition: filter the window, order by (time, seq), reduce. No cleverness. */
export function referenceAggregate(events: readonly RefEvent[], q: Omit<AggregateQuery, 'stream' | 'key'> & { stream?: string; key?: string }): Value {
  const inWindow = events
    .filter((e) => (q.stream === undefined || e.stream === q.stream) && (q.key === undefined || e.key === q.key))
    .filter((e) => e.time > q.at - q.windowMs && e.time <= q.at)
    .sort((a, b) => a.time - b.time || a.seq - b.seq);
  const values = inWindow.map((e) => (q.field === undefined ? undefined : e.fields[q.field]));
  const numbers = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  switch (q.fn) {
    case 'count':
      return inWindow.length;
    case 'sum':
      return numbers.reduce((a, b) => a + b, 0);
    case 'mean':
      return numbers.length === 0 ? null : numbers.reduce((a, b) => a + b, 0) / numbers.length;
    case 'min':
      return numbers.length === 0 ? null : Math.min(...numbers);
    case 'max':
      return numbers.length === 0 ? null : Math.max(...numbers);
    case 'distinct':
      return new Set(values.filter((v) => v !== null && v !== undefined)).size;
    case 'last': {
      const known = values.filter((v) => v !== null && v !== undefined);
      return known.length === 0 ? null : (known[known.length - 1] as Value);
    }
  }
}

/** The ingestion rule by definition: ids never forgotten, lateness against the stream's newest accepted time. */
export class ReferenceStore {
  readonly accepted: RefEvent[] = [];
  /** The accepted events by (stream, key): only to make the brute force affordable on long streams. */
  private readonly byKey = new Map<string, RefEvent[]>();
  private readonly ids = new Set<string>();
  private readonly maxTime = new Map<string, number>();
  private seq = 0;

  constructor(private readonly streams: Readonly<Record<string, ConformanceStreamConfig>>) {}

  ingest(events: readonly StreamEvent[]): IngestResult {
    const r: IngestResult = { accepted: 0, duplicates: 0, late: 0 };
    for (const e of events) {
      const idKey = JSON.stringify([e.stream, e.key, e.id]);
      const max = this.maxTime.get(e.stream) ?? -Infinity;
      if (this.ids.has(idKey)) r.duplicates++;
      else if (e.time < max - this.streams[e.stream].latenessMs) r.late++;
      else {
        this.ids.add(idKey);
        this.maxTime.set(e.stream, Math.max(max, e.time));
        const ref: RefEvent = { ...e, fields: { ...e.fields }, seq: this.seq++ };
        this.accepted.push(ref);
        const k = JSON.stringify([e.stream, e.key]);
        const list = this.byKey.get(k);
        if (list === undefined) this.byKey.set(k, [ref]);
        else list.push(ref);
        r.accepted++;
      }
    }
    return r;
  }

  aggregate(q: AggregateQuery): Value {
    return referenceAggregate(this.byKey.get(JSON.stringify([q.stream, q.key])) ?? [], q);
  }

  watermark(stream: string): number {
    return (this.maxTime.get(stream) ?? -Infinity) - this.streams[stream].latenessMs;
  }
}

export interface RandomStreamOptions {
  stream: string;
  /** Event ids are `<idPrefix>-<n>` (default: the stream name). */
  idPrefix?: string;
  keys: number;
  events: number;
  /** Time span covered, ending at `end`. */
  spanMs: number;
  end: number;
  /** Times are multiples of this (coarse = many ties). */
  quantumMs?: number;
  /** Fraction of events displaced backwards by up to `disorderMs` (some beyond lateness: late). */
  disorder?: number;
  disorderMs?: number;
  /** Fraction of events that are re-sends of an earlier event (same id, key, time and fields). */
  duplicates?: number;
}

/** A random event stream in arrival order: roughly increasing times, some displaced, some re-sent. */
export function randomEvents(rand: () => number, o: RandomStreamOptions): StreamEvent[] {
  const q = o.quantumMs ?? 1;
  const out: StreamEvent[] = [];
  const start = o.end - o.spanMs;
  for (let i = 0; i < o.events; i++) {
    if (out.length > 0 && rand() < (o.duplicates ?? 0)) {
      out.push(out[Math.floor(rand() * out.length)]);
      continue;
    }
    let time = start + Math.floor(((i + 1) / o.events) * o.spanMs);
    if (rand() < (o.disorder ?? 0)) time -= Math.floor(rand() * (o.disorderMs ?? 0));
    time = Math.min(o.end, Math.floor(time / q) * q);
    const r = rand();
    out.push({
      stream: o.stream,
      key: `k${Math.floor(rand() * o.keys)}`,
      id: `${o.idPrefix ?? o.stream}-${i}`,
      time,
      fields: {
        amount: r < 0.1 ? null : r < 0.15 ? 'n/a' : Math.round(rand() * 100_000) / 100 - 200,
        merchant: r > 0.9 ? null : `m${Math.floor(rand() * 12)}`,
        ...(r < 0.05 ? {} : { qty: Math.floor(rand() * 5) }),
      },
    });
  }
  return out;
}

export const FUNCTIONS: readonly AggregateFunction[] = ['count', 'sum', 'mean', 'min', 'max', 'distinct', 'last'];
export const WINDOWS: readonly number[] = [10 * MIN, HOUR, DAY, 30 * DAY];

/** Equal, numbers within a relative 1e-9 (a store may sum in another order). */
export function assertValue(actual: unknown, expected: Value, message: string): void {
  if (typeof expected === 'number' && typeof actual === 'number' && !Number.isInteger(expected)) {
    assert.ok(Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected)), `${message}: got ${actual}, expected ${expected}`);
  } else {
    assert.deepEqual(actual, expected, message);
  }
}

// ------------------------------------------------------------------------------------------

export function featureStoreConformance(
  name: string,
  makeStore: (streams: Readonly<Record<string, ConformanceStreamConfig>>) => Promise<FeatureStore>,
  options: ConformanceOptions = {},
): void {
  const T0 = CONFORMANCE_T0;
  const ev = (id: string, time: number, fields: StreamEvent['fields'] = {}, key = 'c1', stream = 'tx'): StreamEvent => ({ stream, key, id, time, fields });
  const q = (fn: AggregateFunction, windowMs: number, at: number, field?: string, key = 'c1', stream = 'tx'): AggregateQuery => ({ stream, key, fn, field, windowMs, at });

  async function withStore(fn: (store: FeatureStore) => Promise<void>): Promise<void> {
    const store = await makeStore(CONFORMANCE_STREAMS);
    try {
      await fn(store);
    } finally {
      await store.close();
    }
  }

  describe(`${name}: FeatureStore conformance`, () => {
    it('answers an unknown key with the empty aggregates and unknown entities with nulls', () =>
      withStore(async (store) => {
        const got = await store.aggregates(FUNCTIONS.map((fn) => q(fn, HOUR, T0, fn === 'count' ? undefined : 'amount', 'nobody')));
        assert.deepEqual(got, [0, 0, null, null, null, 0, null]);
        assert.deepEqual(await store.getEntity('customer', 'nobody', ['a', 'b']), [null, null]);
      }));

    it('computes every function over exactly (at - window, at]', () =>
      withStore(async (store) => {
        const r = await store.ingest([
          ev('e0', T0 - 10 * MIN, { amount: 1000, merchant: 'old' }), // exactly window old: out
          ev('e1', T0 - 10 * MIN + 1, { amount: 10, merchant: 'a' }),
          ev('e2', T0 - 5 * MIN, { amount: 'n/a', merchant: 'b' }), // a string amount: ignored by numeric functions
          ev('e3', T0 - 1 * MIN, { amount: -4.5, merchant: null }),
          ev('e4', T0, { amount: 20, merchant: 'a' }), // at `at`: in
          ev('e5', T0 + 1, { amount: 99, merchant: 'future' }), // after `at`: out
          ev('e6', T0 - 2 * MIN, { merchant: 'c' }), // no amount at all
        ]);
        assert.deepEqual(r, { accepted: 7, duplicates: 0, late: 0 });
        const W = 10 * MIN;
        const got = await store.aggregates([
          q('count', W, T0),
          q('sum', W, T0, 'amount'),
          q('mean', W, T0, 'amount'),
          q('min', W, T0, 'amount'),
          q('max', W, T0, 'amount'),
          q('distinct', W, T0, 'merchant'),
          q('last', W, T0, 'merchant'),
          q('last', W, T0, 'amount'),
          q('distinct', W, T0, 'amount'),
        ]);
        assert.deepEqual(got, [5, 25.5, 25.5 / 3, -4.5, 20, 3, 'a', 20, 4]);
        // The same through aggregate(), and the boundaries moved by 1 ms.
        assert.equal(await store.aggregate(q('sum', W, T0 - 1, 'amount')), 1005.5, 'at - 1 ms: e0 back in, e4 not yet in');
        assert.equal(await store.aggregate(q('sum', W, T0 + 1, 'amount')), 114.5, 'at + 1 ms: e1 out, e5 in');
        assert.equal(await store.aggregate(q('count', W + 1, T0)), 6, 'a window 1 ms longer takes e0');
        assert.equal(await store.aggregate(q('sum', W + 1, T0, 'amount')), 1025.5);
        assert.equal(await store.aggregate(q('last', 2 * MIN, T0 - MIN, 'merchant')), 'c', 'last skips the event without a value');
        assert.equal(await store.aggregate(q('min', MIN, T0 - 5 * MIN, 'amount')), null, 'only a string amount in the window');
        assert.equal(await store.aggregate(q('sum', MIN, T0 - 5 * MIN, 'amount')), 0);
        assert.equal(await store.aggregate(q('count', 30 * DAY, T0 + DAY)), 7);
      }));

    it('breaks ties in `last` by ingestion order, within one call and across calls', () =>
      withStore(async (store) => {
        const t = T0 - 3 * MIN;
        await store.ingest([ev('a', t, { m: 'first' }), ev('b', t, { m: 'second' })]);
        assert.equal(await store.aggregate(q('last', HOUR, T0, 'm')), 'second');
        await store.ingest([ev('c', t, { m: 'third' })]);
        assert.equal(await store.aggregate(q('last', HOUR, T0, 'm')), 'third');
        // A later-ingested event with an OLDER time does not win.
        await store.ingest([ev('d', t - 1, { m: 'older' })]);
        assert.equal(await store.aggregate(q('last', HOUR, T0, 'm')), 'third');
        // A tie with a null value does not hide the earlier value.
        await store.ingest([ev('e', t, { m: null })]);
        assert.equal(await store.aggregate(q('last', HOUR, T0, 'm')), 'third');
        assert.equal(await store.aggregate(q('count', HOUR, T0)), 5);
      }));

    it('ignores a repeated event id per (stream, key), within one call and across calls', () =>
      withStore(async (store) => {
        assert.deepEqual(await store.ingest([ev('x', T0 - MIN, { amount: 5 }), ev('x', T0 - MIN, { amount: 5 }), ev('y', T0, { amount: 1 })]), { accepted: 2, duplicates: 1, late: 0 });
        // A re-send with other content is still the same event: ignored.
        assert.deepEqual(await store.ingest([ev('x', T0 - 30_000, { amount: 500 })]), { accepted: 0, duplicates: 1, late: 0 });
        assert.equal(await store.aggregate(q('sum', HOUR, T0, 'amount')), 6);
        // The same id on another key or another stream is another event.
        assert.deepEqual(await store.ingest([ev('x', T0 - MIN, { amount: 7 }, 'c2'), ev('x', T0, { amount: 7 }, 'c1', 'clicks')]), { accepted: 2, duplicates: 0, late: 0 });
        assert.equal(await store.aggregate(q('sum', HOUR, T0, 'amount', 'c2')), 7);
        assert.equal(await store.aggregate(q('count', HOUR, T0, undefined, 'c1', 'clicks')), 1);
        assert.equal(await store.aggregate(q('sum', HOUR, T0, 'amount')), 6);
        // An empty call is fine.
        assert.deepEqual(await store.ingest([]), { accepted: 0, duplicates: 0, late: 0 });
      }));

    it('drops events older than the stream watermark (newest accepted time - lateness), and applies those within it in order', () =>
      withStore(async (store) => {
        // tx: 5 min lateness. The watermark is per stream, over all keys.
        assert.deepEqual(await store.ingest([ev('n', T0, { amount: 1 }, 'a')]), { accepted: 1, duplicates: 0, late: 0 });
        assert.deepEqual(await store.ingest([ev('edge', T0 - 5 * MIN, { amount: 2 }, 'b')]), { accepted: 1, duplicates: 0, late: 0 }, 'exactly at the watermark: accepted');
        assert.deepEqual(await store.ingest([ev('late', T0 - 5 * MIN - 1, { amount: 4 }, 'b')]), { accepted: 0, duplicates: 0, late: 1 }, '1 ms older: late');
        assert.equal(await store.aggregate(q('sum', HOUR, T0, 'amount', 'b')), 2, 'a late event is not applied');
        // Within lateness, out of order: it lands in the windows that include it.
        assert.deepEqual(await store.ingest([ev('ooo', T0 - 2 * MIN, { amount: 8 }, 'b')]), { accepted: 1, duplicates: 0, late: 0 });
        assert.equal(await store.aggregate(q('sum', 3 * MIN, T0 - MIN, 'amount', 'b')), 8, 'window (T0-4m, T0-1m] has only the out-of-order event');
        assert.equal(await store.aggregate(q('sum', 4 * MIN, T0 - 2 * MIN, 'amount', 'b')), 10, 'window (T0-6m, T0-2m]: the edge event and the out-of-order one');
        assert.equal(await store.aggregate(q('count', 10 * MIN, T0, undefined, 'b')), 2);
        assert.equal(await store.aggregate(q('last', 10 * MIN, T0, 'amount', 'b')), 8, 'the out-of-order event is the latest by time');
        // Within one call, events are judged in array order: the watermark moves mid-call.
        assert.deepEqual(
          await store.ingest([ev('m1', T0 + 20 * MIN, { amount: 1 }, 'c'), ev('m2', T0 + 14 * MIN, { amount: 1 }, 'c'), ev('m3', T0 + 16 * MIN, { amount: 1 }, 'c')]),
          { accepted: 2, duplicates: 0, late: 1 },
        );
        // clicks: no lateness; equal times are not late.
        assert.deepEqual(await store.ingest([ev('k1', T0, {}, 'a', 'clicks'), ev('k2', T0, {}, 'b', 'clicks'), ev('k3', T0 - 1, {}, 'a', 'clicks')]), { accepted: 2, duplicates: 0, late: 1 });
        // A re-send of an accepted event now past the watermark is a duplicate (dedupe first).
        assert.deepEqual(await store.ingest([ev('edge', T0 - 5 * MIN, { amount: 2 }, 'b')]), { accepted: 0, duplicates: 1, late: 0 });
      }));

    it('moves the watermark only with accepted events (not duplicates or late ones)', () =>
      withStore(async (store) => {
        await store.ingest([ev('e1', T0 - 60 * MIN, { amount: 1 })]);
        assert.deepEqual(await store.ingest([ev('e1', T0, { amount: 1 })]), { accepted: 0, duplicates: 1, late: 0 }, 'a duplicate with a newer time');
        // Were the watermark at T0 - 5m this would be late; it is at T0 - 65m.
        assert.deepEqual(await store.ingest([ev('e2', T0 - 64 * MIN, { amount: 1 })]), { accepted: 1, duplicates: 0, late: 0 });
        assert.equal(await store.aggregate(q('count', 30 * DAY, T0)), 2);
      }));

    it('rejects a call with a non-finite time or an unknown stream, applying none of it', () =>
      withStore(async (store) => {
        for (const bad of [NaN, Infinity, -Infinity]) {
          await assert.rejects(store.ingest([ev('ok', T0, { amount: 1 }), ev('bad', bad, { amount: 1 })]));
        }
        await assert.rejects(store.ingest([ev('ok', T0, { amount: 1 }), ev('bad', T0, {}, 'c1', 'no-such-stream')]));
        assert.equal(await store.aggregate(q('count', HOUR, T0)), 0);
        assert.deepEqual(await store.ingest([ev('ok', T0, { amount: 1 })]), { accepted: 1, duplicates: 0, late: 0 }, 'the id was not remembered either');
        await assert.rejects(store.aggregate(q('count', HOUR, T0, undefined, 'c1', 'no-such-stream')));
      }));

    it('takes a stream declared after open (configureStreams) without disturbing the others', () =>
      withStore(async (store) => {
        await store.ingest([ev('t1', T0, { amount: 5 })]);
        const login = (id: string, time: number) => ev(id, time, { amount: 1 }, 'u1', 'logins');
        await assert.rejects(store.ingest([login('l0', T0)]), /unknown stream/);
        await store.configureStreams({ logins: { latenessMs: MIN, retentionMs: HOUR + MIN } });
        assert.deepEqual(await store.ingest([login('l1', T0 - 2 * MIN), login('l2', T0), login('l2', T0), login('l3', T0 - 5 * MIN)]), { accepted: 2, duplicates: 1, late: 1 });
        assert.deepEqual(await store.aggregates([q('count', HOUR, T0, undefined, 'u1', 'logins'), q('sum', HOUR, T0, 'amount')]), [2, 5]);
        // Configuring again, even with the streams it already has, keeps their events.
        await store.configureStreams({ ...CONFORMANCE_STREAMS, logins: { latenessMs: MIN, retentionMs: HOUR + MIN } });
        assert.deepEqual(await store.aggregates([q('count', HOUR, T0, undefined, 'u1', 'logins'), q('sum', HOUR, T0, 'amount')]), [2, 5]);
        await assert.rejects(store.configureStreams({ bad: { latenessMs: -1, retentionMs: HOUR } }));
      }));

    it('aggregates() answers like aggregate() for each query, in order, across streams, keys and functions', () =>
      withStore(async (store) => {
        const rand = mulberry32(7);
        await store.ingest(randomEvents(rand, { stream: 'tx', keys: 5, events: 300, spanMs: 2 * DAY, end: T0 }));
        await store.ingest(randomEvents(rand, { stream: 'clicks', keys: 5, events: 300, spanMs: HOUR, end: T0 }));
        const queries: AggregateQuery[] = [];
        for (let i = 0; i < 60; i++) {
          const stream = rand() < 0.5 ? 'tx' : 'clicks';
          const fn = FUNCTIONS[Math.floor(rand() * FUNCTIONS.length)];
          queries.push(q(fn, WINDOWS[Math.floor(rand() * 3)], T0 - Math.floor(rand() * HOUR), fn === 'count' ? undefined : rand() < 0.5 ? 'amount' : 'merchant', `k${Math.floor(rand() * 6)}`, stream));
        }
        const batch = await store.aggregates(queries);
        const single = await Promise.all(queries.map((x) => store.aggregate(x)));
        assert.deepEqual(batch, single);
        assert.deepEqual(await store.aggregates([]), []);
      }));

    it('stores entity fields with their updatedAt: merged, null kept, older writes ignored', () =>
      withStore(async (store) => {
        await store.putEntity('customer', 'c1', { income: 52_000, segment: 'gold', verified: true, note: null }, T0 - HOUR);
        assert.deepEqual(await store.getEntity('customer', 'c1', ['income', 'segment', 'verified', 'note', 'absent']), [
          { value: 52_000, updatedAt: T0 - HOUR },
          { value: 'gold', updatedAt: T0 - HOUR },
          { value: true, updatedAt: T0 - HOUR },
          { value: null, updatedAt: T0 - HOUR },
          null,
        ]);
        // A put touches only the fields it names.
        await store.putEntity('customer', 'c1', { income: 61_000.5 }, T0);
        assert.deepEqual(await store.getEntity('customer', 'c1', ['segment', 'income']), [
          { value: 'gold', updatedAt: T0 - HOUR },
          { value: 61_000.5, updatedAt: T0 },
        ]);
        // An older write is ignored field by field; an equal time applies.
        await store.putEntity('customer', 'c1', { income: 1, segment: 'silver' }, T0 - 30 * MIN);
        assert.deepEqual(await store.getEntity('customer', 'c1', ['income', 'segment']), [
          { value: 61_000.5, updatedAt: T0 },
          { value: 'silver', updatedAt: T0 - 30 * MIN },
        ]);
        await store.putEntity('customer', 'c1', { income: 62_000 }, T0);
        assert.deepEqual(await store.getEntity('customer', 'c1', ['income']), [{ value: 62_000, updatedAt: T0 }]);
        // Types and ids are separate namespaces.
        assert.deepEqual(await store.getEntity('merchant', 'c1', ['income']), [null]);
        assert.deepEqual(await store.getEntity('customer', 'c2', ['income']), [null]);
        // Without `at`, updatedAt is the time of the write.
        const before = Date.now();
        await store.putEntity('card', 'k9', { limit: 5000 });
        const after = Date.now();
        const [v] = await store.getEntity('card', 'k9', ['limit']);
        assert.equal(v?.value, 5000);
        assert.ok(v!.updatedAt >= before && v!.updatedAt <= after, `updatedAt ${v!.updatedAt} within [${before}, ${after}]`);
        assert.deepEqual(await store.getEntity('card', 'k9', []), []);
      }));

    it('applies concurrent ingest and putEntity calls (not awaited one by one)', () =>
      withStore(async (store) => {
        const ref = new ReferenceStore(CONFORMANCE_STREAMS);
        const calls: Promise<unknown>[] = [];
        const results: Promise<IngestResult>[] = [];
        for (let i = 0; i < 50; i++) {
          // All within lateness of each other, distinct ids and times: order-independent.
          const batch = [ev(`p${i}`, T0 - 3 * MIN + i * 1000, { amount: i }, `k${i % 4}`), ev(`q${i}`, T0 - 3 * MIN + i * 1000 + 500, { amount: -i }, `k${(i + 1) % 4}`)];
          ref.ingest(batch);
          results.push(store.ingest(batch));
          calls.push(store.putEntity('card', `k${i % 4}`, { n: i }, T0 + i));
        }
        await Promise.all(calls);
        for (const r of await Promise.all(results)) assert.deepEqual(r, { accepted: 2, duplicates: 0, late: 0 });
        for (let k = 0; k < 4; k++) {
          for (const fn of FUNCTIONS) {
            const query = q(fn, 10 * MIN, T0, 'amount', `k${k}`);
            assertValue(await store.aggregate(query), ref.aggregate(query), `${fn} k${k}`);
          }
          assert.deepEqual(await store.getEntity('card', `k${k}`, ['n']), [{ value: 48 + (k % 4 < 2 ? k : k - 4), updatedAt: T0 + 48 + (k % 4 < 2 ? k : k - 4) }]);
        }
      }));

    it('agrees with the brute force over many keys: random streams with ties, disorder, duplicates and late events', () =>
      withStore(async (store) => {
        const rand = mulberry32(20260101);
        const ref = new ReferenceStore(CONFORMANCE_STREAMS);
        const tx = [
          // Sparse over 35 days (one event every ~34 min: displaced ones are mostly late), then dense over the last day
          // (one a minute, on whole minutes: ties, and displaced ones mostly within the 5 min lateness).
          ...randomEvents(rand, { stream: 'tx', idPrefix: 'sparse', keys: 300, events: 1500, spanMs: 34 * DAY, end: T0 - DAY, quantumMs: MIN, disorder: 0.2, disorderMs: 60 * MIN, duplicates: 0.05 }),
          ...randomEvents(rand, { stream: 'tx', idPrefix: 'dense', keys: 300, events: 1500, spanMs: DAY, end: T0, quantumMs: MIN, disorder: 0.2, disorderMs: 8 * MIN, duplicates: 0.05 }),
        ];
        const clicks = randomEvents(rand, { stream: 'clicks', keys: 200, events: 1500, spanMs: 2 * HOUR, end: T0, quantumMs: 10_000, disorder: 0.1, disorderMs: 20_000, duplicates: 0.05 });
        // Interleave the two streams at random, keeping each one's arrival order.
        const events: StreamEvent[] = [];
        for (let i = 0, j = 0; i < tx.length || j < clicks.length; ) {
          if (j >= clicks.length || (i < tx.length && rand() < tx.length / (tx.length + clicks.length))) events.push(tx[i++]);
          else events.push(clicks[j++]);
        }
        const totals: IngestResult = { accepted: 0, duplicates: 0, late: 0 };
        const expected: IngestResult = { accepted: 0, duplicates: 0, late: 0 };
        for (let i = 0; i < events.length; ) {
          const n = 1 + Math.floor(rand() * 40);
          const batch = events.slice(i, i + n);
          i += n;
          const got = await store.ingest(batch);
          const want = ref.ingest(batch);
          assert.deepEqual(got, want, `ingest of events ${i - n}..${i}`);
          for (const k of ['accepted', 'duplicates', 'late'] as const) {
            totals[k] += got[k];
            expected[k] += want[k];
          }
        }
        assert.ok(expected.late > 20 && expected.duplicates > 50, `the stream exercises late (${expected.late}) and duplicate (${expected.duplicates}) events`);
        let checked = 0;
        for (const stream of ['tx', 'clicks'] as const) {
          const wm = ref.watermark(stream);
          const queries: AggregateQuery[] = [];
          for (let i = 0; i < 400; i++) {
            const fn = FUNCTIONS[i % FUNCTIONS.length];
            const windowMs = stream === 'tx' ? WINDOWS[Math.floor(rand() * 4)] : WINDOWS[Math.floor(rand() * 2)];
            // Real-time queries: at or after the watermark (where retention guarantees exact windows); a third of them
            // exactly on a window edge (an event at `at`, or exactly `window` before it).
            let at = Math.floor(wm + rand() * (T0 + 10 * MIN - wm));
            let key = `k${Math.floor(rand() * 320)}`;
            const onEdge = ref.accepted.filter((e) => e.stream === stream && e.time + windowMs >= wm);
            if (i % 3 === 0 && onEdge.length > 0) {
              const e = onEdge[Math.floor(rand() * onEdge.length)];
              at = e.time >= wm && rand() < 0.5 ? e.time : e.time + windowMs;
              key = e.key;
            }
            const field = fn === 'count' ? undefined : fn === 'distinct' || fn === 'last' ? (rand() < 0.5 ? 'merchant' : 'qty') : rand() < 0.8 ? 'amount' : 'qty';
            queries.push(q(fn, windowMs, at, field, key, stream));
          }
          const got = await store.aggregates(queries);
          queries.forEach((query, i) => assertValue(got[i], ref.aggregate(query), `${JSON.stringify(query)}`));
          checked += queries.length;
        }
        assert.equal(checked, 800);
      }));

    if (options.reopen) {
      const reopen = options.reopen;
      it('keeps events, dedupe, the watermark and entities across a restart', async () => {
        let store = await makeStore(CONFORMANCE_STREAMS);
        try {
          await store.ingest([ev('r1', T0 - 2 * MIN, { amount: 3, m: 'x' }), ev('r2', T0 - 2 * MIN, { amount: 4, m: 'y' }), ev('r3', T0, { amount: 5, m: null })]);
          await store.putEntity('customer', 'c1', { income: 1, seg: 'a' }, T0);
          store = await reopen(store);
          assert.deepEqual(await store.aggregates([q('sum', HOUR, T0, 'amount'), q('last', HOUR, T0, 'm'), q('count', HOUR, T0)]), [12, 'y', 3]);
          assert.deepEqual(await store.ingest([ev('r1', T0 - 2 * MIN, { amount: 3 }), ev('late', T0 - 6 * MIN, {}), ev('r4', T0 - 4 * MIN, { amount: 1 })]), { accepted: 1, duplicates: 1, late: 1 });
          assert.deepEqual(await store.getEntity('customer', 'c1', ['income', 'seg']), [
            { value: 1, updatedAt: T0 },
            { value: 'a', updatedAt: T0 },
          ]);
          await store.putEntity('customer', 'c1', { income: 0 }, T0 - 1);
          store = await reopen(store);
          assert.deepEqual(await store.getEntity('customer', 'c1', ['income']), [{ value: 1, updatedAt: T0 }]);
          assert.equal(await store.aggregate(q('sum', HOUR, T0, 'amount')), 13);
        } finally {
          await store.close();
        }
      });
    }
  });
}
