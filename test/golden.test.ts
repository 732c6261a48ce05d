/**
 * Parity with the training library: every bundle's golden file holds inputs and the
 * library's own predictions (XGBoost 1.7.4, or the Python code that defined an ONNX
 * graph); rtml must reproduce them to 1e-6 (absolute for probabilities, relative for values).
 */
import assert from 'node:assert/strict';
import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { loadModelBundle } from '../src/bundle/load.ts';
import { checkGolden } from '../src/bundle/golden.ts';
import type { ModelRuntime } from '../src/models/runtime.ts';
import { forestModel } from './helpers/forest.ts';
import { mulberry32 } from './helpers/prng.ts';
import { tempBundle, tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const FIXTURES = join(ROOT, 'test/fixtures/bundles');
const bundles = [join(ROOT, 'examples/credit'), join(ROOT, 'examples/card-fraud'), ...readdirSync(FIXTURES).sort().map((d) => join(FIXTURES, d))];

describe('golden parity at 1e-6', () => {
  for (const dir of bundles) {
    it(dir.slice(ROOT.length), async () => {
      const bundle = await loadModelBundle(dir);
      assert.ok(bundle.goldenPath, 'every fixture bundle has a golden file');
      const report = await checkGolden(bundle, 1e-6);
      assert.deepEqual(report.failures.slice(0, 5), []);
      assert.ok(report.rows >= 100, `only ${report.rows} golden rows`);
      await bundle.model.close?.();
    });
  }

  it('covers every objective the issue names, dart, categorical splits, missing values and ONNX', async () => {
    const seen = new Set<string>();
    for (const dir of bundles) {
      const bundle = await loadModelBundle(dir);
      const info = bundle.model.info;
      if (bundle.model.format === 'onnx') seen.add('onnx');
      if (typeof info.objective === 'string') seen.add(info.objective);
      if (info.booster === 'dart') seen.add('dart');
      await bundle.model.close?.();
    }
    for (const required of ['binary:logistic', 'binary:logitraw', 'binary:hinge', 'reg:squarederror', 'reg:logistic', 'count:poisson', 'reg:gamma', 'reg:tweedie', 'multi:softprob', 'multi:softmax', 'dart', 'onnx']) {
      assert.ok(seen.has(required), `no golden bundle covers ${required}`);
    }
  });

  it('`rtml check examples/credit` passes and prints the largest difference', () => {
    const run = spawnSync(process.execPath, [join(ROOT, 'bin/rtml.mjs'), 'check', 'examples/credit'], { encoding: 'utf8', cwd: ROOT });
    assert.equal(run.status, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /PASS: \d+ golden rows, largest absolute difference \d\.\d+e-\d+/);
  });

  it('`rtml check` without a golden file is not a pass: exit 1, nothing to check; an invalid bundle exits 2', () => {
    const dir = tempDir();
    for (const file of ['rtml.yaml', 'model.json']) cpSync(join(FIXTURES, 'binary_logistic', file), join(dir, file));
    const manifest = join(dir, 'rtml.yaml');
    writeFileSync(manifest, readFileSync(manifest, 'utf8').replace('golden: "golden.jsonl"\n', ''));
    const check = () => spawnSync(process.execPath, [join(ROOT, 'bin/rtml.mjs'), 'check', dir], { encoding: 'utf8', cwd: ROOT });
    const none = check();
    assert.equal(none.status, 1, none.stdout + none.stderr);
    assert.match(none.stderr, /nothing to check: .* loads and validates but has no golden file; add golden\.jsonl \(see README/);
    writeFileSync(manifest, readFileSync(manifest, 'utf8').replace('type: binary', 'type: regression'));
    const invalid = check();
    assert.equal(invalid.status, 2, invalid.stdout + invalid.stderr);
    assert.match(invalid.stderr, /invalid bundle/);
  });

  it('`rtml check` fails when the model no longer matches its golden file', async () => {
    const bundle = await loadModelBundle(join(ROOT, 'examples/credit'));
    const report = await checkGolden(bundle, 0);
    // At tolerance 0 the float32→float64 output differences show: the check really compares.
    assert.ok(report.failures.length > 0 && report.maxDiff > 0);
  });

  it('lets the event loop run while it scores a big forest’s golden rows (a server checks a version as it serves)', async (t) => {
    const forest = forestModel({ trees: 40_000, depth: 2, features: 20 });
    const random = mulberry32(9);
    const golden: string[] = [];
    for (let r = 0; r < 100; r++) {
      const x = Float32Array.from({ length: 20 }, () => random());
      golden.push(JSON.stringify({ row: Object.fromEntries([...x].map((v, f) => [`f${f}`, v])), expected: [forest.predict(x)] }));
    }
    const dir = tempBundle({
      'rtml.yaml': 'name: big\nversion: "1"\nmodel: { format: xgboost-json, path: model.json }\noutputs: { type: binary, classes: [no, yes] }\n',
      'model.json': forest.text,
      'golden.jsonl': `${golden.join('\n')}\n`,
    });
    const bundle = await loadModelBundle(dir);
    // The turns of the event loop seen between the first and the last golden row scored: the
    // file is one read (under 64 KiB), whose lines readline hands over at once.
    let turns = 0;
    const seen: number[] = [];
    const model = bundle.model as { predictSync: NonNullable<ModelRuntime['predictSync']> };
    const predict = model.predictSync;
    model.predictSync = (x, rows) => {
      seen.push(turns);
      return predict(x, rows);
    };
    const timer = setInterval(() => turns++, 1);
    const report = await checkGolden(bundle).finally(() => clearInterval(timer));
    assert.deepEqual(report.failures, []);
    assert.equal(report.rows, 100);
    assert.equal(seen.length, 100);
    const during = seen[99] - seen[0];
    t.diagnostic(`${during} turns of the event loop while scoring`);
    assert.ok(during >= 3, `${during} turns of the event loop while scoring 100 rows of 40,000 trees`);
  });
});
