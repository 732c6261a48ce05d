/**
 * The decision log's writer thread (a worker_threads worker started by `sqlite.ts`): the only
 * connection that writes the database, so that INSERTs, COMMIT and the fsync of
 * synchronous=FULL never block the main thread's event loop.
 *
 * Group commit: each message is a batch the main thread gathered in one turn of its event loop.
 * When a batch arrives, the writer also takes every batch already waiting behind it (up to
 * maxBatch records) and writes them all in ONE transaction, so while one COMMIT (and its
 * fsync) runs, the next transaction's batches pile up and share the next one. It answers only
 * after COMMIT has returned: the main thread resolves those appends then, not before.
 *
 * Checkpoints: automatic checkpoints are off (`wal_autocheckpoint=0`: SQLite would otherwise
 * run one inside the COMMIT that crosses 1000 pages, i.e. inside some request's wait). A
 * checkpointer thread of this one (`sqlite-checkpointer.cjs`) runs PASSIVE checkpoints on its
 * own connection, concurrently with the commits: every `checkpointIntervalMs`, and at once when
 * this thread has written about `checkpointBytes` since the last nudge. After each of its
 * passes this thread tops it up (copies the frames committed during the pass, between two
 * transactions), so that the next transaction can start the WAL over. Should the checkpointer
 * fall far behind, or fail, this thread runs the checkpoints itself, between transactions.
 *
 * Another connection's write lock (another process writing the file) is waited for in short
 * steps (LOCK_WAIT_MS), up to BUSY_TIMEOUT_MS in all; between two, batches whose appends timed out
 * on the main thread are dropped, and a batch is written only if the writer claims it first
 * (sqlite-schema.ts CLAIM): a timed-out append's record is never committed.
 *
 * Messages are processed strictly in order, so an outcome sent after an append finds its
 * decision. An exception outside a transaction (it cannot open the database, a bug) ends the
 * thread; the main thread then fails every unsettled append and refuses new ones.
 */
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parentPort, receiveMessageOnPort, Worker, workerData } from 'node:worker_threads';
import { BUSY_TIMEOUT_MS, openWalDatabase } from '../store/sqlite.ts';
import {
  CLAIM,
  DECISION_EXISTS,
  INSERT_DECISION,
  PUT_OUTCOME,
  insertBatch,
  type FromWriter,
  type InsertRow,
  type OutcomeRow,
  type Row,
  type ToWriter,
  type WriterConfig,
} from './sqlite-schema.ts';

if (parentPort === null) throw new Error('sqlite-writer.ts runs as a worker thread of the decision log');
const port = parentPort;
const config = workerData as WriterConfig;
// Named, so that per-thread CPU time (top -H, bench/log.ts) can tell it apart (Linux only).
try {
  writeFileSync('/proc/thread-self/comm', 'rtml-log-writer');
} catch {
  // not Linux: fine
}
/** One wait for another connection's write lock (SQLite's busy timeout on this connection). */
const LOCK_WAIT_MS = 50;

// The main thread has checked and migrated the file: this connection only opens it, in WAL
// mode, without automatic checkpoints. Its failures end the thread as they are.
const db = openWalDatabase(config.path, { synchronous: config.synchronous, walAutocheckpoint: 0 }, (f) =>
  f.reason === 'not-wal' ? new Error(`could not switch ${config.path} to WAL mode (got ${f.journalMode})`) : (f.options?.cause ?? new Error(f.message)),
);

// Waiting for another connection's lock (another process writing the file, such as `rtml
// outcomes --data-dir`) happens in short waits: between two, batches whose appends timed out are
// dropped, and the writer gives up once none is left or after BUSY_TIMEOUT_MS in all.
db.pragma(`busy_timeout = ${LOCK_WAIT_MS}`);

const insert = db.prepare<Row>(INSERT_DECISION); // the arguments bind the anonymous parameters in order
const insertRow: InsertRow = (...row) => insert.run(...row).changes === 1;
const decisionExists = db.prepare<[string, string], number>(DECISION_EXISTS).pluck();
const putOutcome = db.prepare<[string, string, string, string]>(PUT_OUTCOME);

type RowsMessage = Extract<ToWriter, { kind: 'rows' }>;

/** A batch whose appends timed out: the main thread answered them, it must never be written. */
const abandoned = (m: RowsMessage): boolean => m.claim !== null && Atomics.load(m.claim, 0) === CLAIM.ABANDONED;

/** Batches claimed in the current transaction attempt (a failure after a claim is not retried). */
let claimed = 0;

/**
 * Inserts the batches it can claim in one transaction; returns the indexes (across all batches)
 * of duplicates, the batches skipped because their appends timed out, and about how many bytes
 * it wrote.
 */
