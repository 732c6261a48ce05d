/**
 * The decision log: every decision rtml answers is appended here, and the server answers 2xx
 * only once `append` has resolved, i.e. once the record is committed. This file is the
 * store-neutral contract; `sqlite.ts` is the embedded default adapter, `postgres.ts` the one a
 * fleet shares (`index.ts` picks one).
 */
import type { FeatureStatus } from '../features/types.ts';
import type { LoggedExplanation } from '../pipeline/explain.ts';
import type { ModelReason, Reason } from '../decision/index.ts';

/**
 * What `append` takes: a {@link DecisionRecord} whose inputs may also be the encoder's own
 * Float32Array (NaN for missing), which the log stores as the same array of numbers and nulls
 * (a log may convert it off the request path; it reads back as an array).
 */
export type DecisionRecordToAppend = Omit<DecisionRecord, 'inputs'> & {
  inputs: DecisionRecord['inputs'] | Float32Array;
  /**
   * The request's JSON text as it arrived, an object (`{` first), when it parses to exactly
   * `request` (JSON.parse already accepted it): the log stores it as is instead of serializing
   * `request` again. Absent when the request was changed (fields that are not features dropped).
   */
  requestText?: string;
};

export interface DecisionRecord {
  /** Caller-supplied or generated; unique per service. */
  id: string;
  /** When the decision was made: ISO 8601 UTC with milliseconds, `YYYY-MM-DDTHH:MM:SS.sssZ`. */
  time: string;
  service: string;
  /** null for rules-only services. */
  model: { name: string; version: string } | null;
  policyVersion: string | null;
  /** The raw request JSON as received (stored as JSON text; `undefined` reads back as null). */
  request: unknown;
  /** The exact encoded model input vector (NaN stored as null); null when the model did not run. */
  inputs: (number | null)[] | null;
  /** Named model outputs (non-finite numbers read back as null, as in JSON). */
  outputs: Record<string, number | string> | null;
  score: number | null;
  /** The action. */
  decision: string;
  /** The policy's reasons, then the model's own when the policy asks for them (those carry `source: 'model'`, features and contributions). */
  reasons: (Reason | ModelReason)[];
  /**
   * When the policy asks for model reasons for this decision's action: whether the model decided,
   * and if so the bias and every feature's contribution to the score's margin. Absent otherwise.
   */
  explanation?: LoggedExplanation;
  fallback: { used: boolean; cause: string | null };
  safeMode?: boolean;
  /** Per stage: validation, features, model, policy, log, total. */
  timingsMs: Record<string, number>;
  /**
   * Each feature that came from a source (entity, aggregate, http, derived): its status and the
   * value served (the default when it was not present). Absent when the service has no sources.
   */
  features?: Record<string, ServedFeature>;
}

/** How one sourced feature of a decision was obtained, and what was served. */
export interface ServedFeature {
  status: FeatureStatus;
  value: number | string | boolean | null;
}

export interface DecisionQuery {
  service?: string;
  /** Inclusive lower bound on `time` (any date string `Date` parses; compared in UTC). */
  since?: string;
  /** Exclusive upper bound on `time`. */
  until?: string;
  /** At most this many records (default {@link DEFAULT_QUERY_LIMIT}, capped at {@link MAX_QUERY_LIMIT}). */
  limit?: number;
}

export const DEFAULT_QUERY_LIMIT = 100;
export const MAX_QUERY_LIMIT = 10_000;

export interface DecisionLogStats {
  /** Records committed since open. */
  appended: number;
  /** Transactions committed since open (appended / commits = mean group-commit batch size). */
  commits: number;
  /** Records accepted by `append` whose promise has not settled yet. */
  pending: number;
}

/** The truth about a decision, arriving later (did the loan go bad?). */
export interface Outcome {
  id: string;
  /** The observed label, as the bundle names classes ("bad"), or a number for regression. */
  label: string;
  /** When the outcome was observed; defaults to when it was recorded. */
  time?: string;
}

/** A logged decision joined with its outcome. */
export interface LabelledDecision {
  seq: number;
  service: string;
  id: string;
  /** When the decision was made. */
  time: string;
  modelVersion: string | null;
  score: number | null;
  decision: string;
  fallbackUsed: boolean;
  label: string;
  /** When the outcome was observed. */
  outcomeTime: string;
}

/** A logged decision as `scan` returns it: the record, with its outcome when one was recorded. */
export type ScannedDecision = DecisionRecord & { outcome?: { label: string; time: string } };

