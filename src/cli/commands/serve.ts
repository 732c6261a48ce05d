import { InvalidArgumentError, type Command } from 'commander';
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { openEmbeddedFeatureStore } from '../../features/embedded.ts';
import { openDecisionLog } from '../../log/index.ts';
import { createServer, DEFAULT_CONFIG, type FeatureStoreFactory } from '../../server/app.ts';
import { collectPairs, decisionLogOption, defaultDataDir, parseWholeNumber } from '../shared.ts';
import { parseWorkers, serveAsPrimary } from '../workers.ts';
import { isPostgresUrl } from '../../store/postgres.ts';

/** Node's default is 511: 2,000 clients connecting at once overflow it, and each dropped SYN costs its client 1-3 s. */
const DEFAULT_BACKLOG = 4096;

/** `rtml serve [repository]`: serve every bundle of a model repository over HTTP until SIGTERM or SIGINT. */
export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('serve every bundle in a model repository (one folder per service) over HTTP')
    .argument('[repository]', 'model repository directory', 'examples')
    .option('-p, --port <port>', 'port (env PORT)', parseWholeNumber, Number(process.env.PORT ?? 8080))
    .option('--host <host>', 'address to listen on (env HOST)', process.env.HOST ?? '127.0.0.1')
    .option('--probe-port <port>', 'also serve the health probes and /metrics on this port, so they never queue behind scoring connections (env PROBE_PORT)', parseWholeNumber, process.env.PROBE_PORT ? Number(process.env.PROBE_PORT) : undefined)
    .option('--data-dir <dir>', 'where the decision log lives (env RTML_DATA_DIR)', defaultDataDir())
    .addOption(decisionLogOption())
    .option('--workers <n|auto>', 'processes serving the port, one event loop each (auto: one per core); more than 1 needs --decision-log postgres:// (env RTML_WORKERS)', process.env.RTML_WORKERS ?? '1')
    .option('--admin-token-file <file>', 'file holding the admin bearer token (or env RTML_ADMIN_TOKEN); without one, admin operations are disabled')
    .option('--write-token-file <file>', 'file holding the bearer token for outcomes, events and entity updates (or env RTML_WRITE_TOKEN); the admin token works too; with neither, writes are disabled')
    .option('--decide-token-file <file>', 'file holding a bearer token decisions and inference then need (or env RTML_DECIDE_TOKEN); without one they are public')
    .option('--max-in-flight <n>', 'scoring requests served at once before answering 503', parseWholeNumber, DEFAULT_CONFIG.maxInFlight)
    .option('--max-event-loop-delay-ms <ms>', 'answer scoring requests 503 while the event loop lags more than this (0: off)', parseWholeNumber, DEFAULT_CONFIG.maxEventLoopDelayMs)
    .option('--max-connections <n>', 'open connections served; requests on more get 503 and Connection: close (0: no limit)', parseWholeNumber, DEFAULT_CONFIG.maxConnections)
    .option('--backlog <n>', 'connections the kernel queues until accepted (capped by net.core.somaxconn)', parseWholeNumber, DEFAULT_BACKLOG)
    .option('--request-timeout-ms <ms>', 'a request (headers and body) must arrive within this', parseWholeNumber, DEFAULT_CONFIG.requestTimeoutMs)
    .option('--keep-alive-timeout-ms <ms>', 'close idle keep-alive connections after this; keep above a load balancer\'s idle timeout', parseWholeNumber, DEFAULT_CONFIG.keepAliveTimeoutMs)
    .option('--drain-grace-ms <ms>', 'on SIGTERM: not ready, new requests answered 503 for this long before the listener closes', parseWholeNumber, DEFAULT_CONFIG.drainGraceMs)
    .option('--deadline-ms <ms>', 'per-request budget for the model; past it the fallback policy decides', parseWholeNumber, DEFAULT_CONFIG.deadlineMs)
    .option('--body-limit <bytes>', 'largest request body', parseWholeNumber, DEFAULT_CONFIG.bodyLimit)
    .option('--watch-interval-ms <ms>', 'poll the repository for new versions this often (0: off)', parseWholeNumber, DEFAULT_CONFIG.watchIntervalMs)
    .option('--log-sync <mode>', 'decision log durability: normal (survives a killed process) or full (also a power loss)', 'full')
    .option('--log-timeout-ms <ms>', 'a decision not logged this long after it was decided answers 503 and is never logged (0: wait up to the 5 s busy timeout)', parseWholeNumber, 1000)
    .option('--log-level <level>', 'pino log level', process.env.LOG_LEVEL ?? 'info')
    .option('--feature-store <kind>', 'where sourced features live: embedded (in-process, durable under --data-dir) or redis', process.env.RTML_FEATURE_STORE ?? 'embedded')
    .option('--redis-url <url>', 'Redis for --feature-store redis (env REDIS_URL)', process.env.REDIS_URL ?? 'redis://127.0.0.1:6379')
    .option('--redis-stream <stream=key>', 'with --feature-store redis: ingest events of STREAM from the Redis Stream KEY (repeatable)', collectPairs, {})
    .option('--redis-stream-group <group>', 'consumer group of --redis-stream: server processes share the entries, each acknowledged once ingested', 'rtml')
    .option('--redis-stream-from <id>', 'where a new consumer group starts: $ (new entries only), 0 (the whole stream) or an entry id', '$')
    .option('--alert-webhook <url>', 'POST alerts here as JSON, with retries (env RTML_ALERT_WEBHOOK)', process.env.RTML_ALERT_WEBHOOK)
    .action(async (repository: string, opts: ServeOptions) => {
      const workers = parseWorkers(opts.workers);
      if (workers > 1 && cluster.isPrimary) return serveAsPrimary(repository, { workers, decisionLog: opts.decisionLog, featureStore: opts.featureStore, logLevel: opts.logLevel });
      const adminToken = readToken(opts.adminTokenFile, 'RTML_ADMIN_TOKEN');
      const writeToken = readToken(opts.writeTokenFile, 'RTML_WRITE_TOKEN');
      const decideToken = readToken(opts.decideTokenFile, 'RTML_DECIDE_TOKEN');
      if (opts.logSync !== 'normal' && opts.logSync !== 'full') throw new InvalidArgumentError('--log-sync must be normal or full');
      if (opts.featureStore !== 'embedded' && opts.featureStore !== 'redis') throw new InvalidArgumentError('--feature-store must be embedded or redis');
      const consumed = Object.entries(opts.redisStream);
      if (consumed.length > 0 && opts.featureStore !== 'redis') throw new InvalidArgumentError('--redis-stream needs --feature-store redis');
      // After the argument checks: an open PostgreSQL pool would keep a refused command alive.
      const log = await openDecisionLog({ decisionLog: opts.decisionLog, dataDir: opts.dataDir, synchronous: opts.logSync, appendTimeoutMs: opts.logTimeoutMs || null });
      const openFeatureStore: FeatureStoreFactory =
        opts.featureStore === 'redis'
          ? async (streams, { definitions, logger }) => {
              const store = await (await import('../../features/redis.ts')).connectRedisFeatureStore({ url: opts.redisUrl, streams });
              // Entries are read as HTTP ingestion reads events: by the stream's declaration.
              for (const [stream, key] of consumed) {
                const definition = definitions.get(stream);
                if (!definition) {
                  await store.close();
                  throw new InvalidArgumentError(`--redis-stream ${stream}=${key}: no loaded bundle declares a stream named ${JSON.stringify(stream)}`);
                }
                store.consumeStream(key, stream, {
                  group: opts.redisStreamGroup,
                  from: opts.redisStreamFrom,
                  definition,
                  onError: (err) => logger.error({ err, stream, key }, 'reading the Redis Stream failed; retrying'),
                });
              }
              return store;
            }
          : async (streams) => {
              // A bundle loaded later (hot reload) must not give each worker its own store either.
              if (cluster.isWorker) throw new Error('the embedded feature store cannot be shared by several workers: serve with --feature-store redis, or --workers 1');
              return openEmbeddedFeatureStore({ dataDir: opts.dataDir, streams, synchronous: opts.logSync === 'normal' ? 'normal' : 'full' });
            };
      // The shared store's problems (an outage, a lost listener) go to the server's log once it exists.
      let reportOperations = (err: Error) => console.error(`operations store: ${err.message}`);
      const operations = opts.decisionLog && isPostgresUrl(opts.decisionLog) ? await (await import('../../ops/postgres.ts')).openPostgresOperationsStore({ url: opts.decisionLog, onError: (err) => reportOperations(err) }) : undefined;
      const monitorExchange =
        opts.decisionLog && isPostgresUrl(opts.decisionLog)
          ? await (await import('../../monitor/exchange/postgres.ts')).openPostgresMonitorExchange({ url: opts.decisionLog, onError: (err: Error) => reportOperations(err) })
          : undefined;
      // The dashboard's per-minute history beside the other shared stores (embedded: <data-dir>/history.sqlite).
      const history =
        opts.decisionLog && isPostgresUrl(opts.decisionLog)
          ? await (await import('../../dashboard/history-postgres.ts')).openPostgresHistoryStore({ url: opts.decisionLog, replica: `${hostname()}:${process.pid}`, onError: (err: Error) => reportOperations(err) })
          : undefined;
      const server = await createServer(
        {
          repository,
          adminToken,
          writeToken,
          decideToken,
          maxInFlight: opts.maxInFlight,
          maxEventLoopDelayMs: opts.maxEventLoopDelayMs,
          maxConnections: opts.maxConnections,
          drainGraceMs: opts.drainGraceMs,
          requestTimeoutMs: opts.requestTimeoutMs,
          keepAliveTimeoutMs: opts.keepAliveTimeoutMs,
          deadlineMs: opts.deadlineMs,
          bodyLimit: opts.bodyLimit,
          watchIntervalMs: opts.watchIntervalMs,
          logLevel: opts.logLevel,
          alertWebhook: opts.alertWebhook || null,
          dataDir: opts.dataDir,
        },
        log,
        openFeatureStore,
        // Shared mode: kill switch, safe mode, acknowledgements and loads obeyed by every replica.
        { operations, monitorExchange, history },
      );
      reportOperations = (err) => server.app.log.warn({ err: err.message }, 'operations store');
      let stopping = false;
      const shutdown = (signal: string) => {
        if (stopping) return;
        stopping = true;
        server.app.log.info({ signal, graceMs: opts.drainGraceMs }, 'draining: not ready, new requests answered 503, in-flight requests finish, then the decision log is flushed');
        server.close().then(
          () => process.exit(0),
          (err) => {
            server.app.log.error({ err }, 'unclean shutdown');
            process.exit(1);
          },
        );
      };
      // A cluster worker may get a signal twice (Ctrl-C reaches the whole process group and the
      // primary forwards it too): the second must not kill it mid-drain. Alone, a second Ctrl-C still does.
      const listen = cluster.isWorker ? 'on' : 'once';
      process[listen]('SIGTERM', () => shutdown('SIGTERM'));
      process[listen]('SIGINT', () => shutdown('SIGINT'));
      await server.app.listen({ port: opts.port, host: opts.host, backlog: opts.backlog });
      if (opts.probePort !== undefined) server.app.log.info(`Probes listening at ${await server.listenForProbes(opts.probePort, opts.host)}`);
    });
}

/** A bearer token from a file (trimmed) or the environment; empty means none. Short tokens are refused: they can be guessed. */
function readToken(file: string | undefined, env: string): string | null {
  const token = (file ? readFileSync(file, 'utf8') : (process.env[env] ?? '')).trim();
  if (token === '') return null;
  if (token.length < 16) throw new InvalidArgumentError(`${file ?? env}: a token needs at least 16 characters`);
  return token;
}

interface ServeOptions {
  port: number;
  host: string;
  probePort?: number;
  dataDir: string;
  decisionLog?: string;
  workers: string;
  adminTokenFile?: string;
  writeTokenFile?: string;
  decideTokenFile?: string;
  maxInFlight: number;
  maxEventLoopDelayMs: number;
  maxConnections: number;
  backlog: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  drainGraceMs: number;
  deadlineMs: number;
  bodyLimit: number;
  watchIntervalMs: number;
  logSync: string;
  logTimeoutMs: number;
  logLevel: string;
  alertWebhook?: string;
  featureStore: string;
  redisUrl: string;
  redisStream: Record<string, string>;
  redisStreamGroup: string;
  redisStreamFrom: string;
}
