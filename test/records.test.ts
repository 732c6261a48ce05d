/**
 * Reading data files, the one reader every command uses: CSV as RFC 4180 says (the same
 * values csv-parse reads from lending_club), each malformed record one bad row at its own
 * line, and inputs that would exhaust memory or the stack (a record of gigabytes, a JSON
 * line nested 100,000 deep) turned into bad rows, not crashes.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { parse } from 'csv-parse/sync';
import { ColumnCheck, csvRecords, jsonlRecords, MAX_RECORD_BYTES, type ReadOptions, type SourceRecord } from '../src/batch/records.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const DATA = join(ROOT, 'examples/credit/lending_club.csv');

/** A stream of the given chunks, each delivered as it is (so records straddle chunk boundaries). */
const chunks = (...parts: (string | Buffer)[]) => Readable.from(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));

async function readCsv(stream: Readable, options: ReadOptions = {}): Promise<{ columns: string[] | null; records: SourceRecord[] }> {
  const header = { columns: null as string[] | null };
  const records: SourceRecord[] = [];
  for await (const r of csvRecords(stream, header, options)) records.push(r);
  return { columns: header.columns, records };
}

async function readJsonl(stream: Readable, options: ReadOptions = {}): Promise<SourceRecord[]> {
  const records: SourceRecord[] = [];
  for await (const r of jsonlRecords(stream, options)) records.push(r);
  return records;
}

/** A stream of `size` bytes of `fill` between `before` and `after`, made as it is read: never in memory at once. */
function huge(before: string, fill: string, size: number, after: string): Readable {
  const block = Buffer.alloc(1 << 16, fill);
  return Readable.from(
    (function* () {
      yield Buffer.from(before);
      for (let sent = 0; sent < size; sent += block.length) yield block;
      yield Buffer.from(after);
    })(),
  );
}

describe('reading CSV', () => {
  it('reads lending_club cell for cell as csv-parse does, in chunks of any size', async () => {
    const text = readFileSync(DATA);
    const expected = parse(text, { columns: true }) as Record<string, string>[];
    // 7-byte chunks: every quote, delimiter and line break falls on a boundary somewhere.
    const pieces: Buffer[] = [];
    for (let at = 0; at < text.length; at += 7) pieces.push(text.subarray(at, at + 7));
    for (const stream of [Readable.from([text]), Readable.from(pieces)]) {
      const { columns, records } = await readCsv(stream);
      assert.deepEqual(columns, Object.keys(expected[0]));
      assert.equal(records.length, 9857);
      assert.deepEqual(
        records.map((r) => ({ ...r.row })),
        expected,
      );
      assert.deepEqual(records.slice(0, 3).map((r) => r.line), [2, 3, 4]);
    }
  });

  it('reads quoted delimiters, doubled quotes and line breaks inside quotes, CRLF and a byte order mark; each record at the line it ends on', async () => {
    const file = '\uFEFF"id","note",amount\r\n1,"a, b",3\r\n2,"say ""hi""",4\r\n\r\n3,"two\r\nlines",5\r\n4,,6';
    const { columns, records } = await readCsv(chunks(file.slice(0, 5), file.slice(5, 30), file.slice(30)));
    assert.deepEqual(columns, ['id', 'note', 'amount']);
    assert.deepEqual(
      records.map((r) => [r.line, r.row && { ...r.row }]),
      [
        [2, { id: '1', note: 'a, b', amount: '3' }],
        [3, { id: '2', note: 'say "hi"', amount: '4' }],
        [6, { id: '3', note: 'two\r\nlines', amount: '5' }],
        [7, { id: '4', note: '', amount: '6' }],
      ],
    );
  });

  it('reports each malformed record once, at its own line, and reads the records after it', async () => {
    const { records } = await readCsv(chunks('a,b\n1,2\n3,x"y\n5,"6"7\n8,"9\n10,11\n'));
    assert.deepEqual(
      records.map((r) => [r.line, r.row ? { ...r.row } : r.errors.map((e) => e.message).join()]),
      [
        [2, { a: '1', b: '2' }],
        [3, 'field 2: a quote inside an unquoted field (quote the whole field and write the quote twice)'],
        [4, 'field 2: text after its closing quote (a quote inside a quoted field is written twice: "")'],
        // The quote opened on line 5 runs to the end of the file.
        [6, 'field 2: its opening quote is never closed'],
      ],
    );
  });

  it('reads a record of 256 MiB as one bad row, without holding it, and goes on to the next', async () => {
    const rss = process.memoryUsage().rss;
    const { records } = await readCsv(huge('a,b\n1,"', 'x', 256 << 20, '"\n2,3\n'));
    assert.deepEqual(
      records.map((r) => [r.line, r.row ? { ...r.row } : r.errors[0].rule]),
      [
        [2, 'size'],
        [3, { a: '2', b: '3' }],
      ],
    );
    assert.match(records[0].errors![0].message, new RegExp(`longer than ${MAX_RECORD_BYTES} bytes`));
    const grewMb = (process.memoryUsage().rss - rss) / 2 ** 20;
    assert.ok(grewMb < 64, `memory grew by ${grewMb.toFixed(0)} MiB`);
  });

  it('refuses a header it cannot read, one of 256 MiB, and an empty file', async () => {
    const columns = new ColumnCheck([
      { name: 'a', required: true },
      { name: 'b', required: true },
    ]);
    await assert.rejects(readCsv(chunks('a,"b\n1,2\n'), { source: 'in.csv' }), /in\.csv: line 2: the header cannot be read: field 2: its opening quote is never closed/);
    await assert.rejects(readCsv(huge('a,', 'b', 256 << 20, '\n1,2\n'), { source: 'in.csv' }), /in\.csv: the header is longer than 1048576 bytes/);
    await assert.rejects(readCsv(chunks('a,b\n'), { source: 'in.csv', delimiter: ';', columns }), /in\.csv: the file looks comma-separated, not `;`-separated: leave out --delimiter/);
    await assert.rejects(readCsv(chunks('\r\n\n'), { source: 'in.csv', columns }), /in\.csv is empty: a CSV file starts with a header line naming its columns/);
    assert.deepEqual((await readCsv(chunks('a,b\r\n'), { columns })).records, [], 'a header and no rows is an empty batch');
  });
});

