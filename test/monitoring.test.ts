/**
 * Never fail silently: a real server, real lending_club traffic from the simulator. No
 * alert on clean traffic; an alert within 500 decisions of each injected fault; safe mode
 * engaging and releasing; realized AUC equal to scikit-learn's; memory flat.
 */
import assert from 'node:assert/strict';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadBundle, type Bundle } from '../src/bundle/load.ts';
import { parsePerturbation, type SimulateOptions } from '../src/monitor/simulate.ts';
import { parse } from 'csv-parse/sync';
import { exportLogged } from '../src/batch/features.ts';
import { textRowConverter } from '../src/decision/index.ts';
import { openSqliteDecisionLog } from '../src/log/sqlite.ts';
import { ModelRepository } from '../src/server/repository.ts';
import { creditRepository, simulateLendingClub, startServer, type RunningServer } from './helpers/server.ts';
import { tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const DATA = join(ROOT, 'examples/credit/lending_club.csv');
const golden = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/monitoring/golden.json'), 'utf8'));

let bundle: Bundle;
const run = (server: RunningServer, options: Partial<SimulateOptions>) =>
  simulateLendingClub(server.url, bundle, { watchEvery: 25, idPrefix: `t${Math.random().toString(36).slice(2, 8)}`, ...options });

/** A copy of the credit repository whose safe mode releases after `seconds` of calm. */
function repositoryReleasingAfter(seconds: number): string {
  const repo = creditRepository();
  const manifest = join(repo, 'credit/rtml.yaml');
  writeFileSync(manifest, readFileSync(manifest, 'utf8').replace(/release_after_s: \d+/, `release_after_s: ${seconds}`));
  return repo;
}

async function monitoring(server: RunningServer) {
  // Realized performance is recomputed at most once a second: ask for one computed after now.
  const asked = Date.now();
  for (;;) {
    const res = await fetch(`${server.url}/v1/services/credit/monitoring`);
    assert.equal(res.status, 200);
    const state = await res.json();
    if (Date.parse(state.performance.computed_at) >= asked) return state;
    await new Promise((r) => setTimeout(r, 200));
  }
}

before(async () => {
  bundle = await loadBundle(join(ROOT, 'examples/credit'));
});

describe('monitoring on clean traffic', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.stop();
  });

  it('raises no alert over 5,000 unperturbed decisions, and realized AUC equals scikit-learn on the same decisions', async () => {
    const summary = await run(server, { limit: 5000, label: 'Class', outcomeDelay: 200, watchEvery: 50, idPrefix: 'clean' });
    assert.deepEqual(summary.statuses, { 200: 5000 });
    assert.deepEqual(summary.alerts, []);
    assert.equal(summary.safeMode.engagedAt, null);
    assert.equal(summary.outcomesPosted, 5000);

    const state = await monitoring(server);
    assert.equal(state.alerts.active.length, 0);
    const w = state.windows.count;
    assert.ok(w.observations >= 1000);
    for (const [name, f] of Object.entries(w.features) as [string, { verdict: string }][]) assert.equal(f.verdict, 'ok', name);
    assert.equal(w.score.verdict, 'ok');
    assert.equal(w.model_health.decision_mix.verdict, 'ok');

    const all = state.performance.realized.all;
    const expected = golden.windows['5000'];
    assert.equal(all.decisions, 5000);
    assert.equal(all.labelled, 5000);
    assert.equal(all.label_completeness, 1);
    assert.equal(all.n, expected.scored);
    assert.equal(all.positives, expected.positives);
    assert.ok(Math.abs(all.auc - expected.auc) < 1e-9, `realized AUC ${all.auc} vs scikit-learn ${expected.auc}`);
    // Before outcomes, an estimate from the scores alone; its calibration check uses the outcomes.
    assert.ok(state.performance.estimated.auc > 0.6 && state.performance.estimated.auc < 0.9);
    assert.equal(typeof state.performance.estimated.valid, 'boolean');
    // The decay detector reads outcomes from the log once a second.
    let decay = state.decay;
    for (let i = 0; i < 30 && decay.outcomes < expected.scored; i++) {
      await new Promise((r) => setTimeout(r, 200));
      decay = (await monitoring(server)).decay;
    }
    assert.equal(decay.outcomes, expected.scored);
    assert.equal(decay.decayed, false);

    // Log-and-wait: `rtml export` gives back every labelled decision as the row it was sent.
    const dir = tempDir();
    const log = openSqliteDecisionLog(server.dataDir);
    try {
      assert.deepEqual(await exportLogged(bundle, log, { output: join(dir, 'train.csv') }), { rows: 5000, skipped: 0 });
    } finally {
      await log.close();
    }
    const exported = parse(readFileSync(join(dir, 'train.csv')), { columns: true }) as Record<string, string>[];
    const sent = (parse(readFileSync(DATA), { columns: true, to: 5000 }) as Record<string, string>[]).map(textRowConverter(bundle.encoding.features));
    assert.equal(exported.length, 5000);
    for (const row of exported) {
      const n = Number(row.id.slice('clean-'.length));
      for (const f of bundle.encoding.features) assert.equal(row[f.name], String(sent[n][f.name] ?? ''), `${row.id} ${f.name}`);
      assert.equal(row.label, sent[n].Class);
    }
  });

  it('keeps monitoring memory flat over a long simulation', async () => {
    const heap = async () => {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      return Number(/^rtml_process_nodejs_heap_size_used_bytes (\d+)/m.exec(text)![1]) / 2 ** 20;
    };
    const before = await heap();
    await run(server, { limit: 6000, watchEvery: 0 });
    const afterMb = await heap();
    assert.ok(afterMb - before < 40, `heap went from ${before.toFixed(1)} to ${afterMb.toFixed(1)} MB over 6,000 more decisions`);
  });
});

