/**
 * CSV to CSV scoring straight from the file's bytes: records are split and their fields
 * found synchronously per input chunk, numbers go from bytes to the model's Float32Array,
 * input cells are copied to the output as bytes, and each block's output is one Buffer. No
 * string or object is made per cell on the common path (plain numbers, short category
 * texts decoded once), which is what made batch scoring slower than pandas + XGBoost.
 *
 * The rules are the record reader's and the encoder's (records.ts, encoding.ts): the same
 * rows are refused with the same messages, and the output is byte for byte what
 * `csvCell` writes (anything unusual in a field takes that path).
 */
import type { Readable } from 'node:stream';
import { closingQuote, csvCell, csvFields, csvHeader, MAX_RECORD_BYTES, RecordSplitter, tooLongMessage, withoutCr, type ReadOptions, type RecordError } from './records.ts';
import type { FieldError, RawRow } from '../bundle/encoding.ts';
import type { OutputValue } from '../bundle/outputs.ts';
import type { Scorer } from '../pipeline/score.ts';
import { rowOf, type RowExplanation } from '../pipeline/explain.ts';

const QUOTE = 0x22;
const COMMA = 0x2c;
const CR = 0x0d;
const LF = 0x0a;

/** A field's bytes copy to the output as they are. */
const PLAIN = 0;
/** Its text needs `csvCell` (a quote, comma or line break inside). */
const QUOTED_OUTPUT = 1;
/** Quoted with doubled quotes: its text is not its bytes. */
const DOUBLED = 2;

export interface CsvScoring {
  scorer: Scorer;
  read: ReadOptions;
  header: { columns: string[] | null };
  chunkSize: number;
  /** The output columns after the input's (model outputs, decisions, contributions). */
  outputColumns: readonly string[];
  /** Whether `values` reads the row's fields (a policy does): then each scored row is built as an object. */
  needsRow: boolean;
  /** Whether `values` needs the row's exact contributions. */
  needsExplanation: boolean;
  values(row: RawRow | null, outcome: { score: number; outputs: OutputValue[] }, explained: RowExplanation | null): OutputValue[];
  /** The output's header line, written before the first row (`first`: a row follows). */
  headerLine(columns: string[], first: boolean): string;
  write(bytes: Buffer): Promise<void>;
  fail(line: number, errors: RecordError[]): void;
  /** After each block: rows read so far. */
  progress(rows: number): void;
}

/** Bytes out, growing as needed; handed off whole, so a new one per block. */
class ByteSink {
  buf: Buffer;
  pos = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }
  room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  bytes(from: Buffer, start: number, end: number): void {
    this.room(end - start);
    this.pos += from.copy(this.buf, this.pos, start, end);
  }
  /** A record's bytes without its quotes: a loop, cheaper than a native copy per short field. */
  withoutQuotes(from: Buffer): void {
    this.room(from.length);
    const buf = this.buf;
    let pos = this.pos;
    for (let i = 0; i < from.length; i++) {
      const b = from[i];
      if (b !== QUOTE) buf[pos++] = b;
    }
    this.pos = pos;
  }
  text(s: string): void {
    this.room(s.length * 3);
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }
  byte(b: number): void {
    this.room(1);
    this.buf[this.pos++] = b;
  }
}

/**
 * Finds the fields of one record as csvFields does, writing content bounds and kinds at
 * `base`; returns the field count, or -1 when the record is malformed or has more than
 * `capacity` fields (csvFields then says how).
 */
