/**
 * Drift statistics and their special functions against SciPy/NumPy (golden numbers from
 * test/fixtures/monitor/make_golden.py): 1e-9 relative unless said otherwise, far-tail
 * p-values (down to 1e-300) relative too.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  chi2Sf,
  chiSquareGoodnessOfFit,
  cohensW,
  cramersV,
  DRIFT_DEFAULTS,
  gammainc,
  gammaincc,
  jensenShannonDistance,
  kolmogorov,
  ksAgainstQuantiles,
  ksTwoSample,
  kstwoCdf,
  kstwoSf,
  lgamma,
  psi,
  roundHalfEven,
  smirnov,
  wassersteinAgainstQuantiles,
  wassersteinDistance,
} from '../src/monitor/stats.ts';
import { linearQuantiles, loadGolden, loadLendingClub, num, nums } from './fixtures/monitor/data.ts';

const golden = loadGolden();

/** Relative error, with exact equality (incl. both 0, both Infinity) as 0. */
function relErr(actual: number, expected: number): number {
  if (actual === expected) return 0;
  if (Number.isNaN(actual) && Number.isNaN(expected)) return 0;
  return Math.abs(actual - expected) / Math.abs(expected);
}

/** Checks every row, reports the worst relative error, fails listing the first offenders. */
function checkGrid<T>(rows: T[], tol: number, compute: (r: T) => [actual: number, expected: number], label: (r: T) => string): number {
  let worst = 0;
  const bad: string[] = [];
  for (const r of rows) {
    const [a, e] = compute(r);
    const err = relErr(a, e);
    if (!(err <= tol)) bad.push(`${label(r)}: got ${a}, want ${e} (rel ${err.toExponential(2)})`);
    else if (err > worst) worst = err;
  }
  assert.deepEqual(bad.slice(0, 10), [], `${bad.length} of ${rows.length} outside ${tol}`);
  return worst;
}

describe('special functions', () => {
  it('regularized upper incomplete gamma Q(a, x) = scipy.special.gammaincc, tails to 1e-300', (t) => {
    const rows: number[][] = golden.gammaincc;
    assert.ok(rows.length > 400);
    assert.ok(rows.some((r) => r[2] < 1e-290), 'grid reaches the far tail');
    const vsScipy = checkGrid(rows, 1e-9, (r) => [gammaincc(r[0], r[1]), r[2]], (r) => `Q(${r[0]}, ${r[1]})`);
    const vsExact = checkGrid(rows, 1e-9, (r) => [gammaincc(r[0], r[1]), r[4]], (r) => `Q(${r[0]}, ${r[1]}) vs mpmath`);
    t.diagnostic(`gammaincc: ${rows.length} points, worst rel error vs scipy ${vsScipy.toExponential(2)}, vs mpmath (40 digits) ${vsExact.toExponential(2)}`);
  });

  it('regularized lower incomplete gamma P(a, x) = scipy.special.gammainc', () => {
    checkGrid(golden.gammaincc as number[][], 1e-9, (r) => [gammainc(r[0], r[1]), r[3]], (r) => `P(${r[0]}, ${r[1]})`);
  });

  it('chi-square survival function = scipy.stats.chi2.sf, tails to 1e-300', (t) => {
    const rows: number[][] = golden.chi2sf;
    assert.ok(rows.some((r) => r[2] < 1e-290));
    const worst = checkGrid(rows, 1e-9, (r) => [chi2Sf(r[0], r[1]), r[2]], (r) => `chi2.sf(${r[0]}, ${r[1]})`);
    t.diagnostic(`chi2Sf: ${rows.length} points, worst rel error ${worst.toExponential(2)}`);
    assert.equal(chi2Sf(0, 3), 1);
    assert.equal(chi2Sf(Infinity, 3), 0);
    assert.ok(Number.isNaN(chi2Sf(1, 0)));
  });

  it('Kolmogorov limiting survival function = scipy.special.kolmogorov (kstwobign.sf)', (t) => {
    const rows: number[][] = golden.kolmogorov;
    assert.ok(rows.some((r) => r[1] < 1e-290));
    const worst = checkGrid(rows, 1e-9, (r) => [kolmogorov(r[0]), r[1]], (r) => `kolmogorov(${r[0]})`);
    t.diagnostic(`kolmogorov: ${rows.length} points, worst rel error ${worst.toExponential(2)}`);
    assert.equal(kolmogorov(0), 1);
    assert.equal(kolmogorov(40), 0);
  });

  it('one-sided Smirnov survival function = scipy.special.smirnov, n up to 1e6', (t) => {
    const rows: number[][] = golden.smirnov;
    const worst = checkGrid(rows, 1e-9, (r) => [smirnov(r[0], r[1]), r[2]], (r) => `smirnov(${r[0]}, ${r[1]})`);
    t.diagnostic(`smirnov: ${rows.length} points, worst rel error ${worst.toExponential(2)}`);
  });

  it('two-sided one-sample KS distribution = scipy.stats.kstwo (every algorithm branch)', (t) => {
    const rows: number[][] = golden.kstwo;
    const sf = checkGrid(rows, 1e-9, (r) => [kstwoSf(r[0], r[1]), r[2]], (r) => `kstwo.sf(${r[0]}, ${r[1]})`);
    const cdf = checkGrid(rows, 1e-9, (r) => [kstwoCdf(r[0], r[1]), r[3]], (r) => `kstwo.cdf(${r[0]}, ${r[1]})`);
    t.diagnostic(`kstwo: ${rows.length} points, worst rel error sf ${sf.toExponential(2)}, cdf ${cdf.toExponential(2)}`);
  });

  it('ln Γ and round-half-even helpers', () => {
    assert.ok(Math.abs(lgamma(0.5) - Math.log(Math.sqrt(Math.PI))) < 4e-15);
    assert.ok(Math.abs(lgamma(1)) < 4e-15 && Math.abs(lgamma(2)) < 4e-15);
    assert.ok(relErr(lgamma(171), 706.5730622457874) < 1e-15);
    assert.deepEqual([0.5, 1.5, 2.5, -2.5, 2.4999, 2.6].map(roundHalfEven), [0, 2, 2, -2, 2, 3]);
  });
});

