/**
 * The decision log in PostgreSQL, for a fleet of rtml servers sharing one database ("shared"
 * mode: `--decision-log postgres://...`). Same contract as the embedded SQLite log (types.ts):
 * an append resolves only after the COMMIT holding its record has returned.
 *
 * Appends: `append` validates and serializes the record at once on the calling thread (the
 * validation shared with SQLite, record.ts: one JSON.stringify of the row per record, JSON
 * columns embedded as values) and queues the text. Group commit: at most ONE write is in
 * flight; the records queued meanwhile (up to `maxBatch`) go together in the next one, so
 * batches grow with load and an idle log adds one event-loop turn. A write is one statement in
 * autocommit, `INSERT ... SELECT ... FROM json_to_recordset($1::json)` of the batch's records
 * (objects keyed by column) joined as one JSON array: on this side, about a quarter of the CPU
 * of one array parameter per column (pg escapes every element of every array again:
 * bench/log.ts) and about a third of the server's time of a JSON array of tuples taken apart by
 * `->` per column, `ON CONFLICT (service, id) DO NOTHING RETURNING service, id`: a record not returned was a duplicate (of a committed record or
 * of an earlier one in the batch) and rejects alone with DuplicateDecisionError. A data error
 * (a NUL character in a text column, say) fails the statement: the batch is then written again
 * record by record so that only the bad record is rejected (InvalidDecisionRecordError). JSON
 * columns are `json` (the text as given, `\u0000` included, which `jsonb` refuses).
 *
 * Ids are unique across the fleet: (service, id) is the primary key.
 *
 * Outage (PostgreSQL unreachable, restarting, failing over): the write fails (connection
 * refused or lost) and its appends reject with WRITE_FAILED; appends not committed within
 * `appendTimeoutMs` reject with LOG_TIMEOUT. Both are `isLogUnavailable`: the server answers 503
 * with Retry-After and acts on nothing unlogged. The pool opens new connections for each later
 * write, so the log recovers by itself when the database is back. A record still queued when
 * its time runs out is dropped from the queue and never written (a retry is no duplicate). A
 * record whose write was already sent has an unknown outcome when the connection is lost or its
 * time runs out mid-statement: the COMMIT may have happened. It is not acknowledged, and a
 * client retrying the same id then gets DuplicateDecisionError (409) if it had in fact been
 * committed: the decision is in the log, under the first attempt's answer, which the client
 * never saw. Nothing acknowledged is ever lost: an acknowledgement follows the COMMIT's reply.
 *
 * Outcomes: `recordOutcomes` upserts into `outcomes` (whichever replica receives them: they
 * share the database). `outcomesAfter(cursor)` streams them in commit order: an identity or
 * sequence value drawn when a row is written is not commit order (with several writers, a row
 * with a smaller number can commit after a reader moved its cursor past it, and would be
 * skipped). So an outcome's stream position `pos` is assigned later, by `outcomesAfter`, which
 * stamps every committed row that has none in one transaction holding an advisory lock
 * (stampers of every replica take turns): a row not yet committed is invisible to it and gets a
 * later position from a later stamp, positions grow in the commit order of the stamps, and a
 * reader, reading after its own stamp committed, sees a prefix of them. A correction clears the
 * row's position, so it is streamed again. `labelled` reports `seq` 0 for an outcome not
 * streamed yet.
 *
 * Reads wait for the appends pending when they were called (read your writes, as SQLite).
 * `close()` flushes the queue, waits for the last write, then ends the pool.
 */
import type pg from 'pg';
import { migrate, openPool, redactUrl, SchemaVersionError, type Migration } from '../store/postgres.ts';
import { fromStoredRow, normalizeBound, outcomeRows, recordObjectText, type StoredDecisionRow } from './record.ts';
import { COLUMNS } from './sqlite-schema.ts';
import {
  DEFAULT_QUERY_LIMIT,
  DecisionLogClosedError,
  DecisionLogError,
  DecisionLogSchemaError,
  DuplicateDecisionError,
  InvalidDecisionRecordError,
  MAX_QUERY_LIMIT,
  type DecisionLog,
  type DecisionLogStats,
  type DecisionQuery,
  type DecisionRecord,
  type DecisionRecordToAppend,
  type LabelledDecision,
  type Outcome,
  type DecisionScan,
} from './types.ts';
import { fromScannedRow, parseScanCursor, scanCursor, scanLimit, type ScannedRow } from './scan.ts';

