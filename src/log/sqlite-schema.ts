/**
 * What the two sides of the SQLite decision log share: the schema and its migrations, the row
 * layout, the SQL of the writes, and the messages between the main thread (`sqlite.ts`) and the
 * writer thread (`sqlite-writer.ts`). The connection settings and the open / migrate code are
 * shared with the feature store, in `src/store/sqlite.ts`. Kept free of heavy imports: the
 * writer thread loads it.
 */
import type { SqliteStoreSchema } from '../store/sqlite.ts';

export const DECISION_LOG_FILE = 'decisions.sqlite';
/** The schema this code writes; a file with a newer one is refused, an older one migrated. */
export const SQLITE_SCHEMA_VERSION = 5;

/**
 * Version 1 (besides the meta table, which `src/store/sqlite.ts` creates). `seq` (the rowid) is
 * append order, the tie-breaker among records with the same time; the rest of a record is JSON
 * text. Its last three indexes (by action, by model
 * version, fallbacks) had no query using them and are dropped by version 3 (they cost an index
 * update per append, in the commit that the request waits for).
 */
const SCHEMA_V1 = `
CREATE TABLE decisions (
  seq            INTEGER PRIMARY KEY,
  service        TEXT NOT NULL,
  id             TEXT NOT NULL,
  time           TEXT NOT NULL,
  decision       TEXT NOT NULL,
  model_name     TEXT,
  model_version  TEXT,
  policy_version TEXT,
  score          REAL,
  fallback_used  INTEGER NOT NULL,
  fallback_cause TEXT,
  safe_mode      INTEGER,
  request        TEXT NOT NULL,
  inputs         TEXT,
  outputs        TEXT,
  reasons        TEXT NOT NULL,
  timings_ms     TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX decisions_service_id ON decisions (service, id);
CREATE INDEX decisions_time ON decisions (time);
CREATE INDEX decisions_service_time ON decisions (service, time);
CREATE INDEX decisions_service_decision_time ON decisions (service, decision, time);
CREATE INDEX decisions_service_model_version_time ON decisions (service, model_version, time);
CREATE INDEX decisions_fallback_time ON decisions (service, time) WHERE fallback_used = 1;
`;

/**
 * Version 2: outcomes, joined to decisions by (service, id). A corrected outcome replaces
 * the earlier one and gets a new seq, so streaming consumers see it again.
 */
const OUTCOMES_V2 = `
CREATE TABLE outcomes (
  seq          INTEGER PRIMARY KEY,
  service      TEXT NOT NULL,
  id           TEXT NOT NULL,
  label        TEXT NOT NULL,
  time         TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX outcomes_service_id ON outcomes (service, id);
`;

/**
 * Version 3: only the indexes the log's own queries use remain:
 *  - decisions_service_id (unique): get, duplicate detection, the outcome join;
 *  - decisions_service_time: query by service (newest first, time range), count by service,
 *    labelled windows;
 *  - decisions_time: query without a service (the rowid `seq` in every index entry serves the
 *    `time DESC, seq DESC` order).
 * No data changes: an rtml that knows only version 2 refuses a version 3 file, but reads and
 * writes it correctly if its schema_version is set back to 2 by hand.
 */
const DROP_UNUSED_INDEXES_V3 = `
DROP INDEX IF EXISTS decisions_service_decision_time;
DROP INDEX IF EXISTS decisions_service_model_version_time;
DROP INDEX IF EXISTS decisions_fallback_time;
`;

/**
 * Version 4: `features`, how each sourced feature of the decision was obtained, as JSON
 * `{ name: { status, value } }` (status present/default/stale/missing/timeout/error, value the
 * one served, default included). Null for services without feature sources and for decisions
 * logged before version 4.
 */
const FEATURES_V4 = `
ALTER TABLE decisions ADD COLUMN features TEXT;
`;

/**
 * Version 5: `explanation`, for decisions whose policy asks for the model's own reasons: whether
 * the model decided, and if so the bias and every feature's contribution to the score's margin,
 * as JSON (the reasons themselves are in `reasons`). Null otherwise and before version 5.
 */
const EXPLANATION_V5 = `
ALTER TABLE decisions ADD COLUMN explanation TEXT;
`;

/**
 * The log's schema for `openSqliteStore`: a new log is created at version 1 and migrated like
 * an old one, so that a fresh file and a migrated one cannot differ. Its `kind` has been written
 * since the first version and is checked on open (a feature store's file is not a log).
 */
export const DECISION_LOG_SCHEMA: SqliteStoreSchema = {
  kind: 'rtml decision log',
  checkKind: true,
  createV1: SCHEMA_V1,
  /** From version N to N+1, by N. */
  migrations: { 1: OUTCOMES_V2, 2: DROP_UNUSED_INDEXES_V3, 3: FEATURES_V4, 4: EXPLANATION_V5 },
  version: SQLITE_SCHEMA_VERSION,
};

export const COLUMNS =
  'service, id, time, decision, model_name, model_version, policy_version, score, fallback_used, fallback_cause, safe_mode, request, inputs, outputs, reasons, timings_ms, features, explanation';

/** A record as stored, in {@link COLUMNS} order: what the main thread builds and the writer inserts. */
export type Row = [
  service: string,
  id: string,
  time: string,
  decision: string,
  modelName: string | null,
  modelVersion: string | null,
  policyVersion: string | null,
  score: number | null,
  fallbackUsed: 0 | 1,
  fallbackCause: string | null,
  safeMode: 0 | 1 | null,
  request: string,
  inputs: string | null,
  outputs: string | null,
  reasons: string,
  timingsMs: string,
  features: string | null,
  explanation: string | null,
];

