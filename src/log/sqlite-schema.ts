/**
 * What the two sides of the SQLite decision log share: the schema and its migrations, the row
 * layout, the SQL of the writes, and the messages between the main thread (`sqlite.ts`) and the
 * writer thread (`sqlite-writer.ts`). The connection settings and the open / migrate code are
 * shared with the feature store, in `src/store/sqlite.ts`. Kept free of heavy imports: the
 * writer thread loads it.
 */
import type { SqliteStoreSchema } from '../store/sqlite.ts';
import { jsonColumn, validateRecord } from './record.ts';
import type { DecisionRecordToAppend } from './types.ts';

export const DECISION_LOG_FILE = 'decisions.sqlite';
/** The schema this code writes; a file with a newer one is refused, an older one migrated. */
export const SQLITE_SCHEMA_VERSION = 7;

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
 *    `time DESC, seq DESC` order); dropped by version 7.
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
 * Version 6: `inputs_f32`, an input vector given as a Float32Array, as its 4-byte little-endian
 * floats (NaN for a missing value), `inputs` being null then; other inputs stay JSON text in
 * `inputs`. About a quarter of the vector's decimal JSON, and neither thread formats the
 * floats as shortest decimals any more (the writer did, ~0.2 µs a float). Read back, a vector
 * is the same array of numbers (NaN as null) as its JSON text gave. Older rows keep their text.
 */
const INPUTS_F32_V6 = `
ALTER TABLE decisions ADD COLUMN inputs_f32 BLOB;
`;

/**
 * Version 7: `decisions_time` is dropped. Only `query` without a service used it, and nothing
 * in rtml queries across services (the server, the dashboard, replay and the monitors all read
 * one service's decisions); it cost a B-tree insert per append in the writer (bench/log.ts: the
 * writer's CPU per decision 8.6 -> 7.7 µs). A query without a service now reads each service's
 * newest rows through `decisions_service_time` and merges them (sqlite.ts). No data changes.
 */
