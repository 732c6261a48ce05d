/**
 * The Redis feature store: the same contract and the same answers as the embedded store
 * (embedded.ts), with the state in Redis so several server processes share it.
 *
 * Layout (P = `keyPrefix`, default "rtml:"; ":" and "%" in stream and entity-type names are
 * %-escaped so names cannot run into each other; keys and ids are used as they are):
 *   P st:{stream}          hash  {max: newest accepted event time, seq: ingestion counter}
 *   P ev:{stream}:{key}    zset  score = event time, member = tag + compact JSON [id, fields]
 *   P ids:{stream}:{key}   zset  score = event time, member = event id (the dedupe set)
 *   P ent:{type}:{id}      hash  {field: JSON value, field@t: updatedAt ms}
 * The member's tag is the stream's ingestion sequence number, length-prefixed ("c123") so that
 * members with the same time sort, lexicographically, in ingestion order: ZRANGEBYSCORE returns
 * the (time, ingestion) order aggregate.ts requires, and `aggregateSorted` over it gives the
 * embedded store's values bit for bit (same function, same operands, same order; -0 is kept).
 *
 * Ingestion: one Lua script per `ingest` call (atomic, one round trip) applies THE rule of
 * aggregate.ts to each event in order: duplicate if its id is held for the same (stream, key)
 * (ZSCORE on the ids set); late if `time < max - latenessMs`, `max` being the stream's newest
 * accepted time kept in Redis (shared by every process); else inserted, `max` advanced. Then, for each key written, events
 * older than the retention horizon `max - retentionMs` are removed (ZREMRANGEBYSCORE), their
 * ids one retention later (`max - 2 × retentionMs`: ids are small, and a re-send of an event
 * just evicted stays a duplicate, as in the embedded store between its cleanups and in the
 * conformance model, instead of turning "late"); both sets get PEXPIRE retention +
 * `idleGraceMs` (wall clock), so the keys of idle entities vanish. Windows at or after the
 * watermark stay exact, as aggregate.ts requires. (Not `SET seen:{id} NX PX`: dedupe is per
 * (stream, key) and must last as long as the event is retained, which a per-id key with a
 * wall-clock TTL cannot reproduce.)
 * The stream hash has no expiry: `max` must outlive idle periods or old events would be
 * accepted again.
 *
 * Aggregates: the queries of one call are grouped by (stream, key); each group is one
 * ZRANGEBYSCORE over the union of its windows (a ZCOUNT per query when the group only counts),
 * all pipelined: `aggregates()` is one round trip. The window itself is cut client-side by
 * `aggregateSorted`, the function every store uses.
 *
 * Entities: `putEntity` is a Lua script applying the embedded rule per field (written if `at`
 * >= the field's stored updatedAt; fields merged; null stored as a value); `getEntity` is one
 * HMGET of the values and their `@t` times.
 *
 * Outages: three connections (reads, writes, and one per stream consumer), none with an offline
 * queue (`enableOfflineQueue: false`, `maxRetriesPerRequest: 0`): while Redis is down every call
 * fails at once (RedisStoreError 'unavailable'); a hung server fails reads after
 * `commandTimeoutMs`, writes after `writeTimeoutMs` ('timeout'). Connections are re-established
 * in the background with a bounded exponential backoff (`reconnectMaxDelayMs`), and calls work
 * again as soon as they are. `healthy` and `counters` say how it goes. Write failures reject
 * with FeatureStoreError('WRITE_FAILED', cause: RedisStoreError): a timed-out write may still
 * have been applied; re-sending is safe, since duplicates are ignored.
 *
 * Durability: `ingest` resolves once Redis has applied the events; whether they survive a Redis
 * restart is Redis' persistence configuration (AOF), not this store's.
 */
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { Redis, type RedisOptions } from 'ioredis';
import {
  FeatureStoreError,
  aggregateSorted,
  emptyAggregate,
  normalizeEvent,
  validateStreamConfig,
  validateWindowSpec,
  type AggregateValue,
  type EventFields,
  type StreamStoreConfig,
} from './aggregate.ts';
import { parseEvent, type StreamDefinition } from './events.ts';
import type { AggregateQuery, EntityValue, FeatureStore, IngestResult, StreamEvent } from './types.ts';

export interface RedisFeatureStoreOptions {
  /** `redis://[user:password@]host:port[/db]` (or `rediss://`). */
  url: string;
  /** Every stream events may be ingested on, with its lateness and retention (see `streamStoreConfigs`). */
  streams: Record<string, StreamStoreConfig>;
  /** Reads (aggregates, entities) fail after this long without a reply. Default 20 ms. */
  commandTimeoutMs?: number;
  /** Writes (ingest, putEntity) fail after this long without a reply. Default 250 ms. */
  writeTimeoutMs?: number;
  /** Prefix of every key. Default "rtml:". */
  keyPrefix?: string;
  /** Event keys expire this long after retentionMs once their entity gets no events (wall clock). Default 1 h. */
  idleGraceMs?: number;
  /** Reconnection backoff: min(reconnectMinDelayMs × 2^attempt, reconnectMaxDelayMs). Defaults 50 ms and 1000 ms. */
  reconnectMinDelayMs?: number;
  reconnectMaxDelayMs?: number;
  /** Time to establish a TCP connection. Default 1000 ms. */
  connectTimeoutMs?: number;
  /** Events per Lua call; a larger `ingest` is split (each part atomic). Default 1000. */
  maxEventsPerScript?: number;
  /** Client name shown by CLIENT LIST. Default "rtml-features". */
  connectionName?: string;
}

