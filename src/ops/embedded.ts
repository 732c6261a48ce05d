/**
 * The embedded operations store: one process's state in memory, persisted in one SQLite file
 * (`<dataDir>/operations.sqlite`, WAL, synchronous FULL) so it survives a restart. A write
 * commits (fsynced) before its promise resolves, then applies to memory: an admin call that
 * answered is on disk. Reads never touch the file.
 *
 * Tables: `audit` (every change, its seq the change counter), `state` (the latest kill switch,
 * safe-mode override and load state per service) and `acknowledgements`. Reopening loads
 * `state` and the latest acknowledgements.
 *
 * Several processes on one machine (workers sharing a data dir) may share the file: each
 * reads the audit rows after the last it has read every `pollIntervalMs` (default 400 ms; a
 * read of the WAL, no lock taken), so a change made through one is obeyed by all within that.
 * SQLite serializes writers, so seqs commit in order and reading `seq > last` skips nothing.
 * Machines share operations through the PostgreSQL adapter.
 *
 * Without a data dir (`dataDir: null`: in-process tests, embedding) the store lives in memory
 * only.
 */
import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { openSqliteStore, type SqliteStoreSchema } from '../store/sqlite.ts';
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

export const OPERATIONS_FILE = 'operations.sqlite';

const TABLES = `
CREATE TABLE audit (
  seq     INTEGER PRIMARY KEY AUTOINCREMENT,
  service TEXT NOT NULL,
  kind    TEXT NOT NULL,
  by      TEXT NOT NULL,
  at      TEXT NOT NULL,
  reason  TEXT,
  value   TEXT NOT NULL,
  origin  TEXT NOT NULL
) STRICT;
CREATE INDEX audit_by_service ON audit (service, seq);
CREATE TABLE state (
  service TEXT NOT NULL,
  kind    TEXT NOT NULL,
  seq     INTEGER NOT NULL,
  value   TEXT NOT NULL,
  PRIMARY KEY (service, kind)
) STRICT;
CREATE TABLE acknowledgements (
  service  TEXT NOT NULL,
  alert_id TEXT NOT NULL,
  seq      INTEGER NOT NULL,
  value    TEXT NOT NULL,
  PRIMARY KEY (service, alert_id)
) STRICT;
`;

const SCHEMA: SqliteStoreSchema = { kind: 'rtml operations store', checkKind: true, createV1: TABLES, migrations: {}, version: 1 };

export class OperationsStoreError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause: unknown },
  ) {
    super(`operations store: ${message}`, options);
    this.name = 'OperationsStoreError';
  }
}

export interface EmbeddedOperationsOptions {
  /** Where operations.sqlite lives; null: memory only. */
  dataDir: string | null;
  /** A listener that threw, a feed row that could not be read (reported, never thrown at the writer). */
  onError?: (err: unknown) => void;
  /** Read changes other processes made to the same file this often (default 400 ms; 0: never). */
  pollIntervalMs?: number;
}

interface StoredRow {
  seq: number;
  service: string;
  kind: string;
  value: string;
}

