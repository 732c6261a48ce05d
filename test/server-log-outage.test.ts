/**
 * The decision log's write lock held by another process: decisions answer 503 with Retry-After
 * within --log-timeout-ms instead of waiting for SQLite's 5 s busy timeout, nothing answered 503
 * is logged behind the caller's back (a retry of its id is no duplicate), every 2xx is in the
 * log, and `rtml outcomes --data-dir`, the log file's other writer, works while the server runs.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { DECISION_LOG_FILE } from '../src/log/sqlite.ts';
import { lendingClubRows, startServer } from './helpers/server.ts';
import { tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;

/** Runs a command of the CLI; resolves with its exit code and stderr. */
function rtml(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/rtml.mjs'), ...args], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.once('exit', (code) => resolve({ code, stderr }));
  });
}

describe('decision log locked by another process', () => {
  it('answers 503 + Retry-After within --log-timeout-ms, logs none of those, and takes their retries once the lock is gone', async (t) => {
    const server = await startServer({ args: ['--log-timeout-ms', '1000'] });
    const logFile = join(server.dataDir, DECISION_LOG_FILE);
    const loans = await lendingClubRows(40);
    const answered: string[] = [];
    const decide = async (id: string, i: number) => {
      const started = performance.now();
      const res = await server.post('/v1/services/credit/decisions', { id, ...loans[i % loans.length] });
      const body = await res.json();
      if (res.status === 200) answered.push(id);
      return { status: res.status, retryAfter: res.headers.get('retry-after'), body, ms: performance.now() - started };
    };
    try {
      assert.equal((await decide('before', 0)).status, 200);

      const blocker = new Database(logFile);
      blocker.exec('BEGIN IMMEDIATE');
      const during = await Promise.all(Array.from({ length: 20 }, (_, i) => decide(`locked-${i}`, i)));
      // A second wave while the first is being refused: it queues behind it in the writer.
      const later = await Promise.all(Array.from({ length: 5 }, (_, i) => decide(`locked-${20 + i}`, i)));
      // An outcome cannot be written either: 503 to retry, not a 500 (it waits the busy timeout).
      const outcome = await server.write('/v1/services/credit/decisions/before/outcome', { label: 'good' }, 'PUT');
      assert.equal(outcome.status, 503, await outcome.clone().text());
      assert.equal(outcome.headers.get('retry-after'), '1');
      blocker.exec('COMMIT');
      blocker.close();
      const slowest = Math.max(...[...during, ...later].map((d) => d.ms));
      t.diagnostic(`while locked: ${during.length + later.length} decisions answered ${[...new Set([...during, ...later].map((d) => d.status))]}, slowest after ${slowest.toFixed(0)} ms`);
      for (const d of [...during, ...later]) {
        assert.equal(d.status, 503, JSON.stringify(d.body));
        assert.equal(d.retryAfter, '1');
        assert.match(d.body.error, /could not be logged.*not committed .* within 1000 ms/);
      }
      // 1 s timeout; SQLite's busy timeout (what it waited before) is 5 s.
      assert.ok(slowest < 3000, `a decision waited ${slowest.toFixed(0)} ms for the locked log`);

      // The lock is gone: the same ids go through, none of them a duplicate.
      const retries = await Promise.all(Array.from({ length: 25 }, (_, i) => decide(`locked-${i}`, i)));
      assert.deepEqual([...new Set(retries.map((r) => r.status))], [200]);

      // The log's other writer, while decisions keep coming.
      const outcomesFile = join(tempDir(), 'outcomes.csv');
      writeFileSync(outcomesFile, `id,label\nbefore,good\n${answered.filter((id) => id.startsWith('locked-')).map((id) => `${id},bad`).join('\n')}\n`);
      let traffic = true;
      const meanwhile = (async () => {
        const statuses: number[] = [];
        for (let i = 0; traffic; i++) statuses.push((await decide(`meanwhile-${i}`, i)).status);
        return statuses;
      })();
      const outcomes = await rtml(['outcomes', join(server.repository, 'credit'), '--input', outcomesFile, '--data-dir', server.dataDir]);
      traffic = false;
      assert.equal(outcomes.code, 0, outcomes.stderr);
      assert.match(outcomes.stderr, /26 outcomes: 26 joined/);
      assert.deepEqual([...new Set(await meanwhile)], [200]);
    } finally {
      await server.stop();
    }
    // Every 2xx is in the log, once; nothing else is.
    const log = new Database(logFile, { readonly: true });
    try {
      const ids = log.prepare<[], string>("SELECT id FROM decisions WHERE service = 'credit' ORDER BY id").pluck().all();
      assert.deepEqual(ids, [...answered].sort());
      assert.equal(log.prepare<[], number>('SELECT count(*) FROM outcomes').pluck().get(), 26);
    } finally {
      log.close();
    }
  });
});
