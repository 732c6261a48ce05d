/**
 * The model's own reasons: policy.yaml's `model_reasons` table is checked at load like the
 * rest of the policy; per declared feature the contributions are XGBoost's pred_contribs
 * (one-hot columns summed back to their feature, the margin behind the score); reason codes
 * rank the features that hurt most, deterministically; a model without exact contributions
 * (ONNX) is refused for a policy that asks for them, never approximated.
 */
import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { parse as parseYaml, stringify } from 'yaml';
import { loadModelBundle, loadBundle } from '../src/bundle/load.ts';
import { createPolicy, PolicyError, type PolicyContext } from '../src/decision/policy.ts';
import { compileModelReasons, type ModelReasonsSpec } from '../src/decision/reasons.ts';
import { createScorer } from '../src/pipeline/score.ts';
import { readGoldenContributions } from './helpers/contributions.ts';
import { tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const CREDIT = join(ROOT, 'examples/credit');
const FIXTURES = join(ROOT, 'test/fixtures/bundles');
const creditPolicy = () => parseYaml(readFileSync(join(CREDIT, 'policy.yaml'), 'utf8')) as Record<string, unknown> & { model_reasons: ModelReasonsSpec };

async function creditContext(): Promise<PolicyContext> {
  const bundle = await loadModelBundle(CREDIT);
  return { features: bundle.encoding.features, outputs: bundle.outputs.columns };
}

/** The problems a policy is refused with, as "path: rule". */
function refusal(policy: unknown, context: PolicyContext): string[] {
  try {
    createPolicy(policy, context);
  } catch (err) {
    if (err instanceof PolicyError) return err.problems.map((p) => `${p.path}: ${p.rule}`);
    throw err;
  }
  return [];
}

describe('model_reasons in policy.yaml is checked at load', () => {
  it("the credit example's table loads, and lists its codes among the policy's reason codes", async () => {
    const policy = createPolicy(creditPolicy(), await creditContext());
    assert.deepEqual([...policy.modelReasons!.actions], ['decline', 'review']);
    const model = policy.reasonCodes.filter((c) => c.stage === 'model');
    assert.equal(model.length, 13);
    assert.deepEqual(model.find((c) => c.code === 'CREDIT_INQUIRIES'), { code: 'CREDIT_INQUIRIES', message: 'Number of recent inquiries on the credit bureau report', action: null, stage: 'model', features: ['inq_last_6mths', 'inq_last_12m', 'inq_fi'] });
  });

  it('an unknown feature is an error naming it, with "did you mean"', async () => {
    const p = creditPolicy();
    p.model_reasons.codes[1].features = ['int_rat'];
    assert.deepEqual(refusal(p, await creditContext()), ['model_reasons.codes[1].features[0]: unknown feature "int_rat": did you mean int_rate?']);
  });

  it('a feature under two codes, or under none, is an error naming it', async () => {
    const twice = creditPolicy();
    twice.model_reasons.codes[0].features.push('int_rate');
    assert.deepEqual(refusal(twice, await creditContext()), ['model_reasons.codes[1].features[0]: int_rate is already under code CREDIT_GRADE: a feature has one code']);
    const none = creditPolicy();
    none.model_reasons.codes = none.model_reasons.codes.filter((c) => c.code !== 'DELINQUENCY' && c.code !== 'LOAN_TERM');
    assert.deepEqual(refusal(none, await creditContext()), [
      'model_reasons.codes: every feature needs a code, so that no principal reason goes unreported: 4 have none (term, delinq_2yrs, acc_now_delinq, delinq_amnt)',
    ]);
  });

  it('actions must be declared and decided by the model; codes are unique across the policy', async () => {
    const p = creditPolicy();
    p.model_reasons.actions = ['decline', 'refer'];
    p.model_reasons.codes[0].code = 'HIGH_RISK';
    assert.deepEqual(refusal(p, await creditContext()), [
      'model_reasons.actions[1]: action "refer" is not one of actions [approve, review, decline]',
      'model_reasons.codes[0].code: duplicate code HIGH_RISK, first used at bands[2]',
    ]);
    const fallbackOnly = creditPolicy();
    fallbackOnly.actions = ['approve', 'review', 'decline', 'refer'];
    (fallbackOnly.fallback as { default: { action: string } }).default.action = 'refer';
    fallbackOnly.model_reasons.actions = ['refer'];
    assert.deepEqual(refusal(fallbackOnly, await creditContext()), ['model_reasons.actions[0]: no band or post_rule gives action "refer": the model never decides it, so it never carries model reasons']);
  });

  it('a rules-only policy (no bands) cannot ask for model reasons', async () => {
    const p = creditPolicy();
    delete p.bands;
    delete p.post_rules;
    assert.ok(refusal(p, await creditContext()).includes("model_reasons: model_reasons explain the model's decisions, but this policy has no bands (rules-only): the model never decides"));
  });

  it('adverse must say which way hurts', async () => {
    const p = creditPolicy();
    (p.model_reasons as { adverse: string }).adverse = 'up';
    assert.match(refusal(p, await creditContext())[0], /^model_reasons\.adverse: /);
  });
});

describe('ranking contributions into reason codes', () => {
  const features = ['a', 'b', 'c', 'd', 'e'];
  const spec = (adverse: 'raises_score' | 'lowers_score', max = 4): ModelReasonsSpec => ({
    actions: ['decline'],
    max,
    adverse,
    codes: [
      { code: 'AB', message: 'a and b', features: ['a', 'b'] },
      { code: 'C', message: 'c', features: ['c'] },
      { code: 'D', message: 'd', features: ['d'] },
      { code: 'E', message: 'e', features: ['e'] },
    ],
  });
  const rank = (s: ModelReasonsSpec, values: number[]) => compileModelReasons(s, features).reasons!.rank(values);

  it("sums a code's features, ranks the codes that hurt by how much, and lists each code's features most hurtful first", () => {
    const reasons = rank(spec('raises_score'), [0.25, -0.125, 0.5, -0.75, 0.0625]);
    assert.deepEqual(
      reasons.map((r) => [r.code, r.contribution, r.feature, r.features.map((f) => f.feature)]),
      [
        ['C', 0.5, 'c', ['c']],
        ['AB', 0.125, 'a', ['a', 'b']],
        ['E', 0.0625, 'e', ['e']],
      ],
    );
    assert.deepEqual(reasons[1], { code: 'AB', message: 'a and b', source: 'model', contribution: 0.125, feature: 'a', features: [{ feature: 'a', contribution: 0.25 }, { feature: 'b', contribution: -0.125 }] });
  });

  it('with lowers_score, what lowers the score hurts', () => {
    assert.deepEqual(rank(spec('lowers_score'), [0.25, -0.125, 0.5, -0.75, 0.0625]).map((r) => [r.code, r.contribution]), [['D', -0.75]]);
  });

  it('keeps at most `max`; ties go to the code listed first; nothing adverse gives no reasons', () => {
    assert.deepEqual(rank(spec('raises_score', 2), [0.5, 0, 0.25, 0.5, 0.5]).map((r) => r.code), ['AB', 'D']);
    assert.deepEqual(rank(spec('raises_score'), [-1, 0, 0, -0.5, -0.25]), []);
  });
});

describe('contributions per declared feature, for the margin behind the score', () => {
  it('credit: each feature is its model column, exactly XGBoost pred_contribs; the credit policy ranks them', async () => {
    const bundle = await loadModelBundle(CREDIT);
    const golden = readGoldenContributions(bundle);
    const scorer = createScorer(bundle, { fromText: false });
    const rows = golden.rows.length;
    const raw = await scorer.predict(golden.inputs, rows);
    const explainer = scorer.explainer()!;
    const explained = explainer.explain(golden.inputs, rows, raw);
    const n = explainer.features.length;
    for (let r = 0; r < rows; r++) {
      for (let f = 0; f < n; f++) assert.equal(explained.values[r * n + f], golden.expected[r * (n + 1) + f]);
      assert.equal(explained.bias[r], golden.expected[r * (n + 1) + n]);
    }
    // The credit policy's reasons for a row, computed here from XGBoost's own numbers and the
    // policy file's table: codes whose features' summed contributions raise P(bad), largest first.
    const policy = bundle.policy!;
    const table = creditPolicy().model_reasons.codes;
    for (const r of [0, 1, 2, 3, 100, 549]) {
      const xgb = (name: string) => golden.expected[r * (n + 1) + explainer.features.indexOf(name)];
      const expected = table
        .map((c, k) => ({ code: c.code, k, total: c.features.reduce((s, f) => s + xgb(f), 0) }))
        .filter((c) => c.total > 0)
        .sort((a, b) => b.total - a.total || a.k - b.k)
        .slice(0, 4)
        .map((c) => c.code);
      assert.deepEqual(policy.modelReasons!.rank(explained.values.subarray(r * n, (r + 1) * n)).map((m) => m.code), expected, `row ${r}`);
    }
  });

  it('one-hot columns are summed back to their feature', async () => {
    const bundle = await loadModelBundle(join(FIXTURES, 'onehot'));
    const golden = readGoldenContributions(bundle);
    const scorer = createScorer(bundle, { fromText: false });
    const raw = await scorer.predict(golden.inputs, golden.rows.length);
    const explainer = scorer.explainer()!;
    assert.deepEqual(explainer.features, ['x0', 'color', 'x1', 'x2', 'flag']);
    const explained = explainer.explain(golden.inputs, golden.rows.length, raw);
    const columns = bundle.encoding.columns;
    const width = columns.length + 1;
    for (let r = 0; r < golden.rows.length; r++) {
      const xgb = (c: number) => golden.expected[r * width + c];
      let color = 0;
      columns.forEach((c, i) => c.startsWith('color=') && (color += xgb(i)));
      assert.deepEqual([...explained.values.subarray(r * 5, r * 5 + 5)], [xgb(0), color, xgb(6), xgb(7), xgb(8)]);
    }
  });

  it("multi-class: the margin of the predicted class, with the class's name", async () => {
    for (const name of ['multi_softprob', 'multi_softmax']) {
      const bundle = await loadModelBundle(join(FIXTURES, name));
      const golden = readGoldenContributions(bundle);
      const scorer = createScorer(bundle, { fromText: false });
      const raw = await scorer.predict(golden.inputs, golden.rows.length);
      const explainer = scorer.explainer()!;
      const explained = explainer.explain(golden.inputs, golden.rows.length, raw);
      const n = golden.width;
      const groups = golden.groups;
      const classes = new Set<number>();
      for (let r = 0; r < golden.rows.length; r++) {
        // The predicted class is the one with the largest margin (XGBoost's own margins).
        const margins = [...golden.margins.subarray(r * groups, (r + 1) * groups)];
        const predicted = margins.indexOf(Math.max(...margins));
        assert.equal(explained.group[r], predicted, `${name} row ${r}`);
        classes.add(predicted);
        const at = (r * groups + predicted) * (n + 1);
        assert.deepEqual([...explained.values.subarray(r * n, (r + 1) * n)], [...golden.expected.subarray(at, at + n)]);
      }
      assert.equal(classes.size, groups, `${name}: every class is explained somewhere`);
      assert.equal(explainer.classes?.length, groups);
    }
  });

  it('a score that is the probability of label 0 is explained with the signs turned', async () => {
    const dir = tempDir();
    cpSync(join(FIXTURES, 'binary_logistic'), dir, { recursive: true });
    const manifest = readFileSync(join(dir, 'rtml.yaml'), 'utf8').replace(/positive_class: "pos"/, 'positive_class: "neg"');
    writeFileSync(join(dir, 'rtml.yaml'), manifest);
    const bundle = await loadModelBundle(dir);
    const golden = readGoldenContributions(bundle);
    const scorer = createScorer(bundle, { fromText: false });
    const raw = await scorer.predict(golden.inputs, golden.rows.length);
    const explained = scorer.explainer()!.explain(golden.inputs, golden.rows.length, raw);
    const n = golden.width;
    for (let r = 0; r < golden.rows.length; r++) {
      assert.deepEqual([...explained.values.subarray(r * n, (r + 1) * n)], [...golden.expected.subarray(r * (n + 1), r * (n + 1) + n)].map((v) => -v));
      assert.equal(explained.bias[r], -golden.expected[r * (n + 1) + n]);
    }
  });
});

describe('a model without exact contributions', () => {
  it('an ONNX bundle says so in rtml inspect, and a policy asking for model reasons is refused at load', async () => {
    const inspect = spawnSync(process.execPath, [join(ROOT, 'bin/rtml.mjs'), 'inspect', join(FIXTURES, 'onnx_xgb_binary')], { encoding: 'utf8' });
    assert.equal(inspect.status, 0, inspect.stderr);
    const contributions = JSON.parse(inspect.stdout).model.contributions;
    assert.equal(contributions.exact, false);
    assert.match(contributions.reason, /ONNX graph carries no tree statistics/);

    const dir = tempDir();
    cpSync(join(FIXTURES, 'onnx_xgb_binary'), dir, { recursive: true });
    const features = (await loadBundle(dir)).encoding.features.map((f) => f.name);
    const policy = {
      version: '1',
      actions: ['approve', 'decline'],
      bands: [{ below: 0.5, action: 'approve', code: 'LOW', message: 'low' }, { action: 'decline', code: 'HIGH', message: 'high' }],
      fallback: { default: { action: 'decline', code: 'FB', message: 'fallback' } },
      model_reasons: { actions: ['decline'], adverse: 'raises_score', codes: features.map((f) => ({ code: f.toUpperCase(), message: f, features: [f] })) },
    };
    writeFileSync(join(dir, 'policy.yaml'), stringify(policy));
    await assert.rejects(loadBundle(dir), (err: Error & { problems?: { path: string; rule: string }[] }) => {
      assert.deepEqual(err.problems?.map((p) => `${p.path}: ${p.rule}`), [
        "policy: model_reasons asks for the model's own reasons, but this model has no exact contributions: an ONNX graph carries no tree statistics (node covers) to compute exact contributions from; rtml computes them for XGBoost models",
      ]);
      return true;
    });
    // Without model_reasons, the same bundle loads: only asking for them is refused.
    delete (policy as { model_reasons?: unknown }).model_reasons;
    writeFileSync(join(dir, 'policy.yaml'), stringify(policy));
    await (await loadBundle(dir)).model?.close?.();
  });

  it('rtml inspect of an XGBoost bundle names the method', () => {
    const inspect = spawnSync(process.execPath, [join(ROOT, 'bin/rtml.mjs'), 'inspect', CREDIT], { encoding: 'utf8' });
    assert.deepEqual(JSON.parse(inspect.stdout).model.contributions, { exact: true, method: 'path-dependent TreeSHAP, exactly as XGBoost predict(pred_contribs=True)' });
  });
});
