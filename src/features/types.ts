/**
 * Feature sources: where a model's inputs come from when the caller does not send them.
 * The stores behind them (embedded, Redis) implement `FeatureStore`; the resolver fetches
 * every source of a request in parallel, each under its own deadline, and reports each
 * feature's status so nothing stale or missing is hidden.
 */
import { z } from 'zod';
import type { StreamStoreConfig } from './aggregate.ts';

/** Durations like `500ms`, `10m`, `1h`, `24h`, `30d`. */
export const DURATION = /^(\d+)(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(text: string): number {
  const m = DURATION.exec(text);
  if (!m) throw new Error(`not a duration: ${JSON.stringify(text)} (use e.g. 500ms, 30s, 10m, 1h, 30d)`);
  return Number(m[1]) * UNIT_MS[m[2]];
}

export const durationSchema = z.string().regex(DURATION, 'a duration such as 500ms, 30s, 10m, 1h, 24h or 30d');

export const AGGREGATE_FUNCTIONS = ['count', 'sum', 'mean', 'min', 'max', 'distinct', 'last'] as const;
export type AggregateFunction = (typeof AGGREGATE_FUNCTIONS)[number];

/** Where one feature's value comes from. Absent: the request. */
export const sourceSchema = z.union([
  z.object({ entity: z.string().min(1), field: z.string().min(1), ttl: durationSchema.optional() }).strict(),
  z
    .object({
      aggregate: z.string().min(1),
      fn: z.enum(AGGREGATE_FUNCTIONS),
      /** The event field aggregated (not for count). */
      field: z.string().min(1).optional(),
      window: durationSchema,
    })
    .strict(),
  z.object({ http: z.string().url(), field: z.string().min(1), timeout_ms: z.number().int().positive().max(60_000).default(50) }).strict(),
  z.object({ derived: z.string().min(1).max(2000) }).strict(),
]);
export type SourceSpec = z.output<typeof sourceSchema>;

export const entitySchema = z.object({ key: z.string().min(1) }).strict();

export const streamSchema = z
  .object({
    /** The entity the events are keyed by; each event carries that entity's key field. */
    entity: z.string().min(1),
    /** Event field holding the event time (ISO 8601 or epoch milliseconds). */
    time: z.string().min(1).default('event_time'),
    /** Event field holding a unique event id: a repeated id is ignored. */
    id: z.string().min(1).default('event_id'),
    /** Events arriving up to this late still update the right windows; later ones are dropped and counted. */
    lateness: durationSchema.default('5m'),
    /** Event fields and their types. */
    fields: z.record(z.string(), z.enum(['number', 'string'])).default({}),
  })
  .strict();

export const sourcesSchema = z
  .object({
    entities: z.record(z.string(), entitySchema).default({}),
    streams: z.record(z.string(), streamSchema).default({}),
    /** Deadline for gathering all features of a request. */
    deadline_ms: z.number().int().positive().max(60_000).default(50),
  })
  .strict();
export type SourcesSpec = z.output<typeof sourcesSchema>;

/** One event on a stream, as ingested. */
export interface StreamEvent {
  stream: string;
  /** Entity key. */
  key: string;
  id: string;
  /** Event time, ms since the epoch. */
  time: number;
  fields: Record<string, number | string | null>;
}

/** An aggregate as a feature asks for it. */
export interface AggregateQuery {
  stream: string;
  key: string;
  fn: AggregateFunction;
  field?: string;
  windowMs: number;
  /** The point in time the value is wanted at (ms): events in (at - window, at]. */
  at: number;
}

export interface EntityValue {
  value: number | string | boolean | null;
  /** When the value was written (ms since the epoch). */
  updatedAt: number;
}

export type IngestResult = { accepted: number; duplicates: number; late: number };

/** What every store offers; the embedded store and Redis implement it. */
export interface FeatureStore {
  readonly kind: 'embedded' | 'redis';
  /** Resolves once the events are durable (acknowledged writes survive a restart). */
  ingest(events: readonly StreamEvent[]): Promise<IngestResult>;
  aggregate(query: AggregateQuery): Promise<number | string | null>;
  /** Several aggregates of one request in one round trip where the store can. */
  aggregates(queries: readonly AggregateQuery[]): Promise<(number | string | null)[]>;
  putEntity(type: string, id: string, fields: Record<string, number | string | boolean | null>, at?: number): Promise<void>;
  getEntity(type: string, id: string, fields: readonly string[]): Promise<(EntityValue | null)[]>;
  /** Adds streams declared after open and updates known ones (lateness; retention only grows). */
  configureStreams(streams: Record<string, StreamStoreConfig>): Promise<void>;
  close(): Promise<void>;
}

/** What the resolver reads: a store, or a point-in-time view of history (backfill). */
export type FeatureReader = Pick<FeatureStore, 'aggregates' | 'getEntity'>;

/** How each feature of a decision was obtained: logged with the decision and monitored. */
export type FeatureStatus = 'present' | 'default' | 'stale' | 'missing' | 'timeout' | 'error';

/**
 * The status of a feature whose lookup failed: `timeout` when the store's error says the reply
 * did not come in time (`timedOut: true`, as a Redis command timeout), else `error`.
 */
export function failureStatus(err: unknown): 'timeout' | 'error' {
  return typeof err === 'object' && err !== null && (err as { timedOut?: unknown }).timedOut === true ? 'timeout' : 'error';
}