describe('reading JSON lines', () => {
  it('reads CRLF line ends and a byte order mark', async () => {
    const records = await readJsonl(chunks('\uFEFF{"a":1}\r\n\r\n{"a":2}\r\n'));
    assert.deepEqual(
      records.map((r) => [r.line, r.row && { ...r.row }]),
      [
        [1, { a: 1 }],
        [3, { a: 2 }],
      ],
    );
  });

  it('reads a line of 256 MiB as one bad row, without holding it, and goes on to the next', async () => {
    const rss = process.memoryUsage().rss;
    const records = await readJsonl(huge('{"a":1}\n{"a":"', 'x', 256 << 20, '"}\n{"a":3}'));
    assert.deepEqual(
      records.map((r) => [r.line, r.row ? { ...r.row } : r.errors[0].rule]),
      [
        [1, { a: 1 }],
        [2, 'size'],
        [3, { a: 3 }],
      ],
    );
    const grewMb = (process.memoryUsage().rss - rss) / 2 ** 20;
    assert.ok(grewMb < 64, `memory grew by ${grewMb.toFixed(0)} MiB`);
  });

  it('reads a line nested 100,000 deep as a bad row; keys such as __proto__ and toString are plain data', async () => {
    const deep = `{"a":${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
    const tricky = '{"__proto__":{"polluted":1},"toString":"x","constructor":2,"note":"[[[[[[[[ in a string ]"}';
    const records = await readJsonl(chunks(`${deep}\n${tricky}\n`));
    assert.equal(records[0].row, null);
    assert.deepEqual(records[0].errors, [{ field: null, rule: 'depth', message: 'nests arrays or objects deeper than 64 levels' }]);
    const row = records[1].row!;
    assert.deepEqual(Object.keys(row), ['__proto__', 'toString', 'constructor', 'note']);
    assert.equal(Object.getPrototypeOf(row), Object.prototype, 'an own __proto__ key does not change the prototype');
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});
