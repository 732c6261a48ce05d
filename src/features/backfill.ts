/**
 * Point-in-time backfill: the aggregate features of training rows, computed in batch with the
 * same code (aggregate.ts: ingestion rule, EventBuffer, aggregateSorted) as the real-time stores.
 *
 * Point in time. A row `{at, <key fields>}` gets, for each feature, the aggregate over the
 * events with event time <= at, i.e. the window (at - window, at] (the standard feature-store
 * point-in-time join: no event after `at` leaks into the row).
 *
 * Real-time vs batch. A real-time store answering at wall time `at` has seen the events that
 * ARRIVED before `at`. The two agree exactly when every event with time <= at had arrived (and
 * was not dropped) by then, e.g. when events arrive in time order. They differ by the events
 * that were in flight: an event with time <= at arriving after the real-time answer (within
 * lateness) is in the backfilled row but was not in the served one; use the logged served
 * features (log-and-wait) where that matters. An event the real-time store dropped as late is
 * dropped here too when the input is in arrival order (see `latenessMs`).
 *
 * Input order and memory. Events are consumed once, in input order (streamed: an async
 * iterable such as a file reader works), and judged by the real-time ingestion rule: dedupe by
 * id per (stream, key), then lateness per stream, then insertion in time order. Two modes per
 * stream:
 *  - no `latenessMs` for the stream (default): the input must be sorted by event time (ties in
 *    any order; ties are broken by input order, as ingestion order is in real time). An event
 *    older than an earlier one of its stream throws: an unsorted file is an error, not a
 *    silently different training set.
 *  - `latenessMs[stream]` given: the input is in ARRIVAL order (e.g. an ingestion log) and an
 *    event more than that late is dropped and counted, exactly as the real-time store would.
 * Requests are collected and sorted by `at` (stable); rows come back in the order given. A row
 * at `at` is answered once the input has moved past `at + L` (L = the largest lateness of the
 * streams the features read; 0 when sorted): every event the row needs has arrived by then, as
 * long as no event arrives more than L after an event newer than it on another stream (true for
 * input sorted by time). An event that breaks this (it would belong to a row already answered)
 * throws rather than being silently left out.
 * Memory: each stream keeps its retention (largest window + lateness) of events, and nothing
 * older than the next unanswered row needs; plus the requests themselves.
 */
import {
  StreamState,
  validateWindowSpec,
  type AggregateValue,
  type EventFields,
  normalizeEvent,
} from './aggregate.ts';
import { parseDuration, type AggregateFunction, type SourceSpec, type SourcesSpec, type StreamEvent } from './types.ts';

/** One aggregate feature to backfill. */
export interface BackfillFeature {
  /** Column name in the output rows. */
  name: string;
  stream: string;
  fn: AggregateFunction;
  field?: string;
  windowMs: number;
  /** Request property holding the entity key (default 'key'); a number is converted to a string. */
  keyField?: string;
}

/** A training row: the time the features are wanted at (ms) and its key field(s). */
export type BackfillRequest = { readonly at: number; readonly [field: string]: unknown };

export interface BackfillOptions {
  /** Sorted by event time, or in arrival order for the streams with a `latenessMs`. */
  events: AsyncIterable<StreamEvent> | Iterable<StreamEvent>;
  requests: AsyncIterable<BackfillRequest> | Iterable<BackfillRequest>;
  features: readonly BackfillFeature[];
  /** Per stream: judge the input as arriving in this order with this lateness (see the file comment). */
  latenessMs?: Readonly<Record<string, number>>;
}

export interface BackfillStats {
  /** Events read from the input (the input is read only as far as the last row needs). */
  events: number;
  accepted: number;
  duplicates: number;
  late: number;
  /** Events on streams no feature reads. */
  ignored: number;
  requests: number;
  /** Most events held in memory at once. */
  maxHeld: number;
}

export interface BackfillResult {
  /** One per request, in the order given: feature name → value. A row without a key gets null. */
  rows: Record<string, AggregateValue>[];
  stats: BackfillStats;
}

