/**
 * `rtml gate`: the behaviour a candidate bundle declares it must have (`gates:` in its
 * rtml.yaml), checked before it decides anything. Every gate decides through redecide.ts, the
 * server's own decision functions:
 *
 *   parity       golden outputs, as `rtml check`
 *   cases        minimum functionality: rows and the decision each must get
 *   invariance   perturbations of the reference rows that must not change the decision (or the score beyond a tolerance)
 *   directional  the score monotone in a feature, proven on the trees (monotone.ts) or checked on the reference rows
 *   slices       no segment's AUC more than a margin below the whole's (labelled --data)
 *   replay       flip rate and action-rate changes against the champion on the reference rows
 *
 * The reference rows are --data's (CSV or JSON lines) when given, else the golden file's.
 */
import { readFile } from 'node:fs/promises';
import { parse } from 'csv-parse/sync';
import type { RawRow } from '../bundle/encoding.ts';
import { bundleFile } from '../bundle/files.ts';
import { checkGolden } from '../bundle/golden.ts';
import type { ModelBundle } from '../bundle/load.ts';
import { textRowConverter } from '../decision/row.ts';
import { parseXgbJson, parseXgbModel, type XgbModel } from '../models/xgboost/format.ts';
import { positiveLabel, readLabel } from '../pipeline/outcomes.ts';
import { DecisionComparison, type ComparisonReport } from './compare.ts';
import { rocAuc } from './delong.ts';
import type { DirectionalSpec, GatesSpec, InvarianceSpec } from './gates-config.ts';
import { probePoints, proveMonotone, scoreSign } from './monotone.ts';
import { deciderOf, redecide, type Decider } from './redecide.ts';
import { comparisonSetup } from './replay.ts';

export type GateStatus = 'passed' | 'failed' | 'skipped';

export interface GateResult {
  /** `kind: what`, e.g. `directional: annual_inc decreasing`. */
  name: string;
  kind: keyof GatesSpec;
  status: GateStatus;
  message: string;
  seconds: number;
  /** A row that breaks it, when there is one. */
  counterexample?: unknown;
}

export interface GateReport {
  kind: 'gate';
  candidate: { name: string; version: string; dir: string };
  champion: { name: string; version: string; dir: string } | null;
  reference: { source: string; rows: number; labelled: number };
  passed: boolean;
  gates: GateResult[];
  /** The replay budget's comparison, when it ran. */
  replay: ComparisonReport | null;
}

export interface GateOptions {
  champion?: ModelBundle;
  /** CSV or JSON lines: reference rows (and labels, for slices). */
  data?: string;
}

interface ReferenceRows {
  source: string;
  rows: RawRow[];
  /** Per row: 1 positive, 0 not, null unlabelled. */
  labels: (0 | 1 | null)[];
}

/** Rows of at most this many reference rows are used by invariance, directional and replay (all of them by slices). */
const MAX_PROBED_ROWS = 2000;

