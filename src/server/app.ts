/**
 * The decision server: fastify with the product's decision API (`/v1`), the Open Inference
 * Protocol (`/v2`), admin operations behind a bearer token, Prometheus `/metrics`, and a
 * load guard (./overload.ts) that sheds load with 503 + Retry-After instead of queueing
 * without bound and drains gracefully on shutdown.
 */
import { timingSafeEqual } from 'node:crypto';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { DecisionLog } from '../log/types.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { ModelRepository } from './repository.ts';
import { registerDecisionRoutes } from './routes/decisions.ts';
import { registerOipRoutes } from './routes/oip.ts';
import { registerMonitoringRoutes } from './routes/monitoring.ts';
import { registerFeatureRoutes } from './routes/features.ts';
import type { FeatureStore } from '../features/types.ts';
import { FeatureStoreHost, type FeatureStoreFactory } from './feature-store.ts';
import { guardLoad, PROBE_ROUTE, type LoadGuardConfig } from './overload.ts';
import { logSink, webhookSink, type AlertSink } from '../monitor/alerts.ts';

export interface ServerConfig extends LoadGuardConfig {
  /** The model repository: one folder per service. */
  repository: string;
  /** Bearer token for admin operations; null disables them. */
  adminToken: string | null;
  /** Per-request budget for the model, in milliseconds. */
  deadlineMs: number;
  /** Largest accepted request body, in bytes. */
  bodyLimit: number;
  /** A request (headers and body) must arrive within this; a slow client is cut off. */
  requestTimeoutMs: number;
  /** An idle keep-alive connection closes after this; keep it above a load balancer's idle timeout. */
  keepAliveTimeoutMs: number;
  /** Poll the repository for changes this often (0: never). */
  watchIntervalMs: number;
  logLevel: string;
  /** Alerts are POSTed here as JSON (with retries), besides the log and /metrics. */
  alertWebhook: string | null;
}

export const DEFAULT_CONFIG: Omit<ServerConfig, 'repository'> = {
  adminToken: null,
  maxInFlight: 512,
  maxEventLoopDelayMs: 100,
  maxConnections: 10_000,
  drainGraceMs: 1500,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 72_000,
  deadlineMs: 250,
  bodyLimit: 1024 * 1024,
  watchIntervalMs: 2000,
  logLevel: 'info',
  alertWebhook: null,
};

/** What route modules share. */
export interface ServerContext {
  readonly config: ServerConfig;
  readonly repository: ModelRepository;
  readonly log: DecisionLog;
  readonly metrics: Metrics;
  /** Where sourced features live; null when no loaded bundle needs one. */
  readonly featureStore: FeatureStore | null;
  /** preHandler for admin routes. */
  readonly requireAdmin: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
  /** Shutting down: readiness answers 503. */
  readonly draining: boolean;
}

export interface Server {
  readonly app: FastifyInstance;
  readonly repository: ModelRepository;
  /** Drains (not ready, new requests 503 for the grace period), stops accepting, lets in-flight requests finish, flushes the decision log. */
  close(): Promise<void>;
  /** Also serves the health probes and /metrics on a port of their own; resolves with its address. */
  listenForProbes(port: number, host: string): Promise<string>;
}

export type { FeatureStoreFactory } from './feature-store.ts';

