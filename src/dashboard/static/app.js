// The rtml dashboard: one page, hash routes (#/, #/service/NAME, #/decision/NAME/ID), polling
// the server's JSON every few seconds. Text from the server is only ever set as textContent.
// Operator actions send the admin token the operator typed in (kept in sessionStorage); the
// server decides, and a refusal is shown as the server worded it.
import { calibrationChart, histogramBars, timeChart } from '/ui/charts.js';

const POLL_MS = 2000;
const SLOW_POLL_MS = 30_000;
const VERDICT_RANK = { critical: 0, warning: 1, insufficient_data: 3, ok: 2 };
const STAGES = ['validation', 'features', 'model', 'policy', 'explain', 'log', 'total'];

// ---------- small DOM helpers ----------

/** h('div.cls', {attrs}, ...children): children are nodes or text (never parsed as HTML). */
function h(tag, attrs = {}, ...children) {
  const [name, ...classes] = tag.split('.');
  const el = document.createElement(name);
  if (classes.length) el.className = classes.join(' ');
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

/** Replaces a container's content, keeping keyboard focus on the element with the same data-key. */
function replace(container, ...children) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.key : undefined;
  container.replaceChildren(...children.flat().filter(Boolean));
  if (key) container.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

const fmt = {
  n: (v, digits = 0) => (v === null || v === undefined || Number.isNaN(v) ? '–' : Number(v).toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits })),
  ms: (v) => (v === null || v === undefined ? '–' : v < 1 ? `${v.toFixed(2)} ms` : v < 100 ? `${v.toFixed(1)} ms` : `${v.toFixed(0)} ms`),
  pct: (v) => (v === null || v === undefined || Number.isNaN(v) ? '–' : `${(v * 100).toFixed(1)}%`),
  num: (v) => (v === null || v === undefined || Number.isNaN(v) ? '–' : Math.abs(v) >= 100 ? v.toFixed(0) : Number(v.toPrecision(3)).toString()),
  time: (iso) => (iso ? new Date(iso).toLocaleString('en-GB', { dateStyle: 'short', timeStyle: 'medium' }) : '–'),
  ago: (iso) => {
    if (!iso) return 'never';
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    return s < 60 ? `${s.toFixed(0)} s ago` : s < 3600 ? `${(s / 60).toFixed(0)} min ago` : s < 86400 ? `${(s / 3600).toFixed(1)} h ago` : `${(s / 86400).toFixed(1)} d ago`;
  },
};

const badge = (value, text = String(value).replace('_', ' ')) => h(`span.badge.${value}`, {}, text);
const figure = (label, value, key) => h('div.figure', { dataset: key ? { figure: key } : undefined }, h('div.label', {}, label), h('div.value', {}, value));
const panel = (title, id, ...children) => h('section.panel', { 'aria-labelledby': `${id}-title`, id }, h('h2', { id: `${id}-title` }, title), ...children);

// ---------- the admin token ----------

const session = {
  get token() {
    return sessionStorage.getItem('rtml.adminToken') ?? '';
  },
  set token(v) {
    if (v) sessionStorage.setItem('rtml.adminToken', v);
    else sessionStorage.removeItem('rtml.adminToken');
    showTokenState();
  },
  get operator() {
    return sessionStorage.getItem('rtml.operator') || 'dashboard';
  },
  set operator(v) {
    sessionStorage.setItem('rtml.operator', v);
  },
};

function showTokenState() {
  document.getElementById('token-button').textContent = session.token ? `Admin token: set (${session.operator})` : 'Admin token: not set';
}

/** Opens the token dialog; resolves once it closes (saved or not). */
function askForToken() {
  const dialog = document.getElementById('token-dialog');
  const input = document.getElementById('token-input');
  const operator = document.getElementById('operator-input');
  input.value = session.token;
  operator.value = sessionStorage.getItem('rtml.operator') ?? '';
  return new Promise((resolve) => {
    dialog.addEventListener(
      'close',
      () => {
        if (dialog.returnValue === 'save') {
          session.token = input.value.trim();
          if (operator.value.trim()) session.operator = operator.value.trim();
        } else if (dialog.returnValue === 'forget') session.token = '';
        showTokenState();
        resolve();
      },
      { once: true },
    );
    dialog.returnValue = 'cancel';
    dialog.showModal();
    input.focus();
  });
}

// ---------- the API ----------

async function api(path, { method = 'GET', body, admin = false } = {}) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (admin && session.token) headers.authorization = `Bearer ${session.token}`;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let json = null;
  try {
    json = await res.json();
  } catch {
    json = null;
  }
  return { ok: res.ok, status: res.status, body: json };
}

/** An admin action: asks for the token first when none is set, then sends whatever it has; the server decides. */
async function adminAction(path, method, body) {
  if (!session.token) await askForToken();
  return api(path, { method, body, admin: true });
}

function refusalText(answer) {
  const why = answer.body?.error ?? `HTTP ${answer.status}`;
  const hint = answer.status === 401 || answer.status === 403 ? ' Set the admin token (top right) and try again.' : '';
  return `Refused (${answer.status}): ${why}${hint}`;
}

