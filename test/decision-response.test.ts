/**
 * The decision route's 200 answer is serialized from its schema (fast-json-stringify, compiled
 * by fastify), not by JSON.stringify: for every shape decide() gives, the bytes must be the
 * same. Real decisions of every bundle in examples/ and test/fixtures/bundles (golden rows),
 * as the model decides them, under the kill switch, in safe mode (the model scoring in its
 * shadow), past the deadline, with unknown fields reported, and with the pre-rules' missing
 * values; each echoed through a fastify route carrying the schema and compared byte for byte
 * with JSON.stringify. A field the schema did not list would be dropped: the comparison fails.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import type { RawRow } from '../src/bundle/encoding.ts';
import { loadBundle, type Bundle } from '../src/bundle/load.ts';
import { openSqliteDecisionLog } from '../src/log/sqlite.ts';
import type { DecisionLog } from '../src/log/types.ts';
import { decide, ModelUnavailable, RequestRejected, type DecisionContext, type DecisionResponse, type DecisionTarget } from '../src/pipeline/decide.ts';
import { createScorer } from '../src/pipeline/score.ts';
import { DECISION_RESPONSE_SCHEMA } from '../src/server/routes/decision-response.ts';
import { lendingClubRows } from './helpers/server.ts';
import { tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;

/** Every bundle folder of the examples and the test fixtures. */
function bundleDirs(): string[] {
  const dirs: string[] = [];
  const visit = (dir: string) => {
    if (existsSync(join(dir, 'rtml.yaml'))) dirs.push(dir);
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory() && e.name !== 'data') visit(join(dir, e.name));
  };
  visit(join(ROOT, 'examples'));
  visit(join(ROOT, 'test', 'fixtures', 'bundles'));
  return dirs;
}

function goldenRows(bundle: Bundle, n: number): RawRow[] {
  if (!bundle.goldenPath) return [];
  const lines = readFileSync(bundle.goldenPath, 'utf8').trim().split('\n').slice(0, n);
  return lines.map((l) => (JSON.parse(l) as { row: RawRow }).row);
}

describe('the decision response schema', () => {
  let log: DecisionLog;
  let echo: FastifyInstance;
  /** Every response decide() gave, with what it was. */
  const responses: { what: string; response: DecisionResponse }[] = [];
  let ids = 0;

  before(async () => {
    log = openSqliteDecisionLog(tempDir('rtml-response-schema-'), { synchronous: 'normal' });
    echo = Fastify();
    echo.post('/echo', { schema: { response: { 200: DECISION_RESPONSE_SCHEMA } } }, async (request) => responses[Number((request.query as { i: string }).i)].response);
    await echo.ready();

    for (const dir of bundleDirs()) {
      const bundle = await loadBundle(dir);
      const scorer = bundle.model ? createScorer(bundle as Parameters<typeof createScorer>[0], { fromText: false }) : null;
      const target: DecisionTarget = { bundle, scorer, featureNames: new Set([...bundle.encoding.features.filter((f) => !f.source).map((f) => f.name), ...bundle.manifest.keys]) };
      // A bundle with feature sources: the request's own features and its entity keys (no store: each sourced feature as its default or missing).
      const rows = goldenRows(bundle, 40).map((row) => (bundle.sources ? { ...Object.fromEntries(Object.entries(row).filter(([k]) => target.featureNames.has(k))), ...Object.fromEntries(bundle.sources.keys.map((k) => [k, 'entity-1'])) } : row));
      if (dir.endsWith(join('examples', 'credit'))) rows.push(...(await lendingClubRows(200)));
      const run = async (what: string, row: RawRow, ctx: Partial<DecisionContext>) => {
        try {
          const response = await decide(target, { ...row, id: `r${++ids}` }, { log, deadline: performance.now() + 5000, forcedFallback: null, featureStore: null, ...ctx });
          responses.push({ what: `${bundle.name} ${what}`, response });
        } catch (err) {
          // No policy to fall back on (503), or a row the pre-rules' test gives without its values.
          if (!(err instanceof ModelUnavailable || err instanceof RequestRejected)) throw err;
        }
      };
      for (const row of rows) {
        await run('by the model', row, {});
        await run('under the kill switch', row, { forcedFallback: 'kill_switch: incident "7"\n' });
        await run('in safe mode', row, { forcedFallback: 'safe_mode: drift on a\u2028b', shadowScore: true, safeMode: true });
        await run('past the deadline', row, { deadline: performance.now() - 1 });
        await run('with an unknown field', { ...row, zz_not_a_feature: 1 }, {});
      }
      // Missing values (every nullable feature): what the model's missing branches and reasons see.
      const nullable = bundle.encoding.features.filter((f) => f.nullable).map((f) => f.name);
      for (const row of rows.slice(0, 20)) await run('with missing values', { ...row, ...Object.fromEntries(nullable.map((k) => [k, null])) }, {});
      await bundle.model?.close?.();
    }
  });

  after(async () => {
    await echo?.close();
    await log?.close();
  });

  it('covers every optional field and every kind of answer', () => {
    const some = (test: (r: DecisionResponse) => boolean) => responses.some((x) => test(x.response));
    assert.ok(responses.length > 500, `${responses.length} responses`);
    assert.ok(some((r) => r.score === null) && some((r) => typeof r.score === 'number'), 'score null and a number');
    assert.ok(some((r) => r.decision === null) && some((r) => typeof r.decision === 'string'), 'decision null and a string');
    assert.ok(some((r) => r.policy === null) && some((r) => r.model === null || r.model.name !== ''), 'with and without a policy');
    assert.ok(some((r) => r.fallback.used && r.fallback.cause!.startsWith('safe_mode')) && some((r) => r.fallback.cause === 'deadline'), 'fallbacks');
    assert.ok(some((r) => r.warnings !== undefined), 'warnings');
    assert.ok(some((r) => r.features !== undefined), 'sourced features');
    assert.ok(some((r) => r.outputs !== undefined && Object.values(r.outputs).some((v) => typeof v === 'string')), 'outputs with a class name');
    assert.ok(some((r) => r.explanation?.model_decided === true) && some((r) => r.explanation?.model_decided === false), 'explanations');
    assert.ok(
      some((r) => r.reasons.some((x) => 'features' in x && x.features.some((f) => f.value === null))),
      'a model reason with a missing value',
    );
  });

  it('serializes every response to the bytes JSON.stringify gives', async () => {
    for (let i = 0; i < responses.length; i++) {
      const res = await echo.inject({ method: 'POST', url: `/echo?i=${i}`, payload: {} });
      assert.equal(res.statusCode, 200);
      assert.equal(res.body, JSON.stringify(responses[i].response), responses[i].what);
    }
  });

  it('would fail on a field it does not list: an extra one is dropped, so the bytes differ', async () => {
    const response = { ...responses[0].response, extra: 1 };
    const i = responses.push({ what: 'extra', response }) - 1;
    const res = await echo.inject({ method: 'POST', url: `/echo?i=${i}`, payload: {} });
    responses.pop();
    assert.notEqual(res.body, JSON.stringify(response));
  });
});
