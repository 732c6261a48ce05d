/**
 * The shared exchange: replicas' window exports and the leader's verdicts in PostgreSQL (the
 * database of the decision log in shared mode), leadership by a session-level advisory lock.
 *
 *   monitor_exports  (service, version, replica) → the replica's latest export (bytea) and
 *                    when it was stored (the database's clock, so replicas' clocks do not
 *                    decide freshness). One row per live or recently dead replica.
 *   monitor_verdicts (service, version) → the leader's last evaluation (jsonb), who made it,
 *                    and the safe-mode hysteresis a new leader resumes.
 *
 * Leadership: `pg_try_advisory_lock` on a dedicated connection, held as long as that session
 * lives. A leader that dies (process killed, connection cut) loses the lock with its session;
 * the others try every second and one takes over. A leader confirms its session with one
 * round trip before each evaluation, so a leader whose connection broke stops leading at its
 * next cycle; an evaluation already under way when the connection breaks still completes (its
 * alerts may then be delivered once by each of the two leaders of that second: the limit of a
 * lock without fencing).
 *
 * A dead replica's export stays until `forget` (the fleet monitor calls it with the longest
 * window): its decisions were real, and stay in the fleet's windows while the windows cover
 * their time (time windows by period; the count window while its blocks are among the
 * fleet's newest).
 */
import pg from 'pg';
import { z } from 'zod';
import { migrate, openPool, redactUrl, type Migration } from '../../store/postgres.ts';
import type { MonitorState } from '../service-monitor.ts';
import { newReplicaId, restoreNonFinite, verdictKey, verdictStateToJson, type MonitorExchange, type MonitorKey, type PublishedExport, type PublishedVerdict } from './types.ts';

export const MONITOR_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'replicas\' monitor window exports and the fleet leader\'s verdicts',
    sql: `
      CREATE TABLE monitor_exports (
        service text NOT NULL,
        version text NOT NULL,
        replica text NOT NULL,
        published_at timestamptz NOT NULL DEFAULT now(),
        state bytea NOT NULL,
        PRIMARY KEY (service, version, replica));
      CREATE TABLE monitor_verdicts (
        service text NOT NULL,
        version text NOT NULL,
        leader text NOT NULL,
        evaluated_at timestamptz NOT NULL,
        state jsonb NOT NULL,
        clear_since double precision,
        PRIMARY KEY (service, version));`,
  },
];

/** Advisory lock of the fleet's monitor leader: (class, id) in the two-int key space, apart from the migration lock's bigint. */
const LEADER_LOCK: [number, number] = [0x72746d6c, 2];

/** The parts of a stored verdict the replicas act on, checked when read back. */
const storedVerdict = z
  .object({
    service: z.string(),
    version: z.string(),
    alerts: z.object({ active: z.array(z.object({ id: z.string(), key: z.string() }).passthrough()), history: z.array(z.object({}).passthrough()) }).passthrough(),
    safe_mode: z.object({ mode: z.enum(['auto', 'on', 'off']), active: z.boolean(), since: z.string().nullable(), reason: z.string().nullable() }).passthrough(),
  })
  .passthrough();

export interface PostgresExchangeOptions {
  url: string;
  /** Default: host, pid and a random part. */
  replica?: string;
  /** Reports connection errors that are retried (the lock connection, idle pool clients). */
  onError?: (err: Error) => void;
}

export async function openPostgresMonitorExchange(options: PostgresExchangeOptions): Promise<MonitorExchange> {
  const onError = options.onError ?? (() => {});
  const pool = openPool(options.url, { max: 2, applicationName: 'rtml monitor' }, onError);
  try {
    await migrate(pool, 'monitor', MONITOR_MIGRATIONS);
  } catch (err) {
    await pool.end();
    throw new Error(`monitor exchange at ${redactUrl(options.url)}: ${(err as Error).message}`, { cause: err });
  }
  return new PostgresMonitorExchange(options.url, pool, options.replica ?? newReplicaId(), onError);
}