function toast(text) {
  const el = document.getElementById('toast');
  el.textContent = text;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (el.textContent = ''), 6000);
}

// ---------- live status and polling ----------

let generation = 0;
const cleanups = [];

/** Calls `fn` now and every `ms` until the route changes; reports failures in the status line. */
function poll(fn, ms) {
  const mine = generation;
  let timer = null;
  const run = async () => {
    if (mine !== generation) return;
    try {
      await fn();
      live(true);
    } catch (err) {
      live(false, err);
    }
    if (mine === generation) timer = setTimeout(run, ms);
  };
  void run();
  cleanups.push(() => clearTimeout(timer));
}

function live(ok, err) {
  const el = document.getElementById('live');
  el.classList.toggle('stale', !ok);
  el.textContent = ok ? `live · updated ${new Date().toLocaleTimeString('en-GB')}` : `not updating: ${err?.message ?? 'server unreachable'}`;
}

async function getJson(path, options) {
  const answer = await api(path, options);
  if (!answer.ok) throw Object.assign(new Error(answer.body?.error ?? `HTTP ${answer.status}`), { answer });
  return answer.body;
}

// ---------- overview ----------

function mixBar(shares, colors) {
  return h(
    'div.mix',
    { role: 'img', 'aria-label': Object.entries(shares).map(([a, s]) => `${a} ${fmt.pct(s)}`).join(', ') || 'no decisions' },
    Object.entries(shares).map(([action, share]) => h('span', { style: `width:${share * 100}%;background:${colors(action)}`, title: `${action}: ${fmt.pct(share)}` })),
  );
}

function actionColors() {
  const palette = ['#1565c0', '#6a1b9a', '#00838f', '#8d6e63', '#2e7d32', '#c62828', '#f9a825'];
  // Common actions keep the colours people expect; others take the palette in order.
  const known = new Map([['approve', '#2e7d32'], ['review', '#f9a825'], ['decline', '#c62828'], ['block', '#c62828'], ['allow', '#2e7d32']]);
  return (action) => {
    if (!known.has(action)) known.set(action, palette[known.size % palette.length]);
    return known.get(action);
  };
}

function mixFigures(service, colors) {
  const mix = service.decision_mix;
  const liveTotal = Object.values(service.live.mix).reduce((a, b) => a + b, 0);
  const recent = Object.fromEntries(Object.entries(service.live.mix).map(([a, n]) => [a, n / liveTotal]));
  const rows = [];
  if (mix) {
    rows.push(h('div.small.muted', {}, `decision mix, last ${fmt.n(service.observations)} decisions (PSI ${fmt.num(mix.psi)}) `, badge(mix.verdict)));
    rows.push(mixBar(mix.shares, colors));
    rows.push(h('div.small.muted', {}, 'reference'));
    rows.push(mixBar(mix.reference, colors));
  } else if (liveTotal > 0) {
    rows.push(h('div.small.muted', {}, 'decision mix, last minute'), mixBar(recent, colors));
  }
  const actions = Object.keys(mix?.reference ?? recent);
  if (actions.length) rows.push(h('div.legend', {}, actions.map((a) => h('span', {}, h('span.sw', { style: `background:${colors(a)}` }), `${a} ${mix ? fmt.pct(mix.shares[a] ?? 0) : fmt.pct(recent[a])}`))));
  return rows;
}

function alertLine(service, alert) {
  return h(
    `div.alert.${alert.severity}`,
    { dataset: { alertKey: alert.key } },
    h('div', {}, badge(alert.severity), ' ', h('strong', {}, alert.key)),
    h('div', {}, alert.message),
    h('div.meta', {}, `since ${fmt.time(alert.since ?? alert.firedAt)}`, alert.acknowledged ? ` · acknowledged by ${alert.acknowledged.by}` : ''),
  );
}

