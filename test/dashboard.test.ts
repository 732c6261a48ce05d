/**
 * The operators' dashboard in a real browser: Debian's Chromium driven by playwright-core
 * against a real `rtml serve` with real lending_club traffic from the simulator. The page
 * loads with no console errors; after a perturbed simulation the drift alert appears on the
 * open page, naming the feature, without a reload; acknowledging it is refused without the
 * admin token and works with it (from the keyboard); a decision is found by id with its
 * outcome; the history survives a restart; nothing overflows a phone's width.
 *
 * Every wait is for a condition on the page, not a fixed sleep: the machine may be loaded.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { loadBundle, type Bundle } from '../src/bundle/load.ts';
import { minuteAggregate } from '../src/dashboard/history.ts';
import { parsePerturbation, type SimulateOptions } from '../src/monitor/simulate.ts';
import { launchBrowser, openPage, VIEWPORTS, type WatchedPage } from './helpers/browser.ts';
import { simulateLendingClub, startServer, type RunningServer } from './helpers/server.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const ADMIN_TOKEN = 'dashboard-admin-token-0123456789';
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
/** A condition on a loaded machine may take a few polls (every 2 s): generous, never slept through. */
const WAIT = { timeout: 20_000 };
/** No decision refused for a slow disk (the log's 1 s append timeout has tests of its own): this is about the page. */
const SERVER = { env: { RTML_ADMIN_TOKEN: ADMIN_TOKEN }, args: ['--log-timeout-ms', '0'] };

let bundle: Bundle;
let browser: Browser;
let server: RunningServer;

const run = (options: Partial<SimulateOptions>) => simulateLendingClub(server.url, bundle, { idPrefix: 'dash', ...options });

async function activeAlerts(): Promise<{ id: string; key: string; acknowledged: { by: string; note: string } | null }[]> {
  const state = await (await fetch(`${server.url}/v1/services/credit/monitoring`)).json();
  return state.alerts.active;
}