class PostgresMonitorExchange implements MonitorExchange {
  readonly kind = 'postgres';
  /** The session holding (or trying for) the leader lock; null while disconnected. */
  private lockSession: pg.Client | null = null;
  private leading = false;
  /** Times this replica took the lead. */
  private term = 0;
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly pool: pg.Pool,
    readonly replica: string,
    private readonly onError: (err: Error) => void,
  ) {}

  async publish(key: MonitorKey, state: Uint8Array): Promise<void> {
    await this.pool.query(
      `INSERT INTO monitor_exports (service, version, replica, state) VALUES ($1, $2, $3, $4)
       ON CONFLICT (service, version, replica) DO UPDATE SET state = EXCLUDED.state, published_at = now()`,
      [key.service, key.version, this.replica, Buffer.from(state.buffer, state.byteOffset, state.byteLength)],
    );
  }

  async exports(key: MonitorKey): Promise<PublishedExport[]> {
    const { rows } = await this.pool.query<{ replica: string; at: number; state: Buffer }>(
      'SELECT replica, extract(epoch FROM published_at) * 1000 AS at, state FROM monitor_exports WHERE service = $1 AND version = $2 ORDER BY replica',
      [key.service, key.version],
    );
    return rows.map((r) => ({ replica: r.replica, publishedAt: Number(r.at), state: new Uint8Array(r.state.buffer, r.state.byteOffset, r.state.byteLength) }));
  }

  async lead(): Promise<number | null> {
    if (this.closed) return null;
    try {
      const session = this.lockSession ?? (await this.connectLockSession());
      if (this.leading) {
        // The lock lives as long as the session: one round trip proves both.
        await session.query('SELECT 1');
        return this.term;
      }
      const { rows } = await session.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', LEADER_LOCK);
      this.leading = rows[0]?.ok === true;
      if (this.leading) this.term++;
      return this.leading ? this.term : null;
    } catch (err) {
      this.onError(err as Error);
      this.dropLockSession();
      return null;
    }
  }

  private async connectLockSession(): Promise<pg.Client> {
    const session = new pg.Client({ connectionString: this.url, application_name: `rtml monitor leader ${this.replica}`.slice(0, 63), connectionTimeoutMillis: 5000, keepAlive: true });
    // A broken session has lost the lock: stop leading at once, reconnect at the next try.
    session.on('error', (err) => {
      this.onError(err);
      if (this.lockSession === session) this.dropLockSession();
    });
    session.on('end', () => {
      if (this.lockSession === session) this.dropLockSession();
    });
    await session.connect();
    this.lockSession = session;
    return session;
  }

  private dropLockSession(): void {
    const session = this.lockSession;
    this.lockSession = null;
    this.leading = false;
    session?.end().catch(() => {});
  }

  async publishVerdict(key: MonitorKey, verdict: PublishedVerdict): Promise<void> {
    await this.pool.query(
      `INSERT INTO monitor_verdicts (service, version, leader, evaluated_at, state, clear_since) VALUES ($1, $2, $3, to_timestamp($4 / 1000.0), $5, $6)
       ON CONFLICT (service, version) DO UPDATE SET leader = EXCLUDED.leader, evaluated_at = EXCLUDED.evaluated_at, state = EXCLUDED.state, clear_since = EXCLUDED.clear_since`,
      [key.service, key.version, verdict.leader, verdict.evaluatedAt, verdictStateToJson(verdict.state), verdict.clearSince],
    );
  }

  async verdicts(): Promise<Map<string, PublishedVerdict>> {
    const { rows } = await this.pool.query<{ leader: string; at: number; state: unknown; clear_since: number | null }>(
      'SELECT leader, extract(epoch FROM evaluated_at) * 1000 AS at, state, clear_since FROM monitor_verdicts',
    );
    const out = new Map<string, PublishedVerdict>();
    for (const r of rows) {
      const checked = storedVerdict.safeParse(r.state);
      if (!checked.success) {
        this.onError(new Error(`a stored monitor verdict does not read as one: ${checked.error.issues[0]?.message}`));
        continue;
      }
      const state = restoreNonFinite(r.state as MonitorState);
      out.set(verdictKey(state), { leader: r.leader, evaluatedAt: Number(r.at), state, clearSince: r.clear_since === null ? null : Number(r.clear_since) });
    }
    return out;
  }

  async forget(olderThanMs: number): Promise<number> {
    const { rowCount } = await this.pool.query("DELETE FROM monitor_exports WHERE published_at < now() - $1 * interval '1 millisecond'", [olderThanMs]);
    return rowCount ?? 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const session = this.lockSession;
    this.lockSession = null;
    this.leading = false;
    // Ending the session releases the lock: another replica leads within a second.
    await session?.end().catch(() => {});
    await this.pool.end();
  }
}
