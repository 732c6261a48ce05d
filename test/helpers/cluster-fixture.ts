/**
 * The real cluster primary of `rtml serve --workers` (src/cli/workers.ts `runPrimary`) with
 * stand-in workers, for test/workers.test.ts: until the PostgreSQL decision log is in the
 * build, `rtml serve` refuses several workers, so the primary's own duties (forking, restarts,
 * the crash-loop verdict, signals and drains) are tested with this small HTTP worker.
 *
 *     node --import tsx test/helpers/cluster-fixture.ts
 *
 * Environment: FIXTURE_PORT (required), FIXTURE_WORKERS (default 2), FIXTURE_CRASH=1 (every
 * worker exits 3 at once). A worker answers every request with its pid (body and x-rtml-pid),
 * `/slow` after 400 ms; on SIGTERM it prints `{"msg":"draining"}`, lets what is in flight
 * finish, and exits 0.
 */
import cluster from 'node:cluster';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { runPrimary } from '../../src/cli/workers.ts';

if (cluster.isPrimary) {
  const logger = pino({ base: { pid: process.pid, role: 'primary' } }, pino.destination({ dest: 1, sync: true }));
  process.exit(await runPrimary({ workers: Number(process.env.FIXTURE_WORKERS ?? 2), logger, exec: fileURLToPath(import.meta.url), args: [], execArgv: ['--import', 'tsx'] }));
} else if (process.env.FIXTURE_CRASH === '1') {
  process.exit(3);
} else {
  const server = createServer((request, response) => {
    const answer = () => {
      response.setHeader('x-rtml-pid', String(process.pid));
      response.end(JSON.stringify({ pid: process.pid }));
    };
    if (request.url === '/slow') setTimeout(answer, 400);
    else answer();
  });
  server.listen(Number(process.env.FIXTURE_PORT), '127.0.0.1');
  process.once('SIGTERM', () => {
    process.stdout.write(`${JSON.stringify({ msg: 'draining', pid: process.pid })}\n`);
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  });
}
