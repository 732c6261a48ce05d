/**
 * The server under more load than it can take, and told to stop: a real `rtml serve` process.
 * Every request gets an answer, 200 or 503 with Retry-After (never a socket error), health
 * probes keep answering, slow clients are cut off, and SIGTERM drains without losing or
 * resetting an accepted request. Outcomes, not figures (bench/overload.ts has the figures):
 * the only time asserted is a bound 15x the timeout under test.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import { openSqliteDecisionLog } from '../src/log/sqlite.ts';
import { lendingClubRows, startServer, type RunningServer } from './helpers/server.ts';

const DECISIONS = '/v1/services/credit/decisions';

interface Answer {
  status: number;
  retryAfter: string | null;
  connection: string | null;
  body: string;
  /** The request went out on a kept-alive connection. */
  reused: boolean;
}

/** One request with node:http: `agent` decides the connection (a keep-alive agent, or false for a new one). */
function send(url: string, path: string, options: { body?: string; agent?: http.Agent | false } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url + path,
      {
        method: options.body === undefined ? 'GET' : 'POST',
        agent: options.agent ?? false,
        headers: options.body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(options.body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: res.headers['retry-after'] ?? null,
            connection: res.headers.connection ?? null,
            body: Buffer.concat(chunks).toString(),
            reused: req.reusedSocket,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

const errorCode = (err: unknown) => (err as NodeJS.ErrnoException).code ?? String(err);

/** The address `--probe-port` printed. */
async function probeUrl(server: RunningServer): Promise<string> {
  for (let i = 0; i < 200; i++) {
    for (const line of server.logs) {
      const m = /Probes listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
      if (m) return m[1];
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no probe listener in the logs:\n${server.logs.join('\n')}`);
}

describe('overload and shutdown', () => {
  it('refuses scoring before reading the body: 503 + Retry-After even for a body that would not parse', async () => {
    const server = await startServer({ args: ['--max-in-flight', '0'] });
    try {
      const refused = await send(server.url, DECISIONS, { body: '{"not json' });
      assert.equal(refused.status, 503, refused.body);
      assert.equal(refused.retryAfter, '1');
      assert.match(JSON.parse(refused.body).error, /overloaded/);
      // Health is never refused.
      assert.equal((await send(server.url, '/v2/health/ready')).status, 200);
    } finally {
      await server.stop();
    }
  });

  it('answers a burst of 300 connections with 200 or 503 + Retry-After only, turns away connections past the limit, and keeps health answering', async () => {
    const server = await startServer({ args: ['--max-in-flight', '8', '--max-connections', '100', '--probe-port', '0'] });
    try {
      const probes = await probeUrl(server);
      const rows = await lendingClubRows(300);
      const answers: Answer[] = [];
      const errors: string[] = [];
      // 300 clients at once, each on its own keep-alive connection, 5 decisions each.
      const clients = rows.map(async (row) => {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        try {
          for (let i = 0; i < 5; i++) answers.push(await send(server.url, DECISIONS, { body: JSON.stringify(row), agent }));
        } catch (err) {
          errors.push(errorCode(err));
        } finally {
          agent.destroy();
        }
      });
      // Health probes on new connections, as a load balancer sends them, on both ports, during the burst.
      let bursting = true;
      const health: string[] = [];
      const prober = (async () => {
        while (bursting) {
          for (const [url, path] of [
            [server.url, '/v2/health/live'],
            [server.url, '/v2/health/ready'],
            [probes, '/v2/health/ready'],
          ]) {
            health.push(await send(url, path).then((a) => String(a.status), errorCode));
          }
        }
      })();
      await Promise.all(clients);
      bursting = false;
      await prober;

      assert.deepEqual(errors, [], 'socket errors');
      assert.equal(answers.length, 1500);
      const unexpected = answers.filter((a) => !(a.status === 200 || (a.status === 503 && a.retryAfter === '1')));
      assert.deepEqual(unexpected.slice(0, 3), [], `${unexpected.length} answers neither 200 nor 503 + Retry-After`);
      assert.ok(answers.some((a) => a.status === 200));
      const turnedAway = answers.filter((a) => a.status === 503 && a.connection === 'close');
      assert.ok(turnedAway.length > 0, 'connections past --max-connections are told to go');
      assert.match(JSON.parse(turnedAway[0].body).error, /connections/);
      assert.ok(answers.some((a) => a.status === 503 && a.connection !== 'close'), 'past --max-in-flight the connection stays open');
      assert.ok(health.length >= 3 && health.every((s) => s === '200'), `health during the burst: ${JSON.stringify(health)}`);
      // The probe port serves the probes and nothing else.
      assert.equal((await send(probes, '/v1/services')).status, 404);

      const metrics = (await send(server.url, '/metrics')).body;
      assert.match(metrics, /rtml_overload_rejections_total\{reason="connections"\} [1-9]/);
    } finally {
      await server.stop();
    }
  });

  it('cuts off clients that send their request too slowly, or nothing at all (slowloris)', async () => {
    const server = await startServer({ args: ['--request-timeout-ms', '1000'] });
    try {
      const { port } = new URL(server.url);
      const slow = (first: string, drip: string) =>
        new Promise<string>((resolve, reject) => {
          const socket = connect(Number(port), '127.0.0.1', () => socket.write(first));
          let answer = '';
          // One more byte every 200 ms keeps the connection busy, never finishing the request.
          const dripping = drip ? setInterval(() => socket.writable && socket.write(drip), 200) : null;
          socket.on('data', (d: Buffer) => (answer += d.toString()));
          socket.on('error', () => {}); // a reset after the 408 is a close too
          socket.on('close', () => {
            if (dripping) clearInterval(dripping);
            resolve(answer.split('\r\n')[0]);
          });
          // Far beyond the timeout (and Node's once-a-second check): still open means never cut off.
          setTimeout(() => {
            reject(new Error(`still open after 15 s: ${JSON.stringify(first)}`));
            socket.destroy();
          }, 15_000).unref();
        });
      const results = await Promise.all([
        slow('', ''),
        slow('POST /v1/services/credit/decisions HTTP/1.1\r\nhost: x\r\n', 'x'),
        slow('POST /v1/services/credit/decisions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{', ' '),
      ]);
      assert.deepEqual(results, ['HTTP/1.1 408 Request Timeout', 'HTTP/1.1 408 Request Timeout', 'HTTP/1.1 408 Request Timeout']);
    } finally {
      await server.stop();
    }
  });

  it('drains on SIGTERM: not ready, new requests 503 + Retry-After + close, in-flight ones answered and logged, no reset', async () => {
    const server = await startServer({ args: ['--drain-grace-ms', '1500'] });
    const rows = await lendingClubRows(200);
    const answered: string[] = [];
    const refusals: Answer[] = [];
    const errors: string[] = [];
    let n = 0;
    // Clients that keep sending until they are refused, as a client would before going elsewhere.
    const worker = async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        for (;;) {
          const id = `drain-${n++}`;
          const a = await send(server.url, DECISIONS, { body: JSON.stringify({ id, ...rows[n % rows.length] }), agent });
          if (a.status === 200) answered.push(id);
          else {
            refusals.push(a);
            return;
          }
        }
      } catch (err) {
        errors.push(errorCode(err));
      } finally {
        agent.destroy();
      }
    };
    // A client whose keep-alive connection sits idle when SIGTERM comes, then sends on it.
    const idle = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      assert.equal((await send(server.url, DECISIONS, { body: JSON.stringify(rows[0]), agent: idle })).status, 200);
      const workers = Array.from({ length: 16 }, worker);
      while (answered.length < 200 && errors.length === 0 && refusals.length === 0) await new Promise((r) => setTimeout(r, 10));

      const exited = server.stop();
      // Readiness until the listener closes: the signal turns it 503 (a probe may come first).
      const readiness: string[] = [];
      let draining = () => {};
      const drainSeen = new Promise<void>((resolve) => (draining = resolve));
      const watcher = (async () => {
        for (;;) {
          const status = await send(server.url, '/v2/health/ready').then((a) => String(a.status), errorCode);
          readiness.push(status);
          if (status === '503') draining();
          if (status !== '200' && status !== '503') return;
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      await drainSeen;
      const onIdle = await send(server.url, DECISIONS, { body: JSON.stringify(rows[1]), agent: idle });
      await Promise.all(workers);
      assert.equal(await exited, 0);
      await watcher;

      assert.deepEqual(errors, [], 'no request on an accepted connection was reset');
      assert.equal(refusals.length, 16);
      for (const r of refusals) {
        assert.equal(r.status, 503, r.body);
        assert.equal(r.retryAfter, '1');
        assert.equal(r.connection, 'close');
      }
      assert.ok(onIdle.reused, 'the idle keep-alive connection was still open');
      assert.deepEqual([onIdle.status, onIdle.retryAfter, onIdle.connection], [503, '1', 'close']);
      // Not ready from the signal on, until the listener closed: 200s, then 503s, then refused (or, for a
      // probe the kernel queued but the server never accepted, reset as the listener closes).
      assert.match(readiness.join(' '), /^(200 )*(503 )+(ECONNREFUSED|ECONNRESET)$/);

      const log = openSqliteDecisionLog(server.dataDir);
      try {
        for (const id of answered) assert.ok(await log.get('credit', id), `answered ${id} is not in the log`);
      } finally {
        await log.close();
      }
    } finally {
      idle.destroy();
      await server.kill();
    }
  });
});
