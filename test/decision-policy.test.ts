/**
 * The decision policy turns a model score into an action with reason codes: pre-rules
 * before the model, score bands, post-rules that override, guards that send bad scores to
 * a deterministic fallback. It is checked completely when it loads.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { parse as parseYaml, stringify } from 'yaml';
import { readManifest } from '../src/bundle/load.ts';
import type { FeatureSpec } from '../src/bundle/manifest.ts';
import { createPolicy, loadPolicy, parsePolicy, PolicyError, type Policy, type PolicyContext } from '../src/decision/policy.ts';
import { textRowConverter } from '../src/decision/row.ts';
import { tempDir } from './helpers/tmp.ts';

const features: FeatureSpec[] = [
  { name: 'annual_inc', type: 'number', nullable: true },
  { name: 'funded_amnt', type: 'number', nullable: false },
  { name: 'delinq_2yrs', type: 'integer', nullable: true },
  { name: 'int_rate', type: 'number', nullable: false },
  { name: 'term', type: 'category', values: ['term_36', 'term_60'], encoding: 'onehot', on_unknown: 'error', nullable: false },
];
const context: PolicyContext = { features, outputs: ['p_bad'] };

const POLICY = `
version: "2026-11-01"
actions: [approve, review, decline]
pre_rules:
  - { code: LOW_INCOME, when: "annual_inc < 12000", action: decline, message: "Income below 12,000" }
  - { code: LOAN_TOO_LARGE, when: "funded_amnt > 40000", action: decline, message: "Above the product limit" }
bands:
  - { below: 0.05, action: approve, code: LOW_RISK, message: "Predicted risk below 5%" }
  - { below: 0.15, action: review, code: MEDIUM_RISK, message: "Predicted risk 5% to 15%" }
  - { action: decline, code: HIGH_RISK, message: "Predicted risk 15% or more" }
post_rules:
  - { code: RECENT_DELINQUENCY, when: "score < 0.05 and delinq_2yrs >= 2", action: review, message: "Two or more delinquencies" }
  - { code: HIGH_BURDEN, when: "funded_amnt / annual_inc > 0.5", action: review, message: "Loan above half of income", applies_to: [approve] }
fallback:
  rules:
    - { code: FB_HIGH_RATE, when: "int_rate >= 20", action: decline, message: "Interest rate 20% or more" }
    - { code: FB_SHORT_LOW_RATE, when: "term == 'term_36' and int_rate < 8", action: approve, message: "Short low-rate loan" }
  default: { action: review, code: FB_MANUAL_REVIEW, message: "Model unavailable: manual review" }
`;

const policy = parsePolicy(POLICY, context);
const row = (over: Record<string, unknown> = {}) => ({ annual_inc: 60000, funded_amnt: 10000, delinq_2yrs: 0, int_rate: 12, term: 'term_36', ...over });

function policyFails(text: string, ...patterns: RegExp[]): PolicyError {
  let caught: unknown;
  try {
    parsePolicy(text, context);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof PolicyError, `expected PolicyError, got ${String(caught)}`);
  for (const p of patterns) assert.match(caught.message, p);
  return caught;
}

/** POLICY with one line replaced. */
const edit = (from: string, to: string) => {
  assert.ok(POLICY.includes(from), from);
  return POLICY.replace(from, to);
};

describe('policy: pre-rules run before the model', () => {
  it('decides without the model when a pre-rule fires, first match wins', () => {
    assert.deepEqual(policy.preDecide(row({ annual_inc: 5000, funded_amnt: 50000 })), {
      action: 'decline',
      reasons: [{ code: 'LOW_INCOME', message: 'Income below 12,000' }],
      stage: 'pre_rule',
    });
    assert.equal(policy.preDecide(row({ funded_amnt: 50000 }))?.reasons[0].code, 'LOAN_TOO_LARGE');
  });

  it('returns null when no pre-rule fires: then the model runs', () => {
    assert.equal(policy.preDecide(row()), null);
  });

  it('does not fire on a missing feature', () => {
    assert.equal(policy.preDecide(row({ annual_inc: null })), null);
    assert.equal(policy.preDecide({ funded_amnt: 1000 }), null);
  });
});

