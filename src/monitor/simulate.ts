/**
 * A traffic simulator: replays rows from a file against a running server at a set rate,
 * optionally perturbed from some row on (a feature scaled or shifted, nulled, categories
 * swapped), posts the true outcomes after a delay, and watches the monitoring endpoint so
 * it can say how many decisions after a fault the first alert came.
 */
import type { RawRow } from '../bundle/encoding.ts';
import type { Bundle } from '../bundle/load.ts';
import { bundleColumns, ColumnCheck, formatOf, openRecords, type ReadOptions } from '../batch/records.ts';
import { ServerClient, type ServerAnswer } from '../cli/shared.ts';
import { textRowConverter } from '../decision/index.ts';

export type Perturbation =
  | { kind: 'scale'; feature: string; factor: number }
  | { kind: 'shift'; feature: string; delta: number }
  | { kind: 'null'; feature: string }
  | { kind: 'swap'; feature: string; a: string; b: string };

/** Reads `scale:annual_inc:3`, `shift:int_rate:5`, `null:emp_length`, `swap:term:term_36:term_60`. */
export function parsePerturbation(spec: string): Perturbation {
  const [kind, feature, ...rest] = spec.split(':');
  const number = (text: string | undefined) => {
    const v = Number(text);
    if (text === undefined || text.trim() === '' || !Number.isFinite(v)) throw new Error(`perturbation ${JSON.stringify(spec)}: ${JSON.stringify(text)} is not a number`);
    return v;
  };
  if (!feature) throw new Error(`perturbation ${JSON.stringify(spec)}: name a feature, e.g. scale:annual_inc:3`);
  switch (kind) {
    case 'scale':
      return { kind, feature, factor: number(rest[0]) };
    case 'shift':
      return { kind, feature, delta: number(rest[0]) };
    case 'null':
      return { kind, feature };
    case 'swap':
      if (rest.length !== 2) throw new Error(`perturbation ${JSON.stringify(spec)}: swap needs two categories, e.g. swap:term:term_36:term_60`);
      return { kind, feature, a: rest[0], b: rest[1] };
    default:
      throw new Error(`perturbation ${JSON.stringify(spec)}: kind must be scale, shift, null or swap`);
  }
}

export function perturb(row: Record<string, unknown>, p: Perturbation): void {
  const v = row[p.feature];
  switch (p.kind) {
    case 'scale':
      if (typeof v === 'number') row[p.feature] = v * p.factor;
      break;
    case 'shift':
      if (typeof v === 'number') row[p.feature] = v + p.delta;
      break;
    case 'null':
      row[p.feature] = null;
      break;
    case 'swap':
      if (v === p.a) row[p.feature] = p.b;
      else if (v === p.b) row[p.feature] = p.a;
      break;
  }
}

export interface SimulateOptions {
  url: string;
  /** Bearer token sent with every request. */
  token?: string;
  /** Names the service; its features are what the input's columns are checked against. */
  bundle: Bundle;
  input: string;
  /** Feature columns deliberately absent from the input. */
  allowMissing?: readonly string[];
  /** CSV field separator (default `,`). */
  delimiter?: string;
  /** Requests per second (0: as fast as `concurrency` allows). */
  rate: number;
  concurrency: number;
  /** Stop after this many rows (cycling through the file if needed). */
  limit: number;
  perturbations: readonly Perturbation[];
  /** Rows sent before perturbations start. */
  perturbAfter: number;
  /** Column holding the true label, sent later as the outcome (never sent with the request). */
  label?: string;
  /** Post each outcome this many decisions after its decision (0: no outcomes). */
  outcomeDelay: number;
  /** Poll the monitoring endpoint every this many decisions (0: never). */
  watchEvery: number;
  idPrefix: string;
  onProgress?: (summary: SimulateSummary) => void;
}

export interface SimulateSummary {
  sent: number;
  statuses: Record<string, number>;
  actions: Record<string, number>;
  fallbacks: Record<string, number>;
  outcomesPosted: number;
  /** First time each alert key was seen active, in decisions sent so far. */
  alerts: { key: string; severity: string; atDecision: number }[];
  /** Decisions sent when safe mode was first seen on, and then off again. */
  safeMode: { engagedAt: number | null; releasedAt: number | null };
  seconds: number;
}

async function* cycle(input: string, read: ReadOptions, toTyped: (row: RawRow) => RawRow): AsyncGenerator<Record<string, unknown>> {
  for (;;) {
    let any = false;
    for await (const record of openRecords(input, read)) {
      if (record.row === null) continue;
      any = true;
      yield { ...toTyped(record.row) };
    }
    if (!any) throw new Error(`${input}: no readable rows`);
  }
}