async function renderOverview(main) {
  document.title = 'Overview · rtml';
  const heading = h('h1', {}, 'Services');
  const intro = h('p.muted.small', {}, 'Every service this server runs: its mode, traffic and latency over the last minute, decisions against the reference profile, active alerts and the last outcome received. Updated every 2 s.');
  const cards = h('div.cards', { id: 'services' });
  main.replaceChildren(heading, intro, cards);
  const colors = actionColors();
  poll(async () => {
    const overview = await getJson('/v1/dashboard/overview');
    if (overview.services.length === 0) return replace(cards, h('p', {}, 'No services loaded. Put a bundle folder in the model repository; it loads within seconds.'));
    replace(
      cards,
      overview.services.map((s) =>
        h(
          'article.panel.card',
          { 'aria-labelledby': `svc-${s.name}`, dataset: { service: s.name } },
          h('h2', { id: `svc-${s.name}` }, h('a', { href: `#/service/${encodeURIComponent(s.name)}`, dataset: { key: `open-${s.name}` } }, s.name), ' ', badge(s.mode), ' ', h('span.muted.small', {}, `v${s.version}`)),
          s.description ? h('p.small.muted', {}, s.description) : null,
          h(
            'div.figures',
            {},
            figure('decisions / s', fmt.n(s.live.decisions_per_s, 1), 'rate'),
            figure('latency p50', fmt.ms(s.live.latency_ms.p50), 'p50'),
            figure('latency p99', fmt.ms(s.live.latency_ms.p99), 'p99'),
            figure('fallback rate', fmt.pct(s.fallback_rate), 'fallback'),
            figure('last outcome', fmt.ago(s.live.last_outcome_at), 'outcome'),
          ),
          mixFigures(s, colors),
          h('h3', {}, `Active alerts (${s.alerts.length})`),
          s.alerts.length ? s.alerts.map((a) => alertLine(s, a)) : h('p.small.muted', {}, s.monitored ? 'None.' : 'Not monitored: the bundle has no reference profile (rtml profile).'),
          s.kill_switch.enabled ? h('p.refusal', {}, `Kill switch on since ${fmt.time(s.kill_switch.since)}${s.kill_switch.reason ? `: ${s.kill_switch.reason}` : ''}`) : null,
          s.safe_mode?.active ? h('p.refusal', {}, `Safe mode on since ${fmt.time(s.safe_mode.since)}: ${s.safe_mode.reason ?? ''}`) : null,
        ),
      ),
    );
  }, POLL_MS);
}

// ---------- service page ----------

async function renderService(main, name) {
  document.title = `${name} · rtml`;
  const state = { sort: 'severity', expanded: new Set(), history: null, monitoring: null, distributions: null, overview: null };
  const sections = {
    head: h('div', { id: 'service-head' }),
    controls: panel('Safe mode and kill switch', 'controls'),
    alerts: panel('Alerts', 'alerts'),
    charts: panel('Over time', 'history', h('p.small.muted', {}, 'Per-minute aggregates kept by the server (14 days), so a restart does not blank them.')),
    score: panel('Score distribution: live against reference', 'score'),
    drift: panel('Feature drift', 'drift'),
    quality: panel('Data quality', 'quality'),
    performance: panel('Performance', 'performance'),
    rollouts: panel('Rollouts', 'rollouts', h('p.small.muted', {}, 'Shadow and canary rollouts (rtml replay / gate) will be started, promoted and rolled back here once they exist; until then use the repository (load/unload) API.')),
    lookup: panel('Find a decision', 'lookup'),
  };
  main.replaceChildren(
    h('p.small', {}, h('a', { href: '#/' }, '← all services')),
    sections.head,
    h('div.grid', {}, sections.controls, sections.alerts),
    sections.charts,
    h('div.grid', {}, sections.score, sections.performance),
    sections.drift,
    h('div.grid', {}, sections.quality, sections.lookup),
    sections.rollouts,
  );
  sections.lookup.append(lookupForm(name, ''));
  const charts = buildCharts(sections.charts);
  cleanups.push(() => charts.destroy());
  const messages = { controls: h('p', { role: 'status' }), alerts: h('p', { role: 'status' }) };

  const draw = () => {
    const m = state.monitoring;
    const o = state.overview;
    if (o) drawHead(sections.head, o, m);
    if (m && o) drawControls(sections.controls, name, o, m, messages.controls, refresh);
    if (m) drawAlerts(sections.alerts, name, m, messages.alerts, refresh);
    if (m) drawDrift(sections.drift, m, state, draw);
    if (m) drawQuality(sections.quality, m);
    if (m) drawPerformance(sections.performance, m);
    if (state.distributions) drawScore(sections.score, state.distributions);
  };
  const refresh = async () => {
    const [overview, monitoring] = await Promise.all([getJson('/v1/dashboard/overview'), api(`/v1/services/${encodeURIComponent(name)}/monitoring`)]);
    state.overview = overview.services.find((s) => s.name === name) ?? null;
    if (!state.overview) {
      main.replaceChildren(h('h1', {}, name), h('p', {}, `No service named ${name} is loaded. `, h('a', { href: '#/' }, 'All services')));
      throw new Error(`no service ${name}`);
    }
    state.monitoring = monitoring.ok ? monitoring.body : null;
    if (!monitoring.ok) {
      for (const s of [sections.alerts, sections.drift, sections.quality, sections.performance, sections.score]) replace(s, s.firstChild, h('p.muted', {}, monitoring.body?.error ?? 'No monitoring.'));
    }
    draw();
  };
  poll(refresh, POLL_MS);
  poll(async () => {
    const d = await api(`/v1/dashboard/services/${encodeURIComponent(name)}/distributions`);
    if (d.ok) {
      state.distributions = d.body;
      drawScore(sections.score, d.body);
      if (state.monitoring) drawDrift(sections.drift, state.monitoring, state, draw);
    }
  }, POLL_MS * 2.5);
  poll(async () => {
    state.history = await getJson(`/v1/services/${encodeURIComponent(name)}/history?minutes=360`);
    charts.update(state.history);
  }, SLOW_POLL_MS);
  // A minute ends while the page is open: fetch the new row soon after, not up to 30 s later.
}