describe('monitoring injected faults', () => {
  for (const [spec, key] of [
    ['scale:annual_inc:3', 'feature_drift:annual_inc'],
    ['null:emp_length', 'missing_values:emp_length'],
    ['swap:term:term_36:term_60', 'feature_drift:term'],
  ]) {
    it(`alerts within 500 decisions of ${spec} and engages safe mode`, async () => {
      const server = await startServer();
      try {
        const summary = await run(server, { limit: 1500, perturbAfter: 1000, perturbations: [parsePerturbation(spec)] });
        assert.deepEqual(summary.statuses, { 200: 1500 });
        const first = summary.alerts.find((a) => a.key === key);
        assert.ok(first, `no ${key} alert: ${JSON.stringify(summary.alerts)}`);
        assert.ok(first.atDecision > 1000 && first.atDecision <= 1500, `first ${key} alert at decision ${first.atDecision}`);
        assert.ok(summary.alerts.every((a) => a.atDecision > 1000), `alert before the fault: ${JSON.stringify(summary.alerts)}`);
        assert.ok(summary.alerts.some((a) => a.key === key && a.severity === 'critical'));
        assert.notEqual(summary.safeMode.engagedAt, null);
        assert.ok(summary.fallbacks.safe_mode > 0);
      } finally {
        await server.stop();
      }
    });
  }

  it('releases safe mode once the fault is gone and the service has been calm, and records it on each decision', async () => {
    const server = await startServer({ repository: repositoryReleasingAfter(1), env: { RTML_ADMIN_TOKEN: 'test-admin-token-0123' } });
    try {
      const faulty = await run(server, { limit: 1500, perturbAfter: 1000, perturbations: [parsePerturbation('scale:annual_inc:3')], idPrefix: 'fault' });
      assert.notEqual(faulty.safeMode.engagedAt, null);
      const during = await (await fetch(`${server.url}/v1/services/credit/decisions/fault-1499`, { headers: { authorization: 'Bearer test-admin-token-0123' } })).json();
      assert.equal(during.safeMode, true);
      assert.equal(during.fallback.used, true);
      assert.ok(during.score > 0, 'the model still scores in safe mode, unseen, so recovery shows');

      // Clean traffic pushes the faulty rows out of the window; then one calm second releases.
      await run(server, { limit: 1300, idPrefix: 'clean' });
      await new Promise((r) => setTimeout(r, 1200));
      let state = await monitoring(server);
      if (state.safe_mode.active) {
        await run(server, { limit: 100, idPrefix: 'calm' });
        state = await monitoring(server);
      }
      assert.equal(state.safe_mode.active, false);
      assert.ok(state.alerts.history.some((a: { key: string; resolvedAt: string | null }) => a.key === 'feature_drift:annual_inc' && a.resolvedAt));
      const res = await server.post('/v1/services/credit/decisions', { id: 'after-1', ...JSON.parse(readFileSync(join(ROOT, 'examples/credit/golden.jsonl'), 'utf8').split('\n')[0]).row });
      assert.equal((await res.json()).fallback.used, false);
    } finally {
      await server.stop();
    }
  });

  it('lets an operator force safe mode and acknowledge alerts (admin), and posts alerts to a webhook', async () => {
    const received: { type: string; rule: string; severity: string }[] = [];
    const hook = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        received.push(JSON.parse(body));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const server = await startServer({ env: { RTML_ADMIN_TOKEN: 'test-admin-token-0123' }, args: ['--alert-webhook', `http://127.0.0.1:${(hook.address() as AddressInfo).port}/alerts`] });
    try {
      const put = (body: unknown, token?: string) =>
        fetch(`${server.url}/v1/services/credit/safe-mode`, { method: 'PUT', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) });
      assert.equal((await put({ mode: 'on' })).status, 401);
      assert.equal((await put({ mode: 'on', reason: 'drill' }, 'test-admin-token-0123')).status, 200);
      const forced = await run(server, { limit: 20, watchEvery: 0 });
      assert.equal(forced.fallbacks.safe_mode, 20);
      assert.equal((await put({ mode: 'auto' }, 'test-admin-token-0123')).status, 200);

      await run(server, { limit: 1400, perturbAfter: 900, perturbations: [parsePerturbation('null:emp_length')] });
      const state = await monitoring(server);
      const alert = state.alerts.active.find((a: { key: string }) => a.key === 'missing_values:emp_length');
      assert.ok(alert);
      const ack = await fetch(`${server.url}/v1/services/credit/alerts/${alert.id}/acknowledge`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer test-admin-token-0123' }, body: JSON.stringify({ by: 'oncall', note: 'upstream fix in progress' }) });
      assert.equal(ack.status, 200);
      assert.equal((await ack.json()).acknowledged.by, 'oncall');
      for (let i = 0; i < 50 && !received.some((r) => r.rule === 'missing_values'); i++) await new Promise((r) => setTimeout(r, 100));
      assert.ok(received.some((r) => r.type === 'fired' && r.rule === 'missing_values'), JSON.stringify(received));
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      assert.match(metrics, /rtml_feature_missing_rate\{service="credit",version="1",feature="emp_length"\} 0\.\d+/);
      assert.match(metrics, /rtml_alerts_active\{service="credit",version="1",severity="critical"\} [1-9]/);
    } finally {
      await server.stop();
      hook.close();
    }
  });
});

