/**
 * `rtml serve --workers N`: N processes serving one port on one machine. A Node process runs
 * its event loop on one core; with N > 1 the `rtml serve` process becomes a node:cluster
 * primary that serves nothing itself: it forks N workers, each running the ordinary serve
 * code, whose listeners (the main port and `--probe-port`) the cluster shares, handing
 * connections out round-robin. The primary restarts a worker that dies (with backoff, giving up
 * if they crash-loop), forwards SIGTERM and SIGINT so every worker drains as a single server
 * does, and exits once all have exited.
 *
 * State that matters must then be shared: several workers require the PostgreSQL decision log
 * (and the operations and monitor state that live beside it) and, for bundles that gather
 * features, the Redis feature store. {@link workersRefusal} says so before anything is forked.
 */
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from 'commander';
import pino from 'pino';
import { readManifest } from '../bundle/load.ts';
import { bundleDirs, ModelRepository } from '../server/repository.ts';
import { isPostgresUrl } from '../store/postgres.ts';
import { CliError, EXIT_ERROR } from './shared.ts';

/** How every rtml process starts (dist/ when built, else the sources through tsx): workers start the same way. */
const RTML_BIN = fileURLToPath(new URL('../../bin/rtml.mjs', import.meta.url));

/** `--workers`: a whole number >= 1, or `auto` (one per core this process may use). */
export function parseWorkers(value: string): number {
  if (value.trim().toLowerCase() === 'auto') return availableParallelism();
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`--workers must be a whole number >= 1 or auto, not ${JSON.stringify(value)}`);
  return n;
}

export interface WorkersPlan {
  workers: number;
  /** `--decision-log` (or RTML_DECISION_LOG): a PostgreSQL URL or a path; undefined: SQLite under --data-dir. */
  decisionLog: string | undefined;
  /** `--feature-store`: embedded or redis. */
  featureStore: string;
  /** Services of the repository whose bundles gather features from sources (they need a feature store). */
  servicesReadingSources: readonly string[];
}

/**
 * Why `--workers` cannot run as asked, or null when it can. Several workers need the shared
 * stores: with the embedded ones each process would keep its own SQLite decision-log writer,
 * its own monitors and its own operations (kill switch, safe mode), and its own feature store.
 */
export function workersRefusal(plan: WorkersPlan): string | null {
  if (plan.workers <= 1) return null;
  if (plan.decisionLog === undefined || !isPostgresUrl(plan.decisionLog)) {
    return (
      `rtml serve: --workers ${plan.workers} needs the shared stores: a PostgreSQL decision log. ` +
      `With the embedded SQLite log (${plan.decisionLog === undefined ? 'under --data-dir' : plan.decisionLog}) each worker process would keep its own SQLite writer, ` +
      `its own monitors and its own operations state (kill switch, safe mode), so outcomes, alerts and operations would each see one worker's share.\n` +
      `Give --decision-log postgres://USER@HOST/DB (or RTML_DECISION_LOG), or serve with --workers 1.\n`
    );
  }
  if (plan.featureStore === 'embedded' && plan.servicesReadingSources.length > 0) {
    return (
      `rtml serve: --workers ${plan.workers} with --feature-store embedded: ${plan.servicesReadingSources.join(', ')} gather${plan.servicesReadingSources.length === 1 ? 's' : ''} features from sources, ` +
      `and each worker process would keep its own embedded feature store, seeing only the events sent to it.\n` +
      `Use --feature-store redis --redis-url redis://HOST:PORT (shared by every worker), or serve with --workers 1.\n`
    );
  }
  return null;
}

/**
 * Services of a model repository whose bundles (any version) read features from sources,
 * judged from their manifests alone (no model is loaded). A bundle whose manifest does not
 * parse is left to the workers, which report it as a single server does.
 */
export async function servicesReadingSources(repository: string): Promise<string[]> {
  const silent = { info() {}, warn() {}, error() {} };
  const names: string[] = [];
  for (const name of new ModelRepository(repository, silent).discover()) {
    for (const dir of bundleDirs(join(repository, name))) {
      const manifest = await readManifest(dir).catch(() => null);
      if (manifest?.features?.some((f) => f.source !== undefined)) {
        names.push(name);
        break;
      }
    }
  }
  return names;
}

