/**
 * Pure statistics for live monitoring: drift measures between a live window and the
 * reference profile, the tests' p-values, and the special functions they need. No state,
 * no I/O; every function is checked against SciPy/NumPy (test/fixtures/monitor/
 * make_golden.py writes the numbers, test/monitor-stats.test.ts compares).
 *
 * Recommended drift gates (the integrator combines them; from the notes on Evidently and the
 * credit-scoring PSI convention). Every p-value is paired with an effect size, because on
 * large windows a p-value alone flags shifts too small to matter:
 *   - PSI (reference deciles): < 0.1 stable, 0.1 to 0.25 warn, >= 0.25 critical.
 *   - Jensen-Shannon distance (base 2): drift at >= 0.1.
 *   - KS: drift when p < 0.05 AND D >= 0.1.
 *   - chi-square goodness of fit: drift when p < 0.05 AND Cohen's w >= 0.1.
 *   - normalised Wasserstein (distance / reference std, std floored at 0.001): >= 0.1.
 * See DRIFT_DEFAULTS.
 */

export const DRIFT_DEFAULTS = Object.freeze({
  psi: Object.freeze({ warn: 0.1, critical: 0.25 }),
  jensenShannon: 0.1,
  ks: Object.freeze({ pValue: 0.05, minStatistic: 0.1 }),
  chiSquare: Object.freeze({ pValue: 0.05, minEffect: 0.1 }),
  wasserstein: Object.freeze({ threshold: 0.1, stdFloor: 0.001 }),
});

// ---------------------------------------------------------------------------------------
// Small numeric helpers

const LOG_SQRT_2PI = 0.91893853320467274178; // ln(sqrt(2 pi))
const SQRT_2PI = 2.5066282746310005024; // sqrt(2 pi)
const PI2 = Math.PI * Math.PI;
const EPS = 2.220446049250313e-16;

