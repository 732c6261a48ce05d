/**
 * The embedded default decision log: one SQLite file, `<dataDir>/decisions.sqlite`, written
 * through better-sqlite3 in WAL mode with group commit.
 *
 * Group commit: `append` validates and serializes the record at once (so a bad record fails
 * alone and later mutation of the caller's object changes nothing), queues it, and returns a
 * promise. A flush writes every queued record in ONE transaction and settles their promises
 * only after COMMIT has returned. A flush runs when the queue reaches `maxBatch`, or else on the
 * next turn of the event loop (`setImmediate`, `maxDelayMs: 0`, the default) or `maxDelayMs`
 * after the first queued record. The default is self-clocking: better-sqlite3 commits
 * synchronously, so requests that arrive while one batch commits are queued by the next turn
 * and share the next commit; batches grow with load and an idle server adds no delay
 * (bench/log.ts measures the alternatives).
 *
 * Durability (`synchronous`): in WAL mode a COMMIT appends the transaction's pages to the WAL.
 *  - 'normal': the WAL is not fsynced at commit (only at checkpoints). A committed transaction
 *    survives the process dying in any way, SIGKILL included, since the kernel already has the
 *    pages; the last transactions before a power loss or kernel crash may be lost (the file
 *    stays consistent).
 *  - 'full' (the default): the WAL is fsynced before COMMIT returns, so an acknowledged
 *    decision also survives power loss.
 * 'full' is the default because rtml's contract is that a decision answered 2xx is logged
 * durably, and group commit amortizes the one fsync per commit over the whole batch: the cost
 * is mostly added latency per batch (one fsync), not throughput per record (bench/log.ts on a
 * 2-core VM, 64 appends in flight: ~40k appends/s FULL vs ~45k NORMAL with group commit, but
 * 300-5,700/s FULL vs 10-17k/s NORMAL with one transaction per record). Choose 'normal'
 * where losing the last few milliseconds of decisions on power loss is acceptable.
 *
 * A write-side failure other than a duplicate id (disk full, I/O error, database locked by
 * another process beyond the busy timeout) rolls the whole batch back and rejects every
 * append in it: none of them was acknowledged, so none of them was answered 2xx.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  DECISION_TIME_PATTERN,
  DEFAULT_QUERY_LIMIT,
  DecisionLogClosedError,
  DecisionLogError,
  DecisionLogSchemaError,
  DuplicateDecisionError,
  InvalidDecisionRecordError,
  MAX_QUERY_LIMIT,
  type DecisionLog,
  type DecisionLogStats,
  type LabelledDecision,
  type Outcome,
  type DecisionQuery,
  type DecisionRecord,
} from './types.ts';

export interface SqliteDecisionLogOptions {
  /** Default 'full': see the file comment. */
  synchronous?: 'normal' | 'full';
  /** Flush as soon as this many records are queued (default 256; 1 = one transaction per record). */
  maxBatch?: number;
  /** 0 (default): flush on the next turn of the event loop; > 0: at most this long after the first queued record. */
  maxDelayMs?: number;
}

export interface SqliteDecisionLog extends DecisionLog {
  /** The database file. */
  readonly path: string;
  readonly synchronous: 'normal' | 'full';
}

export const DECISION_LOG_FILE = 'decisions.sqlite';
/** The schema this code writes; a file with a newer one is refused, an older one migrated. */
export const SQLITE_SCHEMA_VERSION = 2;

const DEFAULTS = { synchronous: 'full', maxBatch: 256, maxDelayMs: 0 } as const;

/**
 * Indexed columns serve the lookups a decision log gets (one decision by id, recent decisions
 * of a service, by time range, by action, by model version, fallbacks); the rest is JSON text.
 * `seq` (the rowid) is append order, the tie-breaker among records with the same time.
 * Fallbacks are rare, so their index is partial: it costs nothing for ordinary decisions.
 */
