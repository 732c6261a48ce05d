/**
 * The embedded default decision log: one SQLite file, `<dataDir>/decisions.sqlite`, in WAL
 * mode with group commit, written by a dedicated writer thread (`sqlite-writer.ts`, a
 * worker_threads worker) so that the event loop that answers requests never waits for SQLite.
 *
 * Appends: `append` validates and serializes the record at once on the calling (main) thread,
 * so a bad record fails alone and later mutation of the caller's object changes nothing, then
 * queues its text and returns a promise. The records queued in one turn of the event loop
 * (`setImmediate`, `maxDelayMs: 0`, the default; or `maxDelayMs` after the first queued record;
 * or at once when `maxBatch` are queued) go to the writer as one message: one string holding
 * every text column of the batch (each JSON column stringified once, here), the columns'
 * lengths, scores and Float32Array input vectors in transferred typed arrays (`RowBatch` in
 * sqlite-schema.ts; the writer cuts the string into columns, no JSON parse). The writer writes a batch, together with every batch already waiting behind it (up
 * to `maxBatch` records), in ONE transaction, and reports back only after COMMIT has returned;
 * only then are those appends resolved. This is group commit as before, self-clocking: while
 * one transaction commits (and fsyncs), the batches of the following turns pile up in the
 * writer's queue and share the next commit, so transactions grow with load and an idle server
 * adds no delay (bench/log.ts measures the alternatives). A duplicate id rejects that append
 * alone; any other write failure rolls the whole transaction back and rejects every append in it.
 *
 * Durability is unchanged by the thread: an append resolves only after the COMMIT holding its
 * record returned, and a thread dies with its process, so a SIGKILL loses nothing acknowledged.
 * `synchronous` (of the writer's connection): in WAL mode a COMMIT appends the transaction's
 * pages to the WAL.
 *  - 'normal': the WAL is not fsynced at commit (only at checkpoints). A committed transaction
 *    survives the process dying in any way, SIGKILL included, since the kernel already has the
 *    pages; the last transactions before a power loss or kernel crash may be lost (the file
 *    stays consistent).
 *  - 'full' (the default): the WAL is fsynced before COMMIT returns, so an acknowledged
 *    decision also survives power loss.
 * 'full' is the default because rtml's contract is that a decision answered 2xx is logged
 * durably, and group commit amortizes the one fsync per commit over the whole transaction:
 * the cost is added latency per commit, not throughput per record (bench/log.ts has figures
 * for both modes, with and without group commit). Choose 'normal' where losing the last few
 * milliseconds of decisions on power loss is acceptable.
 *
 * Checkpoints are off the request path, and mostly off the commit path: automatic checkpoints
 * are off, a checkpointer thread of the writer runs PASSIVE checkpoints concurrently with the
 * commits, and the writer only tops each one up between two transactions (the few frames
 * committed during the pass; typically well under a millisecond) so that the WAL is reused
 * instead of growing. See `sqlite-writer.ts` and `sqlite-checkpointer.cjs`.
 *
 * Reads (`get`, `query`, `count`, `labelled`, `outcomesAfter`) run on the main thread, on a
 * second connection that never writes (`query_only`). WAL readers neither block the writer nor
 * wait for it, and the lookups the server makes are index probes of a few microseconds, cheaper
 * than a round trip to the writer thread (which would also queue them behind commits).
 * Read-your-writes: once an append has resolved, its COMMIT has returned, so any read started
 * afterwards sees it; moreover a read waits for the appends (and outcomes) still pending when
 * it was called to settle, so it sees even appends it did not await. Outcomes are written by
 * the writer thread, in order with appends: an outcome may follow its decision immediately.
 *
 * Locks held elsewhere: another process may write the file (`rtml outcomes --data-dir`, in short
 * transactions), and its lock makes the writer's BEGIN wait. With `appendTimeoutMs` (the server
 * sets it: `--log-timeout-ms`), an append not committed in time rejects with LOG_TIMEOUT, so a
 * decision answers 503 within a bound instead of SQLite's 5 s busy timeout, and its record is
 * then never written: each batch carries a claim in shared memory that either the writer takes
 * (inside its transaction, before the INSERTs) or the timeout does, never both. The caller can
 * retry the same id. The writer waits for a lock in 50 ms steps, dropping timed-out batches
 * between them.
 *
 * The writer thread starts with the log (`ready` resolves once it has opened the database,
 * about 0.2 s when running from the TypeScript sources; appends made before wait for it). It
 * does not keep the process alive while nothing is pending, and `close()`
 * flushes, waits for every pending append to commit, and joins it. If the thread dies (it
 * cannot open the database, an unexpected exception), every pending append is rejected with a
 * `LOG_FAILED` {@link DecisionLogError} and so is every later append or outcome: without its
 * log, the server must not answer decisions. Reads keep working.
 */
