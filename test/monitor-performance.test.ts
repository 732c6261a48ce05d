/**
 * Realized performance equals scikit-learn 1.2.1 on the same rows (golden numbers from
 * test/fixtures/performance/make_golden.py: the credit model's held-out scores and
 * synthetic cases with ties, one class, perfect / worst predictions, scores exactly 0 and 1
 * and exactly on numpy's bin edges); estimated performance (CBPE) equals an independent
 * O(n^2) numpy formula and, when labels are drawn from the model's own probabilities,
 * matches the mean realized metrics within sampling error.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import {
  bandPerformance,
  brierScore,
  calibration,
  calibrationCheck,
  chiSquareSf,
  estimatePerformance,
  hosmerLemeshow,
  labelCompleteness,
  LOG_LOSS_EPS,
  logLoss,
  precisionRecallAt,
  realizedPerformance,
  rocAuc,
} from '../src/monitor/performance.ts';
import { mulberry32 } from './helpers/prng.ts';

const dir = join(fileURLToPath(new URL('.', import.meta.url)), 'fixtures', 'performance');
const golden = JSON.parse(readFileSync(join(dir, 'performance.json'), 'utf8'));
const credit = JSON.parse(readFileSync(join(dir, 'credit_test.json'), 'utf8')) as { p_bad: number[]; label_bad: number[] };

type Case = {
  name: string;
  scores: number[] | string;
  labels: number[] | string;
  bounds: number[];
  extraEdges: number[];
  realized: any;
  estimated: any;
};
const cases: Case[] = golden.cases;
const rowsOf = (c: { scores?: number[] | string; labels?: number[] | string }) => ({
  s: typeof c.scores === 'string' || c.scores === undefined ? credit.p_bad : c.scores,
  y: typeof c.labels === 'string' || c.labels === undefined ? credit.label_bad : c.labels,
});

const TOL = 1e-9;
function close(actual: number, expected: number | null, what: string, tol = TOL): void {
  if (expected === null) {
    assert.ok(Number.isNaN(actual), `${what}: expected NaN, got ${actual}`);
    return;
  }
  assert.ok(Math.abs(actual - expected) <= tol * Math.max(1, Math.abs(expected)), `${what}: ${actual} vs ${expected}`);
}

function meanSd(xs: number[]): { mean: number; sd: number; se: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1));
  return { mean, sd, se: sd / Math.sqrt(xs.length) };
}

describe('realized performance equals scikit-learn 1.2.1', () => {
  it('the golden file was made with scikit-learn 1.2.1 and its log_loss eps', () => {
    assert.equal(golden.sklearn, '1.2.1');
    assert.equal(golden.logLossEps, LOG_LOSS_EPS);
    assert.equal(cases.length, 13);
    assert.equal(credit.p_bad.length, 1972);
  });

  for (const c of cases) {
    it(`${c.name}: ROC AUC, log loss, Brier`, () => {
      const { s, y } = rowsOf(c);
      close(rocAuc(s, y), c.realized.auc, 'auc');
      close(logLoss(s, y), c.realized.logLoss, 'logLoss');
      close(brierScore(s, y), c.realized.brier, 'brier');
      // typed arrays give the same answers
      close(rocAuc(Float64Array.from(s), Float64Array.from(y)), c.realized.auc, 'auc (Float64Array)');
    });

    it(`${c.name}: precision / recall at band edges and per-band counts`, () => {
      const { s, y } = rowsOf(c);
      const thresholds = [...c.bounds, ...c.extraEdges];
      thresholds.forEach((t, k) => {
        const g = c.realized.edges[k];
        const pr = precisionRecallAt(s, y, t);
        assert.equal(pr.threshold, g.threshold);
        assert.equal(pr.predictedPositives, g.predictedPositives, `predicted positives at ${t}`);
        assert.equal(pr.truePositives, g.truePositives, `TP at ${t}`);
        close(pr.precision, g.precision, `precision at ${t}`);
        close(pr.recall, g.recall, `recall at ${t}`);
        assert.equal(pr.truePositives + pr.falsePositives, pr.predictedPositives);
      });
      const bp = bandPerformance(s, y, c.bounds);
      assert.equal(bp.edges.length, c.bounds.length);
      bp.edges.forEach((e, k) => assert.deepEqual(e, precisionRecallAt(s, y, c.bounds[k])));
      assert.equal(bp.bands.length, c.bounds.length + 1);
      bp.bands.forEach((b, k) => {
        const g = c.realized.bands[k];
        assert.equal(b.count, g.count);
        assert.equal(b.positives, g.positives);
        close(b.positiveRate, g.positiveRate, `band ${k} positive rate`);
        close(b.meanScore, g.meanScore, `band ${k} mean score`);
        assert.equal(b.lower, k === 0 ? null : c.bounds[k - 1]);
        assert.equal(b.upper, k === c.bounds.length ? null : c.bounds[k]);
      });
    });

    it(`${c.name}: calibration curve (10, 7 and 20 uniform bins) and ECE`, () => {
      const { s, y } = rowsOf(c);
      for (const g of c.realized.calibration) {
        const cc = calibration(s, y, g.nBins);
        assert.deepEqual(cc.bins, g.bins, `bins of ${g.nBins}`);
        assert.deepEqual(cc.counts, g.counts, `counts of ${g.nBins}`);
        assert.equal(cc.probTrue.length, g.probTrue.length);
        cc.probTrue.forEach((v, k) => close(v, g.probTrue[k], `prob_true[${k}] of ${g.nBins}`));
        cc.probPred.forEach((v, k) => close(v, g.probPred[k], `prob_pred[${k}] of ${g.nBins}`));
        close(cc.ece, g.ece, `ece of ${g.nBins}`);
        assert.equal(cc.edges.length, g.nBins + 1);
      }
    });
  }

  it('numpy.linspace edges: values exactly on an edge go to the lower bin', () => {
    const cc = calibration([0.1, 0.3, 0.30000000000000004, 0.30000000000000010, 1, 0], [0, 0, 0, 0, 1, 0], 10);
    assert.equal(cc.edges[3], 0.30000000000000004);
    assert.equal(cc.edges[6], 0.6000000000000001);
    // 0 and 0.1 → bin 0; 0.3 and 0.30000000000000004 → bin 2; 0.3000000000000001 → bin 3; 1 → bin 9
    assert.deepEqual(cc.bins, [0, 2, 3, 9]);
    assert.deepEqual(cc.counts, [2, 2, 1, 1]);
  });

  it('log loss clips at 2.22e-16 (scikit-learn 1.2 eps="auto"), not 1e-15', () => {
    close(logLoss([0], [1]), -Math.log(LOG_LOSS_EPS), 'confident wrong');
    assert.ok(Math.abs(logLoss([0], [1]) - 36.04365338911715) < 1e-12);
    assert.ok(logLoss([1, 0], [1, 0]) < 1e-15);
  });

  it('undefined metrics: NaN for ROC AUC with one class or no rows; zero division gives 0', () => {
    assert.ok(Number.isNaN(rocAuc([0.1, 0.9], [0, 0])));
    assert.ok(Number.isNaN(rocAuc([], [])));
    assert.ok(Number.isNaN(logLoss([], [])));
    assert.ok(Number.isNaN(brierScore([], [])));
    assert.ok(Number.isNaN(calibration([], []).ece));
    const pr = precisionRecallAt([0.1, 0.2], [0, 0], 0.5);
    assert.deepEqual([pr.precision, pr.recall, pr.predictedPositives], [0, 0, 0]);
    const r = realizedPerformance([], [], { bands: [0.5] });
    assert.equal(r.n, 0);
    assert.ok(Number.isNaN(r.positiveRate));
    assert.ok(Number.isNaN(r.bands[0].positiveRate));
  });

  it('rejects malformed input like scikit-learn raises', () => {
    assert.throws(() => rocAuc([0.1, 0.2], [0]), RangeError);
    assert.throws(() => rocAuc([0.1, 0.2], [0, 2]), /labels must be 0 or 1/);
    assert.throws(() => rocAuc([0.1, NaN], [0, 1]), /finite/);
    assert.throws(() => logLoss([0.1, 1.2], [0, 1]), /\[0, 1\]/);
    assert.throws(() => brierScore([-0.1], [0]), /\[0, 1\]/);
    assert.throws(() => calibration([0.5], [1], 0), /nBins/);
    assert.throws(() => bandPerformance([0.5], [1], [0.2, 0.1]), /increasing/);
    assert.throws(() => estimatePerformance([0.5, Infinity]), /\[0, 1\]/);
  });

  it('labelCompleteness: share of decisions with an outcome', () => {
    assert.equal(labelCompleteness(200, 50), 0.25);
    assert.equal(labelCompleteness(10, 10), 1);
    assert.ok(Number.isNaN(labelCompleteness(0, 0)));
    assert.throws(() => labelCompleteness(10, 11), RangeError);
    assert.throws(() => labelCompleteness(-1, 0), RangeError);
    assert.throws(() => labelCompleteness(2.5, 1), RangeError);
  });

  it('realizedPerformance bundles the metrics of one window', () => {
    const c = cases[0];
    const r = realizedPerformance(credit.p_bad, credit.label_bad, { bands: c.bounds });
    assert.equal(r.n, 1972);
    assert.equal(r.positives, c.realized.positives);
    close(r.auc, c.realized.auc, 'auc');
    close(r.calibration.ece, c.realized.calibration[0].ece, 'ece');
    assert.deepEqual(r.edges, bandPerformance(credit.p_bad, credit.label_bad, c.bounds).edges);
  });

  it('10^6 rows: O(n log n), well under a few seconds', () => {
    const rnd = mulberry32(5);
    const n = 1_000_000;
    const s = new Float64Array(n);
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      s[i] = Math.round(rnd() * 1e4) / 1e4; // many ties
      y[i] = rnd() < s[i] ? 1 : 0;
    }
    const t0 = performance.now();
    const r = realizedPerformance(s, y, { bands: [0.045, 0.12] });
    const e = estimatePerformance(s, { bands: [0.045, 0.12] });
    const ms = performance.now() - t0;
    assert.ok(Math.abs(r.auc - 0.8333) < 0.005, `auc ${r.auc}`);
    assert.ok(Math.abs(e.auc - r.auc) < 0.005);
    assert.ok(ms < 5000, `${ms} ms`);
  });
});

describe('estimated performance before labels arrive (CBPE)', () => {
  for (const c of cases) {
    it(`${c.name}: expectations equal the direct numpy formulas`, () => {
      const { s } = rowsOf(c);
      const g = c.estimated;
      const e = estimatePerformance(s, { bands: c.bounds });
      assert.equal(e.n, g.n);
      close(e.expectedPositives, g.expectedPositives, 'expected positives');
      close(e.expectedPositivesSd, g.expectedPositivesSd, 'sd of positives');
      close(e.expectedPositiveRate, g.expectedPositiveRate, 'expected rate');
      close(e.auc, g.auc, 'expected auc');
      close(e.logLoss, g.logLoss, 'expected log loss');
      close(e.logLossSd, g.logLossSd, 'sd of log loss');
      close(e.brier, g.brier, 'expected brier');
      close(e.brierSd, g.brierSd, 'sd of brier');
      e.bands.forEach((b, k) => {
        assert.equal(b.count, g.bands[k].count);
        close(b.positives, g.bands[k].positives, `band ${k} expected positives`);
        close(b.positiveRate, g.bands[k].positiveRate, `band ${k} expected rate`);
      });
      const thresholds = [...c.bounds, ...c.extraEdges];
      thresholds.forEach((t, k) => {
        const [edge] = estimatePerformance(s, { bands: [t] }).edges;
        const ge = g.edges[k];
        assert.equal(edge.predictedPositives, ge.predictedPositives);
        close(edge.truePositives, ge.truePositives, `E[TP] at ${t}`);
        close(edge.falsePositives, ge.falsePositives, `E[FP] at ${t}`);
        close(edge.falseNegatives, ge.falseNegatives, `E[FN] at ${t}`);
        close(edge.precision, ge.precision, `precision at ${t}`);
        close(edge.recall, ge.recall, `recall at ${t}`);
      });
    });
  }

  it('the AUC estimate is the expected-ROC sweep without self-pairs', () => {
    for (const c of cases) {
      const { s } = rowsOf(c);
      const g = c.estimated;
      if (g.auc === null || g.aucSweep === null) continue;
      // sweep = (num + ½Σpq) / (ΣpΣq) and auc = num / (ΣpΣq − Σpq)
      let sp = 0, sq = 0, spq = 0;
      for (const p of s) { sp += p; sq += 1 - p; spq += p * (1 - p); }
      const num = estimatePerformance(s).auc * (sp * sq - spq);
      close((num + 0.5 * spq) / (sp * sq), g.aucSweep, `${c.name} sweep`);
    }
  });

  it('degenerate windows: perfect 0/1 probabilities, one decision, no decisions', () => {
    assert.equal(estimatePerformance([0, 1, 1, 0]).auc, 1);
    assert.equal(estimatePerformance([0, 1, 1, 0]).brier, 0);
    assert.ok(Number.isNaN(estimatePerformance([0.3]).auc));
    assert.ok(Number.isNaN(estimatePerformance([0, 0]).auc));
    const e = estimatePerformance([], { bands: [0.5] });
    assert.equal(e.expectedPositives, 0);
    assert.ok(Number.isNaN(e.auc) && Number.isNaN(e.brier) && Number.isNaN(e.logLoss));
    assert.equal(e.edges[0].precision, 0);
  });

  it('credit model, labels ~ Bernoulli(p_bad): estimates match the mean realized metrics (seeded simulation)', () => {
    const p = credit.p_bad;
    const bounds = [0.045, 0.12];
    const est = estimatePerformance(p, { bands: bounds });
    const rnd = mulberry32(20261101);
    const reps = 300;
    const auc: number[] = [], ll: number[] = [], br: number[] = [], pos: number[] = [];
    const prec: number[][] = [[], []], rec: number[][] = [[], []];
    const y = new Float64Array(p.length);
    for (let r = 0; r < reps; r++) {
      for (let i = 0; i < p.length; i++) y[i] = rnd() < p[i] ? 1 : 0;
      const m = realizedPerformance(p, y, { bands: bounds });
      auc.push(m.auc);
      ll.push(m.logLoss);
      br.push(m.brier);
      pos.push(m.positives);
      m.edges.forEach((e, k) => { prec[k].push(e.precision); rec[k].push(e.recall); });
    }
    const within = (name: string, estimate: number, xs: number[], k = 4) => {
      const { mean, se } = meanSd(xs);
      assert.ok(Math.abs(estimate - mean) <= k * se, `${name}: estimate ${estimate}, simulated ${mean} ± ${se}`);
    };
    within('auc', est.auc, auc);
    within('log loss', est.logLoss, ll);
    within('brier', est.brier, br);
    within('positives', est.expectedPositives, pos);
    est.edges.forEach((e, k) => {
      within(`precision at ${e.threshold}`, e.precision, prec[k]);
      within(`recall at ${e.threshold}`, e.recall, rec[k]);
    });
    // the analytic standard deviations describe the spread of the realized metrics
    const ratio = (a: number, b: number) => Math.abs(a / b - 1);
    assert.ok(ratio(est.brierSd, meanSd(br).sd) < 0.15, `brier sd ${est.brierSd} vs ${meanSd(br).sd}`);
    assert.ok(ratio(est.logLossSd, meanSd(ll).sd) < 0.15, `log loss sd ${est.logLossSd} vs ${meanSd(ll).sd}`);
    assert.ok(ratio(est.expectedPositivesSd, meanSd(pos).sd) < 0.15);
    assert.ok(ratio(est.edges[0].precisionSd, meanSd(prec[0]).sd) < 0.15);
  });

  it('agrees with the 2,000-draw scikit-learn simulation of make_golden.py', () => {
    const sim = golden.simulation.calibrated;
    const est = estimatePerformance(credit.p_bad, { bands: [0.045, 0.12] });
    const within = (name: string, estimate: number, s: { mean: number; se: number }) =>
      assert.ok(Math.abs(estimate - s.mean) <= 4 * s.se, `${name}: ${estimate} vs ${s.mean} ± ${s.se}`);
    within('auc', est.auc, sim.auc);
    within('log loss', est.logLoss, sim.logLoss);
    within('brier', est.brier, sim.brier);
    within('positives', est.expectedPositives, sim.positives);
    est.edges.forEach((e, k) => {
      within(`precision ${k}`, e.precision, sim.precision[k]);
      within(`recall ${k}`, e.recall, sim.recall[k]);
    });
  });

  it('a model that under-predicts risk (true p = 1.5 p_bad): the estimate is biased and the check says so', () => {
    const sim = golden.simulation['underpredicting_1.5p'];
    const est = estimatePerformance(credit.p_bad);
    assert.ok(sim.positives.mean - est.expectedPositives > 10 * sim.positives.se);
    assert.ok(sim.brier.mean - est.brier > 10 * sim.brier.se);
    assert.ok(sim.ruleStatus.not_calibrated >= 0.9 * sim.reps);
  });
});

describe('calibrationCheck: is the estimate valid?', () => {
  for (const g of golden.calibrationChecks) {
    it(`${g.name}: ${g.status}, Hosmer–Lemeshow equals scipy`, () => {
      const { s, y } = rowsOf(g);
      const r = calibrationCheck({ probs: s, labels: y });
      assert.equal(r.status, g.status);
      assert.equal(r.valid, g.status === 'calibrated');
      assert.equal(r.n, g.n);
      assert.equal(r.positives, g.positives);
      close(r.expectedPositives, g.expectedPositives, 'expected positives');
      close(r.ece, g.ece, 'ece');
      close(r.hosmerLemeshow.statistic, g.hlStatistic, 'HL statistic');
      assert.equal(r.hosmerLemeshow.df, g.hlDf);
      assert.ok(Math.abs(r.hosmerLemeshow.pValue / g.hlPValue - 1) < 1e-9, `p ${r.hosmerLemeshow.pValue} vs ${g.hlPValue}`);
      r.hosmerLemeshow.groups.forEach((grp, k) => {
        assert.equal(grp.count, g.hlGroups[k].count);
        assert.equal(grp.observed, g.hlGroups[k].observed);
        close(grp.expected, g.hlGroups[k].expected, 'group expected');
      });
      if (!r.valid) assert.match(r.reason, /^estimate not (valid|validated)/);
    });
  }

  it('the credit model on its held-out loans is calibrated; a 1.5x risk shift is not', () => {
    const ok = calibrationCheck({ probs: credit.p_bad, labels: credit.label_bad });
    assert.equal(ok.status, 'calibrated');
    assert.ok(ok.ece < 0.005 && ok.hosmerLemeshow.pValue > 0.4);
    const shifted = golden.calibrationChecks.find((c: any) => c.name === 'credit_bernoulli_1.5p');
    const bad = calibrationCheck({ probs: credit.p_bad, labels: shifted.labels });
    assert.equal(bad.valid, false);
    assert.match(bad.reason, /model not calibrated/);
  });

  it('options change the rule; rule thresholds are reported', () => {
    const r = calibrationCheck({ probs: credit.p_bad, labels: credit.label_bad }, { maxEce: 0.001 });
    assert.equal(r.status, 'not_calibrated');
    assert.equal(r.rule.maxEce, 0.001);
    assert.equal(r.rule.alpha, 0.01);
    assert.equal(calibrationCheck({ probs: credit.p_bad, labels: credit.label_bad }, { minLabeled: 5000 }).status, 'insufficient_data');
  });

  it('false rejections of a calibrated model are rare (seeded, labels ~ Bernoulli(p_bad))', () => {
    const rnd = mulberry32(77);
    const p = credit.p_bad;
    const y = new Float64Array(p.length);
    let rejected = 0;
    for (let r = 0; r < 100; r++) {
      for (let i = 0; i < p.length; i++) y[i] = rnd() < p[i] ? 1 : 0;
      if (!calibrationCheck({ probs: p, labels: y }).valid) rejected++;
    }
    assert.ok(rejected <= 5, `${rejected} of 100 rejected`);
  });

  it('chi-square survival function equals scipy.stats.chi2.sf', () => {
    for (const { x, df, sf } of golden.chi2) {
      const v = chiSquareSf(x, df);
      assert.ok(Math.abs(v - sf) <= 1e-12 || Math.abs(v / sf - 1) < 1e-9, `chi2.sf(${x}, ${df}) = ${v} vs ${sf}`);
    }
  });

  it('hosmerLemeshow: group sizes follow numpy.array_split', () => {
    const hl = hosmerLemeshow([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], [0, 0, 1, 0, 1, 1, 1], 3);
    assert.deepEqual(hl.groups.map((g) => g.count), [3, 2, 2]);
    assert.equal(hl.df, 3);
  });
});
