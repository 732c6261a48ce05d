/**
 * Feature ingestion: events onto the streams that aggregate features read, and entity
 * fields. Each event is checked against its stream's declaration in the loaded bundles;
 * a bad event is reported by position and the rest are ingested.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { entityFieldsRead, parseEntityFields, parseEvent, streamsOf } from '../../features/events.ts';
import type { StreamEvent } from '../../features/types.ts';
import type { ServerContext } from '../app.ts';
import { bulkItems, isJsonLines, MAX_LINES } from '../bodies.ts';

export function registerFeatureRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const streams = () => streamsOf(ctx.repository.list().map((s) => s.defaultVersion.bundle)).streams;

  app.post('/v1/events/:stream', { preHandler: ctx.auth.write }, async (request, reply) => {
    const { stream: name } = z.object({ stream: z.string() }).parse(request.params);
    const store = ctx.featureStore;
    if (!store) return reply.code(503).send({ error: 'no feature store is configured on this server' });
    const stream = streams().get(name);
    if (!stream) return reply.code(404).send({ error: `no loaded bundle declares a stream named ${JSON.stringify(name)}` });
    const body = request.body;
    const items = typeof body === 'object' && body !== null && !Array.isArray(body) && !isJsonLines(body) ? [{ line: 1, ok: true as const, value: body }] : bulkItems(body);
    if (!items) return reply.code(400).send({ error: `send one event (a JSON object), a JSON array of them, or JSON lines (content-type application/x-ndjson), at most ${MAX_LINES} a request` });
    const events: StreamEvent[] = [];
    const errors: { index: number; message: string }[] = [];
    items.forEach((item, index) => {
      const parsed = item.ok ? parseEvent(stream, item.value) : { ok: false as const, message: item.message };
      if (parsed.ok) events.push(parsed.event);
      else errors.push({ index, message: parsed.message });
    });
    if (events.length === 0) return reply.code(400).send({ error: 'no valid event', errors: errors.slice(0, 100) });
    try {
      const result = await store.ingest(events);
      return { stream: name, received: items.length, ...result, rejected: errors.length, errors: errors.slice(0, 100) };
    } catch (err) {
      request.log.error({ err }, 'event ingestion failed');
      return reply.code(503).header('retry-after', '1').send({ error: `the feature store did not take the events: ${(err as Error).message}` });
    }
  });

  app.put('/v1/entities/:type/:id', { preHandler: ctx.auth.write }, async (request, reply) => {
    const { type, id } = z.object({ type: z.string().min(1).max(100), id: z.string().min(1).max(200) }).parse(request.params);
    const store = ctx.featureStore;
    if (!store) return reply.code(503).send({ error: 'no feature store is configured on this server' });
    const bundles = ctx.repository.list().map((s) => s.defaultVersion.bundle);
    const known = bundles.some((b) => b.manifest.sources?.entities[type] !== undefined);
    if (!known) return reply.code(404).send({ error: `no loaded bundle declares an entity named ${JSON.stringify(type)}` });
    const parsed = parseEntityFields(request.body, entityFieldsRead(bundles, type));
    if (!parsed.ok) return reply.code(400).send({ error: parsed.message });
    try {
      await store.putEntity(type, id, parsed.fields, Date.now());
      return { type, id, fields: Object.keys(parsed.fields), ...(parsed.unread.length > 0 ? { warnings: parsed.unread.slice(0, 20).map((field) => ({ field, rule: 'unread', message: `no loaded feature reads ${field} of ${type}` })) } : {}) };
    } catch (err) {
      request.log.error({ err }, 'entity write failed');
      return reply.code(503).header('retry-after', '1').send({ error: `the feature store did not take the update: ${(err as Error).message}` });
    }
  });
}