function drawHead(container, o, m) {
  replace(
    container,
    h('h1', {}, o.name, ' ', badge(o.mode), ' ', h('span.muted.small', {}, `version ${o.version}`)),
    o.description ? h('p.muted', {}, o.description) : null,
    h(
      'div.panel',
      {},
      h(
        'div.figures',
        {},
        figure('decisions / s', fmt.n(o.live.decisions_per_s, 1), 'rate'),
        figure('latency p50', fmt.ms(o.live.latency_ms.p50), 'p50'),
        figure('latency p99', fmt.ms(o.live.latency_ms.p99), 'p99'),
        figure('fallback rate', fmt.pct(o.fallback_rate), 'fallback'),
        figure('decisions in window', fmt.n(o.observations), 'observations'),
        figure('active alerts', fmt.n(o.alerts.length), 'alerts'),
        figure('last outcome', fmt.ago(o.live.last_outcome_at), 'outcome'),
      ),
      m ? h('p.small.muted', {}, `Monitored against the reference profile from ${m.reference?.data?.file ?? 'the bundle'} (${fmt.n(m.reference?.data?.rows)} rows, ${fmt.time(m.reference?.created)}); evaluated ${fmt.time(m.evaluated_at)}.`) : null,
    ),
  );
}

function drawControls(container, name, o, m, message, refresh) {
  const safe = m.safe_mode;
  const ks = o.kill_switch;
  const path = (what) => `/v1/services/${encodeURIComponent(name)}/${what}`;
  const act = async (what, method, body, done) => {
    const answer = await adminAction(path(what), method, body);
    message.className = answer.ok ? 'success' : 'refusal';
    message.textContent = answer.ok ? done : refusalText(answer);
    await refresh().catch(() => {});
  };
  const confirmKill = h('span');
  replace(
    container,
    container.firstChild,
    h('h3', {}, 'Safe mode ', badge(safe.active ? 'safe_mode' : 'ok', safe.active ? 'on' : 'off')),
    h('p.small', {}, `Mode ${safe.mode}${safe.mode === 'auto' ? ` (engages on critical alerts: ${safe.on_critical}; releases after ${safe.release_after_s} s calm)` : ' (operator override)'}.`, safe.active ? ` On since ${fmt.time(safe.since)}: ${safe.reason ?? ''}` : ''),
    h(
      'div.buttons',
      { role: 'group', 'aria-label': 'Safe mode' },
      ['auto', 'on', 'off'].map((mode) =>
        h('button', { type: 'button', class: mode === safe.mode ? '' : 'secondary', 'aria-pressed': String(mode === safe.mode), dataset: { key: `safe-${mode}` }, onclick: () => act('safe-mode', 'PUT', { mode, by: session.operator, reason: 'set from the dashboard' }, `Safe mode set to ${mode}.`) }, `Safe mode: ${mode}`),
      ),
    ),
    h('h3', {}, 'Kill switch ', badge(ks.enabled ? 'kill_switch' : 'ok', ks.enabled ? 'on' : 'off')),
    h('p.small', {}, ks.enabled ? `On since ${fmt.time(ks.since)} (by ${ks.by ?? '?'}): every decision uses the fallback policy.` : 'Off: the model decides (unless safe mode is on).'),
    h(
      'div.buttons',
      {},
      ks.enabled
        ? h('button', { type: 'button', dataset: { key: 'kill-off' }, onclick: () => act('kill-switch', 'PUT', { enabled: false, by: session.operator }, 'Kill switch off.') }, 'Turn kill switch off')
        : h(
            'button.danger',
            {
              type: 'button',
              dataset: { key: 'kill-on' },
              onclick: () =>
                replace(
                  confirmKill,
                  h('button.danger', { type: 'button', dataset: { key: 'kill-confirm' }, onclick: () => act('kill-switch', 'PUT', { enabled: true, by: session.operator, reason: 'kill switch from the dashboard' }, 'Kill switch on.') }, 'Confirm: all decisions to the fallback policy'),
                ),
            },
            'Turn kill switch on…',
          ),
      confirmKill,
    ),
    message,
  );
}

/** What operators typed into note fields, kept across redraws. */
const notes = new Map();