/** numpy.round: round half to even. */
export function roundHalfEven(x: number): number {
  if (!Number.isFinite(x)) return x;
  const f = Math.floor(x);
  const diff = x - f;
  if (diff < 0.5) return f;
  if (diff > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** x * 2^e without overflowing the intermediate power of two. */
function ldexp(x: number, e: number): number {
  while (e > 1000) {
    x *= 2 ** 1000;
    e -= 1000;
  }
  while (e < -1000) {
    x *= 2 ** -1000;
    e += 1000;
  }
  return x * 2 ** e;
}

const clip01 = (p: number): number => (p < 0 ? 0 : p > 1 ? 1 : p);

/** Sorted copy of the finite values (NaN and ±Infinity dropped). */
function sortedFinite(values: ArrayLike<number>): Float64Array {
  let n = 0;
  for (let i = 0; i < values.length; i++) if (Number.isFinite(values[i])) n++;
  const out = new Float64Array(n);
  let k = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isFinite(v)) out[k++] = v;
  }
  return out.sort();
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * Stirling's series remainder: ln Γ(a) − [(a − ½) ln a − a + ln √(2π)], for a >= 10
 * (error below 1e-17 there).
 */
function stirlingCorrection(a: number): number {
  const r = 1 / a;
  const r2 = r * r;
  return r * (1 / 12 - r2 * (1 / 360 - r2 * (1 / 1260 - r2 * (1 / 1680 - r2 * (1 / 1188 - r2 * (691 / 360360 - r2 / 156))))));
}

/** ln Γ(a) for a > 0. Absolute error ~1e-15 (relative where |ln Γ| is large). */
export function lgamma(a: number): number {
  if (!(a > 0)) return NaN;
  if (a === Infinity) return Infinity;
  if (a >= 10) return (a - 0.5) * Math.log(a) - a + LOG_SQRT_2PI + stirlingCorrection(a);
  // Shift up: Γ(a) = Γ(a + k) / (a (a+1) ... (a+k-1)).
  let prod = 1;
  let z = a;
  while (z < 10) prod *= z++;
  return (z - 0.5) * Math.log(z) - z + LOG_SQRT_2PI + stirlingCorrection(z) - Math.log(prod);
}

/** u − ln(1 + u) for |u| <= ½, without cancellation. */
function log1pmxNeg(u: number): number {
  // ln(1+u) = 2 atanh(r), r = u / (2 + u); u − 2r = r·u exactly in real arithmetic.
  const r = u / (2 + u);
  const r2 = r * r;
  let term = r * r2; // r^3
  let s = 0;
  for (let k = 3; k < 200; k += 2) {
    const add = term / k;
    s += add;
    if (Math.abs(add) <= Math.abs(s) * 1e-17) break;
    term *= r2;
  }
  return r * u - 2 * s;
}

/** Stirling error for integers: ln k! − [(k + ½) ln k − k + ln √(2π)]. */
const STIRLERR_TABLE: number[] = (() => {
  const t: number[] = [0];
  let fact = 1;
  for (let k = 1; k <= 15; k++) {
    fact *= k;
    t.push(Math.log(fact) - (k + 0.5) * Math.log(k) + k - LOG_SQRT_2PI);
  }
  return t;
})();

function stirlerr(k: number): number {
  if (k <= 15 && Number.isInteger(k)) return STIRLERR_TABLE[k];
  return stirlingCorrection(k);
}

// ---------------------------------------------------------------------------------------
// Drift measures on binned counts

function checkLengths(reference: ArrayLike<number>, counts: ArrayLike<number>, what: string): void {
  if (reference.length !== counts.length) throw new RangeError(`${what}: ${reference.length} reference bins but ${counts.length} window bins`);
  if (reference.length === 0) throw new RangeError(`${what}: no bins`);
}

/**
 * Population stability index of a window's bin counts against the reference bin shares:
 *   PSI = Σ (a_i − e_i) · ln(a_i / e_i),  a_i = counts_i / Σ counts,  e_i = reference_i.
 * Empty bins, as Evidently does (`np.where(p == 0, 0.0001, p)`): a share that is exactly 0
 * is replaced by `epsilon` on BOTH sides (reference and window), and the shares are NOT
 * renormalised afterwards. The reference shares are used as given (they should sum to 1).
 * A bin empty on both sides contributes 0. An empty window (Σ counts = 0) gives NaN.
 */
export function psi(reference: ArrayLike<number>, counts: ArrayLike<number>, epsilon = 1e-4): number {
  checkLengths(reference, counts, 'psi');
  let n = 0;
  for (let i = 0; i < counts.length; i++) n += counts[i];
  if (!(n > 0)) return NaN;
  let sum = 0;
  for (let i = 0; i < counts.length; i++) {
    let a = counts[i] / n;
    let e = reference[i];
    if (a === 0) a = epsilon;
    if (e === 0) e = epsilon;
    if (a === e) continue;
    sum += (a - e) * Math.log1p((a - e) / e);
  }
  return sum;
}

/**
 * Jensen-Shannon distance, base 2 (in [0, 1]): = scipy.spatial.distance.jensenshannon(
 * reference, counts, base=2). Both inputs are normalised to sum 1 first, as SciPy does.
 * Computed per bin as ½ s·g(d), s = p + q, d = (p − q)/s, g(d) = (1+d)ln(1+d) + (1−d)ln(1−d),
 * so near-identical distributions give an accurate small distance rather than rounding
 * noise. NaN when either side sums to 0.
 */
export function jensenShannonDistance(reference: ArrayLike<number>, counts: ArrayLike<number>): number {
  checkLengths(reference, counts, 'jensenShannonDistance');
  let sp = 0;
  let sq = 0;
  for (let i = 0; i < reference.length; i++) {
    sp += reference[i];
    sq += counts[i];
  }
  if (!(sp > 0) || !(sq > 0)) return NaN;
  let js = 0;
  for (let i = 0; i < reference.length; i++) {
    const p = reference[i] / sp;
    const q = counts[i] / sq;
    const s = p + q;
    if (s === 0) continue;
    if (p === 0 || q === 0) {
      js += s * Math.LN2; // ½ s · g(±1) = ½ s · 2 ln 2
      continue;
    }
    const d = (p - q) / s;
    let g: number;
    if (Math.abs(d) < 0.1) {
      // g(d) = Σ_{k>=1} d^{2k} / (k (2k − 1))
      const d2 = d * d;
      let term = d2;
      g = 0;
      for (let k = 1; k < 40; k++) {
        const add = term / (k * (2 * k - 1));
        g += add;
        if (add <= g * 1e-17) break;
        term *= d2;
      }
    } else g = (1 + d) * Math.log1p(d) + (1 - d) * Math.log1p(-d);
    js += 0.5 * s * g;
  }
  // JS divergence = ½ Σ bins; in bits: / ln 2.
  const divergence = (0.5 * js) / Math.LN2;
  return Math.sqrt(Math.max(0, divergence));
}

// ---------------------------------------------------------------------------------------
// Incomplete gamma and chi-square

/** ln(x^a e^{-x} / Γ(a)), computed without cancellation for large a. */
function logGammaPrefix(a: number, x: number): number {
  if (a < 10) return a * Math.log(x) - x - lgamma(a);
  // a ln x − x − ln Γ(a) = −a·(u − ln(1+u)) + ½ ln(a / 2π) − stirlingCorrection(a), u = (x − a)/a
  const u = (x - a) / a;
  // For |u| > ½ the rounding of u would spoil ln(1 + u) when x << a; use ln(x/a) directly.
  const lead = Math.abs(u) <= 0.5 ? -a * log1pmxNeg(u) : a * Math.log(x / a) - (x - a);
  return lead + 0.5 * Math.log(a) - LOG_SQRT_2PI - stirlingCorrection(a);
}

const MAX_GAMMA_ITER = 100_000_000;

/** Series for the regularized lower incomplete gamma P(a, x); use for x < a + 1. */
function gammaPSeries(a: number, x: number): number {
  let term = 1;
  let sum = 1;
  for (let n = 1; n < MAX_GAMMA_ITER; n++) {
    term *= x / (a + n);
    sum += term;
    if (term <= sum * EPS * 0.5) break;
  }
  return Math.exp(logGammaPrefix(a, x)) * (sum / a);
}

/** Continued fraction (modified Lentz) for the regularized upper incomplete gamma Q(a, x); use for x >= a + 1. */
function gammaQContinuedFraction(a: number, x: number): number {
  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < MAX_GAMMA_ITER; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) <= EPS) break;
  }
  const lp = logGammaPrefix(a, x);
  // exp(lp) can underflow while exp(lp)·h is still representable: fold h in as a log.
  return Math.exp(lp + Math.log(h));
}

/** Regularized upper incomplete gamma Q(a, x) = Γ(a, x)/Γ(a) = scipy.special.gammaincc. a > 0, x >= 0. */
export function gammaincc(a: number, x: number): number {
  if (!(a > 0) || !(x >= 0)) return NaN;
  if (x === 0) return 1;
  if (x === Infinity) return 0;
  if (a === Infinity) return 1;
  if (x < a + 1) return 1 - gammaPSeries(a, x);
  return gammaQContinuedFraction(a, x);
}

/** Regularized lower incomplete gamma P(a, x) = scipy.special.gammainc. */
export function gammainc(a: number, x: number): number {
  if (!(a > 0) || !(x >= 0)) return NaN;
  if (x === 0) return 0;
  if (x === Infinity) return 1;
  if (a === Infinity) return 0;
  if (x < a + 1) return gammaPSeries(a, x);
  return 1 - gammaQContinuedFraction(a, x);
}

/** Chi-square survival function = scipy.stats.chi2.sf(x, df). NaN for df <= 0. */
export function chi2Sf(x: number, df: number): number {
  if (!(df > 0) || Number.isNaN(x)) return NaN;
  if (x <= 0) return 1;
  return gammaincc(df / 2, x / 2);
}

// ---------------------------------------------------------------------------------------
// Kolmogorov-Smirnov distributions

/**
 * Kolmogorov's limiting distribution, survival function: P(K > x) with K = sup|B(t)|
 * (Brownian bridge) = scipy.special.kolmogorov(x) = scipy.stats.kstwobign.sf(x). Same
 * series and cut-over as SciPy (Jacobi theta form below 0.82, alternating series above).
 */