describe('a reference profile that does not fit the bundle', () => {
  const silentLogger = { info: () => {}, warn: () => {}, error: () => {} };
  const withReference = (edit: (reference: { bundle: { name: string }; features: Record<string, unknown> }) => void) => {
    const repo = creditRepository();
    const file = join(repo, 'credit/reference.json');
    const reference = JSON.parse(readFileSync(file, 'utf8'));
    edit(reference);
    writeFileSync(file, JSON.stringify(reference));
    return new ModelRepository(repo, silentLogger);
  };

  it('refuses the version rather than leave a feature unmonitored, or compare with another service', async () => {
    const missing = withReference((r) => delete r.features.annual_inc);
    await assert.rejects(missing.load('credit'), /reference\.json cannot monitor this bundle: it has no profile of annual_inc \(added to the bundle since it was measured\?\): run rtml profile/);
    const foreign = withReference((r) => (r.bundle.name = 'card-fraud'));
    await assert.rejects(foreign.load('credit'), /it was profiled for service "card-fraud", not "credit"/);
    const fine = withReference(() => {});
    assert.ok((await fine.load('credit')).defaultVersion.monitor);
    await fine.close();
  });

  it('refuses a reference outside the bundle instead of reading it', async () => {
    const repo = creditRepository();
    renameSync(join(repo, 'credit/reference.json'), join(repo, 'reference.json'));
    const manifest = join(repo, 'credit/rtml.yaml');
    writeFileSync(manifest, readFileSync(manifest, 'utf8').replace('reference: reference.json', 'reference: ../reference.json'));
    await assert.rejects(new ModelRepository(repo, silentLogger).load('credit'), /monitoring\.reference: must be a path inside the bundle, got "\.\.\/reference\.json"/);
  });
});
