/**
 * What the `rtml` commands share: exit codes, the one way a command stops with an error
 * (`CliError`, printed and turned into an exit code by `main.ts`), opening a bundle, the
 * options of commands that read data files, the parsers commander calls on option values,
 * and the HTTP client of the commands that talk to a running server.
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, Option } from 'commander';
import { BundleError, type Bundle } from '../bundle/load.ts';
import type { FileFormat } from '../batch/score-file.ts';

/** Exit status: 0 success, 1 some rows or checks failed, 2 the command could not run. */
export const EXIT_FAILED = 1;
export const EXIT_ERROR = 2;

/** Stops the command: `main.ts` writes `message` (as is) to standard error and exits with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT_ERROR,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Loads a bundle with `load`; an invalid bundle stops the command with exit status 2. */
export async function openBundle<B extends Bundle>(dir: string, load: (dir: string) => Promise<B>): Promise<B> {
  try {
    return await load(dir);
  } catch (err) {
    if (err instanceof BundleError) throw new CliError(`rtml: invalid bundle ${dir}\n${err.message}\n`);
    throw err;
  }
}

/** The default of `--data-dir`: where the decision log lives. */
export function defaultDataDir(): string {
  return process.env.RTML_DATA_DIR ?? '.rtml-data';
}

export function parseTolerance(value: string): number {
  const v = Number(value);
  if (!(v >= 0)) throw new InvalidArgumentError('must be a non-negative number');
  return v;
}

export function parseWholeNumber(value: string): number {
  const v = Number(value);
  if (!Number.isInteger(v) || v < 0) throw new InvalidArgumentError('must be a whole number >= 0');
  return v;
}

/** `name=path` pairs, repeatable. */
export function collectPairs(value: string, previous: Record<string, string>): Record<string, string> {
  const at = value.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError('use NAME=FILE');
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}

export function parseFormat(value: string): FileFormat {
  if (value !== 'csv' && value !== 'jsonl') throw new InvalidArgumentError('must be csv or jsonl');
  return value;
}

/** Options of every command that reads a data file. */
export interface DataFileOptions {
  allowMissing: string[];
  delimiter?: string;
}

/** `--allow-missing`, for a command that reads data files. */
export function allowMissingOption(): Option {
  return new Option('--allow-missing <columns>', 'columns deliberately absent from the data, comma-separated, repeatable (else a missing or misspelt column is an error)').argParser(collectNames).default([]);
}

/** `--delimiter`, for a command that reads CSV files. */
export function delimiterOption(): Option {
  return new Option('--delimiter <char>', "CSV field separator: ',' (default), ';', tab or '|'").argParser(parseDelimiter);
}

function collectNames(value: string, previous: string[]): string[] {
  const names = value.split(',').map((n) => n.trim()).filter((n) => n !== '');
  if (names.length === 0) throw new InvalidArgumentError('name one or more columns, comma-separated');
  return [...previous, ...names];
}

export function parseDelimiter(value: string): string {
  const delimiter = value === 'tab' || value === '\\t' ? '\t' : value;
  if (![',', ';', '\t', '|'].includes(delimiter)) throw new InvalidArgumentError("must be one of ',' ';' tab '|'");
  return delimiter;
}

/** The bearer token of the client commands: `--token-file`, else the environment's `RTML_TOKEN`. */
export function readToken(file: string | undefined): string | undefined {
  if (file === undefined) return process.env.RTML_TOKEN?.trim() || undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`rtml: cannot read --token-file ${file}: ${(err as Error).message}\n`);
  }
  const token = text.trim();
  if (token === '') throw new CliError(`rtml: --token-file ${file} is empty\n`);
  return token;
}

/** A request body: one JSON value (`application/json`), or JSON lines (`application/x-ndjson`). */
export type RequestBody = { json: unknown } | { ndjson: readonly unknown[] };

export interface ServerAnswer {
  status: number;
  /** The answer's JSON object; a body that is not one is kept as `{error: text}`. */
  body: Record<string, unknown> & { error?: string };
}