export function kolmogorov(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x <= 0) return 1;
  if (x <= Math.PI / Math.sqrt((708 + 38) * 8)) return 1;
  if (x <= 0.82) {
    // cdf = w u (1 + u^8 + u^24 + u^48), u = e^{−π²/(8x²)}, w = √(2π)/x
    const w = SQRT_2PI / x;
    const logu8 = -PI2 / (x * x);
    const u = Math.exp(logu8 / 8);
    let cdf: number;
    if (u === 0) cdf = Math.exp(logu8 / 8 + Math.log(w));
    else {
      const u8 = Math.exp(logu8);
      const u8cub = u8 ** 3;
      let p = 1;
      p = 1 + u8cub * p;
      p = 1 + u8 * u8 * p;
      p = 1 + u8 * p;
      cdf = w * u * p;
    }
    return clip01(1 - cdf);
  }
  // sf = 2 v (1 − v³ (1 − v⁵ (1 − v⁷))), v = e^{−2x²}
  const v = Math.exp(-2 * x * x);
  const v3 = v ** 3;
  let p = 1;
  p = 1 - v3 * v3 * v * p;
  p = 1 - v3 * v * v * p;
  p = 1 - v3 * p;
  return clip01(2 * v * p);
}

/**
 * One-sided Kolmogorov-Smirnov survival function P(D+_n >= d) = scipy.special.smirnov(n, d),
 * by the exact Smirnov / Birnbaum-Tingey sum with every term formed in log space
 * (Stirling remainders, log1p), so the result keeps ~1e-13 relative accuracy down to 1e-300.
 * SciPy switches to an asymptotic formula above n = 1,000,000; this stays exact (O(n) terms,
 * summation stops once terms past the peak fall below 2^-60 of the sum).
 */
export function smirnov(n: number, d: number): number {
  if (!(n >= 1) || !Number.isInteger(n) || !(d >= 0 && d <= 1)) return NaN;
  if (d === 0) return 1;
  if (d === 1) return 0;
  const t = n * d;
  const nn = Math.min(Math.floor(n - t), n - 1);
  // v = 0 term, times d: (1 − d)^n
  let sum = Math.exp(n * Math.log1p(-d));
  const logd = Math.log(d);
  const sen = stirlerr(n);
  let prev = 0;
  let peaked = false;
  for (let v = 1; v <= nn; v++) {
    const nv = n - v;
    const lt =
      v * Math.log1p(t / v) +
      nv * Math.log1p(-t / nv) -
      Math.log((t + v) / n) +
      0.5 * Math.log(n / (2 * Math.PI * v * nv)) +
      sen -
      stirlerr(v) -
      stirlerr(nv) +
      logd;
    const term = Math.exp(lt);
    sum += term;
    if (term < prev) peaked = true;
    if (peaked && term < sum * 8.7e-19) break;
    prev = term;
  }
  return clip01(sum);
}

const E128 = 2 ** 128;
const EM128 = 2 ** -128;

/** ln(n! / n^n) by Stirling (SciPy's _log_nfactorial_div_n_pow_n). */
function logNFactorialDivNPowN(n: number): number {
  const rn = 1 / n;
  const c = [-2.955065359477124183e-2, 6.4102564102564102564e-3, -1.9175269175269175269e-3, 8.4175084175084175084e-4, -5.952380952380952381e-4, 7.9365079365079365079e-4, -2.7777777777777777778e-3, 8.3333333333333333333e-2];
  const y = rn / n;
  let p = 0;
  for (const ci of c) p = p * y + ci;
  return Math.log(n) / 2 - n + Math.log(2 * Math.PI) / 2 + rn * p;
}

function matmul(a: Float64Array, b: Float64Array, m: number): Float64Array<ArrayBuffer> {
  const out = new Float64Array(m * m);
  for (let i = 0; i < m; i++) {
    const row = i * m;
    for (let k = 0; k < m; k++) {
      const aik = a[row + k];
      if (aik === 0) continue;
      const brow = k * m;
      for (let j = 0; j < m; j++) out[row + j] += aik * b[brow + j];
    }
  }
  return out;
}

/** P(D_n <= d) by Durbin's matrix algorithm as Marsaglia-Tsang-Wang compute it (SciPy's _kolmogn_DMTW). */
function kolmognDMTW(n: number, d: number): number {
  if (d >= 1) return 1;
  const nd = n * d;
  if (nd <= 0.5) return 0;
  const k = Math.ceil(nd);
  const h = k - nd;
  const m = 2 * k - 1;
  let H = new Float64Array(m * m);
  const v = new Float64Array(m);
  const w = new Float64Array(m);
  let fac = 1;
  for (let j = 1; j <= m; j++) {
    v[j - 1] = 1 - h ** j;
    w[j - 1] = fac;
    fac /= j;
    v[j - 1] *= fac;
  }
  const tt = Math.max(2 * h - 1, 0) ** m - 2 * h ** m;
  v[m - 1] = (1 + tt) * fac;
  for (let i = 1; i < m; i++) for (let r = i - 1; r < m; r++) H[r * m + i] = w[r - (i - 1)];
  for (let r = 0; r < m; r++) H[r * m] = v[r];
  for (let c = 0; c < m; c++) H[(m - 1) * m + c] = v[m - 1 - c];

  let Hpwr = new Float64Array(m * m);
  for (let i = 0; i < m; i++) Hpwr[i * m + i] = 1;
  let nn = n;
  let expnt = 0;
  let Hexpnt = 0;
  const kk = (k - 1) * m + (k - 1);
  while (nn > 0) {
    if (nn % 2) {
      Hpwr = matmul(Hpwr, H, m);
      expnt += Hexpnt;
    }
    H = matmul(H, H, m);
    Hexpnt *= 2;
    if (Math.abs(H[kk]) > E128) {
      for (let i = 0; i < H.length; i++) H[i] /= E128;
      Hexpnt += 128;
    }
    nn = Math.floor(nn / 2);
  }
  let p = Hpwr[kk];
  for (let i = 1; i <= n; i++) {
    p = (i * p) / n;
    if (Math.abs(p) < EM128) {
      p *= E128;
      expnt -= 128;
    }
  }
  if (expnt !== 0) p = ldexp(p, expnt);
  return clip01(p);
}