const SCHEMA_V1 = `
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
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

/** Migrations from version N to N+1, by N. */
const MIGRATIONS: Record<number, string> = { 1: OUTCOMES_V2 };

const COLUMNS =
  'service, id, time, decision, model_name, model_version, policy_version, score, fallback_used, fallback_cause, safe_mode, request, inputs, outputs, reasons, timings_ms';

type Row = [
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
];

interface StoredRow {
  service: string;
  id: string;
  time: string;
  decision: string;
  model_name: string | null;
  model_version: string | null;
  policy_version: string | null;
  score: number | null;
  fallback_used: number;
  fallback_cause: string | null;
  safe_mode: number | null;
  request: string;
  inputs: string | null;
  outputs: string | null;
  reasons: string;
  timings_ms: string;
}

interface Queued {
  row: Row;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export function openSqliteDecisionLog(dataDir: string, options: SqliteDecisionLogOptions = {}): SqliteDecisionLog {
  const synchronous = options.synchronous ?? DEFAULTS.synchronous;
  if (synchronous !== 'normal' && synchronous !== 'full') {
    throw new TypeError(`decision log: synchronous must be 'normal' or 'full', got ${JSON.stringify(synchronous)}`);
  }
  const maxBatch = options.maxBatch ?? DEFAULTS.maxBatch;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new TypeError(`decision log: maxBatch must be an integer >= 1, got ${maxBatch}`);
  const maxDelayMs = options.maxDelayMs ?? DEFAULTS.maxDelayMs;
  if (!Number.isFinite(maxDelayMs) || maxDelayMs < 0) throw new TypeError(`decision log: maxDelayMs must be >= 0, got ${maxDelayMs}`);

  mkdirSync(dataDir, { recursive: true });
  const path = resolve(join(dataDir, DECISION_LOG_FILE));
  const db = openDatabase(path, synchronous);

  const insert = db.prepare<Row>(`INSERT INTO decisions (${COLUMNS}) VALUES (${COLUMNS.split(',').map(() => '?').join(', ')}) ON CONFLICT (service, id) DO NOTHING`);
  const selectOne = db.prepare<[string, string], StoredRow>(`SELECT ${COLUMNS} FROM decisions WHERE service = ? AND id = ?`);
  const countAll = db.prepare<[], number>('SELECT count(*) FROM decisions').pluck();
  const countService = db.prepare<[string], number>('SELECT count(*) FROM decisions WHERE service = ?').pluck();
  const queries = new Map<string, Database.Statement<unknown[], StoredRow>>();
  const decisionExists = db.prepare<[string, string], number>('SELECT 1 FROM decisions WHERE service = ? AND id = ?').pluck();
  const putOutcome = db.prepare<[string, string, string, string]>('INSERT OR REPLACE INTO outcomes (service, id, label, time) VALUES (?, ?, ?, ?)');
  const writeOutcomes = db.transaction((service: string, outcomes: readonly Outcome[], now: string) => {
    const unknown: string[] = [];
    let joined = 0;
    for (const o of outcomes) {
      if (decisionExists.get(service, o.id) === undefined) unknown.push(o.id);
      else {
        putOutcome.run(service, o.id, o.label, o.time ?? now);
        joined++;
      }
    }
    return { joined, unknown };
  });
  const LABELLED = `SELECT o.seq AS seq, d.service AS service, d.id AS id, d.time AS time, d.model_version AS modelVersion, d.score AS score,
    d.decision AS decision, d.fallback_used AS fallbackUsed, o.label AS label, o.time AS outcomeTime
    FROM outcomes o JOIN decisions d ON d.service = o.service AND d.id = o.id`;
  type LabelledRow = Omit<LabelledDecision, 'fallbackUsed'> & { fallbackUsed: number };
  const selectOutcomesAfter = db.prepare<[number, number], LabelledRow>(`${LABELLED} WHERE o.seq > ? ORDER BY o.seq LIMIT ?`);
  const selectLabelled = db.prepare<[string, string, string], LabelledRow>(`${LABELLED} WHERE d.service = ? AND d.time >= ? AND d.time < ? ORDER BY d.time`);
  const countInRange = db.prepare<[string, string, string], number>('SELECT count(*) FROM decisions WHERE service = ? AND time >= ? AND time < ?').pluck();
  const fromLabelled = (r: LabelledRow): LabelledDecision => ({ ...r, fallbackUsed: r.fallbackUsed === 1 });

  /** Inserts the batch in one transaction; returns which rows were duplicates (nothing inserted). */
  const writeBatch = db.transaction((batch: Queued[]): boolean[] => batch.map((q) => insert.run(...q.row).changes === 0));

  const counters = { appended: 0, commits: 0 };
  let queue: Queued[] = [];
  let timer: NodeJS.Immediate | NodeJS.Timeout | null = null;
  let closed = false;
  let closing: Promise<void> | null = null;

  function flush(): void {
    if (timer !== null) {
      if (maxDelayMs > 0) clearTimeout(timer as NodeJS.Timeout);
      else clearImmediate(timer as NodeJS.Immediate);
      timer = null;
    }
    if (queue.length === 0) return;
    const batch = queue;
    queue = [];
    let duplicate: boolean[];
    try {
      duplicate = writeBatch.immediate(batch);
    } catch (err) {
      const failure = new DecisionLogError('WRITE_FAILED', `decision log: writing ${batch.length} record(s) to ${path} failed, none committed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
      for (const q of batch) q.reject(failure);
      return;
    }
    counters.commits++;
    for (let i = 0; i < batch.length; i++) {
      const q = batch[i];
      if (duplicate[i]) {
        q.reject(new DuplicateDecisionError(q.row[0], q.row[1]));
      } else {
        counters.appended++;
        q.resolve();
      }
    }
  }

  function schedule(): void {
    if (queue.length >= maxBatch) flush();
    else if (timer === null) timer = maxDelayMs > 0 ? setTimeout(flush, maxDelayMs) : setImmediate(flush);
  }

  function ensureOpen(): void {
    if (closed) throw new DecisionLogClosedError();
  }

  function queryStatement(filter: DecisionQuery): Database.Statement<unknown[], StoredRow> {
    const key = `${filter.service !== undefined}${filter.since !== undefined}${filter.until !== undefined}`;
    let stmt = queries.get(key);
    if (!stmt) {
      const where: string[] = [];
      if (filter.service !== undefined) where.push('service = ?');
      if (filter.since !== undefined) where.push('time >= ?');
      if (filter.until !== undefined) where.push('time < ?');
      stmt = db.prepare<unknown[], StoredRow>(
        `SELECT ${COLUMNS} FROM decisions ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY time DESC, seq DESC LIMIT ?`,
      );
      queries.set(key, stmt);
    }
    return stmt;
  }

  return {
    path,
    synchronous,

    append(record: DecisionRecord): Promise<void> {
      if (closed) return Promise.reject(new DecisionLogClosedError());
      let row: Row;
      try {
        row = toRow(record);
      } catch (err) {
        return Promise.reject(err);
      }
      return new Promise<void>((resolve, reject) => {
        queue.push({ row, resolve, reject });
        schedule();
      });
    },

    async get(service: string, id: string): Promise<DecisionRecord | null> {
      ensureOpen();
      flush(); // read your own writes, even un-awaited ones
      const row = selectOne.get(service, id);
      return row ? fromRow(row) : null;
    },

    async query(filter: DecisionQuery = {}): Promise<DecisionRecord[]> {
      ensureOpen();
      const limit = filter.limit ?? DEFAULT_QUERY_LIMIT;
      if (!Number.isInteger(limit) || limit < 0) throw new TypeError(`decision log: limit must be a non-negative integer, got ${limit}`);
      const params: unknown[] = [];
      if (filter.service !== undefined) params.push(filter.service);
      if (filter.since !== undefined) params.push(normalizeBound('since', filter.since));
      if (filter.until !== undefined) params.push(normalizeBound('until', filter.until));
      params.push(Math.min(limit, MAX_QUERY_LIMIT));
      flush();
      return queryStatement(filter).all(...params).map(fromRow);
    },

    async recordOutcomes(service: string, outcomes: readonly Outcome[]) {
      ensureOpen();
      for (const o of outcomes) {
        if (typeof o.id !== 'string' || typeof o.label !== 'string' || (o.time !== undefined && !DECISION_TIME_PATTERN.test(o.time))) {
          throw new InvalidDecisionRecordError(`outcome ${JSON.stringify(o).slice(0, 200)}: needs a string id and label, and time as YYYY-MM-DDTHH:MM:SS.sssZ`);
        }
      }
      flush(); // an outcome may follow its decision immediately
      return writeOutcomes.immediate(service, outcomes, new Date().toISOString());
    },

    async outcomesAfter(cursor: number, limit = 10_000) {
      ensureOpen();
      const items = selectOutcomesAfter.all(cursor, Math.min(limit, MAX_QUERY_LIMIT)).map(fromLabelled);
      return { cursor: items.length > 0 ? items[items.length - 1].seq : cursor, items };
    },

    async labelled(service: string, range: { since?: string; until?: string }) {
      ensureOpen();
      flush();
      const since = range.since === undefined ? '' : normalizeBound('since', range.since);
      const until = range.until === undefined ? '9999' : normalizeBound('until', range.until);
      return { decisions: countInRange.get(service, since, until)!, items: selectLabelled.all(service, since, until).map(fromLabelled) };
    },

    async count(service?: string): Promise<number> {
      ensureOpen();
      flush();
      return service === undefined ? countAll.get()! : countService.get(service)!;
    },

    close(): Promise<void> {
      if (closing) return closing;
      closed = true;
      closing = new Promise<void>((resolve, reject) => {
        try {
          flush();
        } finally {
          try {
            db.close();
            resolve();
          } catch (err) {
            reject(err);
          }
        }
      });
      return closing;
    },

    get stats(): DecisionLogStats {
      return { appended: counters.appended, commits: counters.commits, pending: queue.length };
    },
  };
}

