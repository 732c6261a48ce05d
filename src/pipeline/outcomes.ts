/**
 * Outcomes: the truth about a decision, arriving later. Every way in (one at a time over
 * HTTP, JSON lines over HTTP, a file through the CLI) goes through `parseOutcome`, which
 * normalises the label to the bundle's class names, then into the decision log.
 */
import type { Bundle } from '../bundle/load.ts';
import type { Outcome } from '../log/types.ts';

export type ParsedOutcome = { ok: true; outcome: Outcome } | { ok: false; message: string };

const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/**
 * Accepts `{id, label, time?}`. For a classifier the label is a class name, a class index
 * (0, 1, …, as in training) or, for a binary one, a boolean (true = the positive class);
 * for a regression it is a number.
 */
export function parseOutcome(bundle: Bundle, value: unknown): ParsedOutcome {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, message: 'an outcome is a JSON object {id, label, time?}' };
  const { id, label, time } = value as Record<string, unknown>;
  if (typeof id !== 'string' || id.length === 0 || id.length > 128) return { ok: false, message: 'id: must be the decision id, a string of 1-128 characters' };
  let normalizedTime: string | undefined;
  if (time !== undefined && time !== null && time !== '') {
    if (typeof time !== 'string' || !TIME.test(time) || Number.isNaN(Date.parse(time))) return { ok: false, message: 'time: must be an ISO 8601 date-time with a zone, e.g. 2026-03-01T12:00:00Z' };
    normalizedTime = new Date(time).toISOString();
  }
  const outputs = bundle.manifest.outputs;
  let text: string;
  if (outputs && outputs.type !== 'regression') {
    const classes: readonly string[] = outputs.classes;
    const positive = outputs.type === 'binary' ? (outputs.positive_class ?? outputs.classes[1]) : null;
    if (typeof label === 'string' && classes.includes(label)) text = label;
    else if (typeof label === 'number' && Number.isInteger(label) && label >= 0 && label < classes.length) text = classes[label];
    else if (typeof label === 'string' && /^\d+$/.test(label) && Number(label) < classes.length) text = classes[Number(label)];
    else if (typeof label === 'boolean' && positive !== null) text = label ? positive : classes.find((c) => c !== positive)!;
    else return { ok: false, message: `label: must be one of ${classes.join(', ')} (or its index${positive ? ', or true/false' : ''}); got ${JSON.stringify(label)?.slice(0, 40)}` };
  } else {
    const v = typeof label === 'string' && label.trim() !== '' ? Number(label) : label;
    if (typeof v !== 'number' || !Number.isFinite(v)) return { ok: false, message: `label: must be a number; got ${JSON.stringify(label)?.slice(0, 40)}` };
    text = String(v);
  }
  return { ok: true, outcome: normalizedTime ? { id, label: text, time: normalizedTime } : { id, label: text } };
}

/** 1 when an outcome's label is the bundle's positive class (binary classifiers), else 0. */
export function positiveLabel(bundle: Bundle): string | null {
  const outputs = bundle.manifest.outputs;
  return outputs?.type === 'binary' ? (outputs.positive_class ?? outputs.classes[1]) : null;
}
