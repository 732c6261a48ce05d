/**
 * The operators' dashboard, served by `rtml serve` itself: the page at `/`, its static files
 * at `/ui/*` (this folder's `static/` and uPlot's dist files, read once at start-up: no CDN,
 * no build step), and the read endpoints only the dashboard needs:
 *
 *   GET /v1/dashboard/overview                       every service: mode, live rate and latency, mix, alerts, last outcome
 *   GET /v1/dashboard/services/:name/distributions   live vs reference histograms per feature and of the score
 *   GET /v1/services/:name/history?minutes=N         per-minute aggregates (./history.ts)
 *   GET /v1/dashboard/services/:name/decisions/:id   (admin) a logged decision with its outcome and input column names
 *
 * Everything else the page reads or does goes through the existing API (monitoring, decision
 * look-up, operations, acknowledge, safe mode, kill switch), with the admin token the operator
 * types in: the page holds no privilege of its own.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import type { ServerContext } from '../server/app.ts';
import { COUNT_WINDOW } from '../monitor/histogram.ts';
import { readReference, type FeatureReference, type ReferenceProfile } from '../monitor/reference.ts';
import type { ServiceVersion } from '../server/repository.ts';
import { DashboardCollector } from './collector.ts';
import { MAX_HISTORY_ROWS, MINUTE_MS, openEmbeddedHistoryStore, type HistoryStore } from './history.ts';

const STATIC_DIR = new URL('./static/', import.meta.url).pathname;
const UPLOT_DIST = dirname(createRequire(import.meta.url).resolve('uplot'));

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml' };

/** The page may load only its own files; inline styles are uPlot's (it sizes its canvases with them). */
const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/** Every file served under /ui/, read once: a URL can never name a path on disk. */
function staticFiles(): Map<string, { body: Buffer; type: string }> {
  const files = new Map<string, { body: Buffer; type: string }>();
  const add = (name: string, path: string) => files.set(name, { body: readFileSync(path), type: TYPES[name.slice(name.lastIndexOf('.'))] ?? 'application/octet-stream' });
  for (const name of ['index.html', 'app.js', 'charts.js', 'style.css']) add(name, join(STATIC_DIR, name));
  add('uPlot.esm.js', join(UPLOT_DIST, 'uPlot.esm.js'));
  add('uPlot.min.css', join(UPLOT_DIST, 'uPlot.min.css'));
  return files;
}

const nameParams = z.object({ name: z.string() });
const historyQuery = z.object({ minutes: z.coerce.number().int().min(1).max(MAX_HISTORY_ROWS).default(360) }).strict();
const distributionsQuery = z.object({ window: z.string().max(20).default(COUNT_WINDOW) }).strict();

/** Live shares next to the reference's, aligned bin by bin (numeric: the reference's quantile edges). */
function distribution(reference: FeatureReference | null | undefined, live: { n: number; shares(): Float64Array; counts: Float64Array } | undefined) {
  if (!reference || !live) return null;
  const shares = Array.from(live.shares(), (v) => Math.round(v * 1e6) / 1e6);
  if (reference.kind === 'numeric') return { kind: 'numeric' as const, edges: reference.edges, reference: reference.frequencies, live: shares, n: live.n };
  const categories = Object.keys(reference.frequencies);
  return { kind: 'categorical' as const, categories, reference: categories.map((c) => reference.frequencies[c]), live: shares.slice(0, categories.length), n: live.n };
}

export interface Dashboard {
  readonly collector: DashboardCollector;
  close(): Promise<void>;
}

/**
 * Registers the page and its endpoints and starts the collector. `history`: the store to keep
 * minutes in (PostgreSQL for a fleet); default `<dataDir>/history.sqlite`, or memory without a data dir.
 */
