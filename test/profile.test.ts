/**
 * `rtml profile` reads labels the way outcomes are read: class names, class indices and,
 * for a binary bundle, true/false. A label it cannot read, a label column that is not there,
 * one class only, or an AUC below 0.5 (classes the wrong way round) stop it: none of them
 * may turn into a reference with a meaningless performance record.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadBundle } from '../src/bundle/load.ts';
import { buildProfile, writeProfile } from '../src/monitor/profile.ts';
import { parseOutcome, readLabel } from '../src/pipeline/outcomes.ts';
import { tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const CREDIT = join(ROOT, 'examples/credit');
/** Held-out lending_club loans; the label column `Class` holds "good" / "bad". */
const TEST_CSV = readFileSync(join(CREDIT, 'test.csv'), 'utf8');

/** A copy of the credit bundle without its reference, its rtml.yaml edited. */
function creditCopy(edit: (yaml: string) => string = (y) => y): string {
  const dir = tempDir();
  for (const file of ['rtml.yaml', 'model.json', 'golden.jsonl', 'policy.yaml']) cpSync(join(CREDIT, file), join(dir, file));
  const manifest = join(dir, 'rtml.yaml');
  writeFileSync(manifest, edit(readFileSync(manifest, 'utf8')));
  return dir;
}

/** test.csv with each label rewritten, e.g. good → 0 and bad → 1. */
function relabelled(labels: { good: string; bad: string }, edit: (text: string) => string = (t) => t): string {
  const file = join(tempDir(), 'labelled.csv');
  writeFileSync(file, edit(TEST_CSV.replaceAll(',"good"\n', `,${labels.good}\n`).replaceAll(',"bad"\n', `,${labels.bad}\n`)));
  return file;
}

const rtml = (...args: string[]) => spawnSync(process.execPath, [join(ROOT, 'bin/rtml.mjs'), ...args], { encoding: 'utf8', cwd: ROOT });

