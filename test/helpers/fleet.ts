/**
 * A fleet of real `rtml serve` processes (bin/rtml.mjs, as users start it) for the multi-process
 * tests: each replica on its own free loopback port with its own --data-dir under one temporary
 * folder, tokens given through the environment, started and restarted on the same port, killed
 * with any signal; and a client that spreads lending_club decisions over the replicas
 * round-robin and records every acknowledged (2xx) decision id, which replica took it and the
 * row's true label (for outcomes later).
 *
 *     const fleet = await startFleet({ replicas: 3, args: ['--decision-log', pg.url] });
 *     const client = await fleet.client();
 *     await client.decide(300);
 *     await fleet.replicas[1].kill('SIGKILL');
 *     ...
 *     await fleet.stop();
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { freeLoopbackPort } from './processes.ts';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { creditRepository, lagShedding, lendingClubExamples, WRITE_TOKEN } from './server.ts';
import { tempDir } from './tmp.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const DECISIONS_PATH = '/v1/services/credit/decisions';
/** Every replica takes these tokens (RTML_ADMIN_TOKEN, RTML_WRITE_TOKEN); decisions are public. */
export const ADMIN_TOKEN = 'fleet-admin-token-0123456789';
export { WRITE_TOKEN };

/** One replica's own extra `rtml serve` arguments and environment. */
export interface ReplicaSpec {
  args?: readonly string[];
  env?: Readonly<Record<string, string>>;
}

export interface FleetOptions {
  /** How many replicas, or each one's own spec. */
  replicas: number | readonly ReplicaSpec[];
  /** `rtml serve` arguments every replica gets (after the harness's own: repository, --port, --data-dir). */
  args?: readonly string[];
  env?: Readonly<Record<string, string>>;
  /** The model repository every replica serves; default: a temporary copy of examples/credit as service `credit`. */
  repository?: string;
  /** Also give each replica a --probe-port of its own. */
  probePorts?: boolean;
  /** Per start, until /v2/health/ready answers 200 and, with --workers, every worker listens (default 60 s). */
  readyTimeoutMs?: number;
}

export interface Replica {
  readonly index: number;
  /** http://127.0.0.1:PORT: the same across restarts. */
  readonly url: string;
  readonly probeUrl: string | null;
  readonly dataDir: string;
  /** The running process's pid (the cluster primary's with --workers); null while stopped. */
  readonly pid: number | null;
  readonly running: boolean;
  /** Every line it printed (stdout and stderr, pino JSON), across restarts. */
  readonly logs: string[];
  /** Sends `signal` (default SIGKILL) and waits for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Starts it again (after a kill: same port, data dir, arguments), once ready. */
  restart(): Promise<void>;
  /** Resolves with the first log line (already printed or to come) matching `pattern`. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** A request with the admin or write token (or none), JSON body. */
  request(path: string, init?: { method?: string; body?: unknown; auth?: 'admin' | 'write' }): Promise<Response>;
}

export interface Fleet {
  readonly replicas: readonly Replica[];
  readonly repository: string;
  /** The temporary folder holding every replica's data dir. */
  readonly dir: string;
  /** A round-robin client over the replicas, with `rows` lending_club rows (default 2,000) to cycle through. */
  client(options?: { rows?: number; idPrefix?: string }): Promise<FleetClient>;
  /** SIGTERM every running replica (SIGKILL after 20 s), then removes the temporary folder. */
  stop(): Promise<void>;
}

export { freeLoopbackPort };

