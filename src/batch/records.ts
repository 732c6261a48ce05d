/**
 * Reading input files record by record, in constant memory: CSV (with a header) and JSON
 * lines. A record that cannot be read (malformed, longer than `MAX_RECORD_BYTES`, nested
 * deeper than `MAX_JSON_DEPTH`, or, in JSON lines, holding a misspelt feature name) comes
 * back in place with its line number and why, so callers report it and go on. A CSV whose
 * header cannot serve (a column the caller needs is absent or misspelt, the wrong delimiter)
 * is one error before any row is read: reading on would silently score missing values.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import type { FieldError } from '../bundle/encoding.ts';
import type { Bundle } from '../bundle/load.ts';
import { closest, nearMisses } from '../config/names.ts';
import { jsonDepthExceeds } from '../config/json.ts';
import type { StreamDefinition } from '../features/events.ts';

export type FileFormat = 'csv' | 'jsonl';

export function formatOf(path: string): FileFormat {
  return /\.(jsonl|ndjson|json)$/i.test(path) ? 'jsonl' : 'csv';
}

/**
 * The longest record read (a CSV record or a JSON line), as the server's default body limit:
 * a longer one is a bad row, skipped without being held in memory.
 */
export const MAX_RECORD_BYTES = 1 << 20;
/** The deepest nesting of arrays and objects a JSON line may have (a row is flat). */
export const MAX_JSON_DEPTH = 64;

/** Why a record could not be used: its field (null for the whole record) and the rule it broke. */
export type RecordError = FieldError | { field: string | null; rule: 'syntax' | 'size' | 'depth' | 'name'; message: string };

/** A record, at the line where it ends: its values by column name, in file order, or why it cannot be used. */
export type SourceRecord = { line: number; row: Record<string, unknown>; errors?: undefined } | { line: number; row: null; errors: RecordError[] };

/** A record's errors as one line of text. */
export function describeErrors(errors: readonly RecordError[]): string {
  return errors.map((e) => (e.field === null ? e.message : `${e.field}: ${e.message}`)).join('; ');
}

export interface ReadOptions {
  format?: FileFormat;
  /** CSV field separator, one character (default `,`). */
  delimiter?: string;
  /** What the file must hold: checked against a CSV's header, and against each JSON line's keys. */
  columns?: ColumnCheck;
  /** How the file is named in errors (default: its path). */
  source?: string;
  maxRecordBytes?: number;
}

const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

export interface RawRecord {
  firstLine: number;
  line: number;
  bytes: Buffer | null;
}

/**
 * Splits a byte stream into records, synchronously, chunk by chunk (see `rawRecords`); the
 * CSV scorer pushes each chunk itself so no promise is made per record.
 */
export class RecordSplitter {
  private firstLine = 1;
  private parts: Buffer[] = [];
  private size = 0;
  private oversized = false;
  private line = 0;
  private first = true;
  private endsWithLf = false;
  // CSV quoting state, carried across chunks.
  private inQuotes = false;
  private atFieldStart = true;
  private justClosed = false;

  /** `delimiter`: a CSV's field separator, or null for JSON lines. */
  constructor(
    private readonly delimiter: number | null,
    private readonly maxBytes: number,
  ) {}

  private take(end: Buffer): RawRecord {
    let bytes: Buffer | null = null;
    if (!this.oversized && this.size + end.length <= this.maxBytes) bytes = this.parts.length === 0 ? end : Buffer.concat([...this.parts, end]);
    if (bytes && this.first && bytes.subarray(0, 3).equals(BOM)) bytes = bytes.subarray(3);
    this.first = false;
    this.parts = [];
    this.size = 0;
    this.oversized = false;
    const record = { firstLine: this.firstLine, line: this.line, bytes };
    this.firstLine = this.line + 1;
    return record;
  }

