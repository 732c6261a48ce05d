/**
 * The product's own API: decisions, service descriptions, the kill switch and decision
 * look-up. Bodies are validated here, at the edge; the pipeline gets typed values.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import type { RawRow } from '../../bundle/encoding.ts';
import { describeContributions } from '../../models/index.ts';
import { DuplicateDecisionError, isLogUnavailable } from '../../log/types.ts';
import { decide, ModelUnavailable, RequestRejected, type DecisionContext, type SeenDecision } from '../../pipeline/decide.ts';
import { parseOutcome } from '../../pipeline/outcomes.ts';
import type { Outcome } from '../../log/types.ts';
import type { ServerContext } from '../app.ts';
import { bulkItems, issuesOf, MAX_LINES } from '../bodies.ts';
import { SCORING_ROUTE } from '../overload.ts';
import type { Service, ServiceVersion } from '../repository.ts';
import type { KillSwitchState } from '../../ops/types.ts';

const nameParams = z.object({ name: z.string() });
const killSwitchBody = z.object({ enabled: z.boolean(), reason: z.string().max(500).optional(), by: z.string().min(1).max(200).optional() }).strict();

/** Problems listed one by one in a bulk answer; the rest are counted. */
const MAX_LISTED_ERRORS = 100;

/** Fields a decision body may carry: its features and keys, and some slack for callers that send more. */
export function fieldLimit(features: number): number {
  return Math.max(1000, 4 * features);
}

function tooManyFields(body: object, features: number): boolean {
  const limit = fieldLimit(features);
  let n = 0;
  for (const _ in body) if (++n > limit) return true;
  return false;
}

function notFound(reply: FastifyReply, name: string) {
  return reply.code(404).send({ error: `no service named ${JSON.stringify(name)}` });
}

/** What a service is, for callers and operators; its kill switch as the operations store has it. */
export function describeService(service: Service, killSwitch: KillSwitchState) {
  const versions = [...service.versions.values()];
  const describeVersion = (v: ServiceVersion) => ({
    version: v.version,
    loaded_at: v.loadedAt,
    model: v.bundle.model ? { format: v.bundle.model.format, ...v.bundle.model.info, contributions: describeContributions(v.bundle.model) } : null,
    parity: v.parity,
  });
  const current = service.defaultVersion;
  const bundle = current.bundle;
  return {
    name: service.name,
    description: bundle.manifest.description ?? null,
    default_version: current.version,
    versions: versions.map(describeVersion),
    schema: {
      features: bundle.encoding.features,
      unknown_fields: bundle.manifest.unknown_fields,
      outputs: bundle.outputs ? { ...bundle.manifest.outputs, columns: bundle.outputs.columns } : null,
    },
    policy: bundle.policy ? { version: bundle.policy.version, actions: bundle.policy.actions, uses_model: bundle.policy.usesModel, reason_codes: bundle.policy.reasonCodes } : null,
    health: {
      ready: true,
      kill_switch: killSwitch,
      mode: killSwitch.enabled ? 'fallback' : bundle.model ? 'model' : 'rules_only',
    },
  };
}