export async function startFleet(options: FleetOptions): Promise<Fleet> {
  const dir = tempDir('rtml-fleet-');
  const repository = options.repository ?? creditRepository();
  const specs: readonly ReplicaSpec[] = typeof options.replicas === 'number' ? Array.from({ length: options.replicas }, () => ({})) : options.replicas;
  const replicas: ReplicaProcess[] = [];
  try {
    for (const [index, spec] of specs.entries()) {
      const dataDir = join(dir, `replica-${index}`);
      mkdirSync(dataDir);
      const args = [...(options.args ?? []), ...(spec.args ?? [])];
      const replica = new ReplicaProcess({
        index,
        repository,
        dataDir,
        port: await freeLoopbackPort(),
        probePort: options.probePorts ? await freeLoopbackPort() : null,
        args,
        env: { ...options.env, ...spec.env },
        readyTimeoutMs: options.readyTimeoutMs ?? 60_000,
      });
      replicas.push(replica);
    }
    // Started together: each loads its bundles while the others do.
    await Promise.all(replicas.map((r) => r.start()));
  } catch (err) {
    await Promise.all(replicas.map((r) => r.kill('SIGKILL')));
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    replicas,
    repository,
    dir,
    client: async ({ rows = 2000, idPrefix } = {}) => new FleetClient(replicas, await lendingClubExamples(rows), idPrefix),
    async stop() {
      await Promise.all(replicas.map((r) => r.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

interface ReplicaConfig {
  index: number;
  repository: string;
  dataDir: string;
  port: number;
  probePort: number | null;
  args: readonly string[];
  env: Readonly<Record<string, string>>;
  readyTimeoutMs: number;
}

/** The lines a process prints (stdout and stderr together, in arrival order), and waiting for one. */
export class OutputLines {
  readonly lines: string[] = [];
  private readonly waiters = new Set<{ pattern: RegExp; resolve: (line: string) => void }>();

  constructor(private readonly name: string) {}

  follow(...streams: Readable[]): void {
    for (const stream of streams) createInterface({ input: stream }).on('line', (line) => this.push(line));
  }

  push(line: string): void {
    this.lines.push(line);
    for (const waiter of this.waiters) {
      if (waiter.pattern.test(line)) {
        this.waiters.delete(waiter);
        waiter.resolve(line);
      }
    }
  }

  /** Resolves with the first line (already printed from line `from` on, or to come) matching `pattern`. */
  waitFor(pattern: RegExp, timeoutMs = 30_000, from = 0): Promise<string> {
    const seen = this.lines.slice(from).find((line) => pattern.test(line));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`${this.name} printed no line matching ${pattern} within ${timeoutMs / 1000} s:\n${this.lines.slice(-30).join('\n')}`));
      }, timeoutMs);
      const waiter = {
        pattern,
        resolve: (line: string) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      this.waiters.add(waiter);
    });
  }

  /** Lines parsed as JSON objects (pino's), the others left out. */
  json(): Record<string, unknown>[] {
    return this.lines.flatMap((line) => {
      try {
        const value: unknown = JSON.parse(line);
        return typeof value === 'object' && value !== null ? [value as Record<string, unknown>] : [];
      } catch {
        return [];
      }
    });
  }
}

class ReplicaProcess implements Replica {
  private readonly output: OutputLines;
  private child: ChildProcess | null = null;
  private exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | null = null;

  constructor(private readonly config: ReplicaConfig) {
    this.output = new OutputLines(`replica ${config.index}`);
  }

  get logs() {
    return this.output.lines;
  }

