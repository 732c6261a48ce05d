/**
 * The baseline for `bench/http.ts`: a bare fastify server (the same fastify rtml uses) with
 * one route, `POST /bare`, that parses the JSON body with fastify's default parser and answers
 * a small constant JSON object. Everything rtml does on top of this (validation, model,
 * policy, decision log, metrics, concurrency limit) is what the HTTP benchmark measures.
 *
 *     node --import tsx bench/bare-server.ts [port]
 *
 * Listens on 127.0.0.1 (port 0 by default) and prints `Server listening at http://…` on stdout.
 * The logger is configured like rtml's under `--log-level warn` (pino, per-request child
 * loggers, nothing printed per request), so the comparison isolates rtml's own work.
 */
import Fastify from 'fastify';

const port = Number(process.argv[2] ?? 0);
const app = Fastify({ logger: { level: 'warn' }, bodyLimit: 1024 * 1024 });

let seen = 0;
app.post('/bare', async (request) => {
  // Touch the parsed body so the parse cannot be skipped; answer a constant-shaped object.
  if (typeof request.body === 'object' && request.body !== null) seen++;
  return { ok: true, n: seen };
});

const shutdown = () => {
  app.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);

const url = await app.listen({ port, host: '127.0.0.1' });
process.stdout.write(`Server listening at ${url}\n`);
