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
 * One process per file: another process writing the same file is not noticed until it
 * restarts (several processes share operations through the PostgreSQL adapter).
 *
 * Without a data dir (`dataDir: null`: in-process tests, embedding) the store lives in memory
 * only.
 */
import Database from 'better-sqlite3';
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
  value   TEXT NOT NULL
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
  /** A listener that threw (reported, never thrown at the writer). */
  onError?: (err: unknown) => void;
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
  const state = new OperationsState(options.onError);
  // The latest state, then acknowledgements (oldest first, so the newest are the ones kept).
  for (const row of db.prepare<[], StoredRow>('SELECT seq, service, kind, value FROM state ORDER BY seq').all()) {
    state.apply(row.seq, changeOf(row.kind, row.service, JSON.parse(row.value), false));
  }
  const acks = db.prepare<[number], StoredRow>(
    `SELECT seq, service, 'acknowledge' AS kind, value FROM (
       SELECT *, row_number() OVER (PARTITION BY service ORDER BY seq DESC) AS n FROM acknowledgements)
     WHERE n <= ? ORDER BY seq`,
  );
  for (const row of acks.all(MAX_ACKNOWLEDGEMENTS)) state.apply(row.seq, changeOf(row.kind, row.service, JSON.parse(row.value), false));

  const insertAudit = db.prepare<[string, string, string, string, string | null, string]>('INSERT INTO audit (service, kind, by, at, reason, value) VALUES (?, ?, ?, ?, ?, ?)');
  const upsertState = db.prepare<[string, string, number, string]>('INSERT INTO state (service, kind, seq, value) VALUES (?, ?, ?, ?) ON CONFLICT (service, kind) DO UPDATE SET seq = excluded.seq, value = excluded.value');
  const insertAck = db.prepare<[string, string, number, string]>('INSERT OR IGNORE INTO acknowledgements (service, alert_id, seq, value) VALUES (?, ?, ?, ?)');
  const readHistory = db.prepare<[string, number], StoredRow & { by: string; at: string; reason: string | null }>('SELECT seq, service, kind, by, at, reason, value FROM audit WHERE service = ? ORDER BY seq DESC LIMIT ?');
  const commit = db.transaction((change: OperationChange): number => {
    const value = JSON.stringify(change.value);
    const seq = Number(insertAudit.run(change.service, change.kind, byOf(change), atOf(change), reasonOf(change), value).lastInsertRowid);
    if (change.kind === 'acknowledge') insertAck.run(change.service, change.value.alertId, seq, value);
    else upsertState.run(change.service, change.kind, seq, value);
    return seq;
  });
  let closed = false;

  const write = async (service: string, input: OperationInput): Promise<OperationChange> => {
    if (closed) throw new OperationsStoreError('CLOSED', 'closed');
    const change = changeFor(service, input, new Date().toISOString());
    const seq = commit.immediate(change);
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
      db.close();
    },
  };
}