  get index() {
    return this.config.index;
  }
  get url() {
    return `http://127.0.0.1:${this.config.port}`;
  }
  get probeUrl() {
    return this.config.probePort === null ? null : `http://127.0.0.1:${this.config.probePort}`;
  }
  get dataDir() {
    return this.config.dataDir;
  }
  get pid() {
    return this.running ? (this.child?.pid ?? null) : null;
  }
  get running() {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(): Promise<void> {
    const { repository, port, probePort, dataDir, args, env } = this.config;
    const argv = [join(ROOT, 'bin/rtml.mjs'), 'serve', repository, '--port', String(port), '--data-dir', dataDir, '--watch-interval-ms', '0', '--drain-grace-ms', '0', ...lagShedding(args)];
    if (probePort !== null) argv.push('--probe-port', String(probePort));
    const child = spawn(process.execPath, [...argv, ...args], {
      cwd: ROOT,
      env: { ...process.env, RTML_ADMIN_TOKEN: ADMIN_TOKEN, RTML_WRITE_TOKEN: WRITE_TOKEN, RTML_DECIDE_TOKEN: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const from = this.output.lines.length;
    this.output.push(`--- replica ${this.index} started, pid ${child.pid}`);
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    this.output.follow(child.stdout!, child.stderr!);
    await this.waitReady(child);
    // With --workers the first worker is ready before the others have loaded: wait for the
    // primary's word that all listen (an info line: not with --log-level warn or above).
    const workers = args.indexOf('--workers');
    if (workers >= 0 && args[workers + 1] !== '1') await this.output.waitFor(/"all workers listening"/, this.config.readyTimeoutMs, from);
  }

  /** Polls readiness: any process answering 200 on the port (with --workers, at least one worker). */
  private async waitReady(child: ChildProcess): Promise<void> {
    const deadline = Date.now() + this.config.readyTimeoutMs;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`replica ${this.index} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${this.logs.join('\n')}`);
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`replica ${this.index} was not ready within ${this.config.readyTimeoutMs / 1000} s:\n${this.logs.join('\n')}`);
      }
      try {
        const res = await fetch(`${this.url}/v2/health/ready`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL') {
    if (!this.child || !this.exited) return { code: null, signal: null };
    if (this.running) this.child.kill(signal);
    return this.exited;
  }

  async restart(): Promise<void> {
    if (this.running) await this.kill('SIGTERM');
    await this.start();
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    const force = setTimeout(() => this.child?.kill('SIGKILL'), 20_000);
    await this.kill('SIGTERM');
    clearTimeout(force);
  }

  waitForLog(pattern: RegExp, timeoutMs = 30_000): Promise<string> {
    return this.output.waitFor(pattern, timeoutMs);
  }

  request(path: string, init: { method?: string; body?: unknown; auth?: 'admin' | 'write' } = {}): Promise<Response> {
    const headers: Record<string, string> = {};
    if (init.body !== undefined) headers['content-type'] = 'application/json';
    if (init.auth) headers.authorization = `Bearer ${init.auth === 'admin' ? ADMIN_TOKEN : WRITE_TOKEN}`;
    return fetch(this.url + path, { method: init.method ?? (init.body === undefined ? 'GET' : 'POST'), headers, body: init.body === undefined ? undefined : JSON.stringify(init.body) });
  }
}

/** One acknowledged decision: its id, which replica answered (and which process: x-rtml-pid), the row's true label. */
export interface DecisionAck {
  id: string;
  replica: number;
  pid: number | null;
  label: string;
}

/**
 * Sends lending_club decisions to the running replicas in turn (a replica the harness knows to
 * be stopped is skipped; one that dies unannounced costs its requests a connection error) and
 * records what became of each: acknowledged (2xx, kept by id), refused (another status), or
 * failed (no answer). Each decision carries a unique id, so the fleet's log can be checked
 * against `acknowledged` afterwards.
 */
export class FleetClient {
  readonly acknowledged = new Map<string, DecisionAck>();
  readonly refused: { id: string; replica: number; status: number; body: string }[] = [];
  readonly failed: { id: string; replica: number; error: string }[] = [];
  /** Applied to each row before it is sent (a drift to inject, say); null sends rows as they are. */
  transform: ((features: Record<string, unknown>) => Record<string, unknown>) | null = null;
  private sent = 0;
  private turn = 0;

  constructor(
    private readonly replicas: readonly Replica[],
    private readonly examples: readonly { features: Record<string, unknown>; label: string }[],
    private readonly idPrefix = `fleet-${process.pid}-${Date.now().toString(36)}`,
  ) {}

  /** Sends one decision to the next running replica; resolves with its acknowledgement, or null. */
  async send(): Promise<DecisionAck | null> {
    const live = this.replicas.filter((r) => r.running);
    if (live.length === 0) throw new Error('no replica is running');
    const replica = live[this.turn++ % live.length];
    const n = this.sent++;
    const example = this.examples[n % this.examples.length];
    const features = this.transform ? this.transform({ ...example.features }) : example.features;
    const label = example.label;
    const id = `${this.idPrefix}-${n}`;
    let res: Response;
    let body: string;
    try {
      res = await fetch(replica.url + DECISIONS_PATH, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id, ...features }) });
      body = await res.text();
    } catch (err) {
      const error = err as Error;
      this.failed.push({ id, replica: replica.index, error: `${error.message}${error.cause instanceof Error ? `: ${error.cause.message}` : ''}` });
      return null;
    }
    if (res.status < 200 || res.status >= 300) {
      this.refused.push({ id, replica: replica.index, status: res.status, body: body.slice(0, 300) });
      return null;
    }
    // A 2xx that is not this decision's answer is a bug, not a lost request: fail loudly.
    const answered = (JSON.parse(body) as { id?: unknown }).id;
    if (answered !== id) throw new Error(`replica ${replica.index} answered ${res.status} for ${id} with id ${JSON.stringify(answered)}`);
    const pid = Number(res.headers.get('x-rtml-pid'));
    const ack = { id, replica: replica.index, pid: Number.isInteger(pid) && pid > 0 ? pid : null, label };
    this.acknowledged.set(id, ack);
    return ack;
  }

