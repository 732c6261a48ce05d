/**
 * The dashboard's history: one row per service per minute (decisions, decision mix, stage
 * latencies, drift statistics, performance), so charts show the past and a restart does not
 * blank them. Written off the request path by the collector (./collector.ts), once a minute.
 *
 * Bounded: rows older than the retention (14 days by default, 20,160 rows per service) are
 * pruned at each write. Two adapters behind one interface, chosen like the other stores: the
 * embedded one is its own SQLite file `<data-dir>/history.sqlite` (not the decision log's file,
 * so the log's layout stays the log's own), the PostgreSQL one a `history` component in
 * `rtml_schema` of the decision log's database. Without a data dir it lives in memory.
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { openSqliteStore, type SqliteStoreSchema } from '../store/sqlite.ts';

export const HISTORY_FILE = 'history.sqlite';
export const MINUTE_MS = 60_000;
export const DEFAULT_RETENTION_MS = 14 * 24 * 60 * MINUTE_MS;
/** A read never returns more rows than this (a day of minutes is 1,440). */
export const MAX_HISTORY_ROWS = 20_160;

const quantiles = z.object({ p50: z.number().nullable(), p99: z.number().nullable() });

/** One service's minute. Stored as JSON: the row's layout is this schema, checked when read back. */
export const minuteAggregate = z.object({
  service: z.string(),
  /** Start of the minute, ms since the epoch. */
  minute: z.number().int(),
  version: z.string(),
  decisions: z.number().nonnegative(),
  fallbacks: z.number().nonnegative(),
  /** Decisions per action in the minute. */
  mix: z.record(z.string(), z.number()),
  /** Per stage (and `total`), milliseconds; null when no decision passed the stage. */
  latency_ms: z.record(z.string(), quantiles),
  /** Per feature over the count window at the minute's end: PSI (null without one) and verdict. */
  drift: z.record(z.string(), z.object({ psi: z.number().nullable(), verdict: z.string() })),
  score_psi: z.number().nullable(),
  decision_mix_psi: z.number().nullable(),
  alerts_active: z.number().int().nonnegative(),
  safe_mode: z.boolean(),
  /** Outcomes that reached the monitor in the minute, the decay detector's Brier score then, and the estimate. */
  performance: z.object({
    outcomes: z.number().nonnegative(),
    brier: z.number().nullable(),
    reference_brier: z.number().nullable(),
    /** Expected Brier score from the live scores alone (no outcomes needed). */
    estimated_brier: z.number().nullable(),
  }),
});
export type MinuteAggregate = z.infer<typeof minuteAggregate>;

export interface HistoryStore {
  readonly kind: 'sqlite' | 'postgres' | 'memory';
  /** Inserts or replaces rows (a minute written again, e.g. flushed at shutdown then completed, keeps the last). */
  write(rows: readonly MinuteAggregate[]): Promise<void>;
  /** A service's minutes in [since, until), oldest first, at most `limit` (the latest ones). */
  read(service: string, range: { since: number; until?: number; limit?: number }): Promise<MinuteAggregate[]>;
  /** Drops rows of minutes before `before`; returns how many. */
  prune(before: number): Promise<number>;
  close(): Promise<void>;
}

/** Reads a stored row back; a row this code cannot read is skipped, not served. */
export function parseStoredRow(text: string): MinuteAggregate | null {
  try {
    const parsed = minuteAggregate.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

const SQLITE_SCHEMA: SqliteStoreSchema = {
  kind: 'rtml dashboard history',
  checkKind: true,
  createV1: `
CREATE TABLE minutes (
  service TEXT NOT NULL,
  minute  INTEGER NOT NULL,
  data    TEXT NOT NULL,
  PRIMARY KEY (service, minute)
) STRICT;
CREATE INDEX minutes_by_minute ON minutes (minute);
`,
  migrations: {},
  version: 1,
};

export class HistoryStoreError extends Error {
  readonly code: string;
  constructor(message: string, code: string, options?: { cause: unknown }) {
    super(`history: ${message}`, options);
    this.name = 'HistoryStoreError';
    this.code = code;
  }
}

/** `<dataDir>/history.sqlite`, or memory when `dataDir` is null. */
export function openEmbeddedHistoryStore(dataDir: string | null): HistoryStore {
  if (dataDir === null) return memoryHistoryStore();
  mkdirSync(resolve(dataDir), { recursive: true });
  const path = join(resolve(dataDir), HISTORY_FILE);
  // NORMAL: a lost last minute on power loss is acceptable for charts; a write never waits on fsync.
  const db = openSqliteStore(path, SQLITE_SCHEMA, { synchronous: 'normal' }, (f) => new HistoryStoreError(f.message, f.code, f.options));
  const put = db.prepare<[string, number, string]>('INSERT OR REPLACE INTO minutes (service, minute, data) VALUES (?, ?, ?)');
  const select = db.prepare<[string, number, number, number], string>(
    'SELECT data FROM (SELECT minute, data FROM minutes WHERE service = ? AND minute >= ? AND minute < ? ORDER BY minute DESC LIMIT ?) ORDER BY minute',
  );
  const drop = db.prepare<[number]>('DELETE FROM minutes WHERE minute < ?');
  const writeAll = db.transaction((rows: readonly MinuteAggregate[]) => {
    for (const row of rows) put.run(row.service, row.minute, JSON.stringify(row));
  });
  let open = true;
  return {
    kind: 'sqlite',
    async write(rows) {
      if (open) writeAll(rows);
    },
    async read(service, range) {
      if (!open) return [];
      const limit = Math.min(range.limit ?? MAX_HISTORY_ROWS, MAX_HISTORY_ROWS);
      return select
        .pluck()
        .all(service, range.since, range.until ?? Number.MAX_SAFE_INTEGER, limit)
        .map(parseStoredRow)
        .filter((r): r is MinuteAggregate => r !== null);
    },
    async prune(before) {
      return open ? drop.run(before).changes : 0;
    },
    async close() {
      if (!open) return;
      open = false;
      db.close();
    },
  };
}

/** For servers without a data dir (in-process tests, embedding): the same contract, gone at exit. */
export function memoryHistoryStore(): HistoryStore {
  const rows = new Map<string, Map<number, MinuteAggregate>>();
  return {
    kind: 'memory',
    async write(batch) {
      for (const row of batch) {
        let byMinute = rows.get(row.service);
        if (!byMinute) rows.set(row.service, (byMinute = new Map()));
        byMinute.set(row.minute, structuredClone(row));
      }
    },
    async read(service, range) {
      const limit = Math.min(range.limit ?? MAX_HISTORY_ROWS, MAX_HISTORY_ROWS);
      const until = range.until ?? Number.MAX_SAFE_INTEGER;
      const found = [...(rows.get(service)?.values() ?? [])].filter((r) => r.minute >= range.since && r.minute < until).sort((a, b) => a.minute - b.minute);
      return found.slice(-limit).map((r) => structuredClone(r));
    },
    async prune(before) {
      let dropped = 0;
      for (const byMinute of rows.values())
        for (const minute of byMinute.keys())
          if (minute < before) {
            byMinute.delete(minute);
            dropped++;
          }
      return dropped;
    },
    async close() {},
  };
}
