/**
 * Ingestion's edge: raw events and entity updates (JSON from HTTP, rows from a file) are
 * checked against the stream's declaration once, here, and become typed StreamEvents.
 */
import type { Bundle } from '../bundle/load.ts';
import { parseDuration, type StreamEvent, type SourcesSpec } from './types.ts';
import { nearMisses } from '../config/names.ts';

export type StreamSpec = SourcesSpec['streams'][string];

/** A stream as ingestion needs it: its declaration, the entity key field, retention. */
export interface StreamDefinition {
  name: string;
  spec: StreamSpec;
  keyField: string;
  latenessMs: number;
  /** Largest window any feature reads from the stream, plus lateness. */
  retentionMs: number;
}

/** The streams the given bundles declare; the first declaration of a name wins, later different ones are reported. */
export function streamsOf(bundles: readonly Bundle[]): { streams: Map<string, StreamDefinition>; conflicts: string[] } {
  const streams = new Map<string, StreamDefinition>();
  const conflicts: string[] = [];
  for (const bundle of bundles) {
    const sources = bundle.manifest.sources;
    if (!sources) continue;
    for (const [name, spec] of Object.entries(sources.streams)) {
      const keyField = sources.entities[spec.entity]?.key;
      if (!keyField) continue;
      const latenessMs = parseDuration(spec.lateness);
      const windowMs = bundle.sources?.windows.get(name) ?? 0;
      const existing = streams.get(name);
      if (existing) {
        if (JSON.stringify(existing.spec) !== JSON.stringify(spec) || existing.keyField !== keyField) conflicts.push(`${bundle.name} declares stream ${name} differently; the first declaration is used`);
        existing.retentionMs = Math.max(existing.retentionMs, windowMs + latenessMs);
        continue;
      }
      streams.set(name, { name, spec, keyField, latenessMs, retentionMs: windowMs + latenessMs });
    }
  }
  return { streams, conflicts };
}

export type ParsedEvent = { ok: true; event: StreamEvent } | { ok: false; message: string };

const MAX_FUTURE_MS = 5 * 60_000;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const NUMBER_TEXT = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;

/** Reads one event; `fromText` for CSV cells. Names the field and the rule when it fails. */
export function parseEvent(stream: StreamDefinition, raw: unknown, fromText = false): ParsedEvent {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, message: 'an event is a JSON object' };
  const r = raw as Record<string, unknown>;
  const { spec, keyField } = stream;
  const key = r[keyField];
  if ((typeof key !== 'string' && typeof key !== 'number') || key === '') return { ok: false, message: `${keyField}: required, the ${spec.entity} the event belongs to` };
  const id = r[spec.id];
  if ((typeof id !== 'string' && typeof id !== 'number') || id === '') return { ok: false, message: `${spec.id}: required, a unique event id` };
  const t = r[spec.time];
  let time: number;
  if (typeof t === 'number' && Number.isFinite(t)) time = t;
  else if (typeof t === 'string' && ISO.test(t)) time = Date.parse(t);
  else if (typeof t === 'string' && fromText && /^\d+$/.test(t)) time = Number(t);
  else return { ok: false, message: `${spec.time}: required, an ISO 8601 date-time with a zone or epoch milliseconds` };
  if (!Number.isFinite(time)) return { ok: false, message: `${spec.time}: not a valid time` };
  // One event stamped far in the future would move the stream's watermark and make every real event late.
  if (time > Date.now() + MAX_FUTURE_MS) return { ok: false, message: `${spec.time}: more than 5 minutes in the future` };
  const fields: Record<string, number | string | null> = {};
  const declared = Object.entries(spec.fields);
  // A declared field that is absent while the event carries one just like it (`Amount` for
  // `amount`) is a typo that would aggregate as missing: the event is refused.
  const absent = declared.filter(([name]) => r[name] === undefined || r[name] === null).map(([name]) => name);
  if (absent.length > 0) {
    const expected = new Set([...declared.map(([name]) => name), keyField, spec.id, spec.time]);
    const misses = nearMisses(absent, Object.keys(r).filter((k) => !expected.has(k)));
    for (const [name, given] of misses) return { ok: false, message: `${given}: not a field of stream ${stream.name}: did you mean ${name}? (${name} is missing)` };
  }
  for (const [name, type] of declared) {
    const v = r[name];
    if (v === undefined || v === null || (fromText && v === '')) fields[name] = null;
    else if (type === 'number') {
      const n = typeof v === 'number' ? v : fromText && typeof v === 'string' && NUMBER_TEXT.test(v) ? Number(v) : NaN;
      if (!Number.isFinite(n)) return { ok: false, message: `${name}: must be a finite number, got ${JSON.stringify(v)?.slice(0, 40)}` };
      fields[name] = n;
    } else {
      if (typeof v !== 'string' && typeof v !== 'number') return { ok: false, message: `${name}: must be a string, got ${JSON.stringify(v)?.slice(0, 40)}` };
      fields[name] = String(v);
    }
  }
  return { ok: true, event: { stream: stream.name, key: String(key), id: String(id), time, fields } };
}

/** Bounds on one entity update: what a store row may hold. */
export const MAX_ENTITY_FIELDS = 256;
export const MAX_ENTITY_STRING = 4096;

/** The fields of an entity type that some feature of these bundles reads. */
export function entityFieldsRead(bundles: readonly Bundle[], type: string): Set<string> {
  const read = new Set<string>();
  for (const bundle of bundles) {
    for (const f of bundle.manifest.features ?? []) {
      if (f.source && 'entity' in f.source && f.source.entity === type) read.add(f.source.field);
    }
  }
  return read;
}

export type ParsedEntityFields = { ok: true; fields: Record<string, number | string | boolean | null>; unread: string[] } | { ok: false; message: string };

/**
 * Entity fields as a PUT body carries them: flat scalars only, bounded. Fields no feature reads
 * are kept but listed in `unread`; one that looks like a field a feature reads but is not it
 * (`Account_Age` for `account_age`) is refused, since the feature would silently stay missing.
 */
export function parseEntityFields(raw: unknown, read: ReadonlySet<string> = new Set()): ParsedEntityFields {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, message: 'the body must be a JSON object of entity fields' };
  const fields: Record<string, number | string | boolean | null> = {};
  let count = 0;
  for (const k in raw) {
    if (!Object.hasOwn(raw, k)) continue;
    if (++count > MAX_ENTITY_FIELDS) return { ok: false, message: `at most ${MAX_ENTITY_FIELDS} fields in one update` };
    const v = (raw as Record<string, unknown>)[k];
    if (k.length === 0 || k.length > 200) return { ok: false, message: `field names must be 1-200 characters` };
    // Assigned onto a plain object, `__proto__` would set its prototype and vanish as a field.
    if (k === '__proto__') return { ok: false, message: '__proto__ cannot be a field name' };
    if (typeof v === 'string' && v.length > MAX_ENTITY_STRING) return { ok: false, message: `${k}: at most ${MAX_ENTITY_STRING} characters` };
    if (v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))) fields[k] = v;
    else return { ok: false, message: `${k}: must be a string, a finite number, a boolean or null` };
  }
  if (count === 0) return { ok: false, message: 'no fields to store' };
  const unread = Object.keys(fields).filter((k) => !read.has(k));
  const misses = nearMisses([...read].filter((k) => !(k in fields)), unread);
  for (const [name, given] of misses) return { ok: false, message: `${given}: no feature reads it: did you mean ${name}?` };
  return { ok: true, fields, unread };
}