before(async () => {
  bundle = await loadBundle(join(ROOT, 'examples/credit'));
  [browser, server] = await Promise.all([launchBrowser(), startServer(SERVER)]);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

describe('the dashboard in Chromium', () => {
  let overview: WatchedPage;

  it('serves the page and its files from rtml itself, with a content security policy and no console errors', async () => {
    const res = await fetch(`${server.url}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /text\/html/);
    assert.match(res.headers.get('content-security-policy')!, /default-src 'self'/);
    assert.equal((await fetch(`${server.url}/ui/uPlot.esm.js`)).status, 200);
    assert.equal((await fetch(`${server.url}/ui/..%2Fhistory.ts`)).status, 404);

    overview = await openPage(browser);
    await overview.page.goto(server.url);
    const card = overview.page.locator('article[data-service="credit"]');
    await card.getByRole('link', { name: 'credit' }).waitFor(WAIT);
    await card.getByText('Active alerts (0)').waitFor(WAIT);
    await overview.page.getByText(/live · updated/).waitFor(WAIT);
    assert.deepEqual(overview.errors, []);
  });

  it('shows the drift alert naming the feature, live, after a perturbed simulation', async () => {
    const summary = await run({ limit: 1500, perturbAfter: 1000, perturbations: [parsePerturbation('scale:annual_inc:3')], label: 'Class', outcomeDelay: 50, idPrefix: 'drift' });
    assert.deepEqual(summary.statuses, { 200: 1500 });
    // The page that was already open, without a reload.
    const alert = overview.page.locator('article[data-service="credit"] [data-alert-key="feature_drift:annual_inc"]');
    await alert.waitFor(WAIT);
    assert.match(await alert.innerText(), /annual_inc drifted/);
    await overview.page.locator('article[data-service="credit"] .badge.safe_mode').waitFor(WAIT);
    // The rate needs two of the collector's samples (every 5 s): on a quick machine the alert comes first.
    const rate = overview.page.locator('article[data-service="credit"] [data-figure="rate"] .value');
    await overview.page.waitForFunction((el) => Number(el?.textContent) > 0, await rate.elementHandle(), WAIT).catch(() => {});
    assert.ok(Number(await rate.innerText()) > 0, `decisions per second shown as ${await rate.innerText()}`);
    assert.deepEqual(overview.errors, []);
  });

  it('answers its read endpoints in bounded size and in shape, and 4xx naming the rule to bad queries', async () => {
    const get = async (path: string, headers: Record<string, string> = {}) => {
      const res = await fetch(server.url + path, { headers });
      const text = await res.text();
      return { status: res.status, bytes: Buffer.byteLength(text), body: JSON.parse(text) };
    };
    const overviewAnswer = await get('/v1/dashboard/overview');
    assert.ok(overviewAnswer.bytes < 16_384, `overview ${overviewAnswer.bytes} bytes`);
    const [credit] = overviewAnswer.body.services;
    assert.equal(credit.mode, 'safe_mode');
    assert.deepEqual(Object.keys(credit.live).sort(), ['decisions_per_s', 'last_outcome_at', 'latency_ms', 'mix']);
    assert.ok(credit.live.last_outcome_at !== null, 'outcomes were posted');

    const longest = await get('/v1/services/credit/history?minutes=20160');
    assert.equal(longest.status, 200);
    for (const row of longest.body.minutes) minuteAggregate.parse(row);
    assert.ok(longest.bytes < 20_160 * 4096, `history ${longest.bytes} bytes`);
    for (const [query, rule] of [['minutes=20161', /minutes must be a whole number from 1 to 20160/], ['minutes=1.5', /whole number/], ['since=0', /nothing else is accepted/]] as const) {
      const bad = await get(`/v1/services/credit/history?${query}`);
      assert.equal(bad.status, 400, query);
      assert.match(bad.body.error, rule);
    }
    assert.equal((await get('/v1/services/nobody/history')).status, 404);

    const dist = await get('/v1/dashboard/services/credit/distributions');
    assert.ok(dist.bytes < 65_536, `distributions ${dist.bytes} bytes`);
    assert.deepEqual(Object.keys(dist.body.features), bundle.encoding.features.map((f) => f.name));
    for (const [feature, d] of Object.entries(dist.body.features) as [string, { reference: number[]; live: number[]; n: number }][]) {
      assert.equal(d.live.length, d.reference.length, feature);
      assert.ok(Math.abs(d.reference.reduce((a, b) => a + b, 0) - 1) < 1e-6, feature);
    }
    assert.equal(dist.body.features.annual_inc.n, dist.body.observations);
    const badWindow = await get('/v1/dashboard/services/credit/distributions?window=2w');
    assert.equal(badWindow.status, 400);
    assert.match(badWindow.body.error, /window must be one of count, 5m, 1h, 1d/);

    assert.equal((await get('/v1/dashboard/services/credit/decisions/drift-1')).status, 401);
    const found = await get('/v1/dashboard/services/credit/decisions/drift-1', admin);
    assert.equal(found.body.decision.id, 'drift-1');
    assert.equal(found.body.input_columns.length, found.body.decision.inputs.length);
  });

  it('refuses to acknowledge without the admin token, and acknowledges with it, from the keyboard', async () => {
    const { page, errors, context } = await openPage(browser);
    try {
      await page.goto(`${server.url}/#/service/credit`);
      const acknowledge = page.getByRole('button', { name: 'Acknowledge feature_drift:annual_inc' });
      await acknowledge.waitFor(WAIT);
      // The drift table names the feature with its verdict, most severe first.
      await page.locator('#drift tbody tr[data-feature="annual_inc"] td.verdict .badge.critical').waitFor(WAIT);
      assert.equal(await page.locator('#drift tbody tr[data-feature]').first().getAttribute('data-feature'), 'annual_inc');

      // No token: the page asks for it; the operator cancels; the server's refusal is shown.
      await acknowledge.focus();
      await page.keyboard.press('Enter');
      const dialog = page.getByRole('dialog', { name: 'Admin token' });
      await dialog.waitFor(WAIT);
      await dialog.getByRole('button', { name: 'Cancel' }).click();
      await page.locator('#alerts .refusal').getByText(/Refused \(401\)/).waitFor(WAIT);
      assert.equal((await activeAlerts()).find((a) => a.key === 'feature_drift:annual_inc')!.acknowledged, null);

      // A wrong token is refused too.
      await page.getByRole('button', { name: /Admin token/ }).click();
      await dialog.getByLabel('Token').fill('not-the-token-at-all-0000');
      await dialog.getByRole('button', { name: 'Save' }).click();
      await page.getByRole('button', { name: 'Acknowledge feature_drift:annual_inc' }).click();
      await page.locator('#alerts .refusal').getByText(/Refused \(401\)/).waitFor(WAIT);

      // With the token: acknowledged, by the name the operator gave, with the note.
      await page.getByRole('button', { name: /Admin token/ }).click();
      await dialog.getByLabel('Token').fill(ADMIN_TOKEN);
      await dialog.getByLabel(/Your name/).fill('ana');
      await dialog.getByRole('button', { name: 'Save' }).click();
      await page.getByLabel('note for feature_drift:annual_inc').fill('upstream income in thousands since the release');
      const again = page.getByRole('button', { name: 'Acknowledge feature_drift:annual_inc' });
      await again.focus();
      await page.keyboard.press('Enter');
      await page.locator('#alerts .success').getByText('Acknowledged feature_drift:annual_inc').waitFor(WAIT);
      const acked = (await activeAlerts()).find((a) => a.key === 'feature_drift:annual_inc')!;
      assert.deepEqual({ by: acked.acknowledged?.by, note: acked.acknowledged?.note }, { by: 'ana', note: 'upstream income in thousands since the release' });
      await page.locator('#alerts').getByText(/Acknowledged by ana/).waitFor(WAIT);
      assert.deepEqual(errors.filter((e) => !/401/.test(e)), [], 'only the refused requests are errors');
    } finally {
      await context.close();
    }
  });

  it('finds a decision by id, with its features, model inputs, score and outcome; refuses without the token', async () => {
    const logged = await (await fetch(`${server.url}/v1/services/credit/decisions/drift-10`, { headers: admin })).json();
    const { page, errors, context } = await openPage(browser);
    try {
      await page.goto(`${server.url}/#/decision`);
      await page.getByLabel('Decision id').fill('drift-10');
      await page.getByRole('button', { name: 'Find decision' }).click();
      await page.locator('#decision-result .refusal').getByText(/Refused \(401\)/).waitFor(WAIT);

      await page.evaluate((token) => sessionStorage.setItem('rtml.adminToken', token), ADMIN_TOKEN);
      await page.reload();
      const summary = page.locator('#decision-summary');
      await summary.waitFor(WAIT);
      const text = await summary.innerText();
      assert.match(text, /drift-10/);
      assert.match(text, new RegExp(String(logged.score).slice(0, 8)));
      assert.match(text, new RegExp(`decision\\s+${logged.decision}`));
      assert.match(text, /outcome\s+(good|bad) \(observed/, 'outcomes were posted 50 decisions later');
      const inputs = page.getByRole('heading', { name: 'Exact model inputs' }).locator('..');
      assert.match(await inputs.innerText(), /annual_inc/);
      assert.match(await page.locator('#decision-result').innerText(), /validation/);

      await page.goto(`${server.url}/#/decision/credit/no-such-decision`);
      await page.locator('#decision-result').getByText(/no decision "no-such-decision"/).waitFor(WAIT);
      assert.deepEqual(errors.filter((e) => !/40[14]/.test(e)), []);
    } finally {
      await context.close();
    }
  });

  it('fits a phone’s width and follows a dark colour scheme', async () => {
    const { page, errors, context } = await openPage(browser, { viewport: VIEWPORTS.phone, colorScheme: 'dark' });
    try {
      for (const hash of ['#/', '#/service/credit', '#/decision']) {
        await page.goto(`${server.url}/${hash}`);
        await page.getByText(/live · updated/).waitFor(WAIT);
        if (hash === '#/service/credit') await page.locator('#drift tbody tr[data-feature]').first().waitFor(WAIT);
        const width = await page.evaluate(() => document.scrollingElement!.scrollWidth);
        assert.ok(width <= VIEWPORTS.phone.width, `${hash}: ${width}px wide at ${VIEWPORTS.phone.width}`);
      }
      const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      assert.equal(background, 'rgb(15, 18, 22)');
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('keeps the per-minute history across a restart, and the service page charts it', async () => {
    const before = await (await fetch(`${server.url}/v1/services/credit/history?minutes=60`)).json();
    await server.stop();
    server = await startServer({ ...SERVER, repository: server.repository, dataDir: server.dataDir });
    const history = await (await fetch(`${server.url}/v1/services/credit/history?minutes=60`)).json();
    assert.equal(history.store, 'sqlite');
    const decisions = history.minutes.reduce((s: number, m: { decisions: number }) => s + m.decisions, 0);
    assert.equal(decisions, 1500, `minutes before the restart: ${JSON.stringify(before.minutes.map((m: { decisions: number }) => m.decisions))}`);
    // The last minute with traffic: a minute boundary may have passed since (its row has no latencies).
    const last = history.minutes.filter((m: { decisions: number }) => m.decisions > 0).at(-1);
    assert.ok(last.drift.annual_inc.psi > 0.2, `annual_inc PSI ${last.drift.annual_inc.psi}`);
    assert.ok(last.latency_ms.total.p99 > 0);
    assert.equal((await fetch(`${server.url}/v1/services/credit/history?minutes=0`)).status, 400);

    overview.page.removeAllListeners();
    const { page, errors, context } = await openPage(browser);
    try {
      await page.goto(`${server.url}/#/service/credit`);
      await page.locator('#history').getByText(/\d+ minutes? since .* \(store: sqlite\)/).waitFor(WAIT);
      assert.ok((await page.locator('#chart-decisions canvas').count()) > 0);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });
});
