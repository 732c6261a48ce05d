/**
 * The behaviour every DecisionLog must have (SQLite, PostgreSQL): register it for an adapter with
 *
 *   decisionLogConformance('postgres', async () => { const url = await freshDatabase(); return { open: () => openPostgresDecisionLog(url) }; });
 *
 * `newStore()` must return a NEW, EMPTY store; its `open()` opens a log on it, and may be
 * called again after that log is closed (the records must come back). Every case closes the
 * logs it opened. The contract is src/log/types.ts; adapter-specific behaviour (threads,
 * files, outages, schema migrations) is tested beside each adapter.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DecisionLogError, DuplicateDecisionError, type DecisionLog, type DecisionLogStats, type DecisionRecord } from '../../src/log/types.ts';

export interface ConformanceLogStore {
  open(): Promise<DecisionLog>;
}

const T0 = Date.parse('2026-03-01T12:00:00.000Z');
export const at = (offsetMs: number) => new Date(T0 + offsetMs).toISOString();

/** A valid record of service "credit" at T0, with `overrides`. */
export function record(id: string, overrides: Partial<DecisionRecord> = {}): DecisionRecord {
  return {
    id,
    time: at(0),
    service: 'credit',
    model: { name: 'credit', version: '3' },
    policyVersion: 'p-1',
    request: { applicant: id, amount: 1000 },
    inputs: [1, 2.5, 0],
    outputs: { p_bad: 0.25 },
    score: 0.25,
    decision: 'approve',
    reasons: [],
    fallback: { used: false, cause: null },
    timingsMs: { total: 1 },
    ...overrides,
  };
}

/** The store-neutral part of the stats (each adapter adds its own). */
export const counts = ({ appended, commits, pending }: DecisionLogStats) => ({ appended, commits, pending });

/** Settles every promise; returns each one's error or null. */
export async function outcomes(promises: Promise<unknown>[]): Promise<(unknown | null)[]> {
  return (await Promise.allSettled(promises)).map((o) => (o.status === 'fulfilled' ? null : o.reason));
}