function drawAlerts(container, name, m, message, refresh) {
  const ack = async (alert, note) => {
    const answer = await adminAction(`/v1/services/${encodeURIComponent(name)}/alerts/${encodeURIComponent(alert.id)}/acknowledge`, 'POST', { by: session.operator, note });
    message.className = answer.ok ? 'success' : 'refusal';
    message.textContent = answer.ok ? `Acknowledged ${alert.key}.` : refusalText(answer);
    await refresh().catch(() => {});
  };
  const active = m.alerts.active;
  const history = m.alerts.history.filter((a) => a.resolvedAt).slice(-50).reverse();
  replace(
    container,
    container.firstChild,
    message,
    h('h3', {}, `Active (${active.length})`),
    active.length === 0
      ? h('p.small.muted', {}, 'No active alerts.')
      : active.map((a) => {
          const note = h('input', { type: 'text', 'aria-label': `note for ${a.key}`, placeholder: 'note (optional)', value: notes.get(a.id) ?? '', dataset: { key: `note-${a.id}` }, oninput: (e) => notes.set(a.id, e.target.value) });
          const line = alertLine(name, a);
          line.append(
            h(
              'div.actions',
              {},
              a.acknowledged
                ? h('span.small.success', {}, `Acknowledged by ${a.acknowledged.by} ${fmt.ago(a.acknowledged.at)}${a.acknowledged.note ? `: ${a.acknowledged.note}` : ''}`)
                : [note, h('button', { type: 'button', dataset: { key: `ack-${a.id}` }, onclick: () => ack(a, note.value) }, `Acknowledge ${a.key}`)],
            ),
            h('div.meta', {}, `value ${fmt.num(a.value)} against threshold ${fmt.num(a.threshold)} over window ${a.window}`),
          );
          return line;
        }),
    h('h3', {}, 'History'),
    history.length === 0
      ? h('p.small.muted', {}, 'No resolved alerts.')
      : h(
          'div.table-wrap',
          {},
          h(
            'table',
            {},
            h('thead', {}, h('tr', {}, h('th', {}, 'alert'), h('th', {}, 'severity'), h('th', {}, 'fired'), h('th', {}, 'resolved'), h('th', {}, 'acknowledged'))),
            h('tbody', {}, history.map((a) => h('tr', {}, h('td', {}, a.key), h('td', {}, badge(a.severity)), h('td', {}, fmt.time(a.firedAt)), h('td', {}, fmt.time(a.resolvedAt)), h('td', {}, a.acknowledged ? a.acknowledged.by : '–')))),
          ),
        ),
  );
}

function buildCharts(container) {
  const holders = {};
  const specs = {
    decisions: { title: 'Decisions per minute', series: [{ label: 'decisions' }, { label: 'fallbacks' }] },
    latency: { title: 'Stage latency p99 (ms)', series: STAGES.map((s) => ({ label: s })), yLabel: 'ms' },
    drift: { title: 'Drift: PSI per feature (most drifted)', series: [] },
    performance: { title: 'Performance: Brier score (lower is better)', series: [{ label: 'realized (outcomes)' }, { label: 'estimated from scores' }, { label: 'reference', dash: [6, 4] }] },
  };
  const grid = h('div.grid');
  container.append(grid);
  for (const [key, spec] of Object.entries(specs)) {
    const div = h('div.chart', { id: `chart-${key}` });
    grid.append(h('div', {}, h('h3', {}, spec.title), div));
    holders[key] = { div, spec, chart: null, labels: null };
  }
  const status = h('p.small.muted');
  container.append(status);
  const ensure = (key, labels) => {
    const holder = holders[key];
    const names = labels.join('\u0000');
    if (holder.chart && holder.labels === names) return holder.chart;
    holder.chart?.destroy();
    holder.div.replaceChildren();
    holder.chart = timeChart(holder.div, { series: labels.map((label, i) => ({ label, dash: holder.spec.series[i]?.dash })), yLabel: holder.spec.yLabel });
    holder.labels = names;
    return holder.chart;
  };
  return {
    update(history) {
      const rows = history.minutes;
      status.textContent = rows.length === 0 ? 'No minutes recorded yet: the first appears within a minute of traffic.' : `${rows.length} minute${rows.length === 1 ? '' : 's'} since ${fmt.time(new Date(rows[0].minute).toISOString())} (store: ${history.store}).`;
      const x = rows.map((r) => r.minute / 1000);
      ensure('decisions', ['decisions', 'fallbacks']).update([x, rows.map((r) => r.decisions), rows.map((r) => r.fallbacks)]);
      ensure('latency', STAGES).update([x, ...STAGES.map((s) => rows.map((r) => r.latency_ms[s]?.p99 ?? null))]);
      const last = rows[rows.length - 1];
      const features = last ? Object.entries(last.drift).sort((a, b) => (b[1].psi ?? 0) - (a[1].psi ?? 0)).slice(0, 6).map(([f]) => f) : [];
      ensure('drift', features.length ? features : ['(none)']).update([x, ...(features.length ? features : ['']).map((f) => rows.map((r) => r.drift[f]?.psi ?? null))]);
      ensure('performance', ['realized (outcomes)', 'estimated from scores', 'reference']).update([
        x,
        rows.map((r) => (r.performance.outcomes > 0 ? r.performance.brier : null)),
        rows.map((r) => r.performance.estimated_brier),
        rows.map((r) => r.performance.reference_brier),
      ]);
    },
    destroy() {
      for (const holder of Object.values(holders)) holder.chart?.destroy();
    },
  };
}

function drawScore(container, d) {
  replace(
    container,
    container.firstChild,
    d.score ? histogramBars(d.score, 'score') : h('p.muted', {}, 'No score: a rules-only service.'),
    h('p.small.muted', {}, `Window: last ${fmt.n(d.observations)} decisions (${d.window}).`),
  );
}

