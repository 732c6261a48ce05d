/**
 * The decision log on PostgreSQL (src/log/postgres.ts), against a real throwaway cluster: the
 * conformance suite every log passes, then what only a shared database has: several writers
 * (processes or pools) at once, outcomes streamed in commit order, outages, schema versions, and
 * `rtml serve` / `outcomes` / `export` with `--decision-log postgres://...`, including a kill -9
 * under load.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { openPostgresDecisionLog, POSTGRES_LOG_COMPONENT, POSTGRES_LOG_MIGRATIONS } from '../src/log/postgres.ts';
import { openDecisionLog } from '../src/log/index.ts';
import { isLogUnavailable, type DecisionLogError } from '../src/log/types.ts';
import { counts, decisionLogConformance, outcomes, record } from './helpers/decision-log-conformance.ts';
import { startPostgres, type RunningPostgres } from './helpers/postgres-server.ts';
import { lendingClubRows, startServer } from './helpers/server.ts';
import { killAfterAcks, spawnTsx } from './helpers/kill9.ts';
import { tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;

let server: RunningPostgres;
let admin: pg.Pool;
let databases = 0;

before(async () => {
  server = await startPostgres();
  admin = new pg.Pool({ connectionString: server.url, max: 2 });
});
after(async () => {
  await admin.end();
  await server.stop();
});

/** A new, empty database on the cluster; its URL. */
async function freshDatabase(): Promise<string> {
  const name = `log_${++databases}`;
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(server.url);
  url.pathname = `/${name}`;
  return url.toString();
}

decisionLogConformance('postgres', async () => {
  const url = await freshDatabase();
  return { open: () => openPostgresDecisionLog(url) };
});

