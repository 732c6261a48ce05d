/**
 * The decision server, end to end: a real `rtml serve` process over HTTP on loopback.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openSqliteDecisionLog } from '../src/log/sqlite.ts';
import { creditRepository, lendingClubRows, startServer, type RunningServer } from './helpers/server.ts';

const TOKEN = 'test-admin-token-0123456789';
const admin = { authorization: `Bearer ${TOKEN}` };

describe('decision API', () => {
  let server: RunningServer;
  let rows: Record<string, unknown>[];
  before(async () => {
    server = await startServer({ env: { RTML_ADMIN_TOKEN: TOKEN } });
    rows = await lendingClubRows(300);
  });
  after(async () => {
    await server.stop();
  });

  it('decides a lending_club loan with reason codes, versions, fallback status and stage timings', async () => {
    const res = await server.post('/v1/services/credit/decisions', { id: 'loan-1', ...rows[0] });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.id, 'loan-1');
    assert.equal(body.service, 'credit');
    assert.ok(['approve', 'review', 'decline'].includes(body.decision));
    assert.ok(body.score > 0 && body.score < 1);
    assert.ok(body.reasons.length >= 1 && /^[A-Z][A-Z0-9_]*$/.test(body.reasons[0].code) && body.reasons[0].message);
    assert.deepEqual(body.model, { name: 'credit', version: '1' });
    assert.equal(typeof body.policy.version, 'string');
    assert.deepEqual(body.fallback, { used: false, cause: null });
    for (const stage of ['validation', 'features', 'model', 'policy', 'log', 'total']) assert.equal(typeof body.timings_ms[stage], 'number', stage);
  });

  it('gives the score, decision and reasons batch scoring gives for the same rows', async () => {
    const { loadModelBundle } = await import('../src/bundle/load.ts');
    const { scoreFile } = await import('../src/batch/score-file.ts');
    const { tempDir } = await import('./helpers/tmp.ts');
    const dir = tempDir();
    writeFileSync(join(dir, 'in.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n'));
    const bundle = await loadModelBundle(server.repository + '/credit');
    await scoreFile(bundle, { input: join(dir, 'in.jsonl'), output: join(dir, 'out.jsonl') });
    const batch = readFileSync(join(dir, 'out.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const actions = new Set<string>();
    for (let i = 0; i < rows.length; i++) {
      const live = await (await server.post('/v1/services/credit/decisions', rows[i])).json();
      assert.equal(live.decision, batch[i].decision, `row ${i}`);
      assert.equal(live.reasons.map((r: { code: string }) => r.code).join(' '), batch[i].reason_codes, `row ${i}`);
      if (live.score !== null) assert.equal(live.score, batch[i].p_bad, `row ${i}`);
      actions.add(live.decision);
    }
    assert.deepEqual([...actions].sort(), ['approve', 'decline', 'review']);
  });

  it('answers 400 naming every bad field and rule, and never 5xx for bad input', async () => {
    const res = await server.post('/v1/services/credit/decisions', { ...rows[0], annual_inc: 'lots', term: 'term_99', int_rate: -1 });
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.deepEqual(
      body.errors.map((e: { field: string; rule: string }) => `${e.field}:${e.rule}`),
      ['term:category', 'int_rate:min', 'annual_inc:type'],
    );
    for (const bad of ['{not json', '[1,2,3]', '"text"', 'null', JSON.stringify({ ...rows[0], id: { nested: true } })]) {
      const r = await server.post('/v1/services/credit/decisions', bad);
      assert.equal(r.status, 400, bad);
      assert.ok((await r.json()).error);
    }
    const huge = await server.post('/v1/services/credit/decisions', JSON.stringify({ ...rows[0], pad: 'x'.repeat(2 * 1024 * 1024) }));
    assert.equal(huge.status, 413);
    const unknownService = await server.post('/v1/services/nope/decisions', rows[0]);
    assert.equal(unknownService.status, 404);
  });

  it('reports unknown fields instead of silently dropping them', async () => {
    const body = await (await server.post('/v1/services/credit/decisions', { ...rows[1], annual_income: 5 })).json();
    assert.deepEqual(body.warnings, [{ field: 'annual_income', rule: 'unknown', message: 'annual_income is not a feature of credit' }]);
  });

  it('refuses a reused decision id with 409', async () => {
    assert.equal((await server.post('/v1/services/credit/decisions', { id: 'dup-1', ...rows[2] })).status, 200);
    assert.equal((await server.post('/v1/services/credit/decisions', { id: 'dup-1', ...rows[2] })).status, 409);
  });

  it('decides by pre-rule without the model when a rule fires first', async () => {
    const body = await (await server.post('/v1/services/credit/decisions', { ...rows[3], annual_inc: 11000, funded_amnt: 5000 })).json();
    assert.equal(body.decision, 'decline');
    assert.equal(body.score, null);
    assert.equal(body.reasons[0].code, 'INCOME_BELOW_MINIMUM');
  });

  it('logs every decision with its exact model inputs, readable through the admin API', async () => {
    await server.post('/v1/services/credit/decisions', { id: 'logged-1', ...rows[4] });
    const res = await fetch(`${server.url}/v1/services/credit/decisions/logged-1`, { headers: admin });
    assert.equal(res.status, 200);
    const record = await res.json();
    assert.equal(record.id, 'logged-1');
    assert.equal(record.inputs.length, 22);
    assert.equal(record.inputs[0], rows[4].funded_amnt);
    assert.deepEqual(record.request.funded_amnt, rows[4].funded_amnt);
    assert.equal((await fetch(`${server.url}/v1/services/credit/decisions/logged-1`)).status, 401);
  });

  it('logs the request as it was sent (its own text, spacing and all, when every field is kept) and without the fields it dropped', async () => {
    const logged = async (id: string) => (await (await fetch(`${server.url}/v1/services/credit/decisions/${id}`, { headers: admin })).json()).request;
    const pretty = { id: 'logged-pretty', ...rows[5] };
    assert.equal((await server.post('/v1/services/credit/decisions', `${JSON.stringify(pretty, null, 2)}\n`)).status, 200);
    assert.deepEqual(await logged('logged-pretty'), pretty);
    assert.equal((await server.post('/v1/services/credit/decisions', { id: 'logged-unknown', ...rows[6], annual_income: 5 })).status, 200);
    assert.deepEqual(await logged('logged-unknown'), { id: 'logged-unknown', ...rows[6] });
  });

  it('describes what is loaded', async () => {
    const list = await (await fetch(`${server.url}/v1/services`)).json();
    assert.deepEqual(list.services.map((s: { name: string }) => s.name), ['credit']);
    const credit = await (await fetch(`${server.url}/v1/services/credit`)).json();
    assert.equal(credit.default_version, '1');
    assert.equal(credit.schema.features.length, 22);
    assert.deepEqual(credit.policy.actions, ['approve', 'review', 'decline']);
    assert.equal(credit.health.mode, 'model');
    assert.ok(credit.versions[0].parity.maxDiff < 1e-6);
  });

  it('forces the fallback policy with the kill switch, an admin operation', async () => {
    const put = (body: unknown, headers = {}) => fetch(`${server.url}/v1/services/credit/kill-switch`, { method: 'PUT', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    assert.equal((await put({ enabled: true })).status, 401);
    assert.equal((await put({ enabled: true, reason: 'drill' }, admin)).status, 200);
    const body = await (await server.post('/v1/services/credit/decisions', rows[5])).json();
    assert.deepEqual(body.fallback, { used: true, cause: 'kill_switch: drill' });
    assert.equal(body.score, null);
    assert.match(body.reasons[0].code, /^FB_/);
    assert.equal((await put({ enabled: false }, admin)).status, 200);
    assert.equal((await (await server.post('/v1/services/credit/decisions', rows[5])).json()).fallback.used, false);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /rtml_fallbacks_total\{service="credit",version="1",cause="kill_switch"\} 1/);
  });

  it('exposes per-stage latency histograms and decision counters on /metrics', async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    for (const stage of ['validation', 'features', 'model', 'policy', 'log']) {
      assert.match(text, new RegExp(`rtml_stage_duration_seconds_bucket\\{le="0.001",service="credit",version="1",stage="${stage}"\\} \\d+`));
    }
    assert.match(text, /rtml_decisions_total\{service="credit",version="1",action="\w+",stage="band"\} \d+/);
    assert.match(text, /rtml_request_errors_total\{service="credit",status="400",kind="validation"\} \d+/);
  });
});

describe('Open Inference Protocol', () => {
  let server: RunningServer;
  let rows: Record<string, unknown>[];
  before(async () => {
    server = await startServer({ env: { RTML_ADMIN_TOKEN: TOKEN } });
    rows = await lendingClubRows(3);
  });
  after(async () => {
    await server.stop();
  });
  const get = async (path: string) => {
    const res = await fetch(server.url + path);
    return { status: res.status, body: await res.json() };
  };
  const tensors = (rs: Record<string, unknown>[]) =>
    Object.keys(rs[0]).map((name) => {
      const data = rs.map((r) => r[name]);
      return { name, shape: [rs.length], datatype: typeof data[0] === 'string' ? 'BYTES' : 'FP64', data };
    });

  it('answers health, server metadata, model metadata and readiness', async () => {
    assert.deepEqual(await get('/v2/health/live'), { status: 200, body: { live: true } });
    assert.deepEqual(await get('/v2/health/ready'), { status: 200, body: { ready: true } });
    const meta = await get('/v2');
    assert.equal(meta.body.name, 'rtml');
    assert.deepEqual(meta.body.extensions, ['model_repository', 'statistics']);
    const model = await get('/v2/models/credit');
    assert.equal(model.body.platform, 'xgboost_json');
    assert.deepEqual(model.body.outputs, [{ name: 'p_bad', datatype: 'FP64', shape: [-1] }]);
    assert.deepEqual((await get('/v2/models/credit/versions/1/ready')).body, { name: 'credit', ready: true });
    assert.equal((await get('/v2/models/credit/versions/9/ready')).status, 404);
    assert.match((await get('/v2/models/nope')).body.error, /no model named "nope"/);
  });

  it('infers a batch with and without a version, equal to the decision API scores', async () => {
    const res = await server.post('/v2/models/credit/infer', { id: 'batch-7', inputs: tensors(rows) });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.id, 'batch-7');
    assert.equal(body.model_version, '1');
    assert.deepEqual(body.outputs[0].shape, [3]);
    const versioned = await (await server.post('/v2/models/credit/versions/1/infer', { inputs: tensors(rows) })).json();
    assert.deepEqual(versioned.outputs, body.outputs);
    const decision = await (await server.post('/v1/services/credit/decisions', rows[0])).json();
    assert.equal(decision.score, body.outputs[0].data[0]);
  });

  it('answers {error} with 400 for bad tensors', async () => {
    const bad = tensors(rows);
    bad[2] = { ...bad[2], data: ['x', 'y', 'z'], datatype: 'BYTES' };
    const res = await server.post('/v2/models/credit/infer', { inputs: bad });
    assert.equal(res.status, 400);
    assert.match((await res.json()).error, /row 0: int_rate must be a number/);
    assert.equal((await server.post('/v2/models/credit/infer', { inputs: [] })).status, 400);
    assert.equal((await server.post('/v2/models/credit/infer', { inputs: [{ name: 'nope', shape: [1], datatype: 'FP64', data: [1] }] })).status, 400);
  });

  it('keeps statistics and a repository index; index, load and unload need the admin token', async () => {
    const stats = await get('/v2/models/credit/stats');
    assert.equal(stats.body.model_stats[0].name, 'credit');
    assert.ok(stats.body.model_stats[0].inference_stats.success.count >= 2);
    assert.equal((await server.post('/v2/repository/index', {})).status, 401);
    const index = await (await server.post('/v2/repository/index', {}, admin)).json();
    assert.deepEqual(index, [{ name: 'credit', version: '1', state: 'READY', reason: '' }]);
    assert.equal((await server.post('/v2/repository/models/credit/load', {})).status, 401);
    assert.equal((await server.post('/v2/repository/models/credit/load', {}, admin)).status, 200);
  });
});

describe('operating the server', () => {
  it('disables admin operations when no token is configured', async () => {
    const server = await startServer();
    try {
      const res = await server.post('/v2/repository/models/credit/load', {}, { authorization: 'Bearer anything' });
      assert.equal(res.status, 403);
      assert.match((await res.json()).error, /admin operations are disabled/);
    } finally {
      await server.stop();
    }
  });

  it('sheds load past the concurrency limit with 503 and Retry-After, never an unbounded queue', async () => {
    const server = await startServer({ args: ['--max-in-flight', '2'] });
    try {
      const rows = await lendingClubRows(200);
      const responses = await Promise.all(rows.map((r) => server.post('/v1/services/credit/decisions', r)));
      const statuses = responses.map((r) => r.status);
      assert.ok(statuses.includes(200));
      const shed = responses.filter((r) => r.status === 503);
      assert.ok(shed.length > 0, `expected some 503s, got ${JSON.stringify(statuses.slice(0, 20))}`);
      assert.equal(shed[0].headers.get('retry-after'), '1');
      assert.ok(statuses.every((s) => s === 200 || s === 503));
    } finally {
      await server.stop();
    }
  });

  it('serves a rules-only service: the heuristic baseline with no model at all', async () => {
    const repo = creditRepository();
    mkdirSync(join(repo, 'baseline'));
    const manifest = readFileSync(join(repo, 'credit/rtml.yaml'), 'utf8')
      .replace(/^name: credit$/m, 'name: baseline')
      .replace(/^model:\n(  .*\n)+/m, '')
      .replace(/^outputs:\n(  .*\n)+/m, '')
      .replace(/^golden: .*$/m, '')
      .replace(/^monitoring:\n(  .*\n)+/m, '');
    writeFileSync(join(repo, 'baseline/rtml.yaml'), manifest);
    const policy = readFileSync(join(repo, 'credit/policy.yaml'), 'utf8').replace(/^bands:\n(  .*\n|\s*\n|  #.*\n)+/m, '').replace(/^post_rules:\n(  .*\n|\s*\n|  #.*\n)+/m, '')
      // No model, so no model reasons either (a rules-only policy asking for them is refused).
      .replace(/^model_reasons:\n(  .*\n|\s*\n|  #.*\n)+/m, '');
    writeFileSync(join(repo, 'baseline/policy.yaml'), policy);
    const server = await startServer({ repository: repo });
    try {
      const [row] = await lendingClubRows(1);
      const res = await server.post('/v1/services/baseline/decisions', row);
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(body.model, null);
      assert.equal(body.score, null);
      // The heuristics are this service's policy, not a stand-in for a failed model.
      assert.deepEqual(body.fallback, { used: false, cause: null });
      assert.match(body.reasons[0].code, /^FB_/);
    } finally {
      await server.stop();
    }
  });

  it('drains in-flight requests on SIGTERM and loses no answered decision', async () => {
    const server = await startServer();
    const rows = await lendingClubRows(100);
    const inflight = rows.map((r, i) => server.post('/v1/services/credit/decisions', { id: `drain-${i}`, ...r }).then((res) => res.status, () => 0));
    await new Promise((r) => setTimeout(r, 5));
    const code = await server.stop();
    const statuses = await Promise.all(inflight);
    assert.equal(code, 0);
    const answered = statuses.map((s, i) => (s === 200 ? `drain-${i}` : null)).filter((x) => x !== null);
    assert.ok(statuses.every((s) => s === 200 || s === 503 || s === 0), JSON.stringify(statuses));
    const log = openSqliteDecisionLog(server.dataDir);
    try {
      for (const id of answered) assert.ok(await log.get('credit', id!), `answered ${id} is not in the log`);
    } finally {
      await log.close();
    }
  });

  it('loses no answered decision when killed with kill -9 under load', async () => {
    const server = await startServer();
    const rows = await lendingClubRows(500);
    const answered: string[] = [];
    let stop = false;
    let n = 0;
    const worker = async () => {
      while (!stop) {
        const id = `k-${n++}`;
        try {
          const res = await server.post('/v1/services/credit/decisions', { id, ...rows[n % rows.length] });
          if (res.status === 200) answered.push(id);
        } catch {
          return; // the server died mid-request: that one was never answered
        }
      }
    };
    const workers = Array.from({ length: 32 }, worker);
    while (answered.length < 1500) await new Promise((r) => setTimeout(r, 20));
    await server.kill();
    stop = true;
    await Promise.all(workers);
    const log = openSqliteDecisionLog(server.dataDir);
    try {
      const missing: string[] = [];
      for (const id of answered) if (!(await log.get('credit', id))) missing.push(id);
      assert.deepEqual(missing, [], `${missing.length} of ${answered.length} answered decisions lost`);
    } finally {
      await log.close();
    }
  });

  it('hot-reloads a new version under load with zero failed requests, and refuses a broken one', async () => {
    const server = await startServer({ env: { RTML_ADMIN_TOKEN: TOKEN } });
    try {
      const rows = await lendingClubRows(200);
      const versions = new Map<string, number>();
      const failures: string[] = [];
      let stop = false;
      let n = 0;
      const worker = async () => {
        while (!stop) {
          const res = await server.post('/v1/services/credit/decisions', rows[n++ % rows.length]);
          const body = await res.json();
          if (res.status !== 200) failures.push(`${res.status} ${JSON.stringify(body)}`);
          else versions.set(body.model.version, (versions.get(body.model.version) ?? 0) + 1);
        }
      };
      const workers = Array.from({ length: 8 }, worker);
      await new Promise((r) => setTimeout(r, 300));

      // Version 2 arrives as a folder beside version 1 (the repository layout with versions inside).
      const dir = join(server.repository, 'credit');
      mkdirSync(join(dir, 'v1'));
      mkdirSync(join(dir, 'v2'));
      const files = ['rtml.yaml', 'model.json', 'golden.jsonl', 'policy.yaml', 'reference.json'];
      for (const f of files) {
        cpSync(join(dir, f), join(dir, 'v1', f));
        cpSync(join(dir, f), join(dir, 'v2', f));
      }
      writeFileSync(join(dir, 'v2/rtml.yaml'), readFileSync(join(dir, 'v2/rtml.yaml'), 'utf8').replace(/^version: .*$/m, 'version: "2"'));
      const { rmSync } = await import('node:fs');
      for (const f of files) rmSync(join(dir, f));
      const load = await server.post('/v2/repository/models/credit/load', {}, admin);
      assert.equal(load.status, 200, await load.clone().text());
      assert.deepEqual((await load.json()).versions, ['1', '2']);
      await new Promise((r) => setTimeout(r, 300));

      // A broken version 3 (corrupt model) is refused; version 2 keeps serving.
      mkdirSync(join(dir, 'v3'));
      for (const f of ['rtml.yaml', 'golden.jsonl', 'policy.yaml', 'reference.json']) cpSync(join(dir, 'v2', f), join(dir, 'v3', f));
      writeFileSync(join(dir, 'v3/rtml.yaml'), readFileSync(join(dir, 'v3/rtml.yaml'), 'utf8').replace(/^version: .*$/m, 'version: "3"'));
      writeFileSync(join(dir, 'v3/model.json'), readFileSync(join(dir, 'v2/model.json'), 'utf8').slice(0, 5000));
      const refused = await server.post('/v2/repository/models/credit/load', {}, admin);
      assert.equal(refused.status, 400);
      assert.match((await refused.json()).error, /load refused.*not valid JSON/);
      await new Promise((r) => setTimeout(r, 200));
      stop = true;
      await Promise.all(workers);

      assert.deepEqual(failures, []);
      assert.ok((versions.get('1') ?? 0) > 0 && (versions.get('2') ?? 0) > 0, JSON.stringify([...versions]));
      const index = await (await server.post('/v2/repository/index', {}, admin)).json();
      assert.deepEqual(index.map((e: { version: string }) => e.version), ['1', '2']);
    } finally {
      await server.stop();
    }
  });
});