function fieldBounds(record: Buffer, delimiter: number, starts: Int32Array, ends: Int32Array, kinds: Uint8Array, base: number, capacity: number): number {
  const n = record.length;
  let i = 0;
  let count = 0;
  for (;;) {
    if (count === capacity) return -1;
    const at = base + count++;
    if (record[i] === QUOTE) {
      const close = closingQuote(record, i + 1);
      if (close < 0) return -1;
      const doubled = close !== record.indexOf(QUOTE, i + 1);
      starts[at] = i + 1;
      ends[at] = close;
      let kind = doubled ? DOUBLED : PLAIN;
      if (!doubled) {
        for (let k = i + 1; k < close; k++) {
          const b = record[k];
          if (b === COMMA || b === CR || b === LF) {
            kind = QUOTED_OUTPUT;
            break;
          }
        }
      }
      kinds[at] = kind;
      i = close + 1;
      if (i === n) return count;
      if (record[i] !== delimiter) return -1;
    } else {
      let kind = PLAIN;
      let k = i;
      for (; k < n; k++) {
        const b = record[k];
        if (b === delimiter) break;
        if (b === QUOTE) return -1;
        if (b === COMMA || b === CR) kind = QUOTED_OUTPUT;
      }
      starts[at] = i;
      ends[at] = k;
      kinds[at] = kind;
      if (k === n) return count;
      i = k;
    }
    i++; // past the delimiter
    if (i === n) {
      if (count === capacity) return -1;
      starts[base + count] = ends[base + count] = n;
      kinds[base + count] = PLAIN;
      return count + 1;
    }
  }
}

function fieldText(record: Buffer, start: number, end: number, kind: number): string {
  const text = record.toString('utf8', start, end);
  return kind === DOUBLED ? text.replaceAll('""', '"') : text;
}