function testCell(t) {
  return h('div.small', {}, badge(t.verdict, t.test), ` ${fmt.num(t.value)} `, h('span.muted', {}, `(warn ${fmt.num(t.threshold.warning)}, crit ${fmt.num(t.threshold.critical)}${t.p !== undefined ? `, p ${fmt.num(t.p)}` : ''})`));
}

function drawDrift(container, m, state, redraw) {
  const window = m.windows.count ?? Object.values(m.windows)[0];
  if (!window) return;
  const rows = Object.entries(window.features).map(([feature, r]) => ({ feature, r, psi: r.tests.find((t) => t.test === 'psi')?.value ?? null }));
  const sorters = {
    severity: (a, b) => VERDICT_RANK[a.r.verdict] - VERDICT_RANK[b.r.verdict] || (b.psi ?? -1) - (a.psi ?? -1),
    feature: (a, b) => a.feature.localeCompare(b.feature),
    psi: (a, b) => (b.psi ?? -1) - (a.psi ?? -1),
  };
  rows.sort(sorters[state.sort]);
  const sortButton = (key, label) =>
    h('th', { 'aria-sort': state.sort === key ? 'descending' : 'none' }, h('button.sort', { type: 'button', dataset: { key: `sort-${key}` }, onclick: () => ((state.sort = key), redraw()) }, label, state.sort === key ? ' ▼' : ''));
  const body = [];
  for (const { feature, r } of rows) {
    const open = state.expanded.has(feature);
    body.push(
      h(
        'tr',
        { dataset: { feature } },
        h('td', {}, feature),
        h('td.verdict', {}, badge(r.verdict)),
        h('td', {}, r.tests.map(testCell)),
        h('td.num', {}, `${fmt.pct(r.missing_rate)} / ${fmt.pct(r.reference_missing_rate)}`),
        h('td', {}, h('button.secondary', { type: 'button', 'aria-expanded': String(open), dataset: { key: `hist-${feature}` }, onclick: () => (open ? state.expanded.delete(feature) : state.expanded.add(feature), redraw()) }, open ? 'Hide' : 'Histogram')),
      ),
    );
    const dist = state.distributions?.features?.[feature];
    if (open) body.push(h('tr', {}, h('td', { colspan: 5 }, dist ? histogramBars(dist, feature) : h('span.muted', {}, 'loading…'))));
  }
  replace(
    container,
    container.firstChild,
    h('p.small.muted', {}, `Each feature over the last ${fmt.n(window.observations)} decisions against the reference profile: every test's value and its thresholds. Most severe first unless sorted otherwise.`),
    h('div.table-wrap', {}, h('table', {}, h('thead', {}, h('tr', {}, sortButton('feature', 'feature'), sortButton('severity', 'verdict'), sortButton('psi', 'tests (value, thresholds)'), h('th.num', {}, 'missing live / ref'), h('th', {}, 'live vs reference'))), h('tbody', {}, body))),
  );
}

function drawQuality(container, m) {
  const window = m.windows.count ?? Object.values(m.windows)[0];
  if (!window) return;
  const dq = window.data_quality;
  const byField = Object.entries(dq.rejections_by_field).sort((a, b) => b[1] - a[1]);
  const counters = Object.entries(dq.counters).sort((a, b) => b[1] - a[1]);
  const missing = Object.entries(window.features).filter(([, r]) => r.missing_rate > 0 || r.reference_missing_rate > 0).sort((a, b) => b[1].missing_rate - a[1].missing_rate);
  const table = (head, rows) => h('div.table-wrap', {}, h('table', {}, h('thead', {}, h('tr', {}, head.map((x, i) => h(i ? 'th.num' : 'th', {}, x)))), h('tbody', {}, rows.map((r) => h('tr', {}, r.map((x, i) => h(i ? 'td.num' : 'td', {}, x)))))));
  replace(
    container,
    container.firstChild,
    h('div.figures', {}, figure('rejected requests', fmt.n(dq.rejected_requests)), figure('rejection rate', fmt.pct(dq.rejection_rate)), figure('model fallback rate', fmt.pct(window.model_health.fallback_rate))),
    h('h3', {}, 'Rejections by field'),
    byField.length ? table(['field', 'rejections'], byField.map(([f, n]) => [f, fmt.n(n)])) : h('p.small.muted', {}, 'None in the window.'),
    h('h3', {}, 'Missing values (live / reference)'),
    missing.length ? table(['feature', 'live', 'reference'], missing.map(([f, r]) => [f, fmt.pct(r.missing_rate), fmt.pct(r.reference_missing_rate)])) : h('p.small.muted', {}, 'No feature is missing values.'),
    h('h3', {}, 'Feature sources and other counters'),
    counters.length ? table(['counter', 'count'], counters.map(([k, n]) => [k, fmt.n(n)])) : h('p.small.muted', {}, 'No counters (no sourced features, defaults or guard failures in the window).'),
    Object.keys(window.model_health.fallbacks_by_cause).length ? [h('h3', {}, 'Fallbacks by cause'), table(['cause', 'decisions'], Object.entries(window.model_health.fallbacks_by_cause).map(([c, n]) => [c, fmt.n(n)]))] : null,
  );
}

