/**
 * `rtml gate`: the credit example's v2 passes every gate it declares; v3 (two columns swapped
 * in training, parity intact) is caught by minimum functionality, the directional proof's
 * counterexample and the replay budget; the directional proof is exact on hand-made trees.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadModelBundle } from '../src/bundle/load.ts';
import { createScorer } from '../src/pipeline/score.ts';
import { runGates, type GateReport } from '../src/rollout/gates.ts';
import { mulberry32 } from './helpers/prng.ts';
import { tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const V2 = join(ROOT, 'examples/candidates/credit/v2');
const V3 = join(ROOT, 'examples/candidates/credit/v3');
const TEST_CSV = join(ROOT, 'examples/credit/test.csv');

function gate(args: string[]): { status: number | null; stdout: string; stderr: string; report: GateReport | null; junit: string; html: string } {
  const out = tempDir('rtml-gate-');
  const files = ['--json', join(out, 'r.json'), '--junit', join(out, 'r.xml'), '--html', join(out, 'r.html')];
  const run = spawnSync(process.execPath, [join(ROOT, 'bin/rtml.mjs'), 'gate', ...args, ...files], { cwd: ROOT, encoding: 'utf8' });
  const read = (f: string) => {
    try {
      return readFileSync(join(out, f), 'utf8');
    } catch {
      return '';
    }
  };
  const json = read('r.json');
  return { status: run.status, stdout: run.stdout, stderr: run.stderr, report: json ? JSON.parse(json) : null, junit: read('r.xml'), html: read('r.html') };
}

describe('rtml gate on the credit candidates', () => {
  it('v2 (retrained) passes every gate: parity, cases, invariance, both directions proven on the trees, slices, replay budget', () => {
    const run = gate([V2, '--champion', 'examples/credit', '--data', TEST_CSV]);
    assert.equal(run.status, 0, run.stdout + run.stderr);
    const report = run.report!;
    assert.equal(report.passed, true);
    assert.deepEqual([...new Set(report.gates.map((g) => g.kind))], ['parity', 'cases', 'invariance', 'directional', 'slices', 'replay']);
    assert.ok(report.gates.every((g) => g.status === 'passed'), run.stdout);
    for (const g of report.gates.filter((x) => x.kind === 'directional')) assert.match(g.message, /^proven on the trees: each of the 200 trees/);
    assert.match(run.junit, /<testsuite name="rtml gate credit v2" tests="10" failures="0" skipped="0"/);
    assert.equal(run.junit.match(/<testcase /g)?.length, 10);
    assert.doesNotMatch(run.html, /<script|https?:\/\/|<link|src=/i);
    assert.match(run.stdout, /^PASS: 10 passed, 0 failed, 0 skipped$/m);
  });

  it('v3 (int_rate and annual_inc swapped in training) is caught before it decides anything, though its parity holds', async () => {
    const run = gate([V3, '--champion', 'examples/credit', '--data', TEST_CSV]);
    assert.equal(run.status, 1, run.stdout + run.stderr);
    const byName = new Map(run.report!.gates.map((g) => [g.name, g]));
    assert.equal(byName.get('parity: golden outputs')!.status, 'passed');
    assert.equal(byName.get('case: a prime borrower is approved')!.status, 'failed');
    assert.equal(byName.get('case: a middling borrower is reviewed')!.status, 'failed');
    assert.equal(byName.get('replay budget: flip rate at most 0.15')!.status, 'failed');
    const income = byName.get('directional: annual_inc decreasing')!;
    assert.equal(income.status, 'failed');
    assert.match(income.message, /not proven: \d+ of 200 trees are not monotone on their own .* Counterexample on a row/);
    // The counterexample holds when scored independently of the gate.
    const cx = income.counterexample as { row: Record<string, unknown>; from: { annual_inc: number; score: number }; to: { annual_inc: number; score: number } };
    assert.ok(cx.from.annual_inc < cx.to.annual_inc);
    const scorer = createScorer(await loadModelBundle(V3), { fromText: false });
    const scored = await scorer.scoreRows([{ ...cx.row, annual_inc: cx.from.annual_inc }, { ...cx.row, annual_inc: cx.to.annual_inc }]);
    const [a, b] = scored.outcomes.map((o) => (o.ok ? o.score : NaN));
    assert.ok(b > a, `score ${a} -> ${b}`);
    assert.match(run.junit, /failures="4"/);
    assert.match(run.junit, /<failure message="not proven/);
    assert.match(run.stdout, /^FAIL: /m);
  });

  it('v2’s proof agrees with random probing: more income never raises P(bad) on 500 loans at 40 incomes each', async () => {
    const scorer = createScorer(await loadModelBundle(V2), { fromText: false });
    const random = mulberry32(7);
    const golden = readFileSync(join(V2, 'golden.jsonl'), 'utf8').trim().split('\n').slice(0, 500).map((l) => JSON.parse(l).row as Record<string, unknown>);
    for (const row of golden) {
      const incomes = Array.from({ length: 40 }, () => Math.round(random() * 400_000)).sort((x, y) => x - y);
      const scored = await scorer.scoreRows(incomes.map((annual_inc) => ({ ...row, annual_inc })));
      const scores = scored.outcomes.map((o) => (o.ok ? o.score : NaN));
      for (let i = 1; i < scores.length; i++) assert.ok(scores[i] <= scores[i - 1], `income ${incomes[i - 1]} -> ${incomes[i]}: ${scores[i - 1]} -> ${scores[i]}`);
    }
  });

  it('without --champion or --data: the replay budget and slices are skipped, the golden rows are the reference', () => {
    const run = gate([V2]);
    assert.equal(run.status, 0, run.stdout + run.stderr);
    const skipped = run.report!.gates.filter((g) => g.status === 'skipped').map((g) => g.kind);
    assert.deepEqual(skipped.sort(), ['replay', 'slices']);
    assert.equal(run.report!.reference.source, 'the golden rows');
    assert.match(run.junit, /skipped="2"/);
  });

  it('a bundle whose gates: has an unknown key, or that declares none, is a usage error (exit 2)', () => {
    const dir = tempDir('rtml-gate-bundle-');
    cpSync(V2, dir, { recursive: true });
    const manifest = readFileSync(join(dir, 'rtml.yaml'), 'utf8');
    writeFileSync(join(dir, 'rtml.yaml'), manifest.replace('  directional:', '  directionals:'));
    const bad = gate([dir]);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /rtml\.yaml:\d+: gates: Unrecognized key: "directionals"/);
    const none = gate(['examples/credit']);
    assert.equal(none.status, 2);
    assert.match(none.stderr, /declares no gates/);
  });
});

/** A bundle of two numeric features f and g and the given depth-2 trees (nodes 0; 1, 2; leaves 3-6), XGBoost 1.7's JSON layout. */
function twoFeatureBundle(trees: { root: [number, number]; left: [number, number]; right: [number, number]; leaves: number[] }[], gates: string): string {
  const dir = tempDir('rtml-monotone-');
  const json = trees.map((t, id) => {
    const feature = [t.root[0], t.left[0], t.right[0], 0, 0, 0, 0];
    const values = [t.root[1], t.left[1], t.right[1], ...t.leaves];
    return `{"left_children":[1,3,5,-1,-1,-1,-1],"right_children":[2,4,6,-1,-1,-1,-1],"parents":[2147483647,0,0,1,1,2,2],"split_type":[0,0,0,0,0,0,0],"categories":[],"categories_nodes":[],"categories_segments":[],"categories_sizes":[],"split_indices":[${feature}],"split_conditions":[${values}],"default_left":[1,1,1,0,0,0,0],"base_weights":[${values}],"sum_hessian":[8,4,4,2,2,2,2],"id":${id}}`;
  });
  writeFileSync(
    join(dir, 'model.json'),
    `{"version":[1,7,4],"learner":{"feature_names":["f","g"],"feature_types":["float","float"],"learner_model_param":{"base_score":"5E-1","num_class":"0","num_feature":"2","num_target":"1"},"objective":{"name":"binary:logistic"},"gradient_booster":{"name":"gbtree","model":{"gbtree_model_param":{"num_trees":"${trees.length}","num_parallel_tree":"1"},"tree_info":[${trees.map(() => 0)}],"trees":[${json.join(',')}]}}}}`,
  );
  writeFileSync(
    join(dir, 'rtml.yaml'),
    `name: toy\nversion: "1"\nmodel: { format: xgboost-json, path: model.json }\nfeatures:\n  - { name: f, type: number, min: 0 }\n  - { name: g, type: number, min: 0 }\noutputs: { type: binary }\n${gates}`,
  );
  return dir;
}