export const POSTGRES_LOG_COMPONENT = 'decision_log';

/**
 * Version 1. Text columns that are compared or ordered use the "C" collation (byte order: the
 * fixed-format ISO `time` sorts as time whatever the database's locale). `seq` breaks ties
 * between records with the same time (append order within one writer). Indexes: the primary key
 * (get, duplicates, the outcome join), (service, time, seq) for queries, counts and labelled
 * windows of a service, (time, seq) for queries across services.
 */
const SCHEMA_V1 = `
CREATE TABLE decisions (
  seq            bigint GENERATED ALWAYS AS IDENTITY,
  service        text COLLATE "C" NOT NULL,
  id             text COLLATE "C" NOT NULL,
  time           text COLLATE "C" NOT NULL,
  decision       text NOT NULL,
  model_name     text,
  model_version  text,
  policy_version text,
  score          double precision,
  fallback_used  boolean NOT NULL,
  fallback_cause text,
  safe_mode      boolean,
  request        json NOT NULL,
  inputs         json,
  outputs        json,
  reasons        json NOT NULL,
  timings_ms     json NOT NULL,
  features       json,
  explanation    json,
  PRIMARY KEY (service, id)
);
CREATE INDEX decisions_service_time ON decisions (service, time, seq);
CREATE INDEX decisions_time ON decisions (time, seq);
CREATE SEQUENCE outcomes_pos;
CREATE TABLE outcomes (
  service text COLLATE "C" NOT NULL,
  id      text COLLATE "C" NOT NULL,
  label   text NOT NULL,
  time    text NOT NULL,
  pos     bigint,
  PRIMARY KEY (service, id)
);
CREATE UNIQUE INDEX outcomes_by_pos ON outcomes (pos);
CREATE INDEX outcomes_unstamped ON outcomes (service, id) WHERE pos IS NULL;
`;

export const POSTGRES_LOG_MIGRATIONS: readonly Migration[] = [{ version: 1, description: 'decisions and outcomes', sql: SCHEMA_V1 }];

/** The columns as json_to_recordset reads them from a record's object (record.ts recordObjectText). */
const RECORD_COLUMNS = COLUMNS.split(', ')
  .map((c, i) => `${c} ${i === 7 ? 'float8' : i === 8 || i === 10 ? 'int' : i >= 11 ? 'json' : 'text'}`)
  .join(', ');

/**
 * The batch's records (one JSON array of objects keyed by column) as rows: json_to_recordset
 * parses each record once (taking a tuple apart with `->` per column re-parses it per column,
 * 3x the server's time: bench/log.ts). A JSON null reads as SQL NULL: `request` null is stored
 * as JSON 'null', as SQLite does. Exported for bench/log.ts.
 */
export const INSERT_DECISIONS = `INSERT INTO decisions (${COLUMNS})
SELECT service, id, time, decision, model_name, model_version, policy_version, score, fallback_used = 1, fallback_cause, safe_mode = 1,
  coalesce(request, 'null'::json), inputs, outputs, reasons, timings_ms, features, explanation
FROM json_to_recordset($1::json) AS r(${RECORD_COLUMNS})
ON CONFLICT (service, id) DO NOTHING
RETURNING service, id`;

/**
 * One record, its columns as parameters: for the rare record holding `\u0000` (a NUL in a JSON
 * string), which the `json` type stores but PostgreSQL's JSON functions refuse to take apart.
 */
const INSERT_DECISION = `INSERT INTO decisions (${COLUMNS}) VALUES (${COLUMNS.split(', ')
  .map((_, i) => `$${i + 1}`)
  .join(', ')}) ON CONFLICT (service, id) DO NOTHING RETURNING service, id`;

