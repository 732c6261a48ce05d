/**
 * Gathering a request's features: everything the caller did not send is fetched from its
 * source (entity fields, stream aggregates, HTTP services) in parallel, each under the
 * request's feature deadline, then derived features are computed in dependency order. A
 * source that is slow, failing, stale or empty yields the feature's default and says so
 * in the feature's status: nothing missing is hidden.
 */
import { buildEncoding, type FieldError, type RawRow } from '../bundle/encoding.ts';
import type { FeatureSpec, Manifest } from '../bundle/manifest.ts';
import { compileExpr, type CompiledExpr } from '../decision/index.ts';
import { failureStatus, parseDuration, type AggregateQuery, type FeatureReader, type FeatureStatus, type SourcesSpec } from './types.ts';

export interface ResolvedFeatures {
  /** The request's fields with every sourced feature filled in (value or default). */
  row: Record<string, unknown>;
  /** Status of each sourced feature. */
  status: Record<string, FeatureStatus>;
}

export interface ResolverProblem {
  path: string;
  rule: string;
}

type Plan =
  | { kind: 'aggregate'; feature: FeatureSpec; stream: string; keyField: string; fn: AggregateQuery['fn']; field?: string; windowMs: number }
  | { kind: 'entity'; feature: FeatureSpec; entity: string; keyField: string; field: string; ttlMs: number | null }
  | { kind: 'http'; feature: FeatureSpec; url: string; field: string; timeoutMs: number }
  | { kind: 'derived'; feature: FeatureSpec; expr: CompiledExpr };

export interface FeatureResolver {
  /** Features that come from somewhere other than the request. */
  readonly sourced: ReadonlySet<string>;
  /** Request fields the sources need (entity keys). */
  readonly keys: readonly string[];
  /** Largest aggregate window per stream: what a store must retain. */
  readonly windows: ReadonlyMap<string, number>;
  resolve(request: RawRow, at: number, store: FeatureReader | null): Promise<ResolvedFeatures>;
}

const defaultOf = (f: FeatureSpec): unknown => (f.default !== undefined ? f.default : null);

/** An HTTP source's answer is read up to this size; a larger one is the source failing. */
export const MAX_HTTP_SOURCE_BYTES = 1024 * 1024;

