/**
 * The added latency of gathering features: the card-fraud service (five aggregates, two
 * entity fields, one derived feature) served by a real `rtml serve`, with the embedded store
 * and with Redis. Each decision reports its per-stage timings; the `features` stage is
 * exactly the cost of the sources, and `total` is the whole pipeline including the log.
 * Sequential requests (one in flight), so the figures are latency, not contention.
 *
 *   node --import tsx bench/features-decision.ts
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export interface FeatureDecisionResult {
  store: string;
  decisions: number;
  features: { p50: number; p99: number };
  total: { p50: number; p99: number };
  requestOnlyTotal: { p50: number; p99: number };
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

async function serve(args: string[]): Promise<{ url: string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [join(ROOT, 'bin/rtml.mjs'), 'serve', ...args, '--port', '0', '--watch-interval-ms', '0', '--log-sync', 'normal'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const url = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error('server did not start')), 30_000);
    for (const s of [child.stdout!, child.stderr!])
      createInterface({ input: s }).on('line', (line) => {
        const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
        if (m) {
          clearTimeout(timer);
          ok(m[1]);
        }
      });
  });
  return { url, stop: () => new Promise<void>((r) => (child.kill('SIGTERM'), child.once('exit', () => r()))) };
}

async function measure(storeArgs: string[], store: string, n: number): Promise<FeatureDecisionResult> {
  const repo = mkdtempSync(join(tmpdir(), 'rtml-bench-feat-'));
  for (const service of ['card-fraud', 'credit']) {
    mkdirSync(join(repo, service));
    for (const f of ['rtml.yaml', 'model.json', 'golden.jsonl', 'policy.yaml', 'reference.json']) cpSync(join(ROOT, 'examples', service, f), join(repo, service, f));
  }
  const server = await serve([repo, '--data-dir', mkdtempSync(join(tmpdir(), 'rtml-bench-data-')), ...storeArgs]);
  try {
    const post = async (path: string, body: unknown) => (await fetch(server.url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json();
    // 200 cards with ~30 events each over the last day, and their customers.
    const now = Date.now();
    for (let c = 0; c < 200; c++) {
      const events = Array.from({ length: 30 }, (_, i) => ({ txn_id: `b${c}-${i}`, card_id: `c${c}`, event_time: new Date(now - 86_000_000 + i * 2_800_000 + c).toISOString(), amount: 10 + ((c * 7 + i * 13) % 300), merchant_id: `m${(c + i) % 50}`, merchant_category: 'grocery' }));
      await post('/v1/events/transactions', events);
      await fetch(`${server.url}/v1/entities/customer/u${c}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ account_age_days: 100 + c, home_region: 'north' }) });
    }
    const features: number[] = [];
    const total: number[] = [];
    for (let i = 0; i < n; i++) {
      const r = (await post('/v1/services/card-fraud/decisions', { card_id: `c${i % 200}`, customer_id: `u${i % 200}`, amount: 42.5, merchant_category: 'grocery' })) as { timings_ms: { features: number; total: number } };
      if (i >= n / 10) {
        features.push(r.timings_ms.features);
        total.push(r.timings_ms.total);
      }
    }
    // The request-only baseline: the credit service, all features in the request.
    const golden = (await import('node:fs')).readFileSync(join(ROOT, 'examples/credit/golden.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).row);
    const baseline: number[] = [];
    for (let i = 0; i < n; i++) {
      const r = (await post('/v1/services/credit/decisions', golden[i % golden.length])) as { timings_ms: { total: number } };
      if (i >= n / 10) baseline.push(r.timings_ms.total);
    }
    return {
      store,
      decisions: features.length,
      features: { p50: quantile(features, 0.5), p99: quantile(features, 0.99) },
      total: { p50: quantile(total, 0.5), p99: quantile(total, 0.99) },
      requestOnlyTotal: { p50: quantile(baseline, 0.5), p99: quantile(baseline, 0.99) },
    };
  } finally {
    await server.stop();
  }
}

export async function benchFeatureDecisions(n = 3000): Promise<FeatureDecisionResult[]> {
  const results = [await measure([], 'embedded', n)];
  const redis = spawnSync('sh', ['-c', 'command -v redis-server || ls /usr/bin/redis-server'], { encoding: 'utf8' }).stdout.trim();
  if (redis) {
    const { startRedis } = await import('../test/helpers/redis-server.ts');
    const r = await startRedis();
    try {
      results.push(await measure(['--feature-store', 'redis', '--redis-url', r.url], 'redis', n));
    } finally {
      await r.stop();
    }
  }
  return results;
}

export function formatFeatureDecisions(results: FeatureDecisionResult[]): string {
  const ms = (v: number) => `${v.toFixed(3)} ms`;
  return results
    .map(
      (r) =>
        `card-fraud on ${r.store.padEnd(8)} features stage p50 ${ms(r.features.p50)} p99 ${ms(r.features.p99)} | pipeline p50 ${ms(r.total.p50)} p99 ${ms(r.total.p99)}` +
        ` vs request-only (credit) p50 ${ms(r.requestOnlyTotal.p50)} p99 ${ms(r.requestOnlyTotal.p99)} (${r.decisions} sequential decisions)`,
    )
    .join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(formatFeatureDecisions(await benchFeatureDecisions()));
}