describe('PSI and Jensen-Shannon distance', () => {
  const cases: { name: string; reference: unknown[]; counts: number[]; psi: unknown; js: unknown; jsExact?: number }[] = golden.drift;

  it('PSI = Evidently (epsilon 0.0001 on empty bins, both sides, no renormalisation)', () => {
    for (const c of cases) {
      const got = psi(nums(c.reference), c.counts);
      const want = num(c.psi);
      assert.ok(Math.abs(got - want) <= 1e-9 * Math.abs(want) + 1e-15, `${c.name}: ${got} vs ${want}`);
    }
  });

  it('Jensen-Shannon distance = scipy.spatial.distance.jensenshannon(base=2)', () => {
    for (const c of cases) {
      const got = jensenShannonDistance(nums(c.reference), c.counts);
      assert.ok(Math.abs(got - num(c.js)) <= 1e-9, `${c.name}: ${got} vs ${num(c.js)}`);
      // Where an exact (mpmath) value exists the result is better than SciPy's rounding noise.
      if (c.jsExact !== undefined) assert.ok(relErr(got, c.jsExact) < 1e-9, `${c.name}: ${got} vs exact ${c.jsExact}`);
    }
  });

  it('golden cases cover real drift and no drift on lending_club', () => {
    const riskier = cases.find((c) => c.name === 'int_rate/riskier');
    const recent = cases.find((c) => c.name === 'int_rate/recent');
    assert.ok(riskier && recent);
    assert.ok(psi(nums(riskier.reference), riskier.counts) > DRIFT_DEFAULTS.psi.critical);
    assert.ok(psi(nums(recent.reference), recent.counts) < DRIFT_DEFAULTS.psi.warn);
    assert.ok(jensenShannonDistance(nums(riskier.reference), riskier.counts) > DRIFT_DEFAULTS.jensenShannon);
  });

  it('edge cases: identical, empty window, mismatched bins, custom epsilon', () => {
    assert.equal(psi([0.5, 0.5], [10, 10]), 0);
    assert.equal(jensenShannonDistance([0.5, 0.5], [10, 10]), 0);
    assert.equal(jensenShannonDistance([1, 0], [0, 3]), 1);
    assert.ok(Number.isNaN(psi([0.5, 0.5], [0, 0])));
    assert.ok(Number.isNaN(jensenShannonDistance([0.5, 0.5], [0, 0])));
    assert.throws(() => psi([0.5, 0.5], [1, 2, 3]), RangeError);
    assert.throws(() => jensenShannonDistance([], []), RangeError);
    const e = 1e-3;
    const want = (0.5 - 1) * Math.log(0.5 / 1) + (0.5 - e) * Math.log(0.5 / e) + (e - e) * 0;
    assert.ok(relErr(psi([1, 0, 0], [5, 5, 0], e), want) < 1e-14);
  });
});