let calibration = null;
function drawPerformance(container, m) {
  const p = m.performance;
  if (!p?.available) return replace(container, container.firstChild, h('p.muted', {}, p?.reason ?? 'No performance.'));
  const windows = Object.entries(p.realized);
  const est = p.estimated;
  const curve = p.realized.all?.calibration;
  const plot = h('div.chart', { id: 'calibration' });
  const active = document.activeElement;
  replace(
    container,
    container.firstChild,
    h(
      'div.table-wrap',
      {},
      h(
        'table',
        {},
        h('thead', {}, h('tr', {}, ['window', 'decisions', 'labelled', 'AUC', 'Brier', 'log loss'].map((x, i) => h(i ? 'th.num' : 'th', {}, x)))),
        h(
          'tbody',
          {},
          windows.map(([w, r]) => h('tr', {}, h('td', {}, `realized ${w}`), h('td.num', {}, fmt.n(r.decisions)), h('td.num', {}, fmt.n(r.labelled)), h('td.num', {}, fmt.num(r.auc)), h('td.num', {}, fmt.num(r.brier)), h('td.num', {}, fmt.num(r.logLoss)))),
          est ? h('tr', {}, h('td', {}, `estimated (${est.window})`), h('td.num', {}, fmt.n(est.n)), h('td.num', {}, '–'), h('td.num', {}, fmt.num(est.auc)), h('td.num', {}, fmt.num(est.brier)), h('td.num', {}, fmt.num(est.logLoss))) : null,
          m.reference?.data && m.decay?.reference_brier !== null ? h('tr', {}, h('td', {}, 'reference'), h('td.num', {}, '–'), h('td.num', {}, '–'), h('td.num', {}, '–'), h('td.num', {}, fmt.num(m.decay.reference_brier)), h('td.num', {}, '–')) : null,
        ),
      ),
    ),
    est ? h('p.small.muted', {}, est.validity) : h('p.small.muted', {}, 'No scores yet to estimate from.'),
    h('p.small', {}, `Decay detector (ADWIN): ${fmt.n(m.decay.outcomes)} outcomes, Brier ${fmt.num(m.decay.mean_brier)} vs reference ${fmt.num(m.decay.reference_brier)}`, m.decay.decayed ? h('strong.refusal', {}, ' — decayed') : ''),
    h('h3', {}, 'Calibration (all outcomes)'),
    curve && curve.probPred.length ? plot : h('p.small.muted', {}, 'No outcomes yet: the calibration plot appears once outcomes arrive.'),
  );
  calibration?.destroy();
  calibration = curve && curve.probPred.length ? calibrationChart(plot, curve) : null;
  if (active && !document.contains(active)) container.focus?.();
}

// ---------- decision look-up ----------

function lookupForm(service, id, services) {
  const serviceInput = services
    ? h('select', { id: 'lookup-service', name: 'service' }, services.map((s) => h('option', { value: s, selected: s === service }, s)))
    : h('input', { id: 'lookup-service', name: 'service', type: 'hidden', value: service });
  const idInput = h('input', { id: 'lookup-id', name: 'id', type: 'text', required: true, value: id, spellcheck: 'false', autocomplete: 'off' });
  return h(
    'form.inline',
    {
      role: 'search',
      onsubmit: (e) => {
        e.preventDefault();
        location.hash = `#/decision/${encodeURIComponent(serviceInput.value)}/${encodeURIComponent(idInput.value.trim())}`;
      },
    },
    services ? h('div', {}, h('label', { for: 'lookup-service' }, 'Service'), serviceInput) : serviceInput,
    h('div', {}, h('label', { for: 'lookup-id' }, 'Decision id'), idInput),
    h('button', { type: 'submit' }, 'Find decision'),
  );
}

async function renderDecision(main, service, id) {
  document.title = id ? `${id} · decision · rtml` : 'Decision look-up · rtml';
  const { services } = await getJson('/v1/services');
  live(true);
  const names = services.map((s) => s.name);
  const result = h('div', { id: 'decision-result', 'aria-live': 'polite' });
  main.replaceChildren(h('h1', {}, 'Decision look-up'), h('section.panel', {}, h('p.small.muted', {}, 'A logged decision by its id: the request, every feature with its source and served value, the exact model inputs, score, reasons, fallback, versions, timings and outcome. Needs the admin token.'), lookupForm(service || names[0], id ?? '', names)), result);
  if (!service || !id) return;
  const find = async () => {
    const answer = await api(`/v1/dashboard/services/${encodeURIComponent(service)}/decisions/${encodeURIComponent(id)}`, { admin: true });
    if (answer.status === 401 || answer.status === 403) {
      result.replaceChildren(h('p.refusal', {}, refusalText(answer)), h('button', { type: 'button', onclick: async () => (await askForToken(), find()) }, 'Enter the admin token'));
      return;
    }
    if (!answer.ok) return result.replaceChildren(h('p.refusal', {}, answer.body?.error ?? `HTTP ${answer.status}`));
    result.replaceChildren(...decisionView(answer.body));
  };
  await find();
}