export interface RestartPolicy {
  /** Delay before the first restart; doubled for each further unexpected exit within the window. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** More unexpected exits than this within `windowMs` is a crash loop: the primary gives up. */
  maxExits: number;
  windowMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = { baseDelayMs: 100, maxDelayMs: 5000, maxExits: 5, windowMs: 60_000 };

/**
 * Counts unexpected worker exits over a sliding window: each answers how long to wait before
 * the restart (exponential backoff over the recent exits), or null once they are a crash loop.
 * One worker killed now and then is restarted at once; a bundle or database that makes every
 * start fail stops the primary within seconds instead of forking forever.
 */
export class CrashLoopGuard {
  private readonly exits: number[] = [];

  constructor(private readonly policy: RestartPolicy = DEFAULT_RESTART_POLICY) {}

  /** Records an unexpected exit at `now` (ms); the restart delay in ms, or null to give up. */
  recordExit(now: number): number | null {
    this.exits.push(now);
    while (this.exits.length > 0 && this.exits[0] <= now - this.policy.windowMs) this.exits.shift();
    if (this.exits.length > this.policy.maxExits) return null;
    return Math.min(this.policy.maxDelayMs, this.policy.baseDelayMs * 2 ** (this.exits.length - 1));
  }

  /** Unexpected exits within the window, as of the last one recorded. */
  get recent(): number {
    return this.exits.length;
  }
}

/** What the primary logs with (pino's shape: merged object first, then the message). */
export interface PrimaryLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface PrimaryOptions {
  workers: number;
  logger: PrimaryLogger;
  /** The script each worker runs, and its arguments: by default this very command line through bin/rtml.mjs. */
  exec?: string;
  args?: readonly string[];
  /** Node options of the workers: by default the primary's own (so --cpu-prof and the like reach them). */
  execArgv?: readonly string[];
  policy?: RestartPolicy;
  /** Where the crash-loop verdict goes (besides the log): standard error by default. */
  stderr?: (text: string) => void;
}

/**
 * Runs the cluster primary until every worker has exited; resolves with the exit status:
 * 0 when stopped by SIGTERM/SIGINT and every worker exited 0, 1 when some worker did not or
 * the workers crash-looped.
 */
export function runPrimary(options: PrimaryOptions): Promise<number> {
  const { workers, logger } = options;
  const guard = new CrashLoopGuard(options.policy);
  const stderr = options.stderr ?? ((text: string) => process.stderr.write(text));
  // Round-robin by the primary (Node's default except on Windows), said here so an environment
  // variable (NODE_CLUSTER_SCHED_POLICY) cannot leave it to the kernel, which favours a few.
  cluster.schedulingPolicy = cluster.SCHED_RR;
  cluster.setupPrimary({
    exec: options.exec ?? RTML_BIN,
    args: [...(options.args ?? process.argv.slice(2))],
    execArgv: [...(options.execArgv ?? process.execArgv)],
  });

  /** Which of the N places a worker fills, and when it started. */
  const running = new Map<Worker, { slot: number; startedAt: number; listening: boolean }>();
  const restarts = new Set<NodeJS.Timeout>();
  let stopping: NodeJS.Signals | 'crash-loop' | null = null;
  /** The signal last sent to every worker. */
  let sent: NodeJS.Signals | null = null;
  let unclean = false;
  let allListeningLogged = false;

  return new Promise<number>((resolve) => {
    const finishIfDone = () => {
      if (stopping === null || running.size > 0) return;
      for (const signal of SIGNALS) process.removeListener(signal, onSignal);
      cluster.removeListener('exit', onExit);
      const status = stopping === 'crash-loop' || unclean ? 1 : 0;
      logger.info({ status }, 'all workers exited');
      resolve(status);
    };

    const start = (slot: number) => {
      const worker = cluster.fork();
      running.set(worker, { slot, startedAt: Date.now(), listening: false });
      logger.info({ worker: worker.id, slot, workerPid: worker.process.pid }, 'worker started');
      worker.on('listening', (address) => {
        const state = running.get(worker);
        logger.info({ worker: worker.id, slot, workerPid: worker.process.pid, port: address.port }, 'worker listening');
        if (!state || state.listening) return;
        state.listening = true;
        if (!allListeningLogged && running.size === workers && [...running.values()].every((s) => s.listening)) {
          allListeningLogged = true;
          logger.info({ workers }, 'all workers listening');
        }
      });
    };

    const stopAll = (signal: NodeJS.Signals) => {
      sent = signal;
      for (const timer of restarts) clearTimeout(timer);
      restarts.clear();
      for (const worker of running.keys()) worker.process.kill(signal);
    };

    const onExit = (worker: Worker, code: number | null, signal: NodeJS.Signals | null) => {
      const state = running.get(worker);
      running.delete(worker);
      const fields = { worker: worker.id, slot: state?.slot, workerPid: worker.process.pid, code, signal, uptimeMs: state ? Date.now() - state.startedAt : null };
      if (stopping !== null) {
        // A worker still starting has no signal handler yet: the signal ends it, with nothing to drain.
        if (code === 0 || (signal !== null && signal === sent && !state?.listening)) logger.info(fields, 'worker exited');
        else {
          unclean = true;
          logger.warn(fields, 'worker exited uncleanly while stopping');
        }
        finishIfDone();
        return;
      }
      logger.error(fields, 'worker exited unexpectedly');
      const delay = guard.recordExit(Date.now());
      if (delay === null) {
        const policy = options.policy ?? DEFAULT_RESTART_POLICY;
        const how = signal ? `signal ${signal}` : `code ${code}`;
        const verdict =
          `rtml serve: the workers are crash-looping: ${guard.recent} unexpected exits within ${policy.windowMs / 1000} s (the last: worker pid ${worker.process.pid}, ${how}); ` +
          `not restarting them. Their own log lines above say why.\n`;
        logger.error({ exits: guard.recent, windowMs: policy.windowMs }, 'workers crash-looping: giving up');
        stderr(verdict);
        stopping = 'crash-loop';
        stopAll('SIGTERM');
        finishIfDone();
        return;
      }
      const slot = state?.slot ?? 0;
      logger.warn({ slot, delayMs: delay, recentExits: guard.recent }, 'restarting worker');
      const timer = setTimeout(() => {
        restarts.delete(timer);
        if (stopping === null) start(slot);
      }, delay);
      restarts.add(timer);
    };

    // Each worker drains on its own signal (readiness 503, in-flight requests finish, the log
    // is flushed); a second signal to the primary stops them without waiting.
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping !== null) {
        logger.warn({ signal }, 'second signal: stopping the workers now');
        stopAll('SIGKILL');
        return;
      }
      stopping = signal;
      logger.info({ signal, workers: running.size }, 'stopping: every worker drains, then exits');
      stopAll(signal);
      finishIfDone();
    };

    cluster.on('exit', onExit);
    for (const signal of SIGNALS) process.on(signal, onSignal);
    logger.info({ workers, primaryPid: process.pid }, 'cluster primary: forking workers');
    for (let slot = 0; slot < workers; slot++) start(slot);
  });
}

const SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT'];

/**
 * `rtml serve` with `--workers` > 1, in the primary: refuses (exit 2) a configuration the
 * workers could not share, else runs the primary and exits with its status.
 */
export async function serveAsPrimary(repository: string, opts: Omit<WorkersPlan, 'servicesReadingSources'> & { logLevel: string }): Promise<never> {
  const refusal = workersRefusal({ ...opts, servicesReadingSources: opts.featureStore === 'embedded' ? await servicesReadingSources(repository) : [] });
  if (refusal) throw new CliError(refusal, EXIT_ERROR);
  // Synchronous: the primary logs little, and exits right after its last line.
  const logger = pino({ level: opts.logLevel, base: { pid: process.pid, role: 'primary' } }, pino.destination({ dest: 1, sync: true }));
  process.exit(await runPrimary({ workers: opts.workers, logger }));
}
