/**
 * Live rollouts on a real `rtml serve`: the credit example as version 1 (champion) and its
 * retrained candidate (examples/candidates/credit/v2) as version 2, the broken v3 as 3.
 * A shadow never changes a response; a canary decides for its share of keys, sticky per key;
 * promotion runs the candidate's gates and is refused when they fail; promotion, rollback and
 * an automatic rollback under concurrent traffic fail no request; all of it is recorded.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { canaryBucket } from '../src/rollout/live.ts';
import { lendingClubExamples, startServer, type RunningServer } from './helpers/server.ts';
import { tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const ADMIN_TOKEN = 'rollout-admin-token-0123456789';
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
const SOURCES: Record<string, string> = { '1': 'examples/credit', '2': 'examples/candidates/credit/v2', '3': 'examples/candidates/credit/v3' };

/** A repository holding the given versions of credit, one folder each. */
function repositoryWith(...versions: string[]): string {
  const repo = tempDir('rtml-rollout-repo-');
  for (const v of versions) addVersion(repo, v);
  return repo;
}

/** Version `as` of credit: a copy of version `from` whose rtml.yaml says `as` (a challenger with the champion's model and reference profile, so monitored). */
function addCopy(repo: string, from: string, as: string): void {
  const dir = join(repo, 'credit', as);
  cpSync(join(ROOT, SOURCES[from]), dir, { recursive: true, filter: (src) => !/\.(csv|py)$/.test(src) });
  const manifest = join(dir, 'rtml.yaml');
  writeFileSync(manifest, readFileSync(manifest, 'utf8').replace(/^version: .*$/m, `version: "${as}"`));
}

function addVersion(repo: string, version: string): void {
  const dir = join(repo, 'credit', version);
  mkdirSync(dir, { recursive: true });
  for (const file of ['rtml.yaml', 'model.json', 'golden.jsonl', 'policy.yaml', 'reference.json']) {
    try {
      cpSync(join(ROOT, SOURCES[version], file), join(dir, file));
    } catch {
      // The candidates have no reference profile: no monitor for them.
    }
  }
}

const start = (repository: string, dataDir?: string) => startServer({ repository, ...(dataDir ? { dataDir } : {}), env: { RTML_ADMIN_TOKEN: ADMIN_TOKEN } });

