/**
 * What a request body may be, checked before anything allocates from it: JSON (objects,
 * arrays) and JSON lines, nested at most MAX_DEPTH deep, with `__proto__` and
 * `constructor.prototype` keys refused (secure-json-parse, fastify's own), and nothing
 * else. text/plain, forms and multipart get 415: they are what a page on another site can
 * make a browser send without asking first, and nothing here needs them.
 *
 * Depth is bounded because every later step that walks a value (validation messages,
 * flattening tensors, logging) would otherwise be a recursion a caller controls.
 */
import { STATUS_CODES } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { jsonDepthExceeds } from '../config/json.ts';

/** Deep enough for every body rtml takes (an OIP tensor of shape [n, 1] is 4 levels). */
export const MAX_DEPTH = 32;
/** JSON lines in one bulk body. */
export const MAX_LINES = 100_000;

export const JSON_LINES_TYPES = ['application/x-ndjson', 'application/jsonl', 'application/json-lines'];

/** A JSON-lines body, parsed line by line: a bad line is reported in place and the rest are kept. */
export interface JsonLines {
  readonly kind: 'json-lines';
  /** One per non-blank line, in order. */
  readonly items: readonly ({ line: number; ok: true; value: unknown } | { line: number; ok: false; message: string })[];
}

export function isJsonLines(body: unknown): body is JsonLines {
  return typeof body === 'object' && body !== null && (body as { kind?: unknown }).kind === 'json-lines' && Array.isArray((body as JsonLines).items);
}

/** A bulk body's items with their line (JSON lines) or position (a JSON array, from 1); null if it is neither. */
export function bulkItems(body: unknown): JsonLines['items'] | null {
  if (isJsonLines(body)) return body.items;
  if (Array.isArray(body) && body.length <= MAX_LINES) return body.map((value, i) => ({ line: i + 1, ok: true as const, value }));
  return null;
}

class BodyError extends Error {
  constructor(
    message: string,
    readonly statusCode = 400,
    readonly code = 'FST_ERR_BODY_SHAPE',
  ) {
    super(message);
  }
}

type Parse = (text: string) => unknown;

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * A JSON object body's text as it arrived (`{` first; JSON.parse accepted it, so it parses to
     * `body`), else null: the decision log stores it rather than serializing the request again.
     */
    bodyText: string | null;
  }
}

/** Replaces fastify's body parsers with the ones above. */
export function registerBodyParsers(app: FastifyInstance): void {
  const secure = app.getDefaultJsonParser('error', 'error');
  const parse: Parse = (text) => {
    let value: unknown;
    let failure: Error | null = null;
    secure({} as FastifyRequest, text, (err, body) => {
      failure = err;
      value = body;
    });
    if (failure) throw failure;
    return value;
  };

  app.removeAllContentTypeParsers();
  app.decorateRequest('bodyText', null);
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string;
    if (jsonDepthExceeds(text, MAX_DEPTH)) return done(new BodyError(`the body nests arrays and objects more than ${MAX_DEPTH} deep`), undefined);
    try {
      const value = parse(text);
      // Kept only for an object that starts the text (a byte-order mark, which the parser skips, would not splice into JSON).
      if (text.charCodeAt(0) === 123 && typeof value === 'object' && value !== null && !Array.isArray(value)) request.bodyText = text;
      done(null, value);
    } catch (err) {
      done(err as Error, undefined);
    }
  });
  app.addContentTypeParser(JSON_LINES_TYPES, { parseAs: 'string' }, (_request, body, done) => {
    const lines = (body as string).split('\n');
    const items: JsonLines['items'][number][] = [];
    for (let i = 0; i < lines.length; i++) {
      const text = lines[i];
      if (text.trim() === '') continue;
      if (items.length >= MAX_LINES) return done(new BodyError(`more than ${MAX_LINES} lines in one body: send them in several`, 413, 'FST_ERR_CTP_BODY_TOO_LARGE'), undefined);
      const line = i + 1;
      if (jsonDepthExceeds(text, MAX_DEPTH)) {
        items.push({ line, ok: false, message: `nests arrays and objects more than ${MAX_DEPTH} deep` });
        continue;
      }
      try {
        items.push({ line, ok: true, value: parse(text) });
      } catch (err) {
        items.push({ line, ok: false, message: (err as { code?: string }).code === 'FST_ERR_CTP_INVALID_JSON_BODY' ? 'not valid JSON' : (err as Error).message.slice(0, 200) });
      }
    }
    const parsed: JsonLines = { kind: 'json-lines', items };
    done(null, parsed);
  });
}

/** Text a caller controls, cut to `max` characters before it goes into an answer. */
export function clip(text: string, max = 200): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** A zod refusal as {field, rule, message}, at most `limit` of them, each clipped: keys and values are the caller's. */
export function issuesOf(error: z.ZodError, limit = 20): { field: string; rule: string; message: string }[] {
  return error.issues.slice(0, limit).map((i) => ({ field: clip(i.path.join('.') || 'body', 100), rule: i.code, message: clip(i.message) }));
}

/** How long, and how much, a refused body is still read after the answer (nginx's lingering close). */
const LINGER_MS = 2000;
const LINGER_BYTES = 16 * 1024 * 1024;

/**
 * Answers and closes the connection without losing the answer: closing a socket with unread
 * bytes sends a reset, and a client still writing its oversize body would see that instead of
 * the 4xx. So the answer goes out, our side of the connection is shut (FIN), and what the
 * client still sends is read and dropped for a bounded time and amount.
 */
export function lingeringClose(request: FastifyRequest, reply: FastifyReply, status: number, payload: object): void {
  const socket = request.raw.socket;
  reply.hijack();
  const body = JSON.stringify(payload);
  socket.write(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
  socket.end();
  request.raw.resume(); // the body's bytes, dropped as they come
  const limit = socket.bytesRead + LINGER_BYTES;
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.on('data', () => {
    if (socket.bytesRead > limit) socket.destroy();
  });
  socket.once('close', () => clearTimeout(timer));
}