describe('policy: score bands', () => {
  it('takes the first band whose bound the score is strictly below', () => {
    assert.deepEqual(policy.decide(row(), 0.01), { action: 'approve', reasons: [{ code: 'LOW_RISK', message: 'Predicted risk below 5%' }], stage: 'band' });
    assert.equal(policy.decide(row(), 0.1).action, 'review');
    assert.equal(policy.decide(row(), 0.9).action, 'decline');
  });

  it('sends a score exactly at a bound to the next band (below is strict)', () => {
    assert.equal(policy.decide(row(), 0.05).reasons[0].code, 'MEDIUM_RISK');
    assert.equal(policy.decide(row(), 0.049999999).reasons[0].code, 'LOW_RISK');
    assert.equal(policy.decide(row(), 0.15).reasons[0].code, 'HIGH_RISK');
    assert.equal(policy.decide(row(), 0).reasons[0].code, 'LOW_RISK');
    assert.equal(policy.decide(row(), 1).reasons[0].code, 'HIGH_RISK');
  });
});

describe('policy: post-rules override the band', () => {
  it('overrides the band action, with the deciding reason first and the band reason after', () => {
    assert.deepEqual(policy.decide(row({ delinq_2yrs: 3 }), 0.02), {
      action: 'review',
      reasons: [
        { code: 'RECENT_DELINQUENCY', message: 'Two or more delinquencies' },
        { code: 'LOW_RISK', message: 'Predicted risk below 5%' },
      ],
      stage: 'post_rule',
    });
  });

  it('can use the score and the named model outputs', () => {
    const p = parsePolicy(edit('when: "score < 0.05 and delinq_2yrs >= 2"', 'when: "p_bad > 0.01 and score < 0.05"'), context);
    assert.equal(p.decide(row(), 0.02, { p_bad: 0.02 }).stage, 'post_rule');
    assert.equal(p.decide(row(), 0.02, { p_bad: 0.005 }).stage, 'band');
    assert.equal(p.decide(row(), 0.02).stage, 'band', 'an output not given is missing');
  });

  it('applies only to the band actions listed in applies_to', () => {
    const burdened = row({ funded_amnt: 40000, annual_inc: 60000 });
    assert.equal(policy.decide(burdened, 0.01).reasons[0].code, 'HIGH_BURDEN');
    assert.equal(policy.decide(burdened, 0.5).action, 'decline', 'never turns a decline into a review');
    assert.equal(policy.decide(burdened, 0.5).stage, 'band');
  });

  it('does not fire on missing features', () => {
    assert.equal(policy.decide(row({ delinq_2yrs: null, annual_inc: null }), 0.01).stage, 'band');
    assert.equal(policy.decide(row({ annual_inc: 0 }), 0.01).stage, 'band', 'division by zero is missing, not Infinity');
  });
});

describe('policy: guards send bad scores to the fallback', () => {
  it('accepts finite scores within [0, 1] by default', () => {
    assert.deepEqual(policy.checkGuards(0), { ok: true });
    assert.deepEqual(policy.checkGuards(1), { ok: true });
    assert.deepEqual(policy.checkGuards(0.3), { ok: true });
  });

  it('refuses NaN, infinities and scores outside the range, naming the cause', () => {
    assert.deepEqual(policy.checkGuards(NaN), { ok: false, cause: 'score is NaN' });
    assert.deepEqual(policy.checkGuards(Infinity), { ok: false, cause: 'score is Infinity' });
    assert.deepEqual(policy.checkGuards(-Infinity), { ok: false, cause: 'score is -Infinity' });
    assert.deepEqual(policy.checkGuards(1.5), { ok: false, cause: 'score 1.5 is above guards.max 1' });
    assert.deepEqual(policy.checkGuards(-0.1), { ok: false, cause: 'score -0.1 is below guards.min 0' });
  });

  it('never lets decide() band a score that fails the guards', () => {
    for (const score of [NaN, Infinity, 1.5, -1]) {
      const d = policy.decide(row(), score);
      assert.equal(d.stage, 'fallback', String(score));
      assert.equal(d.reasons[0].code, 'FB_MANUAL_REVIEW');
      assert.match(d.cause ?? '', /score/);
    }
  });

  it('takes other ranges, or none, for scores that are not probabilities', () => {
    const p = parsePolicy(edit('fallback:', 'guards: { min: -10, max: null }\nfallback:'), context);
    assert.deepEqual(p.checkGuards(1e6), { ok: true });
    assert.deepEqual(p.checkGuards(-11), { ok: false, cause: 'score -11 is below guards.min -10' });
    assert.deepEqual(p.checkGuards(Infinity), { ok: false, cause: 'score is Infinity' });
  });
});

