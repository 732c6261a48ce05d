/**
 * The commands that talk to a running server (`rtml outcomes --url`, `rtml simulate`,
 * `rtml ingest`) check their input file's header as `rtml score` does.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const CREDIT = join(ROOT, 'examples/credit');
const FRAUD = join(ROOT, 'examples/card-fraud');
const LOANS = readFileSync(join(CREDIT, 'lending_club.csv'), 'utf8').split('\n');

/** Runs `rtml` without blocking this process (a stub server here must answer it). */
function rtml(args: string[], env: Record<string, string> = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/rtml.mjs'), ...args], { cwd: ROOT, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

function file(dir: string, name: string, text: string): string {
  writeFileSync(join(dir, name), text);
  return join(dir, name);
}

describe('a client command checks its input file as rtml score does', () => {
  it('names a misspelt column of rtml outcomes, ingest (events or entities) and simulate input, exit 2, before sending anything', async () => {
    const dir = tempDir();
    const url = `http://127.0.0.1:${await closedPort()}`;
    const events = readFileSync(join(FRAUD, 'data/transactions.csv'), 'utf8').split('\n').slice(0, 4).join('\n') + '\n';
    for (const [args, expected] of [
      [['outcomes', CREDIT, '-i', file(dir, 'outcomes.csv', 'ID,Label\nx-1,bad\n'), '--url', url], /outcomes\.csv: has column "ID": did you mean id\?; has column "Label": did you mean label\?/],
      [['outcomes', CREDIT, '-i', file(dir, 'timed.csv', 'id,label,Time\nx-1,bad,2026-01-01T00:00:00Z\n'), '--url', url], /timed\.csv: has column "Time": did you mean time\?/],
      [['ingest', FRAUD, '--stream', 'transactions', '-i', file(dir, 'events.csv', events.replace('merchant_id', 'merchantId')), '--url', url], /events\.csv: has column "merchantId": did you mean merchant_id\?/],
      [['ingest', FRAUD, '--entity', 'customer', '-i', file(dir, 'customers.csv', 'customer_id,home-region\nu1,west\n'), '--url', url], /customers\.csv: has column "home-region": did you mean home_region\?/],
      [['simulate', CREDIT, '-i', file(dir, 'loans.csv', [LOANS[0].replace('"int_rate"', '"Int_Rate"'), ...LOANS.slice(1, 5)].join('\n') + '\n'), '--url', url], /loans\.csv: has column "Int_Rate": did you mean int_rate\?/],
      [['simulate', CREDIT, '-i', file(dir, 'unlabelled.csv', LOANS.slice(0, 5).join('\n').replaceAll(',"good"', '').replaceAll(',"bad"', '').replace(',"Class"', '') + '\n'), '--url', url, '--label', 'Class'], /unlabelled\.csv: has no column Class \(the label to post as the outcome \(--label\)\)/],
    ] as const) {
      const run = await rtml([...args]);
      assert.equal(run.status, 2, `${args[0]}: ${run.stderr}`);
      assert.match(run.stderr, expected);
    }
  });
});
