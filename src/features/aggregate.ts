/**
 * Streaming aggregates: the ONE implementation of window semantics, lateness and dedupe, shared
 * by every feature store (embedded, Redis) and by the batch backfill, so that real-time and
 * batch values agree by construction. Pure: no I/O, no clock.
 *
 * Window. An aggregate at time `at` over `window` covers the events with
 *     at - window < time <= at
 * (open on the left, closed on the right: an event exactly `window` old has left the window;
 * an event at `at` is in it).
 *
 * Functions (over the events in the window):
 *  - count: number of events (the field is not looked at); 0 when empty.
 *  - sum: sum of the field's finite numeric values; non-numbers (strings, null, absent) are
 *    ignored; 0 when there are none.
 *  - mean, min, max: of the field's finite numeric values; null when there are none.
 *  - distinct: number of distinct non-null values of the field (numbers and strings; 1 and "1"
 *    are different values); 0 when none.
 *  - last: the field's value on the latest event in the window that has one (not null or
 *    absent), "latest" by event time, ties broken by ingestion order (later ingested wins); null
 *    when none. Skipping events without the field makes `last` the last KNOWN value, the same
 *    "missing values are ignored" rule as every other function.
 * Sums are accumulated in (time, ingestion) order, so every store and the backfill produce the
 * same floating-point result for the same events.
 *
 * Events are kept per (stream, key) in an `EventBuffer`, sorted by (time, ingestion order); an
 * aggregate binary-searches the window bounds and scans the k events between them: O(log n + k)
 * (count: O(log n)). A store that keeps events elsewhere (Redis) fetches the key's events in that
 * order and calls `aggregateSorted`.
 *
 * Ingestion rule (`StreamState.offer`, applied to each event in arrival order; for one `ingest`
 * call, in array order):
 *  1. duplicate: an event whose id is already held for the same (stream, key) is ignored and
 *     counted as a duplicate (ids are remembered as long as their event is retained, restarts
 *     included). Dedupe is checked first: a re-sent event is a duplicate even once it is late.
 *  2. late: the stream's watermark is `maxTime - latenessMs`, where `maxTime` is the largest
 *     event time ACCEPTED so far on the stream (all keys); an event with `time < watermark` is
 *     rejected and counted as late, not applied. `time == watermark` is accepted.
 *  3. accepted otherwise: inserted in time order (after events with the same time), so a
 *     late-but-within-lateness event updates exactly the windows that include it; `maxTime`
 *     advances if the event is newer.
 * Retention: events older than `maxTime - retentionMs` may be evicted (with their ids), where
 * retentionMs = largest window any feature uses on the stream + lateness (`streamStoreConfigs`).
 * That keeps every window exact for any `at >= watermark`, i.e. for every query a real-time
 * caller makes; an evicted event can only come back late (retention >= lateness), so forgetting
 * its id changes at most whether a re-send is counted as duplicate or as late.
 *
 * Watermarks and retention run on EVENT time, not the wall clock: a replay of old events works,
 * and an idle stream keeps its last windows. The flip side: one accepted event with a bogus
 * future time moves its stream's watermark and makes every normal event late until real time
 * catches up, so the ingest endpoint should refuse times too far past its own clock.
 */
import { parseDuration, type AggregateFunction, type AggregateQuery, type IngestResult, type SourceSpec, type SourcesSpec, type StreamEvent } from './types.ts';

export type AggregateValue = number | string | null;
export type EventFields = Readonly<Record<string, number | string | null>>;

/** What an aggregate is, without the (stream, key) it is asked of. */
export type WindowSpec = Pick<AggregateQuery, 'fn' | 'field' | 'windowMs' | 'at'>;

/** Errors a feature store raises, with a code a caller (the HTTP layer) can map to a status. */
export class FeatureStoreError extends Error {
  constructor(
    readonly code: 'UNKNOWN_STREAM' | 'INVALID' | 'WRITE_FAILED' | 'CLOSED' | 'NOT_A_FEATURE_STORE' | 'SCHEMA_VERSION',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'FeatureStoreError';
  }
}

const invalid = (message: string): FeatureStoreError => new FeatureStoreError('INVALID', message);

/** Per-stream store configuration. */
export interface StreamStoreConfig {
  /** Events up to this much older than the newest accepted event of the stream are still accepted. */
  latenessMs: number;
  /** Events older than the newest accepted one by more than this may be forgotten: largest window + lateness. */
  retentionMs: number;
}

/** The result of one event offered to a stream. */
export type Admission = 'accepted' | 'duplicate' | 'late';

