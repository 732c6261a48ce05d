// Charts for the dashboard: uPlot time series and a calibration plot, and plain HTML bars for
// histograms (live beside reference, bin by bin). Colours come from the page's CSS variables,
// so light and dark follow prefers-color-scheme.
import uPlot from '/ui/uPlot.esm.js';

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

function axes() {
  const stroke = cssVar('--muted');
  const grid = { stroke: cssVar('--border'), width: 1 };
  return [
    { stroke, grid, ticks: grid },
    { stroke, grid, ticks: grid, size: 60 },
  ];
}

/** A uPlot chart that follows its container's width; `update(data)` redraws without rebuilding. */
export function timeChart(container, { series, height = 220, yLabel }) {
  const opts = {
    width: Math.max(container.clientWidth, 280),
    height,
    series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: s.color ?? PALETTE[i % PALETTE.length], width: 2, dash: s.dash, spanGaps: false, points: { show: false } }))],
    axes: axes().map((a, i) => (i === 1 && yLabel ? { ...a, label: yLabel } : a)),
    // At least the last 15 minutes on the x axis, up to now: a few minutes of history neither stretch over years nor fill the width.
    scales: { x: { time: true, range: (_u, min, max) => [Math.min(Number.isFinite(min) ? min : Infinity, Date.now() / 1000 - 900), Math.max(Number.isFinite(max) ? max : 0, Date.now() / 1000 + 30)] } },
    legend: { live: true },
  };
  const empty = [[], ...series.map(() => [])];
  const plot = new uPlot(opts, empty, container);
  const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(container.clientWidth, 280), height }));
  resize.observe(container);
  return {
    update(data) {
      plot.setData(data);
    },
    destroy() {
      resize.disconnect();
      plot.destroy();
    },
  };
}

/** Observed positive rate against mean predicted probability, per score bin, with the diagonal. */
export function calibrationChart(container, curve) {
  const points = curve.probPred.map((p, i) => [p, curve.probTrue[i]]).sort((a, b) => a[0] - b[0]);
  const data = [points.map((p) => p[0]), points.map((p) => p[1]), points.map((p) => p[0])];
  const plot = new uPlot(
    {
      width: Math.max(container.clientWidth, 260),
      height: 240,
      series: [
        { label: 'predicted' },
        { label: 'observed rate', stroke: cssVar('--live'), width: 2, points: { show: true, size: 6 } },
        { label: 'perfect calibration', stroke: cssVar('--ref'), dash: [4, 4], width: 1, points: { show: false } },
      ],
      scales: { x: { time: false, range: [0, 1] }, y: { range: [0, 1] } },
      axes: axes().map((a, i) => ({ ...a, label: i === 0 ? 'mean predicted probability' : 'observed positive rate' })),
    },
    data,
    container,
  );
  const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(container.clientWidth, 260), height: 240 }));
  resize.observe(container);
  return { destroy: () => (resize.disconnect(), plot.destroy()) };
}

/** Live and reference shares per bin, side by side; labels the bins for screen readers. */
export function histogramBars(dist, label) {
  const wrap = document.createElement('div');
  const bars = document.createElement('div');
  bars.className = 'bars';
  bars.setAttribute('role', 'img');
  const max = Math.max(1e-9, ...dist.reference, ...dist.live);
  const names = binNames(dist);
  const described = [];
  dist.reference.forEach((ref, i) => {
    const live = dist.live[i] ?? 0;
    const bin = document.createElement('div');
    bin.className = 'bin';
    bin.title = `${names[i]}: reference ${(ref * 100).toFixed(1)}%, live ${(live * 100).toFixed(1)}%`;
    for (const [cls, v] of [['ref', ref], ['cur', live]]) {
      const bar = document.createElement('div');
      bar.className = cls;
      bar.style.height = `${(v / max) * 100}%`;
      bin.append(bar);
    }
    bars.append(bin);
    described.push(bin.title);
  });
  bars.setAttribute('aria-label', `${label}: ${described.slice(0, 12).join('; ')}${described.length > 12 ? '; …' : ''}`);
  const legend = document.createElement('div');
  legend.className = 'legend';
  legend.innerHTML = '<span><span class="sw ref"></span>reference</span><span><span class="sw cur"></span>live</span>';
  const n = document.createElement('span');
  n.textContent = `${dist.n} live values`;
  legend.append(n);
  wrap.append(bars, legend);
  return wrap;
}

function binNames(dist) {
  if (dist.kind === 'categorical') return dist.categories;
  const e = dist.edges;
  const f = (x) => (Math.abs(x) >= 1000 ? x.toFixed(0) : String(Number(x.toPrecision(3))));
  return dist.reference.map((_, i) => (i === 0 ? `< ${f(e[0])}` : i >= e.length ? `≥ ${f(e[e.length - 1])}` : `${f(e[i - 1])} – ${f(e[i])}`));
}