/** Why a fetch failed, in words: undici hides the cause (ECONNREFUSED, ...) under `fetch failed`. */
function unreachableCause(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const code = cause?.code;
  const words: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ENOTFOUND: 'host not found',
    EAI_AGAIN: 'host name lookup failed',
    ECONNRESET: 'connection reset',
    ETIMEDOUT: 'timed out',
    EHOSTUNREACH: 'host unreachable',
    ENETUNREACH: 'network unreachable',
    UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
    UND_ERR_SOCKET: 'connection closed',
  };
  return (code && words[code]) ?? cause?.message ?? (err as Error).message;
}

/**
 * A running rtml server as the client commands (`outcomes`, `simulate`, `ingest`) talk to
 * it: every request carries the bearer token when there is one; an unreachable server, a
 * refused token or an unexpected answer stops the command with one line that names the URL
 * and the cause (exit status 2).
 */
export class ServerClient {
  readonly url: string;

  constructor(
    url: string,
    private readonly token?: string,
  ) {
    let parsed: URL | null = null;
    try {
      parsed = new URL(url);
    } catch {
      // reported below
    }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) throw new CliError(`rtml: --url ${url} is not an http(s) URL, e.g. http://127.0.0.1:8080\n`);
    this.url = url.replace(/\/+$/, '');
  }

  /** One request; whatever the server answers comes back, and only an unreachable server throws. */
  async request(method: string, path: string, body?: RequestBody): Promise<ServerAnswer> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let payload: string | undefined;
    if (body && 'json' in body) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body.json);
    } else if (body) {
      headers['content-type'] = 'application/x-ndjson';
      payload = body.ndjson.map((v) => JSON.stringify(v) + '\n').join('');
    }
    let text: string;
    let status: number;
    try {
      const res = await fetch(this.url + path, { method, headers, body: payload });
      status = res.status;
      text = await res.text();
    } catch (err) {
      throw new CliError(`rtml: cannot reach ${this.url} (${unreachableCause(err)}): is rtml serve running there?\n`);
    }
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: kept as text below
    }
    const isObject = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed);
    return { status, body: isObject ? (parsed as ServerAnswer['body']) : { error: text.slice(0, 200) } };
  }

  /** A request that must succeed: any answer but 2xx stops the command (see `refuse`). */
  async send(method: string, path: string, body: RequestBody | undefined, what: string): Promise<ServerAnswer['body']> {
    const answer = await this.request(method, path, body);
    if (answer.status < 200 || answer.status > 299) this.refuse(answer, `${method} ${path}`, what);
    return answer.body;
  }

  /**
   * Stops the command on a refused answer: a 401 or 403 says the server wants a (valid)
   * token for `what` ("outcomes", "events"); anything else names the status and the
   * server's own message.
   */
  refuse(answer: ServerAnswer, request: string, what: string): never {
    const { status, body } = answer;
    const details = Array.isArray(body.errors) ? body.errors.slice(0, 3).map((e) => (typeof e === 'object' && e !== null && 'message' in e ? String(e.message) : JSON.stringify(e))) : [];
    const said = [body.error ?? JSON.stringify(body).slice(0, 200), ...details].join('; ');
    if (status === 401 || status === 403) {
      const advice = this.token ? 'check --token-file or RTML_TOKEN' : `the server needs a token for ${what}: --token-file or RTML_TOKEN`;
      throw new CliError(`rtml: ${this.url} answered ${status} to ${request} (${said}): ${advice}\n`);
    }
    throw new CliError(`rtml: ${this.url} answered ${status} to ${request}: ${said}\n`);
  }
}

/** `--token-file`, for a command that talks to a server. */
/**
 * `--decision-log <url|path>` (env RTML_DECISION_LOG), of serve, export and outcomes: a
 * PostgreSQL URL puts the decision log (and the other shared stores) in that database; a path
 * is the directory of the embedded SQLite log; absent, the log lives under --data-dir.
 */
export function decisionLogOption(): Option {
  return new Option('--decision-log <url|path>', 'the decision log: a postgres:// URL (shared by a fleet of servers) or a directory for the embedded log (default: under --data-dir)').env('RTML_DECISION_LOG');
}

export function tokenFileOption(): Option {
  return new Option('--token-file <file>', 'file holding the bearer token sent with every request (default: env RTML_TOKEN)');
}
