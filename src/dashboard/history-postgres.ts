/**
 * The dashboard's history in PostgreSQL (`--decision-log postgres://...`): table
 * `rtml_history_minutes`, component `history` in `rtml_schema`. Every replica of a fleet
 * writes its own minutes under its replica id; reads add the replicas' decisions and take
 * the busiest replica's latencies and the latest drift statistics (see `mergeReplicas`).
 */
import { migrate, openPool, redactUrl, type Migration } from '../store/postgres.ts';
import { MAX_HISTORY_ROWS, parseStoredRow, type HistoryStore, type MinuteAggregate } from './history.ts';

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'per-minute dashboard aggregates, one row per service, minute and replica',
    sql: `CREATE TABLE rtml_history_minutes (
            service text NOT NULL,
            minute bigint NOT NULL,
            replica text NOT NULL,
            data jsonb NOT NULL,
            PRIMARY KEY (service, minute, replica));
          CREATE INDEX rtml_history_minutes_by_minute ON rtml_history_minutes (minute);`,
  },
];

/** Several replicas' rows for one minute as one: counts added, the rest from the replica that decided most. */
export function mergeReplicas(rows: readonly MinuteAggregate[]): MinuteAggregate {
  const busiest = rows.reduce((a, b) => (b.decisions > a.decisions ? b : a));
  const mix: Record<string, number> = {};
  for (const r of rows) for (const [action, n] of Object.entries(r.mix)) mix[action] = (mix[action] ?? 0) + n;
  return {
    ...busiest,
    decisions: rows.reduce((s, r) => s + r.decisions, 0),
    fallbacks: rows.reduce((s, r) => s + r.fallbacks, 0),
    mix,
    alerts_active: Math.max(...rows.map((r) => r.alerts_active)),
    safe_mode: rows.some((r) => r.safe_mode),
    performance: { ...busiest.performance, outcomes: rows.reduce((s, r) => s + r.performance.outcomes, 0) },
  };
}

export async function openPostgresHistoryStore(options: { url: string; replica: string; onError?: (err: Error) => void }): Promise<HistoryStore> {
  const pool = openPool(options.url, { max: 2, applicationName: 'rtml-history', connectTimeoutMs: 2000, statementTimeoutMs: 10_000 }, options.onError);
  try {
    await migrate(pool, 'history', MIGRATIONS);
  } catch (err) {
    await pool.end();
    throw new Error(`history: cannot prepare ${redactUrl(options.url)}: ${(err as Error).message}`, { cause: err });
  }
  return {
    kind: 'postgres',
    async write(rows) {
      if (rows.length === 0) return;
      await pool.query(
        `INSERT INTO rtml_history_minutes (service, minute, replica, data)
           SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::jsonb[])
         ON CONFLICT (service, minute, replica) DO UPDATE SET data = EXCLUDED.data`,
        [rows.map((r) => r.service), rows.map((r) => r.minute), rows.map(() => options.replica), rows.map((r) => JSON.stringify(r))],
      );
    },
    async read(service, range) {
      const limit = Math.min(range.limit ?? MAX_HISTORY_ROWS, MAX_HISTORY_ROWS);
      const { rows } = await pool.query<{ minute: string; data: string[] }>(
        `SELECT minute, array_agg(data::text) AS data FROM rtml_history_minutes
          WHERE service = $1 AND minute >= $2 AND minute < $3
          GROUP BY minute ORDER BY minute DESC LIMIT $4`,
        [service, range.since, range.until ?? Number.MAX_SAFE_INTEGER, limit],
      );
      return rows
        .reverse()
        .map((r) => r.data.map(parseStoredRow).filter((x): x is MinuteAggregate => x !== null))
        .filter((replicas) => replicas.length > 0)
        .map(mergeReplicas);
    },
    async prune(before) {
      return (await pool.query('DELETE FROM rtml_history_minutes WHERE minute < $1', [before])).rowCount ?? 0;
    },
    async close() {
      await pool.end();
    },
  };
}