/** Why a Redis call failed: the connection was down (failed at once), a reply took too long, or Redis answered an error. */
export type RedisFailure = 'unavailable' | 'timeout' | 'redis';

export class RedisStoreError extends Error {
  constructor(
    readonly reason: RedisFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RedisStoreError';
  }

  /** A reply that did not come within the timeout: a feature looked up reports `timeout` (types.ts failureStatus). */
  get timedOut(): boolean {
    return this.reason === 'timeout';
  }
}

export interface RedisFeatureStoreCounters {
  /** Store calls that failed on Redis (= unavailable + timeouts + errors). */
  failures: number;
  /** … because the connection was down: failed at once. */
  unavailable: number;
  /** … because a reply did not come within the timeout. */
  timeouts: number;
  /** … because Redis answered an error. */
  errors: number;
  /** Connection-level errors (refused connects while Redis is down, resets): each a reconnect attempt. */
  connectionErrors: number;
  /** Times a connection became ready again after having been lost. */
  reconnects: number;
  /** Ingestion outcomes, as IngestResult, summed over this instance's calls. */
  accepted: number;
  duplicates: number;
  late: number;
  /** Redis Stream consumers: entries ingested (any outcome), entries skipped as invalid, failed reads/ingests. */
  streamEntries: number;
  streamInvalid: number;
  streamErrors: number;
}

/** How a Redis Stream entry becomes a StreamEvent. */
export interface ConsumeStreamOptions {
  /** With a group: XREADGROUP, each entry XACKed once ingested (the group is created at `from`, MKSTREAM, if absent). Without: XREAD. */
  group?: string;
  /** Consumer name in the group. Default `${hostname}-${pid}`. */
  consumer?: string;
  /** How long one read waits for entries (ms). Default 1000. */
  block?: number;
  /** Entries per read. Default 100. */
  count?: number;
  /** Where to start: "$" (only new entries, default), "0" (the whole stream) or an entry id. */
  from?: string;
  /**
   * The stream's declaration (events.ts `streamsOf`): entries are then read exactly as HTTP and
   * file ingestion read events (`parseEvent`, text mode: declared fields only, typed; id and
   * time required), and the mapping options below are ignored.
   */
  definition?: StreamDefinition;
  /** Entry field holding the entity key. Default "key". */
  keyField?: string;
  /** Entry field holding the event id. Default "event_id"; an entry without it uses its Redis entry id. */
  idField?: string;
  /** Entry field holding the event time (epoch ms or ISO 8601). Default "event_time"; an entry without it uses its entry id's time. */
  timeField?: string;
  /** Event fields and their types (as a stream spec's `fields`). Absent: every other entry field, numbers where the text is a number. */
  fields?: Record<string, 'number' | 'string'>;
  /** Called with each failed read or ingest (the consumer retries with backoff). */
  onError?: (error: unknown) => void;
  /** Called after each batch of entries is ingested. */
  onBatch?: (result: IngestResult & { invalid: number; entries: number }) => void;
}

/** Stops a consumer: resolves once its loop has ended and its connection is closed. */
export type StopConsumer = () => Promise<void>;

const DEFAULT_PREFIX = 'rtml:';

// KEYS: S stream hashes, then per event (events zset, ids zset).
// ARGV: S, then per stream (latenessMs, retentionMs, ttlMs), then per event (stream index, time, id, payload).
const INGEST_LUA = `
local S = tonumber(ARGV[1])
local maxT, seq, lat, ret, ttl, changed = {}, {}, {}, {}, {}, {}
for s = 1, S do
  local h = redis.call('HMGET', KEYS[s], 'max', 'seq')
  maxT[s] = h[1] and tonumber(h[1]) or -math.huge
  seq[s] = h[2] and tonumber(h[2]) or 0
  local a = 1 + 3 * (s - 1)
  lat[s] = tonumber(ARGV[a + 1])
  ret[s] = tonumber(ARGV[a + 2])
  ttl[s] = ARGV[a + 3]
end
local base = 1 + 3 * S
local n = (#ARGV - base) / 4
local accepted, duplicates, late = 0, 0, 0
local touched, order = {}, {}
for i = 1, n do
  local a = base + 4 * (i - 1)
  local s = tonumber(ARGV[a + 1])
  local ts = ARGV[a + 2]
  local t = tonumber(ts)
  local id = ARGV[a + 3]
  local ev = KEYS[S + 2 * i - 1]
  local ids = KEYS[S + 2 * i]
  if redis.call('ZSCORE', ids, id) then
    duplicates = duplicates + 1
  elseif t < maxT[s] - lat[s] then
    late = late + 1
  else
    seq[s] = seq[s] + 1
    local d = string.format('%.0f', seq[s])
    redis.call('ZADD', ev, ts, string.char(96 + #d) .. d .. ARGV[a + 4])
    redis.call('ZADD', ids, ts, id)
    if t > maxT[s] then maxT[s] = t end
    changed[s] = true
    if not touched[ev] then
      touched[ev] = true
      order[#order + 1] = { ev, ids, s }
    end
    accepted = accepted + 1
  end
end
for _, k in ipairs(order) do
  local s = k[3]
  redis.call('ZREMRANGEBYSCORE', k[1], '-inf', '(' .. string.format('%.17g', maxT[s] - ret[s]))
  redis.call('ZREMRANGEBYSCORE', k[2], '-inf', '(' .. string.format('%.17g', maxT[s] - 2 * ret[s]))
  redis.call('PEXPIRE', k[1], ttl[s])
  redis.call('PEXPIRE', k[2], ttl[s])
end
for s = 1, S do
  if changed[s] then
    redis.call('HSET', KEYS[s], 'max', string.format('%.17g', maxT[s]), 'seq', string.format('%.0f', seq[s]))
  end
end
return { accepted, duplicates, late }
`;