describe('two-sample Kolmogorov-Smirnov', () => {
  const synthetic: { name: string; a: number[]; b: number[]; asymp: unknown[]; exact: unknown[]; auto: unknown[] }[] = golden.ksSynthetic;

  for (const method of ['asymp', 'exact', 'auto'] as const) {
    it(`= scipy.stats.ks_2samp(method='${method}') on synthetic samples, ties and unequal sizes`, () => {
      for (const c of synthetic) {
        const r = ksTwoSample(c.a, c.b, method);
        const [d, p] = nums(c[method]);
        assert.ok(relErr(r.statistic, d) <= 1e-12, `${c.name}: D ${r.statistic} vs ${d}`);
        if (Number.isNaN(p)) assert.ok(Number.isNaN(r.pValue), `${c.name}: p ${r.pValue} vs NaN`);
        else assert.ok(relErr(r.pValue, p) <= 1e-9, `${c.name}: p ${r.pValue} vs ${p}`);
      }
    });
  }

  it('auto picks exact up to 10,000 per sample, as SciPy', () => {
    assert.equal(ksTwoSample([1, 2, 3], [1.5, 2.5], 'auto').method, 'exact');
    assert.equal(ksTwoSample(new Float64Array(10001).map((_, i) => i), [1, 2], 'auto').method, 'asymp');
  });

  it('= scipy on lending_club columns: windows against the full reference sample', () => {
    const lc = loadLendingClub();
    const ref = lc.select('reference');
    let checked = 0;
    for (const col of golden.ksData as { column: string; windows: Record<string, { asymp: unknown[]; exact?: unknown[] }> }[]) {
      const r = lc.column(ref, col.column);
      for (const [wname, w] of Object.entries(col.windows)) {
        const x = lc.column(lc.select(wname as 'recent'), col.column);
        const asymp = ksTwoSample(x, r);
        assert.ok(relErr(asymp.statistic, num(w.asymp[0])) <= 1e-12, `${col.column}/${wname}: D`);
        assert.ok(relErr(asymp.pValue, num(w.asymp[1])) <= 1e-9, `${col.column}/${wname}: p ${asymp.pValue} vs ${num(w.asymp[1])}`);
        if (w.exact) {
          const exact = ksTwoSample(x, r, 'exact');
          assert.ok(relErr(exact.statistic, num(w.exact[0])) <= 1e-12);
          assert.ok(relErr(exact.pValue, num(w.exact[1])) <= 1e-9, `${col.column}/${wname}: exact p ${exact.pValue} vs ${num(w.exact[1])}`);
        }
        checked++;
      }
    }
    assert.equal(checked, 17 * 4);
  });

  it('drops non-finite values; an empty sample gives NaN', () => {
    const a = ksTwoSample([1, 2, NaN, 3], [2, 3, 4]);
    const b = ksTwoSample([1, 2, 3], [2, 3, 4]);
    assert.deepEqual(a, b);
    assert.equal(a.n1, 3);
    const e = ksTwoSample([], [1, 2]);
    assert.ok(Number.isNaN(e.statistic) && Number.isNaN(e.pValue));
  });
});

