/**
 * Runs a real PostgreSQL for tests and benchmarks: a throwaway cluster (`initdb`) in a
 * temporary directory, on a free loopback port, its socket in that directory, trust
 * authentication on loopback, one database `rtml`. As root the cluster runs as the `postgres`
 * user (PostgreSQL refuses to run as root). `kill()` (SIGKILL of the postmaster) and
 * `restart()` (same port, same data) let a test stage an outage.
 *
 * The binaries come from /usr/lib/postgresql/<major>/bin; CI (`.ci/run`) installs them with
 * apt-get (`postgresql`). Every cluster started here is stopped when the test process exits.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeLoopbackPort, killOnExit, waitExit } from './processes.ts';

export interface RunningPostgres {
  /** `postgres://postgres@127.0.0.1:PORT/rtml`. */
  url: string;
  port: number;
  /** The cluster's data directory (removed by `stop()`). */
  dir: string;
  /** The postmaster's pid, or null while it is down. */
  readonly pid: number | null;
  /** Everything the server printed. */
  logs: string[];
  /** Fast shutdown, wait for exit, remove the directory. */
  stop(): Promise<void>;
  /** SIGKILL the postmaster and its backends: an outage. Data and port stay for `restart()`. */
  kill(): Promise<void>;
  /** Start again on the same port and data (after `kill()` or while running); resolves once it accepts connections. */
  restart(): Promise<void>;
}

/** The newest installed PostgreSQL's bin directory, or a clear error saying how to get one. */
export function findPostgresBin(): string {
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root) ? readdirSync(root).filter((d) => /^\d+$/.test(d)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const major of majors) {
    const bin = join(root, major, 'bin');
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'postgres'))) return bin;
  }
  throw new Error(
    'PostgreSQL not found under /usr/lib/postgresql/<major>/bin: the shared-store tests need a real PostgreSQL. ' +
      'Install it (Debian/Ubuntu: `apt-get install -y postgresql`; CI does this in .ci/run).',
  );
}

/** As root, PostgreSQL's tools run as the `postgres` user. */
function asPostgres(command: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
}

export interface StartPostgresOptions {
  /** Extra `-c name=value` settings (e.g. `{ fsync: 'off' }` where durability is not under test). */
  settings?: Record<string, string>;
  startTimeoutMs?: number;
}

export async function startPostgres(options: StartPostgresOptions = {}): Promise<RunningPostgres> {
  const bin = findPostgresBin();
  const root = mkdtempSync(join(tmpdir(), 'rtml-pg-'));
  const dir = join(root, 'data');
  const root0 = process.getuid?.() === 0;
  if (root0) {
    const pw = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
    if (pw.status !== 0) throw new Error('running as root but there is no `postgres` user: install the postgresql package');
    chownSync(root, Number(pw.stdout.trim()), Number(gid.stdout.trim()));
    chmodSync(root, 0o700);
  }
  const [initCmd, initArgs] = asPostgres(join(bin, 'initdb'), ['-D', dir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync']);
  const init = spawnSync(initCmd, initArgs, { encoding: 'utf8' });
  if (init.status !== 0) {
    rmSync(root, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.status}):\n${init.stderr}\n${init.stdout}`);
  }
  const logs: string[] = [];
  const startTimeoutMs = options.startTimeoutMs ?? 20_000;
  let child: ChildProcess | null = null;
  let port = 0;

  const settings: Record<string, string> = { listen_addresses: '127.0.0.1', max_connections: '200', unix_socket_directories: root, ...(options.settings ?? {}) };
  const launch = async (onPort: number): Promise<void> => {
    const args = ['-D', dir, '-p', String(onPort), ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
    const [cmd, cmdArgs] = asPostgres(join(bin, 'postgres'), args);
    const proc = spawn(cmd, cmdArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
    killOnExit(proc);
    for (const stream of [proc.stdout!, proc.stderr!]) stream.on('data', (chunk: Buffer) => logs.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
    child = proc;
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`postgres exited (${proc.exitCode ?? proc.signalCode}) before accepting connections on port ${onPort}:\n${logs.slice(-20).join('\n')}`);
      }
      const ready = spawnSync(join(bin, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(onPort), '-t', '1'], { encoding: 'utf8' });
      if (ready.status === 0) return;
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`postgres did not accept connections on port ${onPort} within ${startTimeoutMs} ms:\n${logs.slice(-20).join('\n')}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  for (let attempt = 0; ; attempt++) {
    const onPort = await freeLoopbackPort();
    try {
      await launch(onPort);
      port = onPort;
      break;
    } catch (error) {
      if (attempt >= 4) {
        rmSync(root, { recursive: true, force: true });
        throw error;
      }
    }
  }
  const created = spawnSync(join(bin, 'psql'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-c', 'CREATE DATABASE rtml'], { encoding: 'utf8' });
  if (created.status !== 0) throw new Error(`CREATE DATABASE failed: ${created.stderr}`);
  writeFileSync(join(root, 'PORT'), String(port));

  // The postmaster's backends are its children: killing the runuser wrapper alone would leave them.
  const postmasterPid = (): number | null => {
    const out = spawnSync('sh', ['-c', `head -1 ${join(dir, 'postmaster.pid')} 2>/dev/null`], { encoding: 'utf8' }).stdout.trim();
    return /^\d+$/.test(out) ? Number(out) : null;
  };
  const kill = async () => {
    const proc = child;
    child = null;
    if (!proc) return;
    const pid = postmasterPid();
    if (pid) {
      // SIGKILL the postmaster and every backend (they share its process group when started by us).
      spawnSync('pkill', ['-KILL', '-P', String(pid)]);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    proc.kill('SIGKILL');
    await waitExit(proc);
    // Backends notice the postmaster's death within a moment; wait until the port is free.
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && spawnSync('pgrep', ['-P', String(pid ?? 0)]).status === 0) await new Promise((r) => setTimeout(r, 50));
  };
  return {
    url: `postgres://postgres@127.0.0.1:${port}/rtml`,
    port,
    dir,
    logs,
    get pid() {
      return child ? postmasterPid() : null;
    },
    kill,
    async stop() {
      const proc = child;
      child = null;
      if (proc) {
        const pid = postmasterPid();
        // SIGINT to the postmaster: fast shutdown (disconnects clients, no waiting for them).
        if (pid) {
          try {
            process.kill(pid, 'SIGINT');
          } catch {
            /* gone */
          }
        }
        const timer = setTimeout(() => {
          if (pid) spawnSync('pkill', ['-KILL', '-P', String(pid)]);
          if (pid) {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              /* gone */
            }
          }
          proc.kill('SIGKILL');
        }, 10_000);
        await waitExit(proc);
        clearTimeout(timer);
      }
      rmSync(root, { recursive: true, force: true });
    },
    async restart() {
      await kill();
      const deadline = Date.now() + 10_000;
      for (;;) {
        try {
          // A killed postmaster leaves its pid file; postgres starts anyway once that pid is gone.
          await launch(port);
          return;
        } catch (error) {
          if (Date.now() > deadline) throw error;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    },
  };
}
