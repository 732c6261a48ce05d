/**
 * The shared aggregate code (src/features/aggregate.ts) and the batch backfill
 * (src/features/backfill.ts) against the brute-force reference of
 * test/helpers/feature-store-conformance.ts, on seeded random event streams.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  EventBuffer,
  FeatureStoreError,
  StreamState,
  aggregateSorted,
  emptyAggregate,
  lowerBound,
  normalizeEvent,
  streamStoreConfigs,
  upperBound,
  validateWindowSpec,
  windowRange,
  type EventFields,
} from '../src/features/aggregate.ts';
import { aggregateFeatures, backfill, streamLateness, type BackfillFeature, type BackfillRequest } from '../src/features/backfill.ts';
import { sourcesSchema, type AggregateQuery, type StreamEvent } from '../src/features/types.ts';
import { FUNCTIONS, ReferenceStore, WINDOWS, randomEvents } from './helpers/feature-store-conformance.ts';
import { mulberry32 } from './helpers/prng.ts';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 10, 1);

describe('window bounds', () => {
  const times = [1, 2, 2, 2, 5, 9];
  it('binary-searches (at - window, at]', () => {
    assert.equal(upperBound(times, 2), 4);
    assert.equal(lowerBound(times, 2), 1);
    assert.equal(upperBound(times, 0), 0);
    assert.equal(upperBound(times, 9), 6);
    assert.equal(lowerBound(times, 10), 6);
    assert.deepEqual(windowRange(times, 5, 3), [4, 5], '(2, 5] holds only the event at 5');
    assert.deepEqual(windowRange(times, 5, 4), [1, 5], '(1, 5]');
  });
});

describe('aggregateSorted', () => {
  const times = [1, 2, 2, 2, 5, 9];
  const fields: EventFields[] = [{ v: 1 }, { v: 2, s: 'a' }, { v: 'x', s: 'b' }, { v: 4, s: null }, { v: -1, s: 'a' }, { v: 100 }];
  const at = (fn: AggregateQuery['fn'], a: number, w: number, field = 'v') => aggregateSorted(times, fields, { fn, field, windowMs: w, at: a });

  it('takes events with at - window < time <= at', () => {
    assert.equal(at('count', 5, 3), 1); // (2, 5]
    assert.equal(at('count', 5, 4), 4); // (1, 5]
    assert.equal(at('count', 2, 1), 3); // (1, 2]
    assert.equal(at('count', 9, 4), 1); // (5, 9]
    assert.equal(at('count', 8, 3), 0); // (5, 8]
    assert.equal(at('count', 100, 1), 0);
  });

  it('computes every function, ignoring what does not apply', () => {
    assert.equal(at('sum', 5, 4), 5); // 2 + 4 - 1 ('x' ignored)
    assert.equal(at('mean', 5, 4), 5 / 3);
    assert.equal(at('min', 5, 4), -1);
    assert.equal(at('max', 5, 4), 4);
    assert.equal(at('distinct', 5, 4, 's'), 2);
    assert.equal(at('distinct', 5, 4), 4); // 2, 'x', 4, -1
    assert.equal(at('last', 5, 4, 's'), 'a');
    assert.equal(at('last', 2, 1, 's'), 'b', 'the tie at 2: the last ingested with a value');
    assert.equal(at('last', 2, 1), 4);
    for (const fn of FUNCTIONS) assert.deepEqual(at(fn, 100, 1), emptyAggregate(fn), fn);
    assert.deepEqual(FUNCTIONS.map(emptyAggregate), [0, 0, null, null, null, 0, null]);
    assert.deepEqual(aggregateSorted([1, 2], [undefined, { v: 3 }], { fn: 'sum', field: 'v', windowMs: 10, at: 2 }), 3, 'an event without fields');
  });

  it('validates queries', () => {
    assert.throws(() => validateWindowSpec({ fn: 'median' as 'sum', field: 'v', windowMs: 1, at: 0 }), /unknown function/);
    assert.throws(() => validateWindowSpec({ fn: 'sum', windowMs: 1, at: 0 }), /sum needs a field/);
    assert.throws(() => validateWindowSpec({ fn: 'count', windowMs: -1, at: 0 }), /windowMs/);
    assert.throws(() => validateWindowSpec({ fn: 'count', windowMs: 1, at: Infinity }), (e: FeatureStoreError) => e.code === 'INVALID');
    validateWindowSpec({ fn: 'count', windowMs: 1, at: 0 });
  });
});

describe('EventBuffer', () => {
  it('keeps events in (time, insertion) order, dedupes by id, removes and evicts', () => {
    const b = new EventBuffer();
    assert.equal(b.insert('c', 3, { n: 'c' }), true);
    assert.equal(b.insert('a', 1, { n: 'a' }), true);
    assert.equal(b.insert('b', 3, { n: 'b' }), true); // a tie: after c
    assert.equal(b.insert('d', 2, { n: 'd' }), true);
    assert.equal(b.insert('a', 9, { n: 'again' }), false);
    assert.deepEqual([...b.events()].map((e) => e.id), ['a', 'd', 'c', 'b']);
    assert.equal(b.aggregate({ fn: 'last', field: 'n', windowMs: 10, at: 3 }), 'b');
    assert.deepEqual([b.minTime, b.maxTime, b.size], [1, 3, 4]);
    assert.equal(b.remove('c', 3), true);
    assert.equal(b.remove('c', 3), false);
    assert.equal(b.remove('d', 3), false, 'wrong time');
    assert.equal(b.evict(2), 1, 'time < 2 goes');
    assert.equal(b.has('a'), false);
    assert.deepEqual([...b.events()].map((e) => e.id), ['d', 'b']);
    assert.equal(b.insert('a', 0, { n: 'a' }), true, 'an evicted id is forgotten');
    assert.equal(b.evict(100), 3);
    assert.deepEqual([b.size, b.minTime, b.maxTime], [0, Infinity, -Infinity]);
  });

  it('evicts in amortized O(1) (head offset, compaction) and stays correct', () => {
    const b = new EventBuffer();
    for (let i = 0; i < 10_000; i++) {
      b.insert(`e${i}`, i, { v: i });
      if (i % 7 === 0) b.evict(i - 500);
    }
    assert.ok(b.size >= 500 && b.size < 510, `${b.size}`);
    assert.equal(b.aggregate({ fn: 'sum', field: 'v', windowMs: 3, at: 9999 }), 9999 + 9998 + 9997);
    assert.equal(b.aggregate({ fn: 'count', windowMs: 1e9, at: 9999 }), b.size);
    b.insert('mid', 9800.5, { v: 0.5 });
    assert.equal(b.aggregate({ fn: 'sum', field: 'v', windowMs: 1, at: 9801 }), 9801 + 0.5);
  });
});

describe('StreamState vs the brute force', () => {
  const CONFIG = { s: { latenessMs: 5 * MIN, retentionMs: 30 * DAY + 5 * MIN } };

  for (const seed of [1, 2, 3, 4]) {
    it(`seed ${seed}: every function and window, with ties, disorder, duplicates, late drops and eviction`, () => {
      const rand = mulberry32(seed);
      const state = new StreamState('s', CONFIG.s);
      const ref = new ReferenceStore(CONFIG);
      const quantum = [1, 1000, MIN, 10 * MIN][seed - 1]; // coarser = more ties
      const events = randomEvents(rand, { stream: 's', keys: 20, events: 4000, spanMs: 60 * DAY, end: T0, quantumMs: quantum, disorder: 0.3, disorderMs: 8 * MIN, duplicates: 0.05 });
      // Dense stretches too (many events per minute), so that disorder within lateness and ties are common.
      events.push(...randomEvents(rand, { stream: 's', idPrefix: 'dense', keys: 20, events: 3000, spanMs: 2 * HOUR, end: T0 + 2 * HOUR, quantumMs: quantum === 1 ? 1 : 1000, disorder: 0.3, disorderMs: 8 * MIN, duplicates: 0.05 }));
      let checked = 0;
      const counts = { accepted: 0, duplicates: 0, late: 0 };
      for (let i = 0; i < events.length; i++) {
        const e = events[i];
        const got = state.offer(e.key, e.id, e.time, normalizeEvent(e));
        const want = ref.ingest([e]);
        const expected = want.accepted ? 'accepted' : want.duplicates ? 'duplicate' : 'late';
        // The reference never forgets ids; the state forgets evicted ones, whose re-sends are then late instead.
        if (got !== expected) assert.ok(got === 'late' && expected === 'duplicate' && e.time < state.horizon, `event ${i}: ${got} vs ${expected}`);
        counts[got === 'accepted' ? 'accepted' : got === 'duplicate' ? 'duplicates' : 'late']++;
        if (i % 97 === 0) state.evict();
        if (i % 13 === 0) {
          const wm = state.watermark;
          const windowMs = WINDOWS[Math.floor(rand() * WINDOWS.length)];
          // At or after the watermark, sometimes exactly on an edge.
          let at = Math.floor(wm + rand() * (10 * MIN));
          if (rand() < 0.3) at = e.time >= wm ? e.time : e.time + windowMs >= wm ? e.time + windowMs : at;
          for (const fn of FUNCTIONS) {
            const field = fn === 'count' ? undefined : fn === 'distinct' || fn === 'last' ? (rand() < 0.5 ? 'merchant' : 'amount') : rand() < 0.7 ? 'amount' : 'qty';
            const q: AggregateQuery = { stream: 's', key: rand() < 0.7 ? e.key : `k${Math.floor(rand() * 22)}`, fn, field, windowMs, at };
            assert.deepStrictEqual(state.aggregate(q.key, q), ref.aggregate(q), `event ${i}: ${JSON.stringify(q)}`);
            checked++;
          }
        }
      }
      assert.ok(counts.late > 100 && counts.duplicates > 100 && counts.accepted > 5000, JSON.stringify(counts));
      assert.deepEqual(state.counts, counts);
      assert.ok(checked > 3000);
    });
  }

  it('forgets nothing a query at or after the watermark needs: retention = largest window + lateness', () => {
    const state = new StreamState('s', { latenessMs: 5 * MIN, retentionMs: HOUR + 5 * MIN });
    for (let i = 0; i < 300; i++) state.offer('k', `e${i}`, T0 + i * MIN, { v: 1 });
    const at = state.watermark;
    const before = state.aggregate('k', { fn: 'count', windowMs: HOUR, at });
    assert.equal(state.evict(), 300 - 66);
    assert.equal(state.aggregate('k', { fn: 'count', windowMs: HOUR, at }), before);
    assert.equal(before, 60);
  });

  it('rejects a bad configuration', () => {
    assert.throws(() => new StreamState('s', { latenessMs: 10, retentionMs: 5 }), /retentionMs/);
    assert.throws(() => new StreamState('s', { latenessMs: NaN, retentionMs: 5 }), /latenessMs/);
  });
});

describe('normalizeEvent', () => {
  it('copies fields, turning what has no JSON form into null, and rejects bad events', () => {
    const fields = { a: 1, b: 'x', c: null, d: NaN, e: Infinity, f: true as unknown as string, g: { x: 1 } as unknown as string };
    const out = normalizeEvent({ stream: 's', key: 'k', id: 'i', time: 1, fields });
    assert.deepEqual(out, { a: 1, b: 'x', c: null, d: null, e: null, f: null, g: null });
    assert.notEqual(out, fields);
    assert.deepEqual(normalizeEvent({ stream: 's', key: 'k', id: 'i', time: 1, fields: undefined as unknown as {} }), {});
    for (const time of [NaN, Infinity, '1' as unknown as number]) {
      assert.throws(() => normalizeEvent({ stream: 's', key: 'k', id: 'i', time, fields: {} }), /time must be a finite number/);
    }
    assert.throws(() => normalizeEvent({ stream: 's', key: 'k', id: 5 as unknown as string, time: 1, fields: {} }), /id must be a string/);
  });
});

describe('streamStoreConfigs', () => {
  it('derives retention = largest window of the features on the stream + lateness', () => {
    const sources = sourcesSchema.parse({
      entities: { card: { key: 'card_id' } },
      streams: { tx: { entity: 'card', lateness: '5m' }, clicks: { entity: 'card', lateness: '30s' } },
    });
    const features = [
      { aggregate: 'tx', fn: 'count', window: '10m' },
      { aggregate: 'tx', fn: 'sum', field: 'amount', window: '30d' },
      { entity: 'card', field: 'limit' },
      undefined,
    ] as const;
    assert.deepEqual(streamStoreConfigs(sources.streams, features), {
      tx: { latenessMs: 5 * MIN, retentionMs: 30 * DAY + 5 * MIN },
      clicks: { latenessMs: 30_000, retentionMs: 30_000 },
    });
    assert.throws(() => streamStoreConfigs(sources.streams, [{ aggregate: 'nope', fn: 'count', window: '1h' }]), /does not declare/);
    assert.deepEqual(streamLateness(sources), { tx: 5 * MIN, clicks: 30_000 });
    assert.deepEqual(
      aggregateFeatures(sources, [
        { name: 'n_tx_10m', source: { aggregate: 'tx', fn: 'count', window: '10m' } },
        { name: 'income' },
        { name: 'limit', source: { entity: 'card', field: 'limit' } },
      ]),
      [{ name: 'n_tx_10m', stream: 'tx', fn: 'count', field: undefined, windowMs: 10 * MIN, keyField: 'card_id' }],
    );
  });
});

describe('backfill', () => {
  /** Point in time by definition: of every event the real-time rule accepts (over the whole input), those with time <= at. */
  function pointInTime(ref: ReferenceStore, features: readonly BackfillFeature[], req: BackfillRequest): Record<string, unknown> {
    return Object.fromEntries(
      features.map((f) => {
        const key = req[f.keyField ?? 'key'];
        return [f.name, typeof key !== 'string' ? null : ref.aggregate({ stream: f.stream, key, fn: f.fn, field: f.field, windowMs: f.windowMs, at: req.at })];
      }),
    );
  }
  const features = (stream: string, windows = WINDOWS): BackfillFeature[] =>
    FUNCTIONS.flatMap((fn) => windows.map((windowMs) => ({ name: `${stream}_${fn}_${windowMs}`, stream, fn, windowMs, field: fn === 'count' ? undefined : fn === 'distinct' || fn === 'last' ? 'merchant' : 'amount' })));

  it('equals the point-in-time brute force on input in arrival order with lateness (late dropped, disorder reordered)', async () => {
    const rand = mulberry32(99);
    const CONFIG = { s: { latenessMs: 5 * MIN, retentionMs: 30 * DAY + 5 * MIN } };
    const events = randomEvents(rand, { stream: 's', keys: 15, events: 5000, spanMs: 3 * DAY, end: T0, quantumMs: 1000, disorder: 0.3, disorderMs: 8 * MIN, duplicates: 0.05 });
    const ref = new ReferenceStore(CONFIG);
    ref.ingest(events);
    const requests: BackfillRequest[] = Array.from({ length: 400 }, () => ({ at: T0 - Math.floor(rand() * 3.2 * DAY), key: `k${Math.floor(rand() * 16)}` }));
    requests.push({ at: T0 + DAY, key: 'k1' }); // so that the whole input is read
    const f = features('s');
    const result = await backfill({ events, requests, features: f, latenessMs: { s: 5 * MIN } });
    requests.forEach((r, i) => assert.deepStrictEqual(result.rows[i], pointInTime(ref, f, r), `request ${i}`));
    assert.ok(result.stats.late > 50 && result.stats.duplicates > 50, JSON.stringify(result.stats));
    assert.equal(result.stats.accepted, ref.accepted.length);
  });

  it('streams: a long input with short windows holds only a few hours of events', async () => {
    const rand = mulberry32(5);
    const events = randomEvents(rand, { stream: 's', keys: 50, events: 60_000, spanMs: 100 * DAY, end: T0, quantumMs: 1000 });
    const ref = new ReferenceStore({ s: { latenessMs: 0, retentionMs: HOUR } });
    ref.ingest(events);
    const requests: BackfillRequest[] = Array.from({ length: 300 }, () => ({ at: T0 - Math.floor(rand() * 101 * DAY), key: `k${Math.floor(rand() * 50)}` }));
    const f = features('s', [10 * MIN, HOUR]);
    const result = await backfill({ events, requests, features: f });
    requests.forEach((r, i) => assert.deepStrictEqual(result.rows[i], pointInTime(ref, f, r), `request ${i}`));
    assert.ok(result.stats.maxHeld < 6000, `held at most ${result.stats.maxHeld} of 60000 events`);
  });

  it('never evicts what the next unanswered row needs, across a long gap in the input', async () => {
    // 4095 events in one hour, then a day of silence: the event after the gap is the 4096th, which sweeps
    // memory while the row at the end of the busy hour is still unanswered.
    const events: StreamEvent[] = Array.from({ length: 4095 }, (_, i) => ({ stream: 's', key: 'k', id: `a${i}`, time: T0 + Math.floor((i * HOUR) / 4095), fields: { amount: 1 } }));
    events.push({ stream: 's', key: 'k', id: 'after-gap', time: T0 + DAY, fields: { amount: 1 } });
    const result = await backfill({ events, requests: [{ at: T0 + HOUR, key: 'k' }, { at: T0 + DAY, key: 'k' }], features: [{ name: 'n', stream: 's', fn: 'count', windowMs: 2 * HOUR }] });
    assert.deepEqual(result.rows, [{ n: 4095 }, { n: 1 }]);
  });

  it('reads async iterables, only as far as the last request needs, and closes them', async () => {
    let produced = 0;
    let closed = false;
    async function* gen(): AsyncGenerator<StreamEvent> {
      try {
        for (let i = 0; i < 1000; i++) {
          produced++;
          yield { stream: 's', key: 'k', id: `e${i}`, time: T0 + i * 1000, fields: { amount: i } };
        }
      } finally {
        closed = true;
      }
    }
    async function* reqs(): AsyncGenerator<BackfillRequest> {
      yield { at: T0 + 10_500, key: 'k' };
      yield { at: T0 + 5_000, key: 'k' };
    }
    const result = await backfill({ events: gen(), requests: reqs(), features: [{ name: 'sum', stream: 's', fn: 'sum', field: 'amount', windowMs: 3000 }] });
    assert.deepEqual(result.rows, [{ sum: 10 + 9 + 8 }, { sum: 5 + 4 + 3 }]);
    assert.equal(produced, 12, 'read up to the first event after the last request');
    assert.equal(closed, true);
    assert.equal(result.stats.events, 12);
  });

  it('keys: a missing key gives null, a number is a string; other streams are ignored; feature key fields', async () => {
    const events: StreamEvent[] = [
      { stream: 'tx', key: '42', id: 'a', time: T0, fields: { amount: 5 } },
      { stream: 'other', key: '42', id: 'b', time: T0, fields: {} },
      { stream: 'tx', key: 'c9', id: 'c', time: T0 + 1, fields: { amount: 7 } },
    ];
    const f: BackfillFeature[] = [
      { name: 'card_sum', stream: 'tx', fn: 'sum', field: 'amount', windowMs: HOUR, keyField: 'card' },
      { name: 'cust_count', stream: 'tx', fn: 'count', windowMs: HOUR, keyField: 'customer' },
    ];
    const result = await backfill({ events, requests: [{ at: T0 + 5, card: 42, customer: 'c9' }, { at: T0 + 5 }, { at: T0 - 1, card: '42' }], features: f });
    assert.deepEqual(result.rows, [{ card_sum: 5, cust_count: 1 }, { card_sum: null, cust_count: null }, { card_sum: 0, cust_count: null }]);
    assert.equal(result.stats.ignored, 1);
  });

  it('refuses unsorted input without lateness, input that breaks the lateness bound across streams, and bad options', async () => {
    const e = (stream: string, id: string, time: number): StreamEvent => ({ stream, key: 'k', id, time, fields: { amount: 1 } });
    const count = (stream: string): BackfillFeature => ({ name: `n_${stream}`, stream, fn: 'count', windowMs: HOUR });
    await assert.rejects(backfill({ events: [e('s', 'a', 10), e('s', 'b', 5)], requests: [{ at: 20, key: 'k' }], features: [count('s')] }), /not sorted by time.*"b" at 5 comes after one at 10/);
    // Equal times are fine; with lateness, out of order is judged as the real-time store would.
    const ok = await backfill({ events: [e('s', 'a', 10), e('s', 'b', 10), e('s', 'c', 5)], requests: [{ at: 20, key: 'k' }], features: [count('s')], latenessMs: { s: 5 } });
    assert.deepEqual(ok.rows, [{ n_s: 3 }]);
    // Stream u lags stream s by more than the lateness: its event would belong to a row already answered.
    await assert.rejects(
      backfill({ events: [e('s', 'a', 10), e('s', 'b', 100), e('u', 'c', 15)], requests: [{ at: 20, key: 'k' }, { at: 200, key: 'k' }], features: [count('s'), count('u')] }),
      /arrives after rows at 20 that need it were answered/,
    );
    await assert.rejects(backfill({ events: [], requests: [{ at: NaN }], features: [count('s')] }), /finite numeric at/);
    await assert.rejects(backfill({ events: [], requests: [], features: [count('s'), count('s')] }), /duplicate feature name/);
    await assert.rejects(backfill({ events: [], requests: [], features: [{ name: 'x', stream: 's', fn: 'sum', windowMs: HOUR }] }), /sum needs a field/);
    await assert.rejects(backfill({ events: [e('s', 'a', NaN)], requests: [{ at: 1 }], features: [count('s')] }), /event 0: .*time must be a finite number/);
  });
});