export async function runGates(candidate: ModelBundle, spec: GatesSpec, options: GateOptions = {}): Promise<GateReport> {
  const decider = deciderOf(candidate);
  const reference = await referenceRows(candidate, options.data, spec.slices?.label ?? 'Class');
  const probed = reference.rows.slice(0, MAX_PROBED_ROWS);
  const gates: GateResult[] = [];
  let replay: ComparisonReport | null = null;
  const run = async (kind: keyof GatesSpec, name: string, check: () => Promise<Omit<GateResult, 'name' | 'kind' | 'seconds'>>) => {
    const started = performance.now();
    let result: Omit<GateResult, 'name' | 'kind' | 'seconds'>;
    try {
      result = await check();
    } catch (err) {
      result = { status: 'failed', message: `could not run: ${(err as Error).message}` };
    }
    gates.push({ name, kind, ...result, seconds: (performance.now() - started) / 1000 });
  };

  if (spec.parity) {
    const tolerance = spec.parity.tolerance;
    await run('parity', 'parity: golden outputs', async () => {
      if (!candidate.goldenPath) return { status: 'failed', message: 'the bundle has no golden file: nothing to check parity against' };
      const golden = await checkGolden(candidate, tolerance);
      const failed = golden.failures.length > 0;
      return {
        status: failed ? 'failed' : 'passed',
        message: `${golden.rows} golden rows, largest ${golden.measure} difference ${golden.maxDiff.toExponential(3)} (tolerance ${tolerance})${failed ? `; ${golden.failures.length} failures, first: line ${golden.failures[0].line}: ${golden.failures[0].reason}` : ''}`,
      };
    });
  }

  for (const c of spec.cases ?? []) {
    await run('cases', `case: ${c.name}`, async () => {
      const got = await redecide(decider, c.row);
      if (got.refused !== null) return { status: 'failed', message: `the row is refused by the bundle's schema: ${got.refused}`, counterexample: c.row };
      const ok = got.action === c.decision && (c.reason === undefined || got.reasons.includes(c.reason));
      return {
        status: ok ? 'passed' : 'failed',
        message: `expected ${c.decision}${c.reason ? ` with ${c.reason}` : ''}; got ${got.action} (score ${got.score ?? '–'}, reasons ${got.reasons.join(' ') || '–'})`,
        ...(ok ? {} : { counterexample: c.row }),
      };
    });
  }

  for (const g of spec.invariance ?? []) {
    await run('invariance', `invariance: ${g.name}`, () => invariance(decider, g, probed, reference.source));
  }

  if (spec.directional?.length) {
    const xgb = await xgboostModel(candidate);
    for (const g of spec.directional) {
      await run('directional', `directional: ${g.feature} ${g.direction}`, () => directional(decider, xgb, g, probed, reference.source));
    }
  }

  if (spec.slices) {
    const slices = spec.slices;
    await run('slices', `slices: AUC at most ${slices.max_auc_drop} below the whole`, async () => sliceGate(decider, slices, reference));
  }

  if (spec.replay) {
    const budget = spec.replay;
    await run('replay', `replay budget: flip rate at most ${budget.max_flip_rate}`, async () => {
      if (!options.champion) return { status: 'skipped', message: 'no --champion bundle to replay against' };
      if (!options.data) return { status: 'skipped', message: 'no --data to replay: the golden rows are not traffic' };
      replay = await compareOnRows(deciderOf(options.champion), decider, reference);
      const problems: string[] = [];
      if (replay.flipRate > budget.max_flip_rate) problems.push(`flip rate ${pct(replay.flipRate)} above ${pct(budget.max_flip_rate)}`);
      for (const [action, max] of Object.entries(budget.max_rate_change)) {
        const change = replay.actionRates[action]?.change ?? 0;
        if (Math.abs(change) > max) problems.push(`${action} rate changes by ${signedPp(change)}, more than ${(100 * max).toFixed(2)} pp`);
      }
      const rates = Object.entries(replay.actionRates).map(([a, r]) => `${a} ${pct(r.champion)} -> ${pct(r.candidate)}`).join(', ');
      return {
        status: problems.length ? 'failed' : 'passed',
        message: `${replay.decisions} rows of ${reference.source}: ${replay.flips} flips (${pct(replay.flipRate)}); ${rates}${problems.length ? `; ${problems.join('; ')}` : ''}`,
      };
    });
  }

  return {
    kind: 'gate',
    candidate: { name: candidate.name, version: candidate.version, dir: candidate.dir },
    champion: options.champion ? { name: options.champion.name, version: options.champion.version, dir: options.champion.dir } : null,
    reference: { source: reference.source, rows: reference.rows.length, labelled: reference.labels.filter((l) => l !== null).length },
    passed: gates.every((g) => g.status !== 'failed'),
    gates,
    replay,
  };
}

const pct = (v: number) => `${(100 * v).toFixed(2)}%`;
const signedPp = (v: number) => `${v >= 0 ? '+' : ''}${(100 * v).toFixed(2)} pp`;

/** The champion and the candidate decide every reference row; labels go with them for the outcome figures. */
async function compareOnRows(champion: Decider, candidate: Decider, reference: ReferenceRows): Promise<ComparisonReport> {
  const comparison = new DecisionComparison(comparisonSetup(candidate.bundle));
  for (let i = 0; i < reference.rows.length; i++) {
    const row = reference.rows[i];
    const [a, b] = [await redecide(champion, row), await redecide(candidate, row)];
    if (a.refused !== null) continue; // not a row the champion would have decided
    comparison.add({ champion: a, candidate: b, row, label: reference.labels[i] ?? undefined, candidateModelMs: b.modelMs ?? undefined });
  }
  return comparison.report();
}

