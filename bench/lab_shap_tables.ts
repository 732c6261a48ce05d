/**
 * Lab (not part of `npm run bench`): TreeSHAP's cost per row by strategy (whole-tree tables,
 * leaf tables, budgets), on distinct credit rows, back to back and with other work between
 * rows that evicts the caches (as the server's request path does).
 *
 *     node --import tsx bench/lab_shap_tables.ts   (THRASH_MB=4: bytes touched between rows)
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseXgbJson, parseXgbModel } from '../src/models/xgboost/format.ts';
import { modelObjective } from '../src/models/xgboost/runtime.ts';
import { buildTreeShap, type TreeShapOptions } from '../src/models/xgboost/shap.ts';
import { loadModelBundle } from '../src/bundle/load.ts';
import { createScorer } from '../src/pipeline/score.ts';
import { parse } from 'csv-parse/sync';

const root = join(import.meta.dirname, '..');
const model = parseXgbModel(parseXgbJson(readFileSync(join(root, 'examples/credit/model.json'), 'utf8')));
const { baseMargins } = modelObjective(model);
const bundle = await loadModelBundle(join(root, 'examples/credit'));
const scorer = createScorer(bundle, { fromText: true });
const csv = parse(readFileSync(join(root, 'examples/credit/test.csv'), 'utf8'), { columns: true }) as Record<string, string>[];
const encoded = scorer.encode(csv.slice(0, 2000));
const F = model.numFeature;
const x = encoded.inputs;
const rows = Math.min(2000, x.length / F);
const views = Array.from({ length: rows }, (_, i) => x.subarray(i * F, (i + 1) * F));
// Other work between rows: touching this many bytes evicts L1/L2 (4 MiB per core here).
const thrash = new Float64Array((Number(process.env.THRASH_MB ?? 4) * 1024 * 1024) / 8);

const variants: [string, TreeShapOptions][] = [
  ['whole (default 16 MiB)', {}],
  ['leaf tables only', { wholeTreeTables: false }],
  ['whole, budget 1M entries', { tableBudget: 1024 * 1024 }],
  ['whole, budget 512k entries', { tableBudget: 512 * 1024 }],
  ['recursion only', { tableBudget: 0 }],
];
const shaps = variants.map(([name, o]) => [name, buildTreeShap(model, baseMargins, o)] as const);
const out = new Float64Array(F + 1);
const ref = new Float64Array(rows * (F + 1));
shaps[0][1].contributions(x, rows, ref);
for (const [name, s] of shaps) {
  const mine = new Float64Array(rows * (F + 1));
  s.contributions(x, rows, mine);
  for (let i = 0; i < mine.length; i++) if (!Object.is(mine[i], ref[i])) throw new Error(`${name} differs at ${i}`);
}
let sink = 0;
function run(s: (typeof shaps)[number][1], thrashing: boolean, n: number): number {
  let busy = 0;
  for (let i = 0; i < n; i++) {
    if (thrashing) for (let j = 0; j < thrash.length; j += 8) thrash[j] += 1;
    const t = process.hrtime.bigint();
    s.contributions(views[i % rows], 1, out);
    busy += Number(process.hrtime.bigint() - t);
    sink += out[0];
  }
  return busy / n / 1000;
}
const median = (a: number[]) => a.sort((p, q) => p - q)[a.length >> 1];
for (const [, s] of shaps) { run(s, false, 4000); run(s, true, 200); }
const result: Record<string, { entries: number; whole: number; leaves: number; rec: number; hotUs: number[]; coldUs: number[] }> = {};
for (const [name, s] of shaps) result[name] = { entries: s.tableEntries, whole: s.wholeTableTrees, leaves: s.leafTableTrees, rec: s.recursiveTrees, hotUs: [], coldUs: [] };
for (let rep = 0; rep < 5; rep++) {
  for (const [name, s] of shaps) {
    result[name].hotUs.push(run(s, false, 4000));
    result[name].coldUs.push(run(s, true, 400));
  }
}
for (const [name, r] of Object.entries(result)) {
  console.log(`${name.padEnd(28)} ${String(r.entries).padStart(8)} entries (${r.whole} whole, ${r.leaves} leaf, ${r.rec} recursion)  back to back ${median(r.hotUs).toFixed(2)} µs/row   caches evicted between rows ${median(r.coldUs).toFixed(2)} µs/row`);
}
if (sink === 42) console.log('');