/** Python slice semantics a[start:stop] (negative indices count from the end, out of range clamps). */
function pySlice(a: Float64Array, start: number, stop: number): Float64Array {
  const len = a.length;
  const s = start < 0 ? Math.max(len + start, 0) : Math.min(start, len);
  const e = stop < 0 ? Math.max(len + stop, 0) : Math.min(stop, len);
  return a.subarray(s, Math.max(s, e));
}

function pomeranzJ1J2(i: number, n: number, ll: number, ceilf: number, roundf: number): [number, number] {
  let j1: number;
  let j2: number;
  if (i === 0) {
    j1 = -ll - ceilf - 1;
    j2 = ll + ceilf - 1;
  } else {
    const ip1div2 = Math.floor((i + 1) / 2);
    const ip1mod2 = (i + 1) % 2;
    if (ip1mod2 === 0) {
      if (ip1div2 === n + 1) {
        j1 = n - ll - ceilf - 1;
        j2 = n + ll + ceilf - 1;
      } else {
        j1 = ip1div2 - 1 - ll - roundf - 1;
        j2 = ip1div2 + ll - 1 + ceilf - 1;
      }
    } else {
      j1 = ip1div2 - 1 - ll - 1;
      j2 = ip1div2 + ll + roundf - 1;
    }
  }
  return [Math.max(j1 + 2, 0), Math.min(j2, n)];
}

/** P(D_n <= x) by the Pomeranz recursion (SciPy's _kolmogn_Pomeranz). */
function kolmognPomeranz(n: number, x: number): number {
  const t = n * x;
  const ll = Math.floor(t);
  const f = t - ll;
  const g = Math.min(f, 1 - f);
  const ceilf = f > 0 ? 1 : 0;
  const roundf = f > 0.5 ? 1 : 0;
  const npwrs = 2 * (ll + 1);
  const gpower = new Float64Array(npwrs);
  const twogpower = new Float64Array(npwrs);
  const onem2gpower = new Float64Array(npwrs);
  gpower[0] = 1;
  twogpower[0] = 1;
  onem2gpower[0] = 1;
  let expnt = 0;
  const gOverN = g / n;
  const twoGOverN = (2 * g) / n;
  const oneMinusTwoGOverN = (1 - 2 * g) / n;
  for (let m = 1; m < npwrs; m++) {
    gpower[m] = (gpower[m - 1] * gOverN) / m;
    twogpower[m] = (twogpower[m - 1] * twoGOverN) / m;
    onem2gpower[m] = (onem2gpower[m - 1] * oneMinusTwoGOverN) / m;
  }
  let V0 = new Float64Array(npwrs);
  let V1 = new Float64Array(npwrs);
  V1[0] = 1;
  let V0s = 0;
  let V1s = 0;
  let [j1, j2] = pomeranzJ1J2(0, n, ll, ceilf, roundf);
  for (let i = 1; i < 2 * n + 2; i++) {
    const k1 = j1;
    [V0, V1] = [V1, V0];
    [V0s, V1s] = [V1s, V0s];
    V1.fill(0);
    [j1, j2] = pomeranzJ1J2(i, n, ll, ceilf, roundf);
    const pwrs = i === 1 || i === 2 * n + 1 ? gpower : i % 2 ? twogpower : onem2gpower;
    const ln2 = j2 - k1 + 1;
    if (ln2 > 0) {
      const a = pySlice(V0, k1 - V0s, k1 - V0s + ln2);
      const b = pySlice(pwrs, 0, ln2);
      const conv = new Float64Array(a.length + b.length - 1);
      for (let p = 0; p < a.length; p++) {
        const ap = a[p];
        if (ap === 0) continue;
        for (let q = 0; q < b.length; q++) conv[p + q] += ap * b[q];
      }
      const convStart = j1 - k1;
      const convLen = j2 - j1 + 1;
      const seg = pySlice(conv, convStart, convStart + convLen);
      V1.set(seg.subarray(0, Math.min(seg.length, V1.length)), 0);
      let mx = -Infinity;
      for (let q = 0; q < V1.length; q++) if (V1[q] > mx) mx = V1[q];
      if (mx > 0 && mx < EM128) {
        for (let q = 0; q < V1.length; q++) V1[q] *= E128;
        expnt -= 128;
      }
      V1s = V0s + j1 - k1;
    }
  }
  const at = n - V1s;
  let ans = V1[at < 0 ? V1.length + at : at];
  for (let m = 1; m <= n; m++) {
    if (Math.abs(ans) > E128) {
      ans *= EM128;
      expnt += 128;
    }
    ans *= m;
  }
  if (expnt !== 0) ans = ldexp(ans, expnt);
  return clip01(ans);
}

