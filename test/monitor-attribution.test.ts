/**
 * Attribution monitoring: `rtml profile` records each feature's mean absolute contribution
 * (exact, XGBoost's pred_contribs), and the live monitor compares each window's shares of the
 * model's attribution with the reference's. Explaining a sampled decision happens after it is
 * answered, in a batch; a decision that computed its contributions anyway is reused.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { parse } from 'csv-parse/sync';
import type { RawRow } from '../src/bundle/encoding.ts';
import { loadModelBundle, type ModelBundle } from '../src/bundle/load.ts';
import { textRowConverter } from '../src/decision/index.ts';
import { monitoringSchema } from '../src/monitor/config.ts';
import { buildProfile } from '../src/monitor/profile.ts';
import { readReference, referenceMismatch, type ReferenceProfile } from '../src/monitor/reference.ts';
import { ServiceMonitor } from '../src/monitor/service-monitor.ts';
import { createScorer, type Scorer } from '../src/pipeline/score.ts';
import { readGoldenContributions } from './helpers/contributions.ts';
import { tempDir } from './helpers/tmp.ts';

const CREDIT = new URL('../examples/credit', import.meta.url).pathname;
let bundle: ModelBundle;
let reference: ReferenceProfile;
let scorer: Scorer;
let rows: RawRow[];

before(async () => {
  bundle = await loadModelBundle(CREDIT);
  reference = await readReference(join(CREDIT, 'reference.json'));
  scorer = createScorer(bundle, { fromText: false });
  const typed = textRowConverter(bundle.encoding.features);
  rows = (parse(readFileSync(join(CREDIT, 'lending_club.csv')), { columns: true }) as Record<string, string>[]).map(({ Class: _label, ...r }) => typed(r));
});

function monitor(overrides: Record<string, unknown> = {}) {
  const config = monitoringSchema.parse({ count_window: 1000, ...overrides });
  return new ServiceMonitor({ bundle, reference, config, sinks: [], explainer: scorer.explainer(), now: () => Date.parse('2026-11-01T00:00:00Z') });
}

/** Feeds rows as decisions the model scored (contributions left to the monitor), then explains what waits. */
async function feed(m: ServiceMonitor, batch: RawRow[]): Promise<void> {
  for (const row of batch) {
    const scored = await scorer.scoreRows([row]);
    const o = scored.outcomes[0];
    if (!o.ok) continue;
    m.observeDecision(row, o.score, 'approve', null, undefined, { scored: { inputs: scored.inputs, raw: scored.raw }, contributions: null });
  }
  m.explainPending();
}

describe('attribution in the reference profile', () => {
  it("records each feature's mean absolute contribution over the rows the model decides: XGBoost's numbers", async () => {
    const golden = readGoldenContributions(bundle);
    const dir = tempDir();
    writeFileSync(join(dir, 'golden.jsonl'), golden.rows.map((r) => JSON.stringify(r)).join('\n'));
    const profile = await buildProfile(bundle, { data: join(dir, 'golden.jsonl') });
    const names = bundle.encoding.features.map((f) => f.name);
    const decided = golden.rows.map((r, i) => [r, i] as const).filter(([r]) => bundle.policy!.preDecide(r) === null);
    assert.equal(profile.contributions!.rows, decided.length);
    assert.ok(decided.length < golden.rows.length, 'some golden rows are decided by pre-rules, and left out');
    names.forEach((name, f) => {
      let sum = 0;
      for (const [, i] of decided) sum += Math.abs(golden.expected[i * (names.length + 1) + f]);
      assert.equal(profile.contributions!.meanAbs[name], sum / decided.length, name);
    });
  });

  it('past contributionRows, a uniform sample of that many rows, the same at every run', async () => {
    const golden = readGoldenContributions(bundle);
    const dir = tempDir();
    writeFileSync(join(dir, 'golden.jsonl'), golden.rows.map((r) => JSON.stringify(r)).join('\n'));
    const profile = () => buildProfile(bundle, { data: join(dir, 'golden.jsonl'), contributionRows: 100 });
    const [a, b] = [await profile(), await profile()];
    assert.equal(a.contributions!.rows, 100);
    assert.deepEqual(a.contributions, b.contributions);
    // A sample's means are near the whole's (int_rate drives this model).
    const all = (await buildProfile(bundle, { data: join(dir, 'golden.jsonl') })).contributions!.meanAbs.int_rate;
    assert.ok(Math.abs(a.contributions!.meanAbs.int_rate - all) < 0.15 * all, `${a.contributions!.meanAbs.int_rate} vs ${all}`);
  });

  it("the credit example's reference has them, and a profile missing a feature's cannot monitor the bundle", () => {
    assert.ok(reference.contributions && reference.contributions.rows > 7000);
    const names = bundle.encoding.features.map((f) => f.name);
    assert.equal(referenceMismatch(reference, 'credit', names), null);
    const { int_rate: _dropped, ...rest } = reference.contributions!.meanAbs;
    assert.match(referenceMismatch({ ...reference, contributions: { rows: 1, meanAbs: rest } }, 'credit', names) ?? '', /contributions miss int_rate/);
  });
});

