/** Runs a real `rtml serve` process on a free loopback port for end-to-end tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Bundle } from '../../src/bundle/load.ts';
import { simulate, type SimulateOptions } from '../../src/monitor/simulate.ts';
import { tempDir } from './tmp.ts';

const ROOT = new URL('../..', import.meta.url).pathname;

/** The write token every test server takes (outcomes, events, entities); `RunningServer.write` sends it. */
export const WRITE_TOKEN = 'test-write-token-0123456789';
export const writeAuth = { authorization: `Bearer ${WRITE_TOKEN}` };

export interface RunningServer {
  url: string;
  process: ChildProcess;
  repository: string;
  dataDir: string;
  /** Every log line the server printed (pino JSON). */
  logs: string[];
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<Response>;
  /** A write (outcomes, events, entities) with the write token: POST unless `method` says otherwise. */
  write(path: string, body: unknown, method?: 'POST' | 'PUT'): Promise<Response>;
}

/** A temporary model repository holding a copy of the credit example as service `credit`. */
export function creditRepository(): string {
  const repo = tempDir('rtml-repo-');
  mkdirSync(join(repo, 'credit'));
  for (const file of ['rtml.yaml', 'model.json', 'golden.jsonl', 'policy.yaml', 'reference.json']) cpSync(join(ROOT, 'examples/credit', file), join(repo, 'credit', file));
  return repo;
}

/**
 * Shedding on event-loop lag is off unless a test asks for it: on a CI machine running other
 * test processes, a stall of a few hundred ms is the machine, not overload, and a 503 then
 * would fail tests of something else (test/server-overload.test.ts tests the shedding).
 */
export function lagShedding(args: readonly string[]): string[] {
  return args.includes('--max-event-loop-delay-ms') ? [] : ['--max-event-loop-delay-ms', '0'];
}

export async function startServer(options: { repository?: string; dataDir?: string; args?: string[]; env?: Record<string, string> } = {}): Promise<RunningServer> {
  const repository = options.repository ?? creditRepository();
  const dataDir = options.dataDir ?? tempDir('rtml-data-');
  const child = spawn(process.execPath, [join(ROOT, 'bin/rtml.mjs'), 'serve', repository, '--port', '0', '--data-dir', dataDir, '--watch-interval-ms', '0', '--drain-grace-ms', '0', ...lagShedding(options.args ?? []), ...(options.args ?? [])], {
    cwd: ROOT,
    env: { ...process.env, RTML_ADMIN_TOKEN: '', RTML_WRITE_TOKEN: WRITE_TOKEN, RTML_DECIDE_TOKEN: '', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 30 s:\n${logs.join('\n')}`)), 30_000);
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => {
        logs.push(line);
        const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
    }
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${logs.join('\n')}`));
    });
  });
  return {
    url,
    process: child,
    repository,
    dataDir,
    logs,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
    post: (path, body, headers = {}) =>
      fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) }),
    write: (path, body, method = 'POST') =>
      fetch(url + path, { method, headers: { 'content-type': 'application/json', ...writeAuth }, body: typeof body === 'string' ? body : JSON.stringify(body) }),
  };
}

/** lending_club rows as typed JSON requests (numbers as numbers, categories as strings). */
export async function lendingClubRows(limit = Infinity): Promise<Record<string, unknown>[]> {
  return (await lendingClubExamples(limit)).map((e) => e.features);
}

/** lending_club rows as typed JSON requests, each with its true label (the `Class` column, never sent with the request). */
export async function lendingClubExamples(limit = Infinity): Promise<{ features: Record<string, unknown>; label: string }[]> {
  const { parse } = await import('csv-parse/sync');
  const { readFileSync } = await import('node:fs');
  const rows = parse(readFileSync(join(ROOT, 'examples/credit/lending_club.csv')), { columns: true, cast: true, to: limit === Infinity ? undefined : limit }) as Record<string, unknown>[];
  return rows.map(({ Class: label, ...features }) => ({ features, label: String(label) }));
}

/**
 * `rtml simulate` against a test server: the credit example's lending_club loans as fast as
 * they go, 8 at a time, outcomes posted at once, with the writer's token; `options` override.
 */
export function simulateLendingClub(url: string, bundle: Bundle, options: Partial<SimulateOptions> = {}) {
  return simulate({
    url,
    bundle,
    input: join(ROOT, 'examples/credit/lending_club.csv'),
    rate: 0,
    concurrency: 8,
    limit: 1000,
    perturbations: [],
    perturbAfter: 0,
    outcomeDelay: 0,
    watchEvery: 0,
    idPrefix: 'sim',
    token: WRITE_TOKEN,
    ...options,
  });
}