describe('policy: fallback decides without the model', () => {
  it('runs the fallback rules in order, recording the cause', () => {
    assert.deepEqual(policy.fallback(row({ int_rate: 25 }), 'model timeout'), {
      action: 'decline',
      reasons: [{ code: 'FB_HIGH_RATE', message: 'Interest rate 20% or more' }],
      stage: 'fallback',
      cause: 'model timeout',
    });
    assert.equal(policy.fallback(row({ int_rate: 6 }), 'kill switch').reasons[0].code, 'FB_SHORT_LOW_RATE');
    assert.equal(policy.fallback(row({ int_rate: 6, term: 'term_60' }), 'kill switch').reasons[0].code, 'FB_MANUAL_REVIEW');
  });

  it('falls to the default when no rule fires, including on missing features', () => {
    assert.deepEqual(policy.fallback({}, 'model error'), {
      action: 'review',
      reasons: [{ code: 'FB_MANUAL_REVIEW', message: 'Model unavailable: manual review' }],
      stage: 'fallback',
      cause: 'model error',
    });
  });
});

describe('policy: rules-only (no model)', () => {
  const rulesOnly = parsePolicy(
    `
version: 3
actions: [approve, review, decline]
pre_rules:
  - { code: LOW_INCOME, when: "annual_inc < 12000", action: decline, message: "Income below 12,000" }
fallback:
  rules:
    - { code: HIGH_RATE, when: "int_rate >= 20", action: decline, message: "High rate" }
  default: { action: review, code: MANUAL, message: "Manual review" }
`,
    context,
  );

  it('says it does not use the model, and decides with pre-rules then the fallback', () => {
    assert.equal(rulesOnly.usesModel, false);
    assert.equal(rulesOnly.version, '3');
    assert.equal(rulesOnly.preDecide(row({ annual_inc: 1000 }))?.action, 'decline');
    assert.equal(rulesOnly.preDecide(row()), null);
    assert.equal(rulesOnly.fallback(row({ int_rate: 22 }), 'rules-only').reasons[0].code, 'HIGH_RATE');
  });

  it('answers decide() with the fallback rather than failing', () => {
    const d = rulesOnly.decide(row(), 0.5);
    assert.equal(d.stage, 'fallback');
    assert.equal(d.reasons[0].code, 'MANUAL');
    assert.match(d.cause ?? '', /rules-only/);
  });

  it('refuses post_rules, which need a score', () => {
    assert.throws(
      () => createPolicy({ ...parseYaml(POLICY), bands: undefined }, context),
      (err: unknown) => err instanceof PolicyError && /post_rules: post_rules need a model score, but this policy has no bands/.test(err.message),
    );
  });
});