export function openEmbeddedOperationsStore(options: EmbeddedOperationsOptions): OperationsStore {
  let db: Database.Database;
  if (options.dataDir === null) {
    db = new Database(':memory:');
    db.exec(TABLES);
  } else {
    const dir = resolve(options.dataDir);
    mkdirSync(dir, { recursive: true });
    db = openSqliteStore(join(dir, OPERATIONS_FILE), SCHEMA, { synchronous: 'full' }, (f) => new OperationsStoreError(f.code, f.message, f.options?.cause !== undefined ? { cause: f.options.cause } : undefined));
  }
  const onError = options.onError ?? (() => {});
  const origin = randomUUID();
  const state = new OperationsState(onError);
  const acks = db.prepare<[number], StoredRow>(
    `SELECT seq, service, 'acknowledge' AS kind, value FROM (
       SELECT *, row_number() OVER (PARTITION BY service ORDER BY seq DESC) AS n FROM acknowledgements)
     WHERE n <= ? ORDER BY seq`,
  );
  // The latest state, then acknowledgements (oldest first, so the newest are the ones kept), and the feed position, in one snapshot.
  let lastSeq = db.transaction(() => {
    for (const row of db.prepare<[], StoredRow>('SELECT seq, service, kind, value FROM state ORDER BY seq').all()) {
      state.apply(row.seq, changeOf(row.kind, row.service, JSON.parse(row.value), false));
    }
    for (const row of acks.all(MAX_ACKNOWLEDGEMENTS)) state.apply(row.seq, changeOf(row.kind, row.service, JSON.parse(row.value), false));
    return db.prepare<[], number | null>('SELECT max(seq) FROM audit').pluck().get() ?? 0;
  })();

  const insertAudit = db.prepare<[string, string, string, string, string | null, string, string]>('INSERT INTO audit (service, kind, by, at, reason, value, origin) VALUES (?, ?, ?, ?, ?, ?, ?)');
  const readFeed = db.prepare<[number], StoredRow & { origin: string }>('SELECT seq, service, kind, value, origin FROM audit WHERE seq > ? ORDER BY seq LIMIT 1000');
  const upsertState = db.prepare<[string, string, number, string]>('INSERT INTO state (service, kind, seq, value) VALUES (?, ?, ?, ?) ON CONFLICT (service, kind) DO UPDATE SET seq = excluded.seq, value = excluded.value');
  const insertAck = db.prepare<[string, string, number, string]>('INSERT OR IGNORE INTO acknowledgements (service, alert_id, seq, value) VALUES (?, ?, ?, ?)');
  const readHistory = db.prepare<[string, number], StoredRow & { by: string; at: string; reason: string | null }>('SELECT seq, service, kind, by, at, reason, value FROM audit WHERE service = ? ORDER BY seq DESC LIMIT ?');
  const commit = db.transaction((change: OperationChange): number => {
    const value = JSON.stringify(change.value);
    const seq = Number(insertAudit.run(change.service, change.kind, byOf(change), atOf(change), reasonOf(change), value, origin).lastInsertRowid);
    if (change.kind === 'acknowledge') insertAck.run(change.service, change.value.alertId, seq, value);
    else upsertState.run(change.service, change.kind, seq, value);
    return seq;
  });
  let closed = false;

  /** Applies what other processes wrote since the last read (this process's own writes are already applied: ignored). */
  const sync = () => {
    for (;;) {
      const rows = readFeed.all(lastSeq);
      for (const row of rows) {
        try {
          state.apply(row.seq, changeOf(row.kind, row.service, JSON.parse(row.value), row.origin === origin));
        } catch (err) {
          onError(new Error(`operations feed: seq ${row.seq} skipped: ${(err as Error).message}`));
        }
        lastSeq = row.seq;
      }
      if (rows.length < 1000) return;
    }
  };
  const pollIntervalMs = options.pollIntervalMs ?? 400;
  const poll =
    options.dataDir !== null && pollIntervalMs > 0
      ? setInterval(() => {
          try {
            sync();
          } catch (err) {
            onError(err);
          }
        }, pollIntervalMs)
      : null;
  poll?.unref();

  const write = async (service: string, input: OperationInput): Promise<OperationChange> => {
    if (closed) throw new OperationsStoreError('CLOSED', 'closed');
    const change = changeFor(service, input, new Date().toISOString());
    let seq: number;
    try {
      seq = commit.immediate(change);
    } catch (err) {
      // Busy past the timeout, disk full, I/O error: nothing was committed; the caller may retry.
      throw new OperationsUnavailableError(`operations store could not take the write: ${(err as Error).message}`, { cause: err });
    }
    state.apply(seq, change);
    return change;
  };

  return {
    kind: 'embedded',
    current: () => state,
    subscribe: (listener) => state.subscribe(listener),
    ...writesThrough(write),
    async history(service, { limit = DEFAULT_HISTORY_LIMIT } = {}): Promise<AuditEntry[]> {
      return readHistory.all(service, limit).map((row) => auditEntryOf({ ...row, value: JSON.parse(row.value) }));
    },
    status: () => ({ kind: 'embedded', connected: true, lastSyncAt: new Date().toISOString() }),
    async close() {
      if (closed) return;
      closed = true;
      if (poll) clearInterval(poll);
      db.close();
    },
  };
}