async function call(server: RunningServer, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(server.url + path, { method, headers: { ...admin, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

async function decide(server: RunningServer, body: Record<string, unknown>): Promise<{ status: number; text: string; json: any }> {
  const res = await server.post('/v1/services/credit/decisions', body);
  const text = await res.text();
  return { status: res.status, text, json: JSON.parse(text) };
}

/** A response without what differs from one call to the next whatever decided: its id and timings. */
function comparable(text: string): string {
  const { id: _id, timings_ms: _t, ...rest } = JSON.parse(text);
  return JSON.stringify(rest);
}

/** Waits until `check` holds (polling), or fails with what it last saw. */
async function eventually<T>(what: string, read: () => Promise<T>, check: (v: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: T = await read();
  while (!check(last)) {
    if (Date.now() > until) assert.fail(`${what}: still ${JSON.stringify(last).slice(0, 800)}`);
    await new Promise((r) => setTimeout(r, 100));
    last = await read();
  }
  return last;
}

/** Concurrent traffic until stopped: every answer's status and deciding version. */
function traffic(server: RunningServer, rows: Record<string, unknown>[], connections = 6) {
  let running = true;
  const answers: { status: number; version: string | null; at: number }[] = [];
  const loops = Array.from({ length: connections }, async (_, c) => {
    for (let i = c; running; i += connections) {
      const res = await server.post('/v1/services/credit/decisions', rows[i % rows.length]);
      const json = (await res.json()) as { model?: { version: string } };
      answers.push({ status: res.status, version: json.model?.version ?? null, at: Date.now() });
    }
  });
  return {
    answers,
    async stop() {
      running = false;
      await Promise.all(loops);
      return answers;
    },
  };
}

describe('canary split', () => {
  it('is a stable hash: the same key always falls in the same place, and 10% of 100,000 keys fall below 0.1 (within 0.5 pp)', () => {
    let below = 0;
    for (let i = 0; i < 100_000; i++) if (canaryBucket('credit', `customer-${i}`) < 0.1) below++;
    assert.ok(Math.abs(below / 100_000 - 0.1) < 0.005, `${below} of 100,000`);
    assert.equal(canaryBucket('credit', 'customer-7'), canaryBucket('credit', 'customer-7'));
    assert.notEqual(canaryBucket('credit', 'customer-7'), canaryBucket('fraud', 'customer-7'), 'each service splits its keys its own way');
  });
});

describe('live rollout on a real server', { timeout: 600_000 }, () => {
  let rows: Record<string, unknown>[];
  let labels: string[];
  before(async () => {
    const examples = await lendingClubExamples(400);
    rows = examples.map((e) => e.features);
    labels = examples.map((e) => e.label);
  });

  it('a shadow never changes a response: byte-identical with and without it (id and timings aside); its decisions are compared live and logged linked to the champion', async () => {
    const repo = repositoryWith('1');
    const server = await start(repo);
    try {
      const sample = rows.slice(0, 300);
      const without: string[] = [];
      for (const [i, row] of sample.entries()) {
        const r = await decide(server, { ...row, id: `plain-${i}` });
        assert.equal(r.status, 200, r.text);
        without.push(comparable(r.text));
      }
      // Pin the champion before a new version arrives: it loads, and does not swap in.
      const pinned = await call(server, 'PUT', '/v1/services/credit/rollout', { challengers: [], reason: 'v2 arrives next', by: 'alice' });
      assert.equal(pinned.status, 200, JSON.stringify(pinned.json));
      assert.equal(pinned.json.rollout.champion, '1');
      addVersion(repo, '2');
      assert.equal((await call(server, 'POST', '/v2/repository/models/credit/load', {})).status, 200);
      assert.equal((await decide(server, rows[0])).json.model.version, '1', 'the pinned champion still decides after version 2 loaded');

      const shadow = await call(server, 'PUT', '/v1/services/credit/rollout', { challengers: [{ version: '2', mode: 'shadow', share: 1 }], reason: 'measure v2 on live traffic', by: 'alice' });
      assert.equal(shadow.status, 200, JSON.stringify(shadow.json));
      const withShadow: string[] = [];
      for (const [i, row] of sample.entries()) {
        const r = await decide(server, { ...row, id: `shadowed-${i}` });
        assert.equal(r.status, 200, r.text);
        withShadow.push(comparable(r.text));
      }
      assert.deepEqual(withShadow, without);

      const report = await eventually('the shadow compared and logged every decision', () => call(server, 'GET', '/v1/services/credit/rollout').then((r) => r.json), (j) => j.challengers[0]?.compared === 300 && j.challengers[0]?.logged === 300);
      assert.equal(report.champion, '1');
      const live = report.challengers[0];
      assert.equal(live.version, '2');
      assert.equal(live.mode, 'shadow');
      assert.equal(live.errors, 0);
      const c = live.comparison;
      assert.equal(c.decisions, 300);
      const matrixTotal = c.matrix.counts.flat().reduce((a: number, b: number) => a + b, 0);
      assert.equal(matrixTotal, 300);
      const diagonal = c.matrix.counts.reduce((a: number, row: number[], i: number) => a + row[i], 0);
      assert.equal(c.flips, 300 - diagonal);
      assert.ok(c.flips > 0 && c.flipRate < 0.2, `v2 flips some decisions, not most: ${c.flips}`);
      assert.equal(c.scoreDifference.n, 300);
      assert.ok(c.scoreDifference.meanAbsolute > 0);
      assert.equal(c.latencyMs.n, 300);

      // The shadow's own decision, in the log under credit~shadow, linked by the champion's id; agreeing with the comparison.
      const champ = await call(server, 'GET', '/v1/services/credit/decisions/shadowed-0');
      const shadowed = await call(server, 'GET', '/v1/services/credit~shadow/decisions/shadowed-0~2');
      assert.equal(shadowed.status, 200, JSON.stringify(shadowed.json));
      assert.equal(shadowed.json.model.version, '2');
      assert.equal(champ.json.model.version, '1');
      assert.deepEqual(shadowed.json.request, champ.json.request);
      assert.notEqual(shadowed.json.score, champ.json.score);

      // Outcomes arriving later join the live comparison: both models' AUC on the same decisions.
      const outcomes = await server.write('/v1/services/credit/outcomes', sample.map((_, i) => ({ id: `shadowed-${i}`, label: labels[i] })));
      assert.equal(outcomes.status, 200, await outcomes.clone().text());
      const judged = await eventually('the outcomes joined the comparison', () => call(server, 'GET', '/v1/services/credit/rollout').then((r) => r.json.challengers[0].comparison.outcomes), (o) => o?.labelled === 300);
      assert.equal(judged.positives, labels.slice(0, 300).filter((l) => l === 'bad').length);
      assert.ok(judged.champion.auc > 0.55 && judged.candidate.auc > 0.55, `AUC ${judged.champion.auc} / ${judged.candidate.auc}`);
      assert.notEqual(judged.champion.auc, judged.candidate.auc);
      assert.ok(judged.aucDifference !== null);

      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      assert.match(metrics, /rtml_rollout_compared_total\{service="credit",version="2",mode="shadow"\} 300/);
      assert.match(metrics, /rtml_rollout_flip_rate\{service="credit",version="2",mode="shadow"\} 0\.\d+/);
    } finally {
      await server.stop();
    }
  });

  it('a canary at 10% decides for 10% ± 1 pp of 10,000 decisions, sticky per key; the response and the log say which version decided', async () => {
    const server = await start(repositoryWith('1', '2'));
    try {
      // Without a rollout the highest version decides, as before rollouts existed.
      assert.equal((await decide(server, rows[0])).json.model.version, '2');
      await call(server, 'POST', '/v1/services/credit/rollout/promote', { version: '1', reason: 'back to 1 for the canary', by: 'alice' }).then((r) => assert.equal(r.status, 200, JSON.stringify(r.json)));
      const set = await call(server, 'PUT', '/v1/services/credit/rollout', { challengers: [{ version: '2', mode: 'canary', share: 0.1, key: 'customer_id' }], max_flip_rate: null, reason: 'v2 at 10%', by: 'alice' });
      assert.equal(set.status, 200, JSON.stringify(set.json));

      const versionOf = new Map<string, string>();
      const N = 10_000;
      let next = 0;
      const loops = Array.from({ length: 8 }, async () => {
        while (next < N) {
          const i = next++;
          const customer = `customer-${i}`;
          const r = await decide(server, { ...rows[i % rows.length], customer_id: customer, id: `canary-${i}` });
          assert.equal(r.status, 200, r.text);
          assert.equal(r.json.warnings, undefined, 'the canary key is not reported as an unknown field');
          versionOf.set(customer, r.json.model.version);
        }
      });
      await Promise.all(loops);
      const canary = [...versionOf.values()].filter((v) => v === '2').length;
      assert.ok(Math.abs(canary / N - 0.1) <= 0.01, `${canary} of ${N} decided by the canary`);
      for (const [customer, version] of versionOf) assert.equal(version, canaryBucket('credit', customer) < 0.1 ? '2' : '1');

      // Sticky: the same customers again, other loans, meet the same version.
      for (let i = 0; i < 500; i++) {
        const r = await decide(server, { ...rows[(i + 17) % rows.length], customer_id: `customer-${i}` });
        assert.equal(r.json.model.version, versionOf.get(`customer-${i}`), `customer-${i}`);
      }
      // The log says which version decided, and keeps the key.
      const inCanary = [...versionOf.keys()].find((k) => versionOf.get(k) === '2')!;
      const logged = await call(server, 'GET', `/v1/services/credit/decisions/canary-${inCanary.slice('customer-'.length)}`);
      assert.equal(logged.json.model.version, '2');
      assert.equal(logged.json.request.customer_id, inCanary);

      const report = await eventually('the canary compared against the champion', () => call(server, 'GET', '/v1/services/credit/rollout').then((r) => r.json), (j) => j.challengers[0]?.compared >= canary);
      assert.equal(report.challengers[0].mode, 'canary');
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      assert.match(metrics, /rtml_decisions_total\{service="credit",version="2",/);
    } finally {
      await server.stop();
    }
  });

  it('promotion runs the gates (refused for the broken v3), promotion and rollback under load fail no request, the rollout survives a restart, and every change is recorded', async () => {
    const repo = repositoryWith('1', '2');
    const dataDir = tempDir('rtml-rollout-data-');
    let server = await start(repo, dataDir);
    try {
      await call(server, 'POST', '/v1/services/credit/rollout/promote', { version: '1', by: 'alice', reason: 'start from v1' }).then((r) => assert.equal(r.status, 200, JSON.stringify(r.json)));
      addVersion(repo, '3');
      assert.equal((await call(server, 'POST', '/v2/repository/models/credit/load', {})).status, 200);
      assert.equal((await decide(server, rows[0])).json.model.version, '1', 'v3 loaded, v1 still decides');

      const load = traffic(server, rows);
      const refused = await call(server, 'POST', '/v1/services/credit/rollout/promote', { version: '3', by: 'bob', reason: 'try v3' });
      assert.equal(refused.status, 409, JSON.stringify(refused.json));
      assert.match(refused.json.error, /gates failed/);
      assert.ok(refused.json.gates.some((g: { status: string; name: string }) => g.status === 'failed' && /prime borrower/.test(g.name)), JSON.stringify(refused.json.gates));

      await call(server, 'PUT', '/v1/services/credit/rollout', { challengers: [{ version: '2', mode: 'canary', share: 0.5, key: 'addr_state' }], max_flip_rate: 0.5, reason: 'v2 at half', by: 'alice' }).then((r) => assert.equal(r.status, 200, JSON.stringify(r.json)));
      await new Promise((r) => setTimeout(r, 500));
      const promoted = await call(server, 'POST', '/v1/services/credit/rollout/promote', { version: '2', by: 'carol', reason: 'v2 measured' });
      assert.equal(promoted.status, 200, JSON.stringify(promoted.json));
      assert.equal(promoted.json.champion, '2');
      assert.ok(promoted.json.gates.length > 0 && promoted.json.gates.every((g: { status: string }) => g.status !== 'failed'));
      const promotedAt = Date.now();
      await new Promise((r) => setTimeout(r, 500));
      const rolledBack = await call(server, 'POST', '/v1/services/credit/rollout/rollback', { by: 'dave', reason: 'bad rate up' });
      assert.equal(rolledBack.status, 200, JSON.stringify(rolledBack.json));
      assert.equal(rolledBack.json.rolled_back, 'promotion');
      assert.equal(rolledBack.json.champion, '1');
      const rolledBackAt = Date.now();
      await new Promise((r) => setTimeout(r, 300));
      const answers = await load.stop();
      const failed = answers.filter((a) => a.status !== 200);
      assert.deepEqual(failed, [], `${failed.length} of ${answers.length} requests failed`);
      assert.ok(answers.length > 100, `${answers.length} requests`);
      assert.ok(answers.some((a) => a.at > promotedAt + 50 && a.at < rolledBackAt - 50 && a.version === '2'), 'v2 decided after its promotion');
      assert.ok(answers.filter((a) => a.at > rolledBackAt + 50).every((a) => a.version === '1'), 'v1 decides again after the rollback');

      const history = (await call(server, 'GET', '/v1/services/credit/operations')).json.history.filter((h: { kind: string }) => h.kind === 'rollout');
      assert.deepEqual(
        history.slice(0, 4).map((h: { by: string; value: { champion: string } }) => [h.by, h.value.champion]),
        [
          ['dave', '1'],
          ['carol', '2'],
          ['alice', '1'],
          ['alice', '1'],
        ],
      );
      assert.match(history[1].reason, /v2 measured \(gates passed: \d+ passed, 0 failed\)/);

      // A shadow then a restart: the champion and the challenger are still there.
      await call(server, 'PUT', '/v1/services/credit/rollout', { challengers: [{ version: '2', mode: 'shadow', share: 0.5 }], reason: 'again', by: 'erin' }).then((r) => assert.equal(r.status, 200));
      await server.stop();
      server = await start(repo, dataDir);
      const after = (await call(server, 'GET', '/v1/services/credit/rollout')).json;
      assert.equal(after.champion, '1');
      assert.deepEqual(after.rollout.challengers, [{ version: '2', mode: 'shadow', share: 0.5, key: null }]);
      assert.equal((await decide(server, rows[0])).json.model.version, '1');
    } finally {
      await server.stop();
    }
  });

  it('refuses a bad rollout with 400 naming the field and the rule, and admin operations without the admin token with 401', async () => {
    const server = await start(repositoryWith('1', '2'));
    try {
      const put = (body: unknown) => call(server, 'PUT', '/v1/services/credit/rollout', body);
      const cases: [unknown, string, string][] = [
        [{ challengers: [{ version: '2', mode: 'shadow', share: 2 }] }, 'challengers.0.share', 'too_big'],
        [{ challengers: [{ version: '2', mode: 'shadow', share: 0 }] }, 'challengers.0.share', 'too_small'],
        [{ challengers: [{ version: '2', mode: 'mirror', share: 0.5 }] }, 'challengers.0.mode', 'invalid_value'],
        [{ challengers: [{ version: '2', mode: 'canary', share: 0.5 }] }, 'challengers.0.key', 'required'],
        [{ challengers: [{ version: '2', mode: 'canary', share: 0.5, key: 'a b' }] }, 'challengers.0.key', 'format'],
        [{ challengers: [{ version: '2', mode: 'shadow', share: 0.5, key: 'customer_id' }] }, 'challengers.0.key', 'shadow'],
        [{ challengers: [{ version: '9', mode: 'shadow', share: 0.5 }] }, 'challengers.0.version', 'loaded'],
        [{ challengers: [{ version: '2', mode: 'shadow', share: 0.5 }, { version: '2', mode: 'shadow', share: 0.1 }] }, 'challengers.1.version', 'unique'],
        [{ challengers: Array.from({ length: 5 }, () => ({ version: '2', mode: 'shadow', share: 0.5 })) }, 'challengers', 'too_big'],
        [{ challengers: [], max_flip_rate: -1 }, 'max_flip_rate', 'too_small'],
        [{ challengers: [], extra: 1 }, 'body', 'unrecognized_keys'],
        [{}, 'challengers', 'invalid_type'],
      ];
      for (const [body, field, rule] of cases) {
        const r = await put(body);
        assert.equal(r.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(r.json)}`);
        assert.ok(r.json.errors.some((e: { field: string; rule: string }) => e.field === field && e.rule === rule), `${JSON.stringify(body)}: expected ${field}/${rule}, got ${JSON.stringify(r.json.errors)}`);
      }
      // Version 2 is the champion here (the highest, no rollout): it cannot challenge itself.
      const self = await put({ challengers: [{ version: '2', mode: 'shadow', share: 0.5 }] });
      assert.equal(self.status, 400);
      assert.equal(self.json.errors[0].rule, 'champion');
      const unknown = await call(server, 'POST', '/v1/services/credit/rollout/promote', { version: '9' });
      assert.equal(unknown.status, 400);
      assert.equal(unknown.json.errors[0].field, 'version');
      assert.equal((await call(server, 'POST', '/v1/services/credit/rollout/rollback', {})).status, 409, 'nothing to roll back');
      assert.equal((await call(server, 'GET', '/v1/services/nope/rollout')).status, 404);
      const anonymous = await fetch(`${server.url}/v1/services/credit/rollout/promote`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ version: '1' }) });
      assert.equal(anonymous.status, 401);
      assert.equal((await call(server, 'GET', '/v1/services/credit/operations')).json.history.length, 0, 'nothing refused was recorded');
    } finally {
      await server.stop();
    }
  });

  it('a canary whose monitors raise a critical alert rolls back by itself, failing no request', async () => {
    const repo = repositoryWith('1');
    const server = await start(repo);
    try {
      await call(server, 'PUT', '/v1/services/credit/rollout', { challengers: [], by: 'alice', reason: 'pin 1' }).then((r) => assert.equal(r.status, 200));
      addCopy(repo, '1', '2');
      assert.equal((await call(server, 'POST', '/v2/repository/models/credit/load', {})).status, 200);
      // Version 2 decides exactly as 1 (no flips), on every key; then emp_length goes missing in every request.
      const set = await call(server, 'PUT', '/v1/services/credit/rollout', { challengers: [{ version: '2', mode: 'canary', share: 1, key: 'addr_state' }], max_flip_rate: 0.05, reason: 'a monitored canary', by: 'alice' });
      assert.equal(set.status, 200, JSON.stringify(set.json));
      const statuses: number[] = [];
      let state: any = null;
      for (let i = 0; i < 6000 && state === null; i++) {
        const row = i < 300 ? rows[i % rows.length] : { ...rows[i % rows.length], emp_length: null };
        const r = await server.post('/v1/services/credit/decisions', row);
        statuses.push(r.status);
        await r.arrayBuffer();
        if (i % 100 === 99) {
          const now = (await call(server, 'GET', '/v1/services/credit/rollout')).json;
          if (now.rollout.challengers.length === 0) state = now;
        }
      }
      assert.ok(state, 'the canary was not rolled back after 6,000 drifted decisions');
      assert.equal(state.rollout.by, 'rtml (automatic rollback)');
      assert.match(state.rollout.reason, /automatic rollback of 2: critical alert on the canary: .*emp_length/);
      assert.deepEqual(statuses.filter((s) => s !== 200), []);
      assert.equal((await decide(server, rows[0])).json.model.version, '1');
    } finally {
      await server.stop();
    }
  });

  it('a canary over its flip-rate budget rolls back by itself, under load, failing no request, recorded as automatic', async () => {
    const repo = repositoryWith('1', '3');
    const server = await start(repo);
    try {
      await call(server, 'POST', '/v1/services/credit/rollout/promote', { version: '1', by: 'alice' }).then((r) => assert.equal(r.status, 200, JSON.stringify(r.json)));
      const load = traffic(server, rows);
      // The broken v3 as a canary for every key: it flips most decisions, the budget is 15%.
      const set = await call(server, 'PUT', '/v1/services/credit/rollout', { challengers: [{ version: '3', mode: 'canary', share: 1, key: 'addr_state' }], max_flip_rate: 0.15, reason: 'v3 canary', by: 'alice' });
      assert.equal(set.status, 200, JSON.stringify(set.json));
      const state = await eventually('the canary rolled back', () => call(server, 'GET', '/v1/services/credit/rollout').then((r) => r.json), (j) => j.rollout.challengers.length === 0);
      const rolledBackAt = Date.now();
      assert.equal(state.rollout.by, 'rtml (automatic rollback)');
      assert.match(state.rollout.reason, /automatic rollback of 3: live flip rate \d+\.\d+% over \d+ decisions exceeds the budget of 15\.00%/);
      await new Promise((r) => setTimeout(r, 300));
      const answers = await load.stop();
      assert.deepEqual(answers.filter((a) => a.status !== 200), []);
      assert.ok(answers.some((a) => a.version === '3'), 'the canary decided before it was rolled back');
      assert.ok(answers.filter((a) => a.at > rolledBackAt + 50).every((a) => a.version === '1'));
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      assert.match(metrics, /rtml_rollout_automatic_rollbacks_total\{service="credit",version="3"\} 1/);
    } finally {
      await server.stop();
    }
  });
});
