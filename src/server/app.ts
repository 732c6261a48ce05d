/**
 * The decision server: fastify with the product's decision API (`/v1`), the Open Inference
 * Protocol (`/v2`), admin operations behind a bearer token, Prometheus `/metrics`, and a
 * load guard (./overload.ts) that sheds load with 503 + Retry-After instead of queueing
 * without bound and drains gracefully on shutdown.
 */
import { ZodError } from 'zod';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { isLogUnavailable, type DecisionLog } from '../log/types.ts';
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
import { authChecks, refuseCrossSiteWrites, type AuthCheck, type Role } from './auth.ts';
import { clip, lingeringClose, registerBodyParsers } from './bodies.ts';
import { isOperationsUnavailable, type OperationsStore } from '../ops/types.ts';
import { openEmbeddedOperationsStore } from '../ops/embedded.ts';
import { obeyOperations, operationsMetrics } from './operations.ts';
import { registerOperationsRoutes } from './routes/operations.ts';
import { RolloutHost } from './rollout.ts';
import { registerRolloutRoutes } from './routes/rollout.ts';
import { FleetMonitor, type MonitoredVersion } from '../monitor/fleet.ts';
import type { MonitorExchange } from '../monitor/exchange/types.ts';
import { registerDashboardRoutes } from '../dashboard/routes.ts';
import type { HistoryStore } from '../dashboard/history.ts';

export interface ServerConfig extends LoadGuardConfig {
  /** The model repository: one folder per service. */
  repository: string;
  /** Bearer token for admin operations; null disables them. */
  adminToken: string | null;
  /** Bearer token for outcomes, events and entity updates (the admin token works too); with neither, writes are disabled. */
  writeToken?: string | null;
  /** Bearer token decisions and inference need; null leaves them public. */
  decideToken?: string | null;
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
  /** Where embedded state lives (operations.sqlite) when no shared store is given; absent or null: in memory only. */
  dataDir?: string | null;
}

/** Stores shared by the replicas of a fleet (PostgreSQL), injected; absent ones are embedded. The server closes what it is given. */
export interface SharedStores {
  /** Kill switch, safe-mode overrides, acknowledgements, loads and unloads; default: embedded under `config.dataDir`. */
  operations?: OperationsStore;
  /** Fleet-wide monitoring: window exports, one leader's verdict obeyed by every replica (closed with the server). */
  monitorExchange?: MonitorExchange;
  /** How often this replica publishes its monitor windows and the leader evaluates (default 2 s). */
  monitorPublishIntervalMs?: number;
  /** The dashboard's per-minute history; default embedded (`<dataDir>/history.sqlite`, memory without a data dir). */
  history?: HistoryStore;
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
  /** What operators set (kill switch, safe mode, acknowledgements, loads), as every replica obeys it. */
  readonly operations: OperationsStore;
  /** Where sourced features live; null when no loaded bundle needs one. */
  readonly featureStore: FeatureStore | null;
  /** preHandlers by role: `auth.admin` for admin routes, `auth.write` for outcomes, events, entities, `auth.decide` for scoring. */
  readonly auth: Readonly<Record<Role, AuthCheck>>;
  /** Shutting down: readiness answers 503. */
  readonly draining: boolean;
  /** Each service's rollout: who decides a request (champion or canary), shadows, live comparisons. */
  readonly rollouts: RolloutHost;
}


export interface Server {
  readonly app: FastifyInstance;
  readonly repository: ModelRepository;
  /** Fleet monitoring in shared mode (its hooks take operator overrides and acknowledgements); null when embedded. */
  readonly fleet: FleetMonitor | null;
  /** Every route served, as `METHOD /url` (the hostile-input suite checks it covers them all). */
  readonly routes: readonly string[];
  /** Drains (not ready, new requests 503 for the grace period), stops accepting, lets in-flight requests finish, flushes the decision log. */
  close(): Promise<void>;
  /** Also serves the health probes and /metrics on a port of their own; resolves with its address. */
  listenForProbes(port: number, host: string): Promise<string>;
}

export type { FeatureStoreFactory } from './feature-store.ts';

