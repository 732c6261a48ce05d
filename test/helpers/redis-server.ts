/**
 * Runs a real `redis-server` for tests: a free loopback port, a temporary directory, no
 * persistence (`--save '' --appendonly no`). It answers PING before `startRedis` resolves.
 * `kill()` (SIGKILL) and `restart()` (same port, same directory) let a test stage an outage.
 *
 * The binary is taken from PATH or /usr/bin/redis-server; CI (`.ci/run`) installs it with
 * apt-get when it is missing. Every server started here is SIGKILLed when the test process exits.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { delimiter, join } from 'node:path';
import { freeLoopbackPort, killOnExit, waitExit } from './processes.ts';
import { tempDir } from './tmp.ts';

export interface RunningRedis {
  /** `redis://127.0.0.1:PORT`. */
  url: string;
  port: number;
  /** The server's working directory (removed by `stop()`). */
  dir: string;
  /** The current process' pid, or null while it is down. */
  readonly pid: number | null;
  /** Everything the server printed. */
  logs: string[];
  /** SIGTERM, wait for exit, remove the directory. */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit: an outage. The port and directory stay reserved for `restart()`. */
  kill(): Promise<void>;
  /** Start again on the same port (kills the running server first, if any); resolves once it answers PING. */
  restart(): Promise<void>;
}

/** Where redis-server is, or a clear error saying how to get it. */
export function findRedisServer(): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, 'redis-server'))) return join(dir, 'redis-server');
  }
  for (const candidate of ['/usr/bin/redis-server', '/usr/local/bin/redis-server', '/usr/sbin/redis-server']) {
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(
    'redis-server not found on PATH or in /usr/bin: the Redis feature-store tests need a real Redis. ' +
      'Install it (Debian/Ubuntu: `apt-get install -y redis-server`; CI does this in .ci/run).',
  );
}

/** The installed redis-server's version string, e.g. "7.0.15". */
export function redisServerVersion(binary = findRedisServer()): string {
  const out = spawnSync(binary, ['--version'], { encoding: 'utf8' }).stdout ?? '';
  return /v=(\S+)/.exec(out)?.[1] ?? 'unknown';
}

/** One PING over a raw socket: true when the server answers +PONG within `timeoutMs`. */
export function ping(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

export async function startRedis(options: { port?: number; args?: string[]; startTimeoutMs?: number } = {}): Promise<RunningRedis> {
  const binary = findRedisServer();
  const dir = tempDir('rtml-redis-');
  const logs: string[] = [];
  const startTimeoutMs = options.startTimeoutMs ?? 10_000;
  let child: ChildProcess | null = null;
  let port = options.port ?? 0;

  const launch = async (onPort: number): Promise<void> => {
    const args = [
      '--port', String(onPort),
      '--bind', '127.0.0.1',
      '--save', '',
      '--appendonly', 'no',
      '--dir', dir,
      '--daemonize', 'no',
      '--protected-mode', 'no',
      '--loglevel', 'warning',
      ...(options.args ?? []),
    ];
    const proc = spawn(binary, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    killOnExit(proc);
    for (const stream of [proc.stdout!, proc.stderr!]) stream.on('data', (chunk: Buffer) => logs.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
    child = proc;
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`redis-server exited (${proc.exitCode ?? proc.signalCode}) before answering PING on port ${onPort}:\n${logs.slice(-20).join('\n')}`);
      }
      if (await ping(onPort, 200)) return;
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`redis-server did not answer PING on port ${onPort} within ${startTimeoutMs} ms:\n${logs.slice(-20).join('\n')}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  // Another process may take the free port between probing and binding: try a few ports.
  for (let attempt = 0; ; attempt++) {
    const onPort = port || (await freeLoopbackPort());
    try {
      await launch(onPort);
      port = onPort;
      break;
    } catch (error) {
      if (port || attempt >= 4) {
        rmSync(dir, { recursive: true, force: true });
        throw error;
      }
    }
  }

  const kill = async () => {
    const proc = child;
    child = null;
    if (!proc) return;
    proc.kill('SIGKILL');
    await waitExit(proc);
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    logs,
    get pid() {
      const proc = child as ChildProcess | null;
      return proc?.pid ?? null;
    },
    kill,
    async stop() {
      const proc = child;
      child = null;
      if (proc) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
        await waitExit(proc);
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      await kill();
      // The port was just released by a SIGKILLed listener; redis sets SO_REUSEADDR, but retry briefly anyway.
      const deadline = Date.now() + 5000;
      for (;;) {
        try {
          await launch(port);
          return;
        } catch (error) {
          if (Date.now() > deadline) throw error;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    },
  };
}
