/**
 * `rtml score` streams a file through the same pipeline real-time requests use: each row's
 * columns followed by the outputs, bad rows reported by line and skipped, exit status
 * saying whether any row failed, memory flat whatever the file size.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { parse } from 'csv-parse/sync';
import { loadModelBundle, type ModelBundle } from '../src/bundle/load.ts';
import { scoreFile } from '../src/batch/score-file.ts';
import { createScorer } from '../src/pipeline/score.ts';
import { tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const CREDIT = join(ROOT, 'examples/credit');
const DATA = join(CREDIT, 'lending_club.csv');

function rtml(...args: string[]) {
  return spawnSync(process.execPath, [join(ROOT, 'bin/rtml.mjs'), ...args], { encoding: 'utf8', cwd: ROOT });
}

const csvLines = readFileSync(DATA, 'utf8').trimEnd().split('\n');
const header = csvLines[0];
const columns = header.split(',').map((c) => c.replaceAll('"', ''));
const cell = (line: string, column: string) => line.split(',')[columns.indexOf(column)];
const withCell = (line: string, column: string, value: string) => {
  const cells = line.split(',');
  cells[columns.indexOf(column)] = value;
  return cells.join(',');
};

describe('rtml score', () => {
  let bundle: ModelBundle;
  before(async () => {
    bundle = await loadModelBundle(CREDIT);
  });

  it('scores every good row, reports each bad one by line and rule, and exits 1', () => {
    const dir = tempDir();
    const good = csvLines.slice(1, 201);
    const rows = [...good];
    // File lines: header is line 1, so rows[i] is line i + 2.
    rows[9] = withCell(good[9], 'annual_inc', '-5'); // line 11: below min
    rows[19] = withCell(good[19], 'term', '"term_48"'); // line 21: unknown category
    rows[29] = withCell(good[29], 'funded_amnt', ''); // line 31: required
    rows[39] = withCell(good[39], 'int_rate', 'twelve'); // line 41: not a number
    rows[49] = good[49] + ',extra'; // line 51: wrong field count
    const input = join(dir, 'in.csv');
    writeFileSync(input, [header, ...rows].join('\n') + '\n');
    const output = join(dir, 'out.csv');
    const errorsFile = join(dir, 'errors.jsonl');

    const run = rtml('score', CREDIT, '--input', input, '--output', output, '--errors', errorsFile);
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stderr, /line 11: annual_inc: min: annual_inc must be >= 0, got -5/);
    assert.match(run.stderr, /line 21: term: category: term must be one of term_36, term_60; got "term_48"/);
    assert.match(run.stderr, /line 31: funded_amnt: required/);
    assert.match(run.stderr, /line 41: int_rate: type/);
    assert.match(run.stderr, /line 51: has 24 fields, the header has 23/);
    assert.match(run.stderr, /scored 195 of 200 rows, 5 rejected/);

    const failures = readFileSync(errorsFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(failures.map((f) => f.line), [11, 21, 31, 41, 51]);

    const out = parse(readFileSync(output), { columns: true }) as Record<string, string>[];
    assert.equal(out.length, 195);
    // The policy's decision follows the model's output, as the server would give it.
    assert.deepEqual(Object.keys(out[0]), [...columns, 'p_bad', 'decision', 'reason_codes', 'fallback']);
    assert.ok(out.every((r) => ['approve', 'review', 'decline'].includes(r.decision) && /^[A-Z_ ]+$/.test(r.reason_codes)));
    // Extra columns such as the label pass through, and rows keep their order.
    assert.equal(out[0].Class, cell(good[0], 'Class').replaceAll('"', ''));
    assert.equal(out[9].funded_amnt, cell(good[10], 'funded_amnt'));
  });

  it('writes the same probabilities batch scoring and one-row-at-a-time (real-time) scoring give', async () => {
    const dir = tempDir();
    const input = join(dir, 'in.csv');
    writeFileSync(input, csvLines.slice(0, 301).join('\n'));
    const output = join(dir, 'out.csv');
    const summary = await scoreFile(bundle, { input, output });
    assert.deepEqual([summary.rows, summary.scored, summary.failed], [300, 300, 0]);
    const batch = (parse(readFileSync(output), { columns: true }) as Record<string, string>[]).map((r) => Number(r.p_bad));

    const scorer = createScorer(bundle, { fromText: true });
    const rows = parse(csvLines.slice(0, 301).join('\n'), { columns: true }) as Record<string, string>[];
    for (let i = 0; i < rows.length; i++) {
      const [one] = (await scorer.scoreRows([rows[i]])).outcomes;
      assert.ok(one.ok);
      assert.equal(one.score, batch[i], `row ${i}`);
    }
  });

  it('reads and writes JSON lines, passing extra keys through', () => {
    const dir = tempDir();
    const rows = (parse(csvLines.slice(0, 21).join('\n'), { columns: true, cast: true }) as Record<string, unknown>[]).map((r, i) => ({ ...r, id: `loan-${i}` }));
    const input = join(dir, 'in.jsonl');
    writeFileSync(input, rows.map((r) => JSON.stringify(r)).join('\n') + '\n{not json}\n');
    const output = join(dir, 'out.jsonl');
    const run = rtml('score', CREDIT, '-i', input, '-o', output);
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stderr, /line 21: not valid JSON/);
    const out = readFileSync(output, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(out.length, 20);
    assert.equal(out[3].id, 'loan-3');
    assert.ok(out[3].p_bad > 0 && out[3].p_bad < 1);
  });

  it('exits 0 when every row scores, and 2 when the bundle is invalid', () => {
    const dir = tempDir();
    const input = join(dir, 'in.csv');
    writeFileSync(input, csvLines.slice(0, 51).join('\n'));
    const ok = rtml('score', CREDIT, '-i', input, '-o', join(dir, 'out.csv'));
    assert.equal(ok.status, 0, ok.stderr);
    const bad = rtml('score', dir, '-i', input, '-o', join(dir, 'out2.csv'));
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /no rtml\.yaml here/);
  });

  it('streams in constant memory: 15x more rows does not grow peak memory with the file', () => {
    const dir = tempDir();
    const body = csvLines.slice(1).join('\n');
    const write = (copies: number) => {
      const file = join(dir, `in-${copies}.csv`);
      writeFileSync(file, header + '\n' + Array.from({ length: copies }, () => body).join('\n') + '\n');
      return file;
    };
    const peakRss = (file: string) => {
      const script = `
        import { loadModelBundle } from './src/bundle/load.ts';
        import { scoreFile } from './src/batch/score-file.ts';
        const bundle = await loadModelBundle(${JSON.stringify(CREDIT)});
        const s = await scoreFile(bundle, { input: ${JSON.stringify(file)}, output: ${JSON.stringify(join(dir, 'out.csv'))} });
        console.log(JSON.stringify({ rows: s.scored, rss: process.resourceUsage().maxRSS }));`;
      const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', cwd: ROOT });
      assert.equal(run.status, 0, run.stderr);
      return JSON.parse(run.stdout) as { rows: number; rss: number };
    };
    const small = peakRss(write(2));
    const large = peakRss(write(30));
    assert.equal(large.rows, small.rows * 15);
    // Holding the file would cost ~300 MB more (1 KB a row); a streaming scorer's peak only
    // moves with the garbage collector's whims.
    const growthMb = (large.rss - small.rss) / 1024;
    assert.ok(growthMb < 100, `peak RSS grew by ${growthMb.toFixed(1)} MB from ${small.rows} to ${large.rows} rows`);
  });
});

describe('rtml score and rtml profile on a bundle with feature sources', () => {
  const FRAUD = join(ROOT, 'examples/card-fraud');
  const golden = readFileSync(join(FRAUD, 'golden.jsonl'), 'utf8').trim().split('\n').slice(0, 3).map((l) => JSON.parse(l).row as Record<string, unknown>);

  it('refuses a CSV without the sourced columns instead of scoring their defaults', () => {
    const dir = tempDir();
    const input = join(dir, 'raw.csv');
    writeFileSync(input, 'txn_id,card_id,customer_id,amount,merchant_category\nt1,c1,u1,90.5,gift_cards\n');
    const run = rtml('score', FRAUD, '-i', input, '-o', join(dir, 'out.csv'));
    assert.equal(run.status, 2);
    assert.match(run.stderr, /card-fraud reads txn_count_10m, txn_count_1h, .* from feature sources; the input has no such columns: compute them with `rtml backfill`/);
  });

  it('refuses to profile a reference from data without the sourced columns (it would describe their defaults)', () => {
    const dir = tempDir();
    const bundleCopy = join(dir, 'card-fraud');
    cpSync(FRAUD, bundleCopy, { recursive: true, filter: (src) => !/\/(data|out)$/.test(src) });
    const input = join(dir, 'raw.csv');
    writeFileSync(input, 'txn_id,card_id,customer_id,amount,merchant_category\nt1,c1,u1,90.5,gift_cards\n');
    const before = readFileSync(join(bundleCopy, 'reference.json'), 'utf8');
    const run = rtml('profile', bundleCopy, '--data', input);
    assert.equal(run.status, 2);
    assert.match(run.stderr, /card-fraud reads txn_count_10m, .* from feature sources; .*raw\.csv has no such columns/);
    assert.equal(readFileSync(join(bundleCopy, 'reference.json'), 'utf8'), before, 'the reference is left as it was');
  });

  it('reports a JSON line without a sourced feature by line and field, and scores the rest', () => {
    const dir = tempDir();
    const input = join(dir, 'rows.jsonl');
    const { txn_count_10m: _dropped, ...partial } = golden[1];
    writeFileSync(input, [golden[0], partial, golden[2]].map((r) => JSON.stringify(r)).join('\n') + '\n');
    const output = join(dir, 'out.jsonl');
    const run = rtml('score', FRAUD, '-i', input, '-o', output);
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stderr, /line 2: txn_count_10m: required: txn_count_10m comes from a feature source and is not in the row/);
    assert.equal(readFileSync(output, 'utf8').trim().split('\n').length, 2);
  });
});
