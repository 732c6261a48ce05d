/**
 * The load guard: what the server does when more is asked of it than it can do, and when it
 * is told to stop. Every request it cannot serve gets a 503 with Retry-After, decided in
 * `onRequest` (before the body is read or parsed, so a refusal costs a few microseconds),
 * never a reset; health probes and /metrics are never refused. (A connection still waiting in
 * the accept queue is another matter: see listenForProbes below and README's Benchmarks.)
 *
 * - Scoring routes (`SCORING_ROUTE`): at most `maxInFlight` at once, and none admitted while
 *   the event loop keeps lagging more than `maxEventLoopDelayMs` (two 100 ms windows in a
 *   row), so that event-loop turns stay short: the requests already admitted and the probes
 *   keep being answered, and queued connections keep being accepted (one per turn).
 * - Connections beyond `maxConnections`: their requests are answered 503 + Connection: close,
 *   so they go away (Node's own `server.maxConnections` would reset them instead).
 * - Draining (`drain()`, on SIGTERM): readiness answers 503 so a load balancer stops sending;
 *   for `drainGraceMs` the listener stays open and every new request is answered 503 +
 *   Retry-After + Connection: close (answers to requests already admitted say close too),
 *   then the caller closes the listener and waits for what is in flight.
 * - Probes can have a listener of their own (`listenForProbes`). Node (libuv >= 1.45) accepts
 *   one connection per event-loop turn, and under overload a turn takes tens of milliseconds, so
 *   a probe's new connection on the main port waits behind every connection queued before it
 *   (seconds with 2,000 clients); a second port has its own, short, accept queue.
 */
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import type { Metrics } from './metrics.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** How the load guard treats the route: scoring work is limited and shed first; probes never are. */
    load?: 'scoring' | 'probe';
  }
}

/** Options of the routes that score (decisions, infer). */
export const SCORING_ROUTE = { config: { load: 'scoring' as const } };
/** Options of the routes a load balancer or Prometheus polls: answered under any load and while draining. */
export const PROBE_ROUTE = { config: { load: 'probe' as const } };

export interface LoadGuardConfig {
  /** Scoring requests served at once; beyond it, 503. */
  maxInFlight: number;
  /** Shed scoring requests while the event loop lags more than this (0: never). */
  maxEventLoopDelayMs: number;
  /** Open connections served; requests on connections beyond it get 503 + Connection: close (0: no limit). */
  maxConnections: number;
  /** After SIGTERM, how long to keep accepting (answering 503) before closing the listener. */
  drainGraceMs: number;
}

export interface LoadGuard {
  /** True once `drain()` was called: readiness answers 503. */
  readonly draining: boolean;
  /** Turns not-ready and refuses new work for the grace period; resolves when the listener may close. */
  drain(): Promise<void>;
  /** Serves the probe routes, and only those, on a port of their own; resolves with its address. */
  listenForProbes(port: number, host: string): Promise<string>;
  /** Stops the event-loop monitor and the probe listener. */
  close(): Promise<void>;
}

type Refusal = 'in_flight' | 'event_loop' | 'connections' | 'draining';

/** Fixed bodies: a refusal serializes nothing. */
const REFUSALS: Record<Refusal, string> = {
  in_flight: JSON.stringify({ error: 'overloaded: too many requests in flight; retry shortly' }),
  event_loop: JSON.stringify({ error: 'overloaded: the server is behind; retry shortly' }),
  connections: JSON.stringify({ error: 'overloaded: too many open connections; retry on a new connection' }),
  draining: JSON.stringify({ error: 'shutting down; retry on a new connection' }),
};
/** Seconds a client should wait; a load balancer retries elsewhere at once. */
const RETRY_AFTER_S = '1';
/** How often the event-loop delay is judged: short enough to react within a few event-loop turns. */
const DELAY_WINDOW_MS = 100;
/** The histogram's timer period; its samples are whole periods, so the lag is a sample minus this. */
const DELAY_RESOLUTION_MS = 10;