describe('KS against the reference quantiles', () => {
  const lc = loadLendingClub();
  const ref = lc.select('reference');
  const data: { column: string; quantiles?: unknown[]; windows: Record<string, { asymp: unknown[] }> }[] = golden.ksData;

  function compare(k: number): { worstD: number; worstLogP: number; n: number } {
    let worstD = 0;
    let worstLogP = 0;
    let n = 0;
    for (const col of data) {
      const r = lc.column(ref, col.column);
      const q = k === 1001 && col.quantiles ? nums(col.quantiles) : linearQuantiles(r, k);
      for (const [wname, w] of Object.entries(col.windows)) {
        const x = lc.column(lc.select(wname as 'recent'), col.column);
        const got = ksAgainstQuantiles(x, q, r.length);
        const [d, p] = nums(w.asymp);
        worstD = Math.max(worstD, Math.abs(got.statistic - d));
        if (p > 1e-300 && got.pValue > 0) worstLogP = Math.max(worstLogP, Math.abs(Math.log10(got.pValue) - Math.log10(p)));
        n++;
      }
    }
    return { worstD, worstLogP, n };
  }

  it('|D − D_scipy(full reference)| <= 1/1000 with 1,001 quantiles on every lending_club column and window', (t) => {
    const { worstD, worstLogP, n } = compare(1001);
    assert.equal(n, 68);
    assert.ok(worstD <= 1 / 1000 + 1e-12, `worst |ΔD| ${worstD}`);
    t.diagnostic(`1,001 quantiles: worst |D − D_exact| = ${worstD.toExponential(3)}, worst |log10 p − log10 p_exact| = ${worstLogP.toFixed(3)} over ${n} column × window pairs`);
  });

  it('|D − D_scipy| <= 1/100 with 101 quantiles', (t) => {
    const { worstD } = compare(101);
    assert.ok(worstD <= 1 / 100 + 1e-12, `worst |ΔD| ${worstD}`);
    t.diagnostic(`101 quantiles: worst |D − D_exact| = ${worstD.toExponential(3)}`);
  });

  it('p-value comes from kstwo.sf(D, round(n·m/(n+m))) like SciPy asymp', () => {
    const x = [0.1, 0.4, 0.45, 0.8, 0.9];
    const q = linearQuantiles(Array.from({ length: 1001 }, (_, i) => i / 1000), 1001);
    const r = ksAgainstQuantiles(x, q, 1001);
    assert.equal(r.effectiveN, roundHalfEven((1001 * 5) / 1006));
    assert.equal(r.pValue, kstwoSf(r.statistic, r.effectiveN));
    // A reference sample stored with every point as a quantile: the exact two-sample D.
    const a = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5];
    const b = [2, 5, 1, 9, 2, 6]; // values in the reference sample, where the interpolated ECDF is exact
    const full = linearQuantiles(a, a.length);
    assert.ok(Math.abs(ksAgainstQuantiles(b, full, a.length).statistic - ksTwoSample(b, a).statistic) < 1e-12);
  });

  it('edge cases: empty window, one quantile', () => {
    assert.ok(Number.isNaN(ksAgainstQuantiles([], [1, 2, 3], 10).statistic));
    assert.ok(Math.abs(ksAgainstQuantiles([1, 1, 2], [1], 10).statistic - 1 / 3) < 1e-15);
    // A constant reference column (every quantile equal): all mass at that value.
    const zeros = new Float64Array(1001);
    assert.ok(Math.abs(ksAgainstQuantiles([0, 0, 1], zeros, 7000).statistic - 1 / 3) < 1e-15);
    assert.equal(ksAgainstQuantiles([0, 0, 0], zeros, 7000).statistic, 0);
    assert.equal(ksAgainstQuantiles([5, 6], zeros, 7000).statistic, 1);
  });
});