export async function createServer(config: ServerConfig, log: DecisionLog, openFeatureStore: FeatureStoreFactory | null = null, shared: SharedStores = {}): Promise<Server> {
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
  const operations = shared.operations ?? openEmbeddedOperationsStore({ dataDir: config.dataDir ?? null, onError: (err) => app.log.error({ err }, 'operations store') });
  const metrics = createMetrics(log, repository);

  const guard = guardLoad(app, config, metrics);

  const auth = authChecks({ admin: config.adminToken, write: config.writeToken ?? null, decide: config.decideToken ?? null });
  app.addHook('onRequest', refuseCrossSiteWrites);
  // Which process answered: with --workers (or several replicas) operators and tests can tell them apart.
  const pid = String(process.pid);
  app.addHook('onRequest', (_request, reply, done) => {
    void reply.header('x-rtml-pid', pid);
    done();
  });
  registerBodyParsers(app);

  // Framework-level errors (malformed JSON, body too large, wrong content type) are the caller's: 4xx with {error}.
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, request, reply) => {
    // A label only for a service that exists: names from URLs would grow /metrics without bound.
    const named = (request.params as Record<string, unknown> | undefined)?.name;
    const service = typeof named === 'string' && repository.get(named) ? named : '';
    // The log could not take a write (outcomes while another process holds its lock, a closed
    // log): nothing was recorded, the caller should retry, and it is not a server bug.
    if (isLogUnavailable(err)) {
      request.log.warn({ err: err.message }, 'decision log unavailable');
      metrics.observeError(service, 503, 'log_unavailable');
      void reply.code(503).header('retry-after', '1').send({ error: `the decision log could not take the write: ${clip(err.message)}; retry shortly` });
      return;
    }
    // The shared operations store is down: nothing was changed; every replica keeps obeying the last state.
    if (isOperationsUnavailable(err)) {
      request.log.warn({ err: err.message }, 'operations store unavailable');
      metrics.observeError(service, 503, 'operations_unavailable');
      void reply.code(503).header('retry-after', '1').send({ error: `${clip(err.message)}; nothing was changed, retry shortly` });
      return;
    }
    // A zod schema refusing path parameters is the caller's mistake too.
    const status = err instanceof ZodError ? 400 : err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status === 500) request.log.error({ err }, 'unexpected error');
    metrics.observeError(service, status, status === 500 ? 'internal' : clip(err.code ?? 'error', 60));
    const payload = { error: status === 500 ? 'internal error' : clip(err.message) };
    // A body refused unread: answer, then keep reading what the client still sends before
    // closing, so that it sees the 413 rather than a reset.
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return lingeringClose(request, reply, status, payload);
    void reply.code(status).send(payload);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({ error: `no route ${request.method} ${request.url.split('?')[0]}` });
  });

  const stopObeying = obeyOperations(repository, operations, app.log);
  const rollouts = new RolloutHost(repository, operations, log, app.log, metrics.registry);
  operationsMetrics(metrics.registry, operations);
  const { loaded, failed } = await repository.loadAll();
  app.log.info({ repository: config.repository, loaded, failed }, 'repository loaded');
  // A store only when some service gathers features beyond the request; its streams come from
  // the bundles, now and at every later load (before the loaded version serves).
  const features = new FeatureStoreHost(openFeatureStore, { warn: (msg) => app.log.warn(msg), error: (obj, msg) => app.log.error(obj, msg) });
  const loadedBundles = (except?: string) => repository.list().flatMap((s) => (s.name === except ? [] : [...s.versions.values()].map((v) => v.bundle)));
  await features.prepare(loadedBundles());
  repository.beforeServe = (name, incoming) => features.prepare([...loadedBundles(name), ...incoming]);

  const routes: string[] = [];
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) if (method !== 'HEAD') routes.push(`${method} ${route.url}`);
  });

  const context: ServerContext = {
    config,
    repository,
    log,
    metrics,
    operations,
    get featureStore() {
      return features.store;
    },
    auth,
    get draining() {
      return guard.draining;
    },
    rollouts,
  };
  registerDecisionRoutes(app, context);
  registerOipRoutes(app, context);
  registerMonitoringRoutes(app, context);
  registerFeatureRoutes(app, context);
  registerOperationsRoutes(app, context);
  registerRolloutRoutes(app, context);
  const dashboard = registerDashboardRoutes(app, context, shared.history);
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
        rollouts.observeOutcome(item);
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
  const fleet = shared.monitorExchange
    ? new FleetMonitor({ exchange: shared.monitorExchange, monitors: () => monitoredVersions(repository), publishIntervalMs: shared.monitorPublishIntervalMs, logger: app.log })
    : null;
  fleet?.start();
  // Operators' safe-mode overrides and acknowledgements reach the fleet's leader through the operations store.
  const stopFleetOperations = fleet
    ? operations.subscribe((change) => {
        if (change.kind === 'safe_mode') fleet.applySafeModeOverride(change.service, change.value.mode, change.value.reason);
        else if (change.kind === 'acknowledge') fleet.applyAcknowledgement(change.service, change.value.alertId, change.value.by, change.value.note, Date.parse(change.value.at));
      })
    : () => {};

  let closing: Promise<void> | null = null;
  return {
    app,
    repository,
    fleet,
    routes,
    listenForProbes: (port, host) => guard.listenForProbes(port, host),
    close: () =>
      (closing ??= (async () => {
        await guard.drain();
        clearInterval(outcomeTimer);
        clearInterval(evaluationTimer);
        await app.close();
        await guard.close();
        rollouts.close();
        // After the last decision: the minute in progress reaches the history too.
        await dashboard.close().catch((err) => app.log.error({ err }, 'dashboard history'));
        // After the last request: the final export holds every decision this replica answered.
        await fleet?.close();
        await shared.monitorExchange?.close();
        await log.close();
        await features.close();
        stopObeying();
        stopFleetOperations();
        await operations.close();
        await repository.close();
      })()),
  };
}

/** Every loaded version that has a monitor. */
function* monitoredVersions(repository: ModelRepository): Generator<MonitoredVersion> {
  for (const service of repository.list()) for (const v of service.versions.values()) if (v.monitor) yield { service: service.name, version: v.version, monitor: v.monitor };
}