const DROP_TIME_INDEX_V7 = `
DROP INDEX IF EXISTS decisions_time;
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
  migrations: { 1: OUTCOMES_V2, 2: DROP_UNUSED_INDEXES_V3, 3: FEATURES_V4, 4: EXPLANATION_V5, 5: INPUTS_F32_V6, 6: DROP_TIME_INDEX_V7 },
  version: SQLITE_SCHEMA_VERSION,
};

export const COLUMNS =
  'service, id, time, decision, model_name, model_version, policy_version, score, fallback_used, fallback_cause, safe_mode, request, inputs, outputs, reasons, timings_ms, features, explanation';
/** The SQLite table's columns: {@link COLUMNS} (shared with PostgreSQL) and version 6's float vector. */
export const SQLITE_COLUMNS = `${COLUMNS}, inputs_f32`;

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
  inputsF32: Buffer | null,
];

/**
 * How records travel to the writer: a batch is ONE string, every text column of its records one
 * after the other (the JSON columns already stringified, once, on the main thread), with an
 * Int32Array saying where each column ends (its length, -1 for null; the flags as values), a
 * Float64Array of the scores, and a Float32Array of the input vectors given as Float32Array
 * (binary, not decimal text: turning ~20 floats into shortest decimal strings would be most of
 * a record's serialization on the main thread). The arrays are transferred, the string copied
 * once. The writer cuts the string back into columns with {@link insertBatch}: substrings, no
 * JSON parse and stringify again (what the previous format, one JSON text of row tuples, cost it),
 * and binds each row straight from its columns ({@link insertBatch}: no array per row).
 */
export interface RowBatch {
  count: number;
  text: string;
  /** LAYOUT_STRIDE entries per record (see {@link LAYOUT}). */
  layout: Int32Array;
  /** One per record: the score; NaN for null. */
  scores: Float64Array;
  floats: Float32Array | null;
}

/** A record's entries in a batch's layout: the length of each text column (-1: null) and the flags. */
const LAYOUT = {
  service: 0,
  id: 1,
  time: 2,
  decision: 3,
  modelName: 4,
  modelVersion: 5,
  policyVersion: 6,
  /** 0/1 */
  fallbackUsed: 7,
  fallbackCause: 8,
  /** -1 (absent), 0, 1 */
  safeMode: 9,
  request: 10,
  /** The JSON text's length, or -1 with `floatInputs` >= 0 (a Float32Array's length), or -1 with -1 (null). */
  inputs: 11,
  floatInputs: 12,
  outputs: 13,
  reasons: 14,
  timingsMs: 15,
  features: 16,
  explanation: 17,
} as const;
const LAYOUT_STRIDE = 18;

/**
 * The main thread's side: validates records and gathers them into a {@link RowBatch}. A record
 * that fails (malformed, not serializable) is not added, and nothing of it is.
 */
export class RowBatchBuilder {
  count = 0;
  private text = '';
  private layout = new Int32Array(64 * LAYOUT_STRIDE);
  private scores = new Float64Array(64);
  private floats = new Float32Array(4096);
  private floatsLength = 0;

  add(r: DecisionRecordToAppend): void {
    validateRecord(r);
    // Every JSON column first: if one cannot be serialized, nothing has been added yet.
    // The request's text as it arrived when it is exactly the request (validated above): no stringify.
    const request = r.requestText ?? jsonColumn('request', r.request);
    const inputs = r.inputs === null || r.inputs instanceof Float32Array ? null : jsonColumn('inputs', r.inputs);
    const outputs = r.outputs === null ? null : jsonColumn('outputs', r.outputs);
    const reasons = jsonColumn('reasons', r.reasons);
    const timings = jsonColumn('timingsMs', r.timingsMs);
    const features = r.features === undefined ? null : jsonColumn('features', r.features);
    const explanation = r.explanation === undefined ? null : jsonColumn('explanation', r.explanation);
    const n = this.count;
    if ((n + 1) * LAYOUT_STRIDE > this.layout.length) {
      const layout = new Int32Array(this.layout.length * 2);
      layout.set(this.layout);
      this.layout = layout;
      const scores = new Float64Array(this.scores.length * 2);
      scores.set(this.scores);
      this.scores = scores;
    }
    const at = n * LAYOUT_STRIDE;
    const layout = this.layout;
    // Methods, not closures: tsx names every closure it creates (Object.defineProperty), per record here.
    this.put(at + LAYOUT.service, r.service);
    this.put(at + LAYOUT.id, r.id);
    this.put(at + LAYOUT.time, r.time);
    this.put(at + LAYOUT.decision, r.decision);
    this.put(at + LAYOUT.modelName, r.model?.name ?? null);
    this.put(at + LAYOUT.modelVersion, r.model?.version ?? null);
    this.put(at + LAYOUT.policyVersion, r.policyVersion);
    layout[at + LAYOUT.fallbackUsed] = r.fallback.used ? 1 : 0;
    this.put(at + LAYOUT.fallbackCause, r.fallback.cause);
    layout[at + LAYOUT.safeMode] = r.safeMode === undefined ? -1 : r.safeMode ? 1 : 0;
    this.put(at + LAYOUT.request, request);
    this.put(at + LAYOUT.inputs, inputs);
    layout[at + LAYOUT.floatInputs] = r.inputs instanceof Float32Array ? r.inputs.length : -1;
    this.put(at + LAYOUT.outputs, outputs);
    this.put(at + LAYOUT.reasons, reasons);
    this.put(at + LAYOUT.timingsMs, timings);
    this.put(at + LAYOUT.features, features);
    this.put(at + LAYOUT.explanation, explanation);
    this.scores[n] = r.score === null ? NaN : r.score;
    if (r.inputs instanceof Float32Array) {
      // Copied now: the record is serialized at append, whatever the caller does with it next.
      const vector = r.inputs;
      if (this.floatsLength + vector.length > this.floats.length) {
        const grown = new Float32Array(Math.max(2 * this.floats.length, this.floatsLength + vector.length));
        grown.set(this.floats.subarray(0, this.floatsLength));
        this.floats = grown;
      }
      this.floats.set(vector, this.floatsLength);
      this.floatsLength += vector.length;
    }
    this.count = n + 1;
  }

  private put(slot: number, value: string | null): void {
    if (value === null) this.layout[slot] = -1;
    else {
      this.layout[slot] = value.length;
      this.text += value;
    }
  }

  /** The batch so far (its arrays to transfer), and an empty builder. */
  take(): RowBatch {
    const batch: RowBatch = {
      count: this.count,
      text: this.text,
      layout: this.layout.slice(0, this.count * LAYOUT_STRIDE),
      scores: this.scores.slice(0, this.count),
      floats: this.floatsLength > 0 ? this.floats.slice(0, this.floatsLength) : null,
    };
    this.count = 0;
    this.text = '';
    this.floatsLength = 0;
    return batch;
  }
}

/** How the writer inserts one row: the bound statement's run, its parameters in {@link COLUMNS} order; true if the row was inserted (false: a duplicate). */
export type InsertRow = (...row: Row) => boolean;

/**
 * The writer's side: inserts a batch's rows with `insert`, each row's columns passed as
 * separate arguments (bound straight from the call's arguments: no array per row to build and
 * read back element by element); calls `duplicate` with the index in the batch of each row
 * that was not inserted. Returns about how many bytes the rows hold.
 */
export function insertBatch(batch: RowBatch, insert: InsertRow, duplicate: (i: number) => void): number {
  const { text, layout, scores, floats } = batch;
  let pos = 0;
  let floatAt = 0;
  // A column's text (null: -1), cut from the batch's string where the previous one ended.
  let n = 0;
  for (let i = 0, at = 0; i < batch.count; i++, at += LAYOUT_STRIDE) {
    const service = text.slice(pos, (pos += layout[at + LAYOUT.service]));
    const id = text.slice(pos, (pos += layout[at + LAYOUT.id]));
    const time = text.slice(pos, (pos += layout[at + LAYOUT.time]));
    const decision = text.slice(pos, (pos += layout[at + LAYOUT.decision]));
    const modelName = (n = layout[at + LAYOUT.modelName]) < 0 ? null : text.slice(pos, (pos += n));
    const modelVersion = (n = layout[at + LAYOUT.modelVersion]) < 0 ? null : text.slice(pos, (pos += n));
    const policyVersion = (n = layout[at + LAYOUT.policyVersion]) < 0 ? null : text.slice(pos, (pos += n));
    const fallbackCause = (n = layout[at + LAYOUT.fallbackCause]) < 0 ? null : text.slice(pos, (pos += n));
    const request = text.slice(pos, (pos += layout[at + LAYOUT.request]));
    const inputs = (n = layout[at + LAYOUT.inputs]) < 0 ? null : text.slice(pos, (pos += n));
    const floatCount = layout[at + LAYOUT.floatInputs];
    let inputsF32: Buffer | null = null;
    if (floatCount >= 0) {
      // A view of the transferred floats, bound as the BLOB (inputs_f32), in the machine's byte order (little-endian: x86-64, arm64).
      inputsF32 = Buffer.from(floats!.buffer, floats!.byteOffset + 4 * floatAt, 4 * floatCount);
      floatAt += floatCount;
    }
    const outputs = (n = layout[at + LAYOUT.outputs]) < 0 ? null : text.slice(pos, (pos += n));
    const reasons = text.slice(pos, (pos += layout[at + LAYOUT.reasons]));
    const timingsMs = text.slice(pos, (pos += layout[at + LAYOUT.timingsMs]));
    const features = (n = layout[at + LAYOUT.features]) < 0 ? null : text.slice(pos, (pos += n));
    const explanation = (n = layout[at + LAYOUT.explanation]) < 0 ? null : text.slice(pos, (pos += n));
    const safeMode = layout[at + LAYOUT.safeMode];
    const score = scores[i];
    const inserted = insert(
      service,
      id,
      time,
      decision,
      modelName,
      modelVersion,
      policyVersion,
      Number.isNaN(score) ? null : score,
      layout[at + LAYOUT.fallbackUsed] === 1 ? 1 : 0,
      fallbackCause,
      safeMode === -1 ? null : safeMode === 1 ? 1 : 0,
      request,
      inputs,
      outputs,
      reasons,
      timingsMs,
      features,
      explanation,
      inputsF32,
    );
    if (!inserted) duplicate(i);
  }
  return text.length + 4 * floatAt + 8 * batch.count;
}

/** An inputs_f32 BLOB back as the numbers JSON gave before version 6: NaN as null. */
export function floatsFromBlob(blob: Uint8Array): (number | null)[] {
  const bytes = blob.byteOffset % 4 === 0 ? blob : blob.slice(); // a Float32Array view needs 4-byte alignment
  return Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4), (v) => (Number.isNaN(v) ? null : v));
}

export const INSERT_DECISION = `INSERT INTO decisions (${SQLITE_COLUMNS}) VALUES (${SQLITE_COLUMNS.split(',')
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
   * a {@link RowBatch}, and its claim (null when appends do not time out).
   */
  | { kind: 'rows'; batch: RowBatch; claim: Int32Array | null }
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
