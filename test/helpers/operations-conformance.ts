/**
 * The behaviour every OperationsStore must have (embedded, PostgreSQL): register it with
 *
 *   operationsConformance('postgres', { open: () => openPostgresOperationsStore({ url }), reopen });
 *
 * `open()` returns a store; several cases may share its data, so each case works on service
 * names of its own (`fresh()`). `reopen(store)` closes the store and opens a new one on the
 * same data (the restart case). Every case closes the stores it opened.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import type { OperationChange, OperationsStore } from '../../src/ops/types.ts';

export interface OperationsConformanceOptions {
  open(): Promise<OperationsStore>;
  reopen(store: OperationsStore): Promise<OperationsStore>;
}

/** A service name no other case uses. */
const fresh = (what: string) => `${what}-${randomUUID().slice(0, 8)}`;

async function using<T>(store: OperationsStore, body: (store: OperationsStore) => Promise<T>): Promise<T> {
  try {
    return await body(store);
  } finally {
    await store.close();
  }
}

export function operationsConformance(name: string, options: OperationsConformanceOptions): void {
  describe(`OperationsStore conformance: ${name}`, () => {
    it('a service never operated on has the defaults: kill switch off, safe mode auto, no acknowledgements, no load state', async () => {
      await using(await options.open(), async (store) => {
        const ops = store.current().service(fresh('never'));
        assert.deepEqual(ops.killSwitch, { enabled: false, reason: null, since: null, by: null });
        assert.deepEqual(ops.safeMode, { mode: 'auto', reason: null, since: null, by: null });
        assert.deepEqual(ops.acknowledgements, []);
        assert.equal(ops.load, null);
      });
    });

    it('a write is in the synchronous view when it resolves: kill switch on with reason, since and by; off clears reason and since', async () => {
      await using(await options.open(), async (store) => {
        const service = fresh('ks');
        const before = Date.now();
        const on = await store.setKillSwitch(service, { enabled: true, reason: 'incident 42', by: 'alice' });
        assert.equal(on.enabled, true);
        assert.equal(on.reason, 'incident 42');
        assert.equal(on.by, 'alice');
        assert.ok(on.since !== null && Date.parse(on.since) >= before - 1000, `since ${on.since}`);
        assert.deepEqual(store.current().service(service).killSwitch, on);
        const off = await store.setKillSwitch(service, { enabled: false, reason: 'ignored when off', by: 'bob' });
        assert.deepEqual(off, { enabled: false, reason: null, since: null, by: 'bob' });
        assert.deepEqual(store.current().service(service).killSwitch, off);
      });
    });

    it('safe-mode overrides on, off and auto; load states; each service on its own', async () => {
      await using(await options.open(), async (store) => {
        const [a, b] = [fresh('sm-a'), fresh('sm-b')];
        await store.setSafeMode(a, { mode: 'on', reason: 'drift drill', by: 'alice' });
        assert.equal(store.current().service(a).safeMode.mode, 'on');
        assert.equal(store.current().service(a).safeMode.reason, 'drift drill');
        assert.equal(store.current().service(b).safeMode.mode, 'auto', 'another service is untouched');
        await store.setSafeMode(a, { mode: 'off', reason: null, by: 'alice' });
        assert.equal(store.current().service(a).safeMode.mode, 'off');
        const auto = await store.setSafeMode(a, { mode: 'auto', reason: 'ignored for auto', by: 'carol' });
        assert.deepEqual({ mode: auto.mode, reason: auto.reason, by: auto.by }, { mode: 'auto', reason: null, by: 'carol' });
        await store.setLoaded(b, { loaded: false, by: 'ops' });
        assert.equal(store.current().service(b).load?.loaded, false);
        await store.setLoaded(b, { loaded: true, by: 'ops' });
        assert.equal(store.current().service(b).load?.loaded, true);
        assert.ok(store.current().services().includes(a) && store.current().services().includes(b));
      });
    });

    it('keeps acknowledgements per alert id, once each, in the order given', async () => {
      await using(await options.open(), async (store) => {
        const service = fresh('ack');
        await store.acknowledge(service, { alertId: 'a1', alertKey: 'feature_drift:x', by: 'alice', note: 'looking' });
        await store.acknowledge(service, { alertId: 'a2', alertKey: null, by: 'bob', note: '' });
        await store.acknowledge(service, { alertId: 'a1', alertKey: 'feature_drift:x', by: 'carol', note: 'again' });
        const acks = store.current().service(service).acknowledgements;
        assert.deepEqual(
          acks.map((a) => [a.alertId, a.alertKey, a.by, a.note]),
          [
            ['a1', 'feature_drift:x', 'alice', 'looking'],
            ['a2', null, 'bob', ''],
          ],
        );
      });
    });

    it('refuses a change it could not read back (an empty or over-long alert id), writes nothing, and still opens', async () => {
      const service = fresh('unreadable');
      let store = await options.open();
      try {
        await assert.rejects(store.acknowledge(service, { alertId: '', alertKey: null, by: 'alice', note: '' }), /could not read back \(alertId/);
        await assert.rejects(store.acknowledge(service, { alertId: 'x'.repeat(201), alertKey: null, by: 'alice', note: '' }), /could not read back \(alertId/);
        await assert.rejects(store.setKillSwitch(service, { enabled: true, reason: null, by: '' }), /could not read back \(by/);
        store = await options.reopen(store);
        assert.deepEqual(store.current().service(service).acknowledgements, []);
        assert.equal(store.current().service(service).killSwitch.enabled, false);
        assert.equal((await store.history(service)).length, 0);
      } finally {
        await store.close();
      }
    });

    it('tells subscribers of each change that took effect, its own writes marked local; unsubscribe stops it', async () => {
      await using(await options.open(), async (store) => {
        const service = fresh('sub');
        const heard: OperationChange[] = [];
        const unsubscribe = store.subscribe((c) => {
          if (c.service === service) heard.push(c);
        });
        await store.setKillSwitch(service, { enabled: true, reason: 'r', by: 'alice' });
        await store.acknowledge(service, { alertId: 'x', alertKey: null, by: 'alice', note: '' });
        assert.deepEqual(
          heard.map((c) => [c.kind, c.local]),
          [
            ['kill_switch', true],
            ['acknowledge', true],
          ],
        );
        unsubscribe();
        await store.setKillSwitch(service, { enabled: false, reason: null, by: 'alice' });
        assert.equal(heard.length, 2);
      });
    });

    it('keeps an audit trail per service, newest first: who, when, what, why', async () => {
      await using(await options.open(), async (store) => {
        const [service, other] = [fresh('audit'), fresh('audit-other')];
        await store.setKillSwitch(service, { enabled: true, reason: 'fraud spike', by: 'alice' });
        await store.setSafeMode(service, { mode: 'on', reason: 'drift', by: 'bob' });
        await store.acknowledge(service, { alertId: 'al-1', alertKey: null, by: 'carol', note: 'on it' });
        await store.setLoaded(service, { loaded: false, by: 'dave' });
        await store.setKillSwitch(other, { enabled: true, reason: 'elsewhere', by: 'eve' });
        const history = await store.history(service);
        assert.deepEqual(
          history.map((h) => [h.kind, h.by, h.reason]),
          [
            ['load', 'dave', null],
            ['acknowledge', 'carol', 'on it'],
            ['safe_mode', 'bob', 'drift'],
            ['kill_switch', 'alice', 'fraud spike'],
          ],
        );
        for (let i = 1; i < history.length; i++) assert.ok(history[i - 1].seq > history[i].seq, 'seq decreases down the trail');
        for (const h of history) assert.ok(Number.isFinite(Date.parse(h.at)), `at ${h.at}`);
        assert.deepEqual(history[3].value, store.current().service(service).killSwitch);
        assert.equal((await store.history(service, { limit: 2 })).length, 2);
      });
    });

    it('records a rollout (champion, challengers, budget) with who, when and why; it survives a reopen', async () => {
      const service = fresh('rollout');
      let store = await options.open();
      try {
        assert.equal(store.current().service(service).rollout, null, 'never rolled out');
        const canary = await store.setRollout(service, {
          champion: '1',
          previous: null,
          challengers: [
            { version: '2', mode: 'canary', share: 0.1, key: 'customer_id' },
            { version: '3', mode: 'shadow', share: 1, key: null },
          ],
          maxFlipRate: 0.15,
          reason: 'v2 canary at 10%',
          by: 'alice',
        });
        assert.equal(canary.by, 'alice');
        assert.ok(Number.isFinite(Date.parse(canary.since)));
        assert.deepEqual(store.current().service(service).rollout, canary);
        const promoted = await store.setRollout(service, { champion: '2', previous: '1', challengers: [], maxFlipRate: null, reason: 'gates passed', by: 'bob' });
        assert.deepEqual(store.current().service(service).rollout, promoted);
        store = await options.reopen(store);
        assert.deepEqual(store.current().service(service).rollout, promoted);
        const history = await store.history(service);
        assert.deepEqual(
          history.map((h) => [h.kind, h.by, h.reason]),
          [
            ['rollout', 'bob', 'gates passed'],
            ['rollout', 'alice', 'v2 canary at 10%'],
          ],
        );
        assert.deepEqual(history[1].value, canary);
      } finally {
        await store.close();
      }
    });

    it('survives a reopen: kill switch, override, acknowledgements, load state and the audit trail', async () => {
      const service = fresh('reopen');
      let store = await options.open();
      try {
        await store.setKillSwitch(service, { enabled: true, reason: 'kept', by: 'alice' });
        await store.setSafeMode(service, { mode: 'on', reason: 'kept too', by: 'bob' });
        await store.acknowledge(service, { alertId: 'kept-ack', alertKey: 'rule:x', by: 'carol', note: 'n' });
        await store.setLoaded(service, { loaded: false, by: 'dave' });
        const before = store.current().service(service);
        store = await options.reopen(store);
        const after = store.current().service(service);
        assert.deepEqual(after.killSwitch, before.killSwitch);
        assert.deepEqual(after.safeMode, before.safeMode);
        assert.deepEqual(after.acknowledgements, before.acknowledgements);
        assert.deepEqual(after.load, before.load);
        assert.equal((await store.history(service)).length, 4);
      } finally {
        await store.close();
      }
    });
  });
}
