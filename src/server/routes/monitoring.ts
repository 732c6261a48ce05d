/**
 * Where people look: a service's monitoring state (drift, data quality, model health,
 * alerts, safe mode), realized performance from outcomes joined to logged decisions, and an
 * estimate from the scores before outcomes arrive. Plus the admin operations on alerts and
 * safe mode.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import type { LabelledDecision } from '../../log/types.ts';
import { calibrationCheck, estimatePerformance, labelCompleteness, realizedPerformance } from '../../monitor/performance.ts';
import type { ServerContext } from '../app.ts';
import type { ServiceVersion } from '../repository.ts';

/**
 * Realized performance reads labelled decisions on the main thread: bounded per window (the
 * latest ones), and computed at most once per PERFORMANCE_TTL_MS per version however many
 * callers ask, so a public GET cannot make the server scan its log in a loop.
 */
const MAX_LABELLED = 100_000;
const PERFORMANCE_TTL_MS = 1000;

const PERFORMANCE_WINDOWS: [string, number | null][] = [
  ['1h', 3600_000],
  ['1d', 86_400_000],
  ['7d', 7 * 86_400_000],
  ['all', null],
];

/** Realized performance per window of decision time, and the estimate from the scores. */
async function performance(ctx: ServerContext, version: ServiceVersion) {
  const bundle = version.bundle;
  const outputs = bundle.manifest.outputs;
  if (outputs?.type !== 'binary') return { available: false, reason: 'performance is measured for binary classifiers' };
  const positive = outputs.positive_class ?? outputs.classes[1];
  const bands = bundle.policy?.spec.bands?.flatMap((b) => (b.below === undefined ? [] : [b.below])) ?? [];
  const now = Date.now();
  const realized: Record<string, unknown> = {};
  let latest: LabelledDecision[] = [];
  for (const [name, span] of PERFORMANCE_WINDOWS) {
    const { decisions, items } = await ctx.log.labelled(bundle.name, { ...(span === null ? {} : { since: new Date(now - span).toISOString() }), limit: MAX_LABELLED });
    // Only this version's model-scored decisions: fallbacks have no score to judge.
    const scored = items.filter((i) => i.modelVersion === version.version && i.score !== null && !i.fallbackUsed);
    if (name === 'all') latest = scored.slice(-10_000);
    const labels = scored.map((i) => (i.label === positive ? 1 : 0));
    const scores = scored.map((i) => i.score!);
    realized[name] = {
      decisions,
      labelled: items.length,
      ...(items.length === MAX_LABELLED ? { limited_to_latest: MAX_LABELLED } : {}),
      label_completeness: labelCompleteness(decisions, items.length),
      ...(scored.length > 0 ? realizedPerformance(scores, labels, { bands }) : { n: 0 }),
    };
  }
  const raw = version.monitor?.windows.rawScores() ?? null;
  const calibration = latest.length > 0 ? calibrationCheck({ probs: latest.map((i) => i.score!), labels: latest.map((i) => (i.label === positive ? 1 : 0)) }) : null;
  const estimated =
    raw && raw.length > 0
      ? {
          window: `last_${raw.length}_scores`,
          ...estimatePerformance(raw, { bands }),
          valid: calibration?.valid ?? null,
          validity: calibration ? calibration.reason : 'no outcomes yet to check calibration on: the estimate assumes the model is as calibrated as on its held-out data',
        }
      : null;
  return { available: true, positive_class: positive, bands, realized, estimated, calibration };
}

export function registerMonitoringRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { repository } = ctx;
  const params = z.object({ name: z.string() });

  const computed = new WeakMap<ServiceVersion, { at: number; result: ReturnType<typeof performance> }>();
  const cachedPerformance = (version: ServiceVersion) => {
    const cached = computed.get(version);
    if (cached && Date.now() - cached.at < PERFORMANCE_TTL_MS) return cached;
    const fresh = { at: Date.now(), result: performance(ctx, version) };
    computed.set(version, fresh);
    fresh.result.catch(() => computed.delete(version));
    return fresh;
  };

  const monitored = (name: string, reply: FastifyReply) => {
    const service = repository.get(name);
    if (!service) {
      void reply.code(404).send({ error: `no service named ${JSON.stringify(name)}` });
      return null;
    }
    const version = service.defaultVersion;
    if (!version.monitor) {
      void reply.code(404).send({ error: `${name} has no reference profile, so nothing to monitor against: run rtml profile on its bundle` });
      return null;
    }
    return { service, version, monitor: version.monitor };
  };

  app.get('/v1/services/:name/monitoring', async (request, reply) => {
    const { name } = params.parse(request.params);
    const found = monitored(name, reply);
    if (!found) return reply;
    const state = found.monitor.evaluate();
    const perf = cachedPerformance(found.version);
    return { ...state, performance: { ...(await perf.result), computed_at: new Date(perf.at).toISOString() } };
  });

  app.put('/v1/services/:name/safe-mode', { preHandler: ctx.auth.admin }, async (request, reply) => {
    const { name } = params.parse(request.params);
    const found = monitored(name, reply);
    if (!found) return reply;
    const body = z.object({ mode: z.enum(['auto', 'on', 'off']), reason: z.string().max(500).optional(), by: z.string().min(1).max(200).optional() }).strict().safeParse(request.body);
    if (!body.success) return reply.code(400).send({ error: 'expected {"mode": "auto" | "on" | "off", "reason"?: string, "by"?: string}' });
    // The override is committed to the operations store; applying it (here at once, on every
    // replica within 2 s) is the store's subscribers' job (src/server/operations.ts).
    const override = await ctx.operations.setSafeMode(name, { mode: body.data.mode, reason: body.data.reason ?? null, by: body.data.by ?? 'admin' });
    const state = found.monitor.safeMode;
    request.log.warn({ service: name, safeMode: state, by: override.by }, `safe mode set to ${body.data.mode}`);
    return { service: name, safe_mode: state };
  });

  app.post('/v1/services/:name/alerts/:id/acknowledge', { preHandler: ctx.auth.admin }, async (request, reply) => {
    const { name, id } = z.object({ name: z.string(), id: z.string() }).parse(request.params);
    const found = monitored(name, reply);
    if (!found) return reply;
    // The operations store keeps alert ids of 1-200 characters (any replica must read them back).
    if (id.length < 1 || id.length > 200) return reply.code(400).send({ error: `the alert id must be 1-200 characters, got ${id.length}` });
    const body = z.object({ by: z.string().min(1).max(200), note: z.string().max(2000).default('') }).strict().safeParse(request.body ?? {});
    if (!body.success) return reply.code(400).send({ error: 'expected {"by": string, "note"?: string}' });
    const held = found.monitor.alerts.active().find((a) => a.id === id);
    // With a shared store another replica (the one evaluating the fleet's alerts) may hold it:
    // recorded for the fleet. Alone, an alert this process does not hold does not exist.
    if (!held && ctx.operations.kind === 'embedded') return reply.code(404).send({ error: `no active alert ${JSON.stringify(id)} for ${name}` });
    const ack = await ctx.operations.acknowledge(name, { alertId: id, alertKey: held?.key ?? null, by: body.data.by, note: body.data.note });
    if (!held) return reply.code(202).send({ service: name, alert_id: id, acknowledged: ack, held_here: false });
    return found.monitor.alerts.active().find((a) => a.id === id) ?? { ...held, acknowledged: { at: ack.at, by: ack.by, note: ack.note } };
  });
}