/** Which decisions `scan` reads: one service's, in [since, until), after `after` (the cursor a previous page returned; absent for the first). */
export interface DecisionScan {
  since?: string;
  until?: string;
  after?: string;
  /** Records per page (default and cap {@link MAX_QUERY_LIMIT}). */
  limit?: number;
}

export interface DecisionLog {
  /**
   * Joins outcomes to logged decisions (a later outcome for the same decision replaces the
   * earlier one). Ids with no logged decision are returned in `unknown` and not stored.
   */
  recordOutcomes(service: string, outcomes: readonly Outcome[]): Promise<{ joined: number; unknown: string[] }>;
  /** Outcomes recorded after `cursor` (0 for all), in recording order, for streaming consumers. */
  outcomesAfter(cursor: number, limit?: number): Promise<{ cursor: number; items: LabelledDecision[] }>;
  /**
   * Decisions of a service made in [since, until) that have an outcome (the latest `limit` of
   * them, in time order, when a limit is given), plus how many decisions were made then.
   */
  labelled(service: string, range: { since?: string; until?: string; limit?: number }): Promise<{ decisions: number; items: LabelledDecision[] }>;
  /**
   * Resolves once the record is durable (committed): the server answers 2xx only after this.
   * Rejects with {@link DuplicateDecisionError} when the service already has a record with this
   * id (other records committed alongside it are unaffected), {@link InvalidDecisionRecordError}
   * for a malformed record, {@link DecisionLogClosedError} after `close()`.
   */
  append(record: DecisionRecordToAppend): Promise<void>;
  get(service: string, id: string): Promise<DecisionRecord | null>;
  /** Newest first (by `time`, then append order), optionally within a time range; bounded by limit. */
  query(filter: DecisionQuery): Promise<DecisionRecord[]>;
  count(service?: string): Promise<number>;
  /**
   * One page of a service's decisions in the log's order (by `time`, then append order), each
   * with its outcome if any, and the cursor to pass as `after` for the next page (an empty page
   * when there is none): how replay streams a million decisions in bounded memory. A page reads
   * by index from where the last one stopped, so a scan costs the same per page at the end.
   */
  scan(service: string, range: DecisionScan): Promise<{ items: ScannedDecision[]; cursor: string }>;
  /** Flushes everything pending, then closes. Idempotent. */
  close(): Promise<void>;
  /** For metrics. */
  readonly stats: DecisionLogStats;
}

export type DecisionLogErrorCode =
  | 'DUPLICATE_DECISION' // this service already has a decision with this id
  | 'INVALID_DECISION' // the record is malformed
  | 'LOG_CLOSED' // append or read after close()
  | 'WRITE_FAILED' // the store failed (disk full, I/O error, locked): the batch was rolled back, nothing in it committed
  | 'LOG_FAILED' // the log as a whole failed (its writer died): pending appends were not acknowledged, new ones are refused until it is reopened
  | 'LOG_TIMEOUT' // the append was not committed within the log's appendTimeoutMs (a lock held elsewhere, a stalled disk): it never will be, retrying is safe
  | 'SCHEMA_VERSION' // the store was written by a newer rtml
  | 'NOT_A_DECISION_LOG'; // the store exists but is not an rtml decision log

/** Base class of the log's own errors; `code` is stable for callers to branch on. */
export class DecisionLogError extends Error {
  constructor(
    readonly code: DecisionLogErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * The log could not take a write for now (closed, failed, locked, too slow): nothing was
 * recorded and the caller may retry. What a server answers 503 + Retry-After.
 */
export function isLogUnavailable(err: unknown): err is DecisionLogError {
  return err instanceof DecisionLogError && (err.code === 'LOG_FAILED' || err.code === 'WRITE_FAILED' || err.code === 'LOG_CLOSED' || err.code === 'LOG_TIMEOUT');
}

export class DuplicateDecisionError extends DecisionLogError {
  constructor(
    readonly service: string,
    readonly id: string,
  ) {
    super('DUPLICATE_DECISION', `decision log: service ${JSON.stringify(service)} already has a decision with id ${JSON.stringify(id)}`);
  }
}

export class InvalidDecisionRecordError extends DecisionLogError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INVALID_DECISION', `decision log: invalid record: ${message}`, options);
  }
}

export class DecisionLogClosedError extends DecisionLogError {
  constructor() {
    super('LOG_CLOSED', 'decision log: the log is closed');
  }
}

/** Raised at open when the store was written by a newer rtml (or isn't a decision log at all). */
export class DecisionLogSchemaError extends DecisionLogError {}

/** `YYYY-MM-DDTHH:MM:SS.sssZ`, the only `time` format stored, so that text order is time order. */
export const DECISION_TIME_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
