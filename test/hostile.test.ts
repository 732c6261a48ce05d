/**
 * The hostile-input suite: every route of the server, sent what a broken client or an
 * attacker sends. Whatever arrives, the server answers 4xx (or 2xx where the input is odd but
 * valid), never 5xx, never hangs, keeps its memory bounded and stays healthy.
 *
 * Every route the server registers must be listed in ROUTES below: a new endpoint fails the
 * first test until it joins the suite.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createServer, DEFAULT_CONFIG } from '../src/server/app.ts';
import { openSqliteDecisionLog } from '../src/log/sqlite.ts';
import { MAX_DEPTH } from '../src/server/bodies.ts';
import { parseEntityFields } from '../src/features/events.ts';
import { creditRepository, lendingClubRows, startServer, WRITE_TOKEN, type RunningServer } from './helpers/server.ts';
import { tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const ADMIN_TOKEN = 'hostile-admin-token-0123456789';
const AUTH = {
  admin: { authorization: `Bearer ${ADMIN_TOKEN}` },
  write: { authorization: `Bearer ${WRITE_TOKEN}` },
  decide: {},
  public: {},
} as const;

type Role = keyof typeof AUTH;
type BodyKind = 'none' | 'decision' | 'outcome' | 'bulk-outcomes' | 'events' | 'entity' | 'infer' | 'admin-json';

interface RouteSpec {
  /** A concrete path that reaches the handler (services that exist). */
  path: string;
  role: Role;
  body: BodyKind;
  /** Path parameters to replace with hostile text, as they appear in `path`. */
  params: string[];
}