  /** The records `chunk` completes, in order; the bytes of an unfinished one are kept. */
  push(chunk: Buffer, records: RawRecord[] = []): RawRecord[] {
    let start = 0;
    const delimiter = this.delimiter;
    if (delimiter === null) {
      for (let lf = chunk.indexOf(LF); lf >= 0; lf = chunk.indexOf(LF, start)) {
        this.line++;
        records.push(this.take(chunk.subarray(start, lf)));
        start = lf + 1;
      }
    } else {
      let { inQuotes, atFieldStart, justClosed } = this;
      for (let i = 0; i < chunk.length; i++) {
        const b = chunk[i];
        if (inQuotes) {
          if (b === QUOTE) {
            inQuotes = false;
            justClosed = true;
          } else if (b === LF) this.line++;
          continue;
        }
        // A quote at a field's start opens it; right after a closing quote it is a doubled ("") quote.
        if (b === QUOTE && (atFieldStart || justClosed)) {
          inQuotes = true;
          atFieldStart = justClosed = false;
          continue;
        }
        justClosed = false;
        atFieldStart = b === delimiter || b === LF;
        if (b === LF) {
          this.line++;
          records.push(this.take(chunk.subarray(start, i)));
          start = i + 1;
        }
      }
      this.inQuotes = inQuotes;
      this.atFieldStart = atFieldStart;
      this.justClosed = justClosed;
    }
    if (chunk.length > 0) this.endsWithLf = chunk[chunk.length - 1] === LF;
    const rest = chunk.subarray(start);
    if (this.oversized || this.size + rest.length > this.maxBytes) {
      this.oversized = true;
      this.parts = [];
    } else if (rest.length > 0) {
      this.parts.push(Buffer.from(rest)); // a copy: the stream may reuse its buffer
      this.size += rest.length;
    }
    return records;
  }

  /** The last record, when the input does not end with a line break. */
  end(): RawRecord | null {
    if (this.size === 0 && !this.oversized) return null;
    // The last line has no line break of its own (unless it ends inside an open quote).
    if (!this.endsWithLf) this.line++;
    return this.take(Buffer.alloc(0));
  }
}

/**
 * A file's records as bytes, each with the line it ends on, or `bytes: null` when it is
 * longer than `maxBytes` (its bytes are dropped as they arrive, so memory stays bounded).
 * In CSV (`delimiter` given) a line break inside a quoted field does not end a record; as
 * in RFC 4180 a quote opens a quoted field only at the field's start. A UTF-8 byte order
 * mark is dropped and a CR before the LF is left to the parsers.
 */
async function* rawRecords(stream: Readable, delimiter: number | null, maxBytes: number): AsyncGenerator<RawRecord> {
  const splitter = new RecordSplitter(delimiter, maxBytes);
  for await (const data of stream) {
    yield* splitter.push(typeof data === 'string' ? Buffer.from(data) : data);
  }
  const last = splitter.end();
  if (last) yield last;
}

/** A record's bytes without the CR of a CRLF line ending. */
export function withoutCr(bytes: Buffer): Buffer {
  return bytes.length > 0 && bytes[bytes.length - 1] === CR ? bytes.subarray(0, bytes.length - 1) : bytes;
}

/** Where the quoted field whose text starts at `from` closes (a doubled "" is a quote inside), or -1. */
export function closingQuote(record: Buffer, from: number): number {
  let close = record.indexOf(QUOTE, from);
  while (close >= 0 && record[close + 1] === QUOTE) close = record.indexOf(QUOTE, close + 2);
  return close;
}

/** RFC 4180 fields of one CSV record, or why they cannot be read. */
export function csvFields(record: Buffer, delimiter: number): string[] | string {
  const fields: string[] = [];
  const n = record.length;
  let i = 0;
  for (;;) {
    const column = fields.length + 1;
    if (record[i] === QUOTE) {
      const close = closingQuote(record, i + 1);
      if (close < 0) return `field ${column}: its opening quote is never closed`;
      const text = record.toString('utf8', i + 1, close);
      fields.push(close !== record.indexOf(QUOTE, i + 1) ? text.replaceAll('""', '"') : text);
      i = close + 1;
      if (i === n) return fields;
      if (record[i] !== delimiter) return `field ${column}: text after its closing quote (a quote inside a quoted field is written twice: "")`;
    } else {
      let end = record.indexOf(delimiter, i);
      if (end < 0) end = n;
      const quote = record.indexOf(QUOTE, i);
      if (quote >= 0 && quote < end) return `field ${column}: a quote inside an unquoted field (quote the whole field and write the quote twice)`;
      fields.push(record.toString('utf8', i, end));
      if (end === n) return fields;
      i = end;
    }
    i++; // past the delimiter
    if (i === n) {
      fields.push('');
      return fields;
    }
  }
}

const DELIMITER_NAMES: Record<string, string> = { ',': 'comma', ';': '`;`', '\t': 'tab', '|': '`|`' };

/**
 * A CSV's header line as column names, or an error that says what is wrong with it: it does
 * not read, reads as one column nobody expects (another separator?), repeats a column, or
 * lacks (or misspells) one `options.columns` needs.
 */