export function guardLoad(app: FastifyInstance, config: LoadGuardConfig, metrics: Metrics): LoadGuard {
  let draining = false;

  let inFlight = 0;
  const release = () => {
    inFlight--;
    metrics.inFlight.set(inFlight);
  };

  // The event loop's lag, judged per window from a histogram sampled by a libuv timer (a
  // window without samples: the loop did not turn at all). Two late windows in a row shed
  // scoring until a window comes in under the limit: sustained lag is overload, while one
  // long task (startup, a model compiling) is over by the time its window is judged.
  let behind = false;
  let lastLate = false;
  const delay = monitorEventLoopDelay({ resolution: DELAY_RESOLUTION_MS });
  let judge: NodeJS.Timeout | null = null;
  if (config.maxEventLoopDelayMs > 0) {
    delay.enable();
    judge = setInterval(() => {
      const late = delay.count === 0 || delay.mean / 1e6 - DELAY_RESOLUTION_MS > config.maxEventLoopDelayMs;
      behind = late && lastLate;
      lastLate = late;
      delay.reset();
    }, DELAY_WINDOW_MS);
    judge.unref();
  }

  // Connections past the limit are marked when they open; their requests are refused and they close.
  let open = 0;
  const excess = new WeakSet<Socket>();
  if (config.maxConnections > 0) {
    app.server.on('connection', (socket: Socket) => {
      open++;
      if (open > config.maxConnections) excess.add(socket);
      socket.once('close', () => open--);
    });
  }

  const refuse = (reply: FastifyReply, why: Refusal, close: boolean) => {
    metrics.overloadRejections.inc({ reason: why });
    void reply.code(503).header('retry-after', RETRY_AFTER_S).header('content-type', 'application/json; charset=utf-8');
    if (close) void reply.header('connection', 'close');
    void reply.send(REFUSALS[why]);
  };

  // Callback style rather than async: no promise per request on the hot path. Answering without
  // calling done() ends the request there; Node discards the unread body.
  app.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => {
    const load = request.routeOptions.config.load;
    if (load === 'probe') return done();
    if (draining) return refuse(reply, 'draining', true);
    if (config.maxConnections > 0 && excess.has(request.raw.socket)) return refuse(reply, 'connections', true);
    if (load !== 'scoring') return done();
    if (inFlight >= config.maxInFlight) return refuse(reply, 'in_flight', false);
    if (behind) return refuse(reply, 'event_loop', false);
    inFlight++;
    metrics.inFlight.set(inFlight);
    // Counted down however the request ends: a response emits 'close' once, after 'finish'
    // (answered or failed) or when the client went away, so one shared listener does.
    reply.raw.once('close', release);
    done();
  });
  const probePaths = new Set<string>();
  app.addHook('onRoute', (route) => {
    if (route.config?.load === 'probe') probePaths.add(route.url);
  });
  let probes: HttpServer | null = null;

  // Requests admitted before the drain began are answered in full, and told to close their connection.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (draining) void reply.header('connection', 'close');
    done(null, payload);
  });

  return {
    get draining() {
      return draining;
    },
    async drain() {
      draining = true;
      if (config.drainGraceMs > 0) await new Promise((resolve) => setTimeout(resolve, config.drainGraceMs));
    },
    async listenForProbes(port, host) {
      probes = createServer((req, res) => {
        if (probePaths.has((req.url ?? '').split('?')[0])) return app.routing(req, res);
        res.writeHead(404, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify({ error: `this port serves only ${[...probePaths].join(', ')}` }));
      });
      const listening = probes;
      await new Promise<void>((resolve, reject) => listening.once('error', reject).listen(port, host, resolve));
      const { address, port: bound } = listening.address() as AddressInfo;
      return `http://${address.includes(':') ? `[${address}]` : address}:${bound}`;
    },
    async close() {
      if (judge) clearInterval(judge);
      delay.disable();
      const listening = probes;
      if (listening) await new Promise((resolve) => listening.close(resolve));
    },
  };
}
