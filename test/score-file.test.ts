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

  it('reads CSV cells from bytes as the record reader reads them: quoted, doubled quotes, padded, exponents, line breaks, non-ASCII', async () => {
    const dir = tempDir();
    const good = csvLines.slice(1, 41);
    const rows = [...good];
    rows[0] = withCell(good[0], 'Class', '"bad, very ""bad"""'); // a comma and doubled quotes pass through
    rows[1] = withCell(good[1], 'annual_inc', '" 35000 "'); // padded number
    rows[2] = withCell(good[2], 'funded_amnt', '1.61e4'); // an exponent
    rows[3] = withCell(good[3], 'int_rate', '+13.99'); // a sign
    rows[4] = withCell(good[4], 'Class', '"two\nlines"'); // a line break inside a quoted field
    rows[5] = withCell(good[5], 'Class', 'crédit'); // non-ASCII
    rows[6] = withCell(good[6], 'funded_amnt', '16100.5'); // not an integer: refused
    rows[7] = withCell(good[7], 'int_rate', '100.01'); // above max: refused
    rows[8] = withCell(good[8], 'sub_grade', '"C""4"'); // doubled quotes in a feature: unknown category
    rows[9] = withCell(good[9], 'int_rate', '1234567890.1234567'); // more digits than the plain path takes: refused (max)
    rows[10] = withCell(good[10], 'revol_util', '0.1234567890123456789'); // more digits, in range
    rows[11] = withCell(good[11], 'revol_util', '-0'); // negative zero is >= 0
    rows[12] = withCell(good[12], 'term', 'term_36 '); // padded category
    const input = join(dir, 'in.csv');
    writeFileSync(input, [header, ...rows].join('\r\n') + '\r\n');
    const viaCsv: unknown[] = [];
    const viaJson: unknown[] = [];
    await scoreFile(bundle, { input, output: join(dir, 'out.csv'), onFailure: (f) => viaCsv.push(f) });
    await scoreFile(bundle, { input, output: join(dir, 'out.jsonl'), onFailure: (f) => viaJson.push(f) });
    // The JSON-lines output goes through the record reader (one object per row): the reference.
    assert.deepEqual(viaCsv, viaJson);
    assert.deepEqual(
      viaCsv.map((f) => (f as { line: number }).line),
      [9, 10, 11, 12],
    );
    const reference = readFileSync(join(dir, 'out.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const written = parse(readFileSync(join(dir, 'out.csv')), { columns: true }) as Record<string, string>[];
    assert.equal(written.length, 36);
    assert.deepEqual(
      written,
      reference.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'number' ? String(v) : v ?? '']))),
    );
    assert.equal(written[0].Class, 'bad, very "bad"');
    assert.equal(written[4].Class, 'two\nlines');
    assert.equal(written[5].Class, 'crédit');
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

  it('writes JSON lines as CSV with every feature in the header, and says which later fields a CSV cannot hold', () => {
    const dir = tempDir();
    const rows = (parse(csvLines.slice(0, 4).join('\n'), { columns: true, cast: true }) as Record<string, unknown>[]).map((r) => ({ ...r }));
    delete rows[0].revol_util; // absent from the first row only
    rows[2].branch = 'north'; // a field only a later row has
    const input = join(dir, 'in.jsonl');
    writeFileSync(input, rows.map((r) => JSON.stringify(r)).join('\n'));
    const output = join(dir, 'out.csv');
    const run = rtml('score', CREDIT, '-i', input, '-o', output);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stderr, /line 3: field "branch" is not in the CSV header .*not written/);
    const out = parse(readFileSync(output), { columns: true }) as Record<string, string>[];
    assert.equal(out.length, 3);
    assert.equal(out[0].revol_util, '');
    assert.equal(out[1].revol_util, String(rows[1].revol_util));
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
    assert.match(run.stderr, /raw\.csv: has no columns txn_count_10m, txn_count_1h, .* \(card-fraud reads these from feature sources; compute them with `rtml backfill`/);
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
    assert.match(run.stderr, /raw\.csv: has no columns txn_count_10m, .* \(card-fraud reads these from feature sources/);
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
    assert.match(run.stderr, /line 2: txn_count_10m: required: txn_count_10m is not in the row \(card-fraud reads these from feature sources/);
    assert.equal(readFileSync(output, 'utf8').trim().split('\n').length, 2);
  });
});

