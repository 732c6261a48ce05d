/**
 * The server under more load than it can take, and told to stop: a real `rtml serve` process.
 * Every request gets an answer, 200 or 503 with Retry-After (never a socket error), health
 * probes keep answering, and slow clients are cut off.
 * No timing is asserted: these are outcomes, not figures (bench/overload.ts has the figures).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
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
});
