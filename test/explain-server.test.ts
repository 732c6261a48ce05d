/**
 * The model's reasons in real decisions: a decline or review the model made carries, after the
 * policy's code, up to four reason codes ranked by the row's exact contributions, logged with
 * every feature's contribution (XGBoost's pred_contribs for that row) and shown by the admin
 * look-up; a decision a pre-rule or the fallback made says the model did not decide and carries
 * no model reasons; batch scoring (`rtml score --explain`) gives the same numbers.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { RawRow } from '../src/bundle/encoding.ts';
import { loadModelBundle, type ModelBundle } from '../src/bundle/load.ts';
import { readGoldenContributions, type GoldenContributions } from './helpers/contributions.ts';
import { startServer, type RunningServer } from './helpers/server.ts';
import { tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const TOKEN = 'test-admin-token-0123456789';
const admin = { authorization: `Bearer ${TOKEN}` };

interface Reason {
  code: string;
  message: string;
  source?: 'model';
  contribution?: number;
  feature?: string;
  features?: { feature: string; contribution: number; value: unknown }[];
}

describe('model reasons in decisions', () => {
  let server: RunningServer;
  let bundle: ModelBundle;
  let golden: GoldenContributions;
  /** Golden rows by the action the credit policy gives them (through the model, no pre-rule). */
  const byAction = new Map<string, number[]>();

  before(async () => {
    server = await startServer({ env: { RTML_ADMIN_TOKEN: TOKEN } });
    bundle = await loadModelBundle(join(ROOT, 'examples/credit'));
    golden = readGoldenContributions(bundle);
    const raw = await bundle.model.predict(golden.inputs, golden.rows.length);
    golden.rows.forEach((row, r) => {
      if (bundle.policy!.preDecide(row) !== null) return;
      const action = bundle.policy!.decide(row, bundle.outputs.score(raw, r)).action;
      byAction.set(action, [...(byAction.get(action) ?? []), r]);
    });
  });
  after(async () => {
    await server.stop();
  });

  const decide = async (id: string, row: RawRow) => {
    const res = await server.post('/v1/services/credit/decisions', { id, ...row });
    assert.equal(res.status, 200);
    return (await res.json()) as { decision: string; reasons: Reason[]; explanation?: Record<string, unknown>; timings_ms: Record<string, number> };
  };
  const logged = async (id: string) => {
    const res = await fetch(`${server.url}/v1/services/credit/decisions/${id}`, { headers: admin });
    assert.equal(res.status, 200);
    return (await res.json()) as { reasons: Reason[]; explanation?: { model_decided: boolean; bias?: number; contributions?: Record<string, number> } };
  };

  it('a decline the model made lists up to four principal reasons after the band, logged with every contribution', async () => {
    const features = bundle.encoding.features.map((f) => f.name);
    const declines = byAction.get('decline')!;
    assert.ok(declines.length >= 5, `only ${declines.length} golden declines`);
    for (const r of declines.slice(0, 5)) {
      const body = await decide(`decline-${r}`, golden.rows[r]);
      assert.equal(body.decision, 'decline');
      assert.equal(body.reasons[0].code, 'HIGH_RISK');
      const model = body.reasons.slice(1);
      assert.ok(model.length >= 1 && model.length <= 4, `${model.length} model reasons`);
      assert.deepEqual(body.explanation, { model_decided: true, method: 'path-dependent TreeSHAP, exactly as XGBoost predict(pred_contribs=True)' });
      assert.equal(typeof body.timings_ms.explain, 'number');
      // Every reason is adverse (raises P(bad)), ranked, and its contribution is its features' sum.
      for (let i = 0; i < model.length; i++) {
        const reason = model[i];
        assert.equal(reason.source, 'model');
        assert.ok(reason.contribution! > 0);
        if (i > 0) assert.ok(reason.contribution! <= model[i - 1].contribution!);
        assert.equal(reason.contribution, reason.features!.reduce((s, f) => s + f.contribution, 0));
        assert.equal(reason.feature, reason.features![0].feature);
        for (const f of reason.features!) assert.equal(f.value, golden.rows[r][f.feature] ?? null, f.feature);
      }
      // The log keeps what the response shows, plus every feature's contribution: XGBoost's own.
      const record = await logged(`decline-${r}`);
      assert.deepEqual(record.reasons, body.reasons);
      assert.equal(record.explanation!.model_decided, true);
      const width = features.length + 1;
      assert.deepEqual(record.explanation!.contributions, Object.fromEntries(features.map((f, i) => [f, golden.expected[r * width + i]])));
      assert.equal(record.explanation!.bias, golden.expected[r * width + features.length]);
      for (const reason of model) for (const f of reason.features!) assert.equal(f.contribution, record.explanation!.contributions![f.feature]);
    }
  });

  it('a missing value that hurts is reported with value null (the information was missing)', async () => {
    // The README's request: no bureau fields at all. The model's default branches for them
    // raise P(bad); the reason must not read as if the applicant's value were bad.
    const body = await decide('missing-1', {
      funded_amnt: 16100, term: 'term_36', int_rate: 13.99, sub_grade: 'C4', addr_state: 'CT', verification_status: 'Not_Verified',
      annual_inc: 35000, emp_length: 'emp_5', delinq_2yrs: 0, inq_last_6mths: 0, revol_util: 67.4,
    });
    const installments = body.reasons.find((r) => r.code === 'RECENT_INSTALLMENT_ACCOUNTS');
    assert.ok(installments, JSON.stringify(body.reasons.map((r) => r.code)));
    assert.deepEqual(installments.features!.map((f) => [f.feature, f.value]), [['open_il_12m', null], ['open_il_24m', null], ['open_il_6m', null], ['num_il_tl', null]]);
    const rate = body.reasons.find((r) => r.code === 'INTEREST_RATE');
    assert.equal(rate?.features![0].value, 13.99);
  });

  it('a review carries them too; an approval carries none and no explanation', async () => {
    const review = await decide('review-1', golden.rows[byAction.get('review')![0]]);
    assert.equal(review.reasons[0].code, 'MEDIUM_RISK');
    assert.ok(review.reasons.length > 1 && review.reasons.slice(1).every((r) => r.source === 'model'));
    const approve = await decide('approve-1', golden.rows[byAction.get('approve')![0]]);
    assert.deepEqual(approve.reasons.map((r) => r.code), ['LOW_RISK']);
    assert.equal(approve.explanation, undefined);
    assert.equal((await logged('approve-1')).explanation, undefined);
  });

  it('a pre-rule decline says the model did not decide, and carries no model reasons', async () => {
    const row = { ...golden.rows[0], funded_amnt: 30000, annual_inc: 20000 };
    const body = await decide('pre-1', row);
    assert.equal(body.decision, 'decline');
    assert.deepEqual(body.reasons.map((r) => r.code), ['AMOUNT_ABOVE_INCOME']);
    assert.deepEqual(body.explanation, { model_decided: false, stage: 'pre_rule', note: 'decided by pre_rule AMOUNT_ABOVE_INCOME, not by the model: no model reasons' });
    assert.deepEqual((await logged('pre-1')).explanation, body.explanation);
  });

  it("the monitoring endpoint compares the window's attribution with the reference's", async () => {
    for (let i = 0; i < 40; i++) await decide(`monitored-${i}`, golden.rows[i]);
    const res = await fetch(`${server.url}/v1/services/credit/monitoring`);
    const body = (await res.json()) as { windows: Record<string, { contributions: { n: number; sample_every: number; features: Record<string, { mean_abs: number; reference_mean_abs: number; share: number }> } }> };
    for (const window of ['count', '5m', '1h', '1d']) {
      const c = body.windows[window].contributions;
      assert.equal(c.sample_every, 10);
      assert.ok(c.n >= 4, `${window}: ${c.n} explained`);
      assert.ok(c.features.int_rate.mean_abs > 0 && c.features.int_rate.reference_mean_abs > 0);
    }
  });

  it('a fallback decision (kill switch) says the model did not decide', async () => {
    const put = (enabled: boolean) =>
      fetch(`${server.url}/v1/services/credit/kill-switch`, { method: 'PUT', headers: { 'content-type': 'application/json', ...admin }, body: JSON.stringify({ enabled, reason: 'test' }) });
    assert.equal((await put(true)).status, 200);
    try {
      const body = await decide('fallback-1', golden.rows[byAction.get('decline')![0]]);
      assert.ok(['review', 'decline'].includes(body.decision));
      assert.ok(body.reasons.every((r) => r.source === undefined && r.code.startsWith('FB_')));
      assert.deepEqual(body.explanation, { model_decided: false, stage: 'fallback', note: 'decided by the fallback (kill_switch: test), not by the model: no model reasons' });
    } finally {
      await put(false);
    }
  });
});

