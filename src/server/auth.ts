/**
 * Who may do what. Three roles, each a bearer token the operator configures:
 *
 *   decide  POST decisions and OIP infer. Public unless a decide token is configured, so
 *           existing callers keep working; with one, they need it (or the admin token).
 *   write   what feeds the monitors, the features and the next training set: outcomes,
 *           events, entity updates. Needs the write token or the admin token; with
 *           neither configured these routes answer 403 (disabled), never open.
 *   admin   operations on the running service and its log: decision look-up, kill switch,
 *           safe mode, alert acknowledgement, repository index, load and unload.
 *
 * Reads that describe the service (health, metadata, /metrics, monitoring) are public.
 *
 * Browsers: a page on another origin must not make a visitor's browser write here. No
 * route answers CORS preflight or sends Access-Control-Allow-* headers, bodies are parsed
 * only for application/json and JSON lines (never text/plain, form or multipart, the types
 * a cross-origin page may send without preflight), and a write whose Origin (or
 * Sec-Fetch-Site) says it comes from another site is refused before anything else.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';

export type Role = 'decide' | 'write' | 'admin';

export interface Tokens {
  admin: string | null;
  write: string | null;
  decide: string | null;
}

export type AuthCheck = (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => void;

const HOW_TO: Record<Role, string> = {
  decide: 'RTML_DECIDE_TOKEN or --decide-token-file',
  write: 'RTML_WRITE_TOKEN or --write-token-file (or the admin token)',
  admin: 'RTML_ADMIN_TOKEN or --admin-token-file',
};

const WHAT: Record<Role, string> = {
  decide: 'decisions',
  write: 'writes (outcomes, events, entities)',
  admin: 'admin operations',
};

/** A preHandler per role. Callback style: no promise per request on the decision path. */
export function authChecks(tokens: Tokens): Record<Role, AuthCheck> {
  const buffers = (...values: (string | null)[]) => values.filter((v): v is string => !!v).map((v) => Buffer.from(v));
  const accepted: Record<Role, Buffer[]> = {
    admin: buffers(tokens.admin),
    write: buffers(tokens.write, tokens.admin),
    decide: buffers(tokens.decide, tokens.admin),
  };
  const check = (role: Role): AuthCheck => {
    // Decisions are public unless the operator asks otherwise.
    const open = role === 'decide' && !tokens.decide;
    const allowed = accepted[role];
    return (request, reply, done) => {
      if (open) return done();
      if (allowed.length === 0) {
        void reply.code(403).send({ error: `${WHAT[role]} are disabled: configure a token (${HOW_TO[role]})` });
        return;
      }
      const header = request.headers.authorization;
      const given = typeof header === 'string' && header.startsWith('Bearer ') ? Buffer.from(header.slice(7)) : null;
      if (given === null || !allowed.some((t) => t.length === given.length && timingSafeEqual(t, given))) {
        void reply
          .code(401)
          .header('www-authenticate', 'Bearer')
          .send({ error: `${WHAT[role]} need a valid bearer token (Authorization: Bearer <token>; ${HOW_TO[role]})` });
        return;
      }
      if (role === 'admin') request.log.info({ route: request.routeOptions.url, params: request.params }, 'admin operation');
      done();
    };
  };
  return { decide: check('decide'), write: check('write'), admin: check('admin') };
}

/**
 * onRequest: a state-changing request a browser sends from another site is refused whatever
 * its credentials. Server-to-server callers send neither header and pass.
 */
export function refuseCrossSiteWrites(request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void {
  const method = request.method;
  if (method === 'GET' || method === 'HEAD') return done();
  const site = request.headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site') {
    void reply.code(403).send({ error: 'cross-site requests may not write here' });
    return;
  }
  const origin = request.headers.origin;
  if (origin !== undefined) {
    let host: string | null = null;
    try {
      host = origin === 'null' ? null : new URL(origin).host;
    } catch {
      host = null;
    }
    if (host === null || host !== request.headers.host) {
      void reply.code(403).send({ error: `requests from another origin (${String(origin).slice(0, 100)}) may not write here` });
      return;
    }
  }
  done();
}
