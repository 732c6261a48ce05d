/**
 * What rtml's two SQLite stores share: the decision log (`src/log/sqlite.ts`, and its writer
 * thread `src/log/sqlite-writer.ts`) and the embedded feature store
 * (`src/features/embedded.ts`). Opening a file in WAL mode with the connection settings both
 * use, and checking, creating or migrating a store's schema.
 *
 * A store file has a `meta` table (key → value): `schema_version`, `created_at` and `kind`,
 * written when the file is created. Opening one, in an IMMEDIATE transaction (so that two
 * processes opening the same new file do not both create it):
 *  - a file without tables is new: the meta table and the store's schema version 1 are
 *    created, then migrated like an old file, so that a fresh file and a migrated one cannot
 *    differ;
 *  - a SQLite file with tables but no meta table is someone else's: refused;
 *  - a `kind` other than the store's is refused, if the store checks it;
 *  - a missing or newer `schema_version` is refused (a newer rtml wrote it);
 *  - an older one is migrated N → N+1 up to the store's version.
 *
 * Each store describes itself ({@link SqliteStoreSchema}) and turns each
 * {@link SqliteStoreFailure} into its own error (class, code, message prefix), so the stores'
 * errors stay their own. Kept free of heavy imports (better-sqlite3 only): the log's writer
 * thread loads it.
 */
import Database from 'better-sqlite3';

/** How long a connection waits for a lock held by another connection or process before SQLITE_BUSY. */
export const BUSY_TIMEOUT_MS = 5000;
/** After a checkpoint the WAL is reused from its start, not shrunk: cap what it keeps on disk (64 MiB). */
export const JOURNAL_SIZE_LIMIT = 67_108_864;

/** Per-connection settings besides WAL mode, the busy timeout and the journal size limit (always set). */
export interface SqliteConnectionSettings {
  /** Omitted: SQLite's default (FULL), for a connection that never writes. */
  synchronous?: 'normal' | 'full';
  /** Pages after which a COMMIT checkpoints (0: never); omitted: SQLite's default (1000). */
  walAutocheckpoint?: number;
}

/** A store's schema, as the shared open code needs it. */
export interface SqliteStoreSchema {
  /** `meta.kind` written at creation, and the store's name in messages ("an rtml decision log"). */
  kind: string;
  /** Refuse a file whose `meta.kind` is not {@link kind}. */
  checkKind: boolean;
  /** The store's tables at version 1, without the meta table (created here). */
  createV1: string;
  /** SQL from version N to N+1, by N. */
  migrations: Record<number, string>;
  /** The schema version this code writes: newer files are refused, older ones migrated. */
  version: number;
}

export type SqliteStoreFailureReason =
  /** The file cannot be opened at all. */
  | 'open'
  /** The first statement failed: not a SQLite database (SQLITE_NOTADB and friends surface there, not at open). */
  | 'not-sqlite'
  /** journal_mode = WAL did not take. */
  | 'not-wal'
  /** A SQLite database with tables and no meta table. */
  | 'foreign'
  /** A meta table whose kind is not the store's (when it checks). */
  | 'kind'
  /** A meta table without a valid schema_version. */
  | 'no-version'
  /** A schema version newer than the store's. */
  | 'newer'
  /** No migration from some version on the way. */
  | 'no-migration';

export interface SqliteStoreFailure {
  reason: SqliteStoreFailureReason;
  /** 'SCHEMA_VERSION' for `newer` and `no-migration`, 'NOT_A_STORE' for the rest. */
  code: 'NOT_A_STORE' | 'SCHEMA_VERSION';
  /** What went wrong, naming the file; without the store's prefix ("decision log: "). */
  message: string;
  /** `{ cause }` when an exception caused it (`open`, `not-sqlite`), for the error's constructor. */
  options?: { cause: unknown };
  /** `not-wal`: the journal mode SQLite reported instead. */
  journalMode?: string;
}

/** Turns a failure into what to throw: the store's own error. */
export type SqliteStoreError = (failure: SqliteStoreFailure) => unknown;

