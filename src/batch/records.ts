/**
 * Reading input files record by record, in constant memory: CSV (with a header) and JSON
 * lines. Unreadable records come back in place with their line number and why, so callers
 * report them and go on.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { createInterface } from 'node:readline';
import { parse as parseCsv, type Info } from 'csv-parse';
import type { FieldError } from '../bundle/encoding.ts';
import type { Bundle } from '../bundle/load.ts';

export type FileFormat = 'csv' | 'jsonl';

export function formatOf(path: string): FileFormat {
  return /\.(jsonl|ndjson|json)$/i.test(path) ? 'jsonl' : 'csv';
}

export interface SourceRecord {
  line: number;
  /** Field values by column name, in file order. */
  row: Record<string, unknown> | null;
  syntaxError?: string;
}

/** Reads CSV records as {column: text}, keeping going past malformed records. */
export async function* csvRecords(stream: Readable, header: { columns: string[] | null }): AsyncGenerator<SourceRecord> {
  const skipped: SourceRecord[] = [];
  const parser = stream.pipe(
    parseCsv({
      bom: true,
      info: true,
      relax_column_count: true,
      skip_empty_lines: true,
      skip_records_with_error: true,
      on_skip: (err: { message: string; lines?: number } | undefined) => {
        if (err) skipped.push({ line: err.lines ?? 0, row: null, syntaxError: err.message });
      },
    }),
  );
  for await (const { record, info } of parser as AsyncIterable<{ record: string[]; info: Info }>) {
    while (skipped.length > 0) yield skipped.shift()!;
    if (header.columns === null) {
      header.columns = record.map((c) => c.trim());
      const dup = header.columns.find((c, i) => header.columns!.indexOf(c) !== i);
      if (dup !== undefined) throw new Error(`CSV header repeats column ${JSON.stringify(dup)}`);
      continue;
    }
    const columns = header.columns;
    if (record.length !== columns.length) {
      yield { line: info.lines, row: null, syntaxError: `has ${record.length} fields, the header has ${columns.length}` };
      continue;
    }
    const row: Record<string, unknown> = Object.create(null);
    for (let i = 0; i < columns.length; i++) row[columns[i]] = record[i];
    yield { line: info.lines, row };
  }
  while (skipped.length > 0) yield skipped.shift()!;
}

export async function* jsonlRecords(stream: Readable): AsyncGenerator<SourceRecord> {
  let line = 0;
  for await (const text of createInterface({ input: stream, crlfDelay: Infinity })) {
    line++;
    if (text.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      yield { line, row: null, syntaxError: `not valid JSON: ${(err as Error).message}` };
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      yield { line, row: null, syntaxError: 'each line must be a JSON object of feature values' };
      continue;
    }
    yield { line, row: value as Record<string, unknown> };
  }
}

/**
 * One CSV cell. Absent values (undefined, null, NaN) are empty cells, which read back as
 * missing; objects are written as JSON. RFC 4180: a cell holding a quote, comma or line
 * break is quoted, its quotes doubled.
 */
export function csvCell(v: unknown): string {
  if (v === undefined || v === null || (typeof v === 'number' && Number.isNaN(v))) return '';
  const text = typeof v === 'object' ? JSON.stringify(v) : String(v);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** One CSV line of cells, newline included. */
export function csvLine(cells: readonly unknown[]): string {
  return cells.map(csvCell).join(',') + '\n';
}

/** The records of a file, by its format. */
export function openRecords(path: string, format: FileFormat = formatOf(path)): AsyncGenerator<SourceRecord> {
  const stream = createReadStream(path);
  return format === 'csv' ? csvRecords(stream, { columns: null }) : jsonlRecords(stream);
}

/**
 * Features a plain data file must carry for a bundle with feature sources: the sourced ones
 * (aggregates, entities, http, derived), which only `rtml backfill` or the server compute.
 * Reading a file without them would silently use their defaults.
 */
export class SourcedColumns {
  readonly names: readonly string[];

  constructor(private readonly bundle: Bundle) {
    const sources = bundle.sources;
    this.names = sources ? bundle.encoding.features.map((f) => f.name).filter((n) => sources.sourced.has(n)) : [];
  }

  static readonly HINT = 'compute them with `rtml backfill` (point in time, as the server would have served them) and use its output';

  /** Throws when a file's columns (or a first row's keys) lack any sourced feature. */
  requireIn(columns: readonly string[], what = 'the input'): void {
    const absent = this.names.filter((n) => !columns.includes(n));
    if (absent.length > 0) throw new Error(`${this.bundle.name} reads ${absent.join(', ')} from feature sources; ${what} has no such columns: ${SourcedColumns.HINT}`);
  }

  /** One error per sourced feature the row has no key for. */
  missingFrom(row: Record<string, unknown>): FieldError[] {
    return this.names.filter((n) => !(n in row)).map((field) => ({ field, rule: 'required', message: `${field} comes from a feature source and is not in the row: ${SourcedColumns.HINT}` }));
  }
}