// KEYS[1]: the entity hash. ARGV[1]: at (ms); then (field, JSON value) pairs.
const PUT_ENTITY_LUA = `
local at = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local f = ARGV[i]
  local tf = f .. '@t'
  local prev = redis.call('HGET', KEYS[1], tf)
  if (not prev) or at >= tonumber(prev) then
    redis.call('HSET', KEYS[1], f, ARGV[i + 1], tf, ARGV[1])
  end
end
return 0
`;

interface Script {
  lua: string;
  sha: string;
}

const script = (lua: string): Script => ({ lua, sha: createHash('sha1').update(lua).digest('hex') });

type EntityInput = number | string | boolean | null;

export class RedisFeatureStore implements FeatureStore {
  readonly kind = 'redis' as const;
  readonly keyPrefix: string;
  readonly commandTimeoutMs: number;
  readonly writeTimeoutMs: number;

  private readonly streams = new Map<string, StreamStoreConfig & { ttlMs: number; stateKey: string; eventsPrefix: string; idsPrefix: string }>();
  private readonly reader: Redis;
  private readonly writer: Redis;
  private readonly baseOptions: RedisOptions;
  private readonly url: string;
  private readonly maxEventsPerScript: number;
  private readonly idleGraceMs: number;
  private readonly ingestScript = script(INGEST_LUA);
  private readonly entityScript = script(PUT_ENTITY_LUA);
  private readonly consumers = new Set<StopConsumer>();
  private readonly c: RedisFeatureStoreCounters = {
    failures: 0,
    unavailable: 0,
    timeouts: 0,
    errors: 0,
    connectionErrors: 0,
    reconnects: 0,
    accepted: 0,
    duplicates: 0,
    late: 0,
    streamEntries: 0,
    streamInvalid: 0,
    streamErrors: 0,
  };
  private closed = false;
  private closing: Promise<void> | null = null;
  private lastErrorMessage: string | null = null;

  constructor(options: RedisFeatureStoreOptions) {
    if (typeof options?.url !== 'string' || options.url.length === 0) throw new TypeError('redis feature store: url is required');
    this.url = options.url;
    this.keyPrefix = options.keyPrefix ?? DEFAULT_PREFIX;
    this.commandTimeoutMs = positive('commandTimeoutMs', options.commandTimeoutMs ?? 20);
    this.writeTimeoutMs = positive('writeTimeoutMs', options.writeTimeoutMs ?? 250);
    this.maxEventsPerScript = positive('maxEventsPerScript', options.maxEventsPerScript ?? 1000);
    const idleGraceMs = nonNegative('idleGraceMs', options.idleGraceMs ?? 3_600_000);
    const minDelay = positive('reconnectMinDelayMs', options.reconnectMinDelayMs ?? 50);
    const maxDelay = positive('reconnectMaxDelayMs', options.reconnectMaxDelayMs ?? 1000);
    this.idleGraceMs = idleGraceMs;
    for (const [name, config] of Object.entries(options.streams ?? {})) this.setStream(name, config);
    this.baseOptions = {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      enableReadyCheck: true,
      protocol: 2,
      connectTimeout: positive('connectTimeoutMs', options.connectTimeoutMs ?? 1000),
      connectionName: options.connectionName ?? 'rtml-features',
      disableClientInfo: true,
      // Bounded exponential backoff with a little jitter; never gives up.
      retryStrategy: (times: number) => Math.min(minDelay * 2 ** Math.min(times - 1, 20), maxDelay) + Math.floor(Math.random() * Math.min(50, minDelay)),
    };
    this.reader = this.connect('reader', { commandTimeout: this.commandTimeoutMs });
    this.writer = this.connect('writer', { commandTimeout: this.writeTimeoutMs });
  }

  /**
   * Streams declared after connecting (a bundle loaded into a running server): a new one is
   * added; a known one takes the new lateness and the larger retention. What Redis already
   * trimmed under the old retention is gone (Redis is not a log): a longer window is complete
   * once that much time has passed.
   */
  async configureStreams(streams: Record<string, StreamStoreConfig>): Promise<void> {
    if (this.closed) throw closedError();
    for (const [name, config] of Object.entries(streams)) validateStreamConfig(name, config);
    for (const [name, config] of Object.entries(streams)) {
      this.setStream(name, { latenessMs: config.latenessMs, retentionMs: Math.max(config.retentionMs, this.streams.get(name)?.retentionMs ?? 0) });
    }
  }