/** Throws a FeatureStoreError (INVALID) unless the query's function, field, window and time are usable. */
export function validateWindowSpec(spec: WindowSpec): void {
  if (!AGGREGATE_FN_SET.has(spec.fn)) throw invalid(`aggregate: unknown function ${JSON.stringify(spec.fn)}`);
  if (spec.fn !== 'count' && (typeof spec.field !== 'string' || spec.field.length === 0)) {
    throw invalid(`aggregate: ${spec.fn} needs a field`);
  }
  if (typeof spec.windowMs !== 'number' || !Number.isFinite(spec.windowMs) || spec.windowMs <= 0) {
    throw invalid(`aggregate: windowMs must be a positive finite number, got ${String(spec.windowMs)}`);
  }
  if (typeof spec.at !== 'number' || !Number.isFinite(spec.at)) throw invalid(`aggregate: at must be a finite number (ms), got ${String(spec.at)}`);
}
const AGGREGATE_FN_SET: ReadonlySet<string> = new Set<AggregateFunction>(['count', 'sum', 'mean', 'min', 'max', 'distinct', 'last']);

/** The value of an aggregate over no events: 0 for count, sum and distinct, else null. */
export function emptyAggregate(fn: AggregateFunction): AggregateValue {
  return fn === 'count' || fn === 'sum' || fn === 'distinct' ? 0 : null;
}