export function decisionLogConformance(name: string, newStore: () => Promise<ConformanceLogStore>): void {
  describe(`decision log conformance: ${name}`, () => {
    it('round-trips a full record: NaN inputs become null, unicode and nested request JSON intact', async () => {
      const store = await newStore();
      const log = await store.open();
      const full = record('dé-🚀-1', {
        time: '2026-03-01T12:34:56.789Z',
        service: 'crédit',
        model: { name: 'xgb-crédit', version: '2026.03-β' },
        policyVersion: 'règles-7',
        request: {
          applicant: { name: 'Zoë Łukasiewicz 山田', tags: ['vip', null, true, 0, -1.5e-7], address: { lines: ['1 Rue de l’Église'], zip: null } },
          deep: [[[{ a: [1, { b: { c: 'ok 😀' } }] }]]],
          empty: {},
          emptyList: [],
          'key with "quotes" and \\ backslash': '\u0000 nul and \n newline',
        },
        inputs: [0.1, NaN, 3, -0, 1e300, Number.NaN, 5.960464477539063e-8],
        outputs: { p_bad: 0.8125, p_good: 0.1875, label: 'bad' },
        score: 0.8125,
        decision: 'décliner',
        reasons: [
          { code: 'score_high', message: 'score 0.81 ≥ 0.7' },
          { code: 'dti', message: 'dette/revenu élevé' },
        ],
        fallback: { used: true, cause: 'model_timeout' },
        safeMode: true,
        timingsMs: { validation: 0.012, features: 0.004, model: 0.21, policy: 0.003, log: 1.5, total: 1.73 },
      });
      const rulesOnly = record('rules-1', { model: null, policyVersion: null, inputs: null, outputs: null, score: null, request: null, safeMode: false });
      await Promise.all([log.append(full), log.append(rulesOnly)]);

      const got = await log.get('crédit', 'dé-🚀-1');
      assert.deepEqual(got, { ...full, inputs: [0.1, null, 3, 0, 1e300, null, 5.960464477539063e-8] });
      assert.ok(Object.is(got!.inputs![3], 0), 'JSON stores -0 as 0');
      assert.deepEqual(await log.get('credit', 'rules-1'), rulesOnly);
      // safeMode absent stays absent, rather than coming back as false or undefined.
      await log.append(record('plain'));
      assert.equal('safeMode' in (await log.get('credit', 'plain'))!, false);
      assert.equal(await log.get('credit', 'dé-🚀-1'), null, 'ids are per service');
      assert.equal(await log.get('crédit', 'nope'), null);
      await log.close();

      // Reopen: the same records come back from the file.
      const again = await store.open();
      assert.deepEqual(await again.get('crédit', 'dé-🚀-1'), got);
      assert.deepEqual(await again.get('credit', 'rules-1'), rulesOnly);
      assert.equal(await again.count(), 3);
      await again.close();
    });


    it("stores the request's own JSON text when the record carries it (requestText): it reads back as the request", async () => {
      const store = await newStore();
      const log = await store.open();
      // As a body arrives: spacing, escapes, duplicate keys (the last wins, as in JSON.parse), numbers written any way.
      const text = '{ "id": "raw-1",\n  "name": "Zo\\u00eb \\"Z\\" \\u0000 山田", "amount": 1.50, "big": 1E2, "dup": 1, "dup": 2,\t"nested": {"a": [1, null, true]} }  ';
      const request = JSON.parse(text) as Record<string, unknown>;
      const spliced = record('raw-1', { request, explanation: { model_decided: true, method: 'm', bias: -0.5, contributions: { a: 0.25 } }, features: { card: { status: 'present', value: 'c-1' } } });
      // Without a NUL (PostgreSQL takes those records apart another way), and a record without requestText beside them.
      const plain = record('plain-1', { request: { b: 2, c: 'é' } });
      const stringified = record('stringified-1', { request: { d: [1] } });
      await Promise.all([log.append({ ...spliced, requestText: text }), log.append({ ...plain, requestText: '{"b": 2.0, "c": "\\u00e9"}' }), log.append(stringified)]);
      const got = await log.get('credit', 'raw-1');
      assert.deepEqual(got, spliced);
      assert.ok(!('requestText' in got!));
      assert.deepEqual(await log.get('credit', 'plain-1'), plain);
      assert.deepEqual(await log.get('credit', 'stringified-1'), stringified);
      const [scanned] = (await log.scan('credit', {})).items.filter((r) => r.id === 'raw-1');
      assert.deepEqual(scanned.request, request);
      await log.close();
      const again = await store.open();
      assert.deepEqual(await again.get('credit', 'raw-1'), spliced);
      await again.close();
    });

    it('queries newest first, by service and time range, bounded by limit; counts per service', async () => {
      const log = await (await newStore()).open();
      const appends: Promise<void>[] = [];
      for (let i = 0; i < 30; i++) appends.push(log.append(record(`c-${i}`, { time: at(i * 1000) })));
      for (let i = 0; i < 5; i++) appends.push(log.append(record(`f-${i}`, { service: 'fraud', time: at(i * 1000 + 500) })));
      // Two records with the same time: append order breaks the tie (newest first).
      appends.push(log.append(record('tie-a', { service: 'ties', time: at(0) })), log.append(record('tie-b', { service: 'ties', time: at(0) })));
      await Promise.all(appends);

      assert.equal(await log.count(), 37);
      assert.equal(await log.count('credit'), 30);
      assert.equal(await log.count('fraud'), 5);
      assert.equal(await log.count('none'), 0);

      const ids = (rs: DecisionRecord[]) => rs.map((r) => r.id);
      assert.deepEqual(ids(await log.query({ service: 'credit', limit: 3 })), ['c-29', 'c-28', 'c-27']);
      assert.deepEqual(ids(await log.query({ limit: 4 })), ['c-29', 'c-28', 'c-27', 'c-26']);
      assert.deepEqual(ids(await log.query({ service: 'fraud' })), ['f-4', 'f-3', 'f-2', 'f-1', 'f-0']);
      assert.deepEqual(ids(await log.query({ service: 'ties' })), ['tie-b', 'tie-a']);
      // since is inclusive, until exclusive; bounds in any offset are compared as UTC instants.
      assert.deepEqual(ids(await log.query({ service: 'credit', since: at(10_000), until: at(13_000) })), ['c-12', 'c-11', 'c-10']);
      assert.deepEqual(ids(await log.query({ service: 'credit', since: '2026-03-01T13:00:28.000+01:00' })), ['c-29', 'c-28']);
      assert.deepEqual(ids(await log.query({ since: at(1_000), until: at(2_000) })), ['f-1', 'c-1']);
      assert.deepEqual(ids(await log.query({ service: 'credit', until: at(1_000) })), ['c-0']);
      assert.equal((await log.query({})).length, 37);
      assert.equal((await log.query({ limit: 0 })).length, 0);
      await assert.rejects(log.query({ limit: -1 }), /limit/);
      await assert.rejects(log.query({ since: 'yesterday-ish' }), /since/);
      await log.close();
    });


    it('rejects a duplicate id alone: the rest of its batch commits, the first record is kept', async () => {
      const log = await (await newStore()).open();
      await log.append(record('dup-old', { decision: 'first' }));
      const commits = log.stats.commits;

      const batch = [
        log.append(record('b-1')),
        log.append(record('dup-old', { decision: 'second' })), // duplicates a committed record
        log.append(record('b-2')),
        log.append(record('b-2', { decision: 'again' })), // duplicates one earlier in the same batch
        log.append(record('dup-old', { service: 'other' })), // same id, other service: fine
        log.append(record('b-3')),
      ];
      const errs = await outcomes(batch);
      assert.equal(log.stats.commits, commits + 1, 'one transaction for the whole batch');
      assert.deepEqual(errs.map((e) => e === null), [true, false, true, false, true, true]);
      for (const i of [1, 3]) {
        assert.ok(errs[i] instanceof DuplicateDecisionError);
        assert.equal((errs[i] as DuplicateDecisionError).code, 'DUPLICATE_DECISION');
        assert.match((errs[i] as Error).message, /service "credit" already has a decision with id "(dup-old|b-2)"/);
      }
      assert.equal((await log.get('credit', 'dup-old'))!.decision, 'first');
      assert.equal((await log.get('credit', 'b-2'))!.decision, 'approve');
      assert.equal(await log.count(), 5);
      assert.deepEqual(counts(log.stats), { appended: 5, commits: commits + 1, pending: 0 });
      await log.close();
    });


    it('rejects a malformed record alone, at append', async () => {
      const log = await (await newStore()).open();
      const circular: Record<string, unknown> = {};
      circular.self = circular;
      const errs = await outcomes([
        log.append(record('ok-1')),
        log.append(record('bad-time', { time: '2026-03-01 12:00:00' })),
        log.append(record('bad-time-2', { time: '2026-02-30T12:00:00.000Z' })),
        log.append(record('', {})),
        log.append(record('bad-json', { request: circular })),
        log.append(record('ok-2')),
        log.append({ ...record('bad-request-text'), requestText: '[1]' }),
      ]);
      assert.deepEqual(errs.map((e) => e === null), [true, false, false, false, false, true, false]);
      for (const e of errs.filter(Boolean)) assert.equal((e as DecisionLogError).code, 'INVALID_DECISION');
      assert.match((errs[1] as Error).message, /time must be ISO 8601 UTC with milliseconds/);
      assert.match((errs[4] as Error).message, /request is not serializable as JSON/);
      assert.match((errs[6] as Error).message, /requestText must be the JSON text of an object/);
      assert.equal(await log.count(), 2);
      await log.close();
    });


    it('close flushes pending appends; the log then refuses work; reopening reads everything back', async () => {
      const store = await newStore();
      const log = await store.open();
      const written = Array.from({ length: 300 }, (_, i) => record(`p-${i}`, { time: at(i) }));
      const appends = written.map((r) => log.append(r));
      assert.equal(log.stats.pending, 300, 'none is settled before its commit');
      const closing = log.close();
      assert.equal(log.close(), closing, 'close is idempotent');
      await closing;
      await Promise.all(appends);
      await assert.rejects(log.append(record('late')), (e: DecisionLogError) => e.code === 'LOG_CLOSED');
      await assert.rejects(log.count(), /closed/);

      const again = await store.open();
      assert.equal(await again.count(), 300);
      assert.deepEqual(await again.query({ limit: 1000 }), written.slice().reverse());
      await again.close();
    });


    it('reads see appends not yet committed (reads wait for pending appends)', async () => {
      const log = await (await newStore()).open();
      const pending = log.append(record('early'));
      assert.equal(log.stats.pending, 1);
      assert.equal(await log.count(), 1);
      await pending;
      await log.close();
    });


    it('joins outcomes to logged decisions, replaces corrected ones, and streams them in recording order', async () => {
      const log = await (await newStore()).open();
      for (let i = 0; i < 5; i++) void log.append(record(`o-${i}`, { time: at(i * 1000), score: i / 10 }));
      const first = await log.recordOutcomes('credit', [
        { id: 'o-1', label: 'good' },
        { id: 'o-3', label: 'bad', time: at(86_400_000) },
        { id: 'nope', label: 'bad' },
      ]);
      assert.deepEqual(first, { joined: 2, unknown: ['nope'] });
      const stream = await log.outcomesAfter(0);
      assert.deepEqual(stream.items.map((o) => [o.id, o.label, o.score]), [['o-1', 'good', 0.1], ['o-3', 'bad', 0.3]]);
      assert.equal(stream.items[1].outcomeTime, at(86_400_000));
      assert.equal(stream.items[1].time, at(3000));
      // A correction comes through the stream again; older cursors do not repeat the rest.
      await log.recordOutcomes('credit', [{ id: 'o-1', label: 'bad' }]);
      const next = await log.outcomesAfter(stream.cursor);
      assert.deepEqual(next.items.map((o) => [o.id, o.label]), [['o-1', 'bad']]);
      const window = await log.labelled('credit', { since: at(0), until: at(2500) });
      assert.equal(window.decisions, 3);
      assert.deepEqual(window.items.map((o) => [o.id, o.label]), [['o-1', 'bad']]);
      await assert.rejects(log.recordOutcomes('credit', [{ id: 'o-2', label: 'bad', time: 'yesterday' }]), /time as YYYY/);
      await log.close();
    });

    it('scans one service page by page in time then append order, with outcomes, within a time range', async () => {
      const store = await newStore();
      const log = await store.open();
      // 25 records of credit, two per millisecond (ties broken by append order), appended out of
      // time order in two halves; one of another service in between.
      const ids = Array.from({ length: 25 }, (_, i) => `s-${String(i).padStart(2, '0')}`);
      const timeOf = (i: number) => at(Math.floor(i / 2));
      await Promise.all(ids.slice(12).map((id, k) => log.append(record(id, { time: timeOf(12 + k) }))));
      await log.append(record('other-1', { service: 'fraud', time: at(3) }));
      await Promise.all(ids.slice(0, 12).map((id, i) => log.append(record(id, { time: timeOf(i) }))));
      await log.recordOutcomes('credit', [{ id: 's-03', label: 'bad', time: at(100) }, { id: 's-20', label: 'good', time: at(101) }]);

      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      for (;;) {
        const page = await log.scan('credit', { after: cursor, limit: 7 });
        if (page.items.length === 0) {
          assert.equal(page.cursor, cursor, 'an empty page keeps the cursor');
          break;
        }
        pages++;
        assert.ok(page.items.length <= 7);
        seen.push(...page.items.map((r) => r.id));
        for (const r of page.items) {
          if (r.id === 's-03') assert.deepEqual(r.outcome, { label: 'bad', time: at(100) });
          else if (r.id === 's-20') assert.deepEqual(r.outcome, { label: 'good', time: at(101) });
          else assert.equal(r.outcome, undefined);
        }
        cursor = page.cursor;
      }
      // Same-time records come in append order: within each millisecond, the first half's pair was appended second.
      const expected = [...ids].sort((a, b) => timeOf(ids.indexOf(a)).localeCompare(timeOf(ids.indexOf(b))) || (ids.indexOf(a) >= 12 ? 0 : 1) - (ids.indexOf(b) >= 12 ? 0 : 1) || a.localeCompare(b));
      assert.deepEqual(seen, expected);
      assert.equal(pages, 4);
      const full = (await log.scan('credit', { limit: 1 })).items[0];
      assert.deepEqual({ ...full, outcome: undefined }, { ...(await log.get('credit', full.id))!, outcome: undefined }, 'a scanned record is the record get returns');

      const ranged = await log.scan('credit', { since: at(2), until: at(5) });
      assert.deepEqual(
        ranged.items.map((r) => r.id),
        ['s-04', 's-05', 's-06', 's-07', 's-08', 's-09'],
      );
      assert.deepEqual((await log.scan('nobody', {})).items, []);
      await assert.rejects(log.scan('credit', { after: 'not a cursor' }), /scan cursor/);
      await assert.rejects(log.scan('credit', { limit: 0 }), /positive integer/);
      await log.close();
    });
  });
}