export function registerDecisionRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { repository, log, metrics, config, operations } = ctx;
  const describe = (service: Service) => describeService(service, operations.current().service(service.name).killSwitch);

  // Metrics and the version's monitor see each answered decision. One observer per service
  // version rather than a closure per request (run through tsx, each closure created costs an
  // Object.defineProperty for its name).
  const observers = new WeakMap<ServiceVersion, NonNullable<DecisionContext['observe']>>();
  const observerOf = (target: ServiceVersion): NonNullable<DecisionContext['observe']> => {
    let observe = observers.get(target);
    if (!observe) {
      const monitor = target.monitor;
      observe = (response, stage, seen) => {
        metrics.observeDecision(response, stage);
        monitor?.observeDecision(seen.row, seen.score, response.decision, response.fallback.cause, response.features, { scored: seen.model, contributions: seen.contributions?.values ?? null });
      };
      observers.set(target, observe);
    }
    return observe;
  };

  app.post('/v1/services/:name/decisions', { ...SCORING_ROUTE, preHandler: ctx.auth.decide }, async (request, reply) => {
    const { name } = nameParams.parse(request.params);
    const service = repository.get(name);
    if (!service) return notFound(reply, name);
    const body = request.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      metrics.observeError(name, 400, 'body');
      return reply.code(400).send({ error: 'the body must be a JSON object of feature values', errors: [] });
    }
    // The champion, unless a canary's key picks the challenger; null without a rollout.
    const plan = ctx.rollouts.plan(service, body as RawRow);
    const target = plan?.target ?? service.defaultVersion;
    if (tooManyFields(body, target.featureNames.size)) {
      metrics.observeError(name, 400, 'body');
      return reply.code(400).send({ error: `the body has more than ${fieldLimit(target.featureNames.size)} fields; ${name} takes ${target.featureNames.size}`, errors: [] });
    }
    const monitor = target.monitor;
    const safeMode = monitor?.safeModeActive ?? false;
    // Read synchronously from the operations store's view: whichever replica set it.
    const killSwitch = operations.current().service(name).killSwitch;
    const forcedFallback = killSwitch.enabled
      ? `kill_switch${killSwitch.reason ? `: ${killSwitch.reason}` : ''}`
      : safeMode
        ? `safe_mode: ${monitor!.safeModeReason ?? 'on'}`
        : null;
    try {
      // With followers (shadows, the champion beside a canary), the features the decision used are kept for them.
      let seen: SeenDecision | null = null;
      const observe = observerOf(target);
      const response = await decide(target, body as RawRow, {
        log,
        deadline: performance.now() + config.deadlineMs,
        forcedFallback,
        featureStore: ctx.featureStore,
        // In safe mode the model still scores, unseen, so the monitors can tell when it recovers.
        shadowScore: safeMode && !killSwitch.enabled,
        safeMode,
        routingKey: plan?.routingKey ?? null,
        requestText: request.bodyText,
        observe: plan ? (r, stage, s) => ((seen = s), observe(r, stage, s)) : observe,
      });
      if (plan && seen) ctx.rollouts.follow(service, plan, { response, row: (seen as SeenDecision).row, score: (seen as SeenDecision).score });
      return response;
    } catch (err) {
      if (err instanceof RequestRejected) {
        metrics.observeError(name, 400, 'validation');
        monitor?.observeRejection(err.errors.map((e) => e.field ?? 'body'));
        return reply.code(400).send({ error: `invalid request: ${err.errors.length} problem(s)`, errors: err.errors });
      }
      if (err instanceof DuplicateDecisionError) {
        metrics.observeError(name, 409, 'duplicate_id');
        return reply.code(409).send({ error: err.message });
      }
      if (isLogUnavailable(err)) {
        // No decision without its log record: the caller retries, nothing was acknowledged (nor logged).
        metrics.observeError(name, 503, err.code === 'LOG_TIMEOUT' ? 'log_timeout' : 'log_unavailable');
        return reply.code(503).header('retry-after', '1').send({ error: `the decision could not be logged: ${err.message}` });
      }
      if (err instanceof ModelUnavailable) {
        metrics.observeError(name, 503, 'model_unavailable');
        return reply.code(503).header('retry-after', '1').send({ error: err.message });
      }
      throw err;
    }
  });

  app.get('/v1/services', async () => ({ services: repository.list().map(describe) }));

  app.get('/v1/services/:name', async (request, reply) => {
    const { name } = nameParams.parse(request.params);
    const service = repository.get(name);
    return service ? describe(service) : notFound(reply, name);
  });

  app.get('/v1/services/:name/decisions/:id', { preHandler: ctx.auth.admin }, async (request, reply) => {
    const { name, id } = z.object({ name: z.string(), id: z.string() }).parse(request.params);
    const record = await log.get(name, id);
    return record ?? reply.code(404).send({ error: `no decision ${JSON.stringify(id)} for ${JSON.stringify(name)}` });
  });

  // Outcomes arrive later: one at a time, or in bulk as JSON lines (or a JSON array). They
  // judge the model and become training labels: writers only.
  app.put('/v1/services/:name/decisions/:id/outcome', { preHandler: ctx.auth.write }, async (request, reply) => {
    const { name, id } = z.object({ name: z.string(), id: z.string() }).parse(request.params);
    const service = repository.get(name);
    if (!service) return notFound(reply, name);
    const body = typeof request.body === 'object' && request.body !== null ? { ...request.body, id } : request.body;
    const parsed = parseOutcome(service.defaultVersion.bundle, body);
    if (!parsed.ok) return reply.code(400).send({ error: parsed.message });
    const result = await log.recordOutcomes(name, [parsed.outcome]);
    if (result.unknown.length > 0) return reply.code(404).send({ error: `no logged decision ${JSON.stringify(id)} for ${name}` });
    return { service: name, id, label: parsed.outcome.label, joined: true };
  });

  app.post('/v1/services/:name/outcomes', { preHandler: ctx.auth.write }, async (request, reply) => {
    const { name } = nameParams.parse(request.params);
    const service = repository.get(name);
    if (!service) return notFound(reply, name);
    const items = bulkItems(request.body);
    if (!items) return reply.code(400).send({ error: `send JSON lines (content-type application/x-ndjson) or a JSON array of {id, label, time?}, at most ${MAX_LINES} a request` });
    const errors: { line: number; message: string }[] = [];
    const outcomes: Outcome[] = [];
    for (const item of items) {
      const parsed = item.ok ? parseOutcome(service.defaultVersion.bundle, item.value) : { ok: false as const, message: item.message };
      if (parsed.ok) outcomes.push(parsed.outcome);
      else if (errors.length < MAX_LISTED_ERRORS) errors.push({ line: item.line, message: parsed.message });
    }
    const rejected = items.length - outcomes.length;
    const result = outcomes.length > 0 ? await log.recordOutcomes(name, outcomes) : { joined: 0, unknown: [] };
    const answer = { service: name, received: items.length, joined: result.joined, unknown: result.unknown.slice(0, MAX_LISTED_ERRORS), unknown_count: result.unknown.length, rejected, errors };
    if (rejected > 0 && result.joined === 0) return reply.code(400).send({ error: `no outcome recorded: ${rejected} of ${items.length} rejected`, ...answer });
    return answer;
  });

  app.put('/v1/services/:name/kill-switch', { preHandler: ctx.auth.admin }, async (request, reply) => {
    const { name } = nameParams.parse(request.params);
    const service = repository.get(name);
    if (!service) return notFound(reply, name);
    const parsed = killSwitchBody.safeParse(request.body);
    if (!parsed.success) {
      return reply.code(400).send({ error: 'expected {"enabled": true|false, "reason"?: string}', errors: issuesOf(parsed.error) });
    }
    // Committed to the operations store before answering; every replica obeys it from there.
    const ks = await operations.setKillSwitch(name, { enabled: parsed.data.enabled, reason: parsed.data.reason ?? null, by: parsed.data.by ?? 'admin' });
    request.log.warn({ service: name, killSwitch: ks }, ks.enabled ? 'kill switch on: decisions use the fallback policy' : 'kill switch off');
    return { service: name, kill_switch: ks };
  });
}