export function registerDashboardRoutes(app: FastifyInstance, ctx: ServerContext, history?: HistoryStore, options: { sampleMs?: number } = {}): Dashboard {
  const { repository } = ctx;
  const store = history ?? openEmbeddedHistoryStore(ctx.config.dataDir ?? null);
  const collector = new DashboardCollector({ registry: ctx.metrics.registry, repository, history: store, sampleMs: options.sampleMs, onError: (err) => app.log.error({ err }, 'dashboard history') });
  const files = staticFiles();
  // The monitor keeps its profile to itself: read once per loaded version (the file the monitor was built from).
  const references = new WeakMap<ServiceVersion, Promise<ReferenceProfile>>();
  const referenceOf = (version: ServiceVersion) => {
    let found = references.get(version);
    if (!found) references.set(version, (found = readReference(version.bundle.referencePath!)));
    return found;
  };

  const sendFile = (reply: FastifyReply, name: string) => {
    const file = files.get(name);
    if (!file) return reply.code(404).send({ error: `no dashboard file ${JSON.stringify(name.slice(0, 100))}` });
    return reply.header('content-type', file.type).header('cache-control', 'no-cache').header('x-content-type-options', 'nosniff').header('content-security-policy', CSP).send(file.body);
  };
  app.get('/', async (_request, reply) => sendFile(reply, 'index.html'));
  app.get('/ui/:file', async (request, reply) => sendFile(reply, z.object({ file: z.string() }).parse(request.params).file));

  const notFound = (reply: FastifyReply, name: string) => reply.code(404).send({ error: `no service named ${JSON.stringify(name.slice(0, 200))}` });

  app.get('/v1/dashboard/overview', async () => {
    const ops = ctx.operations.current();
    return {
      generated_at: new Date().toISOString(),
      admin_enabled: ctx.config.adminToken !== null,
      services: repository.list().map((service) => {
        const version = service.defaultVersion;
        const state = version.monitor?.state() ?? null;
        const killSwitch = ops.service(service.name).killSwitch;
        const safe = state?.safe_mode ?? null;
        const mode = killSwitch.enabled ? 'kill_switch' : safe?.active ? 'safe_mode' : version.bundle.model ? 'model' : 'rules_only';
        const count = state ? (state.windows.count ?? Object.values(state.windows)[0]) : undefined;
        return {
          name: service.name,
          description: version.bundle.manifest.description ?? null,
          version: version.version,
          mode,
          kill_switch: killSwitch,
          safe_mode: safe,
          live: collector.live(service.name),
          decision_mix: count?.model_health.decision_mix ?? null,
          fallback_rate: count?.model_health.fallback_rate ?? null,
          observations: count?.observations ?? 0,
          alerts: (state?.alerts.active ?? []).map((a) => ({ id: a.id, key: a.key, severity: a.severity, subject: a.subject, since: a.firedAt, message: a.message, acknowledged: a.acknowledged })),
          monitored: state !== null,
        };
      }),
    };
  });

  app.get('/v1/services/:name/history', async (request, reply) => {
    const { name } = nameParams.parse(request.params);
    if (!repository.get(name)) return notFound(reply, name);
    const parsed = historyQuery.safeParse(request.query ?? {});
    if (!parsed.success) return reply.code(400).send({ error: `query: minutes must be a whole number from 1 to ${MAX_HISTORY_ROWS} (and nothing else is accepted)` });
    const now = Date.now();
    const since = Math.floor(now / MINUTE_MS) * MINUTE_MS - (parsed.data.minutes - 1) * MINUTE_MS;
    return { service: name, minute_ms: MINUTE_MS, since: new Date(since).toISOString(), store: store.kind, minutes: await store.read(name, { since, limit: parsed.data.minutes }) };
  });

  app.get('/v1/dashboard/services/:name/distributions', async (request, reply) => {
    const { name } = nameParams.parse(request.params);
    const service = repository.get(name);
    if (!service) return notFound(reply, name);
    const monitor = service.defaultVersion.monitor;
    const reference = service.defaultVersion.bundle.referencePath ? await referenceOf(service.defaultVersion) : null;
    if (!monitor || !reference) return reply.code(404).send({ error: `${name} has no reference profile, so nothing to compare against: run rtml profile on its bundle` });
    const parsed = distributionsQuery.safeParse(request.query ?? {});
    const windows = monitor.windows.windowNames;
    if (!parsed.success || !windows.includes(parsed.data.window)) return reply.code(400).send({ error: `query: window must be one of ${windows.join(', ')} (and nothing else is accepted)` });
    const snapshot = monitor.windows.snapshot(parsed.data.window, Date.now());
    const features: Record<string, unknown> = {};
    for (const feature of Object.keys(reference.features)) features[feature] = distribution(reference.features[feature], snapshot.feature(feature));
    return { service: name, version: service.defaultVersion.version, window: parsed.data.window, windows, observations: snapshot.observations, features, score: distribution(reference.score, snapshot.score ?? undefined) };
  });

  // The decision as logged, with what the log knows besides: its outcome, and the model's input column names.
  app.get('/v1/dashboard/services/:name/decisions/:id', { preHandler: ctx.auth.admin }, async (request, reply) => {
    const { name, id } = z.object({ name: z.string(), id: z.string() }).parse(request.params);
    const record = await ctx.log.get(name, id);
    if (!record) return reply.code(404).send({ error: `no decision ${JSON.stringify(id.slice(0, 200))} for ${JSON.stringify(name.slice(0, 200))}` });
    // Outcomes are joined by decision time: look only at the decisions of that very millisecond.
    const at = Date.parse(record.time);
    const { items } = await ctx.log.labelled(name, { since: record.time, until: new Date(at + 1).toISOString(), limit: 1000 });
    const outcome = items.find((i) => i.id === id);
    const version = repository.get(name)?.versions.get(record.model?.version ?? '');
    return {
      decision: record,
      outcome: outcome ? { label: outcome.label, time: outcome.outcomeTime } : null,
      input_columns: version && record.inputs && version.bundle.encoding.columns.length === record.inputs.length ? version.bundle.encoding.columns : null,
    };
  });

  collector.start();
  return {
    collector,
    close: async () => {
      await collector.close();
      await store.close();
    },
  };
}