/** Pelz-Good asymptotic approximation to P(D_n <= x) (SciPy's _kolmogn_PelzGood). */
function kolmognPelzGood(n: number, x: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const z = Math.sqrt(n) * x;
  const zsquared = z * z;
  const zthree = z ** 3;
  const zfour = z ** 4;
  const zsix = z ** 6;
  const qlog = -PI2 / 8 / zsquared;
  if (qlog < -708) return 0;
  let q = Math.exp(qlog);
  const PI4 = Math.PI ** 4;
  const PI6 = Math.PI ** 6;
  const k1a = -zsquared;
  const k1b = PI2 / 4;
  const k2a = 6 * zsix + 2 * zfour;
  const k2b = ((2 * zfour - 5 * zsquared) * PI2) / 4;
  const k2c = (PI4 * (1 - 2 * zsquared)) / 16;
  const k3d = (PI6 * (5 - 30 * zsquared)) / 64;
  const k3c = (PI4 * (-60 * zsquared + 212 * zfour)) / 16;
  const k3b = (PI2 * (135 * zfour - 96 * zsix)) / 4;
  const k3a = -30 * zsix - 90 * z ** 8;
  const K = [0, 0, 0, 0];
  const maxk = Math.ceil((16 * z) / Math.PI);
  for (let k = maxk; k > 0; k--) {
    const m = 2 * k - 1;
    const msquared = m * m;
    const mfour = m ** 4;
    const msix = m ** 6;
    const qpower = q ** (8 * k);
    const coeffs = [1, k1a + k1b * msquared, k2a + k2b * msquared + k2c * mfour, k3a + k3b * msquared + k3c * mfour + k3d * msix];
    for (let i = 0; i < 4; i++) K[i] = K[i] * qpower + coeffs[i];
  }
  const div = [z, 6 * zfour, 72 * z ** 7, 6480 * z ** 10];
  for (let i = 0; i < 4; i++) K[i] = (K[i] * q * SQRT_2PI) / div[i];
  q = Math.exp(-PI2 / 2 / zsquared);
  const sqrt3z = Math.sqrt(3) * z;
  let k2extra = 0;
  let k3extra = 0;
  for (let k = maxk; k > 0; k--) {
    const ksq = k * k;
    const qp = q ** ksq;
    const kspi = Math.PI * k;
    k2extra += ksq * qp;
    k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ksq * qp;
  }
  K[2] += (k2extra * PI2 * SQRT_2PI) / (-36 * zthree);
  K[3] += (k3extra * PI2 * SQRT_2PI) / (216 * zsix);
  let sum = 0;
  for (let i = 0; i < 4; i++) sum += K[i] / n ** (i / 2);
  return sum;
}

/** SciPy's _kolmogn (Simard & L'Ecuyer 2011 algorithm selection): CDF or SF of the two-sided one-sample D_n. */
function kolmogn(n: number, x: number, cdf: boolean): number {
  if (Number.isNaN(n) || Number.isNaN(x)) return NaN;
  if (!Number.isInteger(n) || n <= 0) return NaN;
  const select = (cdfProb: number, sfProb: number): number => clip01(cdf ? cdfProb : sfProb);
  if (x >= 1) return select(1, 0);
  if (x <= 0) return select(0, 1);
  const t = n * x;
  if (t <= 1) {
    if (t <= 0.5) return select(0, 1);
    let prob: number;
    if (n <= 140) {
      prob = 1;
      for (let i = 1; i <= n; i++) prob *= i * (1 / n) * (2 * t - 1);
    } else prob = Math.exp(logNFactorialDivNPowN(n) + n * Math.log(2 * t - 1));
    return select(prob, 1 - prob);
  }
  if (t >= n - 1) {
    const prob = 2 * (1 - x) ** n;
    return select(1 - prob, prob);
  }
  if (x >= 0.5) {
    const prob = 2 * smirnov(n, x);
    return select(1 - prob, prob);
  }
  const nxsquared = t * x;
  if (n <= 140) {
    if (nxsquared <= 0.754693) {
      const prob = kolmognDMTW(n, x);
      return select(prob, 1 - prob);
    }
    if (nxsquared <= 4) {
      const prob = kolmognPomeranz(n, x);
      return select(prob, 1 - prob);
    }
    const prob = 2 * smirnov(n, x);
    return select(1 - prob, prob);
  }
  if (!cdf) {
    if (nxsquared >= 370) return 0;
    if (nxsquared >= 2.2) return clip01(2 * smirnov(n, x));
  }
  let cdfprob: number;
  if (nxsquared >= 18) cdfprob = 1;
  else if (n <= 100000 && n * x ** 1.5 <= 1.4) cdfprob = kolmognDMTW(n, x);
  else cdfprob = kolmognPelzGood(n, x);
  return select(cdfprob, 1 - cdfprob);
}

/**
 * Survival function of the two-sided one-sample KS statistic D_n = scipy.stats.kstwo.sf(d, n):
 * exact (Durbin matrix, Pomeranz, Smirnov sums) where SciPy is exact, Pelz-Good where SciPy
 * uses it. n must be a positive integer.
 */
export function kstwoSf(d: number, n: number): number {
  return kolmogn(n, d, false);
}

/**
 * kstwoSf, remembered: the monitor asks for it per numeric column at every evaluation, with
 * the same n (window and reference sizes do not change) and, on columns of few distinct values
 * (counts, integers), mostly a D it has seen before: D is |k/n − F(v)| for one of a few v. One
 * exact p-value can cost a Durbin matrix power (tens of µs); a look-up is a hash probe. Same
 * values as kstwoSf; bounded (cleared when full).
 */
const kstwoSfSeen = new Map<number, Map<number, number>>();
let kstwoSfSeenSize = 0;
const KSTWO_SF_MEMO = 4096;
function kstwoSfMemo(d: number, n: number): number {
  let byD = kstwoSfSeen.get(n);
  if (byD === undefined) kstwoSfSeen.set(n, (byD = new Map()));
  let p = byD.get(d);
  if (p === undefined) {
    p = kstwoSf(d, n);
    if (kstwoSfSeenSize >= KSTWO_SF_MEMO) {
      kstwoSfSeen.clear();
      kstwoSfSeenSize = 0;
      kstwoSfSeen.set(n, (byD = new Map()));
    }
    byD.set(d, p);
    kstwoSfSeenSize++;
  }
  return p;
}

/** CDF of the two-sided one-sample KS statistic = scipy.stats.kstwo.cdf(d, n). */
export function kstwoCdf(d: number, n: number): number {
  return kolmogn(n, d, true);
}

// ---------------------------------------------------------------------------------------
// Kolmogorov-Smirnov tests

export type KsMethod = 'asymp' | 'exact' | 'auto';

export interface KsResult {
  /** sup |F_a − F_b|. */
  statistic: number;
  pValue: number;
  /** The distribution the p-value came from ('exact' can fall back to 'asymp', as in SciPy). */
  method: 'asymp' | 'exact';
  /** Sample sizes after dropping non-finite values. */
  n1: number;
  n2: number;
}

/** P(D_{n,n} >= h/n), SciPy's _compute_prob_outside_square. */
function probOutsideSquare(n: number, h: number): number {
  let P = 0;
  let k = Math.floor(n / h);
  while (k >= 0) {
    let p1 = 1;
    for (let j = 0; j < h; j++) p1 = ((n - k * h - j) * p1) / (n + k * h + j + 1);
    P = p1 * (1 - P);
    k--;
  }
  return 2 * P;
}