  private setStream(name: string, config: StreamStoreConfig): void {
    validateStreamConfig(name, config);
    const s = escapeName(name);
    this.streams.set(name, {
      latenessMs: config.latenessMs,
      retentionMs: config.retentionMs,
      ttlMs: Math.max(1, Math.ceil(config.retentionMs + this.idleGraceMs)),
      stateKey: `${this.keyPrefix}st:${s}`,
      eventsPrefix: `${this.keyPrefix}ev:${s}:`,
      idsPrefix: `${this.keyPrefix}ids:${s}:`,
    });
  }

  /** True while the read and write connections are both up. */
  get healthy(): boolean {
    return !this.closed && this.reader.status === 'ready' && this.writer.status === 'ready';
  }

  /** A snapshot of the counters. */
  get counters(): RedisFeatureStoreCounters {
    return { ...this.c };
  }

  /** The last connection or command error seen (null if none). */
  get lastError(): string | null {
    return this.lastErrorMessage;
  }

  /** Each configured stream's shared state in Redis: newest accepted event time, watermark, events ingested so far (all processes). */
  async streamInfo(): Promise<Record<string, { maxTime: number; watermark: number; ingested: number }>> {
    if (this.closed) throw closedError();
    const pipeline = this.reader.pipeline();
    const names = [...this.streams.keys()];
    for (const name of names) pipeline.hmget(this.streams.get(name)!.stateKey, 'max', 'seq');
    const replies = (await this.exec(pipeline, 'streamInfo')) as [string | null, string | null][];
    const out: Record<string, { maxTime: number; watermark: number; ingested: number }> = {};
    names.forEach((name, i) => {
      const [max, seq] = replies[i];
      const maxTime = max === null ? -Infinity : Number(max);
      out[name] = { maxTime, watermark: maxTime - this.streams.get(name)!.latenessMs, ingested: seq === null ? 0 : Number(seq) };
    });
    return out;
  }

