/**
 * Self-contained HTML reports for replay and gates: one file, inline CSS, inline SVG bars, no
 * script and nothing fetched. Every value that reaches the page is escaped.
 */
import type { ComparisonReport } from './compare.ts';
import type { GateReport } from './gates.ts';
import type { ReplayReport } from './replay.ts';

export function escapeHtml(text: unknown): string {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const pct = (v: number) => `${(100 * v).toFixed(2)}%`;
const num = (v: number | null | undefined, digits = 4) => (v === null || v === undefined ? '–' : Number.isInteger(v) ? String(v) : v.toFixed(digits));

const STYLE = `body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.flip{background:#fde8e8}
.pass{color:#176b21;font-weight:bold}.fail{color:#b00020;font-weight:bold}.skip{color:#8a6d00;font-weight:bold}
.bar{fill:#4b7bec}.neg{fill:#eb3b5a}small{color:#666}code{background:#f4f4f4;padding:0 .2em}`;

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title><style>${STYLE}</style></head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>\n`;
}

function table(head: readonly string[], rows: readonly (readonly string[])[], rowClass?: (i: number) => string): string {
  return `<table><tr>${head.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr>${rows
    .map((r, i) => `<tr${rowClass?.(i) ? ` class="${rowClass(i)}"` : ''}>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`)
    .join('')}</table>`;
}

/** Horizontal bars, one per item, scaled to the largest. */
function bars(items: readonly { label: string; value: number; negative?: boolean }[]): string {
  const max = Math.max(1e-12, ...items.map((i) => i.value));
  const h = 18;
  const rows = items
    .map((it, i) => {
      const w = Math.round((360 * it.value) / max);
      return `<text x="0" y="${i * h + 13}" font-size="12">${escapeHtml(it.label)}</text><rect class="${it.negative ? 'neg' : 'bar'}" x="150" y="${i * h + 3}" width="${w}" height="${h - 6}"/><text x="${156 + w}" y="${i * h + 13}" font-size="11">${escapeHtml(it.value)}</text>`;
    })
    .join('');
  return `<svg width="600" height="${items.length * h + 4}" role="img">${rows}</svg>`;
}

export function comparisonHtml(c: ComparisonReport): string {
  const { actions, counts, shares } = c.matrix;
  let html = `<p><b>${c.decisions}</b> decisions, <b>${c.flips}</b> flipped (${pct(c.flipRate)}).</p>`;
  html += '<h2>Flip matrix</h2><p><small>rows: the champion\'s action; columns: the candidate\'s</small></p>';
  html += table(
    ['champion \\ candidate', ...actions],
    actions.map((a, i) => [escapeHtml(a), ...actions.map((_, j) => `${i !== j && counts[i][j] > 0 ? '<b>' : ''}${counts[i][j]}${i !== j && counts[i][j] > 0 ? '</b>' : ''} <small>${pct(shares[i][j])}</small>`)]),
  );
  html += table(
    ['action', 'champion', 'candidate', 'change'],
    Object.entries(c.actionRates).map(([a, r]) => [escapeHtml(a), pct(r.champion), pct(r.candidate), `${r.change >= 0 ? '+' : ''}${(100 * r.change).toFixed(2)} pp`]),
  );
  html += '<h2>Flips by score band (champion\'s score)</h2>';
  html += table(['band', 'decisions', 'flips', 'flip rate'], c.byBand.map((b) => [escapeHtml(b.band), String(b.n), String(b.flips), pct(b.flipRate)]));
  html += '<h2>Flips by segment</h2>';
  for (const [feature, segments] of Object.entries(c.bySegment)) {
    const worst = [...segments].sort((a, b) => b.flipRate - a.flipRate).slice(0, 12);
    html += `<h3>${escapeHtml(feature)}</h3>${bars(worst.map((s) => ({ label: `${s.value} (n ${s.n})`, value: Number((100 * s.flipRate).toFixed(2)) })))}`;
  }
  const d = c.scoreDifference;
  html += `<h2>Score difference (candidate − champion)</h2><p>${d.n} decisions scored by both; exactly equal: ${d.exactlyEqual}; mean ${num(d.mean, 6)}, mean |Δ| ${num(d.meanAbsolute, 6)}, max |Δ| ${num(d.maxAbsolute, 6)}.</p>`;
  html += bars(d.histogram.map((b) => ({ label: `${b.from ?? '−∞'} .. ${b.to ?? '∞'}`, value: b.count, negative: (b.to ?? 1) <= 0 })));
  html += `<h2>Reason codes</h2><p>${c.reasons.changed} decisions (${pct(c.reasons.changedRate)}) with different reason codes.</p>`;
  html += table(['code', 'gained', 'lost'], c.reasons.byCode.slice(0, 30).map((r) => [escapeHtml(r.code), String(r.gained), String(r.lost)]));
  html += `<h2>Fallback and latency</h2><p>Fallback: champion ${c.fallback.champion} (${pct(c.fallback.championRate)}), candidate ${c.fallback.candidate} (${pct(c.fallback.candidateRate)}).</p>`;
  html += `<p>Candidate model latency (one row, ms): p50 ${num(c.latencyMs.p50)}, p90 ${num(c.latencyMs.p90)}, p99 ${num(c.latencyMs.p99)}, max ${num(c.latencyMs.max)} over ${c.latencyMs.n} decisions.</p>`;
  const o = c.outcomes;
  if (o) {
    html += `<h2>On known outcomes</h2><p>${o.labelled} decisions with outcomes, ${o.positives} positive.</p>`;
    html += table(
      ['', 'champion', 'candidate'],
      [
        ['ROC AUC', num(o.champion.auc), num(o.candidate.auc)],
        ['log loss', num(o.champion.logLoss), num(o.candidate.logLoss)],
        ['Brier', num(o.champion.brier), num(o.candidate.brier)],
      ],
    );
    if (o.aucDifference) {
      const a = o.aucDifference;
      html += `<p>AUC difference (candidate − champion) ${num(a.difference)}, DeLong 95% interval [${num(a.lower)}, ${num(a.upper)}], p = ${num(a.p, 3)}.</p>`;
    }
    const acts = [...new Set([...Object.keys(o.champion.badRateByAction), ...Object.keys(o.candidate.badRateByAction)])];
    const cell = (r?: { n: number; rate: number }) => (r ? `${pct(r.rate)} <small>of ${r.n}</small>` : '–');
    html += table(['bad rate by action', 'champion', 'candidate'], acts.map((a) => [escapeHtml(a), cell(o.champion.badRateByAction[a]), cell(o.candidate.badRateByAction[a])]));
  }
  return html;
}

export function replayHtml(r: ReplayReport): string {
  const champions = Object.entries(r.champion).map(([v, n]) => `v${escapeHtml(v)} (${n})`).join(', ');
  const head = `<p>Service <code>${escapeHtml(r.service)}</code>: candidate <b>${escapeHtml(r.candidate.name)} v${escapeHtml(r.candidate.version)}</b> (${escapeHtml(r.candidate.dir)}) re-decided the logged decisions of ${champions || 'no version'}${r.range.since || r.range.until ? ` from ${escapeHtml(r.range.since ?? 'the start')} until ${escapeHtml(r.range.until ?? 'now')}` : ''}, in ${r.seconds.toFixed(1)} s (${Math.round(r.decisionsPerSecond)} decisions/s).${r.refused.count ? ` The candidate's schema refused ${r.refused.count} of them.` : ''}</p>`;
  return page(`Replay: ${r.candidate.name} v${r.candidate.version}`, head + comparisonHtml(r.comparison));
}

export function gateHtml(r: GateReport): string {
  const status = (s: string) => `<span class="${s === 'passed' ? 'pass' : s === 'failed' ? 'fail' : 'skip'}">${s}</span>`;
  let body = `<p>Candidate <b>${escapeHtml(r.candidate.name)} v${escapeHtml(r.candidate.version)}</b>${r.champion ? ` against champion v${escapeHtml(r.champion.version)}` : ''}: ${status(r.passed ? 'passed' : 'failed')} (${r.gates.filter((g) => g.status === 'failed').length} failed, ${r.gates.filter((g) => g.status === 'skipped').length} skipped, ${r.gates.length} in all).</p>`;
  body += table(
    ['gate', 'status', 'detail'],
    r.gates.map((g) => [escapeHtml(g.name), status(g.status), escapeHtml(g.message).replace(/\n/g, '<br>')]),
    (i) => (r.gates[i].status === 'failed' ? 'flip' : ''),
  );
  if (r.replay) body += `<h2>Replay budget: the comparison</h2>${comparisonHtml(r.replay)}`;
  return page(`Gates: ${r.candidate.name} v${r.candidate.version}`, body);
}