/** Share of lattice paths leaving |x/m − y/n| < h/lcm: SciPy's _compute_outer_prob_inside_method. */
function outerProbInsideMethod(m: number, n: number, g: number, h: number): number {
  if (m < n) [m, n] = [n, m];
  const mg = m / g;
  const ng = n / g;
  let minj = 0;
  let maxj = Math.min(Math.ceil(h / mg), n + 1);
  let curlen = maxj - minj;
  const lenA = Math.min(2 * maxj + 2, n + 1);
  const A = new Float64Array(lenA).fill(1);
  A.fill(0, minj, maxj);
  for (let i = 1; i <= m; i++) {
    const lastminj = minj;
    const lastlen = curlen;
    minj = Math.max(Math.floor((ng * i - h) / mg) + 1, 0);
    minj = Math.min(minj, n);
    maxj = Math.min(Math.ceil((ng * i + h) / mg), n + 1);
    if (maxj <= minj) return 1;
    let val = minj === 0 ? 0 : 1;
    for (let jj = 0; jj < maxj - minj; jj++) {
      const j = jj + minj;
      val = (A[jj + minj - lastminj] * i + val * j) / (i + j);
      A[jj] = val;
    }
    curlen = maxj - minj;
    if (lastlen > curlen) A.fill(1, maxj - minj, Math.min(maxj - minj + (lastlen - curlen), lenA));
  }
  return A[maxj - minj - 1];
}

/** The two-sided KS statistic between two sorted samples, computed exactly as SciPy does. */
function ksStatisticSorted(x: Float64Array, y: Float64Array): number {
  const n1 = x.length;
  const n2 = y.length;
  let i = 0;
  let j = 0;
  let maxS = -Infinity;
  let minS = Infinity;
  while (i < n1 || j < n2) {
    const v = j >= n2 || (i < n1 && x[i] <= y[j]) ? x[i] : y[j];
    while (i < n1 && x[i] <= v) i++;
    while (j < n2 && y[j] <= v) j++;
    const diff = i / n1 - j / n2;
    if (diff > maxS) maxS = diff;
    if (diff < minS) minS = diff;
  }
  const minNeg = Math.min(Math.max(-minS, 0), 1);
  return minNeg > maxS ? minNeg : maxS;
}

/** SciPy's asymptotic two-sided p-value for the two-sample statistic: kstwo.sf(d, round(n1·n2/(n1+n2))). */
function ksAsympPValue(d: number, n1: number, n2: number): number {
  const m = Math.max(n1, n2);
  const n = Math.min(n1, n2);
  const en = (m * n) / (m + n);
  return clip01(kstwoSf(d, roundHalfEven(en)));
}

/**
 * Two-sample Kolmogorov-Smirnov test, two-sided = scipy.stats.ks_2samp(a, b, method=…).
 * Non-finite values (NaN for missing) are dropped first (SciPy would propagate NaN).
 * - 'asymp' (default): kstwo.sf(D, round(n1·n2/(n1+n2))), as SciPy's method='asymp'.
 * - 'exact': the exact permutation distribution (Hodges' lattice-path recursion, as SciPy),
 *   O(n1·n2) time; falls back to 'asymp' where SciPy does (lcm too large or a non-finite /
 *   out-of-range result). The statistic is then reported as h/lcm(n1, n2), as SciPy does.
 * - 'auto': SciPy's default: 'exact' when max(n1, n2) <= 10,000, else 'asymp'. Keep it for
 *   small samples; a 10,000 × 10,000 exact test takes ~10^8 steps.
 * An empty sample gives NaN statistic and p-value (SciPy raises).
 */
export function ksTwoSample(a: ArrayLike<number>, b: ArrayLike<number>, method: KsMethod = 'asymp'): KsResult {
  const x = sortedFinite(a);
  const y = sortedFinite(b);
  const n1 = x.length;
  const n2 = y.length;
  if (n1 === 0 || n2 === 0) return { statistic: NaN, pValue: NaN, method: 'asymp', n1, n2 };
  let d = ksStatisticSorted(x, y);
  let mode: 'asymp' | 'exact' = method === 'auto' ? (Math.max(n1, n2) <= 10000 ? 'exact' : 'asymp') : method;
  const g = gcd(n1, n2);
  const n1g = n1 / g;
  const n2g = n2 / g;
  if (method === 'exact' && n1g >= 2147483647 / n2g) mode = 'asymp';
  if (mode === 'exact') {
    const lcm = n1g * n2;
    const h = roundHalfEven(d * lcm);
    d = h / lcm;
    let prob: number;
    if (h === 0) prob = 1;
    else prob = n1 === n2 ? probOutsideSquare(n1, h) : outerProbInsideMethod(n1, n2, g, h);
    if (prob >= 0 && prob <= 1) return { statistic: d, pValue: prob, method: 'exact', n1, n2 };
    mode = 'asymp';
  }
  return { statistic: d, pValue: ksAsympPValue(d, n1, n2), method: 'asymp', n1, n2 };
}

export interface KsQuantileResult {
  statistic: number;
  pValue: number;
  /** Window size (finite values). */
  n: number;
  /** The n in kstwo.sf(D, n): round(n·m/(n+m)), m = referenceCount. */
  effectiveN: number;
}

/**
 * The reference ECDF rebuilt from K evenly spaced quantiles q_j (at probabilities j/(K−1),
 * NumPy's default linear interpolation, min to max): the position p(x) is linear between
 * quantiles, so runs of equal quantiles (ties, e.g. integer columns) become jumps. At a
 * window value v it is read as an m-point sample's ECDF would be if v were one of its
 * points (the i-th order statistic sits at p = i/(m−1)): F(v) = (p(v)·(m−1) + 1)/m and
 * F(v−) = p(v−)·(m−1)/m; 0 below the minimum, 1 at or above the maximum. This makes the
 * statistic exact when the quantiles are all the order statistics (K = m) and the window's
 * values are reference values, and on lending_club it is slightly closer to SciPy than the
 * plain F = p (worst |ΔD| 0.00098 against 0.00100 with 1,001 quantiles).
 */