const writeRows = db.transaction((received: RowsMessage[]): { duplicates: number[]; skipped: number[]; bytes: number } => {
  const duplicates: number[] = [];
  const skipped: number[] = [];
  let bytes = 0;
  let i = 0;
  const duplicate = (k: number) => duplicates.push(i + k);
  for (let j = 0; j < received.length; j++) {
    const { claim, batch } = received[j];
    if (claim !== null && Atomics.compareExchange(claim, 0, CLAIM.PENDING, CLAIM.WRITING) !== CLAIM.PENDING) {
      skipped.push(j);
    } else {
      claimed++;
      bytes += insertBatch(batch, insertRow, duplicate);
    }
    i += batch.count;
  }
  return { duplicates, skipped, bytes };
});

const writeOutcomes = db.transaction((service: string, outcomes: OutcomeRow[]) => {
  const unknown: string[] = [];
  let joined = 0;
  for (const o of outcomes) {
    if (decisionExists.get(service, o.id) === undefined) unknown.push(o.id);
    else {
      putOutcome.run(service, o.id, o.label, o.time);
      joined++;
    }
  }
  return { joined, unknown };
});

/** SQLite writes whole pages: what one transaction adds to the WAL, roughly (a page per index and the table at least). */
const PAGE_OVERHEAD = 4 * 4096;
/** Bytes written since the checkpointer was last nudged (or, without it, since the last checkpoint). */
let walBytes = 0;
/** Bytes written since the last checkpoint report (from either thread). */
let sinceCheckpoint = 0;
/** The writer checkpoints itself when this many times checkpointBytes went by without a checkpoint. */
const BEHIND = 4;
let closing = false;

function send(message: FromWriter): void {
  port.postMessage(message);
}

const errorCode = (err: unknown): string | null => {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : null;
};
const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));

let checkpointer: Worker | null = startCheckpointer();
/** Checkpoints in this thread (only without a checkpointer thread). */
let checkpointTimer: NodeJS.Timeout | null = null;

function startCheckpointer(): Worker | null {
  try {
    const worker = new Worker(new URL('./sqlite-checkpointer.cjs', import.meta.url), {
      workerData: {
        sqlite: createRequire(import.meta.url).resolve('better-sqlite3'),
        path: config.path,
        synchronous: config.synchronous,
        intervalMs: config.checkpointIntervalMs,
        busyTimeoutMs: BUSY_TIMEOUT_MS,
      },
    });
    worker.on('message', (m: FromWriter | 'started') => {
      if (m === 'started') return worker.emit('started');
      if (m.kind === 'checkpoint' && m.error === null) sinceCheckpoint = 0;
      send(m);
      // The pass copied everything up to where it started: copy what was committed since here,
      // between transactions (little, and no lock to wait for), so that the WAL is then wholly
      // copied and the next transaction starts it over instead of growing it.
      if (m.kind === 'checkpoint' && m.error === null && !m.busy && m.checkpointed === m.walFrames && !closing) checkpointHere(true);
    });
    let failure: unknown = null;
    worker.on('error', (err) => (failure = err));
    worker.on('exit', (code) => {
      if (closing) return;
      checkpointer = null;
      send({
        kind: 'checkpoint',
        walFrames: -1,
        checkpointed: -1,
        busy: false,
        ms: 0,
        error: `the checkpointer thread exited (code ${code}${failure === null ? '' : `: ${errorMessage(failure)}`}); the writer checkpoints from now on`,
        topUp: false,
      });
    });
    return worker;
  } catch (err) {
    send({ kind: 'checkpoint', walFrames: -1, checkpointed: -1, busy: false, ms: 0, error: `cannot start the checkpointer thread (${errorMessage(err)}); the writer checkpoints`, topUp: false });
    return null;
  }
}

/** Writes one transaction from `first` and the rows batches queued behind it; returns the next message it took but did not write. */
function writeFrom(first: Extract<ToWriter, { kind: 'rows' }>): ToWriter | null {
  const received = [first];
  let records = first.batch.count;
  let next: ToWriter | null = null;
  while (records < config.maxBatch) {
    const queued = receiveMessageOnPort(port);
    if (queued === undefined) break;
    const m = queued.message as ToWriter;
    if (m.kind !== 'rows' || records + m.batch.count > config.maxBatch) {
      next = m;
      break;
    }
    received.push(m);
    records += m.batch.count;
  }
  if (received.every(abandoned)) {
    // Nothing left to write (the database was locked): no transaction, no lock to wait for.
    send({ kind: 'committed', jobs: received.length, records, duplicates: [], skipped: received.map((_, j) => j) });
    return next;
  }
  let result: { duplicates: number[]; skipped: number[]; bytes: number };
  try {
    result = whileLocked(
      () => {
        claimed = 0;
        return writeRows.immediate(received);
      },
      () => claimed === 0 && !received.every(abandoned),
    );
    walBytes += result.bytes;
  } catch (err) {
    send({ kind: 'failed', jobs: received.length, records, error: errorMessage(err), code: errorCode(err) });
    return next;
  }
  send({ kind: 'committed', jobs: received.length, records, duplicates: result.duplicates, skipped: result.skipped });
  wrote(PAGE_OVERHEAD);
  return next;
}