import type Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { openSqliteStore, type SqliteStoreFailure } from '../store/sqlite.ts';
import { startWorker } from '../threads.ts';
import { fromStoredRow, normalizeBound, outcomeRows, type StoredDecisionRow } from './record.ts';
import {
  CLAIM,
  DECISION_LOG_FILE,
  DECISION_LOG_SCHEMA,
  floatsFromBlob,
  RowBatchBuilder,
  SQLITE_COLUMNS,
  SQLITE_SCHEMA_VERSION,
  type FromWriter,
  type ToWriter,
  type WriterConfig,
} from './sqlite-schema.ts';
import {
  DEFAULT_QUERY_LIMIT,
  DecisionLogClosedError,
  DecisionLogError,
  DecisionLogSchemaError,
  DuplicateDecisionError,
  MAX_QUERY_LIMIT,
  type DecisionLog,
  type DecisionLogStats,
  type LabelledDecision,
  type Outcome,
  type DecisionQuery,
  type DecisionRecord,
  type DecisionRecordToAppend,
  type DecisionScan,
} from './types.ts';
import { fromScannedRow, parseScanCursor, scanCursor, scanLimit, type ScannedRow } from './scan.ts';

export { DECISION_LOG_FILE, SQLITE_SCHEMA_VERSION };

export interface SqliteDecisionLogOptions {
  /** Default 'full': see the file comment. */
  synchronous?: 'normal' | 'full';
  /**
   * Most records in one transaction (default 256; 1 = one transaction per record): a batch is
   * handed to the writer as soon as this many are queued, and the writer merges waiting
   * batches up to this many records.
   */
  maxBatch?: number;
  /** 0 (default): hand the queued records to the writer on the next turn of the event loop; > 0: at most this long after the first queued record. */
  maxDelayMs?: number;
  /** A passive WAL checkpoint runs (in the checkpointer thread) this often (default 1 s)... */
  checkpointIntervalMs?: number;
  /**
   * ... and at once when about this many bytes went into the WAL since the last nudge (default
   * 16 MiB, four times SQLite's automatic 1000 pages: fewer passes, each with its two fsyncs, and
   * pages rewritten by consecutive commits copied once; bench/log.ts: the checkpointer's CPU per
   * decision 1.1 -> 0.85 µs against 250 ms / 4 MiB).
   */
  checkpointBytes?: number;
  /**
   * An append not committed this long after it was made (another process holds the database's
   * write lock, the disk stalls) rejects with a LOG_TIMEOUT {@link DecisionLogError}, and its
   * record is then never written: a retry with the same id is not a duplicate. Default null:
   * appends wait (the writer gives up on a lock after BUSY_TIMEOUT_MS, 5 s: WRITE_FAILED).
   */
  appendTimeoutMs?: number | null;
}

export interface SqliteDecisionLogStats extends DecisionLogStats {
  /** Of `pending`: records waiting on this thread for the next batch to be handed to the writer. */
  queued: number;
  /** Of `pending`: records handed to the writer whose transaction has not been reported yet. */
  writing: number;
  /** Batches handed to the writer since open (appended / batches: records per batch; batches / commits: batches merged per transaction). */
  batches: number;
  /** WAL checkpoints that copied frames, and the last one (`ms`: how long it took, off the commit path). */
  checkpoints: number;
  lastCheckpoint: { walFrames: number; checkpointed: number; busy: boolean; ms: number; error: string | null; topUp: boolean } | null;
}

/** The writer thread, for tests (to simulate its death) and diagnostics: `log[WRITER_THREAD]`. */
export const WRITER_THREAD = Symbol('rtml.decisionLog.writerThread');