describe('rtml score --explain', () => {
  it("adds every feature's contribution and the bias, XGBoost's numbers, and the same reason codes as the server", async () => {
    const bundle = await loadModelBundle(join(ROOT, 'examples/credit'));
    const golden = readGoldenContributions(bundle);
    const dir = tempDir();
    writeFileSync(join(dir, 'in.jsonl'), golden.rows.map((r) => JSON.stringify(r)).join('\n'));
    const run = spawnSync(process.execPath, [join(ROOT, 'bin/rtml.mjs'), 'score', 'examples/credit', '-i', join(dir, 'in.jsonl'), '-o', join(dir, 'out.jsonl'), '--explain', '--quiet'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const out = readFileSync(join(dir, 'out.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const features = bundle.encoding.features.map((f) => f.name);
    const width = features.length + 1;
    assert.equal(out.length, golden.rows.length);
    out.forEach((o, r) => {
      features.forEach((f, i) => assert.equal(o[`contribution_${f}`], golden.expected[r * width + i], `row ${r} ${f}`));
      assert.equal(o.contribution_bias, golden.expected[r * width + features.length]);
    });
    // Reason codes: the policy's, then the model's for declines and reviews the model made.
    const declined = out.filter((o) => o.decision === 'decline' && String(o.reason_codes).startsWith('HIGH_RISK'));
    assert.ok(declined.length > 0 && declined.every((o) => String(o.reason_codes).split(' ').length >= 2));
    assert.ok(out.filter((o) => o.decision === 'approve').every((o) => !String(o.reason_codes).includes(' ')));
  });

  it('refuses --explain for a model without exact contributions', () => {
    const dir = tempDir();
    const input = join(ROOT, 'test/fixtures/bundles/onnx_xgb_binary/golden.jsonl');
    const rows = readFileSync(input, 'utf8').trim().split('\n').slice(0, 3).map((l) => JSON.stringify(JSON.parse(l).row));
    writeFileSync(join(dir, 'in.jsonl'), rows.join('\n'));
    const run = spawnSync(process.execPath, [join(ROOT, 'bin/rtml.mjs'), 'score', 'test/fixtures/bundles/onnx_xgb_binary', '-i', join(dir, 'in.jsonl'), '-o', join(dir, 'out.jsonl'), '--explain'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stderr, /--explain: this model has no exact contributions: an ONNX graph carries no tree statistics/);
  });
});
