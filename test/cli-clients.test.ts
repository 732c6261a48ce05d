/**
 * The commands that talk to a running server (`rtml outcomes --url`, `rtml simulate`,
 * `rtml ingest`): they send the bearer token (`--token-file` or `RTML_TOKEN`) and the right
 * content type on every request; an unreachable server, a refused token or any other
 * refusal is one line naming the URL and the cause, exit 2; and they check their input
 * file's header as `rtml score` does.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { creditRepository, startServer, type RunningServer } from './helpers/server.ts';
import { tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const CREDIT = join(ROOT, 'examples/credit');
const FRAUD = join(ROOT, 'examples/card-fraud');
const LOANS = readFileSync(join(CREDIT, 'lending_club.csv'), 'utf8').split('\n');
const TOKEN = 's3cret-token-0123456789';

/** Runs `rtml` without blocking this process (a stub server here must answer it). */
function rtml(args: string[], env: Record<string, string> = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/rtml.mjs'), ...args], { cwd: ROOT, env: { ...process.env, RTML_TOKEN: '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

function file(dir: string, name: string, text: string): string {
  writeFileSync(join(dir, name), text);
  return join(dir, name);
}

/** Outcomes of the first n lending_club loans, for decisions `prefix-0`, `prefix-1`, ... */
const outcomesCsv = (prefix: string, n: number) => ['id,label', ...LOANS.slice(1, n + 1).map((line, i) => `${prefix}-${i},${line.split(',').at(-1)!.replaceAll('"', '')}`)].join('\n') + '\n';

describe('a client command names the server it cannot reach, exit 2', () => {
  it('rtml outcomes, simulate and ingest', async () => {
    const dir = tempDir();
    const url = `http://127.0.0.1:${await closedPort()}`;
    const loans = file(dir, 'loans.csv', LOANS.slice(0, 11).join('\n') + '\n');
    const events = file(dir, 'events.csv', readFileSync(join(FRAUD, 'data/transactions.csv'), 'utf8').split('\n').slice(0, 11).join('\n') + '\n');
    for (const args of [
      ['outcomes', CREDIT, '-i', file(dir, 'outcomes.csv', outcomesCsv('x', 5)), '--url', url],
      ['simulate', CREDIT, '-i', loans, '--url', url, '--limit', '5'],
      ['ingest', FRAUD, '--stream', 'transactions', '-i', events, '--url', url],
    ]) {
      const run = await rtml(args);
      assert.equal(run.status, 2, run.stderr);
      assert.equal(run.stderr, `rtml: cannot reach ${url} (connection refused): is rtml serve running there?\n`, args[0]);
    }
  });
});

describe('a client command sends its token and content type on every request, and reports refusals', () => {
  let stub: Server;
  let url: string;
  const seen: { method: string; path: string; authorization?: string; contentType?: string; body: string }[] = [];
  /** Answers like rtml serve once writes need a token: 401 without it. */
  let refuseEvents = false;
  before(async () => {
    stub = createServer(async (req: IncomingMessage, res) => {
      let body = '';
      for await (const chunk of req) body += chunk;
      seen.push({ method: req.method!, path: req.url!, authorization: req.headers.authorization, contentType: req.headers['content-type'], body });
      const answer = (status: number, json: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(json));
      };
      const write = req.method !== 'GET' && !req.url!.endsWith('/decisions');
      if (write && req.headers.authorization !== `Bearer ${TOKEN}`) return answer(401, { error: 'writes need a bearer token' });
      if (req.url!.endsWith('/decisions')) return answer(200, { decision: 'approve', fallback: { used: false, cause: null } });
      if (req.url!.endsWith('/monitoring')) return answer(200, { alerts: { active: [] }, safe_mode: { active: false } });
      // An item whose id starts with `refuse` is refused, as the server refuses what its own checks reject.
      if (req.url!.endsWith('/outcomes')) {
        const lines = body.trim().split('\n');
        const errors = lines.flatMap((l, i) => (JSON.parse(l).id.startsWith('refuse') ? [{ line: i + 1, message: 'label: must be one of good, bad' }] : []));
        return answer(200, { joined: lines.length - errors.length, unknown: [], errors });
      }
      if (req.url!.startsWith('/v1/events/')) {
        if (refuseEvents) return answer(400, { error: 'no valid event', errors: [{ index: 0, message: 'event_time: more than 5 minutes in the future' }] });
        const events = JSON.parse(body) as { txn_id: string }[];
        const errors = events.flatMap((e, index) => (e.txn_id.startsWith('refuse') ? [{ index, message: 'event_time: more than 5 minutes in the future' }] : []));
        return answer(200, { accepted: events.length - errors.length, duplicates: 0, late: 0, rejected: errors.length, errors });
      }
      if (req.url!.startsWith('/v1/entities/')) return answer(200, { fields: Object.keys(JSON.parse(body)) });
      answer(404, { error: 'not found' });
    }).listen(0, '127.0.0.1');
    await new Promise((r) => stub.once('listening', r));
    url = `http://127.0.0.1:${(stub.address() as AddressInfo).port}`;
  });
  after(() => new Promise((r) => stub.close(r)));

  it('sends `Authorization: Bearer` from --token-file or RTML_TOKEN, outcomes as JSON lines and events as a JSON array', async () => {
    const dir = tempDir();
    const tokenFile = file(dir, 'token', `${TOKEN}\n`);
    const customers = readFileSync(join(FRAUD, 'data/customers.csv'), 'utf8').split('\n').slice(0, 4).join('\n') + '\n';
    const events = readFileSync(join(FRAUD, 'data/transactions.csv'), 'utf8').split('\n').slice(0, 6).join('\n') + '\n';
    const runs = [
      await rtml(['outcomes', CREDIT, '-i', file(dir, 'outcomes.csv', outcomesCsv('x', 5)), '--url', url, '--token-file', tokenFile]),
      await rtml(['simulate', CREDIT, '-i', file(dir, 'loans.csv', LOANS.slice(0, 21).join('\n') + '\n'), '--url', url, '--limit', '20', '--rate', '0', '--label', 'Class', '--outcome-delay', '5', '--watch-every', '10'], { RTML_TOKEN: TOKEN }),
      await rtml(['ingest', FRAUD, '--stream', 'transactions', '-i', file(dir, 'events.csv', events), '--url', url], { RTML_TOKEN: TOKEN }),
      await rtml(['ingest', FRAUD, '--entity', 'customer', '-i', file(dir, 'customers.csv', customers), '--url', url, '--token-file', tokenFile]),
    ];
    for (const run of runs) assert.equal(run.status, 0, run.stderr);
    assert.match(runs[0].stderr, /5 outcomes: 5 joined/);
    assert.equal(JSON.parse(runs[1].stdout).outcomesPosted, 20);
    assert.match(runs[2].stderr, /5 rows: 5 accepted/);
    assert.match(runs[3].stderr, /3 rows: 3 accepted/);

    const kinds = new Set(seen.map((r) => `${r.method} ${r.path.replace(/\/(x-|u)\w+$/, '/…')} ${r.contentType ?? '-'}`));
    assert.deepEqual([...kinds].sort(), [
      'GET /v1/services/credit/monitoring -',
      'POST /v1/events/transactions application/json',
      'POST /v1/services/credit/decisions application/json',
      'POST /v1/services/credit/outcomes application/x-ndjson',
      'PUT /v1/entities/customer/… application/json',
    ]);
    assert.ok(seen.every((r) => r.authorization === `Bearer ${TOKEN}`), 'every request carries the token');
    assert.ok(Array.isArray(JSON.parse(seen.find((r) => r.path === '/v1/events/transactions')!.body)));
  });

  it('says the server needs a token (401 or 403), and reports any other refusal with its status and message; exit 2', async () => {
    const dir = tempDir();
    const noToken = await rtml(['outcomes', CREDIT, '-i', file(dir, 'outcomes.csv', outcomesCsv('x', 5)), '--url', url]);
    assert.equal(noToken.status, 2);
    assert.equal(noToken.stderr, `rtml: ${url} answered 401 to POST /v1/services/credit/outcomes (writes need a bearer token): the server needs a token for outcomes: --token-file or RTML_TOKEN\n`);
    const wrong = await rtml(['outcomes', CREDIT, '-i', join(dir, 'outcomes.csv'), '--url', url], { RTML_TOKEN: 'not-it' });
    assert.equal(wrong.status, 2);
    assert.match(wrong.stderr, /answered 401 to POST \/v1\/services\/credit\/outcomes \(writes need a bearer token\): check --token-file or RTML_TOKEN\n$/);

    refuseEvents = true;
    const events = readFileSync(join(FRAUD, 'data/transactions.csv'), 'utf8').split('\n').slice(0, 3).join('\n') + '\n';
    const refused = await rtml(['ingest', FRAUD, '--stream', 'transactions', '-i', file(dir, 'events.csv', events), '--url', url], { RTML_TOKEN: TOKEN });
    refuseEvents = false;
    assert.equal(refused.status, 2, refused.stderr);
    assert.match(refused.stderr, new RegExp(`rtml: ${url} answered 400 to POST /v1/events/transactions: no valid event; event_time: more than 5 minutes in the future\\n$`));

    // Items the server refuses in a 200 answer are invalid rows, at their line in the file: exit 1.
    const someRefused = await rtml(['outcomes', CREDIT, '-i', file(dir, 'some.csv', 'id,label\nx-1,bad\nrefuse-2,bad\nx-3,good\n'), '--url', url], { RTML_TOKEN: TOKEN });
    assert.equal(someRefused.status, 1, someRefused.stderr);
    assert.equal(someRefused.stderr, 'line 3: the server refused it: label: must be one of good, bad\n3 outcomes: 2 joined, 0 for unknown decisions, 1 invalid\n');
    const events2 = ['txn_id,card_id,event_time,amount,merchant_id', 'e1,c1,2026-01-01T00:00:00Z,1,m1', 'refuse-2,c1,2026-01-01T00:00:01Z,1,m1'].join('\n');
    const someEvents = await rtml(['ingest', FRAUD, '--stream', 'transactions', '-i', file(dir, 'some-events.csv', events2), '--url', url], { RTML_TOKEN: TOKEN });
    assert.equal(someEvents.status, 1, someEvents.stderr);
    assert.equal(someEvents.stderr, 'line 3: the server refused it: event_time: more than 5 minutes in the future\n2 rows: 1 accepted, 0 duplicates, 0 late, 1 invalid\n');

    const missing = await rtml(['outcomes', CREDIT, '-i', join(dir, 'outcomes.csv'), '--url', url, '--token-file', join(dir, 'nope')]);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /rtml: cannot read --token-file .*nope: ENOENT/);
  });
});

