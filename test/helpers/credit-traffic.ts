/** The credit example as monitors see it: its bundle, reference profile, and lending_club rows typed and scored. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { loadModelBundle, type ModelBundle } from '../../src/bundle/load.ts';
import { textRowConverter } from '../../src/decision/index.ts';
import { readReference, type ReferenceProfile } from '../../src/monitor/reference.ts';
import { createScorer } from '../../src/pipeline/score.ts';

export const CREDIT = new URL('../../examples/credit', import.meta.url).pathname;

export interface CreditTraffic {
  bundle: ModelBundle;
  reference: ReferenceProfile;
  /** Feature rows as served (typed JSON values), without the label. */
  rows: Record<string, unknown>[];
  /** The model's score of each row. */
  scores: number[];
  /** Each row's outcome, `good` or `bad`. */
  labels: string[];
}

export async function loadCreditTraffic(): Promise<CreditTraffic> {
  const bundle = await loadModelBundle(CREDIT);
  const reference = await readReference(join(CREDIT, 'reference.json'));
  const text = parse(readFileSync(join(CREDIT, 'lending_club.csv')), { columns: true }) as Record<string, string>[];
  const typed = textRowConverter(bundle.encoding.features);
  const labels = text.map((r) => r.Class);
  const rows = text.map((r) => {
    const { Class: _label, ...features } = r;
    return { ...typed(features) };
  });
  const scored = await createScorer(bundle, { fromText: false }).scoreRows(rows);
  const scores = scored.outcomes.map((o) => (o.ok ? o.score : NaN));
  return { bundle, reference, rows, scores, labels };
}
