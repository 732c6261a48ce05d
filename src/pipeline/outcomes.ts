/**
 * Outcomes: the truth about a decision, arriving later. Every way in (one at a time over
 * HTTP, JSON lines over HTTP, a file through the CLI) goes through `parseOutcome`, which
 * normalises the label to the bundle's class names (`readLabel`, which `rtml profile` reads
 * labelled data with too), then into the decision log.
 */
import type { Bundle } from '../bundle/load.ts';
import type { Outcome } from '../log/types.ts';

export type ParsedOutcome = { ok: true; outcome: Outcome } | { ok: false; message: string };

const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/** Accepts `{id, label, time?}`; the label as `readLabel` reads it. */
export function parseOutcome(bundle: Bundle, value: unknown): ParsedOutcome {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, message: 'an outcome is a JSON object {id, label, time?}' };
  const { id, label, time } = value as Record<string, unknown>;
  if (typeof id !== 'string' || id.length === 0 || id.length > 128) return { ok: false, message: 'id: must be the decision id, a string of 1-128 characters' };
  let normalizedTime: string | undefined;
  if (time !== undefined && time !== null && time !== '') {
    if (typeof time !== 'string' || !TIME.test(time) || Number.isNaN(Date.parse(time))) return { ok: false, message: 'time: must be an ISO 8601 date-time with a zone, e.g. 2026-03-01T12:00:00Z' };
    normalizedTime = new Date(time).toISOString();
  }
  const read = readLabel(bundle, label);
  if (!read.ok) return { ok: false, message: `label: ${read.message}` };
  return { ok: true, outcome: normalizedTime ? { id, label: read.label, time: normalizedTime } : { id, label: read.label } };
}

export type ReadLabel = { ok: true; label: string } | { ok: false; message: string };

/**
 * A label as the bundle names it: every way a label arrives (an outcome, a labelled data set
 * for `rtml profile`) is read here. For a classifier, a class name, a class index (0, 1, …,
 * as in training; a number or its digits) or, for a binary one, a boolean or the text
 * true/false (true = the positive class); for a regression, a number or its text.
 */
export function readLabel(bundle: Bundle, label: unknown): ReadLabel {
  const outputs = bundle.manifest.outputs;
  const shown = JSON.stringify(label)?.slice(0, 40);
  if (outputs && outputs.type !== 'regression') {
    const classes: readonly string[] = outputs.classes;
    const positive = positiveLabel(bundle);
    if (typeof label === 'string' && classes.includes(label)) return { ok: true, label };
    if (typeof label === 'number' && Number.isInteger(label) && label >= 0 && label < classes.length) return { ok: true, label: classes[label] };
    if (typeof label === 'string' && /^\d+$/.test(label) && Number(label) < classes.length) return { ok: true, label: classes[Number(label)] };
    // CSV has no booleans: pandas writes True/False.
    const flag = typeof label === 'boolean' ? label : typeof label === 'string' && /^(true|false)$/i.test(label) ? label.toLowerCase() === 'true' : undefined;
    if (flag !== undefined && positive !== null) return { ok: true, label: flag ? positive : classes.find((c) => c !== positive)! };
    return { ok: false, message: `must be one of ${classes.join(', ')} (or its index${positive ? ', or true/false' : ''}); got ${shown}` };
  }
  const v = typeof label === 'string' && label.trim() !== '' ? Number(label) : label;
  if (typeof v !== 'number' || !Number.isFinite(v)) return { ok: false, message: `must be a number; got ${shown}` };
  return { ok: true, label: String(v) };
}

/** The positive class of a binary classifier (a label that is it counts 1), else null. */
export function positiveLabel(bundle: Bundle): string | null {
  const outputs = bundle.manifest.outputs;
  return outputs?.type === 'binary' ? (outputs.positive_class ?? outputs.classes[1]) : null;
}