/** The parameters of INSERT_DECISION from a record's object text: flags as booleans, JSON columns as JSON text. */
function recordParams(text: string): unknown[] {
  const row = JSON.parse(text) as Record<string, unknown>;
  return COLUMNS.split(', ').map((c, i) => {
    const v = row[c] ?? null;
    if (i === 8 || i === 10) return v === null ? null : v === 1;
    if (i === 11) return JSON.stringify(v); // request: 'null' when absent
    return i > 11 && v !== null ? JSON.stringify(v) : v;
  });
}

const SELECT_COLUMNS = `service, id, time, decision, model_name, model_version, policy_version, score, fallback_used, fallback_cause, safe_mode,
  request::text AS request, inputs::text AS inputs, outputs::text AS outputs, reasons::text AS reasons, timings_ms::text AS timings_ms,
  features::text AS features, explanation::text AS explanation`;

const LABELLED = `SELECT coalesce(o.pos, 0)::float8 AS seq, d.service, d.id, d.time, d.model_version AS "modelVersion", d.score, d.decision,
  d.fallback_used AS "fallbackUsed", o.label, o.time AS "outcomeTime"
  FROM outcomes o JOIN decisions d ON d.service = o.service AND d.id = o.id`;

/** Serializes the stamping of outcome positions across every rtml process on the database. */
const OUTCOME_STAMP_LOCK = 0x72746d6f; // 'rtmo'

/** Gives stream positions to committed outcomes that have none (at most 20,000 a turn: the rest in the next). */
const STAMP_OUTCOMES = `UPDATE outcomes o SET pos = nextval('outcomes_pos')
FROM (SELECT service, id FROM outcomes WHERE pos IS NULL LIMIT 20000) s
WHERE o.service = s.service AND o.id = s.id AND o.pos IS NULL`;

const UPSERT_OUTCOMES = `INSERT INTO outcomes (service, id, label, time)
SELECT $1, o.id, o.label, o.time FROM json_to_recordset($2::json) AS o(id text, label text, time text)
WHERE EXISTS (SELECT 1 FROM decisions d WHERE d.service = $1 AND d.id = o.id)
ON CONFLICT (service, id) DO UPDATE SET label = excluded.label, time = excluded.time, pos = NULL
RETURNING id`;

export interface PostgresDecisionLogOptions {
  /** Most records in one write (default 512). */
  maxBatch?: number;
  /**
   * An append not committed this long after it was made rejects with LOG_TIMEOUT (see the file
   * comment for what that means for a record already sent). Default null: appends wait for the
   * write to succeed or fail (a connection attempt fails after 5 s).
   */
  appendTimeoutMs?: number | null;
  /** Connections (default 4: one write at a time, the rest for reads and outcomes). */
  poolSize?: number;
  /** `application_name` (default 'rtml decision log'). */
  applicationName?: string;
}

export interface PostgresDecisionLogStats extends DecisionLogStats {
  /** Of `pending`: records waiting for the next write. */
  queued: number;
  /** Of `pending`: records of the write in flight. */
  writing: number;
  /** Writes that failed (outage, data error) since open. */
  failedWrites: number;
  /** The largest batch committed since open. */
  largestBatch: number;
}

export interface PostgresDecisionLog extends DecisionLog {
  /** The database, password redacted. */
  readonly url: string;
  readonly stats: PostgresDecisionLogStats;
}

/** One queued append. */
interface Pending {
  /** Its row's JSON text (record.ts recordObjectText). */
  text: string;
  /** The text holds `\\u0000` (a NUL character in a string), which PostgreSQL's JSON functions refuse: written on its own (INSERT_DECISION). */
  escapedNul: boolean;
  service: string;
  id: string;
  /** Append order (1, 2, ...): reads wait for everything up to theirs. */
  n: number;
  /** performance.now() when appended. */
  since: number;
  resolve: () => void;
  reject: (err: unknown) => void;
  /** Answered already (timed out): the write's result no longer concerns its caller. */
  settled: boolean;
}

