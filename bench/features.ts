/**
 * Feature store micro-benchmark (any FeatureStore): events ingested per second, and per CPU
 * second of this process ("per core": the embedded store does all its work on the main thread),
 * with batches of 1 (64 calls in flight, as concurrent HTTP ingests would be) and of 100 (one
 * call at a time, and 8 in flight); then
 * the latency of what one decision request asks of the store: 5 aggregates (one `aggregates`
 * call) + 2 entity reads, concurrently, over a store holding `events` events on `keys` keys.
 *
 *   node --import tsx bench/features.ts       # the embedded store, synchronous 'normal' and 'full'
 *   import { benchFeatureStore } from './features.ts'   // e.g. against a Redis store
 *
 * The store must have a stream named `stream` (default 'tx') with retention >= 30 days. The
 * embedded store's database goes under RTML_BENCH_DIR or the OS temp dir.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { EmbeddedFeatureStore } from '../src/features/embedded.ts';
import type { AggregateQuery, FeatureStore, StreamEvent } from '../src/features/types.ts';

export interface IngestFigures {
  events: number;
  eventsPerSec: number;
  /** Events per CPU second used by this process (user + system). */
  eventsPerCpuSec: number;
}

export interface FeatureBenchResult {
  batch1: IngestFigures & { inFlight: number };
  /** Batches of 100, one call at a time (each awaited: commit-latency bound). */
  batch100: IngestFigures;
  /** Batches of 100, 8 calls in flight. */
  batch100Concurrent: IngestFigures & { inFlight: number };
  /** 5 aggregates + 2 entity reads for one request, in microseconds. */
  request: { p50Us: number; p99Us: number; p999Us: number; meanUs: number; requests: number; eventsHeld: number; keys: number };
}

export interface FeatureBenchOptions {
  stream?: string;
  keys?: number;
  /** Events ingested in each of the two ingest phases. */
  events?: number;
  requests?: number;
}

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

export async function benchFeatureStore(store: FeatureStore, options: FeatureBenchOptions = {}): Promise<FeatureBenchResult> {
  const stream = options.stream ?? 'tx';
  const keys = options.keys ?? 1000;
  const total = options.events ?? 50_000;
  const requests = options.requests ?? 20_000;
  // Event times: 30 days back to now, strictly increasing: nothing is late.
  const now = Date.now();
  const start = now - 30 * DAY;
  const step = (30 * DAY) / (2 * total);
  let n = 0;
  const event = (): StreamEvent => {
    const i = n++;
    return {
      stream,
      key: `card-${(i * 7919) % keys}`,
      id: `b-${i}`,
      time: Math.floor(start + i * step),
      fields: { amount: (i % 1000) / 10, merchant: `m${i % 53}`, country: i % 9 === 0 ? 'FR' : 'US' },
    };
  };

  const measure = async (run: () => Promise<number>): Promise<IngestFigures> => {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const events = await run();
    const wall = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    return { events, eventsPerSec: events / wall, eventsPerCpuSec: events / ((cpu.user + cpu.system) / 1e6) };
  };

  const inFlight = 64;
  const batch1 = await measure(async () => {
    let left = total;
    const worker = async (): Promise<void> => {
      while (left-- > 0) await store.ingest([event()]);
    };
    await Promise.all(Array.from({ length: inFlight }, worker));
    return total;
  });
  const batch100 = await measure(async () => {
    for (let done = 0; done < total; done += 100) await store.ingest(Array.from({ length: 100 }, event));
    return total;
  });
  const batch100Concurrent = await measure(async () => {
    let left = total / 100;
    const worker = async (): Promise<void> => {
      while (left-- > 0) await store.ingest(Array.from({ length: 100 }, event));
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    return total;
  });

  for (let k = 0; k < keys; k++) {
    void store.putEntity('customer', `cust-${k}`, { income: 30_000 + k, segment: k % 3 ? 'retail' : 'gold', tenure_months: k % 120 });
    void store.putEntity('card', `card-${k}`, { limit: 1000 + k, issued: '2024-01-01' });
  }
  await store.putEntity('card', 'flush', { x: 1 });

  const at = Math.floor(start + n * step);
  const lat: number[] = [];
  for (let r = 0; r < requests; r++) {
    const key = `card-${(r * 31) % keys}`;
    const queries: AggregateQuery[] = [
      { stream, key, fn: 'count', windowMs: 10 * MIN, at },
      { stream, key, fn: 'sum', field: 'amount', windowMs: HOUR, at },
      { stream, key, fn: 'mean', field: 'amount', windowMs: DAY, at },
      { stream, key, fn: 'distinct', field: 'merchant', windowMs: 30 * DAY, at },
      { stream, key, fn: 'last', field: 'country', windowMs: 7 * DAY, at },
    ];
    const t0 = process.hrtime.bigint();
    await Promise.all([
      store.aggregates(queries),
      store.getEntity('customer', `cust-${(r * 31) % keys}`, ['income', 'segment', 'tenure_months']),
      store.getEntity('card', key, ['limit', 'issued']),
    ]);
    lat.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  const warm = lat.slice(Math.floor(requests / 10)).sort((a, b) => a - b);
  return {
    batch1: { ...batch1, inFlight },
    batch100,
    batch100Concurrent: { ...batch100Concurrent, inFlight: 8 },
    request: {
      p50Us: warm[Math.floor(warm.length / 2)],
      p99Us: warm[Math.floor(warm.length * 0.99)],
      p999Us: warm[Math.floor(warm.length * 0.999)],
      meanUs: warm.reduce((a, b) => a + b, 0) / warm.length,
      requests,
      eventsHeld: n,
      keys,
    },
  };
}

async function main(): Promise<void> {
  const base = process.env.RTML_BENCH_DIR ?? tmpdir();
  for (const synchronous of ['normal', 'full'] as const) {
    const dir = mkdtempSync(join(base, 'rtml-bench-features-'));
    const store = new EmbeddedFeatureStore({ dataDir: dir, streams: { tx: { latenessMs: 5 * MIN, retentionMs: 30 * DAY + 5 * MIN } }, synchronous });
    try {
      const r = await benchFeatureStore(store);
      const k = (x: number): string => `${(x / 1000).toFixed(1)}k`;
      console.log(`embedded, synchronous ${synchronous}:`);
      console.log(`  ingest, batches of 1 (${r.batch1.inFlight} in flight):  ${k(r.batch1.eventsPerSec)} events/s, ${k(r.batch1.eventsPerCpuSec)} events/CPU-s`);
      console.log(`  ingest, batches of 100 (1 at a time): ${k(r.batch100.eventsPerSec)} events/s, ${k(r.batch100.eventsPerCpuSec)} events/CPU-s`);
      console.log(`  ingest, batches of 100 (8 in flight): ${k(r.batch100Concurrent.eventsPerSec)} events/s, ${k(r.batch100Concurrent.eventsPerCpuSec)} events/CPU-s`);
      console.log(
        `  one request (5 aggregates + 2 entity reads; ${r.request.eventsHeld} events on ${r.request.keys} keys): p50 ${r.request.p50Us.toFixed(1)} us, p99 ${r.request.p99Us.toFixed(1)} us, p99.9 ${r.request.p999Us.toFixed(1)} us, mean ${r.request.meanUs.toFixed(1)} us`,
      );
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