export async function simulate(options: SimulateOptions): Promise<SimulateSummary> {
  const started = performance.now();
  const server = new ServerClient(options.url, options.token);
  const service = `/v1/services/${encodeURIComponent(options.bundle.name)}`;
  const summary: SimulateSummary = { sent: 0, statuses: {}, actions: {}, fallbacks: {}, outcomesPosted: 0, alerts: [], safeMode: { engagedAt: null, releasedAt: null }, seconds: 0 };
  const toTyped = formatOf(options.input) === 'jsonl' ? (row: RawRow) => row : textRowConverter(options.bundle.encoding.features);
  // The server computes sourced features from the keys; a label that is not there would post no outcome.
  const label = options.label === undefined ? [] : [{ name: options.label, required: true, why: 'the label to post as the outcome (--label)' }];
  const columns = bundleColumns(options.bundle, { allowMissing: options.allowMissing, sourced: 'server', also: label });
  ColumnCheck.requireKnown(options.allowMissing ?? [], [columns], options.bundle.name);
  const rows = cycle(options.input, { delimiter: options.delimiter, columns }, toTyped);
  const pendingOutcomes: { due: number; id: string; label: unknown }[] = [];
  const seenAlerts = new Set<string>();
  const interval = options.rate > 0 ? 1000 / options.rate : 0;
  let nextAt = performance.now();

  const postOutcomes = async (force: boolean) => {
    const due = pendingOutcomes.filter((o) => force || o.due <= summary.sent);
    if (due.length === 0 || (!force && due.length < 50)) return;
    pendingOutcomes.splice(0, due.length);
    const body = await server.send('POST', `${service}/outcomes`, { ndjson: due.map((o) => ({ id: o.id, label: o.label })) }, 'outcomes');
    summary.outcomesPosted += typeof body.joined === 'number' ? body.joined : 0;
  };
  // A refused token stops the run at once rather than counting thousands of 401s.
  const refuseUnauthorized = (answer: ServerAnswer, request: string, what: string) => {
    if (answer.status === 401 || answer.status === 403) server.refuse(answer, request, what);
  };

  const watch = async () => {
    const answer = await server.request('GET', `${service}/monitoring`);
    refuseUnauthorized(answer, `GET ${service}/monitoring`, 'monitoring');
    if (answer.status !== 200) return;
    const state = answer.body as unknown as { alerts: { active: { key: string; severity: string }[] }; safe_mode: { active: boolean } };
    for (const a of state.alerts.active) {
      const key = `${a.key}:${a.severity}`;
      if (!seenAlerts.has(key)) {
        seenAlerts.add(key);
        summary.alerts.push({ key: a.key, severity: a.severity, atDecision: summary.sent });
      }
    }
    if (state.safe_mode.active && summary.safeMode.engagedAt === null) summary.safeMode.engagedAt = summary.sent;
    if (!state.safe_mode.active && summary.safeMode.engagedAt !== null && summary.safeMode.releasedAt === null) summary.safeMode.releasedAt = summary.sent;
  };

  const sendOne = async (n: number, row: Record<string, unknown>) => {
    const label = options.label !== undefined ? row[options.label] : undefined;
    if (options.label !== undefined) delete row[options.label];
    if (n >= options.perturbAfter) for (const p of options.perturbations) perturb(row, p);
    const id = `${options.idPrefix}-${n}`;
    const answer = await server.request('POST', `${service}/decisions`, { json: { id, ...row } });
    refuseUnauthorized(answer, `POST ${service}/decisions`, 'decisions');
    summary.statuses[answer.status] = (summary.statuses[answer.status] ?? 0) + 1;
    const body = answer.body as { decision?: string; fallback?: { used: boolean; cause: string | null } };
    if (answer.status === 200 && body.decision) {
      summary.actions[body.decision] = (summary.actions[body.decision] ?? 0) + 1;
      if (body.fallback?.used) {
        const kind = (body.fallback.cause ?? 'unknown').split(':')[0];
        summary.fallbacks[kind] = (summary.fallbacks[kind] ?? 0) + 1;
      }
      if (options.outcomeDelay > 0 && label !== undefined && label !== null && label !== '') pendingOutcomes.push({ due: n + options.outcomeDelay, id, label });
    }
  };

  // A request that fails (the server unreachable, a token refused) ends the run once those in flight are done.
  let failure: unknown = null;
  const inFlight = new Set<Promise<void>>();
  for (let n = 0; n < options.limit && failure === null; n++) {
    const { value: row } = await rows.next();
    if (interval > 0) {
      const wait = nextAt - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      nextAt += interval;
    }
    const p: Promise<void> = sendOne(n, row as Record<string, unknown>)
      .catch((err: unknown) => {
        failure ??= err;
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    summary.sent = n + 1;
    if (inFlight.size >= options.concurrency) await Promise.race(inFlight);
    if (options.outcomeDelay > 0) await postOutcomes(false);
    if (options.watchEvery > 0 && summary.sent % options.watchEvery === 0) {
      await Promise.all(inFlight);
      await watch();
      options.onProgress?.(summary);
    }
  }
  await Promise.all(inFlight);
  if (failure !== null) throw failure;
  if (options.outcomeDelay > 0) await postOutcomes(true);
  if (options.watchEvery > 0) await watch();
  summary.seconds = (performance.now() - started) / 1000;
  return summary;
}