describe('postgres decision log', () => {
  it('group-commits: appends made together share one INSERT, later ones the next, each resolves after its commit', async () => {
    const url = await freshDatabase();
    const log = await openPostgresDecisionLog(url, { maxBatch: 256 });
    const reader = new pg.Client({ connectionString: url });
    await reader.connect();
    let seen: number | undefined;
    const appends = Array.from({ length: 1000 }, (_, i) => log.append(record(`g-${i}`)));
    assert.equal(log.stats.pending, 1000, 'none is settled before its commit');
    appends[999] = appends[999].then(async () => {
      seen = Number((await reader.query("SELECT count(*) AS n FROM decisions WHERE id = 'g-999'")).rows[0].n);
    });
    await Promise.all(appends);
    assert.equal(seen, 1, 'when append resolves, another connection already sees the row');
    assert.deepEqual(counts(log.stats), { appended: 1000, commits: 4, pending: 0 });
    assert.equal(log.stats.largestBatch, 256);
    await reader.end();
    await log.close();
  });

  it('rejects a record PostgreSQL refuses (a NUL in a text column) alone: the rest of its batch commits', async () => {
    const log = await openPostgresDecisionLog(await freshDatabase());
    const errs = await outcomes([log.append(record('n-1')), log.append(record('n-2', { decision: 'nul \u0000 here' })), log.append(record('n-3'))]);
    assert.deepEqual(errs.map((e) => e === null), [true, false, true]);
    assert.equal((errs[1] as DecisionLogError).code, 'INVALID_DECISION');
    assert.match((errs[1] as Error).message, /PostgreSQL refused it: .*id "n-2"/);
    assert.equal(await log.count(), 2);
    await log.close();
  });

  it('ids are unique across writers: two logs (two pools) appending the same ids commit each once', async () => {
    const url = await freshDatabase();
    const [a, b] = await Promise.all([openPostgresDecisionLog(url), openPostgresDecisionLog(url)]);
    const ids = Array.from({ length: 300 }, (_, i) => `u-${i}`);
    const [ea, eb] = await Promise.all([outcomes(ids.map((id) => a.append(record(id, { decision: 'a' })))), outcomes(ids.map((id) => b.append(record(id, { decision: 'b' }))))]);
    for (let i = 0; i < ids.length; i++) assert.equal((ea[i] === null) !== (eb[i] === null), true, `${ids[i]}: exactly one writer wins`);
    assert.equal(await a.count(), 300);
    await Promise.all([a.close(), b.close()]);
  });

  it('streams outcomes in commit order: one written by a transaction still open is not skipped once it commits', async () => {
    const url = await freshDatabase();
    const log = await openPostgresDecisionLog(url);
    await Promise.all(['slow', 'fast'].map((id) => log.append(record(id))));
    // Another writer's transaction records an outcome first (its number is the smaller) and commits last.
    const other = new pg.Client({ connectionString: url });
    await other.connect();
    await other.query('BEGIN');
    await other.query("INSERT INTO outcomes (service, id, label, time) VALUES ('credit', 'slow', 'bad', '2026-03-01T12:00:00.000Z')");
    assert.deepEqual(await log.recordOutcomes('credit', [{ id: 'fast', label: 'good' }]), { joined: 1, unknown: [] });
    const first = await log.outcomesAfter(0);
    assert.deepEqual(first.items.map((o) => o.id), ['fast']);
    await other.query('COMMIT');
    await other.end();
    const next = await log.outcomesAfter(first.cursor);
    assert.deepEqual(next.items.map((o) => o.id), ['slow'], 'the outcome committed later comes after the cursor, although it was written first');
    assert.deepEqual(await log.outcomesAfter(next.cursor), { cursor: next.cursor, items: [] });
    await log.close();
  });

  it('with concurrent writers (two pools) and a reader polling meanwhile, every outcome is streamed once, none skipped', async (t) => {
    const url = await freshDatabase();
    const [a, b, reader] = await Promise.all([openPostgresDecisionLog(url), openPostgresDecisionLog(url), openPostgresDecisionLog(url)]);
    const ids = Array.from({ length: 2000 }, (_, i) => `c-${i}`);
    await Promise.all(ids.map((id, i) => (i % 2 ? a : b).append(record(id))));
    const streamed: string[] = [];
    let cursor = 0;
    let writing = true;
    const poll = (async () => {
      while (writing) {
        const r = await reader.outcomesAfter(cursor, 100);
        cursor = r.cursor;
        streamed.push(...r.items.map((o) => o.id));
      }
    })();
    // Many small outcome transactions from both writers, interleaved: writer 0 the even ids, writer 1 the odd ones, 10 at a time each.
    // And a third writer whose transactions stay open a while after writing: rows numbered before theirs commit meanwhile.
    const slowIds = Array.from({ length: 20 }, (_, i) => `s-${i}`);
    await Promise.all(slowIds.map((id) => a.append(record(id))));
    const slow = new pg.Client({ connectionString: url });
    await slow.connect();
    await Promise.all([
      ...[a, b].map(async (log, w) => {
        for (let i = w; i < ids.length; i += 20) await Promise.all(Array.from({ length: 10 }, (_, k) => log.recordOutcomes('credit', [{ id: ids[i + 2 * k], label: 'bad' }])));
      }),
      (async () => {
        for (const id of slowIds) {
          await slow.query('BEGIN');
          await slow.query("INSERT INTO outcomes (service, id, label, time) VALUES ('credit', $1, 'bad', '2026-03-01T12:00:00.000Z')", [id]);
          await slow.query('SELECT pg_sleep(0.03)');
          await slow.query('COMMIT');
        }
      })(),
    ]);
    await slow.end();
    writing = false;
    await poll;
    for (;;) {
      const r = await reader.outcomesAfter(cursor);
      if (r.items.length === 0) break;
      cursor = r.cursor;
      streamed.push(...r.items.map((o) => o.id));
    }
    const unique = new Set(streamed);
    t.diagnostic(`${streamed.length} streamed, ${unique.size} distinct`);
    assert.deepEqual(slowIds.filter((id) => !unique.has(id)), [], 'no outcome of a slow transaction skipped');
    assert.equal(unique.size, 2020, 'every outcome streamed');
    assert.equal(streamed.length, 2020, 'none streamed twice');
    await Promise.all([a.close(), b.close(), reader.close()]);
  });

  it('outage: appends reject as unavailable within appendTimeoutMs while the database is down, and succeed again once it is back; nothing acknowledged is lost', async (t) => {
    const own = await startPostgres();
    try {
      const log = await openPostgresDecisionLog(own.url, { appendTimeoutMs: 500 });
      const acked: string[] = [];
      const append = (id: string) => log.append(record(id)).then(() => void acked.push(id));
      await Promise.all(Array.from({ length: 50 }, (_, i) => append(`before-${i}`)));
      await own.kill();
      const started = performance.now();
      const during = await outcomes(Array.from({ length: 20 }, (_, i) => append(`during-${i}`)));
      const ms = performance.now() - started;
      t.diagnostic(`while down: 20 appends refused in ${ms.toFixed(0)} ms: ${[...new Set(during.map((e) => (e as DecisionLogError).code))]}`);
      for (const e of during) assert.ok(isLogUnavailable(e), String(e));
      assert.ok(ms < 2000, `refused within the timeout, not after ${ms.toFixed(0)} ms`);
      await own.restart();
      // The pool reconnects by itself; the first write may still meet a connection that died with the server.
      let back = false;
      for (let i = 0; i < 50 && !back; i++) {
        back = await append(`after-${i}`).then(() => true, () => false);
        if (!back) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(back, 'appends succeed again once the database is back');
      await Promise.all(Array.from({ length: 50 }, (_, i) => append(`again-${i}`)));
      for (const id of acked) assert.notEqual(await log.get('credit', id), null, `${id} was acknowledged`);
      await log.close();
    } finally {
      await own.stop();
    }
  });

  it('refuses a database written by a newer rtml; a replica starting at the same time migrates it once', async () => {
    const url = await freshDatabase();
    const logs = await Promise.all([openPostgresDecisionLog(url), openDecisionLog({ decisionLog: url, dataDir: '/nonexistent' })]);
    await Promise.all(logs.map((l) => l.close()));
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    await db.query('INSERT INTO rtml_schema (component, version, description) VALUES ($1, $2, $3)', [POSTGRES_LOG_COMPONENT, POSTGRES_LOG_MIGRATIONS.length + 1, 'from the future']);
    await db.end();
    await assert.rejects(openPostgresDecisionLog(url), (e: DecisionLogError) => e.code === 'SCHEMA_VERSION' && /schema version 2, this rtml knows up to 1/.test(e.message));
  });

  it('redacts the password in its messages', async () => {
    const url = new URL(server.url);
    url.password = 's3cret-pw';
    url.port = '1'; // nothing listens there
    await assert.rejects(openPostgresDecisionLog(url.toString()), (e: Error) => !e.message.includes('s3cret-pw') && /\*\*\*/.test(e.message));
  });
});

describe('postgres decision log, kill -9', () => {
  it('every acknowledged append survives SIGKILL of the writing process mid-write', async (t) => {
    const url = await freshDatabase();
    const writer = new URL('./helpers/log-writer.ts', import.meta.url).pathname;
    const killAfter = 1000 + Math.floor(Math.random() * 2000);
    const { acked, signal, stderr } = await killAfterAcks(spawnTsx(writer, [url, 'full', '64']), killAfter, 30_000);
    assert.equal(signal, 'SIGKILL', `the writer must die by our SIGKILL; stderr: ${stderr}`);
    const log = await openPostgresDecisionLog(url);
    const present = new Set((await log.query({ service: 'kill9', limit: 10_000 })).map((r) => r.id));
    const missing = [...acked].filter((id) => !present.has(id));
    assert.equal(missing.length, 0, `${missing.length} of ${acked.size} acknowledged appends lost, e.g. ${missing.slice(0, 5).join(', ')}`);
    const last = [...acked].at(-1)!;
    assert.deepEqual((await log.get('kill9', last))!.inputs, [Number(last.slice(2)), null, Number(last.slice(2)) / 3]);
    await log.close();
    t.diagnostic(`killed after ${acked.size} acks (target ${killAfter}); ${present.size} records present`);
  });
});

describe('rtml serve / outcomes / export with --decision-log postgres://', () => {
  it('serves decisions into PostgreSQL, joins outcomes and exports them from it, and loses no acknowledged decision to kill -9 under load', async (t) => {
    const url = await freshDatabase();
    const rtml = await startServer({ args: ['--decision-log', url] });
    const loans = await lendingClubRows(50);
    const acked = new Set<string>();
    try {
      for (let i = 0; i < 20; i++) {
        const res = await rtml.post('/v1/services/credit/decisions', { id: `d-${i}`, ...loans[i] });
        assert.equal(res.status, 200, await res.text());
        acked.add(`d-${i}`);
      }
      const dir = tempDir();
      const outcomesFile = join(dir, 'outcomes.csv');
      writeFileSync(outcomesFile, `id,label\n${Array.from({ length: 20 }, (_, i) => `d-${i},${i % 2 ? 'bad' : 'good'}`).join('\n')}\n`);
      const cli = (args: string[]) => spawnSync(process.execPath, [join(ROOT, 'bin/rtml.mjs'), ...args], { cwd: ROOT, encoding: 'utf8' });
      const joined = cli(['outcomes', join(rtml.repository, 'credit'), '-i', outcomesFile, '--decision-log', url]);
      assert.equal(joined.status, 0, joined.stderr);
      assert.match(joined.stderr, /20 outcomes: 20 joined/);
      const exported = cli(['export', join(rtml.repository, 'credit'), '-o', join(dir, 'train.csv'), '--decision-log', url]);
      assert.equal(exported.status, 0, exported.stderr);
      assert.match(exported.stderr, /wrote 20 labelled decisions/);
      assert.equal(readFileSync(join(dir, 'train.csv'), 'utf8').trim().split('\n').length, 21);

      // Load: 16 decisions in flight; SIGKILL after 300 more acknowledgements.
      let stop = false;
      const load = Array.from({ length: 16 }, async (_, w) => {
        for (let i = 0; !stop; i++) {
          const id = `k-${w}-${i}`;
          try {
            const res = await rtml.post('/v1/services/credit/decisions', { id, ...loans[i % loans.length] });
            if (res.status === 200) acked.add(id);
            await res.arrayBuffer();
          } catch {
            return; // the server is gone
          }
          if (acked.size >= 320 && !stop) {
            stop = true;
            rtml.process.kill('SIGKILL');
          }
        }
      });
      await Promise.all(load);
      await rtml.kill();
    } finally {
      await rtml.kill();
    }
    const log = await openPostgresDecisionLog(url);
    const logged = new Set((await log.query({ service: 'credit', limit: 10_000 })).map((r) => r.id));
    await log.close();
    t.diagnostic(`${acked.size} acknowledged before kill -9, ${logged.size} in the log`);
    const missing = [...acked].filter((id) => !logged.has(id));
    assert.deepEqual(missing, [], 'every acknowledged decision is in the log');
  });

  it('answers 503 + Retry-After while PostgreSQL is down, within --log-timeout-ms, and 200 again once it is back', async (t) => {
    const own = await startPostgres();
    const rtml = await startServer({ args: ['--decision-log', own.url, '--log-timeout-ms', '500'] });
    const loans = await lendingClubRows(5);
    const decide = async (id: string) => {
      const started = performance.now();
      const res = await rtml.post('/v1/services/credit/decisions', { id, ...loans[0] });
      return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.text(), ms: performance.now() - started };
    };
    try {
      assert.equal((await decide('up')).status, 200);
      await own.kill();
      const down = await Promise.all(Array.from({ length: 5 }, (_, i) => decide(`down-${i}`)));
      t.diagnostic(`while down: ${down.map((d) => `${d.status} in ${d.ms.toFixed(0)} ms`).join(', ')}`);
      for (const d of down) {
        assert.equal(d.status, 503, d.body);
        assert.equal(d.retryAfter, '1');
        assert.ok(d.ms < 3000, `answered after ${d.ms.toFixed(0)} ms`);
      }
      await own.restart();
      let status = 0;
      for (let i = 0; i < 50 && status !== 200; i++) {
        status = (await decide(`back-${i}`)).status;
        if (status !== 200) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(status, 200, 'decisions are logged again once PostgreSQL is back');
    } finally {
      await rtml.stop();
      await own.stop();
    }
  });
});