function openDatabase(path: string, synchronous: 'normal' | 'full'): Database.Database {
  let db: Database.Database;
  try {
    db = new Database(path, { timeout: 5000 });
  } catch (err) {
    throw new DecisionLogError('NOT_A_DECISION_LOG', `decision log: cannot open ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    let mode: unknown;
    try {
      mode = db.pragma('journal_mode = WAL', { simple: true });
    } catch (err) {
      // SQLITE_NOTADB and friends surface at the first statement, not at open.
      throw new DecisionLogSchemaError('NOT_A_DECISION_LOG', `decision log: ${path} is not a SQLite database: ${(err as Error).message}`, { cause: err });
    }
    if (mode !== 'wal') throw new DecisionLogError('NOT_A_DECISION_LOG', `decision log: ${path}: could not switch to WAL mode (got ${String(mode)})`);
    db.pragma(`synchronous = ${synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    // After a checkpoint the WAL is reused from its start, not shrunk: cap what it keeps on disk.
    db.pragma('journal_size_limit = 67108864');
    db.transaction(() => migrate(db, path)).immediate();
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

function migrate(db: Database.Database, path: string): void {
  const tables = db
    .prepare<[], string>("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
    .pluck()
    .all();
  if (!tables.includes('meta')) {
    if (tables.length > 0) {
      throw new DecisionLogSchemaError('NOT_A_DECISION_LOG', `decision log: ${path} is a SQLite database but not an rtml decision log (it has tables ${tables.join(', ')} and no meta table)`);
    }
    db.exec(SCHEMA_V1);
    db.exec(OUTCOMES_V2);
    const put = db.prepare<[string, string]>('INSERT INTO meta (key, value) VALUES (?, ?)');
    put.run('schema_version', String(SQLITE_SCHEMA_VERSION));
    put.run('created_at', new Date().toISOString());
    put.run('kind', 'rtml decision log');
    return;
  }
  const stored = db.prepare<[], string>("SELECT value FROM meta WHERE key = 'schema_version'").pluck().get();
  const version = Number(stored);
  if (stored === undefined || !Number.isInteger(version) || version < 1) {
    throw new DecisionLogSchemaError('NOT_A_DECISION_LOG', `decision log: ${path} has no valid schema_version in its meta table (found ${JSON.stringify(stored ?? null)})`);
  }
  if (version > SQLITE_SCHEMA_VERSION) {
    throw new DecisionLogSchemaError(
      'SCHEMA_VERSION',
      `decision log: ${path} has schema version ${version}, newer than the version ${SQLITE_SCHEMA_VERSION} this rtml understands; upgrade rtml (refusing to open it rather than risk writing it wrongly)`,
    );
  }
  for (let v = version; v < SQLITE_SCHEMA_VERSION; v++) {
    const step = MIGRATIONS[v];
    if (step === undefined) throw new DecisionLogSchemaError('SCHEMA_VERSION', `decision log: ${path}: no migration from schema version ${v}`);
    db.exec(step);
  }
  if (version !== SQLITE_SCHEMA_VERSION) {
    db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(String(SQLITE_SCHEMA_VERSION));
  }
}

function normalizeBound(name: string, value: string): string {
  const ms = Date.parse(value);
  if (typeof value !== 'string' || Number.isNaN(ms)) throw new TypeError(`decision log: ${name} must be a date string, got ${JSON.stringify(value)}`);
  return new Date(ms).toISOString();
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function json(field: string, value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new InvalidDecisionRecordError(`${field} is not serializable as JSON: ${(err as Error).message}`, { cause: err });
  }
  return text ?? 'null';
}

/** Validates a record's shape (cheaply: the types already say most of it) and serializes it. */
function toRow(r: DecisionRecord): Row {
  if (!isObject(r)) throw new InvalidDecisionRecordError('not an object');
  const fail = (msg: string): never => {
    throw new InvalidDecisionRecordError(`${msg} (service ${JSON.stringify(r.service)}, id ${JSON.stringify(r.id)})`);
  };
  if (typeof r.id !== 'string' || r.id === '') fail('id must be a non-empty string');
  if (typeof r.service !== 'string' || r.service === '') fail('service must be a non-empty string');
  if (typeof r.time !== 'string' || !DECISION_TIME_PATTERN.test(r.time) || new Date(r.time).toISOString() !== r.time) {
    fail(`time must be ISO 8601 UTC with milliseconds (YYYY-MM-DDTHH:MM:SS.sssZ), got ${JSON.stringify(r.time)}`);
  }
  if (typeof r.decision !== 'string') fail('decision must be a string');
  if (r.model !== null && !(isObject(r.model) && typeof r.model.name === 'string' && typeof r.model.version === 'string')) {
    fail('model must be null or { name: string, version: string }');
  }
  if (r.policyVersion !== null && typeof r.policyVersion !== 'string') fail('policyVersion must be a string or null');
  if (r.inputs !== null && !Array.isArray(r.inputs)) fail('inputs must be an array or null');
  if (r.outputs !== null && !isObject(r.outputs)) fail('outputs must be an object or null');
  if (r.score !== null && typeof r.score !== 'number') fail('score must be a number or null');
  if (!Array.isArray(r.reasons)) fail('reasons must be an array');
  if (!isObject(r.fallback) || typeof r.fallback.used !== 'boolean' || (r.fallback.cause !== null && typeof r.fallback.cause !== 'string')) {
    fail('fallback must be { used: boolean, cause: string | null }');
  }
  if (r.safeMode !== undefined && typeof r.safeMode !== 'boolean') fail('safeMode must be a boolean when present');
  if (!isObject(r.timingsMs)) fail('timingsMs must be an object');
  return [
    r.service,
    r.id,
    r.time,
    r.decision,
    r.model?.name ?? null,
    r.model?.version ?? null,
    r.policyVersion,
    r.score !== null && Number.isNaN(r.score) ? null : r.score,
    r.fallback.used ? 1 : 0,
    r.fallback.cause,
    r.safeMode === undefined ? null : r.safeMode ? 1 : 0,
    json('request', r.request),
    r.inputs === null ? null : json('inputs', r.inputs), // JSON turns NaN into null
    r.outputs === null ? null : json('outputs', r.outputs),
    json('reasons', r.reasons),
    json('timingsMs', r.timingsMs),
  ];
}

function fromRow(row: StoredRow): DecisionRecord {
  const record: DecisionRecord = {
    id: row.id,
    time: row.time,
    service: row.service,
    model: row.model_name === null ? null : { name: row.model_name, version: row.model_version ?? '' },
    policyVersion: row.policy_version,
    request: JSON.parse(row.request),
    inputs: row.inputs === null ? null : JSON.parse(row.inputs),
    outputs: row.outputs === null ? null : JSON.parse(row.outputs),
    score: row.score,
    decision: row.decision,
    reasons: JSON.parse(row.reasons),
    fallback: { used: row.fallback_used === 1, cause: row.fallback_cause },
    timingsMs: JSON.parse(row.timings_ms),
  };
  if (row.safe_mode !== null) record.safeMode = row.safe_mode === 1;
  return record;
}