/** The meta table, the same in every store file (first in the file, as it always was). */
const META_TABLE = `
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
`;

const notAStore = (reason: SqliteStoreFailureReason, message: string, options?: { cause: unknown }): SqliteStoreFailure => ({
  reason,
  code: 'NOT_A_STORE',
  message,
  ...(options && { options }),
});

/**
 * Opens `path` (creating the file if needed) with the busy timeout, switches it to WAL mode
 * (and checks it did), sets the journal size limit and `settings`. Closes it on failure.
 */
export function openWalDatabase(path: string, settings: SqliteConnectionSettings, error: SqliteStoreError): Database.Database {
  let db: Database.Database;
  try {
    db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
  } catch (err) {
    throw error(notAStore('open', `cannot open ${path}: ${(err as Error).message}`, { cause: err }));
  }
  try {
    let mode: unknown;
    try {
      mode = db.pragma('journal_mode = WAL', { simple: true });
    } catch (err) {
      throw error(notAStore('not-sqlite', `${path} is not a SQLite database: ${(err as Error).message}`, { cause: err }));
    }
    if (mode !== 'wal') {
      throw error({ ...notAStore('not-wal', `${path}: could not switch to WAL mode (got ${String(mode)})`), journalMode: String(mode) });
    }
    if (settings.synchronous !== undefined) db.pragma(`synchronous = ${settings.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT}`);
    if (settings.walAutocheckpoint !== undefined) db.pragma(`wal_autocheckpoint = ${settings.walAutocheckpoint}`);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * {@link openWalDatabase}, then checks, creates or migrates the store's schema in one IMMEDIATE
 * transaction (see the file comment). Closes the database on failure.
 */
export function openSqliteStore(path: string, schema: SqliteStoreSchema, settings: SqliteConnectionSettings, error: SqliteStoreError): Database.Database {
  const db = openWalDatabase(path, settings, error);
  try {
    db.transaction(() => prepareSchema(db, path, schema, error)).immediate();
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

function prepareSchema(db: Database.Database, path: string, schema: SqliteStoreSchema, error: SqliteStoreError): void {
  const tables = db
    .prepare<[], string>("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
    .pluck()
    .all();
  if (!tables.includes('meta')) {
    if (tables.length > 0) {
      throw error(notAStore('foreign', `${path} is a SQLite database but not an ${schema.kind} (it has tables ${tables.join(', ')} and no meta table)`));
    }
    // A new file starts at version 1 and takes the same migrations as an old one.
    db.exec(META_TABLE);
    db.exec(schema.createV1);
    const put = db.prepare<[string, string]>('INSERT INTO meta (key, value) VALUES (?, ?)');
    put.run('schema_version', '1');
    put.run('created_at', new Date().toISOString());
    put.run('kind', schema.kind);
  }
  if (schema.checkKind) {
    const kind = db.prepare<[], string>("SELECT value FROM meta WHERE key = 'kind'").pluck().get();
    if (kind !== schema.kind) throw error(notAStore('kind', `${path} is not an ${schema.kind} (meta kind ${JSON.stringify(kind ?? null)})`));
  }
  const stored = db.prepare<[], string>("SELECT value FROM meta WHERE key = 'schema_version'").pluck().get();
  const version = Number(stored);
  if (stored === undefined || !Number.isInteger(version) || version < 1) {
    throw error(notAStore('no-version', `${path} has no valid schema_version in its meta table (found ${JSON.stringify(stored ?? null)})`));
  }
  if (version > schema.version) {
    throw error({
      reason: 'newer',
      code: 'SCHEMA_VERSION',
      message: `${path} has schema version ${version}, newer than the version ${schema.version} this rtml understands; upgrade rtml`,
    });
  }
  for (let v = version; v < schema.version; v++) {
    const step = schema.migrations[v];
    if (step === undefined) throw error({ reason: 'no-migration', code: 'SCHEMA_VERSION', message: `${path}: no migration from schema version ${v}` });
    db.exec(step);
  }
  if (version !== schema.version) {
    db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(String(schema.version));
  }
}