async function invariance(decider: Decider, g: InvarianceSpec, rows: readonly RawRow[], source: string): Promise<Omit<GateResult, 'name' | 'kind' | 'seconds'>> {
  let checked = 0;
  let broken = 0;
  let first: unknown;
  for (const row of rows) {
    const base = await redecide(decider, row);
    if (base.refused !== null) continue;
    const variants: unknown[] = g.values ?? (typeof row[g.field] === 'number' ? [(row[g.field] as number) - g.noise!, (row[g.field] as number) + g.noise!] : []);
    if (variants.length === 0) continue;
    checked++;
    for (const value of variants) {
      const moved = { ...row, [g.field]: value };
      const got = await redecide(decider, moved);
      if (got.refused !== null) continue; // outside the schema (below min): not a row that could arrive
      const ok = g.expect === 'decision' ? got.action === base.action : base.score !== null && got.score !== null && Math.abs(got.score - base.score) <= g.score_tolerance!;
      if (!ok) {
        broken++;
        first ??= { row, [g.field]: value, before: { decision: base.action, score: base.score }, after: { decision: got.action, score: got.score } };
        break;
      }
    }
  }
  const rate = checked === 0 ? 0 : broken / checked;
  const status: GateStatus = checked === 0 ? 'skipped' : rate > g.max_violation_rate ? 'failed' : 'passed';
  const what = g.expect === 'decision' ? 'the decision' : `the score by more than ${g.score_tolerance}`;
  return {
    status,
    message: checked === 0 ? `no reference row has a value of ${g.field} to perturb` : `${broken} of ${checked} rows of ${source} (${pct(rate)}, allowed ${pct(g.max_violation_rate)}) change ${what} when ${g.field} ${g.values ? `is set to ${g.values.map((v) => JSON.stringify(v)).join(', ')}` : `moves by ±${g.noise}`}`,
    ...(first && status === 'failed' ? { counterexample: first } : {}),
  };
}

async function directional(decider: Decider, xgb: XgbModel | null, g: DirectionalSpec, rows: readonly RawRow[], source: string): Promise<Omit<GateResult, 'name' | 'kind' | 'seconds'>> {
  const bundle = decider.bundle;
  const spec = bundle.encoding.features.find((f) => f.name === g.feature);
  if (!spec) return { status: 'failed', message: `${g.feature} is not a feature of ${bundle.name}` };
  if (spec.type !== 'number' && spec.type !== 'integer') return { status: 'failed', message: `${g.feature} is a ${spec.type} feature: a direction needs a number or integer` };
  const want: 1 | -1 = g.direction === 'increasing' ? 1 : -1;
  const sign = xgb ? scoreSign(bundle, xgb) : null;
  let proofNote = xgb ? 'no proof for this objective (the score is not one monotone function of one margin)' : 'no proof for this model format';
  if (xgb && sign !== null) {
    const proof = proveMonotone(bundle, xgb, g.feature, (want * sign) as 1 | -1);
    if (proof.violations.length === 0) return { status: 'passed', message: `proven on the trees: each of the ${proof.trees} trees is ${g.direction === 'increasing' ? 'non-decreasing' : 'non-increasing'} in ${g.feature} whatever the other features are (within their declared ranges), so their sum and the score are` };
    const shown = proof.violations.slice(0, 5).map((v) => `tree ${v.tree}: leaf ${v.lowerLeaf.node} (${g.feature} in [${v.lowerLeaf.range[0]}, ${v.lowerLeaf.range[1]}), ${v.lowerLeaf.value}) then leaf ${v.higherLeaf.node} ([${v.higherLeaf.range[0]}, ${v.higherLeaf.range[1]}), ${v.higherLeaf.value})`);
    proofNote = `not proven: ${proof.violations.length} of ${proof.trees} trees are not monotone on their own (${shown.join('; ')}${proof.violations.length > 5 ? '; …' : ''})`;
  }
  // Search the reference rows for a counterexample: the feature moved alone over every split point.
  const observed = rows.map((r) => r[g.feature]).filter((v): v is number => typeof v === 'number');
  const points = probePoints(bundle, xgb, g.feature, xgb ? [] : [...new Set(observed)].sort((a, b) => a - b).filter((_, i, all) => i % Math.max(1, Math.floor(all.length / 50)) === 0));
  let checked = 0;
  for (const row of rows) {
    const base = decider.scorer.encode([row]);
    if (!base.rows[0].ok) continue;
    checked++;
    const variants = points.map((v) => ({ ...row, [g.feature]: v }));
    const scored = await decider.scorer.scoreRows(variants);
    let best: { value: number; score: number } | null = null;
    for (let i = 0; i < scored.outcomes.length; i++) {
      const o = scored.outcomes[i];
      if (!o.ok) continue;
      if (best && (o.score - best.score) * want < 0) {
        return {
          status: 'failed',
          message: `${proofNote}. Counterexample on a row of ${source}: ${g.feature} ${best.value} -> score ${best.score}; ${g.feature} ${points[i]} -> score ${o.score} (${g.direction === 'increasing' ? 'down' : 'up'} as ${g.feature} goes up)`,
          counterexample: { row, from: { [g.feature]: best.value, score: best.score }, to: { [g.feature]: points[i], score: o.score } },
        };
      }
      if (!best || (o.score - best.score) * want > 0) best = { value: points[i], score: o.score };
    }
  }
  return { status: 'passed', message: `${proofNote}; checked, not proven: no counterexample on ${checked} rows of ${source} at ${points.length} values of ${g.feature} each` };
}

