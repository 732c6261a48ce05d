/**
 * The embedded default feature store: in-process state for fast reads, one SQLite file
 * (`<dataDir>/features.sqlite`, WAL) as its durable log.
 *
 * Memory: per stream a `StreamState` (aggregate.ts: key → EventBuffer, watermark, counters);
 * entities as type/id → field → {value, updatedAt}. Every read (aggregate, getEntity) is served
 * from memory, synchronously, without touching SQLite.
 *
 * Writes and group commit (as src/log/sqlite.ts): `ingest` and `putEntity` validate at once
 * (a bad call is rejected alone, nothing of it applied), queue, and return a promise. A flush
 * takes everything queued in one turn of the event loop (`setImmediate`, or at once when
 * `maxBatch` events/fields are queued) and, synchronously:
 *   1. applies each queued operation to memory in call order, through the ingestion rule of
 *      aggregate.ts (dedupe, then lateness, then insert in time order) and the entity rule
 *      below, recording how to undo it;
 *   2. writes the accepted events and applied entity fields in ONE transaction;
 *   3. on COMMIT, resolves every promise of the batch; on failure, undoes step 1 and rejects
 *      every promise of the batch (WRITE_FAILED): nothing of it was acknowledged or is visible.
 * Because the whole flush is synchronous, no read ever sees an uncommitted write, and a read
 * issued after `await ingest(...)` sees it. Reads do not flush: an event becomes visible when
 * its `ingest` resolves.
 *
 * Entities: a field write applies if its `at` (default: Date.now() at the call) is >= the
 * field's stored updatedAt, else it is ignored (an older write arriving late, e.g. a batch load
 * after a real-time update, never overwrites a newer value). Fields are merged: a put touches
 * only the fields it names; an explicit null is stored as a value (null, with its updatedAt).
 *
 * Durability (`synchronous`, default 'full'): as the decision log. 'normal' survives any
 * process death (SIGKILL included) but may lose the last commits on power loss; 'full' fsyncs
 * the WAL at each commit.
 *
 * Restart: on open, the events of each configured stream newer than its retention horizon
 * (newest event time in the file − retentionMs) are replayed into memory in ingestion order
 * (seq), with their ids, so dedupe and `last` tie-breaking survive restarts; all entity fields
 * are loaded. Events of streams no longer configured stay in the file untouched, and are
 * replayed if a later bundle declares the stream again (`configureStreams`).
 *
 * Retention: every `cleanupIntervalMs` (default 60 s; 0 = only when `cleanup()` is called)
 * events beyond each stream's retention horizon are evicted from memory and deleted from SQLite
 * (in chunks, so a large backlog does not block the event loop in one statement).
 */
import type Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { openSqliteStore, type SqliteStoreFailure, type SqliteStoreSchema } from '../store/sqlite.ts';
import {
  FeatureStoreError,
  StreamState,
  normalizeEvent,
  validateStreamConfig,
  validateWindowSpec,
  type AggregateValue,
  type EventFields,
  type StreamStoreConfig,
} from './aggregate.ts';
import type { AggregateQuery, EntityValue, FeatureStore, IngestResult, StreamEvent } from './types.ts';

export interface EmbeddedFeatureStoreOptions {
  dataDir: string;
  /** Every stream events may be ingested on, with its lateness and retention (see `streamStoreConfigs`). */
  streams: Record<string, StreamStoreConfig>;
  /** Default 'full': see the file comment. */
  synchronous?: 'normal' | 'full';
  /** Flush at once when this many events + entity fields are queued (default 4096). */
  maxBatch?: number;
  /** How often events beyond retention are evicted and deleted (default 60 000 ms; 0: never by itself). */
  cleanupIntervalMs?: number;
}

export interface EmbeddedStreamStats extends IngestResult {
  /** Events held in memory. */
  events: number;
  keys: number;
  /** Newest accepted event time (-Infinity before any) and the watermark derived from it. */
  maxTime: number;
  watermark: number;
}

export interface EmbeddedFeatureStoreStats {
  streams: Record<string, EmbeddedStreamStats>;
  /** Entity fields held. */
  entityFields: number;
  commits: number;
  /** Events + entity fields queued, not yet committed. */
  pending: number;
  /** What the last open read back from the file. */
  replayed: { events: number; entityFields: number; ms: number };
}

export const FEATURE_STORE_FILE = 'features.sqlite';
export const FEATURE_STORE_SCHEMA_VERSION = 1;

