/**
 * Training sets from rtml itself, so the next model learns from the features exactly as
 * they are (or were) served:
 *   - `backfillFile`: point-in-time features for historical rows, computed by the same
 *     aggregate engine and the same resolver (defaults, TTLs, derived features) as live
 *     traffic;
 *   - `exportLogged`: log-and-wait, the features the server actually served (as logged with
 *     each decision) joined with their outcomes.
 */
import { createWriteStream, mkdirSync } from 'node:fs';
import { once } from 'node:events';
import { dirname } from 'node:path';
import type { RawRow } from '../bundle/encoding.ts';
import type { Bundle } from '../bundle/load.ts';
import { textRowConverter } from '../decision/index.ts';
import { aggregateFeatures, backfill, streamLateness, type BackfillRequest } from '../features/backfill.ts';
import { parseEvent, streamsOf, type StreamDefinition } from '../features/events.ts';
import type { AggregateQuery, EntityValue, FeatureReader, StreamEvent } from '../features/types.ts';
import type { DecisionLog, DecisionRecord } from '../log/types.ts';
import { bundleColumns, ColumnCheck, csvLine, describeErrors, entityColumns, openRecords, sourcedFeatures, streamColumns, type ReadOptions } from './records.ts';

async function writeCsv(path: string, header: readonly string[], rows: Iterable<readonly unknown[]>): Promise<number> {
  mkdirSync(dirname(path), { recursive: true });
  const out = createWriteStream(path);
  let n = 0;
  const write = async (line: string) => {
    if (!out.write(line)) await once(out, 'drain');
  };
  await write(csvLine(header));
  for (const row of rows) {
    await write(csvLine(row));
    n++;
  }
  out.end();
  await once(out, 'finish');
  return n;
}

export interface BackfillFileOptions {
  /** Stream name → event file. */
  events: Record<string, string>;
  /** Entity type → snapshot file (a column named as the entity's key; optional `updated_at`). */
  entities: Record<string, string>;
  /** Rows to compute features for. */
  input: string;
  output: string;
  /** Column of `input` holding the point in time (ISO or epoch ms). */
  atColumn: string;
  /** Features as of just before that time (1 ms earlier), so a row's own event is not in its features. */
  before: boolean;
  /** Columns deliberately absent from the files (request features, event or entity fields). */
  allowMissing?: readonly string[];
  /** CSV field separator of every file (default `,`). */
  delimiter?: string;
}

/** Reads an event file of one stream, in file order. */
async function* readEvents(def: StreamDefinition, file: string, read: ReadOptions): AsyncGenerator<StreamEvent> {
  for await (const record of openRecords(file, read)) {
    if (record.row === null) throw new Error(`${file}:${record.line}: ${describeErrors(record.errors)}`);
    const parsed = parseEvent(def, record.row, true);
    if (!parsed.ok) throw new Error(`${file}:${record.line}: ${parsed.message}`);
    yield parsed.event;
  }
}

/** Merges several time-sorted event streams into one time-sorted stream. */
async function* mergeByTime(sources: AsyncGenerator<StreamEvent>[]): AsyncGenerator<StreamEvent> {
  const heads = await Promise.all(sources.map((s) => s.next()));
  for (;;) {
    let best = -1;
    heads.forEach((h, i) => {
      if (!h.done && (best < 0 || h.value.time < (heads[best].value as StreamEvent).time)) best = i;
    });
    if (best < 0) return;
    yield heads[best].value as StreamEvent;
    heads[best] = await sources[best].next();
  }
}

interface EntityFile {
  type: string;
  file: string;
  keyField: string;
  columns: ColumnCheck;
}

