/**
 * Child process for the kill -9 tests (test/log-sqlite.test.ts, test/log-postgres.test.ts):
 * opens the decision log in argv[2] (a data directory, or a postgres:// URL) and appends records as fast as it can, `concurrency` appends always in flight, until
 * it is killed. Each id is written to stdout, one line, ONLY after its append promise resolved:
 * a printed line is a decision the server would have answered 2xx.
 *
 * With a `limit`, it stops after that many appends and returns without closing the log: the
 * process must then exit on its own (the log's writer thread must not keep it alive).
 *
 * The ack goes straight to fd 1 with a synchronous write(2) (`ack` of ./kill9.ts), so that it
 * survives SIGKILL. Lines are short, so each write is one complete line; the parent still
 * counts only newline-terminated lines.
 *
 *   node --import tsx test/helpers/log-writer.ts <dataDir|postgres-url> <normal|full> <concurrency> [limit]
 */
import { openDecisionLog } from '../../src/log/index.ts';
import type { DecisionRecord } from '../../src/log/types.ts';
import { ack } from './kill9.ts';

const [dataDir, synchronous = 'normal', concurrencyArg = '64', limitArg] = process.argv.slice(2);
if (!dataDir || (synchronous !== 'normal' && synchronous !== 'full')) {
  process.stderr.write('usage: log-writer.ts <dataDir> <normal|full> <concurrency> [limit]\n');
  process.exit(2);
}
const concurrency = Number(concurrencyArg);
const limit = limitArg === undefined ? Infinity : Number(limitArg);

const log = await openDecisionLog({ decisionLog: dataDir, dataDir, synchronous });

function writerRecord(n: number): DecisionRecord {
  return {
    id: `w-${n}`,
    time: new Date().toISOString(),
    service: 'kill9',
    model: { name: 'm', version: '1' },
    policyVersion: 'p1',
    request: { n, text: `request ${n} ✓`, nested: { list: [n, n + 1, null] } },
    inputs: [n, NaN, n / 3],
    outputs: { p_bad: (n % 100) / 100, label: n % 2 ? 'bad' : 'good' },
    score: (n % 100) / 100,
    decision: n % 2 ? 'decline' : 'approve',
    reasons: [{ code: 'r', message: `reason ${n}` }],
    fallback: { used: n % 10 === 0, cause: n % 10 === 0 ? 'timeout' : null },
    timingsMs: { total: 0.1 },
  };
}

let next = 0;
async function worker(): Promise<void> {
  while (next < limit) {
    const n = next++;
    await log.append(writerRecord(n));
    ack(`w-${n}\n`);
  }
}

for (let i = 0; i < concurrency; i++) {
  worker().catch((err) => {
    process.stderr.write(`log-writer: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