describe('policy: validated completely at load', () => {
  it('names the YAML path, line, rule code and expression column', () => {
    const err = policyFails(edit('"funded_amnt > 40000"', '"score > 0.5 and (funded_amnt > 3"'));
    assert.equal(err.problems.length, 1);
    assert.deepEqual(
      { path: err.problems[0].path, line: err.problems[0].line, code: err.problems[0].code },
      { path: 'pre_rules[1].when', line: 6, code: 'LOAN_TOO_LARGE' },
    );
    assert.match(err.message, /^policy\.yaml:6: pre_rules\[1\]\.when \(LOAN_TOO_LARGE\): expected '\)' at column 33 .*'\(' opened at column 17/);
  });

  it('refuses unknown names, suggesting the close one', () => {
    policyFails(edit('delinq_2yrs >= 2', 'delinq_2yr >= 2'), /post_rules\[0\]\.when \(RECENT_DELINQUENCY\): unknown name "delinq_2yr" .*did you mean "delinq_2yrs"/);
  });

  it('refuses the model score before the model and in the fallback', () => {
    policyFails(edit('"annual_inc < 12000"', '"score > 0.9"'), /pre_rules\[0\]\.when \(LOW_INCOME\): "score" is a model output: only post_rules can use it \(pre_rules run before the model\)/);
    policyFails(edit('"int_rate >= 20"', '"p_bad > 0.5"'), /fallback\.rules\[0\]\.when \(FB_HIGH_RATE\): "p_bad" is a model output.*the fallback runs without the model/);
  });

  it('refuses a post-rule name that is both a feature and a model output', () => {
    assert.throws(
      () => parsePolicy(edit('"score < 0.05 and delinq_2yrs >= 2"', '"annual_inc > 5"'), { features, outputs: ['annual_inc'] }),
      /"annual_inc" is both a feature and a model output; rename one/,
    );
  });

  it('checks expression types against the declared features', () => {
    policyFails(edit(`term == 'term_36'`, `term == 'term_63'`), /fallback\.rules\[1\]\.when \(FB_SHORT_LOW_RATE\): "term_63" is not a value of term/);
    policyFails(edit(`term == 'term_36'`, `term == 36`), /cannot compare string with number/);
  });

  it('refuses actions that are not declared', () => {
    policyFails(edit('action: decline, code: HIGH_RISK', 'action: reject, code: HIGH_RISK'), /bands\[2\]\.action \(HIGH_RISK\): action "reject" is not one of actions \[approve, review, decline\]/);
    policyFails(edit('applies_to: [approve]', 'applies_to: [approved]'), /post_rules\[1\]\.applies_to\[0\] \(HIGH_BURDEN\): action "approved" is not one of actions/);
  });

  it('refuses duplicate and malformed reason codes', () => {
    policyFails(edit('code: HIGH_BURDEN', 'code: LOW_INCOME'), /post_rules\[1\]\.code: duplicate code LOW_INCOME, first used at pre_rules\[0\]/);
    policyFails(edit('code: HIGH_BURDEN', 'code: high-burden'), /post_rules\[1\]\.code: a reason code is UPPER_SNAKE_CASE/);
  });

  it('refuses bands that do not ascend, lack a bound, or end bounded', () => {
    policyFails(edit('below: 0.15', 'below: 0.05'), /bands\[1\]\.below \(MEDIUM_RISK\): bands must ascend: 0\.05 is not above the previous band's 0\.05/);
    policyFails(edit('{ below: 0.15, action', '{ action'), /bands\[1\] \(MEDIUM_RISK\): only the last band may omit 'below'/);
    policyFails(edit('{ action: decline, code: HIGH_RISK', '{ below: 0.5, action: decline, code: HIGH_RISK'), /bands\[2\]\.below \(HIGH_RISK\): the last band must have no 'below'/);
    policyFails(edit('below: 0.15', 'below: 1.5'), /bands\[1\]\.below \(MEDIUM_RISK\): below 1\.5 is above guards\.max 1: the bands after it can never be reached/);
    policyFails(edit('below: 0.05', 'below: 0'), /below 0 is not above guards\.min 0/);
  });

  it('refuses unknown keys and missing fields, with the line', () => {
    const err = policyFails(edit('message: "Income below 12,000"', 'mesage: "Income below 12,000"'));
    assert.match(err.message, /policy\.yaml:5: pre_rules\[0\]/);
    assert.match(err.message, /mesage/);
    policyFails(POLICY.replace(/fallback:[\s\S]*$/, ''), /fallback/);
    policyFails('version: 1\nactions: [a]\nfallback: { default: { action: a, code: A, message: x } }\nfallback: {}\n', /YAML syntax/);
  });

  it('reports every problem at once', () => {
    const text = edit('action: decline, message: "Above', 'action: nope, message: "Above').replace('int_rate >= 20', 'int_rate >=');
    const err = policyFails(text);
    assert.deepEqual(
      err.problems.map((p) => p.path),
      ['pre_rules[1].action', 'fallback.rules[0].when'],
    );
  });
});

describe('policy: files and round trips', () => {
  it('loads from a file, naming the file in errors', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    const p = await loadPolicy(join(dir, 'policy.yaml'), context);
    assert.equal(p.version, '2026-11-01');
    writeFileSync(join(dir, 'bad.yaml'), edit('annual_inc < 12000', 'annual_inc <'));
    await assert.rejects(loadPolicy(join(dir, 'bad.yaml'), context), (err: unknown) => err instanceof PolicyError && err.message.startsWith(`${join(dir, 'bad.yaml')}:5: pre_rules[0].when (LOW_INCOME): expected a value`));
    await assert.rejects(loadPolicy(join(dir, 'none.yaml'), context), /cannot read the policy: ENOENT/);
  });

  it('survives a YAML round trip: same spec, same decisions', () => {
    const again = parsePolicy(stringify(policy.spec), context);
    assert.deepEqual(again.spec, policy.spec);
    for (const r of [row(), row({ delinq_2yrs: 4 }), row({ annual_inc: 100 }), row({ int_rate: 25 })]) {
      assert.deepEqual(again.preDecide(r), policy.preDecide(r));
      for (const s of [0, 0.03, 0.05, 0.1, 0.2, NaN]) assert.deepEqual(again.decide(r, s), policy.decide(r, s));
      assert.deepEqual(again.fallback(r, 'x'), policy.fallback(r, 'x'));
    }
  });

  it('fills defaults and lists every reason code it can give', () => {
    assert.deepEqual(policy.spec.guards, { min: 0, max: 1 });
    assert.equal(policy.usesModel, true);
    assert.deepEqual(
      policy.reasonCodes.map((r) => `${r.stage}:${r.code}:${r.action}`),
      [
        'pre_rule:LOW_INCOME:decline',
        'pre_rule:LOAN_TOO_LARGE:decline',
        'band:LOW_RISK:approve',
        'band:MEDIUM_RISK:review',
        'band:HIGH_RISK:decline',
        'post_rule:RECENT_DELINQUENCY:review',
        'post_rule:HIGH_BURDEN:review',
        'fallback:FB_HIGH_RATE:decline',
        'fallback:FB_SHORT_LOW_RATE:approve',
        'fallback:FB_MANUAL_REVIEW:review',
      ],
    );
  });

  it('reads only own properties of request rows', () => {
    const p = parsePolicy(edit('"annual_inc < 12000"', '"missing(annual_inc)"'), context);
    const hostile = JSON.parse('{"__proto__": {"annual_inc": 50000}, "funded_amnt": 1000}');
    assert.equal(p.preDecide(hostile)?.reasons[0].code, 'LOW_INCOME', 'annual_inc is not read through __proto__');
  });
});