export async function backfill(options: BackfillOptions): Promise<BackfillResult> {
  const { features } = options;
  const lateness = options.latenessMs ?? {};
  const names = new Set<string>();
  const maxWindow = new Map<string, number>();
  for (const f of features) {
    if (names.has(f.name)) throw new TypeError(`backfill: duplicate feature name ${JSON.stringify(f.name)}`);
    names.add(f.name);
    validateWindowSpec({ fn: f.fn, field: f.field, windowMs: f.windowMs, at: 0 });
    maxWindow.set(f.stream, Math.max(maxWindow.get(f.stream) ?? 0, f.windowMs));
  }
  const states = new Map<string, StreamState>();
  const strict = new Set<string>();
  let L = 0;
  for (const [stream, w] of maxWindow) {
    const l = lateness[stream];
    if (l === undefined) strict.add(stream);
    const latenessMs = l ?? 0;
    L = Math.max(L, latenessMs);
    states.set(stream, new StreamState(stream, { latenessMs, retentionMs: w + latenessMs }));
  }

  // Requests: collected, sorted by time (stable).
  const requests: BackfillRequest[] = [];
  for await (const r of options.requests) {
    if (r === null || typeof r !== 'object' || typeof r.at !== 'number' || !Number.isFinite(r.at)) {
      throw new TypeError(`backfill: request ${requests.length} needs a finite numeric at (ms), got ${JSON.stringify(r)?.slice(0, 200)}`);
    }
    requests.push(r);
  }
  const order = requests.map((_, i) => i).sort((a, b) => requests[a].at - requests[b].at || a - b);
  const rows: Record<string, AggregateValue>[] = new Array(requests.length);

  const stats: BackfillStats = { events: 0, accepted: 0, duplicates: 0, late: 0, ignored: 0, requests: requests.length, maxHeld: 0 };
  const events = options.events;
  const syncIt = Symbol.iterator in events ? (events as Iterable<StreamEvent>)[Symbol.iterator]() : null;
  const asyncIt = syncIt === null ? (events as AsyncIterable<StreamEvent>)[Symbol.asyncIterator]() : null;
  let exhausted = false;
  /** Newest accepted event time on any stream read. */
  let clock = -Infinity;
  /** Largest `at` answered so far. */
  let answered = -Infinity;
  let held = 0;
  let sinceSweep = 0;

  const sweep = (nextAt: number): void => {
    held = 0;
    for (const s of states.values()) {
      s.evict(Math.min(s.horizon, nextAt - maxWindow.get(s.name)!));
      held += s.size;
    }
    sinceSweep = 0;
  };

  try {
    for (let n = 0; n < order.length; n++) {
      const at = requests[order[n]].at;
      while (!exhausted && !(clock - L > at)) {
        const r = syncIt !== null ? syncIt.next() : await asyncIt!.next();
        if (r.done) {
          exhausted = true;
          break;
        }
        const e = r.value;
        stats.events++;
        let fields: EventFields;
        try {
          fields = normalizeEvent(e);
        } catch (err) {
          throw new TypeError(`backfill: event ${stats.events - 1}: ${(err as Error).message}`, { cause: err });
        }
        const state = states.get(e.stream);
        if (state === undefined) {
          stats.ignored++;
          continue;
        }
        const before = state.maxTime;
        const admission = state.offer(e.key, e.id, e.time, fields);
        if (admission === 'duplicate') stats.duplicates++;
        else if (admission === 'late') {
          if (strict.has(e.stream)) {
            throw new Error(
              `backfill: events of stream ${JSON.stringify(e.stream)} are not sorted by time: event ${JSON.stringify(e.id)} at ${e.time} comes after one at ${before}; sort the input, or pass latenessMs for the stream to judge it in arrival order as the real-time store does`,
            );
          }
          stats.late++;
        } else {
          stats.accepted++;
          if (e.time <= answered) {
            throw new Error(
              `backfill: event ${JSON.stringify(e.id)} of ${JSON.stringify(e.stream)} at ${e.time} arrives after rows at ${answered} that need it were answered (it is more than ${L} ms behind events of other streams); sort the input by time`,
            );
          }
          if (e.time > clock) clock = e.time;
          held++;
          if (++sinceSweep >= 4096 && sinceSweep >= held / 2) {
            if (held > stats.maxHeld) stats.maxHeld = held;
            sweep(at);
          }
        }
      }
      if (held > stats.maxHeld) stats.maxHeld = held;
      const req = requests[order[n]];
      const row: Record<string, AggregateValue> = {};
      for (const f of features) {
        const raw = req[f.keyField ?? 'key'];
        const key = typeof raw === 'string' ? raw : typeof raw === 'number' && Number.isFinite(raw) ? String(raw) : null;
        row[f.name] = key === null ? null : states.get(f.stream)!.aggregate(key, { fn: f.fn, field: f.field, windowMs: f.windowMs, at });
      }
      rows[order[n]] = row;
      answered = at;
    }
  } finally {
    if (!exhausted && asyncIt?.return) await asyncIt.return();
    else if (!exhausted && syncIt?.return) syncIt.return();
  }
  return { rows, stats };
}

/**
 * The aggregate features of a bundle as backfill features: every feature whose source is an
 * aggregate, keyed by its stream's entity key field (`sources.entities[entity].key`, else the
 * entity name).
 */
export function aggregateFeatures(sources: SourcesSpec, features: readonly { name: string; source?: SourceSpec }[]): BackfillFeature[] {
  const out: BackfillFeature[] = [];
  for (const f of features) {
    const s = f.source;
    if (s === undefined || !('aggregate' in s)) continue;
    const stream = sources.streams[s.aggregate];
    if (stream === undefined) throw new TypeError(`feature ${JSON.stringify(f.name)} reads stream ${JSON.stringify(s.aggregate)}, which sources.streams does not declare`);
    out.push({ name: f.name, stream: s.aggregate, fn: s.fn, field: s.field, windowMs: parseDuration(s.window), keyField: sources.entities[stream.entity]?.key ?? stream.entity });
  }
  return out;
}

/** Each stream's lateness (ms) from a bundle's sources: pass as `latenessMs` for input in arrival order. */
export function streamLateness(sources: SourcesSpec): Record<string, number> {
  return Object.fromEntries(Object.entries(sources.streams).map(([name, s]) => [name, parseDuration(s.lateness)]));
}
