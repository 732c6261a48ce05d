/**
 * What a shadow costs the decision path:
 *
 *     node --import tsx bench/shadow.ts [--rounds N] [--requests N] [--connections C]
 *
 * One real `rtml serve` (SQLite log, synchronous FULL) with credit v1 as champion and the
 * retrained v2 (examples/candidates/credit/v2) loaded; rounds alternate between no challenger
 * and v2 as a shadow on every request (share 1: the worst case, each request decided twice and
 * logged twice), the same lending_club loans in each. Per mode: the server's own time per
 * decision (`timings_ms.total`, which ends before the shadow starts) and the client's round
 * trip (which sees the shadow's work competing for the event loop and the log's writer), p50
 * and p99 over every request of every round of that mode. The machine may be shared: compare
 * the two modes of the same run.
 */
import { cpSync, mkdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lendingClubRows, startServer } from '../test/helpers/server.ts';
import { tempDir } from '../test/helpers/tmp.ts';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const ADMIN = 'bench-admin-token-0123456789';
const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const ROUNDS = arg('rounds', 4);
const REQUESTS = arg('requests', 3000);
const CONNECTIONS = arg('connections', 4);

function repository(): string {
  const repo = tempDir('rtml-bench-shadow-');
  for (const [version, source] of [
    ['1', 'examples/credit'],
    ['2', 'examples/candidates/credit/v2'],
  ]) {
    const dir = join(repo, 'credit', version);
    mkdirSync(dir, { recursive: true });
    for (const file of ['rtml.yaml', 'model.json', 'golden.jsonl', 'policy.yaml', 'reference.json']) {
      try {
        cpSync(join(ROOT, source, file), join(dir, file));
      } catch {
        // v2 has no reference profile.
      }
    }
  }
  return repo;
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];

async function main(): Promise<void> {
  const rows = await lendingClubRows(2000);
  const server = await startServer({ repository: repository(), env: { RTML_ADMIN_TOKEN: ADMIN } });
  const admin = (method: string, path: string, body: unknown) =>
    fetch(server.url + path, { method, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(async (r) => {
      if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
    });
  const samples = { none: { server: [] as number[], client: [] as number[] }, shadow: { server: [] as number[], client: [] as number[] } };
  try {
    await admin('POST', '/v1/services/credit/rollout/promote', { version: '1', by: 'bench', reason: 'v1 champion' });
    let n = 0;
    const round = async (mode: 'none' | 'shadow', record: boolean) => {
      await admin('PUT', '/v1/services/credit/rollout', { challengers: mode === 'shadow' ? [{ version: '2', mode: 'shadow', share: 1 }] : [], by: 'bench' });
      let next = 0;
      await Promise.all(
        Array.from({ length: CONNECTIONS }, async () => {
          while (next < REQUESTS) {
            const row = rows[next++ % rows.length];
            const started = performance.now();
            const res = await server.post('/v1/services/credit/decisions', { ...row, id: `b-${n++}` });
            const body = (await res.json()) as { timings_ms: { total: number } };
            if (res.status !== 200) throw new Error(`decision answered ${res.status}`);
            if (record) {
              samples[mode].client.push(performance.now() - started);
              samples[mode].server.push(body.timings_ms.total);
            }
          }
        }),
      );
      // Let the last shadows finish before the next round measures.
      await new Promise((r) => setTimeout(r, 200));
    };
    await round('none', false);
    await round('shadow', false);
    for (let i = 0; i < ROUNDS; i++) {
      await round(i % 2 === 0 ? 'none' : 'shadow', true);
      await round(i % 2 === 0 ? 'shadow' : 'none', true);
    }
  } finally {
    await server.stop();
  }
  console.log(`shadow cost: ${ROUNDS} rounds per mode of ${REQUESTS} decisions, ${CONNECTIONS} connections, load average ${loadavg()[0].toFixed(1)}`);
  console.log('mode                      server p50   server p99   round trip p50   round trip p99');
  for (const mode of ['none', 'shadow'] as const) {
    const s = [...samples[mode].server].sort((a, b) => a - b);
    const c = [...samples[mode].client].sort((a, b) => a - b);
    const label = mode === 'none' ? 'no challenger' : 'v2 shadow on every request';
    console.log(`${label.padEnd(26)}${pct(s, 0.5).toFixed(2).padStart(8)} ms${pct(s, 0.99).toFixed(2).padStart(10)} ms${pct(c, 0.5).toFixed(2).padStart(14)} ms${pct(c, 0.99).toFixed(2).padStart(14)} ms`);
  }
}

await main();