/** Every route, keyed as the server lists them (`METHOD /url`). */
const ROUTES: Record<string, RouteSpec> = {
  'POST /v1/services/:name/decisions': { path: '/v1/services/credit/decisions', role: 'decide', body: 'decision', params: ['credit'] },
  'GET /v1/services': { path: '/v1/services', role: 'public', body: 'none', params: [] },
  'GET /v1/services/:name': { path: '/v1/services/credit', role: 'public', body: 'none', params: ['credit'] },
  'GET /v1/services/:name/decisions/:id': { path: '/v1/services/credit/decisions/known-1', role: 'admin', body: 'none', params: ['credit', 'known-1'] },
  'PUT /v1/services/:name/decisions/:id/outcome': { path: '/v1/services/credit/decisions/known-1/outcome', role: 'write', body: 'outcome', params: ['credit', 'known-1'] },
  'POST /v1/services/:name/outcomes': { path: '/v1/services/credit/outcomes', role: 'write', body: 'bulk-outcomes', params: ['credit'] },
  'PUT /v1/services/:name/kill-switch': { path: '/v1/services/multi/kill-switch', role: 'admin', body: 'admin-json', params: ['multi'] },
  'GET /v2/health/live': { path: '/v2/health/live', role: 'public', body: 'none', params: [] },
  'GET /v2/health/ready': { path: '/v2/health/ready', role: 'public', body: 'none', params: [] },
  'GET /v2': { path: '/v2', role: 'public', body: 'none', params: [] },
  'GET /v2/models/:name': { path: '/v2/models/credit', role: 'public', body: 'none', params: ['credit'] },
  'GET /v2/models/:name/versions/:version': { path: '/v2/models/credit/versions/1', role: 'public', body: 'none', params: ['credit', '1'] },
  'GET /v2/models/:name/ready': { path: '/v2/models/credit/ready', role: 'public', body: 'none', params: ['credit'] },
  'GET /v2/models/:name/versions/:version/ready': { path: '/v2/models/credit/versions/1/ready', role: 'public', body: 'none', params: ['credit', '1'] },
  'POST /v2/models/:name/infer': { path: '/v2/models/credit/infer', role: 'decide', body: 'infer', params: ['credit'] },
  'POST /v2/models/:name/versions/:version/infer': { path: '/v2/models/credit/versions/1/infer', role: 'decide', body: 'infer', params: ['credit', '1'] },
  'GET /v2/models/stats': { path: '/v2/models/stats', role: 'public', body: 'none', params: [] },
  'GET /v2/models/:name/stats': { path: '/v2/models/credit/stats', role: 'public', body: 'none', params: ['credit'] },
  'GET /v2/models/:name/versions/:version/stats': { path: '/v2/models/credit/versions/1/stats', role: 'public', body: 'none', params: ['credit', '1'] },
  'POST /v2/repository/index': { path: '/v2/repository/index', role: 'admin', body: 'admin-json', params: [] },
  'POST /v2/repository/models/:name/load': { path: '/v2/repository/models/multi/load', role: 'admin', body: 'admin-json', params: ['multi'] },
  'POST /v2/repository/models/:name/unload': { path: '/v2/repository/models/nothing-here/unload', role: 'admin', body: 'admin-json', params: ['nothing-here'] },
  'GET /v1/services/:name/monitoring': { path: '/v1/services/credit/monitoring', role: 'public', body: 'none', params: ['credit'] },
  'PUT /v1/services/:name/safe-mode': { path: '/v1/services/credit/safe-mode', role: 'admin', body: 'admin-json', params: ['credit'] },
  'POST /v1/services/:name/alerts/:id/acknowledge': { path: '/v1/services/credit/alerts/no-such-alert/acknowledge', role: 'admin', body: 'admin-json', params: ['credit', 'no-such-alert'] },
  'POST /v1/events/:stream': { path: '/v1/events/transactions', role: 'write', body: 'events', params: ['transactions'] },
  'PUT /v1/entities/:type/:id': { path: '/v1/entities/customer/u1', role: 'write', body: 'entity', params: ['customer', 'u1'] },
  'GET /v1/services/:name/operations': { path: '/v1/services/credit/operations', role: 'admin', body: 'none', params: ['credit'] },
  'GET /v1/services/:name/rollout': { path: '/v1/services/credit/rollout', role: 'public', body: 'none', params: ['credit'] },
  'PUT /v1/services/:name/rollout': { path: '/v1/services/credit/rollout', role: 'admin', body: 'admin-json', params: ['credit'] },
  'POST /v1/services/:name/rollout/promote': { path: '/v1/services/credit/rollout/promote', role: 'admin', body: 'admin-json', params: ['credit'] },
  'POST /v1/services/:name/rollout/rollback': { path: '/v1/services/credit/rollout/rollback', role: 'admin', body: 'admin-json', params: ['credit'] },
  'GET /metrics': { path: '/metrics', role: 'public', body: 'none', params: [] },
  'GET /': { path: '/', role: 'public', body: 'none', params: [] },
  'GET /ui/:file': { path: '/ui/app.js', role: 'public', body: 'none', params: ['app.js'] },
  'GET /v1/dashboard/overview': { path: '/v1/dashboard/overview', role: 'public', body: 'none', params: [] },
  'GET /v1/services/:name/history': { path: '/v1/services/credit/history?minutes=60', role: 'public', body: 'none', params: ['credit'] },
  'GET /v1/dashboard/services/:name/distributions': { path: '/v1/dashboard/services/credit/distributions?window=5m', role: 'public', body: 'none', params: ['credit'] },
  'GET /v1/dashboard/services/:name/decisions/:id': { path: '/v1/dashboard/services/credit/decisions/known-1', role: 'admin', body: 'none', params: ['credit', 'known-1'] },
};

interface Answer {
  status: number;
  body: string;
  ms: number;
  headers: Record<string, string | string[] | undefined>;
}