/** Version 1, besides the meta table (`src/store/sqlite.ts` creates it). */
const SCHEMA_V1 = `
CREATE TABLE events (
  seq    INTEGER PRIMARY KEY,
  stream TEXT NOT NULL,
  key    TEXT NOT NULL,
  id     TEXT NOT NULL,
  time   REAL NOT NULL,
  fields TEXT NOT NULL
) STRICT;
CREATE INDEX events_stream_time ON events (stream, time);
CREATE TABLE entities (
  type       TEXT NOT NULL,
  id         TEXT NOT NULL,
  field      TEXT NOT NULL,
  value      TEXT NOT NULL,
  updated_at REAL NOT NULL,
  PRIMARY KEY (type, id, field)
) STRICT, WITHOUT ROWID;
`;

const DELETE_CHUNK = 5000;

type EntityInput = number | string | boolean | null;
type EventRow = [stream: string, key: string, id: string, time: number, fields: string];
type EntityRow = [type: string, id: string, field: string, value: string, updatedAt: number];

interface QueuedEvent {
  state: StreamState;
  key: string;
  id: string;
  time: number;
  fields: EventFields;
}

type Op =
  | { kind: 'ingest'; events: QueuedEvent[]; resolve: (r: IngestResult) => void; reject: (e: unknown) => void }
  | { kind: 'entity'; type: string; id: string; fields: [string, EntityInput][]; at: number; resolve: (r: IngestResult | undefined) => void; reject: (e: unknown) => void };

export class EmbeddedFeatureStore implements FeatureStore {
  readonly kind = 'embedded' as const;
  /** The database file. */
  readonly path: string;
  readonly synchronous: 'normal' | 'full';

  private readonly db: Database.Database;
  private readonly streams = new Map<string, StreamState>();
  /** `${type}\0${id}` → field → value. */
  private readonly entities = new Map<string, Map<string, EntityValue>>();
  private entityFieldCount = 0;
  private readonly maxBatch: number;
  private queue: Op[] = [];
  private queued = 0;
  private timer: NodeJS.Immediate | null = null;
  private cleanupTimer: NodeJS.Timeout | null = null;
  private cleanupRunning = false;
  private closed = false;
  private closing: Promise<void> | null = null;
  private commits = 0;
  private replayed = { events: 0, entityFields: 0, ms: 0 };

  private readonly writeBatch: (events: EventRow[], entities: EntityRow[]) => void;
  private readonly deleteChunk: Database.Statement<[string, number, number]>;

  constructor(options: EmbeddedFeatureStoreOptions) {
    const synchronous = options.synchronous ?? 'full';
    if (synchronous !== 'normal' && synchronous !== 'full') {
      throw new TypeError(`feature store: synchronous must be 'normal' or 'full', got ${JSON.stringify(synchronous)}`);
    }
    this.synchronous = synchronous;
    this.maxBatch = options.maxBatch ?? 4096;
    if (!Number.isInteger(this.maxBatch) || this.maxBatch < 1) throw new TypeError(`feature store: maxBatch must be an integer >= 1, got ${this.maxBatch}`);
    const cleanupIntervalMs = options.cleanupIntervalMs ?? 60_000;
    if (!Number.isFinite(cleanupIntervalMs) || cleanupIntervalMs < 0) throw new TypeError(`feature store: cleanupIntervalMs must be >= 0, got ${cleanupIntervalMs}`);
    if (typeof options.dataDir !== 'string' || options.dataDir.length === 0) throw new TypeError('feature store: dataDir is required');
    for (const [name, config] of Object.entries(options.streams ?? {})) this.streams.set(name, new StreamState(name, config));

    mkdirSync(options.dataDir, { recursive: true });
    this.path = resolve(join(options.dataDir, FEATURE_STORE_FILE));
    this.db = openSqliteStore(this.path, FEATURE_STORE_SCHEMA, { synchronous }, featureStoreOpenError);
    try {
      const insertEvent = this.db.prepare<EventRow>('INSERT INTO events (stream, key, id, time, fields) VALUES (?, ?, ?, ?, ?)');
      const upsertEntity = this.db.prepare<EntityRow>(
        `INSERT INTO entities (type, id, field, value, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (type, id, field) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
         WHERE excluded.updated_at >= entities.updated_at`,
      );
      const tx = this.db.transaction((events: EventRow[], entities: EntityRow[]) => {
        for (const r of events) insertEvent.run(...r);
        for (const r of entities) upsertEntity.run(...r);
      });
      this.writeBatch = (events, entities) => tx.immediate(events, entities);
      this.deleteChunk = this.db.prepare<[string, number, number]>(
        'DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE stream = ? AND time < ? LIMIT ?)',
      );
      this.replay();
    } catch (err) {
      this.db.close();
      throw err;
    }
    if (cleanupIntervalMs > 0) {
      this.cleanupTimer = setInterval(() => this.backgroundCleanup(), cleanupIntervalMs);
      this.cleanupTimer.unref();
    }
  }

