/**
 * Window state for live monitoring: binning against the reference (golden: numpy.histogram
 * with the same edges on lending_club), merge = concatenation, count and time window
 * boundaries with a fake clock, and memory that stays flat however much traffic arrives.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import { featureSchema, type FeatureSpec } from '../src/bundle/manifest.ts';
import {
  categoryShares,
  CountWindow,
  EncodedObservation,
  FeatureHistogram,
  MonitorWindows,
  OTHER_KEY,
  ProfileHistogram,
  ProfileLayout,
  profileSpec,
  TimeWindow,
  type ColumnSpec,
  type ProfileSpec,
} from '../src/monitor/histogram.ts';
import type { ReferenceProfile } from '../src/monitor/reference.ts';
import { psi } from '../src/monitor/stats.ts';
import { loadGolden, loadLendingClub, nums, type Row } from './fixtures/monitor/data.ts';

const golden = loadGolden();

function relErr(a: number, b: number): number {
  return a === b ? 0 : Math.abs(a - b) / Math.abs(b);
}

const numericCol: ColumnSpec = { kind: 'numeric', name: 'x', edges: [0, 10, 20], min: 0, max: 25 };
const catCol: ColumnSpec = { kind: 'categorical', name: 'c', categories: ['a', 'b', 'true', '36'] };

describe('FeatureHistogram', () => {
  it('bins numbers with the reference convention: edges[i-1] <= x < edges[i], last bin x >= last edge', () => {
    const h = new FeatureHistogram(numericCol);
    for (const v of [-5, 0, 9.999, 10, 19, 20, 25, 1e9]) h.observe(v);
    assert.deepEqual([...h.counts], [1, 2, 2, 3]);
    assert.equal(h.n, 8);
    assert.equal(h.outOfRange, 2); // -5 < min, 1e9 > max; both still binned
    assert.equal(h.min, -5);
    assert.equal(h.max, 1e9);
  });

  it('counts missing (null, undefined, NaN) and type errors (strings, booleans, ±Infinity) apart from the bins', () => {
    const h = new FeatureHistogram(numericCol);
    for (const v of [null, undefined, NaN, '12', true, Infinity, -Infinity, { x: 1 }, 5]) h.observe(v);
    assert.equal(h.missing, 3);
    assert.equal(h.typeErrors, 5);
    assert.equal(h.n, 1);
    assert.equal(h.total, 9);
    assert.equal(h.unseen, 0);
  });

  it('one bin without edges; moments from shifted sums stay accurate far from zero', () => {
    const h = new FeatureHistogram({ kind: 'numeric', name: 'big', edges: [], shift: 1e9 });
    const xs = [1e9 + 1, 1e9 + 2, 1e9 + 3, 1e9 + 4];
    for (const x of xs) h.observe(x);
    assert.deepEqual([...h.counts], [4]);
    assert.equal(h.mean, 1e9 + 2.5);
    assert.equal(h.variance, 1.25); // unshifted Σx² would lose this entirely
    assert.equal(h.sum, 4e9 + 10);
    assert.ok(relErr(h.sumSquares, xs.reduce((s, x) => s + x * x, 0)) < 1e-15);
  });

  it('categorical: declared categories, booleans as true/false, numbers as text, unseen, missing, type errors', () => {
    const h = new FeatureHistogram(catCol);
    for (const v of ['a', 'b', 'b', true, false, 36, 'zz', null, undefined, { a: 1 }, NaN]) h.observe(v);
    assert.deepEqual([...h.counts], [1, 2, 1, 1]);
    assert.equal(h.unseen, 2); // false ('false' is not declared) and 'zz'
    assert.equal(h.missing, 3); // null, undefined, NaN
    assert.equal(h.typeErrors, 1);
    assert.equal(h.total, 11);
    assert.ok(Number.isNaN(h.mean));
    assert.deepEqual([...h.shares()], [0.2, 0.4, 0.2, 0.2]);
  });

  it('merge adds counts and keeps min/max; clone is independent; reset empties', () => {
    const a = new FeatureHistogram(numericCol);
    const b = new FeatureHistogram(numericCol);
    [1, 2, 30].forEach((v) => a.observe(v));
    [-1, 15, null].forEach((v) => b.observe(v));
    const c = a.clone().merge(b);
    assert.deepEqual([...c.counts], [1, 2, 1, 1]);
    assert.equal(c.min, -1);
    assert.equal(c.max, 30);
    assert.equal(c.missing, 1);
    assert.equal(a.n, 3, 'merge into a clone leaves the original alone');
    c.reset();
    assert.equal(c.total, 0);
    assert.equal(c.min, Infinity);
    assert.throws(() => a.merge(new FeatureHistogram({ ...numericCol, edges: [0, 10] })), RangeError);
    assert.throws(() => a.merge(new FeatureHistogram(catCol)), RangeError);
  });

  it('rejects edges that are not strictly increasing and duplicate categories', () => {
    assert.throws(() => new FeatureHistogram({ kind: 'numeric', name: 'x', edges: [1, 1] }), RangeError);
    assert.throws(() => new FeatureHistogram({ kind: 'numeric', name: 'x', edges: [NaN] }), RangeError);
    assert.throws(() => new FeatureHistogram({ kind: 'categorical', name: 'c', categories: ['a', 'a'] }), RangeError);
  });
});

describe('golden: lending_club binned as numpy.histogram with the same edges', () => {
  const lc = loadLendingClub();

  it('numeric columns: counts, n, sum, mean, variance, min, max, out of range', () => {
    for (const col of golden.histogram.numeric) {
      const column: ColumnSpec = { kind: 'numeric', name: col.column, edges: nums(col.edges), min: col.min ?? undefined, max: col.max ?? undefined, shift: 0 };
      for (const [sel, want] of Object.entries(col.selections) as [string, { counts: number[]; n: number; sum: number; mean: number; variance: number; min: number; max: number; outOfRange: number }][]) {
        const h: FeatureHistogram = new FeatureHistogram(column);
        for (const r of lc.select(sel as 'reference')) h.observe(r[col.column]);
        const where = `${col.column}/${sel}`;
        assert.deepEqual([...h.counts], want.counts, where);
        assert.equal(h.n, want.n, where);
        assert.ok(relErr(h.sum, want.sum) < 1e-12, `${where}: sum ${h.sum} vs ${want.sum}`);
        assert.ok(relErr(h.mean, want.mean) < 1e-12, `${where}: mean`);
        assert.ok(relErr(h.variance, want.variance) < 1e-9, `${where}: variance ${h.variance} vs ${want.variance}`);
        assert.equal(h.min, want.min, where);
        assert.equal(h.max, want.max, where);
        assert.equal(h.outOfRange, want.outOfRange, where);
      }
    }
  });

  it('categorical columns: counts per declared value and unseen', () => {
    for (const col of golden.histogram.categorical) {
      for (const [sel, want] of Object.entries(col.selections) as [string, { counts: number[]; unseen: number }][]) {
        const h = new FeatureHistogram({ kind: 'categorical', name: col.column, categories: col.values });
        for (const r of lc.select(sel as 'reference')) h.observe(r[col.column]);
        assert.deepEqual([...h.counts], want.counts, `${col.column}/${sel}`);
        assert.equal(h.unseen, want.unseen);
      }
    }
  });
});

// The credit bundle's features against a reference built from the golden edges.
const features: FeatureSpec[] = [
  ...golden.histogram.numeric.map((c: { column: string; min: number | null; max: number | null }) =>
    featureSchema.parse({ name: c.column, type: 'number', nullable: true, ...(c.min !== null ? { min: c.min } : {}), ...(c.max !== null ? { max: c.max } : {}) }),
  ),
  ...golden.histogram.categorical.map((c: { column: string; values: string[] }) => featureSchema.parse({ name: c.column, type: 'category', values: c.values, nullable: true })),
  featureSchema.parse({ name: 'owner', type: 'boolean', nullable: true }),
];
const reference = {
  features: Object.fromEntries([
    ...golden.histogram.numeric.map((c: { column: string; edges: unknown[] }) => [c.column, { kind: 'numeric', edges: nums(c.edges), mean: 1 }]),
    ...golden.histogram.categorical.map((c: { column: string }) => [c.column, { kind: 'categorical', frequencies: {} }]),
  ]),
  score: { kind: 'numeric', edges: [0.02, 0.05, 0.1], mean: 0.05 },
  decisions: { approve: 0.6, review: 0.3, decline: 0.1 },
} as unknown as ReferenceProfile;
const spec: ProfileSpec = profileSpec(features, reference, { score: { min: 0, max: 1 } });
const ACTIONS = ['approve', 'review', 'decline'];
const scoreOf = (i: number): number => (i % 101) / 500;

function observeAll(h: ProfileHistogram, rows: Row[], from = 0): void {
  rows.forEach((r, k) => {
    const i = from + k;
    h.observe({ ...r, owner: i % 3 === 0 }, scoreOf(i), ACTIONS[i % 3], i % 7 === 0 ? 'timeout' : null);
  });
}

describe('ProfileHistogram', () => {
  const lc = loadLendingClub();
  const layout = new ProfileLayout(spec);

  it('profileSpec: numeric features take the reference edges, schema bounds and mean as shift; booleans are false/true', () => {
    const income = spec.features.find((c) => c.name === 'annual_inc');
    assert.ok(income && income.kind === 'numeric');
    assert.deepEqual(income.edges, nums(golden.histogram.numeric.find((c: { column: string }) => c.column === 'annual_inc').edges));
    assert.equal(income.min, 0);
    assert.equal(income.shift, 1);
    assert.deepEqual(spec.features.at(-1), { kind: 'categorical', name: 'owner', categories: ['false', 'true'] });
    assert.deepEqual(spec.decisions?.categories, ACTIONS);
    assert.deepEqual(spec.score?.edges, [0.02, 0.05, 0.1]);
    const wrong = { ...reference, features: { ...reference.features, annual_inc: { kind: 'categorical', frequencies: {} } } } as unknown as ReferenceProfile;
    assert.throws(() => profileSpec(features, wrong), RangeError);
    const noRef = profileSpec(features, null);
    assert.equal(noRef.score, null);
    assert.equal(noRef.decisions, null);
    assert.deepEqual(noRef.features[0], { kind: 'numeric', name: 'funded_amnt', edges: [], min: 0, max: undefined, shift: 0 });
    assert.deepEqual([...categoryShares({ kind: 'categorical', name: 'c', categories: ['a', 'b', 'c'] }, { c: 0.25, a: 0.75 })], [0.75, 0, 0.25]);
  });

  it('merge(a, b) equals the histogram of the concatenated data', () => {
    const rows = lc.rows;
    const whole = new ProfileHistogram(layout);
    observeAll(whole, rows);
    const a = new ProfileHistogram(layout);
    const b = new ProfileHistogram(layout);
    observeAll(a, rows.slice(0, 4321));
    observeAll(b, rows.slice(4321), 4321);
    const merged = a.clone().merge(b);
    assert.equal(merged.observations, rows.length);
    // Every cell: counts exactly, sums up to the order of additions.
    for (let i = 0; i < layout.size; i++) assert.ok(relErr(merged.data[i], whole.data[i]) < 1e-12, `cell ${i}: ${merged.data[i]} vs ${whole.data[i]}`);
    for (const f of whole.features) assert.deepEqual([...merged.feature(f.name)!.counts], [...f.counts], f.name);
    assert.deepEqual([...merged.score!.counts], [...whole.score!.counts]);
    assert.deepEqual([...merged.decisions!.counts], [...whole.decisions!.counts]);
    assert.deepEqual([...merged.fallbacks], [...whole.fallbacks]);
    assert.equal(a.observations, 4321, 'merging into a clone leaves the original alone');
  });

  it('feeds the stats: PSI of a window against reference bin shares', () => {
    const ref = new ProfileHistogram(layout);
    observeAll(ref, lc.select('reference'));
    const recent = new ProfileHistogram(layout);
    observeAll(recent, lc.select('riskier'));
    const f = ref.feature('int_rate')!;
    assert.ok(psi(f.shares(), recent.feature('int_rate')!.counts) > 0.25);
  });

  it('score, decisions, fallbacks and counters; counter keys are capped', () => {
    const small = new ProfileLayout(spec, { maxCounterKeys: 3 });
    const h = new ProfileHistogram(small);
    h.observe({ annual_inc: 50000 }, 0.07, 'review', 'model_error');
    h.observe({ annual_inc: 'oops' }, null, 'hold', null);
    h.observe({}, NaN, null, 'timeout');
    assert.deepEqual([...h.score!.counts], [0, 0, 1, 0]);
    assert.equal(h.score!.missing, 2); // null and NaN
    assert.deepEqual([...h.decisions!.counts], [0, 1, 0]);
    assert.equal(h.decisions!.unseen, 1);
    assert.equal(h.decisions!.missing, 1);
    assert.equal(h.feature('annual_inc')!.typeErrors, 1);
    assert.equal(h.feature('annual_inc')!.missing, 1);
    assert.equal(h.feature('term')!.missing, 3);
    assert.deepEqual(Object.fromEntries(h.fallbacks), { model_error: 1, timeout: 1 });
    for (const k of ['rejected:a', 'rejected:b', 'rejected:c', 'rejected:d']) h.count(k);
    h.count('rejected:a', 2);
    // At most maxCounterKeys distinct keys, plus '(other)' for the rest.
    assert.deepEqual(Object.fromEntries(h.counters), { 'rejected:a': 3, 'rejected:b': 1, 'rejected:c': 1, [OTHER_KEY]: 1 });
    h.count('guard_failure');
    assert.equal(h.counters.size, 4);
    assert.equal(h.counters.get(OTHER_KEY), 2);
    h.reset();
    assert.equal(h.observations, 0);
    assert.equal(h.fallbacks.size, 0);
    assert.equal(h.counters.size, 0);
    // Over the cap, new keys go to (other).
    const big = new ProfileHistogram(new ProfileLayout(spec, { maxCounterKeys: 2 }));
    big.count('a');
    big.count('b');
    big.count('c');
    big.count('d');
    assert.deepEqual(Object.fromEntries(big.counters), { a: 1, b: 1, [OTHER_KEY]: 2 });
  });
});

describe('count window', () => {
  const xSpec: ProfileSpec = { features: [{ kind: 'numeric', name: 'x', edges: [5] }], score: null, decisions: null };
  const layout = new ProfileLayout(xSpec);

  it('covers the last N to N + N/B observations: B full blocks plus the one being filled', () => {
    const seen: number[] = [];
    const windows = new MonitorWindows(layout, { count: { size: 10, blocks: 5 }, time: [] }); // blocks of 2, 6 slots
    for (let i = 1; i <= 40; i++) {
      windows.observe({ x: i }, null, null, null, 0);
      const snap = windows.snapshot('count', 0);
      const x = snap.feature('x')!;
      const covered = snap.observations;
      seen.push(covered);
      assert.equal(x.max, i, 'the newest observation is always in');
      assert.equal(x.min, i - covered + 1, 'a contiguous run of the latest observations');
      if (i >= 10) assert.ok(covered >= 10 && covered <= 12, `at ${i}: ${covered}`);
      else assert.equal(covered, i);
    }
    assert.deepEqual(seen.slice(9, 16), [10, 11, 12, 11, 12, 11, 12]);
  });

  it('N not a multiple of B: blocks of ⌈N/B⌉', () => {
    const w = new MonitorWindows(layout, { count: { size: 10, blocks: 3 }, time: [] });
    assert.equal(w.countWindow!.blockSize, 4);
    for (let i = 1; i <= 100; i++) w.observe({ x: i }, null, null, null, 0);
    const n = w.snapshot('count', 0).observations;
    assert.ok(n >= 12 && n <= 16, `${n}`);
  });

  it('keeps exactly the last N raw values per numeric column, oldest first, skipping missing', () => {
    const w = new MonitorWindows(layout, { count: { size: 5, blocks: 5 }, time: [] });
    assert.deepEqual([...w.rawValues('x')!], []);
    w.observe({ x: 1 }, null, null, null, 0);
    w.observe({ x: 2 }, null, null, null, 0);
    assert.deepEqual([...w.rawValues('x')!], [1, 2]);
    for (let i = 3; i <= 8; i++) w.observe({ x: i === 6 ? null : i }, null, null, null, 0);
    assert.deepEqual([...w.rawValues('x')!], [4, 5, 7, 8]); // last 5 observations: 4 5 (6 missing) 7 8
    assert.equal(w.rawValues('nope'), null);
    assert.equal(w.rawScores(), null);
    const noRaw = new MonitorWindows(layout, { count: { size: 5, blocks: 5, keepRaw: false }, time: [] });
    noRaw.observe({ x: 1 }, null, null, null, 0);
    assert.equal(noRaw.rawValues('x'), null);
  });

  it('keeps the raw values sorted as they come and go, read at any interval, across resets', () => {
    const w = new MonitorWindows(layout, { count: { size: 50, blocks: 5 }, time: [] });
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const sortedCopy = () => [...w.rawValues('x')!].sort((a, b) => a - b);
    assert.deepEqual([...w.sortedRawValues('x')!], []);
    for (let i = 0; i < 3000; i++) {
      // Many ties (integers), some missing values, and reads every 1 to 60 observations.
      const r = rand();
      w.observe({ x: r < 0.1 ? null : r < 0.5 ? Math.floor(r * 10) : r * 30 }, null, null, null, 0);
      if (rand() < 1 / 30) assert.deepEqual([...w.sortedRawValues('x')!], sortedCopy(), `after observation ${i}`);
      if (i === 1500) w.reset();
    }
    assert.deepEqual([...w.sortedRawValues('x')!], sortedCopy());
    assert.equal(w.sortedRawValues('nope'), null);
    assert.equal(w.sortedRawScores(), null);
  });

  it('rejects bad sizes', () => {
    assert.throws(() => new CountWindow(layout, 0, 1), RangeError);
    assert.throws(() => new CountWindow(layout, 10, 11), RangeError);
    assert.throws(() => new CountWindow(layout, 10.5, 2), RangeError);
  });
});

describe('time windows', () => {
  const xSpec: ProfileSpec = { features: [{ kind: 'numeric', name: 'x', edges: [5] }], score: null, decisions: null };
  const layout = new ProfileLayout(xSpec);
  const enc = new EncodedObservation(layout);
  const at = (w: TimeWindow, x: number, now: number): void => w.apply(enc.encode({ x }, null, null, null), now);

  it('defaults: 5m, 1h, 1d as 60 buckets of 5 s, 1 min, 24 min', () => {
    const w = new MonitorWindows(layout);
    assert.deepEqual(w.windowNames, ['count', '5m', '1h', '1d']);
    assert.deepEqual(
      w.timeWindows.map((t) => [t.width, t.buckets.length]),
      [
        [5_000, 60],
        [60_000, 60],
        [1_440_000, 60],
      ],
    );
    assert.throws(() => w.snapshot('2h', 0), RangeError);
  });

  it('expires whole buckets as the clock moves: the window spans duration − width to duration', () => {
    const w = new TimeWindow(layout, '5m', 300_000);
    const t0 = 1_700_000_000_000; // a multiple of 5 s
    at(w, 1, t0);
    at(w, 2, t0 + 4_999); // same 5 s bucket
    at(w, 3, t0 + 5_000); // next bucket
    const n = (now: number) => w.snapshot(now).observations;
    assert.equal(n(t0 + 5_000), 3);
    assert.equal(n(t0 + 299_999), 3, 'still within the 60 buckets');
    assert.equal(n(t0 + 300_000), 1, 'first bucket expired as a whole, second still in');
    assert.equal(n(t0 + 305_000), 0);
    // A snapshot in the past does not include newer buckets.
    assert.equal(n(t0 + 4_000), 2);
    // The slot of the first bucket is reused (reset) when its period comes round again.
    at(w, 9, t0 + 300_000);
    const snap = w.snapshot(t0 + 300_000);
    assert.equal(snap.observations, 2);
    assert.equal(snap.feature('x')!.min, 3);
    assert.equal(snap.feature('x')!.max, 9);
  });

  it('late observations: kept while their bucket is in the window, dropped and counted after', () => {
    const w = new TimeWindow(layout, '5m', 300_000);
    at(w, 1, 1_000_000);
    at(w, 2, 1_000_000 - 60_000); // a minute late: its bucket is still in the window
    assert.equal(w.snapshot(1_000_000).observations, 2);
    at(w, 3, 1_000_000 - 400_000); // older than the window
    assert.equal(w.late, 1);
    assert.equal(w.snapshot(1_000_000).observations, 2);
    w.count('x', 1_000_000 - 400_000);
    assert.equal(w.late, 2);
  });

  it('1 h and 1 d windows keep their own bucket widths; counters follow the clock', () => {
    const w = new MonitorWindows(layout, { count: false });
    const t0 = 0;
    w.observe({ x: 1 }, null, null, null, t0);
    w.count('rejected:x', t0 + 1);
    w.observe({ x: 2 }, null, null, null, t0 + 10 * 60_000);
    w.observe({ x: 3 }, null, null, null, t0 + 2 * 3_600_000);
    const now = t0 + 2 * 3_600_000;
    assert.equal(w.snapshot('5m', now).observations, 1);
    assert.equal(w.snapshot('1h', now).observations, 1);
    assert.equal(w.snapshot('1d', now).observations, 3);
    assert.equal(w.snapshot('1d', now).counters.get('rejected:x'), 1);
    assert.equal(w.snapshot('1h', now).counters.size, 0);
    assert.equal(w.snapshot('1d', t0 + 24 * 3_600_000 + 1_440_000).observations, 1, 'the day window drops its oldest 24 min bucket');
  });
});

describe('memory', () => {
  it('stays flat over 1,000,000 observations: no internal array or map grows', (t) => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const lc = loadLendingClub();
    const w = new MonitorWindows(spec, { count: { size: 10_000, blocks: 10 }, maxCounterKeys: 64 });
    const sizes = (): number[] => {
      const out: number[] = [];
      const cw = w.countWindow!;
      out.push(cw.blocks.length, ...cw.blocks.map((b) => b.data.length), ...cw.raw.map((r) => r.length));
      for (const tw of w.timeWindows) out.push(tw.buckets.length, tw.periods.length, ...tw.buckets.map((b) => b.data.length));
      return out;
    };
    const maxKeys = (): number => {
      let m = 0;
      for (const tw of w.timeWindows) for (const b of tw.buckets) m = Math.max(m, b.fallbacks.size, b.counters.size);
      for (const b of w.countWindow!.blocks) m = Math.max(m, b.fallbacks.size, b.counters.size);
      return m;
    };
    const rows = lc.rows;
    const run = (from: number, n: number): void => {
      for (let i = from; i < from + n; i++) {
        // 100 ms apart: 1,000,000 decisions span ~28 h and roll every window over.
        w.observe(rows[i % rows.length], scoreOf(i), ACTIONS[i % 3], i % 5 === 0 ? `cause_${i % 1000}` : null, i * 100);
        if (i % 10 === 0) w.count(`rejected:field_${i % 997}`, i * 100);
      }
    };
    run(0, 100_000); // warm: every ring slot used, maps at their cap
    const lengths = sizes();
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    run(100_000, 1_000_000);
    gc();
    const heapAfter = process.memoryUsage().heapUsed;
    assert.deepEqual(sizes(), lengths);
    assert.ok(maxKeys() <= 64 + 1, 'maps capped at maxCounterKeys + (other)');
    assert.equal(w.snapshot('count', 0).observations, 10_000 + (1_100_000 % 1_000 || 1_000));
    const growth = heapAfter - heapBefore;
    t.diagnostic(`heap before ${(heapBefore / 1e6).toFixed(2)} MB, after 1,000,000 more observations ${(heapAfter / 1e6).toFixed(2)} MB (growth ${(growth / 1e6).toFixed(3)} MB)`);
    assert.ok(growth < 2e6, `heap grew by ${growth} bytes`);
  });
});