/**
 * Runs `write` (a transaction), again after each SQLITE_BUSY (its wait for the lock ran out:
 * LOCK_WAIT_MS) while `worthRetrying()` and BUSY_TIMEOUT_MS have not gone by; else throws.
 */
function whileLocked<T>(write: () => T, worthRetrying: () => boolean = () => true): T {
  const started = performance.now();
  for (;;) {
    try {
      return write();
    } catch (err) {
      if (errorCode(err) !== 'SQLITE_BUSY' || !worthRetrying() || performance.now() - started >= BUSY_TIMEOUT_MS) throw err;
    }
  }
}

/** After a commit: nudges the checkpointer, or checkpoints here, when enough went into the WAL. */
function wrote(bytes: number): void {
  walBytes += bytes;
  sinceCheckpoint += bytes;
  if (checkpointer !== null && sinceCheckpoint >= BEHIND * config.checkpointBytes) {
    // The checkpointer has reported nothing for a while (starved of CPU, or stuck on a slow
    // disk): bound the WAL by checkpointing here, as SQLite's automatic checkpoint would.
    walBytes = 0;
    checkpointHere();
  } else if (walBytes >= config.checkpointBytes) {
    walBytes = 0;
    if (checkpointer !== null) checkpointer.postMessage('now');
    else checkpointHere();
  } else if (checkpointer === null && checkpointTimer === null) {
    checkpointTimer = setTimeout(checkpointHere, config.checkpointIntervalMs);
  }
}

/**
 * A passive checkpoint in this thread, between two transactions: every checkpoint when there is
 * no checkpointer thread, else a `topUp` right after each of its passes (it copies only what
 * was committed during the pass).
 */
function checkpointHere(topUp = false): void {
  if (checkpointTimer !== null) clearTimeout(checkpointTimer);
  checkpointTimer = null;
  if (!topUp) walBytes = 0;
  sinceCheckpoint = 0;
  const t0 = performance.now();
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
    send({ kind: 'checkpoint', walFrames: r.log, checkpointed: r.checkpointed, busy: r.busy !== 0, ms: performance.now() - t0, error: null, topUp });
  } catch (err) {
    // An I/O error here loses nothing (the WAL holds every commit): report it, retry later.
    send({ kind: 'checkpoint', walFrames: -1, checkpointed: -1, busy: false, ms: performance.now() - t0, error: errorMessage(err), topUp });
  }
}

function close(): void {
  closing = true;
  if (checkpointTimer !== null) clearTimeout(checkpointTimer);
  checkpointTimer = null;
  const finish = () => {
    try {
      // Empty the WAL here, so that closing the main thread's connection (the last one) is quick.
      db.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      // Busy or failed: the WAL keeps every commit; the next open or close checkpoints it.
    }
    db.close();
    port.close(); // nothing keeps the thread alive any more: it exits, with code 0
  };
  if (checkpointer === null) return finish();
  checkpointer.once('exit', finish);
  checkpointer.postMessage('close');
}

function handle(message: ToWriter): void {
  let m: ToWriter | null = message;
  while (m !== null) {
    switch (m.kind) {
      case 'rows':
        m = writeFrom(m);
        break;
      case 'outcomes':
        try {
          const { service, outcomes } = m;
          const { joined, unknown } = whileLocked(() => writeOutcomes.immediate(service, outcomes));
          send({ kind: 'outcomes', joined, unknown });
          wrote(PAGE_OVERHEAD);
        } catch (err) {
          send({ kind: 'outcomesFailed', error: errorMessage(err), code: errorCode(err) });
        }
        m = null;
        break;
      case 'close':
        close();
        return;
    }
  }
}

port.on('message', handle);
// Ready once the checkpointer thread has started too (or could not start), so that a caller
// awaiting `ready` does not have that thread's start compete with its first appends.
if (checkpointer === null) send({ kind: 'ready' });
else {
  const online = checkpointer;
  let told = false;
  const tell = () => {
    if (told) return;
    told = true;
    send({ kind: 'ready' });
  };
  online.once('started', tell);
  online.once('exit', tell);
}