describe('against rtml serve, with its token', () => {
  let server: RunningServer;
  before(async () => {
    const repository = creditRepository();
    cpSync(FRAUD, join(repository, 'card-fraud'), { recursive: true, filter: (src) => !/\/(data|out)$/.test(src) });
    server = await startServer({ repository, env: { RTML_ADMIN_TOKEN: TOKEN } });
  });
  after(async () => {
    await server.stop();
  });

  it('simulates decisions and posts their outcomes, then joins more from a file; ingests events and entities', async () => {
    const dir = tempDir();
    const tokenFile = file(dir, 'token', TOKEN);
    const sim = await rtml(['simulate', CREDIT, '-i', file(dir, 'loans.csv', LOANS.slice(0, 41).join('\n') + '\n'), '--url', server.url, '--token-file', tokenFile, '--limit', '40', '--rate', '0', '--label', 'Class', '--outcome-delay', '10', '--id-prefix', 'sim', '--watch-every', '0']);
    assert.equal(sim.status, 0, sim.stderr);
    const summary = JSON.parse(sim.stdout);
    assert.deepEqual(summary.statuses, { 200: 40 });
    assert.equal(summary.outcomesPosted, 40);

    // The same decisions' outcomes again from a file: each joins (the latest wins).
    const outcomes = await rtml(['outcomes', CREDIT, '-i', file(dir, 'outcomes.csv', outcomesCsv('sim', 40)), '--url', server.url], { RTML_TOKEN: TOKEN });
    assert.equal(outcomes.status, 0, outcomes.stderr);
    assert.match(outcomes.stderr, /40 outcomes: 40 joined, 0 for unknown decisions, 0 invalid/);

    const now = Date.now();
    const events = ['txn_id,card_id,event_time,amount,merchant_id,merchant_category', ...[0, 1, 2].map((i) => `e${i},c1,${new Date(now - (3 - i) * 60_000).toISOString()},${10 + i},m${i},coffee`)].join('\n') + '\n';
    const ingested = await rtml(['ingest', FRAUD, '--stream', 'transactions', '-i', file(dir, 'events.csv', events), '--url', server.url, '--token-file', tokenFile]);
    assert.equal(ingested.status, 0, ingested.stderr);
    assert.match(ingested.stderr, /3 rows: 3 accepted, 0 duplicates, 0 late, 0 invalid/);
    const entities = await rtml(['ingest', FRAUD, '--entity', 'customer', '-i', file(dir, 'customers.csv', 'customer_id,account_age_days,home_region\nu1,400,west\n'), '--url', server.url, '--token-file', tokenFile]);
    assert.equal(entities.status, 0, entities.stderr);

    // The next decision on that card and customer reads them.
    assert.equal((await server.post('/v1/services/card-fraud/decisions', { id: 'after-ingest', card_id: 'c1', customer_id: 'u1', amount: 20, merchant_category: 'coffee' })).status, 200);
    const logged = await (await fetch(`${server.url}/v1/services/card-fraud/decisions/after-ingest`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
    assert.deepEqual(logged.features.txn_count_10m, { status: 'present', value: 3 });
    assert.deepEqual(logged.features.account_age_days, { status: 'present', value: 400 });
  });
});

describe('a client command checks its input file as rtml score does', () => {
  it('names a misspelt column of rtml outcomes, ingest (events or entities) and simulate input, exit 2, before sending anything', async () => {
    const dir = tempDir();
    const url = `http://127.0.0.1:${await closedPort()}`;
    const events = readFileSync(join(FRAUD, 'data/transactions.csv'), 'utf8').split('\n').slice(0, 4).join('\n') + '\n';
    for (const [args, expected] of [
      [['outcomes', CREDIT, '-i', file(dir, 'outcomes.csv', 'ID,Label\nx-1,bad\n'), '--url', url], /outcomes\.csv: has column "ID": did you mean id\?; has column "Label": did you mean label\?/],
      [['outcomes', CREDIT, '-i', file(dir, 'timed.csv', 'id,label,Time\nx-1,bad,2026-01-01T00:00:00Z\n'), '--url', url], /timed\.csv: has column "Time": did you mean time\?/],
      [['ingest', FRAUD, '--stream', 'transactions', '-i', file(dir, 'events.csv', events.replace('merchant_id', 'merchantId')), '--url', url], /events\.csv: has column "merchantId": did you mean merchant_id\?/],
      [['ingest', FRAUD, '--entity', 'customer', '-i', file(dir, 'customers.csv', 'customer_id,home-region\nu1,west\n'), '--url', url], /customers\.csv: has column "home-region": did you mean home_region\?/],
      [['simulate', CREDIT, '-i', file(dir, 'loans.csv', [LOANS[0].replace('"int_rate"', '"Int_Rate"'), ...LOANS.slice(1, 5)].join('\n') + '\n'), '--url', url], /loans\.csv: has column "Int_Rate": did you mean int_rate\?/],
      [['simulate', CREDIT, '-i', file(dir, 'unlabelled.csv', LOANS.slice(0, 5).join('\n').replaceAll(',"good"', '').replaceAll(',"bad"', '').replace(',"Class"', '') + '\n'), '--url', url, '--label', 'Class'], /unlabelled\.csv: has no column Class \(the label to post as the outcome \(--label\)\)/],
    ] as const) {
      const run = await rtml([...args]);
      assert.equal(run.status, 2, `${args[0]}: ${run.stderr}`);
      assert.match(run.stderr, expected);
    }
  });
});
