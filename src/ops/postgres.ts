/**
 * The shared operations store on PostgreSQL: every replica of a fleet reads and writes the
 * same tables (component `operations` of src/store/postgres.ts's migrations).
 *
 * Writes: one transaction per change, under a transaction-scoped advisory lock so that changes
 * commit in the order of their sequence numbers: it inserts the audit row (its `seq` is the
 * change counter), upserts the latest state (or the acknowledgement), NOTIFYs
 * `rtml_operations`, and COMMITs before the write resolves; then the change is applied to this
 * process's view, so the replica that took the admin call obeys it when the call answers.
 *
 * Propagation: the audit table is the change feed. Each replica reads the rows after the last
 * seq it has read (`seq > $1`, an index range scan) when a notification arrives on its
 * dedicated LISTEN connection, and every `pollIntervalMs` (default 400 ms) whatever happens:
 * the poll is the safety net for a notification missed, or a listener connection dropped,
 * which reconnects by itself with backoff. So every replica obeys a change within
 * pollIntervalMs plus one round trip, well inside 2 s. Because seqs commit in order (the
 * lock), reading `seq > last` never skips a change committed earlier; applying is idempotent
 * (a change older than the state held is ignored, ./types.ts), so the feed may repeat this
 * process's own writes harmlessly.
 *
 * PostgreSQL outage: reads (`current()`) keep the last known state, and the request path goes
 * on obeying it (a kill switch on stays on, an override stays in force); `status().connected`
 * turns false. Writes reject with OperationsUnavailableError (the server answers 503 +
 * Retry-After): nothing is acknowledged that is not committed. When PostgreSQL returns, the
 * poll catches up on every change committed meanwhile, and the listener reconnects.
 */
import pg from 'pg';
import { randomUUID } from 'node:crypto';
import { migrate, openPool, redactUrl, type Migration } from '../store/postgres.ts';
import {
  atOf,
  auditEntryOf,
  byOf,
  changeFor,
  changeOf,
  DEFAULT_HISTORY_LIMIT,
  MAX_ACKNOWLEDGEMENTS,
  OperationsState,
  OperationsUnavailableError,
  reasonOf,
  writesThrough,
  type AuditEntry,
  type OperationChange,
  type OperationInput,
  type OperationsStore,
} from './types.ts';

export const OPERATIONS_CHANNEL = 'rtml_operations';
/** Serializes writers, so seqs commit in order (any constant distinct from the migration lock). */
const WRITE_LOCK = 0x72746f70; // 'rtop'

export const OPERATIONS_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'operations: audit (the change feed), latest state per service and kind, acknowledgements',
    sql: `
      CREATE TABLE rtml_ops_audit (
        seq     bigserial PRIMARY KEY,
        service text NOT NULL,
        kind    text NOT NULL,
        by      text NOT NULL,
        at      timestamptz NOT NULL,
        reason  text,
        value   jsonb NOT NULL,
        origin  text NOT NULL
      );
      CREATE INDEX rtml_ops_audit_by_service ON rtml_ops_audit (service, seq);
      CREATE TABLE rtml_ops_state (
        service text NOT NULL,
        kind    text NOT NULL,
        seq     bigint NOT NULL,
        value   jsonb NOT NULL,
        PRIMARY KEY (service, kind)
      );
      CREATE TABLE rtml_ops_acknowledgements (
        service  text NOT NULL,
        alert_id text NOT NULL,
        seq      bigint NOT NULL,
        value    jsonb NOT NULL,
        PRIMARY KEY (service, alert_id)
      );`,
  },
];

export interface PostgresOperationsOptions {
  url: string;
  /** Read the change feed this often whatever the notifications say (default 400 ms). */
  pollIntervalMs?: number;
  /** Problems reading the feed or listening (rate-limited by the caller if need be). */
  onError?: (err: Error) => void;
}

export interface PostgresOperationsStore extends OperationsStore {
  /** Reads the change feed now (tests; the poll and notifications do it by themselves). */
  sync(): Promise<void>;
  /** The backend pid of the LISTEN connection, or null while it is down (tests terminate it). */
  listenerPid(): number | null;
  /** This process's identity in the audit (`origin`). */
  readonly origin: string;
}

interface FeedRow {
  seq: string;
  service: string;
  kind: string;
  value: unknown;
  origin: string;
}