export async function scoreCsv(input: Readable, job: CsvScoring): Promise<{ rows: number; scored: number }> {
  const { scorer, read, header, chunkSize } = job;
  const encoding = scorer.bundle.encoding;
  const width = encoding.width;
  const delimiterText = read.delimiter ?? ',';
  const delimiter = delimiterText.charCodeAt(0);
  const maxBytes = read.maxRecordBytes ?? MAX_RECORD_BYTES;
  const cells = encoding.cellEncoders();
  const splitter = new RecordSplitter(delimiter, maxBytes);

  // Set once the header is read: each feature's column (-1: absent, read as missing).
  let columns: string[] = [];
  let columnOf = new Int32Array(0);
  let starts = new Int32Array(0);
  let ends = new Int32Array(0);
  let kinds = new Uint8Array(0);
  let wroteHeader = false;

  // The block being read: per record its line, bytes (null when refused) and errors.
  const lines: number[] = [];
  const records: (Buffer | null)[] = [];
  const refusals: (RecordError[] | null)[] = [];
  const inputs = new Float32Array(chunkSize * width);
  let slots = 0;
  let rows = 0;
  let scored = 0;
  let errors: FieldError[] = [];

  const refuse = (line: number, recordErrors: RecordError[]) => {
    lines.push(line);
    records.push(null);
    refusals.push(recordErrors);
  };
  const syntax = (line: number, message: string) => refuse(line, [{ field: null, rule: 'syntax', message }]);

  const readRecord = (line: number, firstLine: number, raw: Buffer | null) => {
    if (raw === null) {
      const tooLong = tooLongMessage(line, firstLine, maxBytes);
      if (header.columns === null) throw new Error(`${read.source ?? 'the input'}: the header is ${tooLong}`);
      rows++;
      refuse(line, [{ field: null, rule: 'size', message: tooLong }]);
      return;
    }
    const bytes = withoutCr(raw);
    if (bytes.length === 0) return;
    if (header.columns === null) {
      columns = header.columns = csvHeader(bytes, line, read);
      columnOf = Int32Array.from(cells, (c) => columns.indexOf(c.name));
      starts = new Int32Array(chunkSize * columns.length + 1);
      ends = new Int32Array(chunkSize * columns.length + 1);
      kinds = new Uint8Array(chunkSize * columns.length + 1);
      return;
    }
    rows++;
    const base = records.length * columns.length;
    const count = fieldBounds(bytes, delimiter, starts, ends, kinds, base, columns.length);
    if (count !== columns.length) {
      const fields = csvFields(bytes, delimiter);
      if (typeof fields === 'string') syntax(line, fields);
      else syntax(line, `has ${fields.length} fields, the header has ${columns.length}`);
      return;
    }
    const offset = slots * width;
    for (let f = 0; f < cells.length; f++) {
      const cell = cells[f];
      const column = columnOf[f];
      if (column < 0) cell.text(undefined, inputs, offset + cell.offset, errors);
      else {
        const at = base + column;
        if (kinds[at] === DOUBLED) cell.text(fieldText(bytes, starts[at], ends[at], DOUBLED), inputs, offset + cell.offset, errors);
        else cell.bytes(bytes, starts[at], ends[at], inputs, offset + cell.offset, errors);
      }
    }
    lines.push(line);
    if (errors.length > 0) {
      records.push(null);
      refusals.push(errors);
      errors = [];
    } else {
      records.push(bytes);
      refusals.push(null);
      slots++;
    }
  };

  const rowObject = (bytes: Buffer, base: number): RawRow => {
    const row: Record<string, unknown> = Object.create(null);
    for (let c = 0; c < columns.length; c++) row[columns[c]] = fieldText(bytes, starts[base + c], ends[base + c], kinds[base + c]);
    return row;
  };

  const flush = async () => {
    if (records.length === 0) return;
    const raw = slots === 0 ? new Float64Array(0) : await scorer.predict(inputs, slots);
    const explained = job.needsExplanation && slots > 0 ? scorer.explainer()!.explain(inputs, slots, raw) : null;
    const out = new ByteSink(Math.max(1 << 16, records.length * 160));
    if (!wroteHeader) {
      out.text(job.headerLine(columns, true));
      wroteHeader = true;
    }
    const outputs = scorer.bundle.outputs;
    let slot = 0;
    for (let r = 0; r < records.length; r++) {
      const bytes = records[r];
      if (bytes === null) {
        job.fail(lines[r], refusals[r]!);
        continue;
      }
      const base = r * columns.length;
      let plain = delimiter === COMMA;
      for (let c = 0; c < columns.length && plain; c++) plain = kinds[base + c] === PLAIN;
      if (plain) out.withoutQuotes(bytes); // every quote in it opens or closes a field
      else {
        for (let c = 0; c < columns.length; c++) {
          const at = base + c;
          if (c > 0) out.byte(COMMA);
          if (kinds[at] === PLAIN) out.bytes(bytes, starts[at], ends[at]);
          else out.text(csvCell(fieldText(bytes, starts[at], ends[at], kinds[at])));
        }
      }
      const outcome = { score: outputs.score(raw, slot), outputs: outputs.values(raw, slot) };
      const values = job.values(job.needsRow ? rowObject(bytes, base) : null, outcome, explained ? rowOf(explained, slot, cells.length) : null);
      for (const v of values) {
        out.byte(COMMA);
        out.text(csvCell(v));
      }
      out.byte(LF);
      slot++;
      scored++;
    }
    lines.length = records.length = refusals.length = 0;
    slots = 0;
    if (out.pos > 0) await job.write(out.buf.subarray(0, out.pos));
    job.progress(rows);
  };

  const pending = [] as ReturnType<RecordSplitter['push']>;
  const take = async (done: boolean) => {
    for (const r of pending) {
      readRecord(r.line, r.firstLine, r.bytes);
      if (records.length >= chunkSize) await flush();
    }
    pending.length = 0;
    if (done) await flush();
  };
  for await (const data of input) {
    splitter.push(typeof data === 'string' ? Buffer.from(data) : (data as Buffer), pending);
    await take(false);
  }
  const last = splitter.end();
  if (last) pending.push(last);
  await take(true);
  if (!wroteHeader && header.columns) await job.write(Buffer.from(job.headerLine(columns, false)));
  if (header.columns === null && read.columns) throw new Error(`${read.source ?? 'the input'} is empty: a CSV file starts with a header line naming its columns`);
  return { rows, scored };
}