export interface SqliteDecisionLog extends DecisionLog {
  /** The database file. */
  readonly path: string;
  readonly synchronous: 'normal' | 'full';
  readonly stats: SqliteDecisionLogStats;
  /**
   * Resolves once the writer thread has opened the database (it starts with the log; appends
   * made before are queued meanwhile); rejects if it failed to.
   */
  readonly ready: Promise<void>;
  /** The writer thread (for tests, which simulate its death, and diagnostics). */
  readonly [WRITER_THREAD]: Worker;
}

const DEFAULTS = { synchronous: 'full', maxBatch: 256, maxDelayMs: 0, checkpointIntervalMs: 1000, checkpointBytes: 16 * 1024 * 1024 } as const;

/** A row as read: the flags as 0/1, and version 6's float vector. */
type StoredRow = StoredDecisionRow<number> & { inputs_f32: Buffer | null };

/** A `scan` row, with version 6's float vector. */
type ScannedSqliteRow = ScannedRow<number> & { inputs_f32: Buffer | null };

/** A record read back with version 6's float vector, when the row has one, as its `inputs`. */
function withFloatInputs<R extends DecisionRecord>(record: R, inputsF32: Buffer | null): R {
  if (inputsF32 !== null) record.inputs = floatsFromBlob(inputsF32);
  return record;
}

/** A stored row as its record. */
function fromSqliteRow(row: StoredRow): DecisionRecord {
  return withFloatInputs(fromStoredRow(row), row.inputs_f32);
}

/** A message sent to the writer whose answer is awaited; jobs are answered in the order sent. */
type Job =
  | {
      kind: 'rows';
      count: number;
      /** Each record's service and id, one after the other (for the error of a duplicate). */
      keys: string[];
      resolves: (() => void)[];
      rejects: ((err: unknown) => void)[];
      /** With appendTimeoutMs: the batch's claim (sqlite-schema.ts CLAIM) and its timer; `abandoned` once its appends timed out. */
      claim: Int32Array | null;
      timer: NodeJS.Timeout | null;
      abandoned: boolean;
    }
  | { kind: 'outcomes'; resolve: (r: { joined: number; unknown: string[] }) => void; reject: (err: unknown) => void };

