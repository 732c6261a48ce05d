/**
 * The decision log's checkpointer thread, started by the writer thread (sqlite-writer.ts): it
 * copies the WAL back into the database file with PASSIVE checkpoints on a connection of its
 * own. In WAL mode a checkpoint and a write transaction do not wait for each other, so the
 * commits (and the appends waiting for them) do not wait for the bulk of a checkpoint, and the
 * main thread never does. It runs at the lowest CPU priority: background work.
 *
 * When: every `intervalMs`, and at once when the writer says it wrote about `checkpointBytes`
 * since the last nudge. A pass copies the WAL up to the last commit when it started; on its
 * report, the writer copies the few frames committed since (a quick checkpoint between two
 * transactions), so that the WAL is then wholly copied and the next transaction starts it over
 * from the beginning (cut back to journal_size_limit) instead of growing it: under steady load
 * concurrent passes alone would never catch up with the writer. Should its reports stop (no
 * CPU for it, a stuck disk), the writer checkpoints by itself once the WAL has grown by a few
 * times `checkpointBytes`, as SQLite's automatic checkpoint would.
 *
 * Plain JavaScript (CommonJS) so that it starts without a TypeScript loader.
 *
 * workerData: { sqlite: the better-sqlite3 entry point, path, synchronous: 'normal' | 'full',
 *               intervalMs, busyTimeoutMs }
 * Messages in: 'now' (checkpoint at once), 'close' (finish, close, exit).
 * Messages out: 'started' once, then { kind: 'checkpoint', walFrames, checkpointed, busy, ms,
 * error } for every checkpoint that had frames to copy or failed.
 */
'use strict';
const { readlinkSync, writeFileSync } = require('node:fs');
const { setPriority } = require('node:os');
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);

// Background work: lowest CPU priority for this thread (Linux: a thread id is a valid target of
// setpriority), so that on a small machine it takes the CPU the request path leaves free
// instead of competing with it. Elsewhere it keeps the process's priority.
try {
  setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), 19);
} catch {
  // not Linux, or no /proc: fine
}
// Named, so that per-thread CPU time (top -H, bench/log.ts) can tell it apart (Linux only).
try {
  writeFileSync('/proc/thread-self/comm', 'rtml-log-ckpt');
} catch {
  // not Linux: fine
}

const db = new Database(workerData.path, { timeout: workerData.busyTimeoutMs });
// A checkpoint syncs the WAL before copying and the database file after (NORMAL and FULL alike).
db.pragma(`synchronous = ${workerData.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
db.pragma('wal_autocheckpoint = 0');

/** Quick passes after the first, for the frames committed meanwhile. */
const EXTRA_PASSES = 2;
let timer = null;
let last = { log: -1, checkpointed: -1 };

function arm(ms) {
  if (timer !== null) clearTimeout(timer);
  timer = setTimeout(checkpoint, ms);
}

/** PASSIVE checkpoint: returns the pragma's row, or throws. */
function pass() {
  const [r] = db.pragma('wal_checkpoint(PASSIVE)');
  return r;
}

function checkpoint() {
  if (timer !== null) clearTimeout(timer);
  timer = null;
  const t0 = performance.now();
  let report;
  try {
    let r = pass();
    // Frames committed during a pass are few: copy them too, here, so that what is left for
    // the writer's top-up is fewer still. A pass with nothing to copy costs next to nothing.
    for (let extra = 0; extra < EXTRA_PASSES && r.busy === 0; extra++) {
      const again = pass();
      const grew = again.log !== r.log;
      r = again;
      if (!grew) break; // nothing committed during the last pass: the WAL is wholly copied
    }
    report = { kind: 'checkpoint', walFrames: r.log, checkpointed: r.checkpointed, busy: r.busy !== 0, ms: performance.now() - t0, error: null };
  } catch (err) {
    // Nothing is lost (the WAL holds every commit): report it and try again later.
    report = { kind: 'checkpoint', walFrames: -1, checkpointed: -1, busy: false, ms: performance.now() - t0, error: err instanceof Error ? err.message : String(err) };
  }
  const idle = report.error === null && report.walFrames === last.log && report.checkpointed === last.checkpointed;
  if (!idle) parentPort.postMessage(report);
  last = { log: report.walFrames, checkpointed: report.checkpointed };
  arm(workerData.intervalMs);
}

parentPort.on('message', (m) => {
  if (m === 'now') {
    checkpoint();
  } else if (m === 'close') {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    db.close();
    parentPort.close();
  }
});
arm(workerData.intervalMs);
parentPort.postMessage('started');
