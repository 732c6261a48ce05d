/**
 * The Redis feature store over loopback: ingestion throughput and the latency of one request's
 * feature reads, with the embedded store's figures on the same data for comparison.
 *
 *   node --import tsx bench/features-redis.ts            (starts its own redis-server)
 *   RTML_REDIS_URL=redis://host:6379 node --import tsx bench/features-redis.ts
 *
 * Measured:
 *  - ingest, batches of 1: sequential awaited calls (one round trip each), and 32 calls in flight;
 *  - ingest, batches of 100: sequential, and 8 calls in flight;
 *  - one request: `aggregates()` of 5 aggregates (count/sum/mean 1 h, sum 24 h, distinct 7 d, on
 *    one card with ~120 events in 7 days) and 2 `getEntity` reads (card, customer), issued
 *    together as the resolver does; sequential requests, and 16 requests in flight.
 * Every figure is after a warmup; latencies are percentiles over all requests of the run.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { EmbeddedFeatureStore } from '../src/features/embedded.ts';
import { connectRedisFeatureStore } from '../src/features/redis.ts';
import type { AggregateQuery, FeatureStore, StreamEvent } from '../src/features/types.ts';
import { startRedis, redisServerVersion } from '../test/helpers/redis-server.ts';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const STREAMS = { tx: { latenessMs: 5 * MIN, retentionMs: 7 * DAY + 5 * MIN } };

export interface RedisBenchResult {
  redisVersion: string;
  ingest: { batch: number; inFlight: number; eventsPerSec: number; callP50Ms: number; callP99Ms: number }[];
  request: { store: 'redis' | 'embedded'; inFlight: number; failed: number; requestsPerSec: number; p50Ms: number; p90Ms: number; p99Ms: number; maxMs: number }[];
  failures: number;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

async function inParallel(inFlight: number, total: number, task: (i: number) => Promise<void>): Promise<number[]> {
  const latencies: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      for (let i = next++; i < total; i = next++) {
        const t = performance.now();
        await task(i);
        latencies.push(performance.now() - t);
      }
    }),
  );
  return latencies.sort((a, b) => a - b);
}

/** Runs the benchmark; `url` to use an existing Redis (its keys go under a fresh prefix), else a redis-server is started. */
export async function benchRedisStore(options: { url?: string; log?: (line: string) => void } = {}): Promise<RedisBenchResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const server = options.url ? null : await startRedis();
  const url = options.url ?? server!.url;
  const prefix = `bench${process.pid}-${Date.now()}:`;
  const store = await connectRedisFeatureStore({ url, streams: STREAMS, keyPrefix: prefix, commandTimeoutMs: 20, writeTimeoutMs: 250 });
  const dir = mkdtempSync(join(tmpdir(), 'rtml-bench-features-'));
  const embedded = new EmbeddedFeatureStore({ dataDir: dir, streams: STREAMS, synchronous: 'normal', cleanupIntervalMs: 0 });
  const result: RedisBenchResult = { redisVersion: server ? redisServerVersion() : 'external', ingest: [], request: [], failures: 0 };
  const T0 = Math.floor(Date.now() / MIN) * MIN;
  let seq = 0;
  // Events over 7 days on 1000 cards; each ingest run writes new ids, times moving forward.
  const event = (): StreamEvent => {
    const n = seq++;
    return { stream: 'tx', key: `card${(n * 7919) % 1000}`, id: `e${n}`, time: T0 - 7 * DAY + Math.floor(n * 5000), fields: { amount: ((n * 37) % 10_000) / 100, merchant: `m${n % 50}` } };
  };
  try {
    log(`redis feature store bench: ${url.replace(/\/\/[^@/]*@/, '//***@')} (redis ${result.redisVersion}), node ${process.version}`);
    for (const [batch, inFlight, calls] of [
      [1, 1, 5000],
      [1, 32, 20000],
      [100, 1, 300],
      [100, 8, 600],
    ] as const) {
      // Warmup, then the measured run.
      await inParallel(inFlight, Math.min(200, calls), async () => void (await store.ingest(Array.from({ length: batch }, event))));
      const t = performance.now();
      const lat = await inParallel(inFlight, calls, async () => void (await store.ingest(Array.from({ length: batch }, event))));
      const seconds = (performance.now() - t) / 1000;
      const r = { batch, inFlight, eventsPerSec: Math.round((batch * calls) / seconds), callP50Ms: percentile(lat, 0.5), callP99Ms: percentile(lat, 0.99) };
      result.ingest.push(r);
      log(`ingest batch ${String(batch).padStart(3)} × ${String(inFlight).padStart(2)} in flight: ${r.eventsPerSec.toLocaleString('en-US')} events/s (call p50 ${r.callP50Ms.toFixed(3)} ms, p99 ${r.callP99Ms.toFixed(3)} ms)`);
    }
    // The same events into the embedded store, for the request comparison (~1.6 days of them: 120+ per card in 7 days).
    const count = seq;
    seq = 0;
    for (let i = 0; i < count; i += 1000) await embedded.ingest(Array.from({ length: Math.min(1000, count - i) }, event));
    const at = T0 - 7 * DAY + count * 5000; // the newest event's time
    const perCard = Math.round(count / 1000);
    log(`request data: ${count} events on 1000 cards (~${perCard} per card over ${((count * 5000) / DAY).toFixed(1)} days; ~${Math.round((perCard * 7 * DAY) / (count * 5000))} in the 7-day window)`);
    for (let i = 0; i < 1000; i++) {
      const fields = { limit: 5000 + i, segment: i % 3 === 0 ? 'gold' : 'std', opened: '2021-05-01' };
      await Promise.all([store.putEntity('card', `card${i}`, fields, T0), embedded.putEntity('card', `card${i}`, fields, T0)]);
      await Promise.all([store.putEntity('customer', `cust${i}`, { income: 40_000 + i, age: 30 + (i % 40) }, T0), embedded.putEntity('customer', `cust${i}`, { income: 40_000 + i, age: 30 + (i % 40) }, T0)]);
    }
    // A failed request (a 20 ms timeout on a loaded machine) is counted, as the resolver would fall back to defaults.
    let failedRequests = 0;
    const request = async (s: FeatureStore, i: number): Promise<void> => {
      const key = `card${(i * 131) % 1000}`;
      const q = (fn: AggregateQuery['fn'], windowMs: number, field?: string): AggregateQuery => ({ stream: 'tx', key, fn, field, windowMs, at });
      try {
        await Promise.all([
          s.aggregates([q('count', HOUR), q('sum', HOUR, 'amount'), q('mean', HOUR, 'amount'), q('sum', DAY, 'amount'), q('distinct', 7 * DAY, 'merchant')]),
          s.getEntity('card', key, ['limit', 'segment', 'opened']),
          s.getEntity('customer', `cust${(i * 131) % 1000}`, ['income', 'age']),
        ]);
      } catch {
        failedRequests++;
      }
    };
    for (const [name, s] of [['redis', store], ['embedded', embedded]] as const) {
      for (const [inFlight, total] of [
        [1, 5000],
        [16, 20000],
      ] as const) {
        await inParallel(inFlight, 1000, (i) => request(s, i));
        const failedBefore = failedRequests;
        const t = performance.now();
        const lat = await inParallel(inFlight, total, (i) => request(s, i));
        const seconds = (performance.now() - t) / 1000;
        const r = { store: name, inFlight, failed: failedRequests - failedBefore, requestsPerSec: Math.round(total / seconds), p50Ms: percentile(lat, 0.5), p90Ms: percentile(lat, 0.9), p99Ms: percentile(lat, 0.99), maxMs: lat[lat.length - 1] };
        result.request.push(r);
        log(
          `request (5 aggregates + 2 entity reads), ${name.padEnd(8)} ${String(inFlight).padStart(2)} in flight: p50 ${r.p50Ms.toFixed(3)} ms, p90 ${r.p90Ms.toFixed(3)} ms, p99 ${r.p99Ms.toFixed(3)} ms, max ${r.maxMs.toFixed(2)} ms; ${r.requestsPerSec.toLocaleString('en-US')} requests/s; ${r.failed} failed`,
        );
      }
    }
    result.failures = store.counters.failures;
    log(`redis store failures during the run: ${result.failures}`);
    return result;
  } finally {
    await store.close();
    await embedded.close();
    rmSync(dir, { recursive: true, force: true });
    await server?.stop();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await benchRedisStore({ url: process.env.RTML_REDIS_URL });
}