/** One request over a fresh connection, with any bytes, headers and path; never rejects on an HTTP status. */
function send(base: string, method: string, path: string, body: Buffer | string | null, headers: Record<string, string> = {}, timeoutMs = 15_000): Promise<Answer> {
  const url = new URL(base);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: url.hostname, port: url.port, method, path, headers: { connection: 'close', ...(body !== null ? { 'content-length': String(Buffer.byteLength(body)) } : {}), ...headers }, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= 1 << 20) chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), ms: performance.now() - started, headers: res.headers }));
        res.on('error', reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer in ${timeoutMs} ms: ${method} ${path.slice(0, 120)}`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      // A server may answer (413) and close before it has read a body it refuses: the answer
      // still arrives, so a broken pipe while writing waits for it a moment.
      const failed = new Error(`${method} ${path.slice(0, 120)} (${body === null ? 0 : Buffer.byteLength(body)}-byte body, ${JSON.stringify(headers).slice(0, 120)}): ${err.message}`);
      if (err.code === 'EPIPE' || err.code === 'ECONNRESET') setTimeout(() => reject(failed), 2000).unref();
      else reject(failed);
    });
    // Written in slices, stopping once an answer arrives: a server refuses an oversize body
    // (413) before reading it all, and a client that kept writing would lose the answer.
    let answered = false;
    req.once('response', () => (answered = true));
    const bytes = body === null ? null : Buffer.from(body);
    void (async () => {
      for (let at = 0; bytes !== null && at < bytes.length && !answered && !req.destroyed; at += 1 << 16) {
        if (!req.write(bytes.subarray(at, at + (1 << 16)))) await new Promise((r) => req.once('drain', r).once('close', r));
      }
      if (!req.destroyed) req.end();
    })();
  });
}

/** Raw bytes on a socket, for requests an HTTP client refuses to send; resolves with the status line. */
function sendRaw(base: string, bytes: string): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    let received = '';
    socket.setTimeout(15_000, () => socket.destroy(new Error('no answer in 15 s')));
    socket.on('data', (d) => (received += d.toString('latin1')));
    socket.on('end', () => resolve(received.split('\r\n')[0]));
    socket.on('close', () => resolve(received.split('\r\n')[0]));
    socket.on('error', (err) => (received ? resolve(received.split('\r\n')[0]) : reject(err)));
    socket.write(bytes);
  });
}

const nest = (depth: number, leaf = '1', open = '[', close = ']') => open.repeat(depth) + leaf + close.repeat(depth);

/** A valid body of each kind, the base the hostile variants start from. */
function validBody(kind: BodyKind, row: Record<string, unknown>): unknown {
  switch (kind) {
    case 'decision':
      return row;
    case 'outcome':
      return { label: 'bad' };
    case 'bulk-outcomes':
      return [{ id: 'known-1', label: 'good' }];
    case 'events':
      return { txn_id: 'h1', card_id: 'c1', event_time: new Date().toISOString(), amount: 10, merchant_id: 'm1', merchant_category: 'coffee' };
    case 'entity':
      return { account_age_days: 100 };
    case 'infer':
      return { inputs: Object.entries(row).map(([name, v]) => ({ name, datatype: typeof v === 'number' ? 'FP64' : 'BYTES', shape: [1], data: [v] })) };
    case 'admin-json':
      return {};
    case 'none':
      return null;
  }
}

/** Hostile bodies: [category, raw text or value, content type]. */
function hostileBodies(kind: BodyKind, row: Record<string, unknown>): [string, string, string][] {
  const json = 'application/json';
  const valid = validBody(kind, row);
  const field = kind === 'decision' ? 'annual_inc' : kind === 'events' ? 'amount' : kind === 'entity' ? 'account_age_days' : 'label';
  const withField = (text: string) => {
    const base = JSON.stringify(Array.isArray(valid) ? valid[0] : valid);
    const obj = base.slice(0, -1) + (base === '{}' ? '' : ',') + `${JSON.stringify(field)}:${text}}`;
    return Array.isArray(valid) ? `[${obj}]` : obj;
  };
  const cases: [string, string, string][] = [
    ['malformed JSON', '{not json', json],
    ['malformed JSON', '{"a":1', json],
    ['malformed JSON', '{"a":1}}', json],
    ['malformed JSON', "{'a':1}", json],
    ['malformed JSON', 'NaN', json],
    ['malformed JSON', '', json],
    ['malformed JSON', '\u0000\u0001\u0002', json],
    ['wrong type', '[1,2,3]', json],
    ['wrong type', '"text"', json],
    ['wrong type', 'null', json],
    ['wrong type', 'true', json],
    ['wrong type', '42', json],
    ['wrong type', withField('{"nested":true}'), json],
    ['wrong type', withField('[1,2]'), json],
    ['non-finite and huge numbers', withField('1e309'), json],
    ['non-finite and huge numbers', withField('-1e309'), json],
    ['non-finite and huge numbers', withField('1e308'), json],
    ['non-finite and huge numbers', withField('123456789012345678901234567890'), json],
    ['non-finite and huge numbers', withField('-0'), json],
    ['huge strings', withField(JSON.stringify('x'.repeat(900_000))), json],
    ['huge strings', `{${JSON.stringify('k'.repeat(900_000))}:1}`, json],
    ['deep nesting', nest(MAX_DEPTH + 1), json],
    ['deep nesting', nest(10_000), json],
    ['deep nesting', nest(100_000, '1', '{"a":', '}'), json],
    ['deep nesting', withField(nest(5_000)), json],
    ['deep nesting', withField(nest(20, '1', '{"a":', '}')), json],
    ['prototype keys', '{"__proto__":{"admin":true}}', json],
    ['prototype keys', '{"constructor":{"prototype":{"admin":true}}}', json],
    ['prototype keys', withField('{"toString":1,"valueOf":2}'), json],
    ['prototype keys', '{"toString":1,"hasOwnProperty":2,"valueOf":3,"__defineGetter__":4}', json],
    ['lone surrogates', withField('"\\ud800"'), json],
    ['lone surrogates', '{"\\udfff":"\\ud800x"}', json],
    ['control characters', withField('"a\\u0000b\\u001b[31m"'), json],
    ['duplicate keys', withField('1').slice(0, -1) + `,${JSON.stringify(field)}:"again"}`, json],
    ['many keys', `{${Array.from({ length: 60_000 }, (_, i) => `"k${i}":1`).join(',')}}`, json],
    ['content types', JSON.stringify(valid), 'text/plain'],
    ['content types', JSON.stringify(valid), 'application/x-www-form-urlencoded'],
    ['content types', JSON.stringify(valid), 'multipart/form-data; boundary=x'],
    ['content types', JSON.stringify(valid), 'application/xml'],
    ['content types', JSON.stringify(valid), 'application/json; charset=latin1'],
    ['content types', JSON.stringify(valid), ''],
    ['content types', '{"a":1}\n{not json\n' + nest(5_000), 'application/x-ndjson'],
    ['oversize bodies', `{"pad":${JSON.stringify('x'.repeat(2 * 1024 * 1024))}}`, json],
  ];
  if (kind === 'infer') {
    const tensor = (t: object) => JSON.stringify({ inputs: [{ name: 'funded_amnt', datatype: 'INT64', ...t }] });
    cases.push(
      ['declared shapes larger than data', tensor({ shape: [100_000_000], data: [1] }), json],
      ['declared shapes larger than data', tensor({ shape: [10_000_000], data: [1] }), json],
      ['declared shapes larger than data', tensor({ shape: [4294967296], data: [1] }), json],
      ['declared shapes larger than data', tensor({ shape: [1e300], data: [1] }), json],
      ['declared shapes larger than data', tensor({ shape: [-1], data: [1] }), json],
      ['declared shapes larger than data', tensor({ shape: [1.5], data: [1] }), json],
      ['declared shapes larger than data', tensor({ shape: [1, 1, 1], data: [[[1]]] }), json],
      ['declared shapes larger than data', tensor({ shape: [2, 1000000], data: [1, 2] }), json],
      ['deep nesting', tensor({ shape: [1], data: JSON.parse(nest(MAX_DEPTH - 6)) }), json],
      ['deep nesting', `{"inputs":[{"name":"funded_amnt","datatype":"INT64","shape":[1],"data":${nest(10_000)}}]}`, json],
    );
  }
  return cases;
}

/** Hostile values for a path parameter. */
const HOSTILE_PARAMS = [
  'x'.repeat(300),
  '..%2f..%2f..%2fetc%2fpasswd',
  '%2e%2e',
  '..',
  '%00',
  'credit%00',
  '%zz',
  '__proto__',
  'constructor',
  'toString',
  '%F0%9F%92%A9',
  '%ED%A0%80',
  '%C0%AE%C0%AE',
  '<script>',
  'a%2Fb',
];

let server: RunningServer;
let row: Record<string, unknown>;
let rssPeakLimitKb = 0;
const tally = new Map<string, number>();
const fivexx: string[] = [];

function rssKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)![1]);
}

/** Sends one hostile request and checks the answer: no 5xx, an answer in time, bounded size, a JSON {error} with a 4xx. */
async function probe(category: string, method: string, path: string, body: string | null, headers: Record<string, string>): Promise<Answer> {
  const answer = await send(server.url, method, path, body, headers);
  tally.set(category, (tally.get(category) ?? 0) + 1);
  const what = `${category}: ${method} ${path.slice(0, 80)} ${body === null ? '' : body.slice(0, 60)}`;
  if (answer.status >= 500) fivexx.push(`${answer.status} ${what}: ${answer.body.slice(0, 200)}`);
  assert.ok(answer.status >= 200 && answer.status < 500, `${what} → ${answer.status} ${answer.body.slice(0, 300)}`);
  assert.ok(answer.body.length < 64 * 1024, `${what}: a ${answer.body.length}-byte answer`);
  if (category === 'oversize bodies') assert.equal(answer.status, 413, what);
  if (category === 'content types' && /^(text\/plain|application\/x-www|multipart|application\/xml|)$/.test(headers['content-type'] ?? '')) assert.ok(answer.status === 415 || answer.status === 401 || answer.status === 400, `${what} → ${answer.status}`);
  if (answer.status >= 400 && answer.status !== 431 /* Node's, without a body */) {
    assert.equal(typeof JSON.parse(answer.body).error, 'string', `${what}: ${answer.body.slice(0, 200)}`);
  }
  return answer;
}

describe('hostile input', () => {
  before(async () => {
    const repository = creditRepository();
    mkdirSync(join(repository, 'card-fraud'));
    for (const f of ['rtml.yaml', 'model.json', 'golden.jsonl', 'policy.yaml', 'reference.json']) cpSync(join(ROOT, 'examples/card-fraud', f), join(repository, 'card-fraud', f));
    cpSync(join(ROOT, 'test/fixtures/bundles/multi_softprob'), join(repository, 'multi'), { recursive: true });
    const manifest = join(repository, 'multi/rtml.yaml');
    writeFileSync(manifest, readFileSync(manifest, 'utf8').replace('name: multi_softprob', 'name: multi'));
    server = await startServer({ repository, env: { RTML_ADMIN_TOKEN: ADMIN_TOKEN } });
    row = (await lendingClubRows(1))[0];
    const known = await server.post('/v1/services/credit/decisions', { id: 'known-1', ...row });
    assert.equal(known.status, 200);
    rssPeakLimitKb = rssKb(server.process.pid!, 'VmHWM') + 700 * 1024;
  });
  after(async () => {
    await server?.stop();
  });

  it('covers every route the server has', async () => {
    const log = openSqliteDecisionLog(tempDir('rtml-hostile-log-'));
    const inProcess = await createServer({ ...DEFAULT_CONFIG, repository: server.repository, watchIntervalMs: 0, logLevel: 'silent' }, log);
    try {
      const missing = inProcess.routes.filter((r) => !(r in ROUTES));
      assert.deepEqual(missing, [], `routes without hostile-input cases: add them to ROUTES in test/hostile.test.ts`);
      const stale = Object.keys(ROUTES).filter((r) => !inProcess.routes.includes(r));
      assert.deepEqual(stale, [], 'ROUTES lists routes the server no longer has');
    } finally {
      await inProcess.close();
    }
  });

  describe('findings of the edge review, each a regression test', () => {
    it('answers 400 at once to a 104-byte infer request declaring 100,000,000 rows, and keeps its memory', async () => {
      const body = '{"inputs":[{"name":"funded_amnt","datatype":"INT64","shape":[100000000],"data":[1]}]}';
      const answer = await send(server.url, 'POST', '/v2/models/credit/infer', body, { 'content-type': 'application/json' });
      assert.equal(answer.status, 400);
      assert.ok(answer.ms < 2000, `${answer.ms} ms`);
      for (const shape of ['[10000000]', '[4294967296]']) {
        const a = await send(server.url, 'POST', '/v2/models/credit/infer', body.replace('[100000000]', shape), { 'content-type': 'application/json' });
        assert.equal(a.status, 400, shape);
      }
      assert.ok(rssKb(server.process.pid!, 'VmHWM') < rssPeakLimitKb, 'peak RSS grew by more than 700 MiB');
    });

    it('answers 400, not 500, to a feature value holding a toString key or arrays nested thousands deep', async () => {
      const toStringValue = await server.post('/v1/services/credit/decisions', { ...row, annual_inc: { toString: 'x' } });
      assert.equal(toStringValue.status, 400);
      assert.match((await toStringValue.json()).errors[0].message, /annual_inc must be a number, got an object/);
      const deep = await server.post('/v1/services/credit/decisions', `${JSON.stringify(row).slice(0, -1)},"annual_inc":${nest(5000)}}`);
      assert.equal(deep.status, 400);
      assert.match((await deep.json()).error, /more than 32 deep/);
      const shallowArray = await server.post('/v1/services/credit/decisions', { ...row, annual_inc: [[[[1]]]] });
      assert.equal(shallowArray.status, 400);
      const deepTensor = await server.post('/v2/models/credit/infer', `{"inputs":[{"name":"funded_amnt","datatype":"INT64","shape":[1],"data":${nest(10_000)}}]}`);
      assert.equal(deepTensor.status, 400);
      const deepEvent = await server.write('/v1/events/transactions', `{"txn_id":"d1","card_id":"c1","event_time":"${new Date().toISOString()}","amount":${nest(5000)}}`);
      assert.equal(deepEvent.status, 400);
    });

    it('needs the write token for outcomes, events and entities, and refuses text/plain and cross-origin writes', async () => {
      const outcome = (headers: Record<string, string>) => send(server.url, 'PUT', '/v1/services/credit/decisions/known-1/outcome', '{"label":"bad"}', { 'content-type': 'application/json', ...headers });
      assert.equal((await outcome({})).status, 401);
      assert.equal((await outcome({ authorization: 'Bearer wrong-token-0123456789' })).status, 401);
      assert.equal((await outcome({ authorization: `Bearer ${WRITE_TOKEN}x` })).status, 401);
      assert.equal((await outcome(AUTH.write)).status, 200);
      assert.equal((await outcome(AUTH.admin)).status, 200);
      for (const [path, method, body] of [
        ['/v1/services/credit/outcomes', 'POST', '{"id":"known-1","label":"bad"}'],
        ['/v1/events/transactions', 'POST', JSON.stringify(validBody('events', row))],
        ['/v1/entities/customer/u9', 'PUT', '{"account_age_days":3}'],
      ]) {
        assert.equal((await send(server.url, method, path, body, { 'content-type': 'application/json' })).status, 401, path);
        // What a page on another site can send without a preflight: a text/plain body.
        assert.equal((await send(server.url, method, path, body, { 'content-type': 'text/plain', ...AUTH.write })).status, 415, path);
        const crossSite = await send(server.url, method, path, body, { 'content-type': 'application/json', origin: 'https://evil.example', ...AUTH.write });
        assert.equal(crossSite.status, 403, path);
        assert.equal(crossSite.headers['access-control-allow-origin'], undefined);
      }
      const preflight = await send(server.url, 'OPTIONS', '/v1/services/credit/outcomes', null, { origin: 'https://evil.example', 'access-control-request-method': 'POST' });
      assert.ok(preflight.status >= 400 && preflight.headers['access-control-allow-origin'] === undefined, `preflight answered ${preflight.status}`);
      // Decisions stay public, as existing callers expect; from another site a browser may not post them either.
      assert.equal((await server.post('/v1/services/credit/decisions', row)).status, 200);
      assert.equal((await server.post('/v1/services/credit/decisions', row, { origin: 'https://evil.example' })).status, 403);
      assert.equal((await server.post('/v1/services/credit/decisions', row, { 'sec-fetch-site': 'cross-site' })).status, 403);
    });

    it('keeps the repository index for admins: why a bundle failed can quote its files', async () => {
      assert.equal((await server.post('/v2/repository/index', {})).status, 401);
      assert.equal((await server.post('/v2/repository/index', {}, AUTH.admin)).status, 200);
    });

    it('answers a body of unknown keys with a bounded warning list, and keeps junk out of the decision log', async () => {
      const many = Object.fromEntries(Array.from({ length: 900 }, (_, i) => [`junk_${i}`, i]));
      const res = await server.post('/v1/services/credit/decisions', { id: 'junk-1', ...row, ...many, blob: 'x'.repeat(500_000) });
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.ok(text.length < 8 * 1024, `${text.length}-byte answer`);
      const body = JSON.parse(text);
      assert.equal(body.warnings.length, 21);
      assert.equal(body.warnings[20].message, 'and 881 more fields that are not features of credit');
      const logged = await (await fetch(`${server.url}/v1/services/credit/decisions/junk-1`, { headers: AUTH.admin })).json();
      assert.deepEqual(Object.keys(logged.request).sort(), ['id', ...Object.keys(row)].sort());
      const tooMany = await server.post('/v1/services/credit/decisions', { ...row, ...Object.fromEntries(Array.from({ length: 60_000 }, (_, i) => [`k${i}`, 1])) });
      assert.equal(tooMany.status, 400);
      assert.ok((await tooMany.text()).length < 1024);
    });

    it('refuses a request that omits a nullable feature and carries a near-miss of it ("did you mean")', async () => {
      const { revol_util: _omitted, ...rest } = row;
      const res = await server.post('/v1/services/credit/decisions', { ...rest, Revol_Util: 55 });
      assert.equal(res.status, 400);
      const body = await res.json();
      assert.deepEqual(body.errors.map((e: { field: string; rule: string }) => `${e.field}:${e.rule}`), ['Revol_Util:unknown']);
      assert.match(body.errors[0].message, /did you mean revol_util\?/);
      const typo = await server.post('/v1/services/credit/decisions', { ...rest, revol_utl: 55 });
      assert.equal(typo.status, 400);
      // With the feature present, the same extra field is only reported.
      const both = await server.post('/v1/services/credit/decisions', { ...row, Revol_Util: 55 });
      assert.equal(both.status, 200);
      const event = await server.write('/v1/events/transactions', { ...(validBody('events', row) as object), txn_id: 'typo', amount: undefined, Amount: 5 });
      assert.equal(event.status, 400);
      assert.match(JSON.stringify(await event.json()), /did you mean amount/);
      const entity = await server.write('/v1/entities/customer/u7', { Account_Age_Days: 5 }, 'PUT');
      assert.equal(entity.status, 400);
      assert.match((await entity.json()).error, /did you mean account_age_days/);
    });

    it('answers 400 to an infer request that leaves out a nullable feature: every feature is an input', async () => {
      const full = validBody('infer', row) as { inputs: { name: string }[] };
      assert.equal((await server.post('/v2/models/credit/infer', full)).status, 200);
      const res = await server.post('/v2/models/credit/infer', { inputs: full.inputs.filter((t) => t.name !== 'revol_util') });
      assert.equal(res.status, 400);
      assert.match((await res.json()).error, /missing input revol_util/);
      const renamed = await server.post('/v2/models/credit/infer', { inputs: full.inputs.map((t) => (t.name === 'revol_util' ? { ...t, name: 'Revol_Util' } : t)) });
      assert.equal(renamed.status, 400);
      assert.match((await renamed.json()).error, /did you mean revol_util/);
    });

    it('computes realized performance once for a burst of public monitoring reads, not once per read', async () => {
      const states = await Promise.all(Array.from({ length: 20 }, async () => (await fetch(`${server.url}/v1/services/credit/monitoring`)).json()));
      const computed = new Set(states.map((s) => s.performance.computed_at));
      assert.ok(computed.size <= 2, `${computed.size} computations for 20 reads`);
    });

    it('refuses an entity field named __proto__ (from a file, where no JSON parser stops it) instead of dropping it', () => {
      const parsed = parseEntityFields(JSON.parse('{"__proto__": 5, "account_age_days": 3}'));
      assert.deepEqual(parsed, { ok: false, message: '__proto__ cannot be a field name' });
    });

    it('names the class a multi-class model without a policy decides, with every output', async () => {
      const res = await server.post('/v1/services/multi/decisions', { x0: 0.1, x1: -1, x2: 2, x3: 0, x4: 1, x5: 0.5, x6: -0.3 });
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.ok(['north', 'east', 'south', 'west'].includes(body.decision), body.decision);
      assert.equal(body.outputs.class, body.decision);
      assert.equal(body.score, body.outputs[`p_${body.decision}`]);
    });
  });

  describe('every route against every category', () => {
    it('answers no 5xx, within time and in bounded size, to hostile bodies, parameters and headers', async () => {
      const probes: Promise<unknown>[] = [];
      let maxHealthMs = 0;
      let probing = true;
      const health = (async () => {
        while (probing) {
          const a = await send(server.url, 'GET', '/v2/health/live', null, {}, 10_000);
          assert.equal(a.status, 200);
          maxHealthMs = Math.max(maxHealthMs, a.ms);
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      const run = async (jobs: (() => Promise<unknown>)[]) => {
        // A few at a time: the point is hostility, not load.
        const queue = [...jobs];
        await Promise.all(Array.from({ length: 4 }, async () => {
          for (let job = queue.shift(); job; job = queue.shift()) await job();
        }));
      };
      const jobs: (() => Promise<unknown>)[] = [];
      for (const [key, spec] of Object.entries(ROUTES)) {
        const method = key.split(' ')[0];
        const credentials = AUTH[spec.role];
        for (const value of HOSTILE_PARAMS) {
          for (const param of spec.params) {
            const body = spec.body === 'none' ? null : JSON.stringify(validBody(spec.body, row));
            jobs.push(() => probe('path parameters', method, spec.path.replace(param, value), body, { 'content-type': 'application/json', ...credentials }));
          }
        }
        jobs.push(() => probe('long URLs', method, `${spec.path}?${'q=1&'.repeat(1500)}`, spec.body === 'none' ? null : '{}', { 'content-type': 'application/json', ...credentials }));
        jobs.push(() => probe('query strings', method, `${spec.path}?__proto__[x]=1&constructor[prototype][y]=2&a=%zz`, spec.body === 'none' ? null : '{}', { 'content-type': 'application/json', ...credentials }));
        for (const auth of [{ authorization: 'Bearer ' }, { authorization: 'Basic YWRtaW46YWRtaW4=' }, { authorization: `Bearer ${'x'.repeat(8000)}` }, { authorization: 'Bearer \u00e9' }]) {
          jobs.push(() => probe('credentials', method, spec.path, spec.body === 'none' ? null : '{}', { 'content-type': 'application/json', ...auth }));
        }
        if (spec.body === 'none') continue;
        for (const [category, text, type] of hostileBodies(spec.body, row)) {
          // With credentials, so the hostile body reaches the handler; and once without.
          jobs.push(() => probe(category, method, spec.path, text, { ...(type ? { 'content-type': type } : {}), ...credentials }));
        }
        jobs.push(() => probe('credentials', method, spec.path, JSON.stringify(validBody(spec.body, row)), { 'content-type': 'application/json' }));
        jobs.push(() => probe('wrong methods', method === 'POST' ? 'DELETE' : 'PATCH', spec.path, '{}', { 'content-type': 'application/json', ...credentials }));
      }
      try {
        await run(jobs);
      } finally {
        probing = false;
        await health;
      }

      // Requests no well-behaved client library would send.
      for (const raw of [
        `GET /${'a'.repeat(70_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
        `POST /v1/services/credit/decisions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n{}`,
        `POST /v1/services/credit/decisions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nzz\r\n`,
        `GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`,
        `GET /v1/services/%ff%fe/ HTTP/1.1\r\nHost: x\r\n\r\n`,
        `BREW /v2 HTTP/1.1\r\nHost: x\r\n\r\n`,
      ]) {
        const status = await sendRaw(server.url, raw);
        tally.set('raw requests', (tally.get('raw requests') ?? 0) + 1);
        assert.doesNotMatch(status, /HTTP\/1\.1 5\d\d/, `${raw.slice(0, 80)} → ${status}`);
      }

      const total = [...tally.values()].reduce((a, b) => a + b, 0);
      console.log(`hostile suite: ${total} requests in ${tally.size} categories, ${fivexx.length} 5xx; health answered within ${maxHealthMs.toFixed(0)} ms at worst`);
      console.log([...tally].map(([c, n]) => `  ${c}: ${n}`).join('\n'));
      assert.deepEqual(fivexx, []);
      assert.ok(maxHealthMs < 5000, `health took ${maxHealthMs} ms`);
    });

    it('is still healthy and deciding afterwards, with bounded memory', async () => {
      assert.equal((await send(server.url, 'GET', '/v2/health/ready', null)).status, 200);
      const res = await server.post('/v1/services/credit/decisions', row);
      assert.equal(res.status, 200);
      assert.equal(server.process.exitCode, null);
      assert.ok(rssKb(server.process.pid!, 'VmHWM') < rssPeakLimitKb, `peak RSS ${rssKb(server.process.pid!, 'VmHWM')} kB`);
    });
  });
});
