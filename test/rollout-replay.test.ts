/**
 * `rtml replay` on real traffic: a real server decides the 1,972 held-out lending_club loans
 * and gets their outcomes; then the champion replayed against its own log must reproduce every
 * decision exactly, v2 must stay within its replay budget, and broken v3 must be caught.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { parse } from 'csv-parse/sync';
import { loadModelBundle } from '../src/bundle/load.ts';
import { textRowConverter } from '../src/decision/index.ts';
import type { ReplayReport } from '../src/rollout/replay.ts';
import { startServer } from './helpers/server.ts';
import { tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;

function replay(candidate: string, dataDir: string, extra: string[] = []): { status: number | null; report: ReplayReport; stderr: string; html: string } {
  const out = tempDir('rtml-replay-');
  const run = spawnSync(process.execPath, [join(ROOT, 'bin/rtml.mjs'), 'replay', candidate, '--service', 'credit', '--data-dir', dataDir, '-o', join(out, 'report.json'), '--html', join(out, 'report.html'), ...extra], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return { status: run.status, report: JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')), stderr: run.stderr, html: readFileSync(join(out, 'report.html'), 'utf8') };
}

describe('rtml replay on credit traffic logged by a real server', () => {
  let dataDir = '';
  let bad = 0;

  before(async () => {
    const bundle = await loadModelBundle(join(ROOT, 'examples/credit'));
    const typed = textRowConverter(bundle.encoding.features);
    const records = parse(readFileSync(join(ROOT, 'examples/credit/test.csv')), { columns: true }) as Record<string, string>[];
    const server = await startServer();
    dataDir = server.dataDir;
    try {
      const outcomes: { id: string; label: string }[] = [];
      for (let i = 0; i < records.length; i += 25) {
        await Promise.all(
          records.slice(i, i + 25).map(async (r, k) => {
            const { Class: label, ...features } = r;
            const row = { id: `loan-${i + k}`, ...typed(features) };
            const res = await server.post('/v1/services/credit/decisions', row);
            assert.equal(res.status, 200, await res.text());
            outcomes.push({ id: row.id, label });
            if (label === 'bad') bad++;
          }),
        );
      }
      const res = await server.write('/v1/services/credit/outcomes', outcomes);
      assert.equal(res.status, 200, await res.text());
    } finally {
      await server.stop();
    }
  });

  it('the champion replayed against its own log: zero flips, zero score difference, the same reasons, exactly', () => {
    const { report, stderr, html } = replay('examples/credit', dataDir);
    const c = report.comparison;
    assert.equal(c.decisions, 1972);
    assert.deepEqual(report.champion, { '1': 1972 });
    assert.equal(c.flips, 0);
    assert.equal(c.scoreDifference.exactlyEqual, c.scoreDifference.n);
    assert.equal(c.scoreDifference.maxAbsolute, 0);
    assert.ok(c.scoreDifference.n > 1900, `${c.scoreDifference.n} scored by both (pre-rules decide the rest)`);
    assert.equal(c.reasons.changed, 0);
    assert.equal(c.fallback.candidate, c.fallback.champion);
    c.matrix.counts.forEach((row, i) => row.forEach((n, j) => i !== j && assert.equal(n, 0)));
    const o = c.outcomes!;
    assert.equal(o.labelled, c.scoreDifference.n);
    assert.equal(o.aucDifference!.difference, 0);
    assert.equal(o.champion.auc, o.candidate.auc);
    assert.ok(o.champion.auc! > 0.74 && o.champion.auc! < 0.76, `AUC ${o.champion.auc}`);
    assert.ok(c.latencyMs.n > 1900 && c.latencyMs.p50! > 0);
    assert.match(stderr, /1972 decisions .* 0 flips \(0\.00%\)/);
    assert.ok(bad > 50);
    // A self-contained page: no script, nothing fetched.
    assert.doesNotMatch(html, /<script|https?:\/\/|<link|src=/i);
    assert.match(html, /Flip matrix/);
  });

  it('v2 (retrained) stays within its budget and reports the AUC difference with its DeLong interval', () => {
    const { report } = replay('examples/candidates/credit/v2', dataDir);
    const c = report.comparison;
    assert.equal(c.decisions, 1972);
    assert.ok(c.flipRate > 0 && c.flipRate <= 0.15, `flip rate ${c.flipRate}`);
    assert.equal(c.matrix.counts.flat().reduce((s, n) => s + n, 0), 1972);
    const d = c.outcomes!.aucDifference!;
    assert.ok(d.lower < d.difference && d.difference < d.upper);
    // (decisions the fallback made when the loaded machine missed the deadline have no score and are left out)
    assert.ok(Math.abs(d.aucA - 0.7451) < 0.005 && Math.abs(d.aucB - 0.75) < 0.005, `AUC ${d.aucA} -> ${d.aucB}`);
    assert.ok(Math.abs(c.actionRates.decline.change) < 0.02);
  });

  it('v3 (two columns swapped in training) is caught: most decisions flip, nothing approved, AUC down significantly', () => {
    const { report } = replay('examples/candidates/credit/v3', dataDir);
    const c = report.comparison;
    assert.ok(c.flipRate > 0.5, `flip rate ${c.flipRate}`);
    assert.ok(c.actionRates.decline.change > 0.3);
    const d = c.outcomes!.aucDifference!;
    assert.ok(d.upper < 0, `AUC difference ${d.difference} [${d.lower}, ${d.upper}]`);
  });

  it('takes a time range, and refuses what it cannot run', () => {
    const empty = spawnSync(process.execPath, [join(ROOT, 'bin/rtml.mjs'), 'replay', 'examples/credit', '--service', 'credit', '--data-dir', dataDir, '--until', '2000-01-01T00:00:00Z'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(empty.status, 2);
    assert.match(empty.stderr, /no decision of service "credit" in that time range/);
    const { report } = replay('examples/credit', dataDir, ['--since', '2000-01-01T00:00:00Z']);
    assert.equal(report.comparison.decisions, 1972);
    const noLog = spawnSync(process.execPath, [join(ROOT, 'bin/rtml.mjs'), 'replay', 'examples/credit', '--service', 'credit', '--data-dir', tempDir('rtml-nolog-')], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(noLog.status, 2);
    assert.match(noLog.stderr, /no decision log at/);
    const badTime = spawnSync(process.execPath, [join(ROOT, 'bin/rtml.mjs'), 'replay', 'examples/credit', '--service', 'credit', '--data-dir', dataDir, '--since', 'yesterday'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(badTime.status, 2);
    assert.match(badTime.stderr, /--since/);
  });
});