/** Reads a JSON answer, refusing (with an error) one that announces or turns out larger than `limit` bytes. */
async function readJsonBounded(res: Response, limit: number): Promise<unknown> {
  const declared = Number(res.headers.get('content-length'));
  if (declared > limit) {
    await res.body?.cancel();
    throw new Error(`answer of ${declared} bytes`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body ?? []) {
    size += chunk.length;
    if (size > limit) throw new Error(`answer over ${limit} bytes`);
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

/** Whether a sourced value passes its feature's checks (type, range, category), by the encoding itself. */
function validatorOf(f: FeatureSpec): (value: unknown) => boolean {
  const encode = buildEncoding([f]).encoder({ fromText: false });
  const scratch = new Float32Array(buildEncoding([f]).width);
  const errors: FieldError[] = [];
  return (value) => {
    errors.length = 0;
    encode({ [f.name]: value }, scratch, 0, errors);
    return errors.length === 0;
  };
}

/** Plans the sources of a manifest's features, checking every reference; problems instead of a resolver when something is wrong. */
export function buildResolver(manifest: Manifest, features: readonly FeatureSpec[]): { resolver: FeatureResolver | null; problems: ResolverProblem[] } {
  const problems: ResolverProblem[] = [];
  const sources: SourcesSpec = manifest.sources ?? { entities: {}, streams: {}, deadline_ms: 50 };
  const plans: Plan[] = [];
  const windows = new Map<string, number>();
  const names = new Set(features.map((f) => f.name));
  features.forEach((f, i) => {
    const s = f.source;
    if (!s) return;
    const path = `features[${i}].source`;
    if ('aggregate' in s) {
      const stream = sources.streams[s.aggregate];
      if (!stream) return problems.push({ path: `${path}.aggregate`, rule: `no stream ${JSON.stringify(s.aggregate)} under sources.streams` });
      const entity = sources.entities[stream.entity];
      if (!entity) return problems.push({ path: `sources.streams.${s.aggregate}.entity`, rule: `no entity ${JSON.stringify(stream.entity)} under sources.entities` });
      if (s.fn !== 'count' && !s.field) return problems.push({ path, rule: `${s.fn} needs the event field it aggregates` });
      if (s.field && !(s.field in stream.fields)) return problems.push({ path: `${path}.field`, rule: `stream ${s.aggregate} declares no field ${JSON.stringify(s.field)}` });
      const windowMs = parseDuration(s.window);
      windows.set(s.aggregate, Math.max(windows.get(s.aggregate) ?? 0, windowMs));
      plans.push({ kind: 'aggregate', feature: f, stream: s.aggregate, keyField: entity.key, fn: s.fn, field: s.field, windowMs });
    } else if ('entity' in s) {
      const entity = sources.entities[s.entity];
      if (!entity) return problems.push({ path: `${path}.entity`, rule: `no entity ${JSON.stringify(s.entity)} under sources.entities` });
      plans.push({ kind: 'entity', feature: f, entity: s.entity, keyField: entity.key, field: s.field, ttlMs: s.ttl ? parseDuration(s.ttl) : null });
    } else if ('http' in s) {
      plans.push({ kind: 'http', feature: f, url: s.http, field: s.field, timeoutMs: s.timeout_ms });
    } else {
      try {
        const expr = compileExpr(s.derived, { knownNames: [...names, ...manifest.keys], result: 'any' });
        if (expr.names.includes(f.name)) return problems.push({ path: `${path}.derived`, rule: 'a derived feature cannot use itself' });
        plans.push({ kind: 'derived', feature: f, expr });
      } catch (err) {
        problems.push({ path: `${path}.derived`, rule: (err as Error).message });
      }
    }
  });
  for (const entity of Object.values(sources.entities)) {
    if (!manifest.keys.includes(entity.key) && plans.some((p) => (p.kind === 'aggregate' || p.kind === 'entity') && p.keyField === entity.key)) {
      problems.push({ path: 'keys', rule: `list ${JSON.stringify(entity.key)}: the request field that identifies the entity` });
    }
  }
  // Derived features run in dependency order; a cycle is a configuration error.
  const derived = plans.filter((p): p is Extract<Plan, { kind: 'derived' }> => p.kind === 'derived');
  const ordered: typeof derived = [];
  const pending = new Set(derived.map((d) => d.feature.name));
  while (pending.size > 0) {
    const ready = derived.filter((d) => pending.has(d.feature.name) && d.expr.names.every((n) => !pending.has(n)));
    if (ready.length === 0) {
      problems.push({ path: 'features', rule: `derived features depend on each other in a cycle: ${[...pending].join(', ')}` });
      break;
    }
    for (const d of ready) {
      ordered.push(d);
      pending.delete(d.feature.name);
    }
  }
  if (problems.length > 0) return { resolver: null, problems };
  if (plans.length === 0) return { resolver: null, problems: [] };

  const fetched = plans.filter((p): p is Exclude<Plan, { kind: 'derived' }> => p.kind !== 'derived');
  const deadlineMs = sources.deadline_ms;
  const validators = new Map(plans.map((p) => [p.feature, validatorOf(p.feature)]));
  const fits = (f: FeatureSpec, value: unknown) => validators.get(f)!(value);

  const resolve = async (request: RawRow, at: number, store: FeatureReader | null): Promise<ResolvedFeatures> => {
    const row: Record<string, unknown> = { ...request };
    const status: Record<string, FeatureStatus> = {};
    const fill = (f: FeatureSpec, value: unknown, ok: FeatureStatus) => {
      if (value === null || value === undefined) {
        row[f.name] = defaultOf(f);
        status[f.name] = f.default !== undefined ? 'default' : 'missing';
      } else if (!fits(f, value)) {
        // A source that answers nonsense (text for a number, out of range) is the source's
        // fault, not the caller's: its default stands in and the status says so.
        row[f.name] = defaultOf(f);
        status[f.name] = 'error';
      } else {
        row[f.name] = value;
        status[f.name] = ok;
      }
    };
    const fail = (f: FeatureSpec, why: FeatureStatus) => {
      row[f.name] = defaultOf(f);
      status[f.name] = why;
    };
    const key = (field: string) => {
      const v = request[field];
      return typeof v === 'string' || typeof v === 'number' ? String(v) : null;
    };

    const deadline = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), deadlineMs).unref());
    const withDeadline = <T>(p: Promise<T>) => Promise.race([p, deadline]);
    const tasks: Promise<void>[] = [];

    const aggregates = fetched.filter((p): p is Extract<Plan, { kind: 'aggregate' }> => p.kind === 'aggregate');
    if (aggregates.length > 0) {
      const queries: AggregateQuery[] = [];
      const asked: typeof aggregates = [];
      for (const p of aggregates) {
        const k = key(p.keyField);
        if (k === null || !store) fail(p.feature, 'missing');
        else {
          queries.push({ stream: p.stream, key: k, fn: p.fn, field: p.field, windowMs: p.windowMs, at });
          asked.push(p);
        }
      }
      if (queries.length > 0) {
        tasks.push(
          withDeadline(store!.aggregates(queries)).then(
            (values) => {
              if (values === 'timeout') asked.forEach((p) => fail(p.feature, 'timeout'));
              else asked.forEach((p, i) => fill(p.feature, values[i], 'present'));
            },
            (err: unknown) => asked.forEach((p) => fail(p.feature, failureStatus(err))),
          ),
        );
      }
    }

    const byEntity = new Map<string, Extract<Plan, { kind: 'entity' }>[]>();
    for (const p of fetched) if (p.kind === 'entity') byEntity.set(p.entity, [...(byEntity.get(p.entity) ?? []), p]);
    for (const [entity, group] of byEntity) {
      const id = key(group[0].keyField);
      if (id === null || !store) {
        group.forEach((p) => fail(p.feature, 'missing'));
        continue;
      }
      tasks.push(
        withDeadline(store.getEntity(entity, id, group.map((p) => p.field))).then(
          (values) => {
            if (values === 'timeout') return group.forEach((p) => fail(p.feature, 'timeout'));
            group.forEach((p, i) => {
              const v = values[i];
              // TTL is enforced on read: an old value is not served as if it were fresh.
              if (v && p.ttlMs !== null && at - v.updatedAt > p.ttlMs) fail(p.feature, 'stale');
              else fill(p.feature, v?.value ?? null, 'present');
            });
          },
          (err: unknown) => group.forEach((p) => fail(p.feature, failureStatus(err))),
        ),
      );
    }

    for (const p of fetched) {
      if (p.kind !== 'http') continue;
      // Placeholders like {card_id} take the request's values, URL-encoded. A missing one asks
      // nothing; `.` and `..` would climb the service's paths (URLs resolve them even encoded).
      let unusable: FeatureStatus | null = null;
      const url = p.url.replace(/%7B(\w+)%7D|\{(\w+)\}/g, (_, a: string | undefined, b: string | undefined) => {
        const v = request[(a ?? b)!];
        if (v === undefined || v === null || v === '') unusable ??= 'missing';
        else if (typeof v !== 'string' && typeof v !== 'number') unusable ??= 'error';
        else if (/^(\.|%2e){1,2}$/i.test(String(v))) unusable ??= 'error';
        return encodeURIComponent(String(v ?? ''));
      });
      if (unusable !== null) {
        fail(p.feature, unusable);
        continue;
      }
      const timeout = Math.min(p.timeoutMs, deadlineMs);
      tasks.push(
        fetch(url, { signal: AbortSignal.timeout(timeout) })
          .then(async (res) => {
            if (!res.ok) {
              await res.body?.cancel();
              return fail(p.feature, 'error');
            }
            const body = await readJsonBounded(res, MAX_HTTP_SOURCE_BYTES);
            if (typeof body !== 'object' || body === null || Array.isArray(body)) return fail(p.feature, 'error');
            fill(p.feature, Object.hasOwn(body, p.field) ? (body as Record<string, unknown>)[p.field] : null, 'present');
          })
          .catch((err: Error) => fail(p.feature, err.name === 'TimeoutError' || err.name === 'AbortError' ? 'timeout' : 'error')),
      );
    }

    await Promise.all(tasks);
    for (const d of ordered) {
      const value = d.expr.evaluate(row);
      fill(d.feature, typeof value === 'number' && !Number.isFinite(value) ? null : value, 'present');
    }
    return { row, status };
  };

  return { resolver: { sourced: new Set(plans.map((p) => p.feature.name)), keys: manifest.keys, windows, resolve }, problems: [] };
}
