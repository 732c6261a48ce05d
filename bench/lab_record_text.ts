/**
 * Lab (not part of `npm run bench`): what a credit decision's log record costs to serialize
 * (record.ts), whole and by part, on real records captured from decide().
 *
 *     node --import tsx bench/lab_record_text.ts
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { loadModelBundle } from '../src/bundle/load.ts';
import type { DecisionLog, DecisionRecordToAppend } from '../src/log/types.ts';
import { recordObjectText, recordTupleText } from '../src/log/record.ts';
import { RowBatchBuilder } from '../src/log/sqlite-schema.ts';
import { decide } from '../src/pipeline/decide.ts';
import { createScorer } from '../src/pipeline/score.ts';

const root = join(import.meta.dirname, '..');
const bundle = await loadModelBundle(join(root, 'examples/credit'));
const scorer = createScorer(bundle, { fromText: false });
const target = { bundle, scorer, featureNames: new Set(bundle.encoding.features.map((f) => f.name)) };
const records: DecisionRecordToAppend[] = [];
// Only what decide() calls: append keeps the record.
const log = { append: async (r: DecisionRecordToAppend) => void records.push(r) } as unknown as DecisionLog;
const csv = parse(readFileSync(join(root, 'examples/credit/lending_club.csv'), 'utf8'), { columns: true, cast: true }) as Record<string, unknown>[];
for (const row of csv.slice(0, 1000)) {
  delete row.Class;
  const text = JSON.stringify(row);
  try {
    await decide(target, JSON.parse(text), { log, deadline: performance.now() + 1000, forcedFallback: null, requestText: text } as Parameters<typeof decide>[2]);
  } catch {
    /* rows the schema refuses */
  }
}
const n = records.length;
let sink = 0;
/** Variants timed in alternation, 15 rounds of 10,000 records each: medians, and each variant's ratio to the first of its group, per round. */
const compare = (group: [string, () => number][]) => {
  const runs = group.map(() => [] as number[]);
  for (let rep = 0; rep < 15; rep++) {
    group.forEach(([, f], k) => {
      const t = process.hrtime.bigint();
      for (let i = 0; i < 10_000; i++) sink += f();
      runs[k].push(Number(process.hrtime.bigint() - t) / 10_000 / 1000);
    });
  }
  const median = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];
  group.forEach(([what], k) => {
    const ratio = median(runs[k].map((v, rep) => v / runs[0][rep]));
    console.log(`${what.padEnd(52)} ${median(runs[k]).toFixed(2)} µs/record  ${k === 0 ? '' : `ratio ${ratio.toFixed(2)}`}`);
  });
};
console.log(`${n} credit records; explanation ${records.filter((r) => r.explanation).length}`);
const withoutText = (r: DecisionRecordToAppend): DecisionRecordToAppend => {
  const { requestText: _, ...rest } = r;
  return rest;
};
const stringified = records.map(withoutText);
let b = new RowBatchBuilder();
const add = (r: DecisionRecordToAppend) => {
  if (b.count === 64) b = new RowBatchBuilder();
  b.add(r);
  return 1;
};
let i = 0;
compare([
  ['RowBatchBuilder.add (SQLite), request stringified', () => add(stringified[i++ % n])],
  ['RowBatchBuilder.add (SQLite), request text spliced', () => add(records[i++ % n])],
]);
compare([
  ['recordObjectText (PostgreSQL), request stringified', () => recordObjectText(stringified[i++ % n]).length],
  ['recordObjectText (PostgreSQL), request text spliced', () => recordObjectText(records[i++ % n]).length],
]);
compare([
  ['recordTupleText, request stringified', () => recordTupleText(stringified[i++ % n], 'length').length],
  ['recordTupleText, request text spliced', () => recordTupleText(records[i++ % n], 'length').length],
]);
compare([
  ['  whole tuple, one JSON.stringify', () => JSON.stringify(stringified[i++ % n]).length],
  ['  request', () => JSON.stringify(records[i++ % n].request).length],
  ['  reasons', () => JSON.stringify(records[i++ % n].reasons).length],
  ['  explanation', () => JSON.stringify(records[i++ % n].explanation ?? null).length],
  ['  timings', () => JSON.stringify(records[i++ % n].timingsMs).length],
  ['  outputs', () => JSON.stringify(records[i++ % n].outputs).length],
]);
if (sink === 1) console.log('');
