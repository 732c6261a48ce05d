/**
 * `npm run screenshots`: the README's pictures of the dashboard, taken by the browser tooling
 * the tests use (Chromium via playwright-core) from a real `rtml serve` fed real lending_club
 * traffic by the simulator: a minute of clean traffic, then a minute with annual_inc scaled
 * threefold (the drift alert, safe mode), outcomes posted 50 decisions later. Writes
 * docs/screenshots/*.png. Takes about three minutes (it waits for real minutes of history).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadBundle } from '../src/bundle/load.ts';
import { parsePerturbation } from '../src/monitor/simulate.ts';
import { launchBrowser, openPage, VIEWPORTS } from '../test/helpers/browser.ts';
import { simulateLendingClub, startServer } from '../test/helpers/server.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const OUT = join(ROOT, 'docs/screenshots');
const ADMIN_TOKEN = 'screenshots-admin-token-0123456789';
const RATE = 40;

mkdirSync(OUT, { recursive: true });
const bundle = await loadBundle(join(ROOT, 'examples/credit'));
const server = await startServer({ env: { RTML_ADMIN_TOKEN: ADMIN_TOKEN } });
const browser = await launchBrowser();
try {
  const traffic = (seconds: number, idPrefix: string, perturb?: string) =>
    simulateLendingClub(server.url, bundle, {
      rate: RATE,
      limit: RATE * seconds,
      perturbations: perturb ? [parsePerturbation(perturb)] : [],
      label: 'Class',
      outcomeDelay: 50,
      idPrefix,
    });
  console.log('clean traffic for 70 s…');
  await traffic(70, 'clean');
  console.log('annual_inc scaled x3 for 70 s…');
  await traffic(70, 'drift', 'scale:annual_inc:3');
  // Let the collector close the minute in progress.
  await new Promise((r) => setTimeout(r, 61_000 - (Date.now() % 60_000) + 6000));

  const shots: { name: string; hash: string; viewport: keyof typeof VIEWPORTS; scheme: 'light' | 'dark'; ready: string; clip?: number }[] = [
    { name: 'overview-desktop', hash: '#/', viewport: 'desktop', scheme: 'light', ready: '[data-alert-key]' },
    { name: 'overview-phone-dark', hash: '#/', viewport: 'phone', scheme: 'dark', ready: '[data-alert-key]' },
    { name: 'service-desktop', hash: '#/service/credit', viewport: 'desktop', scheme: 'light', ready: '#chart-decisions canvas', clip: 2300 },
    { name: 'service-desktop-dark', hash: '#/service/credit', viewport: 'desktop', scheme: 'dark', ready: '#chart-decisions canvas', clip: 2300 },
    { name: 'service-phone', hash: '#/service/credit', viewport: 'phone', scheme: 'light', ready: '#drift tbody tr[data-feature]', clip: 1800 },
    { name: 'decision-desktop', hash: '#/decision/credit/drift-100', viewport: 'desktop', scheme: 'light', ready: '#decision-summary', clip: 1800 },
    { name: 'decision-phone-dark', hash: '#/decision/credit/drift-100', viewport: 'phone', scheme: 'dark', ready: '#decision-summary', clip: 1600 },
  ];
  for (const shot of shots) {
    const { page, context, errors } = await openPage(browser, { viewport: VIEWPORTS[shot.viewport], colorScheme: shot.scheme });
    await page.addInitScript((token) => {
      sessionStorage.setItem('rtml.adminToken', token);
      sessionStorage.setItem('rtml.operator', 'ana');
    }, ADMIN_TOKEN);
    await page.goto(`${server.url}/${shot.hash}`);
    await page.locator(shot.ready).first().waitFor({ timeout: 20_000 });
    await page.getByText(/live · updated/).waitFor({ timeout: 20_000 });
    if (shot.hash.startsWith('#/service')) {
      await page.locator('#drift').getByRole('button', { name: 'Histogram' }).first().click();
      await page.locator('#drift .bars').first().waitFor({ timeout: 20_000 });
    }
    const height = await page.evaluate(() => document.scrollingElement!.scrollHeight);
    const path = join(OUT, `${shot.name}.png`);
    await page.screenshot({ path, fullPage: true, clip: { x: 0, y: 0, width: VIEWPORTS[shot.viewport].width, height: Math.min(height, shot.clip ?? height) } });
    if (errors.length) throw new Error(`${shot.name}: ${errors.join('; ')}`);
    console.log(`wrote ${path}`);
    await context.close();
  }
} finally {
  await browser.close();
  await server.stop();
}