  /**
   * Posts the true labels of `acks` as outcomes (bulk, with the write token), each to the
   * replica `shift` places after the one that made the decision (default 1: always another
   * replica when there are several); resolves with the answers' totals.
   */
  async sendOutcomes(acks: Iterable<DecisionAck>, shift = 1): Promise<{ joined: number; unknown: number; rejected: number }> {
    const byReplica = new Map<number, { id: string; label: string }[]>();
    for (const ack of acks) {
      const to = (ack.replica + shift) % this.replicas.length;
      byReplica.set(to, [...(byReplica.get(to) ?? []), { id: ack.id, label: ack.label }]);
    }
    const totals = { joined: 0, unknown: 0, rejected: 0 };
    for (const [to, outcomes] of byReplica) {
      for (let at = 0; at < outcomes.length; at += 1000) {
        const res = await this.replicas[to].request(DECISIONS_PATH.replace(/decisions$/, 'outcomes'), { body: outcomes.slice(at, at + 1000), auth: 'write' });
        const answer = (await res.json()) as { joined?: number; unknown_count?: number; rejected?: number; error?: string };
        if (res.status !== 200) throw new Error(`replica ${to} answered ${res.status} to outcomes: ${JSON.stringify(answer)}`);
        totals.joined += answer.joined ?? 0;
        totals.unknown += answer.unknown_count ?? 0;
        totals.rejected += answer.rejected ?? 0;
      }
    }
    return totals;
  }

  /** Sends `count` decisions, `concurrency` at a time. */
  async decide(count: number, concurrency = 4): Promise<void> {
    let left = count;
    const lane = async () => {
      while (left > 0) {
        left--;
        await this.send();
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, concurrency) }, lane));
  }

  /** Keeps `concurrency` decisions in flight until `stop()`, which resolves once the last answer is in. */
  load(concurrency = 4): { stop(): Promise<void> } {
    let running = true;
    const lane = async () => {
      while (running) {
        if (!this.replicas.some((r) => r.running)) await new Promise((resolve) => setTimeout(resolve, 50));
        else await this.send();
      }
    };
    const lanes = Promise.all(Array.from({ length: Math.max(1, concurrency) }, lane));
    return {
      stop: async () => {
        running = false;
        await lanes;
      },
    };
  }
}