export function openSqliteDecisionLog(dataDir: string, options: SqliteDecisionLogOptions = {}): SqliteDecisionLog {
  const synchronous = options.synchronous ?? DEFAULTS.synchronous;
  if (synchronous !== 'normal' && synchronous !== 'full') {
    throw new TypeError(`decision log: synchronous must be 'normal' or 'full', got ${JSON.stringify(synchronous)}`);
  }
  const maxBatch = options.maxBatch ?? DEFAULTS.maxBatch;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new TypeError(`decision log: maxBatch must be an integer >= 1, got ${maxBatch}`);
  const maxDelayMs = options.maxDelayMs ?? DEFAULTS.maxDelayMs;
  if (!Number.isFinite(maxDelayMs) || maxDelayMs < 0) throw new TypeError(`decision log: maxDelayMs must be >= 0, got ${maxDelayMs}`);
  const checkpointIntervalMs = options.checkpointIntervalMs ?? DEFAULTS.checkpointIntervalMs;
  if (!Number.isFinite(checkpointIntervalMs) || checkpointIntervalMs < 1) throw new TypeError(`decision log: checkpointIntervalMs must be >= 1, got ${checkpointIntervalMs}`);
  const checkpointBytes = options.checkpointBytes ?? DEFAULTS.checkpointBytes;
  if (!Number.isFinite(checkpointBytes) || checkpointBytes < 1) throw new TypeError(`decision log: checkpointBytes must be >= 1, got ${checkpointBytes}`);
  const appendTimeoutMs = options.appendTimeoutMs ?? null;
  if (appendTimeoutMs !== null && !(Number.isFinite(appendTimeoutMs) && appendTimeoutMs >= 1)) {
    throw new TypeError(`decision log: appendTimeoutMs must be >= 1 (or null), got ${appendTimeoutMs}`);
  }

  mkdirSync(dataDir, { recursive: true });
  const path = resolve(join(dataDir, DECISION_LOG_FILE));
  // Opens, checks and migrates the file here, synchronously: a bad file fails the open itself.
  const db = openDatabase(path);

  const selectOne = db.prepare<[string, string], StoredRow>(`SELECT ${SQLITE_COLUMNS} FROM decisions WHERE service = ? AND id = ?`);
  const countAll = db.prepare<[], number>('SELECT count(*) FROM decisions').pluck();
  const countService = db.prepare<[string], number>('SELECT count(*) FROM decisions WHERE service = ?').pluck();
  const queries = new Map<string, Database.Statement<unknown[], StoredRow>>();
  const LABELLED = `SELECT o.seq AS seq, d.service AS service, d.id AS id, d.time AS time, d.model_version AS modelVersion, d.score AS score,
    d.decision AS decision, d.fallback_used AS fallbackUsed, o.label AS label, o.time AS outcomeTime
    FROM outcomes o JOIN decisions d ON d.service = o.service AND d.id = o.id`;
  type LabelledRow = Omit<LabelledDecision, 'fallbackUsed'> & { fallbackUsed: number };
  const selectOutcomesAfter = db.prepare<[number, number], LabelledRow>(`${LABELLED} WHERE o.seq > ? ORDER BY o.seq LIMIT ?`);
  const selectLabelled = db.prepare<[string, string, string], LabelledRow>(`${LABELLED} WHERE d.service = ? AND d.time >= ? AND d.time < ? ORDER BY d.time`);
  const selectLatestLabelled = db.prepare<[string, string, string, number], LabelledRow>(`${LABELLED} WHERE d.service = ? AND d.time >= ? AND d.time < ? ORDER BY d.time DESC LIMIT ?`);
  const countInRange = db.prepare<[string, string, string], number>('SELECT count(*) FROM decisions WHERE service = ? AND time >= ? AND time < ?').pluck();
  let scanStatement: Database.Statement<[string, string, number, string, string, number], ScannedSqliteRow> | undefined;
  const fromLabelled = (r: LabelledRow): LabelledDecision => ({ ...r, fallbackUsed: r.fallbackUsed === 1 });

  const counters = { appended: 0, commits: 0, batches: 0, checkpoints: 0 };
  let lastCheckpoint: SqliteDecisionLogStats['lastCheckpoint'] = null;
  // Appends of the current turn, not yet handed to the writer.
  const queue = new RowBatchBuilder();
  let queueKeys: string[] = [];
  /** When the oldest queued append was made (performance.now()): its batch's timeout counts from there. */
  let queueSince = 0;
  let queueResolves: (() => void)[] = [];
  let queueRejects: ((err: unknown) => void)[] = [];
  let timer: NodeJS.Immediate | NodeJS.Timeout | null = null;
  // Sent to the writer, unanswered, oldest first; `sent` and `answered` count jobs ever.
  const jobs: Job[] = [];
  let jobsHead = 0;
  let sent = 0;
  let answered = 0;
  let writing = 0;
  // Reads waiting for every job sent before them to be answered.
  const waiters: { upTo: number; resolve: () => void }[] = [];
  let closed = false;
  let closing: Promise<void> | null = null;
  let dbClosed = false;
  /** Set once the writer thread is gone without being asked to close: every append fails with it. */
  let failure: DecisionLogError | null = null;
  let writerExited = false;

  let writer: Worker;
  try {
    writer = startWriter({ path, synchronous, maxBatch, checkpointIntervalMs, checkpointBytes });
  } catch (err) {
    db.close();
    throw err;
  }
  let referenced = true;
  let failedWhileClosing = false;
  const exited = new Promise<void>((done) => {
    writer.on('exit', (code) => {
      writerExited = true;
      if (closing === null) fail(`exited unexpectedly (code ${code})`);
      else if (code !== 0) fail(`exited with code ${code} while closing`);
      else if (jobs.length > jobsHead) fail('exited before answering every batch');
      setReferenced();
      done();
    });
  });
  let isReady = false;
  let markReady!: (ok: boolean) => void;
  const ready = new Promise<void>((done, refuse) => {
    markReady = (ok) => (ok ? done() : refuse(failure));
  });
  ready.catch(() => {}); // awaiting it is optional: its failure is reported to appends anyway
  writer.on('error', (err) => fail(`failed: ${(err as Error)?.message ?? String(err)}`, err));
  writer.on('message', onMessage);
  setReferenced();

  function fail(why: string, cause?: unknown): void {
    if (failure !== null) return;
    if (closing !== null) failedWhileClosing = true;
    const unsettled = writing + queue.count;
    failure = new DecisionLogError(
      'LOG_FAILED',
      `decision log: the writer thread of ${path} ${why}; ${unsettled} pending append(s) were not acknowledged, and the log refuses new ones until it is reopened`,
      { cause },
    );
    markReady(false);
    if (timer !== null) cancelTimer();
    for (const reject of queueRejects) reject(failure);
    queue.take();
    queueKeys = [];
    queueResolves = [];
    queueRejects = [];
    while (jobsHead < jobs.length) {
      const job = jobs[jobsHead++];
      if (job.kind === 'rows') {
        if (job.timer !== null) clearTimeout(job.timer);
        for (const reject of job.rejects) reject(failure);
      } else job.reject(failure);
      answered++;
    }
    jobs.length = 0;
    jobsHead = 0;
    writing = 0;
    releaseWaiters();
    if (!writerExited) void writer.terminate();
    setReferenced();
  }

  /** Takes the oldest unanswered job, which must be of this kind (else: null, and the log fails). */
  function nextJob<K extends Job['kind']>(kind: K): Extract<Job, { kind: K }> | null {
    const job = jobs[jobsHead];
    if (job?.kind !== kind) {
      fail(`answered a ${kind} job out of order (a bug)`);
      return null;
    }
    jobs[jobsHead++] = undefined as unknown as Job; // let it be collected
    if (jobsHead === jobs.length) {
      jobs.length = 0;
      jobsHead = 0;
    } else if (jobsHead >= 1024 && jobsHead * 2 >= jobs.length) {
      jobs.splice(0, jobsHead); // under steady load the queue never empties: drop the answered prefix
      jobsHead = 0;
    }
    answered++;
    return job as Extract<Job, { kind: K }>;
  }

  function onMessage(m: FromWriter): void {
    if (failure !== null) return;
    switch (m.kind) {
      case 'committed': {
        if (m.skipped.length < m.jobs) counters.commits++;
        const dups = m.duplicates;
        let d = 0;
        let i = 0;
        let s = 0;
        for (let j = 0; j < m.jobs; j++) {
          const job = nextJob('rows');
          if (job === null) return;
          settleJob(job);
          if (s < m.skipped.length && m.skipped[s] === j) {
            s++;
            // Its appends timed out and were answered then; the writer did not write it.
            if (!job.abandoned) return fail('skipped a batch the log had not abandoned (a bug)');
            i += job.count;
            continue;
          }
          for (let k = 0; k < job.count; k++, i++) {
            if (d < dups.length && dups[d] === i) {
              d++;
              job.rejects[k](new DuplicateDecisionError(job.keys[2 * k], job.keys[2 * k + 1]));
            } else {
              counters.appended++;
              job.resolves[k]();
            }
          }
        }
        break;
      }
      case 'failed': {
        const err = new DecisionLogError('WRITE_FAILED', `decision log: writing ${m.records} record(s) to ${path} failed, none committed: ${m.error}`, {
          cause: Object.assign(new Error(m.error), { code: m.code }),
        });
        for (let j = 0; j < m.jobs; j++) {
          const job = nextJob('rows');
          if (job === null) return;
          settleJob(job);
          for (const reject of job.rejects) reject(err); // no-ops for appends already timed out
        }
        break;
      }
      case 'outcomes':
      case 'outcomesFailed': {
        const job = nextJob('outcomes');
        if (job === null) return;
        if (m.kind === 'outcomes') job.resolve({ joined: m.joined, unknown: m.unknown });
        else {
          job.reject(
            new DecisionLogError('WRITE_FAILED', `decision log: writing outcomes to ${path} failed, none committed: ${m.error}`, {
              cause: Object.assign(new Error(m.error), { code: m.code }),
            }),
          );
        }
        break;
      }
      case 'ready':
        isReady = true;
        markReady(true);
        setReferenced();
        return;
      case 'checkpoint':
        counters.checkpoints++;
        lastCheckpoint = { walFrames: m.walFrames, checkpointed: m.checkpointed, busy: m.busy, ms: m.ms, error: m.error, topUp: m.topUp === true };
        return;
    }
    releaseWaiters();
    setReferenced();
  }

  /** A rows job answered by the writer: its timer is over; its records are no longer being written. */
  function settleJob(job: Extract<Job, { kind: 'rows' }>): void {
    if (job.timer !== null) clearTimeout(job.timer);
    if (!job.abandoned) writing -= job.count;
  }

  /**
   * A batch's appends timed out: answer them, unless the writer has claimed the batch (it is
   * committing it: its answer comes soon). The claim decides, so a batch is either written or
   * answered with LOG_TIMEOUT, never both.
   */
  function abandon(job: Extract<Job, { kind: 'rows' }>): void {
    job.timer = null;
    if (failure !== null || Atomics.compareExchange(job.claim!, 0, CLAIM.PENDING, CLAIM.ABANDONED) !== CLAIM.PENDING) return;
    job.abandoned = true;
    writing -= job.count;
    const err = new DecisionLogError(
      'LOG_TIMEOUT',
      `decision log: ${job.count} record(s) not committed to ${path} within ${appendTimeoutMs} ms (another process holds its write lock, or the disk stalls); they will not be written`,
    );
    for (const reject of job.rejects) reject(err);
  }

  function releaseWaiters(): void {
    while (waiters.length > 0 && (waiters[0].upTo <= answered || failure !== null)) waiters.shift()!.resolve();
  }

  /** The writer thread keeps the process alive only while it starts, owes answers, or closes. */
  function setReferenced(): void {
    const want = !writerExited && (!isReady || jobs.length > jobsHead || (closing !== null && failure === null));
    if (want === referenced) return;
    referenced = want;
    if (want) writer.ref();
    else writer.unref();
  }

  function post(message: ToWriter, job: Job, transfer: ArrayBuffer[] = []): void {
    jobs.push(job);
    sent++;
    writer.postMessage(message, transfer);
    setReferenced();
  }

  function cancelTimer(): void {
    if (maxDelayMs > 0) clearTimeout(timer as NodeJS.Timeout);
    else clearImmediate(timer as NodeJS.Immediate);
    timer = null;
  }

  /** Hands the queued rows to the writer as one batch. */
  function flush(): void {
    if (timer !== null) cancelTimer();
    if (queue.count === 0) return;
    const batch = queue.take();
    const claim = appendTimeoutMs === null ? null : new Int32Array(new SharedArrayBuffer(4));
    const job: Extract<Job, { kind: 'rows' }> = { kind: 'rows', count: batch.count, keys: queueKeys, resolves: queueResolves, rejects: queueRejects, claim, timer: null, abandoned: false };
    if (appendTimeoutMs !== null) {
      job.timer = setTimeout(abandon, Math.max(0, queueSince + appendTimeoutMs - performance.now()), job);
      job.timer.unref(); // the writer thread keeps the process alive while it owes answers
    }
    queueKeys = [];
    queueResolves = [];
    queueRejects = [];
    writing += batch.count;
    counters.batches++;
    const transfer = [batch.layout.buffer, batch.scores.buffer] as ArrayBuffer[]; // fresh copies (RowBatchBuilder.take), never shared
    if (batch.floats !== null) transfer.push(batch.floats.buffer as ArrayBuffer);
    post({ kind: 'rows', batch, claim }, job, transfer);
  }

  function schedule(): void {
    if (queue.count >= maxBatch) flush();
    else if (timer === null) timer = maxDelayMs > 0 ? setTimeout(flush, maxDelayMs) : setImmediate(flush);
  }

  function ensureOpen(): void {
    if (closed) throw new DecisionLogClosedError();
  }

  /** Before a read: hands queued rows over, then waits until everything sent so far is answered. */
  async function settled(): Promise<void> {
    ensureOpen();
    flush();
    if (answered < sent) await new Promise<void>((done) => waiters.push({ upTo: sent, resolve: done }));
    if (dbClosed) throw new DecisionLogClosedError();
  }

  /** The newest rows of one service (or of all: see `query`), newest first; `seq` for merging services. */
  function queryStatement(filter: DecisionQuery): Database.Statement<unknown[], StoredRow & { query_seq: number }> {
    const key = `${filter.since !== undefined}${filter.until !== undefined}`;
    let stmt = queries.get(key);
    if (!stmt) {
      const where = ['service = ?'];
      if (filter.since !== undefined) where.push('time >= ?');
      if (filter.until !== undefined) where.push('time < ?');
      stmt = db.prepare<unknown[], StoredRow>(`SELECT seq AS query_seq, ${SQLITE_COLUMNS} FROM decisions WHERE ${where.join(' AND ')} ORDER BY time DESC, seq DESC LIMIT ?`);
      queries.set(key, stmt);
    }
    return stmt as Database.Statement<unknown[], StoredRow & { query_seq: number }>;
  }

  /**
   * Every service's name, by a loose scan of `decisions_service_id`: one index seek per service,
   * however many decisions each has.
   */
  const selectServices = db
    .prepare<[], string>(
      `WITH RECURSIVE s(name) AS (SELECT (SELECT min(service) FROM decisions)
         UNION ALL SELECT (SELECT min(service) FROM decisions WHERE service > s.name) FROM s WHERE s.name IS NOT NULL)
       SELECT name FROM s WHERE name IS NOT NULL`,
    )
    .pluck();

  /** Newest first, as `ORDER BY time DESC, seq DESC` orders them. */
  const newestFirst = (a: { time: string; query_seq: number }, b: { time: string; query_seq: number }): number =>
    a.time < b.time ? 1 : a.time > b.time ? -1 : b.query_seq - a.query_seq;

  return {
    path,
    synchronous,
    ready,
    [WRITER_THREAD]: writer,

    append(record: DecisionRecordToAppend): Promise<void> {
      if (closed) return Promise.reject(new DecisionLogClosedError());
      if (failure !== null) return Promise.reject(failure);
      const first = queue.count === 0;
      try {
        queue.add(record); // validated and serialized now, whatever the caller does with it next
      } catch (err) {
        return Promise.reject(err);
      }
      if (first) queueSince = performance.now();
      queueKeys.push(record.service, record.id);
      return new Promise<void>((resolve, reject) => {
        queueResolves.push(resolve);
        queueRejects.push(reject);
        schedule();
      });
    },

    async get(service: string, id: string): Promise<DecisionRecord | null> {
      await settled(); // read your own writes, even un-awaited ones
      const row = selectOne.get(service, id);
      return row ? fromSqliteRow(row) : null;
    },

    async query(filter: DecisionQuery = {}): Promise<DecisionRecord[]> {
      ensureOpen();
      const limit = filter.limit ?? DEFAULT_QUERY_LIMIT;
      if (!Number.isInteger(limit) || limit < 0) throw new TypeError(`decision log: limit must be a non-negative integer, got ${limit}`);
      const params: unknown[] = [];
      if (filter.since !== undefined) params.push(normalizeBound('since', filter.since));
      if (filter.until !== undefined) params.push(normalizeBound('until', filter.until));
      const capped = Math.min(limit, MAX_QUERY_LIMIT);
      params.push(capped);
      await settled();
      const stmt = queryStatement(filter);
      if (filter.service !== undefined) return stmt.all(filter.service, ...params).map(fromSqliteRow);
      // Across services (no index by time alone since version 7): each service's newest rows, merged.
      const rows: (StoredRow & { query_seq: number })[] = [];
      for (const service of selectServices.all()) for (const row of stmt.all(service, ...params)) rows.push(row);
      return rows.sort(newestFirst).slice(0, capped).map(fromSqliteRow);
    },

    recordOutcomes(service: string, outcomes: readonly Outcome[]): Promise<{ joined: number; unknown: string[] }> {
      try {
        ensureOpen();
        if (failure !== null) throw failure;
        const rows = outcomeRows(outcomes);
        flush(); // an outcome may follow its decision immediately: the writer takes them in order
        return new Promise((resolve, reject) => post({ kind: 'outcomes', service, outcomes: rows }, { kind: 'outcomes', resolve, reject }));
      } catch (err) {
        return Promise.reject(err);
      }
    },

    async outcomesAfter(cursor: number, limit = 10_000) {
      await settled();
      const items = selectOutcomesAfter.all(cursor, Math.min(limit, MAX_QUERY_LIMIT)).map(fromLabelled);
      return { cursor: items.length > 0 ? items[items.length - 1].seq : cursor, items };
    },

    async labelled(service: string, range: { since?: string; until?: string; limit?: number }) {
      ensureOpen();
      const since = range.since === undefined ? '' : normalizeBound('since', range.since);
      const until = range.until === undefined ? '9999' : normalizeBound('until', range.until);
      await settled();
      const rows = range.limit === undefined ? selectLabelled.all(service, since, until) : selectLatestLabelled.all(service, since, until, range.limit).reverse();
      return { decisions: countInRange.get(service, since, until)!, items: rows.map(fromLabelled) };
    },

    async count(service?: string): Promise<number> {
      await settled();
      return service === undefined ? countAll.get()! : countService.get(service)!;
    },

    close(): Promise<void> {
      if (closing) return closing;
      closed = true;
      if (failure === null) {
        flush();
        writer.postMessage({ kind: 'close' } satisfies ToWriter);
      }
      closing = exited.then(() => {
        // Reads that were waiting for the last commits have run by now (they ran on its answer).
        dbClosed = true;
        db.close();
        if (failedWhileClosing) throw failure;
      });
      setReferenced(); // until the writer has exited
      return closing;
    },

    get stats(): SqliteDecisionLogStats {
      return {
        appended: counters.appended,
        commits: counters.commits,
        pending: queue.count + writing,
        queued: queue.count,
        writing,
        batches: counters.batches,
        checkpoints: counters.checkpoints,
        lastCheckpoint,
      };
    },

    async scan(service: string, range: DecisionScan) {
      ensureOpen();
      const since = range.since === undefined ? '' : normalizeBound('since', range.since);
      const until = range.until === undefined ? '9999' : normalizeBound('until', range.until);
      const limit = scanLimit(range.limit);
      await settled();
      // The outcome by a correlated look-up on its unique (service, id) index: decisions and
      // outcomes share column names, so a join would need every column qualified.
      const from = parseScanCursor(range.after);
      // The cursor's time bounds the index range too, so a page reads from where the last stopped.
      const lower = from.time > since ? from.time : since;
      scanStatement ??= db.prepare<[string, string, number, string, string, number], ScannedSqliteRow>(
        `SELECT seq AS scan_seq, ${SQLITE_COLUMNS},
           (SELECT label FROM outcomes o WHERE o.service = decisions.service AND o.id = decisions.id) AS outcome_label,
           (SELECT time FROM outcomes o WHERE o.service = decisions.service AND o.id = decisions.id) AS outcome_time
         FROM decisions WHERE service = ? AND (time, seq) > (?, ?) AND time >= ? AND time < ? ORDER BY time, seq LIMIT ?`,
      );
      const rows = scanStatement.all(service, from.time, from.seq, lower, until, limit);
      return {
        items: rows.map((row) => withFloatInputs(fromScannedRow(row), row.inputs_f32)),
        cursor: scanCursor(rows, range.after),
      };
    },
  };
}