const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 5000;
const FEED_BATCH = 1000;

export async function openPostgresOperationsStore(options: PostgresOperationsOptions): Promise<PostgresOperationsStore> {
  const onError = options.onError ?? (() => {});
  const pollIntervalMs = options.pollIntervalMs ?? 400;
  const origin = randomUUID();
  // Short connect timeout: an admin write during an outage should answer 503 promptly.
  const pool = openPool(options.url, { max: 2, applicationName: 'rtml-operations', connectTimeoutMs: 2000, statementTimeoutMs: 5000 }, onError);
  const state = new OperationsState((err) => onError(err instanceof Error ? err : new Error(String(err))));
  let lastSeq = 0;
  let lastSyncAt: string | null = null;
  let connected = false;
  let closed = false;

  try {
    await migrate(pool, 'operations', OPERATIONS_MIGRATIONS);
    // The state and the feed position from one snapshot, so nothing falls between them.
    const client = await pool.connect();
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const last = await client.query<{ seq: string | null }>('SELECT max(seq)::text AS seq FROM rtml_ops_audit');
      const rows = await client.query<{ seq: string; service: string; kind: string; value: unknown }>('SELECT seq::text, service, kind, value FROM rtml_ops_state ORDER BY seq');
      const acks = await client.query<{ seq: string; service: string; value: unknown }>(
        `SELECT seq::text, service, value FROM (
           SELECT *, row_number() OVER (PARTITION BY service ORDER BY seq DESC) AS n FROM rtml_ops_acknowledgements) a
         WHERE n <= $1 ORDER BY seq`,
        [MAX_ACKNOWLEDGEMENTS],
      );
      await client.query('COMMIT');
      for (const row of rows.rows) state.apply(Number(row.seq), changeOf(row.kind, row.service, row.value, false));
      for (const row of acks.rows) state.apply(Number(row.seq), changeOf('acknowledge', row.service, row.value, false));
      lastSeq = Number(last.rows[0]?.seq ?? 0);
    } finally {
      client.release();
    }
    connected = true;
    lastSyncAt = new Date().toISOString();
  } catch (err) {
    await pool.end().catch(() => {});
    throw new OperationsUnavailableError(`operations store ${redactUrl(options.url)}: cannot open: ${(err as Error).message}`, { cause: err });
  }

  // Reading the feed: one read at a time; a request during one runs once more after it.
  let reading: Promise<void> | null = null;
  let again = false;
  const readFeed = async (): Promise<void> => {
    for (;;) {
      const { rows } = await pool.query<FeedRow>('SELECT seq::text, service, kind, value, origin FROM rtml_ops_audit WHERE seq > $1 ORDER BY seq LIMIT $2', [lastSeq, FEED_BATCH]);
      for (const row of rows) {
        const seq = Number(row.seq);
        try {
          state.apply(seq, changeOf(row.kind, row.service, row.value, row.origin === origin));
        } catch (err) {
          // A row this rtml cannot read (a newer writer's kind): skipped, not a stuck feed.
          onError(new Error(`operations feed: seq ${seq} skipped: ${(err as Error).message}`));
        }
        lastSeq = seq;
      }
      if (rows.length < FEED_BATCH) break;
    }
    connected = true;
    lastSyncAt = new Date().toISOString();
  };
  const sync = (): Promise<void> => {
    if (closed) return Promise.resolve();
    if (reading) {
      again = true;
      return reading;
    }
    reading = (async () => {
      try {
        do {
          again = false;
          await readFeed();
        } while (again && !closed);
      } catch (err) {
        if (connected) onError(new Error(`operations store unreachable, obeying the last known state: ${(err as Error).message}`));
        connected = false;
        throw err;
      } finally {
        reading = null;
      }
    })();
    return reading;
  };
  const poll = setInterval(() => void sync().catch(() => {}), pollIntervalMs);
  poll.unref();

  // The listener: a dedicated client (LISTEN holds its connection), reconnected with backoff.
  let listener: pg.Client | null = null;
  let reconnectDelay = RECONNECT_MIN_MS;
  let reconnectTimer: NodeJS.Timeout | null = null;
  const listen = async (): Promise<void> => {
    reconnectTimer = null;
    if (closed) return;
    const client = new pg.Client({ connectionString: options.url, application_name: 'rtml-operations-listener', connectionTimeoutMillis: 2000, keepAlive: true });
    const lost = (err?: Error) => {
      if (listener !== client) return;
      listener = null;
      client.removeAllListeners('notification');
      void client.end().catch(() => {});
      if (err) onError(new Error(`operations listener lost, reconnecting: ${err.message}`));
      scheduleListen();
    };
    client.on('error', (err) => lost(err));
    client.on('end', () => lost());
    client.on('notification', () => void sync().catch(() => {}));
    try {
      await client.connect();
      await client.query(`LISTEN ${OPERATIONS_CHANNEL}`);
      if (closed) {
        await client.end().catch(() => {});
        return;
      }
      listener = client;
      reconnectDelay = RECONNECT_MIN_MS;
      // Whatever was notified while not listening.
      void sync().catch(() => {});
    } catch (err) {
      client.removeAllListeners();
      client.on('error', () => {});
      await client.end().catch(() => {});
      scheduleListen();
    }
  };
  const scheduleListen = () => {
    if (closed || reconnectTimer) return;
    reconnectTimer = setTimeout(() => void listen(), reconnectDelay);
    reconnectTimer.unref();
    reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_MS);
  };
  await listen();

  const write = async (service: string, input: OperationInput): Promise<OperationChange> => {
    if (closed) throw new OperationsUnavailableError('operations store: closed');
    const change = changeFor(service, input, new Date().toISOString());
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      connected = false;
      throw new OperationsUnavailableError(`operations store unreachable: ${(err as Error).message}`, { cause: err });
    }
    let seq: number;
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [WRITE_LOCK]);
      const value = JSON.stringify(change.value);
      const inserted = await client.query<{ seq: string }>('INSERT INTO rtml_ops_audit (service, kind, by, at, reason, value, origin) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq::text', [
        service,
        change.kind,
        byOf(change),
        atOf(change),
        reasonOf(change),
        value,
        origin,
      ]);
      seq = Number(inserted.rows[0].seq);
      if (change.kind === 'acknowledge') {
        await client.query('INSERT INTO rtml_ops_acknowledgements (service, alert_id, seq, value) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [service, change.value.alertId, seq, value]);
      } else {
        await client.query('INSERT INTO rtml_ops_state (service, kind, seq, value) VALUES ($1, $2, $3, $4) ON CONFLICT (service, kind) DO UPDATE SET seq = excluded.seq, value = excluded.value', [service, change.kind, seq, value]);
      }
      await client.query('SELECT pg_notify($1, $2)', [OPERATIONS_CHANNEL, String(seq)]);
      await client.query('COMMIT');
      client.release();
      connected = true;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      // A broken connection must not go back to the pool.
      client.release(err as Error);
      // If COMMIT's answer was lost the change may be committed: the feed applies it then, and the caller's retry is harmless (same state).
      throw new OperationsUnavailableError(`operations store could not take the write: ${(err as Error).message}`, { cause: err });
    }
    state.apply(seq, change);
    return change;
  };

  return {
    kind: 'postgres',
    origin,
    current: () => state,
    subscribe: (l) => state.subscribe(l),
    ...writesThrough(write),
    async history(service, { limit = DEFAULT_HISTORY_LIMIT } = {}): Promise<AuditEntry[]> {
      try {
        const { rows } = await pool.query<FeedRow & { by: string; at: Date; reason: string | null }>('SELECT seq::text, service, kind, by, at, reason, value, origin FROM rtml_ops_audit WHERE service = $1 ORDER BY seq DESC LIMIT $2', [service, limit]);
        return rows.map((row) => auditEntryOf({ ...row, at: row.at.toISOString() }));
      } catch (err) {
        throw new OperationsUnavailableError(`operations store unreachable: ${(err as Error).message}`, { cause: err });
      }
    },
    status: () => ({ kind: 'postgres', connected, lastSyncAt }),
    sync,
    listenerPid: () => (listener as (pg.Client & { processID?: number }) | null)?.processID ?? null,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(poll);
      if (reconnectTimer) clearTimeout(reconnectTimer);
      const client = listener;
      listener = null;
      await client?.end().catch(() => {});
      await reading?.catch(() => {});
      await pool.end().catch(() => {});
    },
  };
}