export async function createServer(config: ServerConfig, log: DecisionLog, openFeatureStore: FeatureStoreFactory | null = null): Promise<Server> {
  const app = Fastify({
    logger: { level: config.logLevel },
    bodyLimit: config.bodyLimit,
    // Per-request access logs would cost more than a decision; errors and admin actions are logged.
    logController: new LogController({ disableRequestLogging: true }),
    // The load guard answers requests that arrive while closing (503 with Retry-After, which fastify's own 503 lacks).
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    keepAliveTimeout: config.keepAliveTimeoutMs,
    requestTimeout: config.requestTimeoutMs,
    // Headers must arrive within the request timeout too (Node's default is 60 s), checked every second rather than every 30.
    http: { headersTimeout: config.requestTimeoutMs, connectionsCheckingInterval: 1000 },
  });
  const sinks: AlertSink[] = [logSink(app.log)];
  if (config.alertWebhook) {
    sinks.push(webhookSink({ url: config.alertWebhook, attempts: 5, timeoutMs: 5000, backoffMs: 500, maxQueue: 1000 }, (err) => app.log.error({ err }, 'alert webhook')));
  }
  const repository = new ModelRepository(config.repository, app.log, sinks);
  const metrics = createMetrics(log, repository);

  const guard = guardLoad(app, config, metrics);

  const token = config.adminToken ? Buffer.from(config.adminToken) : null;
  const requireAdmin = async (request: FastifyRequest, reply: FastifyReply) => {
    if (!token) {
      await reply.code(403).send({ error: 'admin operations are disabled: configure an admin token (RTML_ADMIN_TOKEN or --admin-token-file)' });
      return reply;
    }
    const header = request.headers.authorization ?? '';
    const given = Buffer.from(header.startsWith('Bearer ') ? header.slice(7) : '');
    if (given.length !== token.length || !timingSafeEqual(given, token)) {
      await reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'admin operations need a valid bearer token' });
      return reply;
    }
    request.log.info({ route: request.routeOptions.url, params: request.params }, 'admin operation');
  };

  // Framework-level errors (malformed JSON, body too large, wrong content type) are the caller's: 4xx with {error}.
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, request, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status === 500) request.log.error({ err }, 'unexpected error');
    metrics.observeError(String((request.params as Record<string, unknown>)?.name ?? ''), status, err.code ?? 'internal');
    void reply.code(status).send({ error: status === 500 ? 'internal error' : err.message });
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({ error: `no route ${request.method} ${request.url.split('?')[0]}` });
  });

  // Bulk outcomes come as JSON lines.
  app.addContentTypeParser(['application/x-ndjson', 'application/jsonl'], { parseAs: 'string' }, (_request, body, done) => done(null, body));

  const { loaded, failed } = await repository.loadAll();
  app.log.info({ repository: config.repository, loaded, failed }, 'repository loaded');
  // A store only when some service gathers features beyond the request; its streams come from
  // the bundles, now and at every later load (before the loaded version serves).
  const features = new FeatureStoreHost(openFeatureStore, { warn: (msg) => app.log.warn(msg), error: (obj, msg) => app.log.error(obj, msg) });
  const loadedBundles = (except?: string) => repository.list().flatMap((s) => (s.name === except ? [] : [...s.versions.values()].map((v) => v.bundle)));
  await features.prepare(loadedBundles());
  repository.beforeServe = (name, incoming) => features.prepare([...loadedBundles(name), ...incoming]);

  const context: ServerContext = {
    config,
    repository,
    log,
    metrics,
    get featureStore() {
      return features.store;
    },
    requireAdmin,
    get draining() {
      return guard.draining;
    },
  };
  registerDecisionRoutes(app, context);
  registerOipRoutes(app, context);
  registerMonitoringRoutes(app, context);
  registerFeatureRoutes(app, context);
  app.get('/metrics', PROBE_ROUTE, async (_request, reply) => {
    const body = await metrics.registry.metrics();
    return reply.header('content-type', metrics.registry.contentType).send(body);
  });

  if (config.watchIntervalMs > 0) repository.watch(config.watchIntervalMs);

  // Outcomes reach the decay detectors however they arrived (HTTP or straight into the log).
  let outcomeCursor = 0;
  const pollOutcomes = async () => {
    for (;;) {
      const { cursor, items } = await log.outcomesAfter(outcomeCursor, 5000);
      outcomeCursor = cursor;
      for (const item of items) {
        const version = repository.get(item.service)?.versions.get(item.modelVersion ?? '');
        version?.monitor?.observeOutcome(item);
      }
      if (items.length < 5000) return;
    }
  };
  await pollOutcomes();
  let polling = false;
  const outcomeTimer = setInterval(() => {
    if (polling) return;
    polling = true;
    pollOutcomes()
      .catch((err) => app.log.error({ err }, 'reading outcomes'))
      .finally(() => (polling = false));
  }, 1000);
  outcomeTimer.unref();
  // Time windows move on without traffic: re-evaluate so alerts can clear and safe mode release.
  const evaluationTimer = setInterval(() => {
    for (const service of repository.list()) for (const v of service.versions.values()) v.monitor?.evaluate();
  }, 5000);
  evaluationTimer.unref();

  let closing: Promise<void> | null = null;
  return {
    app,
    repository,
    listenForProbes: (port, host) => guard.listenForProbes(port, host),
    close: () =>
      (closing ??= (async () => {
        await guard.drain();
        clearInterval(outcomeTimer);
        clearInterval(evaluationTimer);
        await app.close();
        await guard.close();
        await log.close();
        await features.close();
        await repository.close();
      })()),
  };
}
