/**
 * What rtml's PostgreSQL stores share (the decision log `src/log/postgres.ts`, the operations
 * store, the fleet monitor state): a connection pool with the settings they all use, and
 * versioned migrations.
 *
 * Migrations: each store (a `component`: "decision_log", "operations", "monitor") lists its
 * steps in order; table `rtml_schema (component, version, applied_at)` records what was
 * applied. `migrate` runs under a transaction-scoped advisory lock, so replicas starting
 * together apply each step once; a database with a version newer than the code knows is
 * refused (a newer rtml wrote it), never downgraded.
 */
import pg from 'pg';

/** URLs that name a PostgreSQL database. */
export function isPostgresUrl(value: string): boolean {
  return /^postgres(ql)?:\/\//i.test(value);
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparseable url)';
  }
}

export interface PoolOptions {
  /** Connections in the pool (default 4). */
  max?: number;
  /** `application_name`, visible in pg_stat_activity. */
  applicationName?: string;
  /** A connection attempt fails after this (default 5 s). */
  connectTimeoutMs?: number;
  /** Server-side statement timeout (default 30 s; 0: none). */
  statementTimeoutMs?: number;
}

/** A pool whose idle-client errors (the server restarted, a network blip) are reported, not thrown at the process. */
export function openPool(url: string, options: PoolOptions = {}, onError: (err: Error) => void = () => {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 4,
    application_name: options.applicationName ?? 'rtml',
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
    statement_timeout: options.statementTimeoutMs ?? 30_000,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
  });
  pool.on('error', onError);
  // A client checked out of the pool has no error listener of the pool's: when its connection
  // ends unexpectedly (PostgreSQL killed or restarted mid-transaction) pg rejects its queries,
  // which the caller handles, and also emits 'error' on it, which without a listener would be
  // thrown at the process and kill the server. The queries' rejections are the report.
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

export interface Migration {
  /** 1, 2, 3 ... in order, without gaps. */
  version: number;
  /** What the step does, recorded beside it. */
  description: string;
  sql: string;
}

export class SchemaVersionError extends Error {
  constructor(
    readonly component: string,
    readonly found: number,
    readonly known: number,
  ) {
    super(`${component}: the database is at schema version ${found}, this rtml knows up to ${known}: it was written by a newer rtml`);
    this.name = 'SchemaVersionError';
  }
}

/** Lock key for migrations (any constant; every rtml process uses the same). */
const MIGRATION_LOCK = 0x72746d6c; // 'rtml'

/** Applies the component's missing migrations in one transaction; returns the version now in place. */
export async function migrate(pool: pg.Pool, component: string, migrations: readonly Migration[]): Promise<number> {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`${component}: migration ${i} has version ${m.version}, expected ${i + 1}`);
  });
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query(
      `CREATE TABLE IF NOT EXISTS rtml_schema (
         component text NOT NULL,
         version integer NOT NULL,
         description text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (component, version))`,
    );
    const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM rtml_schema WHERE component = $1', [component]);
    const current = rows[0]?.v ?? 0;
    if (current > migrations.length) throw new SchemaVersionError(component, current, migrations.length);
    for (const m of migrations.slice(current)) {
      await client.query(m.sql);
      await client.query('INSERT INTO rtml_schema (component, version, description) VALUES ($1, $2, $3)', [component, m.version, m.description]);
    }
    await client.query('COMMIT');
    return migrations.length;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
