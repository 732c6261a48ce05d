/**
 * HTTP feature sources: a field of another service's JSON answer, fetched per request under
 * the feature deadline. Whatever that service does (answers slowly, fails, answers nonsense or
 * a gigabyte), the decision goes on with the feature's default and a status that says why;
 * a request value never steers the call outside the configured path.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { manifestSchema } from '../src/bundle/manifest.ts';
import { buildResolver, MAX_HTTP_SOURCE_BYTES } from '../src/features/resolve.ts';

describe('HTTP feature sources', () => {
  let service: Server;
  let base: string;
  const seen: string[] = [];
  before(async () => {
    service = createServer((req, res) => {
      seen.push(req.url ?? '');
      const path = (req.url ?? '').split('/');
      const answer = (status: number, body: string, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(body);
      };
      switch (path[1]) {
        case 'risk':
          return answer(200, JSON.stringify({ score: Number(decodeURIComponent(path[2])) / 100, merchant: decodeURIComponent(path[2]) }));
        case 'slow':
          return void setTimeout(() => answer(200, '{"score":0.5}'), 500);
        case 'down':
          return answer(503, '{"error":"down"}');
        case 'words':
          return answer(200, '{"score":"high"}');
        case 'range':
          return answer(200, '{"score":7}');
        case 'array':
          return answer(200, '[0.5]');
        case 'proto':
          return answer(200, '{"other":1}');
        case 'huge': {
          // Announced, then streamed without a length.
          if (path[2] === 'announced') return answer(200, '{"score":0.5}'.padEnd(MAX_HTTP_SOURCE_BYTES + 10, ' '));
          res.writeHead(200, { 'content-type': 'application/json' });
          const chunk = ' '.repeat(64 * 1024);
          let sent = 0;
          const more = () => {
            while (sent < 4 * MAX_HTTP_SOURCE_BYTES) {
              sent += chunk.length;
              if (!res.write(chunk)) return void res.once('drain', more);
            }
            res.end('{"score":0.5}');
          };
          return more();
        }
        default:
          return answer(404, '{}');
      }
    });
    await new Promise<void>((r) => service.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(service.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => service.close(() => r())));

  const resolverFor = (path: string, timeoutMs = 200) => {
    const manifest = manifestSchema.parse({
      name: 'h',
      version: '1',
      features: [
        { name: 'merchant_id', type: 'category', values: ['m1'], on_unknown: 'missing' },
        { name: 'risk', type: 'number', min: 0, max: 1, default: 0.5, source: { http: `${base}${path}`, field: 'score', timeout_ms: timeoutMs } },
      ],
      sources: { deadline_ms: 300 },
    });
    const { resolver, problems } = buildResolver(manifest, manifest.features!);
    assert.deepEqual(problems, []);
    return resolver!;
  };
  const resolveOne = async (path: string, request: Record<string, unknown>, timeoutMs?: number) => {
    const { row, status } = await resolverFor(path, timeoutMs).resolve(request, Date.now(), null);
    return { value: row.risk, status: status.risk };
  };

  it('serves the field of the answer, with the request value URL-encoded into the path', async () => {
    assert.deepEqual(await resolveOne('/risk/{merchant_id}', { merchant_id: '42' }), { value: 0.42, status: 'present' });
    await resolveOne('/risk/{merchant_id}', { merchant_id: '4 2/x?y' });
    assert.equal(seen.at(-1), '/risk/4%202%2Fx%3Fy');
  });

  it('times out, fails and reads nonsense as the default with the status saying why', async () => {
    assert.deepEqual(await resolveOne('/slow', {}, 50), { value: 0.5, status: 'timeout' });
    assert.deepEqual(await resolveOne('/down', {}), { value: 0.5, status: 'error' });
    // Not the caller's fault, so not a 400 for the caller: the source failed.
    assert.deepEqual(await resolveOne('/words', {}), { value: 0.5, status: 'error' });
    assert.deepEqual(await resolveOne('/range', {}), { value: 0.5, status: 'error' });
    assert.deepEqual(await resolveOne('/array', {}), { value: 0.5, status: 'error' });
    assert.deepEqual(await resolveOne('/proto', {}), { value: 0.5, status: 'default' });
  });

  it(`refuses an answer larger than ${MAX_HTTP_SOURCE_BYTES} bytes, announced or streamed, without reading it all`, async () => {
    const heapBefore = process.memoryUsage().heapUsed;
    assert.deepEqual(await resolveOne('/huge/announced', {}, 2000), { value: 0.5, status: 'error' });
    assert.deepEqual(await resolveOne('/huge/streamed', {}, 2000), { value: 0.5, status: 'error' });
    assert.ok(process.memoryUsage().heapUsed - heapBefore < 3 * MAX_HTTP_SOURCE_BYTES);
  });

  it('never lets a request value climb out of the configured path, and asks nothing for a missing one', async () => {
    const before = seen.length;
    for (const climb of ['..', '.', '%2e%2e', '.%2E']) {
      assert.deepEqual(await resolveOne('/risk/{merchant_id}/detail', { merchant_id: climb }), { value: 0.5, status: 'error' }, climb);
    }
    assert.deepEqual(await resolveOne('/risk/{merchant_id}', {}), { value: 0.5, status: 'missing' });
    assert.deepEqual(await resolveOne('/risk/{merchant_id}', { merchant_id: { nested: 1 } }), { value: 0.5, status: 'error' });
    assert.equal(seen.length, before, `requests made: ${seen.slice(before).join(', ')}`);
  });
});
