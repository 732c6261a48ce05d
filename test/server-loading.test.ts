/**
 * Loading a big model into a running server: the event loop keeps answering health probes and
 * other services' decisions while the model is read, parsed, validated, laid out and checked
 * against its golden file.
 */
import assert from 'node:assert/strict';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { forestModel } from './helpers/forest.ts';
import { mulberry32 } from './helpers/prng.ts';
import { creditRepository, lendingClubRows, startServer } from './helpers/server.ts';
import { tempDir } from './helpers/tmp.ts';

const TOKEN = 'test-admin-token';
const FEATURES = 20;

/** A service folder `big`: a generated forest of `trees` trees of depth 2, and its golden file. */
function bigService(trees: number): string {
  const dir = join(tempDir(), 'big');
  mkdirSync(dir);
  const forest = forestModel({ trees, depth: 2, features: FEATURES });
  writeFileSync(join(dir, 'model.json'), forest.text);
  writeFileSync(join(dir, 'rtml.yaml'), 'name: big\nversion: "1"\nmodel: { format: xgboost-json, path: model.json }\noutputs: { type: binary, classes: [no, yes] }\n');
  const random = mulberry32(5);
  const lines: string[] = [];
  for (let r = 0; r < 100; r++) {
    const x = Float32Array.from({ length: FEATURES }, () => random());
    const row = Object.fromEntries([...x].map((v, f) => [`f${f}`, v]));
    lines.push(JSON.stringify({ row, expected: [forest.predict(x)] }));
  }
  writeFileSync(join(dir, 'golden.jsonl'), `${lines.join('\n')}\n`);
  return dir;
}

describe('loading a big model into a running server', () => {
  it('keeps answering health probes and other services while a 200,000-tree model loads', async (t) => {
    const big = bigService(200_000);
    const repository = creditRepository();
    const server = await startServer({ repository, env: { RTML_ADMIN_TOKEN: TOKEN } });
    try {
      const loans = await lendingClubRows(50);
      renameSync(big, join(repository, 'big'));

      let loading = true;
      const probes: number[] = [];
      const probe = async () => {
        while (loading) {
          const started = performance.now();
          const res = await fetch(`${server.url}/v2/health/live`);
          assert.equal(res.status, 200);
          probes.push(performance.now() - started);
        }
      };
      const statuses: number[] = [];
      const decisions: number[] = [];
      const decide = async () => {
        for (let i = 0; loading; i++) {
          const started = performance.now();
          const res = await server.post('/v1/services/credit/decisions', loans[i % loans.length]);
          await res.arrayBuffer();
          statuses.push(res.status);
          decisions.push(performance.now() - started);
        }
      };
      const started = performance.now();
      const traffic = Promise.all([probe(), decide()]);
      const load = await server.post('/v2/repository/models/big/load', {}, { authorization: `Bearer ${TOKEN}` });
      const loadMs = performance.now() - started;
      loading = false;
      await traffic;

      assert.equal(load.status, 200, await load.text());
      const worstProbe = Math.max(...probes);
      const worstDecision = Math.max(...decisions);
      t.diagnostic(`load ${loadMs.toFixed(0)} ms; ${probes.length} probes, slowest ${worstProbe.toFixed(0)} ms; ${decisions.length} decisions, slowest ${worstDecision.toFixed(0)} ms`);
      assert.ok(probes.length >= 10, `only ${probes.length} health probes answered during a ${loadMs.toFixed(0)} ms load`);
      // Generous: the machine is shared; a load on the event loop stalled it for seconds.
      assert.ok(worstProbe < 1000, `a health probe waited ${worstProbe.toFixed(0)} ms during the load`);
      assert.ok(worstDecision < 1000, `a credit decision waited ${worstDecision.toFixed(0)} ms during the load`);
      assert.deepEqual([...new Set(statuses)], [200]);

      const described = await (await fetch(`${server.url}/v1/services/big`)).json();
      assert.equal(described.versions[0].model.trees, 200_000);
      assert.equal(described.versions[0].parity.rows, 100);
      assert.ok(described.versions[0].parity.maxDiff < 1e-6);
    } finally {
      await server.stop();
    }
  });
});
