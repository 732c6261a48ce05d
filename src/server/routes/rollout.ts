/**
 * Changing a model on a running service: the rollout (champion, shadow and canary
 * challengers) and its live comparison; admin operations to start challengers, promote (once
 * the candidate's gates pass) and roll back. Every change goes through the operations store,
 * so every replica obeys it and the audit trail says who, when and why.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import { MAX_CHALLENGERS, type ChallengerSpec, type RolloutState } from '../../ops/types.ts';
import { gatesOffThread } from '../../rollout/promotion.ts';
import type { ServerContext } from '../app.ts';
import { issuesOf } from '../bodies.ts';
import type { Service } from '../repository.ts';

const params = z.object({ name: z.string() });
const version = z.string().min(1).max(200);
const who = { reason: z.string().max(500).optional(), by: z.string().min(1).max(200).optional() };
const challengerBody = z
  .object({
    version,
    mode: z.enum(['shadow', 'canary']),
    share: z.number().gt(0).lte(1),
    /** Canary: the request field whose value picks the version (a feature, an entity key, `id`, or a field such as `customer_id`). */
    key: z.string().min(1).max(200).optional(),
  })
  .strict();
const startBody = z.object({ challengers: z.array(challengerBody).max(MAX_CHALLENGERS), max_flip_rate: z.number().min(0).max(1).nullable().optional(), ...who }).strict();
const promoteBody = z.object({ version, ...who }).strict();
const rollbackBody = z.object(who).strict();

/** A canary's key: a feature, an entity key, `id`, or a field callers add for it (`customer_id`), accepted while the canary runs. */
const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

type Refusal = { field: string; rule: string; message: string };

export function registerRolloutRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { repository, operations, rollouts } = ctx;

  const serviceOf = (name: string, reply: FastifyReply): Service | null => {
    const service = repository.get(name);
    if (!service) void reply.code(404).send({ error: `no service named ${JSON.stringify(name)}` });
    return service ?? null;
  };
  const current = (service: Service): RolloutState | null => operations.current().service(service.name).rollout;

  app.get('/v1/services/:name/rollout', async (request, reply) => {
    const { name } = params.parse(request.params);
    const service = serviceOf(name, reply);
    if (!service) return reply;
    return { service: name, versions: [...service.versions.keys()], ...rollouts.report(service) };
  });

  // Start, change or stop challengers; the champion stays (and is pinned).
  app.put('/v1/services/:name/rollout', { preHandler: ctx.auth.admin }, async (request, reply) => {
    const { name } = params.parse(request.params);
    const service = serviceOf(name, reply);
    if (!service) return reply;
    const parsed = startBody.safeParse(request.body);
    if (!parsed.success) return reply.code(400).send({ error: 'expected {"challengers": [{"version", "mode": "shadow"|"canary", "share": (0, 1], "key"?}], "max_flip_rate"?, "reason"?, "by"?}', errors: issuesOf(parsed.error) });
    const refusals = challengerRefusals(service, parsed.data.challengers);
    if (refusals.length > 0) return reply.code(400).send({ error: `the rollout is refused: ${refusals[0].message}`, errors: refusals });
    const challengers: ChallengerSpec[] = parsed.data.challengers.map((c) => ({ version: c.version, mode: c.mode, share: c.share, key: c.mode === 'canary' ? c.key! : null }));
    // The budget: as given, else the canary's own replay budget (gates.replay.max_flip_rate in its rtml.yaml).
    const canary = challengers.find((c) => c.mode === 'canary');
    const declared = canary ? (service.versions.get(canary.version)?.bundle.manifest.gates?.replay?.max_flip_rate ?? null) : null;
    const was = current(service);
    const state = await operations.setRollout(name, {
      // The champion is pinned from the first rollout on: a higher version loaded later does not swap in by itself.
      champion: was?.champion ?? service.defaultVersion.version,
      previous: was?.previous ?? null,
      challengers,
      maxFlipRate: parsed.data.max_flip_rate !== undefined ? parsed.data.max_flip_rate : declared,
      reason: parsed.data.reason ?? null,
      by: parsed.data.by ?? 'admin',
    });
    request.log.warn({ service: name, rollout: state }, 'rollout set');
    return { service: name, champion: service.defaultVersion.version, rollout: state };
  });

  app.post('/v1/services/:name/rollout/promote', { preHandler: ctx.auth.admin }, async (request, reply) => {
    const { name } = params.parse(request.params);
    const service = serviceOf(name, reply);
    if (!service) return reply;
    const parsed = promoteBody.safeParse(request.body);
    if (!parsed.success) return reply.code(400).send({ error: 'expected {"version": string, "reason"?, "by"?}', errors: issuesOf(parsed.error) });
    const candidate = service.versions.get(parsed.data.version);
    const champion = service.defaultVersion;
    if (!candidate) return reply.code(400).send({ error: `${name} has no loaded version ${JSON.stringify(parsed.data.version)}`, errors: [{ field: 'version', rule: 'loaded', message: `loaded versions: ${[...service.versions.keys()].join(', ')}` }] });
    if (candidate === champion) return reply.code(409).send({ error: `${parsed.data.version} is already the champion of ${name}` });
    if (!candidate.bundle.model) return reply.code(400).send({ error: `${parsed.data.version} is rules-only: nothing to gate`, errors: [{ field: 'version', rule: 'model', message: 'a challenger needs a model' }] });
    // The candidate's gates, against the champion, off the event loop: refused if one fails.
    const gates = await gatesOffThread(candidate.bundle.dir, champion.bundle.model ? champion.bundle.dir : null);
    const summary = gates === null ? 'no gates declared' : `gates ${gates.passed ? 'passed' : 'failed'}: ${gates.gates.filter((g) => g.status === 'passed').length} passed, ${gates.gates.filter((g) => g.status === 'failed').length} failed`;
    const outcome = gates?.gates.map((g) => ({ name: g.name, status: g.status, message: g.message })) ?? [];
    if (gates && !gates.passed) {
      request.log.warn({ service: name, version: parsed.data.version, gates: outcome.filter((g) => g.status === 'failed') }, 'promotion refused: gates failed');
      return reply.code(409).send({ error: `promotion of ${parsed.data.version} refused: ${summary}`, gates: outcome });
    }
    const was = current(service);
    const state = await operations.setRollout(name, {
      champion: candidate.version,
      previous: champion.version,
      challengers: [],
      maxFlipRate: was?.maxFlipRate ?? null,
      reason: `${parsed.data.reason ?? 'promoted'} (${summary})`.slice(0, 2000),
      by: parsed.data.by ?? 'admin',
    });
    request.log.warn({ service: name, from: champion.version, to: candidate.version, gates: summary }, 'promoted');
    return { service: name, champion: service.defaultVersion.version, previous: champion.version, gates: outcome, rollout: state };
  });

  // Challengers first: a rollback ends them (the champion stays); with none, it undoes the last promotion.
  app.post('/v1/services/:name/rollout/rollback', { preHandler: ctx.auth.admin }, async (request, reply) => {
    const { name } = params.parse(request.params);
    const service = serviceOf(name, reply);
    if (!service) return reply;
    const parsed = rollbackBody.safeParse(request.body ?? {});
    if (!parsed.success) return reply.code(400).send({ error: 'expected {"reason"?, "by"?}', errors: issuesOf(parsed.error) });
    const was = current(service);
    const by = parsed.data.by ?? 'admin';
    if (was && was.challengers.length > 0) {
      const state = await operations.setRollout(name, { ...was, challengers: [], reason: parsed.data.reason ?? 'challengers stopped', by });
      return { service: name, rolled_back: 'challengers', stopped: was.challengers.map((c) => c.version), champion: service.defaultVersion.version, rollout: state };
    }
    if (was?.previous && service.versions.has(was.previous)) {
      const from = service.defaultVersion.version;
      const state = await operations.setRollout(name, { ...was, champion: was.previous, previous: null, challengers: [], reason: parsed.data.reason ?? `promotion of ${from} undone`, by });
      return { service: name, rolled_back: 'promotion', from, champion: service.defaultVersion.version, rollout: state };
    }
    return reply.code(409).send({ error: `${name} has nothing to roll back: no challenger, and no earlier champion loaded` });
  });
}