/** Starts the writer thread (from the TypeScript sources or a build alike: threads.ts). */
function startWriter(config: WriterConfig): Worker {
  return startWorker(new URL('./sqlite-writer.ts', import.meta.url), { workerData: config });
}

/** Opens the main thread's connection: checks (or creates) and migrates the file, then never writes. */
function openDatabase(path: string): Database.Database {
  // Checkpoints are the writer thread's job: wal_autocheckpoint = 0.
  const db = openSqliteStore(path, DECISION_LOG_SCHEMA, { walAutocheckpoint: 0 }, decisionLogOpenError);
  try {
    db.pragma('query_only = ON'); // from here on, only the writer thread writes
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/** The log's errors for a file it cannot open: its class, code and prefix for each failure. */
function decisionLogOpenError(f: SqliteStoreFailure): DecisionLogError {
  const code = f.code === 'SCHEMA_VERSION' ? 'SCHEMA_VERSION' : 'NOT_A_DECISION_LOG';
  const message = `decision log: ${f.message}${f.reason === 'newer' ? ' (refusing to open it rather than risk writing it wrongly)' : ''}`;
  // Opening and switching to WAL mode are not about what the file holds.
  return f.reason === 'open' || f.reason === 'not-wal' ? new DecisionLogError(code, message, f.options) : new DecisionLogSchemaError(code, message, f.options);
}