describe('the directional proof on hand-made trees', () => {
  const decreasingInF = 'gates:\n  directional: [{ feature: f, direction: decreasing }]\n';

  it('proves a tree whose leaves only look out of order across contexts that no row shares', async () => {
    // f < 10 then g < 5: for g < 5 the leaves go 0.3 -> 0.2, for g >= 5 0.1 -> 0.0: decreasing in f
    // either way, though leaf 0.1 (g >= 5, f < 10) sits below leaf 0.2 (g < 5, f >= 10).
    const dir = twoFeatureBundle([{ root: [0, 10], left: [1, 5], right: [1, 5], leaves: [0.3, 0.1, 0.2, 0] }], decreasingInF);
    const bundle = await loadModelBundle(dir);
    const report = await runGates(bundle, bundle.manifest.gates!, {});
    assert.equal(report.gates[0].status, 'passed');
    assert.match(report.gates[0].message, /^proven on the trees/);
  });

  it('finds the tree and leaves that break it, and a counterexample row', async () => {
    // g < 5 then f < 10: decreasing for g < 5, increasing for g >= 5.
    const dir = twoFeatureBundle([{ root: [1, 5], left: [0, 10], right: [0, 10], leaves: [0.1, 0, 0, 0.1] }], decreasingInF);
    const bundle = await loadModelBundle(dir);
    const data = join(dir, 'rows.jsonl');
    writeFileSync(data, '{"f": 3, "g": 1}\n{"f": 3, "g": 7}\n');
    const report = await runGates(bundle, bundle.manifest.gates!, { data });
    const g = report.gates[0];
    assert.equal(g.status, 'failed');
    assert.match(g.message, /1 of 1 trees are not monotone on their own \(tree 0: leaf 5 \(f in \[0, 10\)/);
    assert.deepEqual((g.counterexample as { row: unknown }).row, { f: 3, g: 7 });
  });

  it('reports "checked, not proven" when trees compensate each other and no reference row breaks it', async () => {
    // Tree 0 rises by 0.1 at f = 10, tree 1 falls by 0.2 there: the sum falls, neither alone is monotone... tree 0 is not.
    const dir = twoFeatureBundle(
      [
        { root: [0, 10], left: [1, 5], right: [1, 5], leaves: [0, 0, 0.1, 0.1] },
        { root: [0, 10], left: [1, 5], right: [1, 5], leaves: [0.2, 0.2, 0, 0] },
      ],
      decreasingInF,
    );
    const bundle = await loadModelBundle(dir);
    const data = join(dir, 'rows.jsonl');
    writeFileSync(data, '{"f": 3, "g": 1}\n{"f": 30, "g": 7}\n');
    const report = await runGates(bundle, bundle.manifest.gates!, { data });
    assert.equal(report.gates[0].status, 'passed');
    assert.match(report.gates[0].message, /not proven: 1 of 2 trees .*checked, not proven: no counterexample on 2 rows/);
  });
});