class QuantileEcdf {
  private readonly k: number;
  /** Count of quantiles <= the last v given to `cdf`, and < the last v given to `cdfLeft`. */
  private upTo = 0;
  private below = 0;
  constructor(
    private readonly q: ArrayLike<number>,
    private readonly m: number,
  ) {
    this.k = q.length;
  }

  /**
   * Linear-interpolation position of v: p with q(p) = v; right-continuous at jumps. The
   * window values come in increasing order, so the quantile index only moves forward: a walk
   * from the last one (about one step per value) instead of a binary search per value.
   */
  private pRight(v: number): number {
    const q = this.q;
    const K = this.k;
    let lo = this.upTo;
    while (lo < K && q[lo] <= v) lo++;
    this.upTo = lo;
    // j = last index with q[j] <= v
    const j = lo - 1;
    if (j < 0) return -1;
    if (j === K - 1) return 1;
    return (j + (v - q[j]) / (q[j + 1] - q[j])) / (K - 1);
  }

  /** Left limit: p(v−). Same forward walk as `pRight`. */
  private pLeft(v: number): number {
    const q = this.q;
    const K = this.k;
    let lo = this.below;
    while (lo < K && q[lo] < v) lo++;
    this.below = lo;
    // j = first index with q[j] >= v
    const j = lo;
    if (j === 0) return -1;
    if (j === K) return 2; // above every quantile
    return (j - 1 + (v - q[j - 1]) / (q[j] - q[j - 1])) / (K - 1);
  }

  /** F(v); successive calls must not decrease v (the walk never goes back). */
  cdf(v: number): number {
    const p = this.pRight(v);
    if (p < 0) return 0;
    if (this.k === 1) return 1;
    return Math.min(1, (p * (this.m - 1) + 1) / this.m);
  }

  /** F(v−); successive calls must not decrease v. */
  cdfLeft(v: number): number {
    const p = this.pLeft(v);
    if (p < 0) return 0;
    if (p > 1) return 1;
    return (p * (this.m - 1)) / this.m;
  }
}

/**
 * KS test of a window against the reference stored as evenly spaced quantiles (the
 * compressed reference in reference.json; up to 1,001 points). D = sup |F_window − F_ref|
 * with F_ref the interpolated ECDF above (checked at every distinct window value, from both
 * sides, which is where the supremum of a step function against a monotone one lies).
 * p-value as SciPy's ks_2samp 'asymp' would give with the full reference: kstwo.sf(D,
 * round(n·m/(n+m))), m = referenceCount.
 *
 * An approximation because the reference is compressed: on the lending_club columns,
 * |D − D_scipy(full reference)| <= 1/(K−1) (0.001 with 1,001 quantiles); see the tests.
 */
export function ksAgainstQuantiles(window: ArrayLike<number>, referenceQuantiles: ArrayLike<number>, referenceCount: number): KsQuantileResult {
  return ksSortedAgainstQuantiles(sortedFinite(window), referenceQuantiles, referenceCount);
}

/** `ksAgainstQuantiles` of a window already sorted ascending, finite values only (the monitor keeps its windows sorted). */
export function ksSortedAgainstQuantiles(x: ArrayLike<number>, referenceQuantiles: ArrayLike<number>, referenceCount: number): KsQuantileResult {
  const n = x.length;
  const m = Math.floor(referenceCount);
  if (n === 0 || referenceQuantiles.length === 0 || !(m >= 1)) return { statistic: NaN, pValue: NaN, n, effectiveN: NaN };
  // One ECDF per call: it walks the quantiles forward as the sorted window values rise.
  const ecdf = new QuantileEcdf(referenceQuantiles, m);
  let d = 0;
  let i = 0;
  while (i < n) {
    const v = x[i];
    const start = i;
    while (i < n && x[i] === v) i++;
    const right = Math.abs(i / n - ecdf.cdf(v));
    const left = Math.abs(start / n - ecdf.cdfLeft(v));
    if (right > d) d = right;
    if (left > d) d = left;
  }
  const big = Math.max(n, m);
  const small = Math.min(n, m);
  const effectiveN = roundHalfEven((big * small) / (big + small));
  return { statistic: d, pValue: clip01(kstwoSfMemo(d, effectiveN)), n, effectiveN };
}

// ---------------------------------------------------------------------------------------
// Wasserstein (Evidently's default numeric drift measure for references over 1,000 rows)

/**
 * First Wasserstein distance between two samples = scipy.stats.wasserstein_distance(a, b):
 * ∫ |F_a − F_b| dx. Non-finite values are dropped. NaN when a sample is empty. Evidently
 * divides it by the reference std (np.std, floored at 0.001) and flags drift at >= 0.1.
 */
export function wassersteinDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const x = sortedFinite(a);
  const y = sortedFinite(b);
  const n1 = x.length;
  const n2 = y.length;
  if (n1 === 0 || n2 === 0) return NaN;
  let i = 0;
  let j = 0;
  let prev = Math.min(x[0], y[0]);
  let sum = 0;
  while (i < n1 || j < n2) {
    const v = j >= n2 || (i < n1 && x[i] <= y[j]) ? x[i] : y[j];
    sum += Math.abs(i / n1 - j / n2) * (v - prev);
    while (i < n1 && x[i] <= v) i++;
    while (j < n2 && y[j] <= v) j++;
    prev = v;
  }
  return sum;
}

/**
 * Wasserstein distance between a window and the reference given as evenly spaced quantiles
 * (linear interpolation between them): ∫ |F_window − F_ref| dx, integrated exactly over
 * the piecewise-linear reference CDF (the p-scale, without the m-point correction used for
 * KS). Approximation of the full-sample distance, like ksAgainstQuantiles.
 */
