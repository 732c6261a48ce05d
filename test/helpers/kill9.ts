/**
 * The kill -9 harness of the SQLite stores' durability tests (test/log-sqlite.test.ts,
 * test/features-embedded.test.ts): a child process writes to a store as fast as it can and
 * acknowledges each write on stdout, one id a line, only after the write resolved; the parent
 * SIGKILLs it mid-write, reopens the store and checks that every acknowledged id is there.
 *
 * Child side: {@link ack}. Parent side: {@link spawnTsx} to start the child (a helper script, or
 * the test file itself with an environment variable telling it to be the writer), then
 * {@link killAfterAcks}.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { writeSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Child side: writes `text` (whole lines) straight to fd 1 with a synchronous write(2)
 * (`fs.writeSync`), never through `process.stdout` (whose pipe writes may be queued in this
 * process and die with it): once the call returns, the lines are in the kernel's pipe buffer
 * and survive SIGKILL. A non-blocking pipe that is full (EAGAIN) is retried.
 */
export function ack(text: string): void {
  const line = Buffer.from(text);
  let off = 0;
  while (off < line.length) {
    try {
      off += writeSync(1, line, off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err; // a non-blocking pipe that is full: retry
    }
  }
}

/** Runs `node --import tsx <script> ...args` from the repository root, stdout and stderr piped; `env` adds to this process's environment. */
export function spawnTsx(script: string, args: readonly string[] = [], env?: Record<string, string>): ChildProcessByStdio<null, Readable, Readable> {
  return spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: ROOT,
    ...(env && { env: { ...process.env, ...env } }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

export interface Kill9Run {
  /** Every id the child acknowledged. */
  acked: Set<string>;
  /** How the child ended: 'SIGKILL' when by ours. */
  signal: NodeJS.Signals | null;
  stderr: string;
}

/**
 * SIGKILLs `child` a random 0–10 ms after it has acknowledged `killAfter` writes, and returns
 * every id it acknowledged. Only newline-terminated lines count: a chunk boundary inside a line
 * never yields a bogus id, and a line is only ever written after its write resolved. After the
 * kill, the pipe is read to EOF so that no acknowledged line that reached the kernel is missed.
 * Rejects (and kills the child) if it has not acknowledged `killAfter` within `guardMs`.
 */
export function killAfterAcks(child: ChildProcessByStdio<null, Readable, Readable>, killAfter: number, guardMs: number): Promise<Kill9Run> {
  return new Promise((resolve, reject) => {
    const acked = new Set<string>();
    let partial = '';
    let stderr = '';
    let killTimer: NodeJS.Timeout | null = null;
    const guard = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`writer made only ${acked.size} acks in ${guardMs / 1000} s; stderr: ${stderr}`));
    }, guardMs);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop()!; // '' after a complete line, else an incomplete one: not counted
      for (const line of lines) acked.add(line);
      if (acked.size >= killAfter && killTimer === null) {
        killTimer = setTimeout(() => child.kill('SIGKILL'), Math.floor(Math.random() * 10));
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (_code, signal) => {
      clearTimeout(guard);
      resolve({ acked, signal, stderr });
    });
  });
}