  ingest(events: readonly StreamEvent[]): Promise<IngestResult> {
    if (this.closed) return Promise.reject(closedError());
    let queued: QueuedEvent[];
    try {
      if (!Array.isArray(events)) throw new FeatureStoreError('INVALID', 'ingest: events must be an array');
      queued = events.map((e) => {
        const fields = normalizeEvent(e);
        return { state: this.stream(e.stream), key: e.key, id: e.id, time: e.time, fields };
      });
    } catch (err) {
      return Promise.reject(err);
    }
    if (queued.length === 0) return Promise.resolve({ accepted: 0, duplicates: 0, late: 0 });
    return new Promise<IngestResult>((resolve, reject) => this.enqueue({ kind: 'ingest', events: queued, resolve, reject }, queued.length));
  }

  async aggregate(query: AggregateQuery): Promise<AggregateValue> {
    return this.aggregateNow(query);
  }

  async aggregates(queries: readonly AggregateQuery[]): Promise<AggregateValue[]> {
    return queries.map((q) => this.aggregateNow(q));
  }

  putEntity(type: string, id: string, fields: Record<string, EntityInput>, at?: number): Promise<void> {
    if (this.closed) return Promise.reject(closedError());
    let list: [string, EntityInput][];
    const when = at ?? Date.now();
    try {
      if (typeof type !== 'string' || typeof id !== 'string') throw new FeatureStoreError('INVALID', 'putEntity: type and id must be strings');
      if (typeof when !== 'number' || !Number.isFinite(when)) throw new FeatureStoreError('INVALID', `putEntity ${type}/${id}: at must be a finite number (ms), got ${String(at)}`);
      if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) throw new FeatureStoreError('INVALID', `putEntity ${type}/${id}: fields must be an object`);
      list = Object.entries(fields).map(([name, v]): [string, EntityInput] => {
        if (typeof v === 'number') return [name, Number.isFinite(v) ? v : null];
        if (v === null || typeof v === 'string' || typeof v === 'boolean') return [name, v];
        throw new FeatureStoreError('INVALID', `putEntity ${type}/${id}: field ${JSON.stringify(name)} must be a number, string, boolean or null`);
      });
    } catch (err) {
      return Promise.reject(err);
    }
    if (list.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) =>
      this.enqueue({ kind: 'entity', type, id, fields: list, at: when, resolve: () => resolve(), reject }, list.length),
    );
  }

  /**
   * Streams declared after open (a bundle loaded or reloaded into a running server): a new
   * stream is replayed from the file (its events within retention, if it was configured
   * before); a known one whose lateness or retention changed is rebuilt from the file with the
   * new lateness and the larger retention, so a longer window also sees the older events the
   * file still holds. Everything queued is committed first. Streams not named are left as they are.
   */
  async configureStreams(streams: Record<string, StreamStoreConfig>): Promise<void> {
    if (this.closed) throw closedError();
    for (const [name, config] of Object.entries(streams)) validateStreamConfig(name, config);
    this.flushNow();
    for (const [name, config] of Object.entries(streams)) {
      const held = this.streams.get(name);
      const retentionMs = Math.max(config.retentionMs, held?.config.retentionMs ?? 0);
      if (held && held.config.latenessMs === config.latenessMs && held.config.retentionMs === retentionMs) continue;
      const state = new StreamState(name, { latenessMs: config.latenessMs, retentionMs });
      if (held) Object.assign(state.counts, held.counts);
      this.replayed.events += this.replayStream(state);
      this.streams.set(name, state);
    }
  }

  async getEntity(type: string, id: string, fields: readonly string[]): Promise<(EntityValue | null)[]> {
    if (this.closed) throw closedError();
    const held = this.entities.get(entityKey(type, id));
    return fields.map((f) => {
      const v = held?.get(f);
      return v === undefined ? null : { value: v.value, updatedAt: v.updatedAt };
    });
  }

  /**
   * Evicts events beyond each stream's retention from memory and deletes them from SQLite, now
   * and completely. Returns the number of rows deleted from the file.
   */
  cleanup(): number {
    if (this.closed) throw closedError();
    let deleted = 0;
    for (const state of this.streams.values()) {
      state.evict();
      const horizon = state.horizon;
      if (!Number.isFinite(horizon)) continue;
      for (;;) {
        const n = this.deleteChunk.run(state.name, horizon, DELETE_CHUNK).changes;
        deleted += n;
        if (n < DELETE_CHUNK) break;
      }
    }
    return deleted;
  }

  /** Commits whatever is queued now (normally done on the next turn of the event loop). */
  flush(): void {
    this.flushNow();
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    if (this.cleanupTimer !== null) clearInterval(this.cleanupTimer);
    this.closing = new Promise<void>((resolve, reject) => {
      try {
        this.flushNow();
      } finally {
        try {
          this.db.close();
          resolve();
        } catch (err) {
          reject(err);
        }
      }
    });
    return this.closing;
  }

  get stats(): EmbeddedFeatureStoreStats {
    const streams: Record<string, EmbeddedStreamStats> = {};
    for (const [name, s] of this.streams) {
      streams[name] = { ...s.counts, events: s.size, keys: s.buffers.size, maxTime: s.maxTime, watermark: s.watermark };
    }
    return { streams, entityFields: this.entityFieldCount, commits: this.commits, pending: this.queued, replayed: { ...this.replayed } };
  }

  // ---------------------------------------------------------------------------------------

  private stream(name: string): StreamState {
    const s = this.streams.get(name);
    if (s === undefined) {
      throw new FeatureStoreError('UNKNOWN_STREAM', `feature store: unknown stream ${JSON.stringify(name)} (configured: ${[...this.streams.keys()].join(', ') || 'none'})`);
    }
    return s;
  }

  private aggregateNow(q: AggregateQuery): AggregateValue {
    if (this.closed) throw closedError();
    validateWindowSpec(q);
    const state = this.stream(q.stream);
    if (typeof q.key !== 'string') throw new FeatureStoreError('INVALID', `aggregate on ${q.stream}: key must be a string`);
    return state.aggregate(q.key, q);
  }

  private enqueue(op: Op, size: number): void {
    this.queue.push(op);
    this.queued += size;
    if (this.queued >= this.maxBatch) this.flushNow();
    else if (this.timer === null) this.timer = setImmediate(() => this.flushNow());
  }

  private flushNow(): void {
    if (this.timer !== null) {
      clearImmediate(this.timer);
      this.timer = null;
    }
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    this.queued = 0;

    // 1. Apply to memory, recording undo steps.
    const snapshots = [...this.streams.values()].map((s) => ({ s, maxTime: s.maxTime, counts: { ...s.counts } }));
    const undo: (() => void)[] = [];
    const eventRows: EventRow[] = [];
    const entityRows: EntityRow[] = [];
    const results: (IngestResult | undefined)[] = [];
    for (const op of batch) {
      if (op.kind === 'ingest') {
        const r: IngestResult = { accepted: 0, duplicates: 0, late: 0 };
        for (const e of op.events) {
          const admission = e.state.offer(e.key, e.id, e.time, e.fields);
          if (admission === 'accepted') {
            r.accepted++;
            eventRows.push([e.state.name, e.key, e.id, e.time, JSON.stringify(e.fields)]);
            undo.push(() => {
              const buffer = e.state.buffers.get(e.key);
              buffer?.remove(e.id, e.time);
              if (buffer?.size === 0) e.state.buffers.delete(e.key);
            });
          } else if (admission === 'duplicate') r.duplicates++;
          else r.late++;
        }
        results.push(r);
      } else {
        const k = entityKey(op.type, op.id);
        let held = this.entities.get(k);
        if (held === undefined) {
          const created = new Map<string, EntityValue>();
          held = created;
          this.entities.set(k, created);
          undo.push(() => {
            if (created.size === 0) this.entities.delete(k);
          });
        }
        const target = held;
        for (const [field, value] of op.fields) {
          const prev = target.get(field);
          if (prev !== undefined && op.at < prev.updatedAt) continue;
          target.set(field, { value, updatedAt: op.at });
          if (prev === undefined) this.entityFieldCount++;
          entityRows.push([op.type, op.id, field, JSON.stringify(value), op.at]);
          undo.push(() => {
            if (prev === undefined) {
              target.delete(field);
              this.entityFieldCount--;
            } else target.set(field, prev);
          });
        }
        results.push(undefined);
      }
    }

    // 2. One transaction.
    if (eventRows.length > 0 || entityRows.length > 0) {
      try {
        this.writeBatch(eventRows, entityRows);
      } catch (err) {
        for (let i = undo.length - 1; i >= 0; i--) undo[i]();
        for (const { s, maxTime, counts } of snapshots) {
          s.maxTime = maxTime;
          Object.assign(s.counts, counts);
        }
        const failure = new FeatureStoreError(
          'WRITE_FAILED',
          `feature store: writing ${eventRows.length} event(s) and ${entityRows.length} entity field(s) to ${this.path} failed, none committed: ${(err as Error)?.message ?? String(err)}`,
          { cause: err },
        );
        for (const op of batch) op.reject(failure);
        return;
      }
      this.commits++;
    }

    // 3. Acknowledge.
    for (let i = 0; i < batch.length; i++) {
      const op = batch[i];
      if (op.kind === 'ingest') op.resolve(results[i]!);
      else op.resolve(undefined);
    }
  }

  private replay(): void {
    const started = performance.now();
    let events = 0;
    for (const state of this.streams.values()) events += this.replayStream(state);
    let entityFields = 0;
    const ents = this.db.prepare<[], { type: string; id: string; field: string; value: string; updated_at: number }>('SELECT type, id, field, value, updated_at FROM entities');
    for (const r of ents.iterate()) {
      const k = entityKey(r.type, r.id);
      let held = this.entities.get(k);
      if (held === undefined) this.entities.set(k, (held = new Map()));
      held.set(r.field, { value: JSON.parse(r.value) as EntityValue['value'], updatedAt: r.updated_at });
      entityFields++;
    }
    this.entityFieldCount = entityFields;
    this.replayed = { events, entityFields, ms: performance.now() - started };
  }

  /**
   * Loads a stream's events from the file into `state`, in ingestion order (seq) with their
   * ids, so dedupe and `last` tie-breaking survive: those within retention of the newest.
   * Returns how many were loaded.
   */
  private replayStream(state: StreamState): number {
    const maxTime = this.db.prepare<[string], number | null>('SELECT max(time) FROM events WHERE stream = ?').pluck().get(state.name) ?? null;
    if (maxTime === null) return 0;
    let events = 0;
    const rows = this.db.prepare<[string, number], { key: string; id: string; time: number; fields: string }>(
      'SELECT key, id, time, fields FROM events WHERE stream = ? AND time >= ? ORDER BY seq',
    );
    for (const r of rows.iterate(state.name, maxTime - state.config.retentionMs)) {
      if (state.restore(r.key, r.id, r.time, JSON.parse(r.fields) as EventFields)) events++;
    }
    if (maxTime > state.maxTime) state.maxTime = maxTime;
    return events;
  }

  /** The timer's cleanup: evict memory at once, delete from SQLite one chunk per turn. */
  private backgroundCleanup(): void {
    if (this.closed || this.cleanupRunning) return;
    this.cleanupRunning = true;
    const work = [...this.streams.values()].map((s) => {
      s.evict();
      return { name: s.name, horizon: s.horizon };
    }).filter((w) => Number.isFinite(w.horizon));
    const step = (): void => {
      if (this.closed) {
        this.cleanupRunning = false;
        return;
      }
      const w = work[0];
      if (w === undefined) {
        this.cleanupRunning = false;
        return;
      }
      // A stream rebuilt with a longer retention meanwhile (configureStreams) has moved its
      // horizon back: never delete what it now keeps.
      const horizon = Math.min(w.horizon, this.streams.get(w.name)?.horizon ?? -Infinity);
      try {
        if (this.deleteChunk.run(w.name, horizon, DELETE_CHUNK).changes < DELETE_CHUNK) work.shift();
      } catch {
        // A busy or failing file: try again at the next interval.
        this.cleanupRunning = false;
        return;
      }
      setImmediate(step);
    };
    step();
  }
}

/** Opens (creating if needed) the embedded feature store in `options.dataDir`. */
export function openEmbeddedFeatureStore(options: EmbeddedFeatureStoreOptions): EmbeddedFeatureStore {
  return new EmbeddedFeatureStore(options);
}

const entityKey = (type: string, id: string): string => `${type}\u0000${id}`;

const closedError = (): FeatureStoreError => new FeatureStoreError('CLOSED', 'feature store: closed');

/**
 * The feature store's schema for `openSqliteStore`: a file of another kind is refused. A new
 * file is created at version 1 and migrated: a version 2 comes with its migration here.
 */
const FEATURE_STORE_SCHEMA: SqliteStoreSchema = {
  kind: 'rtml feature store',
  checkKind: true,
  createV1: SCHEMA_V1,
  migrations: {},
  version: FEATURE_STORE_SCHEMA_VERSION,
};

/** The feature store's errors for a file it cannot open. */
const featureStoreOpenError = (f: SqliteStoreFailure): FeatureStoreError =>
  new FeatureStoreError(f.code === 'SCHEMA_VERSION' ? 'SCHEMA_VERSION' : 'NOT_A_FEATURE_STORE', `feature store: ${f.message}`, f.options);