export function wassersteinAgainstQuantiles(window: ArrayLike<number>, referenceQuantiles: ArrayLike<number>): number {
  const x = sortedFinite(window);
  const n = x.length;
  const q = referenceQuantiles;
  const K = q.length;
  if (n === 0 || K === 0) return NaN;
  if (K === 1) {
    let s = 0;
    for (let i = 0; i < n; i++) s += Math.abs(x[i] - q[0]);
    return s / n;
  }
  // ∫_0^1 |Qw(p) − Qr(p)| dp over p: Qw is a step function (value x_i on ((i)/n, (i+1)/n]),
  // Qr piecewise linear through (j/(K−1), q_j). Breakpoints: i/n and j/(K−1).
  let sum = 0;
  let i = 0; // window step index
  let j = 0; // reference segment index
  let p = 0;
  while (p < 1 && i < n && j < K - 1) {
    const pw = (i + 1) / n;
    const pr = (j + 1) / (K - 1);
    const pNext = Math.min(pw, pr, 1);
    if (pNext > p) {
      const c = x[i];
      // Qr on [p, pNext] is linear: from r0 to r1
      const slope = (q[j + 1] - q[j]) * (K - 1);
      const r0 = q[j] + slope * (p - j / (K - 1));
      const r1 = q[j] + slope * (pNext - j / (K - 1));
      const d0 = r0 - c;
      const d1 = r1 - c;
      const width = pNext - p;
      if ((d0 >= 0 && d1 >= 0) || (d0 <= 0 && d1 <= 0)) sum += (width * Math.abs(d0 + d1)) / 2;
      else {
        // crosses zero: two triangles
        const tz = (Math.abs(d0) / (Math.abs(d0) + Math.abs(d1))) * width;
        sum += (tz * Math.abs(d0)) / 2 + ((width - tz) * Math.abs(d1)) / 2;
      }
      p = pNext;
    }
    if (pw <= pr) i++;
    if (pr <= pw) j++;
  }
  return sum;
}

// ---------------------------------------------------------------------------------------
// Chi-square goodness of fit

export interface ChiSquareResult {
  statistic: number;
  /** Categories compared − 1. */
  df: number;
  pValue: number;
  /** Observations (Σ counts). */
  n: number;
  /** Categories compared (those with an expected share > 0, or all of them with `epsilon`). */
  k: number;
  /** Observations in categories whose expected share is 0 (the reference never saw them). */
  unexpected: number;
  /** Cohen's w = √(χ²/n): the recommended effect size (gate at 0.1). */
  cohensW: number;
  /** Cramér's-V-style √(χ²/(n(k−1))). */
  cramersV: number;
}

export interface ChiSquareOptions {
  /**
   * Replace zero expected shares by this share (then renormalise all shares to sum 1) so a
   * category the reference never saw gives a large but finite statistic. Without it
   * (default), observations where the expected share is 0 make the statistic Infinity and
   * the p-value 0, as scipy.stats.chisquare does (and as Evidently's chi-square drift test,
   * which puts new categories at expected 0).
   */
  epsilon?: number;
}

/**
 * Pearson chi-square goodness of fit of window counts to reference shares =
 * scipy.stats.chisquare(counts, f_exp = shares·n) where shares are normalised to sum 1 first
 * (SciPy requires Σ f_exp = Σ f_obs). Categories whose expected share is 0 and that are
 * empty in the window are left out (they carry no information; SciPy would give 0/0 = NaN)
 * and do not count towards df. With fewer than 2 categories left, or an empty window, the
 * statistic and p-value are NaN.
 *
 * Effect size: Cohen's w = √(χ²/n) is the one to gate on. It does not depend on the number
 * of categories (Cramér's V divides by k−1, so the same 0.1 gate would need a 7× larger
 * shift for the 50 US states than for a boolean), it is the root of the Pearson χ²
 * divergence Σ (a−e)²/e between window and reference shares, and for small shifts w² ≈ PSI
 * on the same categories: w >= 0.1 ≈ PSI >= 0.01 (a loose gate; the p-value is the other
 * half), w >= 0.316 ≈ PSI >= 0.1. Cramér's V is returned as well.
 */
export function chiSquareGoodnessOfFit(counts: ArrayLike<number>, expectedShares: ArrayLike<number>, options: ChiSquareOptions = {}): ChiSquareResult {
  checkLengths(expectedShares, counts, 'chiSquareGoodnessOfFit');
  const len = counts.length;
  const eps = options.epsilon;
  let n = 0;
  for (let i = 0; i < len; i++) n += counts[i];
  const shares = new Float64Array(len);
  let total = 0;
  for (let i = 0; i < len; i++) {
    let s = expectedShares[i];
    if (!(s >= 0)) throw new RangeError(`chiSquareGoodnessOfFit: expected share ${i} is ${s}`);
    if (s === 0 && eps !== undefined) s = eps;
    shares[i] = s;
    total += s;
  }
  if (!(total > 0)) throw new RangeError('chiSquareGoodnessOfFit: expected shares sum to 0');
  let stat = 0;
  let k = 0;
  let unexpected = 0;
  for (let i = 0; i < len; i++) {
    const o = counts[i];
    const share = shares[i] / total;
    if (share === 0) {
      if (o > 0) unexpected += o;
      continue;
    }
    k++;
    const e = share * n;
    const diff = o - e;
    stat += (diff * diff) / e;
  }
  const df = k - 1;
  if (!(n > 0) || k < 2) return { statistic: NaN, df, pValue: NaN, n, k, unexpected, cohensW: NaN, cramersV: NaN };
  if (unexpected > 0) return { statistic: Infinity, df, pValue: 0, n, k, unexpected, cohensW: Infinity, cramersV: Infinity };
  return { statistic: stat, df, pValue: chi2Sf(stat, df), n, k, unexpected, cohensW: cohensW(stat, n), cramersV: cramersV(stat, n, k) };
}

/** Cohen's w effect size for a chi-square statistic on n observations: √(χ²/n). */
export function cohensW(chi2: number, n: number): number {
  return n > 0 ? Math.sqrt(chi2 / n) : NaN;
}

/** Cramér's-V-style effect size for goodness of fit over k categories: √(χ²/(n(k−1))). */
export function cramersV(chi2: number, n: number, k: number): number {
  return n > 0 && k > 1 ? Math.sqrt(chi2 / (n * (k - 1))) : NaN;
}