function decisionView({ decision: d, outcome, input_columns: columns }) {
  const kv = (pairs) => h('dl.kv', {}, pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  const request = d.request && typeof d.request === 'object' ? d.request : {};
  const served = d.features ?? {};
  const featureNames = [...new Set([...Object.keys(request).filter((k) => k !== 'id'), ...Object.keys(served)])];
  const reasons = d.reasons ?? [];
  return [
    h(
      'section.panel',
      { id: 'decision-summary' },
      h('h2', {}, 'Decision ', h('code', {}, d.id), ' ', badge(d.fallback.used ? 'safe_mode' : 'ok', d.decision)),
      kv([
        ['service', d.service],
        ['time', fmt.time(d.time)],
        ['decision', d.decision],
        ['score', d.score === null ? '–' : String(d.score)],
        ['model', d.model ? `${d.model.name} ${d.model.version}` : 'none (rules only)'],
        ['policy version', d.policyVersion ?? '–'],
        ['fallback', d.fallback.used ? `used: ${d.fallback.cause}` : 'not used'],
        ['safe mode', d.safeMode ? 'on' : 'off'],
        ['outcome', outcome ? `${outcome.label} (observed ${fmt.time(outcome.time)})` : 'none yet'],
      ]),
    ),
    h(
      'div.grid',
      {},
      h('section.panel', {}, h('h2', {}, 'Reasons'), reasons.length ? h('ul', {}, reasons.map((r) => h('li', {}, h('strong', {}, r.code ?? r.feature ?? ''), ' ', r.message ?? r.text ?? JSON.stringify(r)))) : h('p.muted', {}, 'No reasons recorded.')),
      h(
        'section.panel',
        {},
        h('h2', {}, 'Timings'),
        h('table', {}, h('tbody', {}, Object.entries(d.timingsMs).map(([s, v]) => h('tr', {}, h('td', {}, s), h('td.num', {}, fmt.ms(v)))))),
        // The record is written before its own write is timed: the log holds 0 for those two.
        d.timingsMs.total === 0 ? h('p.small.muted', {}, 'log and total are measured after the record is written, so the log holds them as 0; /metrics has their distributions.') : null,
      ),
    ),
    h(
      'section.panel',
      {},
      h('h2', {}, 'Features'),
      h(
        'div.table-wrap',
        {},
        h(
          'table',
          {},
          h('thead', {}, h('tr', {}, h('th', {}, 'feature'), h('th', {}, 'in the request'), h('th', {}, 'source status'), h('th', {}, 'served value'))),
          h('tbody', {}, featureNames.map((f) => h('tr', {}, h('td', {}, f), h('td', {}, f in request ? JSON.stringify(request[f]) : '–'), h('td', {}, served[f]?.status ?? 'request'), h('td', {}, served[f] ? JSON.stringify(served[f].value) : f in request ? JSON.stringify(request[f]) : '–')))),
        ),
      ),
    ),
    h(
      'section.panel',
      {},
      h('h2', {}, 'Exact model inputs'),
      d.inputs
        ? h('div.table-wrap', {}, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'column'), h('th.num', {}, 'value'))), h('tbody', {}, d.inputs.map((v, i) => h('tr', {}, h('td', {}, columns?.[i] ?? `#${i}`), h('td.num', {}, v === null ? 'missing (NaN)' : String(v)))))))
        : h('p.muted', {}, 'The model did not run for this decision.'),
      d.outputs ? [h('h3', {}, 'Model outputs'), h('pre', {}, JSON.stringify(d.outputs, null, 2))] : null,
      h('details', {}, h('summary', {}, 'Request as received (JSON)'), h('pre', {}, JSON.stringify(d.request, null, 2))),
    ),
  ];
}

// ---------- routing ----------

async function route() {
  generation++;
  while (cleanups.length) cleanups.pop()();
  calibration?.destroy();
  calibration = null;
  const main = document.getElementById('main');
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  try {
    if (parts[0] === 'service' && parts[1]) await renderService(main, parts[1]);
    else if (parts[0] === 'decision') await renderDecision(main, parts[1], parts[2]);
    else await renderOverview(main);
  } catch (err) {
    live(false, err);
    toast(err.message);
  }
  for (const a of document.querySelectorAll('.top nav a')) a.toggleAttribute('aria-current', a.getAttribute('href') === `#/${parts[0] ?? ''}` || (a.getAttribute('href') === '#/' && !parts[0]));
}

document.getElementById('token-button').addEventListener('click', () => void askForToken());
showTokenState();
window.addEventListener('hashchange', () => {
  void route();
  document.getElementById('main').focus({ preventScroll: true });
});
void route();