describe('rtml score checks the header before scoring a row', () => {
  const rows = csvLines.slice(1, 1115); // 1,114 loans
  /** lending_club's first 1,114 loans with `revol_util` renamed, or dropped when `to` is null. */
  const withRevolUtil = (to: string | null) => {
    const at = columns.indexOf('revol_util');
    const edit = (line: string, value: string) => {
      const cells = line.split(',');
      if (to === null) cells.splice(at, 1);
      else cells[at] = value;
      return cells.join(',');
    };
    return [edit(header, JSON.stringify(to)), ...rows.map((r) => edit(r, cell(r, 'revol_util')))].join('\n') + '\n';
  };
  const scores = (file: string, column = 'p_bad') => (parse(readFileSync(file), { columns: true }) as Record<string, string>[]).map((r) => Number(r[column]));

  it('refuses a misspelt or missing column of a nullable feature (1,033 of these 1,114 loans would score differently), exit 2', () => {
    const dir = tempDir();
    for (const [name, expected] of [
      ['Revol_Util', /in\.csv: has column "Revol_Util": did you mean revol_util\? If a column is absent on purpose, say so: --allow-missing COLUMN\./],
      ['revol-util', /has column "revol-util": did you mean revol_util\?/],
      ['revol_utl', /has column "revol_utl": did you mean revol_util\?/],
      [null, /in\.csv: has no column revol_util \(credit's nullable features: every row would score them as missing\)/],
    ] as const) {
      writeFileSync(join(dir, 'in.csv'), withRevolUtil(name));
      const run = rtml('score', CREDIT, '-i', join(dir, 'in.csv'), '-o', join(dir, 'out.csv'));
      assert.equal(run.status, 2, `${name}: ${run.stderr}`);
      assert.match(run.stderr, expected);
      assert.equal(run.stderr.trim().split('\n').length, 1, 'one error');
    }
  });

  it('scores a column said to be absent (--allow-missing) as missing, as empty cells would', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'absent.csv'), withRevolUtil(null));
    writeFileSync(join(dir, 'empty.csv'), [header, ...rows.map((r) => withCell(r, 'revol_util', ''))].join('\n'));
    const absent = rtml('score', CREDIT, '-i', join(dir, 'absent.csv'), '-o', join(dir, 'absent.out.csv'), '--allow-missing', 'revol_util');
    assert.equal(absent.status, 0, absent.stderr);
    assert.equal(rtml('score', CREDIT, '-i', join(dir, 'empty.csv'), '-o', join(dir, 'empty.out.csv')).status, 0);
    assert.deepEqual(scores(join(dir, 'absent.out.csv')), scores(join(dir, 'empty.out.csv')));
    // A name --allow-missing does not know is a mistake too.
    const typo = rtml('score', CREDIT, '-i', join(dir, 'absent.csv'), '-o', join(dir, 'x.csv'), '--allow-missing', 'revol_utli');
    assert.equal(typo.status, 2);
    assert.match(typo.stderr, /--allow-missing revol_utli: credit reads no column "revol_utli"; did you mean revol_util\?/);
  });

  it("lets a feature with a default be absent, but not misspelt", () => {
    const dir = tempDir();
    const bundle = join(dir, 'credit');
    cpSync(CREDIT, bundle, { recursive: true, filter: (src) => !/(lending_club|train|test)\.csv$|\/out$/.test(src) });
    const manifest = join(bundle, 'rtml.yaml');
    writeFileSync(manifest, readFileSync(manifest, 'utf8').replace('{name: "revol_util", type: number, nullable: true, min: 0}', '{name: "revol_util", type: number, min: 0, default: 50}'));
    writeFileSync(join(dir, 'absent.csv'), withRevolUtil(null));
    assert.equal(rtml('score', bundle, '-i', join(dir, 'absent.csv'), '-o', join(dir, 'out.csv')).status, 0);
    writeFileSync(join(dir, 'misspelt.csv'), withRevolUtil('RevolUtil'));
    const misspelt = rtml('score', bundle, '-i', join(dir, 'misspelt.csv'), '-o', join(dir, 'out.csv'));
    assert.equal(misspelt.status, 2);
    assert.match(misspelt.stderr, /has column "RevolUtil": did you mean revol_util\?/);
  });

  it('says a `;`-separated file looks `;`-separated (a bundle without `features` would score every row alike), and reads it with --delimiter', () => {
    const NO_FEATURES = join(ROOT, 'test/fixtures/bundles/no_features');
    const golden = readFileSync(join(NO_FEATURES, 'golden.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { row: Record<string, number | null>; expected: number[] });
    const names = Object.keys(golden[0].row);
    const dir = tempDir();
    const input = join(dir, 'in.csv');
    writeFileSync(input, [names.join(';'), ...golden.map((g) => names.map((n) => g.row[n] ?? '').join(';'))].join('\n') + '\n');
    const run = rtml('score', NO_FEATURES, '-i', input, '-o', join(dir, 'out.csv'));
    assert.equal(run.status, 2);
    assert.match(run.stderr, /in\.csv: the file looks `;`-separated, not comma-separated: use --delimiter ';'/);
    const ok = rtml('score', NO_FEATURES, '-i', input, '-o', join(dir, 'out.csv'), '--delimiter', ';');
    assert.equal(ok.status, 0, ok.stderr);
    const scored = scores(join(dir, 'out.csv'), 'p_default');
    golden.forEach((g, i) => assert.ok(Math.abs(scored[i] - g.expected[0]) < 1e-6, `row ${i}: ${scored[i]} vs ${g.expected[0]}`));
  });

  it('in JSON lines, makes a row with a misspelt key a bad row naming it and scores the rest; an absent key stays missing', () => {
    const dir = tempDir();
    const loans = (parse(csvLines.slice(0, 4).join('\n'), { columns: true, cast: true }) as Record<string, unknown>[]).map(({ Class: _label, ...r }) => r);
    const { revol_util: _absent, ...withoutRevolUtil } = loans[1];
    const { annual_inc, ...misspelt } = loans[2];
    const input = join(dir, 'in.jsonl');
    writeFileSync(input, [loans[0], withoutRevolUtil, { ...misspelt, Annual_Inc: annual_inc }].map((r) => JSON.stringify(r)).join('\n') + '\n');
    const run = rtml('score', CREDIT, '-i', input, '-o', join(dir, 'out.jsonl'));
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stderr, /line 3: annual_inc: name: the row has "Annual_Inc": did you mean annual_inc\?/);
    assert.match(run.stderr, /scored 2 of 3 rows, 1 rejected/);
    const out = readFileSync(join(dir, 'out.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(out.map((r) => 'revol_util' in r), [true, false], 'the row without revol_util is scored, with it missing');
  });

  it('refuses an empty CSV; scores nothing from a header-only one; reads a byte order mark and CRLF line ends as plain text', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'empty.csv'), '');
    const empty = rtml('score', CREDIT, '-i', join(dir, 'empty.csv'), '-o', join(dir, 'out.csv'));
    assert.equal(empty.status, 2);
    assert.match(empty.stderr, /empty\.csv is empty: a CSV file starts with a header line naming its columns/);

    writeFileSync(join(dir, 'header.csv'), header + '\r\n');
    const headerOnly = rtml('score', CREDIT, '-i', join(dir, 'header.csv'), '-o', join(dir, 'header.out.csv'));
    assert.equal(headerOnly.status, 0, headerOnly.stderr);
    assert.equal(readFileSync(join(dir, 'header.out.csv'), 'utf8'), `${columns.join(',')},p_bad,decision,reason_codes,fallback\n`);

    writeFileSync(join(dir, 'plain.csv'), csvLines.slice(0, 101).join('\n') + '\n');
    writeFileSync(join(dir, 'windows.csv'), '\uFEFF' + csvLines.slice(0, 101).join('\r\n') + '\r\n');
    for (const name of ['plain', 'windows']) assert.equal(rtml('score', CREDIT, '-i', join(dir, `${name}.csv`), '-o', join(dir, `${name}.out.csv`)).status, 0);
    assert.equal(readFileSync(join(dir, 'windows.out.csv'), 'utf8'), readFileSync(join(dir, 'plain.out.csv'), 'utf8'));
  });

  it('makes a JSON line nested 100,000 deep a bad row instead of crashing (it overflowed the stack)', () => {
    const dir = tempDir();
    const loans = (parse(csvLines.slice(0, 3).join('\n'), { columns: true, cast: true }) as Record<string, unknown>[]).map(({ Class: _label, ...r }) => r);
    const deep = JSON.stringify(loans[0]).slice(0, -1) + `,"meta":${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
    const input = join(dir, 'in.jsonl');
    writeFileSync(input, [JSON.stringify(loans[0]), deep, JSON.stringify(loans[1])].join('\n') + '\n');
    const run = rtml('score', CREDIT, '-i', input, '-o', join(dir, 'out.jsonl'));
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stderr, /line 2: nests arrays or objects deeper than 64 levels/);
    assert.match(run.stderr, /scored 2 of 3 rows, 1 rejected/);
  });
});

describe('rtml profile and rtml backfill check their files the same way', () => {
  const FRAUD = join(ROOT, 'examples/card-fraud');
  const head = (file: string, lines: number) => readFileSync(join(FRAUD, 'data', file), 'utf8').split('\n').slice(0, lines).join('\n') + '\n';

  it('rtml profile refuses --data or --holdout with a misspelt column, leaving the reference as it was', () => {
    const dir = tempDir();
    const bundle = join(dir, 'credit');
    cpSync(CREDIT, bundle, { recursive: true, filter: (src) => !/(lending_club|train|test)\.csv$|\/out$/.test(src) });
    const before = readFileSync(join(bundle, 'reference.json'), 'utf8');
    const good = join(dir, 'good.csv');
    const misspelt = join(dir, 'misspelt.csv');
    writeFileSync(good, csvLines.slice(0, 600).join('\n') + '\n');
    writeFileSync(misspelt, [header.replace('"annual_inc"', '"Annual_Inc"'), ...csvLines.slice(600, 900)].join('\n') + '\n');
    for (const args of [['--data', misspelt], ['--data', good, '--label', 'Class', '--holdout', misspelt]]) {
      const run = rtml('profile', bundle, ...args);
      assert.equal(run.status, 2, run.stderr);
      assert.match(run.stderr, /misspelt\.csv: has column "Annual_Inc": did you mean annual_inc\?/);
      assert.equal(readFileSync(join(bundle, 'reference.json'), 'utf8'), before);
    }
  });

  it('rtml backfill names a misspelt column of its rows, events or entities', () => {
    const dir = tempDir();
    const files = {
      rows: head('transactions.csv', 50),
      events: head('transactions.csv', 50),
      customers: head('customers.csv', 50),
    };
    const run = (edit: Partial<typeof files>) => {
      for (const [name, text] of Object.entries({ ...files, ...edit })) writeFileSync(join(dir, `${name}.csv`), text);
      const at = (name: string) => join(dir, `${name}.csv`);
      return rtml('backfill', FRAUD, '--events', `transactions=${at('events')}`, '--entities', `customer=${at('customers')}`, '-i', at('rows'), '-o', join(dir, 'out.csv'), '--at', 'event_time', '--before');
    };
    assert.equal(run({}).status, 0);
    for (const [edit, expected] of [
      [{ rows: files.rows.replace('card_id', 'Card_Id') }, /rows\.csv: has column "Card_Id": did you mean card_id\?/],
      [{ rows: files.rows.replace('merchant_category', 'merchant_categroy') }, /rows\.csv: has column "merchant_categroy": did you mean merchant_category\?/],
      [{ events: files.events.replace('event_time', 'event-time') }, /events\.csv: has column "event-time": did you mean event_time\?/],
      [{ events: files.events.replace(',amount,', ',Amount,') }, /events\.csv: has column "Amount": did you mean amount\?/],
      [{ customers: files.customers.replace('account_age_days', 'AccountAgeDays') }, /customers\.csv: has column "AccountAgeDays": did you mean account_age_days\?/],
    ] as const) {
      const failed = run(edit);
      assert.equal(failed.status, 2, failed.stderr);
      assert.match(failed.stderr, expected);
    }
  });
});