/** A row as read: the JSON columns as text (`::text`), the flags as booleans. */
type StoredRow = StoredDecisionRow<boolean>;

/** SQLSTATE classes of errors about the data itself (22: data exception, 23: integrity constraint). */
const isDataError = (err: unknown): boolean => {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('23'));
};

/** Opens (and migrates) the log in the database at `url`. Rejects with a SCHEMA_VERSION DecisionLogSchemaError if a newer rtml wrote it. */
export async function openPostgresDecisionLog(url: string, options: PostgresDecisionLogOptions = {}): Promise<PostgresDecisionLog> {
  const maxBatch = options.maxBatch ?? 512;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new TypeError(`decision log: maxBatch must be an integer >= 1, got ${maxBatch}`);
  const appendTimeoutMs = options.appendTimeoutMs ?? null;
  if (appendTimeoutMs !== null && !(Number.isFinite(appendTimeoutMs) && appendTimeoutMs >= 1)) {
    throw new TypeError(`decision log: appendTimeoutMs must be >= 1 (or null), got ${appendTimeoutMs}`);
  }
  const where = redactUrl(url);
  // Idle connections dropped by the server (restart, failover) are reported here and replaced by the pool on next use.
  const pool = openPool(url, { max: options.poolSize ?? 4, applicationName: options.applicationName ?? 'rtml decision log' });
  try {
    await migrate(pool, POSTGRES_LOG_COMPONENT, POSTGRES_LOG_MIGRATIONS);
  } catch (err) {
    await pool.end().catch(() => {});
    if (err instanceof SchemaVersionError) {
      throw new DecisionLogSchemaError('SCHEMA_VERSION', `decision log: ${where}: ${err.message} (refusing to open it rather than risk writing it wrongly)`, { cause: err });
    }
    throw new DecisionLogError('WRITE_FAILED', `decision log: cannot open ${where}: ${(err as Error).message}`, { cause: err });
  }

  const counters = { appended: 0, commits: 0, failedWrites: 0, largestBatch: 0 };
  let queue: Pending[] = [];
  let inFlight: Pending[] | null = null;
  let enqueued = 0;
  let scheduled = false;
  let closed = false;
  let closing: Promise<void> | null = null;
  /** Reads waiting for every append up to `upTo` to be settled. */
  const waiters: { upTo: number; resolve: () => void }[] = [];
  let timeoutTimer: NodeJS.Timeout | null = null;
  let drained: (() => void) | null = null;

  /** The oldest append not settled yet (in flight, else queued), or the next one. */
  function oldestUnsettled(): number {
    if (inFlight !== null && inFlight.length > 0) return inFlight[0].n;
    return queue.length > 0 ? queue[0].n : enqueued + 1;
  }

  function releaseWaiters(): void {
    if (waiters.length === 0) return;
    const oldest = oldestUnsettled();
    while (waiters.length > 0 && waiters[0].upTo < oldest) waiters.shift()!.resolve();
  }

  function schedule(): void {
    if (scheduled || inFlight !== null) return;
    scheduled = true;
    setImmediate(writeNext); // the rest of this turn's appends join the batch
  }

  function writeNext(): void {
    scheduled = false;
    if (inFlight !== null) return;
    if (queue.length === 0) {
      drained?.();
      return;
    }
    const batch = queue.length <= maxBatch ? queue : queue.slice(0, maxBatch);
    queue = batch === queue ? [] : queue.slice(maxBatch);
    inFlight = batch;
    armTimeout();
    void write(batch).finally(() => {
      inFlight = null;
      releaseWaiters();
      armTimeout();
      if (queue.length > 0) writeNext();
      else drained?.();
    });
  }

  /**
   * Writes a batch: one statement in autocommit (its reply comes after COMMIT) for the records
   * PostgreSQL's JSON functions can take apart, then one statement each for the rare others.
   */
  async function write(batch: Pending[]): Promise<void> {
    const plain = batch.some((p) => p.escapedNul) ? batch.filter((p) => !p.escapedNul) : batch;
    if (plain.length > 0) await writeStatement(plain, INSERT_DECISIONS, [joinRecords(plain)]);
    if (plain !== batch) for (const p of batch) if (p.escapedNul) await writeStatement([p], INSERT_DECISION, recordParams(p.text));
  }

  async function writeStatement(batch: Pending[], sql: string, params: unknown[]): Promise<void> {
    let inserted: { service: string; id: string }[];
    try {
      // Named: each connection parses and plans it once (it is the same text every time).
      inserted = (await pool.query<{ service: string; id: string }>({ name: sql === INSERT_DECISIONS ? 'rtml_insert_decisions' : 'rtml_insert_decision', text: sql, values: params })).rows;
    } catch (err) {
      // A data error fails the statement: written again record by record, only the bad one fails.
      if (isDataError(err) && batch.length > 1) {
        for (const p of batch) await writeStatement([p], sql, [joinRecords([p])]);
        return;
      }
      counters.failedWrites++;
      const error = isDataError(err)
        ? new InvalidDecisionRecordError(`PostgreSQL refused it: ${(err as Error).message} (service ${JSON.stringify(batch[0].service)}, id ${JSON.stringify(batch[0].id)})`, { cause: err })
        : writeFailed(batch.length, err);
      for (const p of batch) settle(p, error);
      return;
    }
    counters.commits++;
    counters.largestBatch = Math.max(counters.largestBatch, batch.length);
    settleInserted(batch, inserted);
  }

  function joinRecords(batch: Pending[]): string {
    let text = '[';
    for (let i = 0; i < batch.length; i++) text += (i === 0 ? '' : ',') + batch[i].text;
    return text + ']';
  }

  function settleInserted(batch: Pending[], inserted: { service: string; id: string }[]): void {
    // RETURNING gives no batch position: match by key, the first occurrence in the batch won.
    const committed = new Set<string>();
    for (const row of inserted) committed.add(`${row.service}\u0000${row.id}`);
    for (const p of batch) {
      const key = `${p.service}\u0000${p.id}`;
      if (committed.delete(key)) {
        counters.appended++;
        settle(p, null);
      } else settle(p, new DuplicateDecisionError(p.service, p.id));
    }
  }

  function writeFailed(records: number, err: unknown): DecisionLogError {
    const lost = /terminat|ECONNRESET|EPIPE|socket|closed/i.test((err as Error)?.message ?? '');
    return new DecisionLogError(
      'WRITE_FAILED',
      `decision log: writing ${records} record(s) to ${where} failed, ${lost ? 'the connection was lost: whether they were committed is unknown (a retry of the same id may be a duplicate)' : 'none committed'}: ${(err as Error)?.message ?? String(err)}`,
      { cause: err },
    );
  }

  function settle(p: Pending, err: unknown): void {
    if (p.settled) return;
    p.settled = true;
    if (err === null) p.resolve();
    else p.reject(err);
  }

  /** One timer, for the oldest unanswered append (in flight, else queued). */
  function armTimeout(): void {
    if (appendTimeoutMs === null) return;
    if (timeoutTimer !== null) clearTimeout(timeoutTimer);
    timeoutTimer = null;
    const oldest = inFlight?.find((p) => !p.settled) ?? queue[0];
    if (oldest === undefined) return;
    timeoutTimer = setTimeout(expire, Math.max(0, oldest.since + appendTimeoutMs - performance.now()));
    timeoutTimer.unref();
  }

  function expire(): void {
    timeoutTimer = null;
    const now = performance.now();
    const limit = appendTimeoutMs!;
    if (inFlight !== null) {
      const late = inFlight.filter((p) => !p.settled && now - p.since >= limit);
      if (late.length > 0) {
        const err = new DecisionLogError(
          'LOG_TIMEOUT',
          `decision log: ${late.length} record(s) sent to ${where} not committed within ${limit} ms: whether they will be is unknown (a retry of the same id may be a duplicate)`,
        );
        for (const p of late) settle(p, err);
      }
    }
    let dropped = 0;
    while (dropped < queue.length && now - queue[dropped].since >= limit) dropped++;
    if (dropped > 0) {
      const late = queue.slice(0, dropped);
      queue = queue.slice(dropped);
      const err = new DecisionLogError('LOG_TIMEOUT', `decision log: ${late.length} record(s) not written to ${where} within ${limit} ms (the database is slow or unreachable); they will not be written`);
      for (const p of late) settle(p, err);
      releaseWaiters();
    }
    armTimeout();
  }

  function ensureOpen(): void {
    if (closed) throw new DecisionLogClosedError();
  }

  /** Before a read: waits until every append made so far is settled. */
  async function settled(): Promise<void> {
    ensureOpen();
    const upTo = enqueued;
    if (oldestUnsettled() <= upTo) await new Promise<void>((resolve) => waiters.push({ upTo, resolve }));
  }

  async function read<R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<R[]> {
    await settled();
    try {
      return (await pool.query<R>(sql, params)).rows;
    } catch (err) {
      throw new DecisionLogError('WRITE_FAILED', `decision log: reading ${where} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  type LabelledRow = LabelledDecision;

  return {
    url: where,

    append(record: DecisionRecordToAppend): Promise<void> {
      if (closed) return Promise.reject(new DecisionLogClosedError());
      let text: string;
      try {
        text = recordObjectText(record);
      } catch (err) {
        return Promise.reject(err);
      }
      return new Promise<void>((resolve, reject) => {
        queue.push({ text, escapedNul: text.includes('\\u0000'), service: record.service, id: record.id, n: ++enqueued, since: performance.now(), resolve, reject, settled: false });
        if (appendTimeoutMs !== null && timeoutTimer === null) armTimeout();
        schedule();
      });
    },

    async get(service: string, id: string): Promise<DecisionRecord | null> {
      const rows = await read<StoredRow>(`SELECT ${SELECT_COLUMNS} FROM decisions WHERE service = $1 AND id = $2`, [service, id]);
      return rows.length > 0 ? fromStoredRow(rows[0]) : null;
    },

    async query(filter: DecisionQuery = {}): Promise<DecisionRecord[]> {
      ensureOpen();
      const limit = filter.limit ?? DEFAULT_QUERY_LIMIT;
      if (!Number.isInteger(limit) || limit < 0) throw new TypeError(`decision log: limit must be a non-negative integer, got ${limit}`);
      const where: string[] = [];
      const params: unknown[] = [];
      if (filter.service !== undefined) where.push(`service = $${params.push(filter.service)}`);
      if (filter.since !== undefined) where.push(`time >= $${params.push(normalizeBound('since', filter.since))}`);
      if (filter.until !== undefined) where.push(`time < $${params.push(normalizeBound('until', filter.until))}`);
      const sql = `SELECT ${SELECT_COLUMNS} FROM decisions ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY time DESC, seq DESC LIMIT $${params.push(Math.min(limit, MAX_QUERY_LIMIT))}`;
      return (await read<StoredRow>(sql, params)).map(fromStoredRow);
    },

    async count(service?: string): Promise<number> {
      const rows =
        service === undefined
          ? await read<{ n: string }>('SELECT count(*) AS n FROM decisions', [])
          : await read<{ n: string }>('SELECT count(*) AS n FROM decisions WHERE service = $1', [service]);
      return Number(rows[0].n);
    },

    async recordOutcomes(service: string, outcomes: readonly Outcome[]): Promise<{ joined: number; unknown: string[] }> {
      ensureOpen();
      const rows = outcomeRows(outcomes);
      // One row per id (the last one wins, as when applied in order): an upsert cannot touch a row twice.
      const latest = new Map(rows.map((o) => [o.id, o]));
      const joinedIds = new Set((await read<{ id: string }>(UPSERT_OUTCOMES, [service, JSON.stringify([...latest.values()])])).map((r) => r.id));
      let joined = 0;
      const unknown: string[] = [];
      for (const o of rows) {
        if (joinedIds.has(o.id)) joined++;
        else unknown.push(o.id);
      }
      return { joined, unknown };
    },

    async outcomesAfter(cursor: number, limit = 10_000) {
      await settled();
      const client = await pool.connect().catch((err: unknown) => {
        throw new DecisionLogError('WRITE_FAILED', `decision log: reading outcomes from ${where} failed: ${(err as Error).message}`, { cause: err });
      });
      let items: LabelledRow[];
      try {
        await client.query('BEGIN');
        await client.query('SELECT pg_advisory_xact_lock($1)', [OUTCOME_STAMP_LOCK]);
        await client.query(STAMP_OUTCOMES);
        await client.query('COMMIT');
        items = (await client.query<LabelledRow>(`${LABELLED} WHERE o.pos > $1 ORDER BY o.pos LIMIT $2`, [cursor, Math.min(limit, MAX_QUERY_LIMIT)])).rows;
        client.release();
      } catch (err) {
        client.release(err as Error); // a broken connection is not reused
        throw new DecisionLogError('WRITE_FAILED', `decision log: reading outcomes from ${where} failed: ${(err as Error).message}`, { cause: err });
      }
      return { cursor: items.length > 0 ? items[items.length - 1].seq : cursor, items };
    },

    async labelled(service: string, range: { since?: string; until?: string; limit?: number }) {
      ensureOpen();
      const since = range.since === undefined ? '' : normalizeBound('since', range.since);
      const until = range.until === undefined ? '9999' : normalizeBound('until', range.until);
      const filter = 'd.service = $1 AND d.time >= $2 AND d.time < $3';
      const items =
        range.limit === undefined
          ? await read<LabelledRow>(`${LABELLED} WHERE ${filter} ORDER BY d.time, d.seq`, [service, since, until])
          : (await read<LabelledRow>(`${LABELLED} WHERE ${filter} ORDER BY d.time DESC, d.seq DESC LIMIT $4`, [service, since, until, range.limit])).reverse();
      const counted = await read<{ n: string }>('SELECT count(*) AS n FROM decisions WHERE service = $1 AND time >= $2 AND time < $3', [service, since, until]);
      return { decisions: Number(counted[0].n), items };
    },

    close(): Promise<void> {
      if (closing) return closing;
      closed = true;
      closing = (async () => {
        if (queue.length > 0 || inFlight !== null || scheduled) {
          await new Promise<void>((resolve) => {
            drained = resolve;
            schedule();
          });
        }
        if (timeoutTimer !== null) clearTimeout(timeoutTimer);
        releaseWaiters();
        await pool.end();
      })();
      return closing;
    },

    get stats(): PostgresDecisionLogStats {
      const writing = inFlight === null ? 0 : inFlight.reduce((n, p) => n + (p.settled ? 0 : 1), 0);
      return {
        appended: counters.appended,
        commits: counters.commits,
        pending: queue.length + writing,
        queued: queue.length,
        writing,
        failedWrites: counters.failedWrites,
        largestBatch: counters.largestBatch,
      };
    },

    async scan(service: string, range: DecisionScan) {
      ensureOpen();
      const since = range.since === undefined ? '' : normalizeBound('since', range.since);
      const until = range.until === undefined ? '9999' : normalizeBound('until', range.until);
      const from = parseScanCursor(range.after);
      const lower = from.time > since ? from.time : since;
      // By the (service, time, seq) index from where the last page stopped; the outcome by its primary key.
      const rows = await read<ScannedRow<boolean>>(
        `SELECT seq AS scan_seq, ${SELECT_COLUMNS}, o.outcome_label, o.outcome_time FROM decisions
         LEFT JOIN LATERAL (SELECT label AS outcome_label, time AS outcome_time FROM outcomes WHERE outcomes.service = decisions.service AND outcomes.id = decisions.id) o ON true
         WHERE service = $1 AND (time, seq) > ($2, $3) AND time >= $4 AND time < $5 ORDER BY time, seq LIMIT $6`,
        [service, from.time, from.seq, lower, until, scanLimit(range.limit)],
      );
      return { items: rows.map(fromScannedRow), cursor: scanCursor(rows, range.after) };
    },
  };
}