describe('attribution in the live windows', () => {
  it('normal traffic: shares as in the reference, no alert', async () => {
    const m = monitor({ contributions: { sample_every: 1 } });
    await feed(m, rows.slice(0, 1500));
    const report = m.evaluate().windows.count.contributions!;
    assert.ok(report.n >= 1000, `${report.n} explained`);
    assert.equal(report.verdict, 'ok');
    for (const [name, f] of Object.entries(report.features)) assert.ok(Math.abs(f.share_increase) < 0.03, `${name}: share ${f.share} vs ${f.reference_share}`);
    assert.ok(report.features.int_rate.share > 0.3, 'int_rate drives the credit model');
    assert.ok(!m.state().alerts.active.some((a) => a.rule === 'attribution_shift'));
  });

  it('int_rate arriving as a fraction instead of a percentage now drives the score: an alert naming it', async () => {
    const m = monitor({ contributions: { sample_every: 1 } });
    await feed(m, rows.slice(0, 1000));
    await feed(m, rows.slice(1000, 2200).map((r) => ({ ...r, int_rate: (r.int_rate as number) / 100 })));
    const state = m.evaluate();
    const f = state.windows.count.contributions!.features.int_rate;
    assert.ok(f.share_increase >= 0.1, `int_rate share ${f.share} vs ${f.reference_share}`);
    const alert = state.alerts.active.find((a) => a.rule === 'attribution_shift');
    assert.equal(alert?.subject, 'int_rate');
    assert.match(alert!.message, /^int_rate now drives \d+\.\d% of the model's attribution \(reference \d+\.\d%\)/);
  });

  it('explains one decision in sample_every, and no verdict on fewer than min_observations', async () => {
    const m = monitor({ contributions: { sample_every: 10, min_observations: 100 } });
    await feed(m, rows.slice(0, 500));
    const report = m.evaluate().windows.count.contributions!;
    assert.equal(report.n, 50);
    assert.equal(report.sample_every, 10);
    assert.equal(report.verdict, 'insufficient_data');
  });

  it('uses contributions a decision computed anyway, at once', async () => {
    const m = monitor({ contributions: { sample_every: 1 } });
    const explainer = scorer.explainer()!;
    const scored = await scorer.scoreRows([rows[0]]);
    const values = explainer.explain(scored.inputs, 1, scored.raw).values;
    m.observeDecision(rows[0], 0.1, 'decline', null, undefined, { scored: { inputs: scored.inputs, raw: scored.raw }, contributions: values });
    const report = m.evaluate().windows.count.contributions!;
    assert.equal(report.n, 1);
    assert.equal(report.features.int_rate.mean_abs, Math.abs(values[bundle.encoding.features.findIndex((f) => f.name === 'int_rate')]));
  });

  it('without an explainer, or with a profile that recorded no contributions, the report says null', async () => {
    const config = monitoringSchema.parse({});
    const noExplainer = new ServiceMonitor({ bundle, reference, config, sinks: [] });
    assert.equal(noExplainer.evaluate().windows.count.contributions, null);
    const old = new ServiceMonitor({ bundle, reference: { ...reference, contributions: undefined }, config, sinks: [], explainer: scorer.explainer() });
    assert.equal(old.evaluate().windows.count.contributions, null);
  });
});