/**
 * How a record travels to the writer: one JSON text per record, the {@link Row} tuple with its
 * JSON columns (request, inputs, outputs, reasons, timings_ms, features, explanation) embedded as values
 * rather than as JSON strings, so the main thread runs one JSON.stringify per record and the
 * message it posts is one string per batch (a copy, where an array of rows is cloned value by
 * value). The writer parses the batch and turns the embedded values back into the columns'
 * text with {@link rowsFromBatch}; JSON.stringify(JSON.parse(t)) gives back t exactly, so the
 * stored text is what stringifying the record's fields on the main thread gave. The score is
 * the one number JSON cannot carry as is (±Infinity): it travels as a string then. Input
 * vectors given as a Float32Array travel as binary, not as decimal text: all of a batch's go in
 * one Float32Array (transferred, not copied), and the tuple holds the vector's length; turning
 * 22 floats into shortest decimal strings is most of a record's JSON.stringify.
 *
 * This is the writer's side: the batch's tuples, their JSON columns back to text.
 */
export function rowsFromBatch(text: string, floats: Float32Array | null): Row[] {
  const rows = JSON.parse(text) as unknown[][];
  let at = 0;
  for (const row of rows) {
    if (typeof row[7] === 'string') row[7] = Number(row[7]); // ±Infinity
    row[11] = JSON.stringify(row[11]); // request: 'null' when absent
    const inputs = row[12];
    if (typeof inputs === 'number') {
      // A Float32Array input vector: its `inputs` values are next in the batch's floats.
      const vector = Array.from(floats!.subarray(at, at + inputs), (v) => (Number.isNaN(v) ? null : v));
      at += inputs;
      row[12] = JSON.stringify(vector);
    } else if (inputs !== null) row[12] = JSON.stringify(inputs);
    if (row[13] !== null) row[13] = JSON.stringify(row[13]);
    row[14] = JSON.stringify(row[14]);
    row[15] = JSON.stringify(row[15]);
    if (row[16] !== null) row[16] = JSON.stringify(row[16]);
    if (row[17] !== null) row[17] = JSON.stringify(row[17]);
  }
  return rows as Row[];
}

export const INSERT_DECISION = `INSERT INTO decisions (${COLUMNS}) VALUES (${COLUMNS.split(',')
  .map(() => '?')
  .join(', ')}) ON CONFLICT (service, id) DO NOTHING`;
export const DECISION_EXISTS = 'SELECT 1 FROM decisions WHERE service = ? AND id = ?';
export const PUT_OUTCOME = 'INSERT OR REPLACE INTO outcomes (service, id, label, time) VALUES (?, ?, ?, ?)';

// ---------------------------------------------------------------------------------------------
// The writer thread

export interface WriterConfig {
  path: string;
  synchronous: 'normal' | 'full';
  /** Most records in one transaction: batches waiting in the writer's queue are merged up to this. */
  maxBatch: number;
  /** Passive checkpoint at most this long after a write (ms). */
  checkpointIntervalMs: number;
  /** Passive checkpoint as soon as about this many bytes went into the WAL since the last one. */
  checkpointBytes: number;
}

/** An outcome as the writer gets it: validated, time filled in. */
export type { OutcomeRow } from './record.ts';
import type { OutcomeRow } from './record.ts';

/**
 * A batch's claim, one Int32 in memory shared by the two threads, for a log whose appends time
 * out: the writer may write the batch only if it turns PENDING into WRITING (inside the
 * transaction, before its INSERTs), and the main thread may answer its appends with a timeout
 * only if it turns PENDING into ABANDONED. Exactly one of them succeeds, so a record whose append
 * timed out is never committed behind its caller's back (a retry of its id is no duplicate).
 */
export const CLAIM = { PENDING: 0, WRITING: 1, ABANDONED: 2 } as const;

/** Main thread → writer, processed strictly in order. */
export type ToWriter =
  /**
   * One batch: the appends of one turn of the main thread's event loop (at most maxBatch), as
   * one JSON array of `count` record tuples and their Float32Array inputs (see {@link rowsFromBatch}),
   * and its claim (null when appends do not time out).
   */
  | { kind: 'rows'; count: number; text: string; floats: Float32Array | null; claim: Int32Array | null }
  | { kind: 'outcomes'; service: string; outcomes: OutcomeRow[] }
  /** Finish everything before it, checkpoint, close the connection, exit. */
  | { kind: 'close' };

/** Writer → main thread. Each answer settles the oldest unsettled jobs (jobs are answered in order). */
export type FromWriter =
  /** The database is open and the writer takes messages. */
  | { kind: 'ready' }
  /**
   * One transaction committed (COMMIT returned): it held the next `jobs` rows batches, less those
   * in `skipped` (their indexes among the `jobs`: abandoned, never written); `duplicates` are
   * record indexes across all `jobs` batches, ascending.
   */
  | { kind: 'committed'; jobs: number; records: number; duplicates: number[]; skipped: number[] }
  /** One transaction failed and was rolled back: nothing of the next `jobs` rows batches was committed. */
  | { kind: 'failed'; jobs: number; records: number; error: string; code: string | null }
  | { kind: 'outcomes'; joined: number; unknown: string[] }
  | { kind: 'outcomesFailed'; error: string; code: string | null }
  /** A checkpoint pass: by the checkpointer thread, or a `topUp` by the writer right after one (or every checkpoint, without a checkpointer). */
  | { kind: 'checkpoint'; walFrames: number; checkpointed: number; busy: boolean; ms: number; error: string | null; topUp?: boolean };