export function csvHeader(bytes: Buffer, line: number, options: ReadOptions = {}): string[] {
  const delimiter = options.delimiter ?? ',';
  const source = options.source ?? 'the input';
  const fields = csvFields(bytes, delimiter.charCodeAt(0));
  // A header that does not read, or reads as one column nobody expects: another separator?
  if (typeof fields === 'string' || (fields.length === 1 && options.columns && !options.columns.known.includes(fields[0].trim()))) {
    const other = Object.keys(DELIMITER_NAMES).find((d) => {
      const split = d === delimiter ? null : csvFields(bytes, d.charCodeAt(0));
      return Array.isArray(split) && split.length > 1;
    });
    if (other !== undefined) {
      const advice = other === ',' ? 'leave out --delimiter' : `use --delimiter ${other === '\t' ? 'tab' : `'${other}'`}`;
      throw new Error(`${source}: the file looks ${DELIMITER_NAMES[other]}-separated, not ${DELIMITER_NAMES[delimiter] ?? delimiter}-separated: ${advice}`);
    }
  }
  if (typeof fields === 'string') throw new Error(`${source}: line ${line}: the header cannot be read: ${fields}`);
  const columns = fields.map((c) => c.trim());
  const seen = new Set<string>();
  for (const c of columns) {
    if (seen.has(c)) throw new Error(`${source}: the header repeats column ${JSON.stringify(c)}`);
    seen.add(c);
  }
  options.columns?.checkHeader(columns, source);
  return columns;
}

/** Why a CSV record is refused as too long; a quote left open makes the rest of the file one record. */
export function tooLongMessage(line: number, firstLine: number, maxBytes: number): string {
  return `longer than ${maxBytes} bytes${line > firstLine ? ` (from line ${firstLine}: a quote left open?)` : ''}`;
}

/** Reads CSV records as {column: text}, keeping going past malformed records. */
export async function* csvRecords(stream: Readable, header: { columns: string[] | null }, options: ReadOptions = {}): AsyncGenerator<SourceRecord> {
  const delimiter = options.delimiter ?? ',';
  const source = options.source ?? 'the input';
  const maxBytes = options.maxRecordBytes ?? MAX_RECORD_BYTES;
  const bad = (line: number, rule: 'syntax' | 'size', message: string): SourceRecord => ({ line, row: null, errors: [{ field: null, rule, message }] });
  for await (const raw of rawRecords(stream, delimiter.charCodeAt(0), maxBytes)) {
    if (raw.bytes === null) {
      // A quote left open makes the rest of the file one record.
      const tooLong = tooLongMessage(raw.line, raw.firstLine, maxBytes);
      if (header.columns === null) throw new Error(`${source}: the header is ${tooLong}`);
      yield bad(raw.line, 'size', tooLong);
      continue;
    }
    const bytes = withoutCr(raw.bytes);
    if (bytes.length === 0) continue;
    if (header.columns === null) {
      header.columns = csvHeader(bytes, raw.line, options);
      continue;
    }
    const fields = csvFields(bytes, delimiter.charCodeAt(0));
    if (typeof fields === 'string') {
      yield bad(raw.line, 'syntax', fields);
      continue;
    }
    const columns = header.columns;
    if (fields.length !== columns.length) {
      yield bad(raw.line, 'syntax', `has ${fields.length} fields, the header has ${columns.length}`);
      continue;
    }
    const row: Record<string, unknown> = Object.create(null);
    for (let i = 0; i < columns.length; i++) row[columns[i]] = fields[i];
    yield { line: raw.line, row };
  }
  if (header.columns === null && options.columns) throw new Error(`${source} is empty: a CSV file starts with a header line naming its columns`);
}

export async function* jsonlRecords(stream: Readable, options: ReadOptions = {}): AsyncGenerator<SourceRecord> {
  const maxBytes = options.maxRecordBytes ?? MAX_RECORD_BYTES;
  const bad = (line: number, rule: 'syntax' | 'size' | 'depth', message: string): SourceRecord => ({ line, row: null, errors: [{ field: null, rule, message }] });
  for await (const raw of rawRecords(stream, null, maxBytes)) {
    if (raw.bytes === null) {
      yield bad(raw.line, 'size', `longer than ${maxBytes} bytes`);
      continue;
    }
    const text = raw.bytes.toString('utf8');
    if (text.trim() === '') continue;
    if (jsonDepthExceeds(text, MAX_JSON_DEPTH)) {
      yield bad(raw.line, 'depth', `nests arrays or objects deeper than ${MAX_JSON_DEPTH} levels`);
      continue;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      yield bad(raw.line, 'syntax', `not valid JSON: ${(err as Error).message}`);
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      yield bad(raw.line, 'syntax', 'each line must be a JSON object of feature values');
      continue;
    }
    const row = value as Record<string, unknown>;
    const errors = options.columns?.rowErrors(row) ?? [];
    yield errors.length > 0 ? { line: raw.line, row: null, errors } : { line: raw.line, row };
  }
}