/** First index i in [lo, hi) with times[i] > t (hi if none); `times` sorted ascending. */
export function upperBound(times: ArrayLike<number>, t: number, lo = 0, hi = times.length): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (times[mid] <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index i in [lo, hi) with times[i] >= t (hi if none); `times` sorted ascending. */
export function lowerBound(times: ArrayLike<number>, t: number, lo = 0, hi = times.length): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (times[mid] < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The index range [lo, hi) of the events in the window (at - windowMs, at]. */
export function windowRange(times: ArrayLike<number>, at: number, windowMs: number, from = 0, to = times.length): [number, number] {
  const hi = upperBound(times, at, from, to);
  const lo = upperBound(times, at - windowMs, from, hi);
  return [lo, hi];
}

/**
 * The aggregate over events held as parallel arrays sorted by (time, ingestion order): this is
 * the function every store calls. `from`/`to` restrict the arrays (e.g. a buffer with a head
 * offset); `fields[i]` may be undefined for an event without fields.
 */
export function aggregateSorted(
  times: ArrayLike<number>,
  fields: ArrayLike<EventFields | undefined>,
  spec: WindowSpec,
  from = 0,
  to = times.length,
): AggregateValue {
  const [lo, hi] = windowRange(times, spec.at, spec.windowMs, from, to);
  return reduceRange(spec.fn, spec.field, fields, lo, hi);
}

/** Reduces fields[lo..hi) (already the window, in (time, ingestion) order) with `fn`. */
export function reduceRange(fn: AggregateFunction, field: string | undefined, fields: ArrayLike<EventFields | undefined>, lo: number, hi: number): AggregateValue {
  if (fn === 'count') return hi - lo;
  const f = field as string;
  switch (fn) {
    case 'sum':
    case 'mean': {
      let sum = 0;
      let n = 0;
      for (let i = lo; i < hi; i++) {
        const v = fields[i]?.[f];
        if (typeof v === 'number' && Number.isFinite(v)) {
          sum += v;
          n++;
        }
      }
      if (fn === 'sum') return sum;
      return n === 0 ? null : sum / n;
    }
    case 'min':
    case 'max': {
      let best: number | null = null;
      for (let i = lo; i < hi; i++) {
        const v = fields[i]?.[f];
        if (typeof v === 'number' && Number.isFinite(v) && (best === null || (fn === 'min' ? v < best : v > best))) best = v;
      }
      return best;
    }
    case 'distinct': {
      const seen = new Set<number | string>();
      for (let i = lo; i < hi; i++) {
        const v = fields[i]?.[f];
        if (v !== null && v !== undefined) seen.add(v);
      }
      return seen.size;
    }
    case 'last': {
      for (let i = hi - 1; i >= lo; i--) {
        const v = fields[i]?.[f];
        if (v !== null && v !== undefined) return v;
      }
      return null;
    }
    default:
      throw new TypeError(`aggregate: unknown function ${JSON.stringify(fn)}`);
  }
}

/** The watermark of a stream: events older than this are late. -Infinity before any event. */
export function watermark(maxTime: number, latenessMs: number): number {
  return maxTime - latenessMs;
}

/** The lateness rule: `time < maxTime - latenessMs`. */
export function isLate(time: number, maxTime: number, latenessMs: number): boolean {
  return time < maxTime - latenessMs;
}

/**
 * The events of one (stream, key), sorted by (time, ingestion order), deduplicated by id.
 * Events are stored as parallel arrays from a head offset (eviction is O(1) amortized).
 */
export class EventBuffer {
  private t: number[] = [];
  private f: EventFields[] = [];
  private idx: string[] = [];
  private head = 0;
  private readonly ids = new Set<string>();

  /** Number of events held. */
  get size(): number {
    return this.t.length - this.head;
  }

  /** Whether an event with this id is held. */
  has(id: string): boolean {
    return this.ids.has(id);
  }

  /** The newest event time held (-Infinity if empty). */
  get maxTime(): number {
    return this.size === 0 ? -Infinity : this.t[this.t.length - 1];
  }

  /** The oldest event time held (Infinity if empty). */
  get minTime(): number {
    return this.size === 0 ? Infinity : this.t[this.head];
  }

  /**
   * Inserts an event after every held event with time <= its time. Returns false (and changes
   * nothing) if an event with the same id is held. `fields` is kept by reference: do not mutate it.
   */
  insert(id: string, time: number, fields: EventFields): boolean {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    const n = this.t.length;
    if (n === this.head || this.t[n - 1] <= time) {
      this.t.push(time);
      this.f.push(fields);
      this.idx.push(id);
    } else {
      const i = upperBound(this.t, time, this.head, n);
      this.t.splice(i, 0, time);
      this.f.splice(i, 0, fields);
      this.idx.splice(i, 0, id);
    }
    return true;
  }

  /** Removes the event with this id and time (an undo of `insert`); false if not held. */
  remove(id: string, time: number): boolean {
    if (!this.ids.has(id)) return false;
    let i = upperBound(this.t, time, this.head, this.t.length) - 1;
    for (; i >= this.head && this.t[i] === time; i--) {
      if (this.idx[i] === id) {
        this.t.splice(i, 1);
        this.f.splice(i, 1);
        this.idx.splice(i, 1);
        this.ids.delete(id);
        return true;
      }
    }
    return false;
  }

  /** Forgets the events with time < before (and their ids); returns how many. */
  evict(before: number): number {
    const cut = lowerBound(this.t, before, this.head, this.t.length);
    const removed = cut - this.head;
    if (removed === 0) return 0;
    for (let i = this.head; i < cut; i++) this.ids.delete(this.idx[i]);
    this.head = cut;
    if (this.head > 1024 && this.head * 2 > this.t.length) this.compact();
    else if (this.head === this.t.length) this.clear();
    return removed;
  }

  /** The aggregate over the held events: O(log n + k). */
  aggregate(spec: WindowSpec): AggregateValue {
    return aggregateSorted(this.t, this.f, spec, this.head, this.t.length);
  }

  /** The held events in (time, ingestion) order. */
  *events(): IterableIterator<{ id: string; time: number; fields: EventFields }> {
    for (let i = this.head; i < this.t.length; i++) yield { id: this.idx[i], time: this.t[i], fields: this.f[i] };
  }

  private compact(): void {
    this.t = this.t.slice(this.head);
    this.f = this.f.slice(this.head);
    this.idx = this.idx.slice(this.head);
    this.head = 0;
  }

  private clear(): void {
    this.t = [];
    this.f = [];
    this.idx = [];
    this.head = 0;
  }
}

/**
 * One stream's state: its event buffers by key, the newest accepted event time (the watermark's
 * base) and the counters. `offer` is THE ingestion rule (see the file comment).
 */
export class StreamState {
  readonly buffers = new Map<string, EventBuffer>();
  /** Newest accepted event time on the stream; -Infinity before any. */
  maxTime = -Infinity;
  readonly counts: IngestResult = { accepted: 0, duplicates: 0, late: 0 };

  constructor(
    readonly name: string,
    readonly config: StreamStoreConfig,
  ) {
    validateStreamConfig(name, config);
  }

  get watermark(): number {
    return watermark(this.maxTime, this.config.latenessMs);
  }

  /** Events older than this may be evicted. */
  get horizon(): number {
    return this.maxTime - this.config.retentionMs;
  }

  /** Applies the ingestion rule to one event (its time must be finite, see `validateEvent`). */
  offer(key: string, id: string, time: number, fields: EventFields): Admission {
    let buffer = this.buffers.get(key);
    if (buffer?.has(id)) {
      this.counts.duplicates++;
      return 'duplicate';
    }
    if (isLate(time, this.maxTime, this.config.latenessMs)) {
      this.counts.late++;
      return 'late';
    }
    if (buffer === undefined) {
      buffer = new EventBuffer();
      this.buffers.set(key, buffer);
    }
    buffer.insert(id, time, fields);
    if (time > this.maxTime) this.maxTime = time;
    this.counts.accepted++;
    return 'accepted';
  }

  /**
   * Puts back an event known to have been accepted (a store replaying its log on open): no
   * lateness check, so a lateness changed since does not drop history. False if a duplicate.
   */
  restore(key: string, id: string, time: number, fields: EventFields): boolean {
    let buffer = this.buffers.get(key);
    if (buffer === undefined) {
      buffer = new EventBuffer();
      this.buffers.set(key, buffer);
    }
    if (!buffer.insert(id, time, fields)) return false;
    if (time > this.maxTime) this.maxTime = time;
    return true;
  }

  aggregate(key: string, spec: WindowSpec): AggregateValue {
    const buffer = this.buffers.get(key);
    return buffer === undefined ? emptyAggregate(spec.fn) : buffer.aggregate(spec);
  }

  /** Evicts events older than `before` (default: the retention horizon) from every key; drops empty keys. */
  evict(before = this.horizon): number {
    if (!Number.isFinite(before)) return 0;
    let removed = 0;
    for (const [key, buffer] of this.buffers) {
      if (buffer.minTime >= before) continue;
      removed += buffer.evict(before);
      if (buffer.size === 0) this.buffers.delete(key);
    }
    return removed;
  }

  /** Number of events held over all keys. */
  get size(): number {
    let n = 0;
    for (const b of this.buffers.values()) n += b.size;
    return n;
  }
}

export function validateStreamConfig(name: string, config: StreamStoreConfig): void {
  const { latenessMs, retentionMs } = config ?? ({} as StreamStoreConfig);
  if (typeof latenessMs !== 'number' || !(latenessMs >= 0) || latenessMs === Infinity) {
    throw new TypeError(`stream ${JSON.stringify(name)}: latenessMs must be a finite number >= 0, got ${String(latenessMs)}`);
  }
  if (typeof retentionMs !== 'number' || !(retentionMs >= latenessMs) || retentionMs === Infinity) {
    throw new TypeError(`stream ${JSON.stringify(name)}: retentionMs must be finite and >= latenessMs (largest window + lateness), got ${String(retentionMs)}`);
  }
}

/**
 * Checks one event and returns its fields normalized: a copy holding only finite numbers,
 * strings and null (a non-finite number or any other value becomes null), so that what is
 * aggregated in memory is exactly what a store persists as JSON. Throws FeatureStoreError (INVALID) for a
 * non-string key or id, a non-finite time, or fields that are not an object.
 */
export function normalizeEvent(e: StreamEvent): EventFields {
  if (e === null || typeof e !== 'object') throw invalid('event: not an object');
  if (typeof e.stream !== 'string') throw invalid('event: stream must be a string');
  if (typeof e.key !== 'string') throw invalid(`event on ${e.stream}: key must be a string`);
  if (typeof e.id !== 'string') throw invalid(`event on ${e.stream}: id must be a string`);
  if (typeof e.time !== 'number' || !Number.isFinite(e.time)) {
    throw invalid(`event ${JSON.stringify(e.id)} on ${e.stream}: time must be a finite number (ms since the epoch), got ${String(e.time)}`);
  }
  const src = e.fields ?? {};
  if (typeof src !== 'object' || Array.isArray(src)) throw invalid(`event ${JSON.stringify(e.id)} on ${e.stream}: fields must be an object`);
  const out: Record<string, number | string | null> = {};
  for (const k of Object.keys(src)) {
    const v = (src as Record<string, unknown>)[k];
    out[k] = typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v)) ? v : null;
  }
  return out;
}

/**
 * Per-stream store configuration from a bundle's sources and features: lateness from the
 * stream's spec, retention = the largest window of any aggregate feature on the stream +
 * lateness (just the lateness for a stream no feature reads, so dedupe still works).
 */
export function streamStoreConfigs(streams: SourcesSpec['streams'], features: Iterable<SourceSpec | undefined>): Record<string, StreamStoreConfig> {
  const maxWindow = new Map<string, number>();
  for (const s of features) {
    if (s === undefined || !('aggregate' in s)) continue;
    if (!(s.aggregate in streams)) throw new TypeError(`feature source reads stream ${JSON.stringify(s.aggregate)}, which sources.streams does not declare`);
    maxWindow.set(s.aggregate, Math.max(maxWindow.get(s.aggregate) ?? 0, parseDuration(s.window)));
  }
  const out: Record<string, StreamStoreConfig> = {};
  for (const [name, spec] of Object.entries(streams)) {
    const latenessMs = parseDuration(spec.lateness);
    out[name] = { latenessMs, retentionMs: (maxWindow.get(name) ?? 0) + latenessMs };
  }
  return out;
}