describe('the credit example policy', () => {
  it('loads against the credit bundle\'s declared features and decides every loan without the model', async () => {
    const manifest = await readManifest(fileURLToPath(new URL('../examples/credit', import.meta.url)));
    const creditFeatures = manifest.features ?? [];
    const credit: Policy = await loadPolicy(fileURLToPath(new URL('../examples/credit/policy.yaml', import.meta.url)), { features: creditFeatures, outputs: ['p_bad'] });
    assert.equal(credit.usesModel, true);
    assert.deepEqual(credit.actions, ['approve', 'review', 'decline']);

    const text = await readFile(new URL('../examples/credit/lending_club.csv', import.meta.url), 'utf8');
    const lines = text.trim().split('\n');
    const cell = (c: string): string => (c.startsWith('"') ? (JSON.parse(c) as string) : c);
    const header = lines[0].split(',').map(cell);
    const typed = textRowConverter(creditFeatures);
    const counts: Record<string, number> = {};
    for (const line of lines.slice(1)) {
      const r = typed(Object.fromEntries(line.split(',').map((c, i) => [header[i], cell(c)])));
      const d = credit.preDecide(r) ?? credit.fallback(r, 'test');
      counts[d.action] = (counts[d.action] ?? 0) + 1;
    }
    // The model-free heuristic gives all three actions: about 42% approve, 47% review, 11% decline.
    const n = lines.length - 1;
    assert.ok(counts.approve > n * 0.3 && counts.review > n * 0.3 && counts.decline > n * 0.05, JSON.stringify(counts));
  });
});