async function sliceGate(decider: Decider, slices: NonNullable<GatesSpec['slices']>, reference: ReferenceRows): Promise<Omit<GateResult, 'name' | 'kind' | 'seconds'>> {
  const labelled = reference.rows.flatMap((row, i) => (reference.labels[i] === null ? [] : [{ row, label: reference.labels[i]! }]));
  if (labelled.length === 0) return { status: 'skipped', message: `no labelled reference rows (--data with a ${slices.label} column)` };
  const scored = await decider.scorer.scoreRows(labelled.map((l) => l.row));
  const kept = labelled.flatMap((l, i) => {
    const o = scored.outcomes[i];
    return o.ok ? [{ ...l, score: o.score }] : [];
  });
  const auc = (items: readonly { label: 0 | 1; score: number }[]) => rocAuc(Uint8Array.from(items.map((i) => i.label)), Float64Array.from(items.map((i) => i.score)));
  const whole = auc(kept);
  if (whole === null) return { status: 'skipped', message: 'the labelled rows hold one class only' };
  const features = slices.features ?? decider.bundle.encoding.features.filter((f) => f.type === 'category').map((f) => f.name);
  const worst: string[] = [];
  const failures: string[] = [];
  let judged = 0;
  for (const feature of features) {
    const groups = new Map<string, { label: 0 | 1; score: number }[]>();
    for (const k of kept) {
      const key = k.row[feature] === undefined || k.row[feature] === null ? '(missing)' : String(k.row[feature]);
      groups.set(key, [...(groups.get(key) ?? []), k]);
    }
    for (const [value, items] of groups) {
      const positives = items.reduce((s, i) => s + i.label, 0);
      if (items.length < slices.min_rows || positives < 10 || items.length - positives < 10) continue;
      const a = auc(items)!;
      judged++;
      const line = `${feature}=${value}: AUC ${a.toFixed(4)} on ${items.length} rows`;
      if (whole - a > slices.max_auc_drop) failures.push(line);
      worst.push(line);
    }
  }
  return {
    status: failures.length ? 'failed' : 'passed',
    message: `AUC ${whole.toFixed(4)} on ${kept.length} labelled rows of ${reference.source}; ${judged} segments judged (at least ${slices.min_rows} rows and 10 of each class)${failures.length ? `; more than ${slices.max_auc_drop} below: ${failures.join(', ')}` : ''}`,
  };
}

/** The XGBoost model as parsed trees (for the proofs), or null for another format. */
async function xgboostModel(bundle: ModelBundle): Promise<XgbModel | null> {
  const model = bundle.manifest.model;
  if (!model || model.format !== 'xgboost-json') return null;
  const path = await bundleFile(bundle.dir, model.path, 'model');
  return path ? parseXgbModel(parseXgbJson(await readFile(path, 'utf8'))) : null;
}

async function referenceRows(bundle: ModelBundle, data: string | undefined, labelColumn: string): Promise<ReferenceRows> {
  const positive = positiveLabel(bundle);
  const labelOf = (v: unknown): 0 | 1 | null => {
    if (v === undefined || v === null || v === '' || positive === null) return null;
    const read = readLabel(bundle, v);
    return read.ok ? (read.label === positive ? 1 : 0) : null;
  };
  const names = new Set(bundle.encoding.features.map((f) => f.name));
  const featuresOf = (r: Record<string, unknown>): RawRow => Object.fromEntries(Object.entries(r).filter(([k]) => names.has(k)));
  if (data) {
    const text = await readFile(data, 'utf8');
    if (data.endsWith('.csv')) {
      const records = parse(text, { columns: true, skip_empty_lines: true }) as Record<string, string>[];
      const typed = textRowConverter(bundle.encoding.features);
      return { source: data, rows: records.map((r) => featuresOf(typed(r))), labels: records.map((r) => labelOf(r[labelColumn])) };
    }
    const lines = text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
    return { source: data, rows: lines.map(featuresOf), labels: lines.map((l) => labelOf(l[labelColumn])) };
  }
  if (!bundle.goldenPath) return { source: 'no reference rows', rows: [], labels: [] };
  const lines = (await readFile(bundle.goldenPath, 'utf8')).split('\n').filter((l) => l.trim() !== '');
  const rows = lines.map((l) => (JSON.parse(l) as { row: RawRow }).row);
  return { source: 'the golden rows', rows, labels: rows.map(() => null) };
}