  /** Resolves once both connections are ready; rejects (RedisStoreError 'unavailable') after `timeoutMs`. */
  async waitReady(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.healthy) {
      if (this.closed) throw closedError();
      if (Date.now() >= deadline) {
        throw new RedisStoreError('unavailable', `redis feature store: ${redact(this.url)} not ready within ${timeoutMs} ms${this.lastErrorMessage ? ` (${this.lastErrorMessage})` : ''}`);
      }
      await sleep(Math.min(10, Math.max(1, deadline - Date.now())));
    }
  }

  async ingest(events: readonly StreamEvent[]): Promise<IngestResult> {
    if (this.closed) throw closedError();
    if (!Array.isArray(events)) throw new FeatureStoreError('INVALID', 'ingest: events must be an array');
    // Validate everything first: a bad call is rejected alone, nothing of it applied.
    const prepared = events.map((e) => {
      const fields = normalizeEvent(e);
      const stream = this.stream(e.stream);
      return { e, stream, payload: encodeEvent(e.id, fields) };
    });
    const result: IngestResult = { accepted: 0, duplicates: 0, late: 0 };
    if (prepared.length === 0) return result;

    const calls: { keys: string[]; args: string[] }[] = [];
    for (let from = 0; from < prepared.length; from += this.maxEventsPerScript) {
      const part = prepared.slice(from, from + this.maxEventsPerScript);
      const streamIndex = new Map<string, number>();
      const streamKeys: string[] = [];
      const streamArgs: string[] = [];
      const eventKeys: string[] = [];
      const eventArgs: string[] = [];
      for (const { e, stream, payload } of part) {
        let s = streamIndex.get(e.stream);
        if (s === undefined) {
          s = streamKeys.length + 1;
          streamIndex.set(e.stream, s);
          streamKeys.push(stream.stateKey);
          streamArgs.push(numberText(stream.latenessMs), numberText(stream.retentionMs), String(stream.ttlMs));
        }
        eventKeys.push(stream.eventsPrefix + e.key, stream.idsPrefix + e.key);
        eventArgs.push(String(s), numberText(e.time), e.id, payload);
      }
      calls.push({ keys: [...streamKeys, ...eventKeys], args: [String(streamKeys.length), ...streamArgs, ...eventArgs] });
    }
    let replies: unknown[];
    try {
      replies = await this.evalAll(this.writer, this.ingestScript, calls);
    } catch (err) {
      throw writeFailed(`ingest of ${prepared.length} event(s)`, this.failed(err, 'ingest'));
    }
    for (const r of replies) {
      const [a, d, l] = r as [number, number, number];
      result.accepted += a;
      result.duplicates += d;
      result.late += l;
    }
    this.c.accepted += result.accepted;
    this.c.duplicates += result.duplicates;
    this.c.late += result.late;
    return result;
  }

  async aggregate(query: AggregateQuery): Promise<AggregateValue> {
    return (await this.aggregates([query]))[0];
  }

  async aggregates(queries: readonly AggregateQuery[]): Promise<AggregateValue[]> {
    if (this.closed) throw closedError();
    if (!Array.isArray(queries)) throw new FeatureStoreError('INVALID', 'aggregates: queries must be an array');
    // Group the queries by (stream, key): one fetch per group over the union of its windows.
    const groups = new Map<string, { key: string; queries: number[]; lo: number; hi: number; countOnly: boolean }>();
    queries.forEach((q, i) => {
      validateWindowSpec(q);
      const stream = this.stream(q.stream);
      if (typeof q.key !== 'string') throw new FeatureStoreError('INVALID', `aggregate on ${q.stream}: key must be a string`);
      const key = stream.eventsPrefix + q.key;
      const lo = q.at - q.windowMs;
      const g = groups.get(key);
      if (g === undefined) groups.set(key, { key, queries: [i], lo, hi: q.at, countOnly: q.fn === 'count' });
      else {
        g.queries.push(i);
        if (lo < g.lo) g.lo = lo;
        if (q.at > g.hi) g.hi = q.at;
        if (q.fn !== 'count') g.countOnly = false;
      }
    });
    const out: AggregateValue[] = new Array(queries.length);
    if (groups.size === 0) return out;

    const pipeline = this.reader.pipeline();
    const plan: { group: typeof groups extends Map<string, infer G> ? G : never; count: boolean }[] = [];
    for (const g of groups.values()) {
      if (g.countOnly) {
        // Count is the number of events in (at - window, at]: exactly ZCOUNT's open/closed interval.
        for (const i of g.queries) {
          const q = queries[i];
          pipeline.zcount(g.key, `(${numberText(q.at - q.windowMs)}`, numberText(q.at));
        }
        plan.push({ group: g, count: true });
      } else {
        pipeline.zrangebyscore(g.key, `(${numberText(g.lo)}`, numberText(g.hi), 'WITHSCORES');
        plan.push({ group: g, count: false });
      }
    }
    const replies = await this.exec(pipeline, 'aggregates');
    let r = 0;
    for (const { group, count } of plan) {
      if (count) {
        for (const i of group.queries) out[i] = Number(replies[r++]);
        continue;
      }
      const flat = replies[r++] as string[];
      const n = flat.length / 2;
      if (n === 0) {
        for (const i of group.queries) out[i] = emptyAggregate(queries[i].fn);
        continue;
      }
      const times = new Array<number>(n);
      const fields = new Array<EventFields | undefined>(n);
      for (let j = 0; j < n; j++) {
        fields[j] = decodeEventFields(flat[2 * j]);
        times[j] = Number(flat[2 * j + 1]);
      }
      for (const i of group.queries) out[i] = aggregateSorted(times, fields, queries[i]);
    }
    return out;
  }

  async putEntity(type: string, id: string, fields: Record<string, EntityInput>, at?: number): Promise<void> {
    if (this.closed) throw closedError();
    const when = at ?? Date.now();
    if (typeof type !== 'string' || typeof id !== 'string') throw new FeatureStoreError('INVALID', 'putEntity: type and id must be strings');
    if (typeof when !== 'number' || !Number.isFinite(when)) throw new FeatureStoreError('INVALID', `putEntity ${type}/${id}: at must be a finite number (ms), got ${String(at)}`);
    if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) throw new FeatureStoreError('INVALID', `putEntity ${type}/${id}: fields must be an object`);
    const args: string[] = [numberText(when)];
    for (const [name, v] of Object.entries(fields)) {
      let value: EntityInput;
      if (typeof v === 'number') value = Number.isFinite(v) ? v : null;
      else if (v === null || typeof v === 'string' || typeof v === 'boolean') value = v;
      else throw new FeatureStoreError('INVALID', `putEntity ${type}/${id}: field ${JSON.stringify(name)} must be a number, string, boolean or null`);
      args.push(escapeField(name), encodeValue(value));
    }
    if (args.length === 1) return;
    try {
      await this.evalAll(this.writer, this.entityScript, [{ keys: [this.entityKey(type, id)], args }]);
    } catch (err) {
      throw writeFailed(`putEntity ${type}/${id}`, this.failed(err, 'putEntity'));
    }
  }

  async getEntity(type: string, id: string, fields: readonly string[]): Promise<(EntityValue | null)[]> {
    if (this.closed) throw closedError();
    if (typeof type !== 'string' || typeof id !== 'string') throw new FeatureStoreError('INVALID', 'getEntity: type and id must be strings');
    if (fields.length === 0) return [];
    const names: string[] = [];
    for (const f of fields) {
      const e = escapeField(f);
      names.push(e, `${e}@t`);
    }
    let reply: (string | null)[];
    try {
      this.checkUp(this.reader, 'getEntity');
      reply = await this.reader.hmget(this.entityKey(type, id), ...names);
    } catch (err) {
      throw this.failed(err, 'getEntity');
    }
    return fields.map((_, i) => {
      const v = reply[2 * i];
      const t = reply[2 * i + 1];
      return v === null || t === null ? null : { value: JSON.parse(v) as EntityInput, updatedAt: Number(t) };
    });
  }

  /**
   * Ingests the entries of a Redis Stream (`redisStreamKey`) as events of `stream`, in order, on
   * a connection of its own, until stopped. Entry fields map to the event as `options` says.
   * With a group, entries are acknowledged once ingested (re-delivered after a crash: re-sent
   * events are then duplicates, ignored); without, the consumer keeps its position in memory
   * and starts at `from`. Failed reads or ingests are retried with backoff (the position does
   * not advance past an entry that was not ingested). Invalid entries are counted and skipped.
   */
  consumeStream(redisStreamKey: string, stream: string, options: ConsumeStreamOptions = {}): StopConsumer {
    if (this.closed) throw closedError();
    this.stream(stream);
    const block = positive('block', options.block ?? 1000);
    const count = positive('count', options.count ?? 100);
    const group = options.group;
    const consumer = options.consumer ?? `${hostname()}-${process.pid}`;
    const from = options.from ?? '$';
    const definition = options.definition;
    if (definition !== undefined && definition.name !== stream) throw new TypeError(`consumeStream: definition is for stream ${JSON.stringify(definition.name)}, not ${JSON.stringify(stream)}`);
    const mapping: StreamEntryMapping = {
      keyField: options.keyField ?? 'key',
      idField: options.idField ?? 'event_id',
      timeField: options.timeField ?? 'event_time',
      fields: options.fields,
    };
    // A blocking read must outlive its BLOCK: this connection's timeout covers it, plus slack.
    const client = this.connect('consumer', { commandTimeout: block + Math.max(1000, this.writeTimeoutMs) });
    let stopped = false;
    let wake: (() => void) | null = null;
    const pause = (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          wake = null;
          resolve();
        }, ms);
        wake = () => {
          clearTimeout(timer);
          wake = null;
          resolve();
        };
      });
    const report = (err: unknown) => {
      this.c.streamErrors++;
      this.lastErrorMessage = (err as Error)?.message ?? String(err);
      try {
        options.onError?.(err);
      } catch {
        // A throwing callback must not stop the consumer.
      }
    };

    const handle = async (entries: [string, string[] | null][]): Promise<void> => {
      const events: StreamEvent[] = [];
      let invalid = 0;
      for (const [entryId, flat] of entries) {
        if (flat === null) {
          invalid++; // deleted (XDEL) while pending
          continue;
        }
        let e: StreamEvent | null;
        if (definition !== undefined) {
          const raw: Record<string, string> = {};
          for (let i = 0; i + 1 < flat.length; i += 2) raw[flat[i]] = flat[i + 1];
          const parsed = parseEvent(definition, raw, true);
          e = parsed.ok ? parsed.event : null;
        } else e = entryToEvent(stream, entryId, flat, mapping);
        if (e === null) invalid++;
        else events.push(e);
      }
      const r = events.length > 0 ? await this.ingest(events) : { accepted: 0, duplicates: 0, late: 0 };
      this.c.streamEntries += events.length;
      this.c.streamInvalid += invalid;
      try {
        options.onBatch?.({ ...r, invalid, entries: entries.length });
      } catch {
        // ignore
      }
    };

    const loop = async (): Promise<void> => {
      let backoff = 50;
      let position: string | null = group ? null : from === '$' ? null : from;
      let groupReady = false;
      let pendingPhase = true;
      while (!stopped) {
        try {
          if (client.status !== 'ready') {
            await pause(Math.min(backoff, 200));
            continue;
          }
          if (group) {
            if (!groupReady) {
              try {
                await client.xgroup('CREATE', redisStreamKey, group, from, 'MKSTREAM');
              } catch (err) {
                if (!String((err as Error)?.message).includes('BUSYGROUP')) throw err;
              }
              groupReady = true;
            }
            // First this consumer's pending entries (delivered before a crash, never acked), then new ones.
            const reply = pendingPhase
              ? await client.xreadgroup('GROUP', group, consumer, 'COUNT', count, 'STREAMS', redisStreamKey, '0')
              : await client.xreadgroup('GROUP', group, consumer, 'COUNT', count, 'BLOCK', block, 'STREAMS', redisStreamKey, '>');
            const entries = streamEntries(reply);
            if (pendingPhase && entries.length === 0) {
              pendingPhase = false;
              continue;
            }
            if (entries.length > 0) {
              await handle(entries);
              await client.xack(redisStreamKey, group, ...entries.map(([id]) => id));
            }
          } else {
            if (position === null) {
              // Resolve "$" once, so entries added between two reads are not skipped.
              const last = (await client.xrevrange(redisStreamKey, '+', '-', 'COUNT', 1)) as [string, string[]][];
              position = last.length > 0 ? last[0][0] : '0-0';
            }
            const reply = await client.xread('COUNT', count, 'BLOCK', block, 'STREAMS', redisStreamKey, position);
            const entries = streamEntries(reply);
            if (entries.length > 0) {
              await handle(entries);
              position = entries[entries.length - 1][0];
            }
          }
          backoff = 50;
        } catch (err) {
          if (stopped) break;
          report(err);
          // After a failure: make sure the group exists (a restarted Redis without persistence lost it), then re-read our pending entries first.
          groupReady = false;
          pendingPhase = true;
          await pause(backoff);
          backoff = Math.min(backoff * 2, 1000);
        }
      }
    };

    const done = loop();
    let stopping: Promise<void> | null = null;
    const stop: StopConsumer = () => {
      if (stopping) return stopping;
      stopped = true;
      this.consumers.delete(stop);
      wake?.();
      // Disconnecting ends a blocked read at once.
      client.disconnect();
      stopping = done;
      return stopping;
    };
    this.consumers.add(stop);
    return stop;
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.closing = (async () => {
      await Promise.all([...this.consumers].map((stop) => stop()));
      await Promise.all([quit(this.reader), quit(this.writer)]);
    })();
    return this.closing;
  }

  // ---------------------------------------------------------------------------------------

  private stream(name: string) {
    const s = this.streams.get(name);
    if (s === undefined) {
      throw new FeatureStoreError('UNKNOWN_STREAM', `feature store: unknown stream ${JSON.stringify(name)} (configured: ${[...this.streams.keys()].join(', ') || 'none'})`);
    }
    return s;
  }

  private entityKey(type: string, id: string): string {
    return `${this.keyPrefix}ent:${escapeName(type)}:${id}`;
  }

  private connect(role: string, extra: RedisOptions): Redis {
    const client = new Redis(this.url, { ...this.baseOptions, ...extra, connectionName: `${this.baseOptions.connectionName}-${role}` });
    let wasReady = false;
    client.on('error', (err: Error) => {
      // Without a listener an 'error' event would crash the process; while Redis is down each reconnect attempt lands here.
      this.c.connectionErrors++;
      this.lastErrorMessage = err?.message ?? String(err);
    });
    client.on('ready', () => {
      if (wasReady) this.c.reconnects++;
      wasReady = true;
      // Load the scripts (after a Redis restart the script cache is empty): saves a NOSCRIPT round trip on the first write.
      if (role === 'writer') for (const { lua } of [this.ingestScript, this.entityScript]) (client.script('LOAD', lua) as Promise<unknown>).catch(() => {});
    });
    return client;
  }

  /** Fails at once, without queueing, when the connection is down (the caller counts the failure). */
  private checkUp(client: Redis, op: string): void {
    if (client.status !== 'ready') throw new RedisStoreError('unavailable', `redis feature store: ${op}: not connected to Redis (${client.status})`);
  }

  /** Runs a pipeline; its first failed command fails the call. */
  private async exec(pipeline: ReturnType<Redis['pipeline']>, op: string): Promise<unknown[]> {
    let results: [Error | null, unknown][] | null;
    try {
      this.checkUp(this.reader, op);
      results = await pipeline.exec();
    } catch (err) {
      throw this.failed(err, op);
    }
    if (results === null) throw this.failed(new RedisStoreError('unavailable', `redis feature store: ${op}: pipeline discarded`), op);
    const out = new Array<unknown>(results.length);
    for (let i = 0; i < results.length; i++) {
      const [err, value] = results[i];
      if (err) throw this.failed(err, op);
      out[i] = value;
    }
    return out;
  }

  /** EVALSHA each call (pipelined), falling back to EVAL for the calls Redis refused with NOSCRIPT (those did nothing). */
  private async evalAll(client: Redis, script: Script, calls: { keys: string[]; args: string[] }[]): Promise<unknown[]> {
    this.checkUp(client, 'write');
    const run = async (batch: { keys: string[]; args: string[] }[], useSha: boolean): Promise<[Error | null, unknown][]> => {
      const pipeline = client.pipeline();
      for (const { keys, args } of batch) {
        if (useSha) pipeline.evalsha(script.sha, keys.length, ...keys, ...args);
        else pipeline.eval(script.lua, keys.length, ...keys, ...args);
      }
      const results = await pipeline.exec();
      if (results === null) throw new RedisStoreError('unavailable', 'redis feature store: pipeline discarded');
      return results;
    };
    const noScript = (r: [Error | null, unknown]) => r[0] !== null && String(r[0].message).includes('NOSCRIPT');
    const results = await run(calls, true);
    const retry = results.map((r, i) => (noScript(r) ? i : -1)).filter((i) => i >= 0);
    if (retry.length > 0) {
      const again = await run(retry.map((i) => calls[i]), false);
      retry.forEach((i, j) => (results[i] = again[j]));
    }
    const out = new Array<unknown>(results.length);
    for (let i = 0; i < results.length; i++) {
      const [err, value] = results[i];
      if (err) throw err;
      out[i] = value;
    }
    return out;
  }

  /** Counts a failed call and returns the error to throw (a RedisStoreError). */
  private failed(err: unknown, op: string): RedisStoreError {
    const e = err instanceof RedisStoreError ? err : classify(err, op);
    this.c.failures++;
    if (e.reason === 'unavailable') this.c.unavailable++;
    else if (e.reason === 'timeout') this.c.timeouts++;
    else this.c.errors++;
    this.lastErrorMessage = e.message;
    return e;
  }
}

