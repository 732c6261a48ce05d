/**
 * Golden-set parity: score the inputs the training library scored and compare with its own
 * predictions. This is how a bundle proves the serving path computes what training did.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { createScorer } from '../pipeline/score.ts';
import { Slices } from '../threads.ts';
import type { ModelBundle } from './load.ts';
import { MAX_BUNDLE_FILE_BYTES } from './files.ts';

const goldenLine = z.object({
  row: z.record(z.string(), z.unknown()),
  expected: z.array(z.number()).min(1),
});

export interface GoldenReport {
  rows: number;
  /** Largest difference seen, in the bundle's tolerance measure. */
  maxDiff: number;
  measure: 'absolute' | 'relative' | 'exact';
  /** 1-based golden line of the largest difference. */
  worstLine: number;
  failures: { line: number; reason: string }[];
}

/** Relative difference with an absolute floor of 1, so values near zero are compared absolutely. */
function difference(actual: number, expected: number, measure: GoldenReport['measure']): number {
  if (Number.isNaN(actual) && Number.isNaN(expected)) return 0;
  const d = Math.abs(actual - expected);
  if (measure === 'relative') return d / Math.max(1, Math.abs(expected));
  if (measure === 'exact') return d === 0 ? 0 : Infinity;
  return d;
}

export async function checkGolden(bundle: ModelBundle, tolerance = 1e-6): Promise<GoldenReport> {
  if (!bundle.goldenPath) throw new Error(`bundle ${bundle.dir} has no golden file`);
  const scorer = createScorer(bundle, { fromText: false });
  const measure = bundle.outputs.tolerance;
  const report: GoldenReport = { rows: 0, maxDiff: 0, measure, worstLine: 0, failures: [] };
  // Bounded at load; `end` keeps the read bounded should the file grow since.
  const lines = createInterface({ input: createReadStream(bundle.goldenPath, { end: MAX_BUNDLE_FILE_BYTES.golden - 1 }), crlfDelay: Infinity });
  let lineNo = 0;
  // Scoring a row of a big forest takes milliseconds, and readline hands over a whole chunk
  // of lines at once: the event loop gets a turn between slices (a server checks a version
  // while it serves).
  const slices = new Slices();
  for await (const text of lines) {
    lineNo++;
    if (slices.due) await slices.pause();
    if (text.trim() === '') continue;
    let parsed;
    try {
      parsed = goldenLine.parse(JSON.parse(text));
    } catch (err) {
      report.failures.push({ line: lineNo, reason: `not a golden line ({row, expected}): ${(err as Error).message.split('\n')[0]}` });
      continue;
    }
    report.rows++;
    const batch = await scorer.scoreRows([parsed.row]);
    const outcome = batch.outcomes[0];
    if (!outcome.ok) {
      report.failures.push({ line: lineNo, reason: `row rejected: ${outcome.errors.map((e) => e.message).join('; ')}` });
      continue;
    }
    const raw = batch.raw.subarray(outcome.slot * batch.rawWidth, (outcome.slot + 1) * batch.rawWidth);
    if (raw.length !== parsed.expected.length) {
      report.failures.push({ line: lineNo, reason: `model gave ${raw.length} outputs, golden expects ${parsed.expected.length}` });
      continue;
    }
    for (let j = 0; j < raw.length; j++) {
      const d = difference(raw[j], parsed.expected[j], measure);
      if (d > report.maxDiff || Number.isNaN(d)) {
        report.maxDiff = Number.isNaN(d) ? Infinity : d;
        report.worstLine = lineNo;
      }
      if (!(d <= tolerance)) {
        report.failures.push({ line: lineNo, reason: `output ${j}: got ${raw[j]}, expected ${parsed.expected[j]} (${measure} difference ${d})` });
      }
    }
  }
  if (report.rows === 0) report.failures.push({ line: 0, reason: 'the golden file holds no rows' });
  return report;
}