/** Why a set of challengers cannot run on this service, by field and rule. */
function challengerRefusals(service: Service, challengers: z.output<typeof challengerBody>[]): Refusal[] {
  const refusals: Refusal[] = [];
  const champion = service.defaultVersion;
  const seen = new Set<string>();
  challengers.forEach((c, i) => {
    const at = `challengers.${i}`;
    const version = service.versions.get(c.version);
    if (!version) refusals.push({ field: `${at}.version`, rule: 'loaded', message: `${service.name} has no loaded version ${JSON.stringify(c.version)} (loaded: ${[...service.versions.keys()].join(', ')})` });
    else if (version === champion) refusals.push({ field: `${at}.version`, rule: 'champion', message: `${c.version} is the champion; a challenger is another version` });
    else if (!version.scorer) refusals.push({ field: `${at}.version`, rule: 'model', message: `${c.version} is rules-only: a challenger needs a model` });
    if (seen.has(c.version)) refusals.push({ field: `${at}.version`, rule: 'unique', message: `${c.version} is listed twice` });
    seen.add(c.version);
    if (c.mode === 'canary') {
      if (c.key === undefined) refusals.push({ field: `${at}.key`, rule: 'required', message: 'a canary needs a key: the request field whose value picks the version (one value always meets the same version)' });
      else if (!FIELD_NAME.test(c.key)) refusals.push({ field: `${at}.key`, rule: 'format', message: 'the key must be a field name: a letter or _, then up to 63 letters, digits or _' });
    } else if (c.key !== undefined) refusals.push({ field: `${at}.key`, rule: 'shadow', message: 'a shadow takes a sampled share of every request: no key' });
  });
  if (challengers.filter((c) => c.mode === 'canary').length > 1) refusals.push({ field: 'challengers', rule: 'canary', message: 'at most one canary at a time' });
  return refusals;
}