describe('rtml profile labels', () => {
  it('reads class names, class indices and true/false alike, as outcomes are read', async () => {
    const bundle = await loadBundle(creditCopy());
    const measured = [];
    for (const labels of [
      { good: 'good', bad: 'bad' },
      { good: '0', bad: '1' },
      { good: 'false', bad: 'true' },
      { good: 'False', bad: 'True' },
    ]) {
      const profile = await buildProfile(bundle, { data: relabelled(labels), label: 'Class' });
      measured.push(profile.performance);
    }
    const auc = measured[0]!.auc;
    assert.ok(auc > 0.7, `AUC ${auc}`);
    for (const perf of measured) {
      assert.equal(perf?.auc, auc);
      assert.equal(perf?.positiveRate, measured[0]!.positiveRate);
      assert.equal(perf?.positiveClass, 'bad');
    }
    // The one reading behind both: an outcome's label and a profile's.
    for (const label of ['bad', 1, '1', true, 'true', 'True']) {
      assert.deepEqual(readLabel(bundle, label), { ok: true, label: 'bad' });
      assert.deepEqual(parseOutcome(bundle, { id: 'd1', label }), { ok: true, outcome: { id: 'd1', label: 'bad' } });
    }
    await bundle.model?.close?.();
  });

  it('refuses a label that is none of the classes, naming its line and value', async () => {
    const bundle = await loadBundle(creditCopy());
    // Line 1 is the header; the fourth loan is on line 5.
    const lines = TEST_CSV.split('\n');
    lines[4] = lines[4].replace(/,"(good|bad)"$/, ',"charged_off"');
    const file = join(tempDir(), 'odd.csv');
    writeFileSync(file, lines.join('\n'));
    await assert.rejects(buildProfile(bundle, { data: file, label: 'Class' }), /odd\.csv:5: label Class must be one of good, bad \(or its index, or true\/false\); got "charged_off"/);
    await bundle.model?.close?.();
  });

  it('refuses a label column the data does not have, suggesting the near miss', async () => {
    const bundle = await loadBundle(creditCopy());
    await assert.rejects(buildProfile(bundle, { data: join(CREDIT, 'test.csv'), label: 'class' }), /test\.csv has no label column "class" \(did you mean "Class"\?\)/);
    await assert.rejects(buildProfile(bundle, { data: join(CREDIT, 'train.csv'), holdout: join(CREDIT, 'test.csv'), label: 'Outcome' }), /test\.csv has no label column "Outcome"$/);
    await bundle.model?.close?.();
  });

  it('refuses labels of one class only: the AUC is undefined', async () => {
    const bundle = await loadBundle(creditCopy());
    await assert.rejects(buildProfile(bundle, { data: relabelled({ good: 'good', bad: 'good' }), label: 'Class' }), /none of the 1972 labelled rows is bad: with one class the AUC is undefined/);
    await bundle.model?.close?.();
  });

  it('refuses to write a reference whose AUC is below 0.5 (classes swapped), unless told it is deliberate', () => {
    const swapped = creditCopy((y) => y.replace('classes: ["good", "bad"]', 'classes: ["bad", "good"]'));
    const refused = rtml('profile', swapped, '--data', join(CREDIT, 'test.csv'), '--label', 'Class');
    assert.equal(refused.status, 1, refused.stdout + refused.stderr);
    assert.match(refused.stderr, /AUC 0\.2\d+ is below 0\.5: the classes look reversed .* Check outputs\.classes .* positive_class .* --allow-reversed-auc/);
    assert.equal(existsSync(join(swapped, 'reference.json')), false);
    const allowed = rtml('profile', swapped, '--data', join(CREDIT, 'test.csv'), '--label', 'Class', '--allow-reversed-auc');
    assert.equal(allowed.status, 0, allowed.stdout + allowed.stderr);
    assert.ok(JSON.parse(readFileSync(join(swapped, 'reference.json'), 'utf8')).performance.auc < 0.5);
  });

  it('writes the reference where monitoring.reference says, never through a folder leading outside', async () => {
    const dir = creditCopy((y) => y.replace('reference: reference.json', 'reference: profiles/credit.json'));
    const outside = tempDir();
    symlinkSync(outside, join(dir, 'profiles'));
    const bundle = await loadBundle(dir);
    const profile = await buildProfile(bundle, { data: join(CREDIT, 'test.csv') });
    await assert.rejects(writeProfile(bundle, profile), /profiles\/credit\.json would be written outside the bundle/);
    assert.equal(existsSync(join(outside, 'credit.json')), false);
    const inside = creditCopy((y) => y.replace('reference: reference.json', 'reference: profiles/credit.json'));
    mkdirSync(join(inside, 'profiles'));
    const insideBundle = await loadBundle(inside);
    assert.equal(await writeProfile(insideBundle, profile), join(inside, 'profiles/credit.json'));
    assert.equal((await loadBundle(inside)).referencePath, join(inside, 'profiles/credit.json'));
    await bundle.model?.close?.();
  });
});

describe('rtml profile files', () => {
  it('reads each file by its own format: JSON-lines data with a CSV holdout measures what two CSV files do', async () => {
    const bundle = await loadBundle(creditCopy());
    const { parse } = await import('csv-parse/sync');
    const rows = parse(readFileSync(join(CREDIT, 'train.csv')), { columns: true, cast: true }) as Record<string, unknown>[];
    const dataJsonl = join(tempDir(), 'train.jsonl');
    writeFileSync(dataJsonl, rows.map((r) => JSON.stringify(Object.fromEntries(Object.entries(r).filter(([, v]) => v !== '')))).join('\n'));
    const holdout = join(CREDIT, 'test.csv');
    const fromCsv = await buildProfile(bundle, { data: join(CREDIT, 'train.csv'), label: 'Class', holdout });
    const fromJsonl = await buildProfile(bundle, { data: dataJsonl, label: 'Class', holdout });
    assert.ok((fromCsv.performance?.rows ?? 0) > 1900);
    assert.equal(fromJsonl.performance?.rows, fromCsv.performance?.rows);
    assert.equal(fromJsonl.performance?.auc, fromCsv.performance?.auc);
  });
});