describe('Wasserstein distance', () => {
  const lc = loadLendingClub();
  const ref = lc.select('reference');
  const data: { column: string; referenceStd: number; windows: Record<string, { wasserstein: number }> }[] = golden.ksData;

  it('= scipy.stats.wasserstein_distance on lending_club columns', () => {
    for (const col of data) {
      const r = lc.column(ref, col.column);
      for (const [wname, w] of Object.entries(col.windows)) {
        const x = lc.column(lc.select(wname as 'recent'), col.column);
        const got = wassersteinDistance(x, r);
        assert.ok(Math.abs(got - w.wasserstein) <= 1e-9 * Math.max(1, w.wasserstein), `${col.column}/${wname}: ${got} vs ${w.wasserstein}`);
      }
    }
  });

  it('against 1,001 quantiles: normalised distance within 0.02 of the full-sample one (gate is 0.1)', (t) => {
    let worst = 0;
    for (const col of data) {
      const r = lc.column(ref, col.column);
      const q = linearQuantiles(r, 1001);
      const std = Math.max(col.referenceStd, DRIFT_DEFAULTS.wasserstein.stdFloor);
      for (const [wname, w] of Object.entries(col.windows)) {
        const x = lc.column(lc.select(wname as 'recent'), col.column);
        worst = Math.max(worst, Math.abs(wassersteinAgainstQuantiles(x, q) - w.wasserstein) / std);
      }
    }
    // Worst on near-constant columns (delinq_amnt: almost all 0, a few large values), where
    // interpolating between the top quantiles smears the rare large values.
    assert.ok(worst < 0.02, `worst normalised difference ${worst}`);
    t.diagnostic(`Wasserstein/std with 1,001 quantiles: worst |Δ| = ${worst.toExponential(3)}`);
  });
});

describe('chi-square goodness of fit', () => {
  const cases: { name: string; counts: number[]; shares: unknown[]; statistic: unknown; df: number; pValue: unknown; epsilon?: number }[] = golden.chiSquare;

  it('= scipy.stats.chisquare(counts, f_exp = shares·n) on lending_club categories and edge cases', () => {
    assert.ok(cases.length >= 18);
    for (const c of cases) {
      const r = chiSquareGoodnessOfFit(c.counts, nums(c.shares), { epsilon: c.epsilon });
      assert.equal(r.df, c.df, c.name);
      assert.ok(relErr(r.statistic, num(c.statistic)) <= 1e-9, `${c.name}: statistic ${r.statistic} vs ${num(c.statistic)}`);
      assert.ok(relErr(r.pValue, num(c.pValue)) <= 1e-9, `${c.name}: p ${r.pValue} vs ${num(c.pValue)}`);
    }
  });

  it('a category the reference never saw: Infinity / p 0 and counted, or finite with epsilon', () => {
    const r = chiSquareGoodnessOfFit([50, 45, 5], [0.6, 0.4, 0]);
    assert.equal(r.statistic, Infinity);
    assert.equal(r.pValue, 0);
    assert.equal(r.unexpected, 5);
    assert.equal(r.df, 1);
    const s = chiSquareGoodnessOfFit([50, 45, 5], [0.6, 0.4, 0], { epsilon: 1e-4 });
    assert.ok(Number.isFinite(s.statistic) && s.df === 2);
    // Empty in both: left out, df unchanged by it.
    const z = chiSquareGoodnessOfFit([50, 50, 0], [0.5, 0.5, 0]);
    assert.equal(z.df, 1);
    assert.equal(z.statistic, 0);
    assert.equal(z.pValue, 1);
  });

  it('effect sizes: Cohen w = √(χ²/n), Cramér V = w/√(k−1); NaN when nothing to test', () => {
    const r = chiSquareGoodnessOfFit([30, 20, 50], [0.2, 0.3, 0.5]);
    assert.ok(relErr(r.cohensW, Math.sqrt(r.statistic / 100)) < 1e-15);
    assert.ok(relErr(r.cramersV, r.cohensW / Math.sqrt(2)) < 1e-15);
    assert.equal(cohensW(4, 100), 0.2);
    assert.equal(cramersV(4, 100, 5), 0.1);
    assert.ok(Number.isNaN(chiSquareGoodnessOfFit([0, 0], [0.5, 0.5]).pValue));
    assert.ok(Number.isNaN(chiSquareGoodnessOfFit([7], [1]).pValue));
    assert.throws(() => chiSquareGoodnessOfFit([1, 2], [0, 0]), RangeError);
  });
});
