/**
 * How a fleet's replicas share monitoring: each publishes its window export (window-export.ts)
 * every few seconds; one leader merges them, evaluates, and publishes the verdict every
 * replica applies (src/monitor/fleet.ts). The exchange is where exports and verdicts meet:
 *   - embedded.ts: in one process (replicas are objects in it), for a fleet of one and for tests;
 *   - postgres.ts: PostgreSQL tables and a session advisory lock for leadership.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { MonitorState } from '../service-monitor.ts';

/** A monitored service version. */
export interface MonitorKey {
  service: string;
  version: string;
}

/** One replica's latest export of a service version. */
export interface PublishedExport {
  replica: string;
  /** When it was stored, ms since the epoch (the exchange's clock: the database's for PostgreSQL). */
  publishedAt: number;
  state: Uint8Array;
}

/** A leader's evaluation of a service version, as every replica applies it. */
export interface PublishedVerdict {
  leader: string;
  evaluatedAt: number;
  state: MonitorState;
  /** Since when the service has been clear while in safe mode (the hysteresis a new leader resumes); null: not counting. */
  clearSince: number | null;
}

export interface MonitorExchange {
  readonly kind: 'embedded' | 'postgres';
  /** This replica's id: unique per process, so a restarted process never overwrites the export of the one before it. */
  readonly replica: string;
  /** Stores this replica's export of a service version in place of its previous one. */
  publish(key: MonitorKey, state: Uint8Array): Promise<void>;
  /** Every replica's latest export of a service version (this one's included). */
  exports(key: MonitorKey): Promise<PublishedExport[]>;
  /**
   * Becomes the fleet's leader if no live replica is, or confirms this one still is: the term
   * (a number this replica increases each time it takes the lead, so a lead lost and taken
   * back between two calls shows), or null while another replica leads or the exchange cannot
   * be reached. Call at least every second.
   */
  lead(): Promise<number | null>;
  publishVerdict(key: MonitorKey, verdict: PublishedVerdict): Promise<void>;
  /** The latest verdict of every service version, keyed by `verdictKey`. */
  verdicts(): Promise<Map<string, PublishedVerdict>>;
  /**
   * Drops exports not published for `olderThanMs`: a replica gone that long has no decision
   * left in any window. Returns how many were dropped.
   */
  forget(olderThanMs: number): Promise<number>;
  /** Stops leading (if it did) and releases connections. */
  close(): Promise<void>;
}

/**
 * A verdict's state as JSON that keeps its non-finite numbers (a std ratio without a reference
 * spread is NaN): plain JSON would turn them into null, which /metrics cannot set as a gauge.
 */
export function verdictStateToJson(state: MonitorState): string {
  return JSON.stringify(state, (_key, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? { $number: String(value) } : value));
}

/** Restores the non-finite numbers `verdictStateToJson` tagged, in a parsed verdict state. */
export function restoreNonFinite<T>(parsed: T): T {
  const walk = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(walk);
    if (value !== null && typeof value === 'object') {
      const entries = Object.entries(value);
      if (entries.length === 1 && entries[0][0] === '$number' && typeof entries[0][1] === 'string') return Number(entries[0][1]);
      return Object.fromEntries(entries.map(([k, v]) => [k, walk(v)]));
    }
    return value;
  };
  return walk(parsed) as T;
}

export const verdictKey = (key: MonitorKey): string => `${key.service}@${key.version}`;

/** A replica id: host, process and a random part (pids repeat across machines and restarts). */
export function newReplicaId(): string {
  return `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
}