/**
 * One CSV cell. Absent values (undefined, null, NaN) are empty cells, which read back as
 * missing; objects are written as JSON. RFC 4180: a cell holding a quote, comma or line
 * break is quoted, its quotes doubled.
 */
export function csvCell(v: unknown): string {
  if (typeof v === 'number') return Number.isNaN(v) ? '' : String(v); // never a quote, comma or line break
  if (v === undefined || v === null || (typeof v === 'number' && Number.isNaN(v))) return '';
  const text = typeof v === 'object' ? JSON.stringify(v) : String(v);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** One CSV line of cells, newline included. */
export function csvLine(cells: readonly unknown[]): string {
  return cells.map(csvCell).join(',') + '\n';
}

/** The records of a file, by its format. */
export function openRecords(path: string, options: ReadOptions = {}): AsyncGenerator<SourceRecord> {
  const stream = createReadStream(path);
  const read = { source: path, ...options };
  return (options.format ?? formatOf(path)) === 'csv' ? csvRecords(stream, { columns: null }, read) : jsonlRecords(stream, read);
}

/** A column a file is expected to have. */
export interface ExpectedColumn {
  name: string;
  /** A CSV without it is refused (else its absence is fine, but a misspelt one is still refused). */
  required?: boolean;
  /** A JSON line without it is a bad row (else the key may be absent from a line). */
  inEveryRow?: boolean;
  /** Why it is needed, said when it is absent; columns absent for the same reason are named together. */
  why?: string;
}

const ALLOW_MISSING = 'If a column is absent on purpose, say so: --allow-missing COLUMN.';

/**
 * What a file must hold, checked in one place for every reader: in a CSV's header, every
 * required column and no near miss of an expected one (`Income` for `income`); in each JSON
 * line, every `inEveryRow` key and no near miss of an absent expected key.
 */
export class ColumnCheck {
  private readonly expected: ReadonlyMap<string, ExpectedColumn>;
  /** Every column the file may hold, those allowed to be missing included. */
  readonly known: readonly string[];

  /** `allowMissing`: columns the user says are deliberately absent (`--allow-missing`): they are not checked. */
  constructor(columns: readonly ExpectedColumn[], allowMissing: readonly string[] = []) {
    this.known = columns.map((c) => c.name);
    this.expected = new Map(columns.filter((c) => !allowMissing.includes(c.name)).map((c) => [c.name, c]));
  }

  /** Throws unless every name given to `--allow-missing` is a column one of `checks` knows: a typo there would waive nothing. */
  static requireKnown(allowMissing: readonly string[], checks: readonly ColumnCheck[], owner: string): void {
    const known = checks.flatMap((c) => c.known);
    for (const name of allowMissing) {
      if (known.includes(name)) continue;
      const near = closest(name, known);
      throw new Error(`--allow-missing ${name}: ${owner} reads no column ${JSON.stringify(name)}${near ? `; did you mean ${near}?` : ''}`);
    }
  }

  get names(): string[] {
    return [...this.expected.keys()];
  }

  /** Throws one error naming every absent or misspelt column. */
  checkHeader(columns: readonly string[], source: string): void {
    const present = new Set(columns);
    const absent = [...this.expected.values()].filter((e) => !present.has(e.name));
    if (absent.length === 0) return;
    const misspelt = nearMisses(
      absent.map((e) => e.name),
      columns.filter((c) => !this.expected.has(c)),
    );
    const problems = [...misspelt].map(([name, column]) => `has column ${JSON.stringify(column)}: did you mean ${name}?`);
    const byReason = new Map<string, string[]>();
    for (const e of absent) {
      if (!e.required || misspelt.has(e.name)) continue;
      const why = e.why ?? 'required';
      byReason.set(why, [...(byReason.get(why) ?? []), e.name]);
    }
    for (const [why, names] of byReason) problems.push(`has no column${names.length > 1 ? 's' : ''} ${names.join(', ')} (${why})`);
    if (problems.length === 0) return;
    const text = problems.join('; ');
    throw new Error(`${source}: ${text}${text.endsWith('?') ? '' : '.'} ${ALLOW_MISSING}`);
  }

  /** One error per key the row must have and lacks, and per key that is a near miss of an absent one. */
  rowErrors(row: Record<string, unknown>): RecordError[] {
    const errors: RecordError[] = [];
    let absent: string[] | null = null;
    for (const key of Object.keys(row)) {
      if (this.expected.has(key)) continue;
      // A key nobody expects: only now is it worth looking for near misses.
      absent ??= this.names.filter((n) => !Object.hasOwn(row, n));
      for (const [name, misspelt] of nearMisses(absent, [key])) {
        errors.push({ field: name, rule: 'name', message: `the row has ${JSON.stringify(misspelt)}: did you mean ${name}?` });
        absent = absent.filter((n) => n !== name);
      }
    }
    for (const e of this.expected.values()) {
      if (e.inEveryRow && !Object.hasOwn(row, e.name) && !errors.some((x) => x.field === e.name)) errors.push({ field: e.name, rule: 'required', message: `${e.name} is not in the row (${e.why ?? 'required'})` });
    }
    return errors;
  }
}


/** Features of a bundle that come from feature sources (aggregates, entities, http, derived), in bundle order. */
export function sourcedFeatures(bundle: Bundle): string[] {
  const sourced = bundle.sources?.sourced;
  return sourced ? bundle.encoding.features.map((f) => f.name).filter((n) => sourced.has(n)) : [];
}

const BACKFILL_HINT = 'compute them with `rtml backfill`, as the server would have served them, and use its output';

export interface BundleColumnsOptions {
  /** Columns the user says are deliberately absent (`--allow-missing`): read as missing, or their default. */
  allowMissing?: readonly string[];
  /**
   * `file` (the default): the file carries the sourced features' values (`rtml score`,
   * `rtml profile`). `server`: the server or backfill computes them, so the file carries
   * the entity keys instead (`rtml simulate`, `rtml backfill -i`).
   */
  sourced?: 'file' | 'server';
  /** Other columns the command reads, such as a label or a time column. */
  also?: readonly ExpectedColumn[];
}

/**
 * The columns a data file must have for a bundle: every feature without a `default` (a
 * missing column would score every row on a missing value), and every sourced feature
 * (only `rtml backfill` or the server compute them).
 */
export function bundleColumns(bundle: Bundle, options: BundleColumnsOptions = {}): ColumnCheck {
  const sourced = new Set(sourcedFeatures(bundle));
  const expected: ExpectedColumn[] = [];
  for (const f of bundle.encoding.features) {
    if (sourced.has(f.name)) {
      if (options.sourced !== 'server') expected.push({ name: f.name, required: true, inEveryRow: true, why: `${bundle.name} reads these from feature sources; ${BACKFILL_HINT}` });
      continue;
    }
    const why = f.nullable ? `${bundle.name}'s nullable features: every row would score them as missing` : `${bundle.name}'s required features: every row would be rejected`;
    expected.push({ name: f.name, required: f.default === undefined, why });
  }
  if (options.sourced === 'server') {
    for (const key of bundle.sources?.keys ?? []) expected.push({ name: key, required: true, why: `keys of the entities ${bundle.name} looks up` });
  }
  expected.push(...(options.also ?? []));
  return new ColumnCheck(expected, options.allowMissing);
}

/** The columns of a stream's event file: the entity key, the event id and time are required; its fields may be absent. */
export function streamColumns(stream: StreamDefinition, allowMissing: readonly string[] = []): ColumnCheck {
  const { spec, keyField } = stream;
  const why = `required by stream ${stream.name}`;
  const expected: ExpectedColumn[] = [
    { name: keyField, required: true, why },
    { name: spec.id, required: true, why },
    { name: spec.time, required: true, why },
    ...Object.keys(spec.fields).map((name) => ({ name })),
  ];
  return new ColumnCheck(expected, allowMissing);
}

/**
 * The columns of an entity file: its key is required; the fields the bundle's features read,
 * and `updated_at` (for backfill), may be absent but not misspelt.
 */
export function entityColumns(bundle: Bundle, type: string, key: string, allowMissing: readonly string[] = []): ColumnCheck {
  const fields = new Set<string>(['updated_at']);
  for (const f of bundle.encoding.features) if (f.source && 'entity' in f.source && f.source.entity === type) fields.add(f.source.field);
  const expected: ExpectedColumn[] = [{ name: key, required: true, why: `the key of entity ${type}` }, ...[...fields].map((name) => ({ name }))];
  return new ColumnCheck(expected, allowMissing);
}