/** Entity snapshots as a point-in-time lookup: the latest value written at or before `at`. */
async function loadEntities(files: readonly EntityFile[], delimiter: string | undefined) {
  const byType = new Map<string, Map<string, { at: number; fields: Record<string, unknown> }[]>>();
  for (const { type, file, keyField, columns } of files) {
    const rows = new Map<string, { at: number; fields: Record<string, unknown> }[]>();
    for await (const record of openRecords(file, { delimiter, columns })) {
      if (record.row === null) throw new Error(`${file}:${record.line}: ${describeErrors(record.errors)}`);
      const id = record.row[keyField];
      if (id === undefined || id === null || id === '') throw new Error(`${file}:${record.line}: ${keyField} is required`);
      const updated = record.row.updated_at;
      const at = updated === undefined || updated === '' ? -Infinity : typeof updated === 'number' ? updated : Date.parse(String(updated));
      if (Number.isNaN(at)) throw new Error(`${file}:${record.line}: updated_at is not a date-time`);
      const list = rows.get(String(id)) ?? [];
      list.push({ at, fields: record.row });
      rows.set(String(id), list);
    }
    for (const list of rows.values()) list.sort((a, b) => a.at - b.at);
    byType.set(type, rows);
  }
  return (type: string, id: string, field: string, at: number): EntityValue | null => {
    const list = byType.get(type)?.get(id);
    if (!list) return null;
    let found: { at: number; fields: Record<string, unknown> } | null = null;
    for (const entry of list) if (entry.at <= at) found = entry;
    if (!found || !(field in found.fields)) return null;
    const raw = found.fields[field];
    const value = raw === '' ? null : typeof raw === 'string' && /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(raw) ? Number(raw) : (raw as EntityValue['value']);
    return { value, updatedAt: found.at === -Infinity ? at : found.at };
  };
}

export async function backfillFile(bundle: Bundle, options: BackfillFileOptions): Promise<{ rows: number; stats: unknown }> {
  const sources = bundle.manifest.sources;
  const resolver = bundle.sources;
  if (!sources || !resolver) throw new Error(`${bundle.name} has no sourced features to backfill`);
  const features = bundle.encoding.features;
  const aggregates = aggregateFeatures(sources, features);
  const typed = textRowConverter(features);

  // Every file's columns are checked before any is read; --allow-missing names a column of any of them.
  const allowMissing = options.allowMissing ?? [];
  const streams = streamsOf([bundle]).streams;
  const eventFiles = Object.entries(options.events).map(([stream, file]) => {
    const def = streams.get(stream);
    if (!def) throw new Error(`${bundle.name} declares no stream ${JSON.stringify(stream)}`);
    return { def, file, columns: streamColumns(def, allowMissing) };
  });
  const entityFiles: EntityFile[] = Object.entries(options.entities).map(([type, file]) => {
    const keyField = sources.entities[type]?.key;
    if (!keyField) throw new Error(`${bundle.name} declares no entity ${JSON.stringify(type)}`);
    return { type, file, keyField, columns: entityColumns(bundle, type, keyField, allowMissing) };
  });
  const inputColumns = bundleColumns(bundle, { allowMissing, sourced: 'server', also: [{ name: options.atColumn, required: true, why: "each row's point in time (--at)" }] });
  ColumnCheck.requireKnown(allowMissing, [inputColumns, ...eventFiles.map((f) => f.columns), ...entityFiles.map((f) => f.columns)], bundle.name);

  // The rows, each with its point in time.
  const inputRows: Record<string, unknown>[] = [];
  let columns: string[] = [];
  for await (const record of openRecords(options.input, { delimiter: options.delimiter, columns: inputColumns })) {
    if (record.row === null) throw new Error(`${options.input}:${record.line}: ${describeErrors(record.errors)}`);
    if (columns.length === 0) columns = Object.keys(record.row);
    const t = record.row[options.atColumn];
    const at = typeof t === 'number' ? t : /^\d+$/.test(String(t)) ? Number(t) : Date.parse(String(t));
    if (!Number.isFinite(at)) throw new Error(`${options.input}:${record.line}: ${options.atColumn} is not a date-time`);
    inputRows.push({ ...typed(record.row as RawRow), __at: options.before ? at - 1 : at });
  }
  const requests: BackfillRequest[] = inputRows.map((r) => ({ ...r, at: r.__at as number }));
  const eventStreams = eventFiles.map(({ def, file, columns }) => readEvents(def, file, { delimiter: options.delimiter, columns }));
  const { rows: values, stats } = await backfill({ events: mergeByTime(eventStreams), requests, features: aggregates });
  const entity = await loadEntities(entityFiles, options.delimiter);

  // Each row through the live resolver, over a store that answers as of that row's time.
  const out: unknown[][] = [];
  const extra = features.map((f) => f.name).filter((n) => !columns.includes(n));
  for (let i = 0; i < inputRows.length; i++) {
    const row = inputRows[i];
    const at = row.__at as number;
    const precomputed = values[i];
    const store: FeatureReader = {
      aggregates: async (queries: readonly AggregateQuery[]) =>
        queries.map((q) => {
          const f = aggregates.find((a) => a.stream === q.stream && a.fn === q.fn && a.field === q.field && a.windowMs === q.windowMs);
          return f ? (precomputed[f.name] ?? null) : null;
        }),
      getEntity: async (type, id, fields) => fields.map((field) => entity(type, id, field, at)),
    };
    const { __at: _at, ...request } = row;
    const resolved = await resolver.resolve(request, at, store);
    out.push([...columns.map((c) => (c in resolved.row && !resolver.sourced.has(c) ? request[c] : resolved.row[c])), ...extra.map((n) => resolved.row[n])]);
  }
  const written = await writeCsv(options.output, [...columns, ...extra], out);
  return { rows: written, stats };
}

