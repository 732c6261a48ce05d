/** What both adapters' `scan` share: a scanned row back to a record with its outcome, and the page size. */
import { fromStoredRow, type StoredDecisionRow } from './record.ts';
import { MAX_QUERY_LIMIT, type ScannedDecision } from './types.ts';

/** A `scan` row: the stored decision, its position in append order, and its outcome (nulls when none). */
export type ScannedRow<Flag extends number | boolean> = StoredDecisionRow<Flag> & { scan_seq: number | string; outcome_label: string | null; outcome_time: string | null };

export function fromScannedRow(row: ScannedRow<number | boolean>): ScannedDecision {
  const record: ScannedDecision = fromStoredRow(row);
  if (row.outcome_label !== null && row.outcome_time !== null) record.outcome = { label: row.outcome_label, time: row.outcome_time };
  return record;
}

/** The cursor after a page: where its last record sits, `time` and `seq`. */
export function scanCursor(rows: readonly { time: string; scan_seq: number | string }[], after: string | undefined): string {
  const last = rows.at(-1);
  return last ? `${last.time}/${last.scan_seq}` : (after ?? '');
}

/** A cursor back to the position it names; the start for none. */
export function parseScanCursor(after: string | undefined): { time: string; seq: number } {
  if (after === undefined || after === '') return { time: '', seq: 0 };
  const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)\/(\d{1,18})$/.exec(after);
  if (!match) throw new TypeError(`decision log: scan cursor ${JSON.stringify(after.slice(0, 60))} is not one scan returned`);
  return { time: match[1], seq: Number(match[2]) };
}

export function scanLimit(limit: number | undefined): number {
  if (limit === undefined) return MAX_QUERY_LIMIT;
  if (!Number.isInteger(limit) || limit < 1) throw new TypeError(`decision log: scan limit must be a positive integer, got ${limit}`);
  return Math.min(limit, MAX_QUERY_LIMIT);
}
