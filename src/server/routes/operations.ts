/**
 * What operators set on a service, as this replica obeys it, and the audit trail of who set
 * what, when and why. Admin only: the trail names people.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ServerContext } from '../app.ts';

const params = z.object({ name: z.string() });
const query = z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) }).strict();

export function registerOperationsRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { repository, operations } = ctx;

  app.get('/v1/services/:name/operations', { preHandler: ctx.auth.admin }, async (request, reply) => {
    const { name } = params.parse(request.params);
    const parsed = query.safeParse(request.query ?? {});
    if (!parsed.success) return reply.code(400).send({ error: 'query: limit must be a whole number from 1 to 1000 (and nothing else is accepted)' });
    // Names neither served nor ever operated on are not looked up: a URL must not become a query.
    if (!repository.get(name) && !operations.current().services().includes(name)) return reply.code(404).send({ error: `no service named ${JSON.stringify(name)}` });
    const ops = operations.current().service(name);
    return {
      service: name,
      kill_switch: ops.killSwitch,
      safe_mode: ops.safeMode,
      acknowledgements: ops.acknowledgements,
      load: ops.load,
      store: operations.status(),
      history: await operations.history(name, { limit: parsed.data.limit }),
    };
  });
}