export interface ExportOptions {
  output: string;
  since?: string;
  until?: string;
  /** Add a `<feature>_status` column per sourced feature (present, default, stale, missing, timeout, error). */
  withStatus?: boolean;
}

/**
 * Log-and-wait: every logged decision of the bundle's service that has an outcome, with its
 * features as served: the caller's values for request features, the logged served value for
 * sourced ones (entity, aggregate, http, derived; the default when the source failed), plus
 * its time, id, model version and label. For decisions of a service with feature sources logged
 * before the log kept served features (schema 4), the logged model inputs are decoded instead;
 * those without inputs (decided by a pre-rule) are skipped.
 */
export async function exportLogged(bundle: Bundle, log: DecisionLog, options: ExportOptions): Promise<{ rows: number; skipped: number }> {
  const { items } = await log.labelled(bundle.name, { since: options.since, until: options.until });
  const features = bundle.encoding.features;
  const statusColumns = options.withStatus ? sourcedFeatures(bundle) : [];
  const rows: unknown[][] = [];
  let skipped = 0;
  for (const item of items) {
    const record = await log.get(bundle.name, item.id);
    const values = record ? servedValues(bundle, record) : null;
    if (!values) {
      skipped++;
      continue;
    }
    rows.push([item.id, item.time, item.modelVersion, ...values, ...statusColumns.map((name) => record!.features?.[name]?.status ?? null), item.label]);
  }
  const header = ['id', 'time', 'model_version', ...features.map((f) => f.name), ...statusColumns.map((name) => `${name}_status`), 'label'];
  const written = await writeCsv(options.output, header, rows);
  return { rows: written, skipped };
}

/** A logged decision's feature values in bundle order, or null when the log cannot tell them. */
function servedValues(bundle: Bundle, record: DecisionRecord): unknown[] | null {
  const features = bundle.encoding.features;
  // The request is always logged; sourced features' served values since schema 4.
  if (record.features || !bundle.sources) {
    const request = (record.request ?? {}) as Record<string, unknown>;
    const served = record.features ?? {};
    // A request feature the caller left out was served as its default, like in the encoder.
    return features.map((f) => (f.name in served ? served[f.name].value : (request[f.name] ?? f.default ?? null)));
  }
  // A sourced feature logged before schema 4: decode the model inputs (exactly what the model saw).
  if (!record.inputs || record.inputs.length !== bundle.encoding.width) return null;
  const inputs = record.inputs;
  let at = 0;
  return features.map((f) => {
    if (f.type === 'category' && f.encoding === 'onehot') {
      const slice = inputs.slice(at, at + f.values.length);
      at += f.values.length;
      const hot = slice.indexOf(1);
      return hot < 0 ? null : f.values[hot];
    }
    const v = inputs[at++];
    if (v === null) return null;
    if (f.type === 'category') return f.values[v] ?? null;
    if (f.type === 'boolean') return v === 1;
    return v;
  });
}