/**
 * Creates a RedisFeatureStore and waits until it is connected; closes it and rejects
 * (RedisStoreError 'unavailable') if Redis does not answer within `waitMs`. (The constructor
 * alone returns at once and connects in the background: calls fail until connected.)
 */
export async function connectRedisFeatureStore(options: RedisFeatureStoreOptions, waitMs = 5000): Promise<RedisFeatureStore> {
  const store = new RedisFeatureStore(options);
  try {
    await store.waitReady(waitMs);
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** A number as text that parses back to the same double (strtod in Redis, Number() in JS). */
function numberText(n: number): string {
  return Object.is(n, -0) ? '-0' : String(n);
}

/** A value as JSON, keeping -0 (JSON.parse("-0") is -0; JSON.stringify(-0) would say "0"). */
function encodeValue(v: EntityInput): string {
  return typeof v === 'number' ? numberText(v) : JSON.stringify(v);
}

/** An event as a zset member body: compact JSON [id, fields] (fields already normalized: finite numbers, strings, null). */
export function encodeEvent(id: string, fields: EventFields): string {
  let s = `[${JSON.stringify(id)},{`;
  let first = true;
  for (const k of Object.keys(fields)) {
    const v = fields[k];
    s += `${first ? '' : ','}${JSON.stringify(k)}:${typeof v === 'number' ? numberText(v) : JSON.stringify(v)}`;
    first = false;
  }
  return `${s}}]`;
}

/** The fields of a stored member: after the sequence tag (a letter giving the digit count, then the digits). */
function decodeEventFields(member: string): EventFields {
  const tag = member.charCodeAt(0) - 96 + 1;
  return (JSON.parse(member.slice(tag)) as [string, EventFields])[1];
}

/** A stored member as the event it encodes (for inspection and tests). */
export function decodeEventMember(member: string): { seq: number; id: string; fields: EventFields } {
  const tag = member.charCodeAt(0) - 96 + 1;
  const [id, fields] = JSON.parse(member.slice(tag)) as [string, EventFields];
  return { seq: Number(member.slice(1, tag)), id, fields };
}

/** Stream and entity-type names inside key names: ":" and "%" escaped so that names cannot collide. */
function escapeName(name: string): string {
  return /[:%]/.test(name) ? name.replace(/%/g, '%25').replace(/:/g, '%3A') : name;
}

/** Entity field names inside the hash: "@" doubled, so no field's name is another's "@t" time. */
function escapeField(name: string): string {
  return name.includes('@') ? name.replace(/@/g, '@@') : name;
}

// ---------------------------------------------------------------------------------------------
// Redis Stream entries

export interface StreamEntryMapping {
  keyField: string;
  idField: string;
  timeField: string;
  fields: Record<string, 'number' | 'string'> | undefined;
}

const NUMBER_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** A time as epoch ms: digits are epoch milliseconds, anything else is parsed as a date (ISO 8601). */
export function parseEventTime(text: string): number | null {
  if (NUMBER_TEXT.test(text.trim())) {
    const n = Number(text);
    return Number.isFinite(n) ? n : null;
  }
  const t = Date.parse(text);
  return Number.isFinite(t) ? t : null;
}

/** One Redis Stream entry as a StreamEvent of `stream`, or null if it has no key or an unreadable time. */
export function entryToEvent(stream: string, entryId: string, flat: readonly string[], mapping: StreamEntryMapping): StreamEvent | null {
  let key: string | undefined;
  let id: string | undefined;
  let timeText: string | undefined;
  const fields: Record<string, number | string | null> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const name = flat[i];
    const value = flat[i + 1];
    if (name === mapping.keyField) key = value;
    else if (name === mapping.idField) id = value;
    else if (name === mapping.timeField) timeText = value;
    else if (mapping.fields) {
      const type = mapping.fields[name];
      if (type === 'string') fields[name] = value;
      else if (type === 'number') fields[name] = value.trim() === '' ? null : Number(value);
    } else fields[name] = NUMBER_TEXT.test(value) ? Number(value) : value;
  }
  if (mapping.fields) for (const name of Object.keys(mapping.fields)) if (!(name in fields)) fields[name] = null;
  if (key === undefined) return null;
  const time = timeText === undefined ? Number(entryId.split('-')[0]) : parseEventTime(timeText);
  if (time === null || !Number.isFinite(time)) return null;
  return { stream, key, id: id ?? entryId, time, fields };
}

function streamEntries(reply: unknown): [string, string[] | null][] {
  if (!Array.isArray(reply) || reply.length === 0) return [];
  const first = reply[0] as [string, [string, string[] | null][]];
  return Array.isArray(first?.[1]) ? first[1] : [];
}

// ---------------------------------------------------------------------------------------------
// Errors and helpers

function classify(err: unknown, op: string): RedisStoreError {
  const message = (err as Error)?.message ?? String(err);
  let reason: RedisFailure = 'redis';
  if (/timed out/i.test(message)) reason = 'timeout';
  else if (/isn't writeable|max retries per request|Connection is closed|ECONNREFUSED|ECONNRESET|EPIPE|not connected/i.test(message)) reason = 'unavailable';
  return new RedisStoreError(reason, `redis feature store: ${op}: ${message}`, { cause: err });
}

function writeFailed(what: string, err: RedisStoreError): FeatureStoreError {
  return new FeatureStoreError('WRITE_FAILED', `feature store (redis): ${what} failed (${err.reason}): ${err.message}`, { cause: err });
}

const closedError = (): FeatureStoreError => new FeatureStoreError('CLOSED', 'feature store: closed');

async function quit(client: Redis): Promise<void> {
  if (client.status === 'ready') {
    try {
      await Promise.race([client.quit(), sleep(200)]);
    } catch {
      // Fall through to a hard disconnect.
    }
  }
  client.disconnect();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function redact(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}

function positive(name: string, v: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new TypeError(`redis feature store: ${name} must be a positive number, got ${String(v)}`);
  return v;
}

function nonNegative(name: string, v: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new TypeError(`redis feature store: ${name} must be a number >= 0, got ${String(v)}`);
  return v;
}
