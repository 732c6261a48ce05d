/** The comparison a replay (and later a live shadow) reports, and DeLong's test against numpy and scikit-learn. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { DecisionComparison, REFUSED, type DecidedSide } from '../src/rollout/compare.ts';
import { delong, rocAuc } from '../src/rollout/delong.ts';

const fixture = JSON.parse(readFileSync(new URL('./fixtures/delong-credit.json', import.meta.url), 'utf8')) as {
  labels: number[];
  champion: number[];
  candidate: number[];
  auc_champion: number;
  auc_candidate: number;
  difference: number;
  standard_error: number;
  lower: number;
  upper: number;
  p: number;
};

describe('DeLong on credit v1 vs v2, 1,972 held-out loans (reference: test/fixtures/make_delong.py, numpy + scikit-learn)', () => {
  const labels = Uint8Array.from(fixture.labels);
  const a = Float64Array.from(fixture.champion);
  const b = Float64Array.from(fixture.candidate);

  it('gives scikit-learn’s AUCs and the placement estimator’s standard error', () => {
    const r = delong(labels, a, b);
    assert.ok(Math.abs(r.aucA - fixture.auc_champion) < 1e-12, `${r.aucA} vs ${fixture.auc_champion}`);
    assert.ok(Math.abs(r.aucB - fixture.auc_candidate) < 1e-12, `${r.aucB} vs ${fixture.auc_candidate}`);
    assert.ok(Math.abs(r.difference - fixture.difference) < 1e-12);
    assert.ok(Math.abs(r.standardError - fixture.standard_error) < 1e-12, `${r.standardError} vs ${fixture.standard_error}`);
    assert.ok(Math.abs(r.lower - fixture.lower) < 1e-9 && Math.abs(r.upper - fixture.upper) < 1e-9);
    assert.ok(Math.abs(r.p - fixture.p) < 1e-6, `p ${r.p} vs ${fixture.p}`);
    assert.equal(rocAuc(labels, a), r.aucA);
  });

  it('is exactly zero, with zero variance, for a score against itself; ties count half', () => {
    const r = delong(labels, a, a);
    assert.equal(r.difference, 0);
    assert.equal(r.standardError, 0);
    assert.equal(r.p, 1);
    assert.equal(rocAuc(Uint8Array.from([0, 1, 0, 1]), Float64Array.from([0.5, 0.5, 0.1, 0.9])), 0.875);
    assert.equal(rocAuc(Uint8Array.from([0, 0]), Float64Array.from([0.5, 0.5])), null);
  });
});

describe('DecisionComparison', () => {
  const side = (action: string | null, score: number | null, reasons: string[] = [], fallback: string | null = null): DecidedSide => ({ action, score, reasons, fallback });
  const setup = { actions: ['approve', 'review', 'decline'], bandEdges: [0.045, 0.12], segments: [{ feature: 'term', values: ['term_36', 'term_60'] }] };

  it('counts flips in the matrix, by band and segment, score differences, reason churn, fallbacks and outcomes', () => {
    const c = new DecisionComparison(setup);
    c.add({ champion: side('approve', 0.01, ['LOW_RISK']), candidate: side('approve', 0.01, ['LOW_RISK']), row: { term: 'term_36' }, label: 0, candidateModelMs: 0.004 });
    c.add({ champion: side('approve', 0.04, ['LOW_RISK']), candidate: side('review', 0.05, ['MEDIUM_RISK']), row: { term: 'term_60' }, label: 1, candidateModelMs: 0.004 });
    c.add({ champion: side('review', 0.1, ['MEDIUM_RISK']), candidate: side('decline', 0.2, ['HIGH_RISK'], null), row: { term: 'term_60' }, label: 1, candidateModelMs: 0.005 });
    c.add({ champion: side('decline', null, ['INCOME_BELOW_MINIMUM']), candidate: side('decline', null, ['INCOME_BELOW_MINIMUM']), row: {} });
    c.add({ champion: side('review', 0.07, ['MEDIUM_RISK']), candidate: side(null, null), row: { term: 'term_36' } });
    c.add({ champion: side('decline', 0.5, ['FB_MANUAL_REVIEW'], 'kill_switch'), candidate: side('decline', 0.3, ['FB_MANUAL_REVIEW'], 'kill_switch'), row: { term: 'term_36' }, label: 0 });
    const r = c.report();
    assert.equal(r.decisions, 6);
    assert.equal(r.flips, 3);
    assert.equal(r.flipRate, 0.5);
    assert.deepEqual(r.matrix.actions, ['approve', 'review', 'decline', REFUSED]);
    assert.deepEqual(r.matrix.counts, [
      [1, 1, 0, 0],
      [0, 0, 1, 1],
      [0, 0, 2, 0],
      [0, 0, 0, 0],
    ]);
    assert.deepEqual(
      r.byBand.map((b) => [b.band, b.n, b.flips]),
      [
        ['(no score)', 1, 0],
        ['< 0.045', 2, 1],
        ['0.045 - 0.12', 2, 2],
        ['>= 0.12', 1, 0],
      ],
    );
    assert.deepEqual(r.bySegment.term, [
      { value: 'term_36', n: 3, flips: 1, flipRate: 1 / 3 },
      { value: 'term_60', n: 2, flips: 2, flipRate: 1 },
      { value: '(missing)', n: 1, flips: 0, flipRate: 0 },
    ]);
    assert.equal(r.scoreDifference.n, 4);
    assert.equal(r.scoreDifference.exactlyEqual, 1);
    assert.ok(Math.abs(r.scoreDifference.maxAbsolute - 0.2) < 1e-15);
    assert.equal(r.reasons.changed, 3);
    assert.deepEqual(r.reasons.byCode.find((x) => x.code === 'MEDIUM_RISK'), { code: 'MEDIUM_RISK', gained: 1, lost: 2 });
    assert.equal(r.fallback.champion, 1);
    assert.equal(r.fallback.candidate, 1);
    assert.equal(r.latencyMs.n, 3);
    assert.ok(r.latencyMs.p50! >= 0.004 && r.latencyMs.p50! <= 0.0051);
    assert.ok(Math.abs(r.actionRates.decline.change - 1 / 6) < 1e-15);
    const o = r.outcomes!;
    assert.equal(o.labelled, 4);
    assert.equal(o.positives, 2);
    assert.equal(o.champion.auc, 0.5); // positives 0.04 and 0.1 against negatives 0.01 and 0.5
    assert.equal(o.candidate.auc, 0.5);
    assert.deepEqual(o.candidate.badRateByAction.review, { n: 1, positives: 1, rate: 1 });
    assert.ok(Math.abs(o.champion.brier - (0.01 ** 2 + 0.96 ** 2 + 0.9 ** 2 + 0.5 ** 2) / 4) < 1e-12);
  });
});
