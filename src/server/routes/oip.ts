/**
 * The Open Inference Protocol (KServe V2) over REST, for tensor-level callers and existing
 * clients: health, server and model metadata, readiness, infer, and the model_repository
 * and statistics extensions. Errors are `{"error": "..."}`.
 *
 * Inputs are one tensor per feature, named as the bundle's features, `shape [n]` or
 * `[n, 1]`: they go through the same validation and encoding as every other mode.
 * Outputs are one tensor per output column.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import type { FeatureSpec } from '../../bundle/manifest.ts';
import type { ServerContext } from '../app.ts';
import { closest } from '../../config/names.ts';
import { issuesOf } from '../bodies.ts';
import { PROBE_ROUTE, SCORING_ROUTE } from '../overload.ts';
import { ServiceLoadError, type Service, type ServiceVersion } from '../repository.ts';
import { isOperationsUnavailable } from '../../ops/types.ts';

const SERVER_VERSION = '0.1.0';
const EXTENSIONS = ['model_repository', 'statistics'];

const modelParams = z.object({ name: z.string(), version: z.string().optional() });

const tensor = z.object({
  name: z.string(),
  shape: z.array(z.number().int().nonnegative()).min(1).max(2),
  datatype: z.enum(['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'BYTES']),
  parameters: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
  data: z.array(z.unknown()),
});
const inferRequest = z.object({
  id: z.string().optional(),
  parameters: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
  inputs: z.array(tensor).min(1),
  outputs: z.array(z.object({ name: z.string(), parameters: z.record(z.string(), z.unknown()).optional() })).optional(),
});

function datatypeOf(f: FeatureSpec): string {
  switch (f.type) {
    case 'number':
      return 'FP64';
    case 'integer':
      return 'INT64';
    case 'boolean':
      return 'BOOL';
    case 'category':
      return 'BYTES';
  }
}

function platformOf(version: ServiceVersion): string {
  const format = version.bundle.model?.format;
  return format === 'onnx' ? 'onnx_onnxv1' : format === 'xgboost-json' ? 'xgboost_json' : 'rtml_rules';
}

/** Rows one infer request may carry (the body limit bounds it too). */
export const MAX_INFER_ROWS = 100_000;

/** A tensor's values in row order: `[n]` data as is, `[n, 1]` data flat or one level nested. Deeper arrays stay values (and fail validation). */
function flatten(data: unknown[], dims: number): unknown[] {
  return dims === 2 && data.some(Array.isArray) ? data.flat(1) : data;
}

export function registerOipRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { repository, metrics } = ctx;
  const error = (reply: FastifyReply, status: number, message: string) => reply.code(status).send({ error: message });

  /** The service and version a path names, or an error reply. */
  const resolve = (params: unknown, reply: FastifyReply): { service: Service; version: ServiceVersion } | null => {
    const { name, version } = modelParams.parse(params);
    const service = repository.get(name);
    if (!service) {
      void error(reply, 404, `no model named ${JSON.stringify(name)}`);
      return null;
    }
    const chosen = version === undefined ? service.defaultVersion : service.versions.get(version);
    if (!chosen) {
      void error(reply, 404, `model ${name} has no version ${JSON.stringify(version)}; versions: ${[...service.versions.keys()].join(', ')}`);
      return null;
    }
    return { service, version: chosen };
  };

  app.get('/v2/health/live', PROBE_ROUTE, async () => ({ live: true }));
  // Not ready once draining, so a load balancer stops sending before the listener closes.
  app.get('/v2/health/ready', PROBE_ROUTE, async (_request, reply) => (ctx.draining ? reply.code(503).send({ ready: false, draining: true }) : { ready: true }));
  app.get('/v2', async () => ({ name: 'rtml', version: SERVER_VERSION, extensions: EXTENSIONS }));

  const metadata = async (request: { params: unknown }, reply: FastifyReply) => {
    const target = resolve(request.params, reply);
    if (!target) return reply;
    const { service, version } = target;
    return {
      name: service.name,
      versions: [...service.versions.keys()],
      platform: platformOf(version),
      inputs: version.bundle.encoding.features.map((f) => ({ name: f.name, datatype: datatypeOf(f), shape: [-1] })),
      outputs: (version.bundle.outputs?.columns ?? []).map((c) => ({ name: c, datatype: c === 'class' ? 'BYTES' : 'FP64', shape: [-1] })),
    };
  };
  app.get('/v2/models/:name', metadata);
  app.get('/v2/models/:name/versions/:version', metadata);

  const ready = async (request: { params: unknown }, reply: FastifyReply) => {
    const target = resolve(request.params, reply);
    return target ? { name: target.service.name, ready: true } : reply;
  };
  app.get('/v2/models/:name/ready', ready);
  app.get('/v2/models/:name/versions/:version/ready', ready);

  const infer = async (request: { params: unknown; body: unknown }, reply: FastifyReply) => {
    const started = performance.now();
    const target = resolve(request.params, reply);
    if (!target) return reply;
    const { service, version } = target;
    const stats = version.stats;
    const failed = (status: number, message: string) => {
      stats.fail.count++;
      stats.fail.ns += Math.round((performance.now() - started) * 1e6);
      metrics.observeInfer(service.name, version.version, (performance.now() - started) / 1000, false);
      return error(reply, status, message);
    };
    const scorer = version.scorer;
    if (!scorer) return failed(400, `${service.name} is a rules-only service: it has no model to infer with; use POST /v1/services/${service.name}/decisions`);
    const parsed = inferRequest.safeParse(request.body);
    if (!parsed.success) {
      const [issue] = issuesOf(parsed.error, 1);
      return failed(400, `invalid inference request: ${issue.field}: ${issue.message}`);
    }
    const body = parsed.data;

    // Tensors → rows: each input is one feature's column. Shapes are checked against the data
    // actually sent before anything is allocated from them.
    const features = version.bundle.encoding.features.map((f) => f.name);
    const known = new Set(features);
    const rowsCount = body.inputs[0].shape[0];
    if (rowsCount > MAX_INFER_ROWS) return failed(400, `input ${body.inputs[0].name} has ${rowsCount} rows; at most ${MAX_INFER_ROWS} a request`);
    const tensors = new Map<string, unknown[]>();
    for (const input of body.inputs) {
      if (!known.has(input.name)) {
        const close = closest(input.name, features);
        return failed(400, `unexpected input ${JSON.stringify(input.name.slice(0, 100))}${close ? ` (did you mean ${close}?)` : ''}: inputs are the features ${features.join(', ')}`);
      }
      if (tensors.has(input.name)) return failed(400, `input ${input.name} is given twice`);
      const [n, width = 1] = input.shape;
      if (n !== rowsCount || width !== 1) return failed(400, `input ${input.name} has shape [${input.shape}]; every input must be [${rowsCount}] or [${rowsCount}, 1]`);
      const data = flatten(input.data, input.shape.length);
      if (data.length !== n) return failed(400, `input ${input.name} has ${data.length} values for shape [${input.shape}]`);
      tensors.set(input.name, data);
    }
    // Every feature is an input, as the protocol has it: one left out would score as missing.
    const absent = features.filter((f) => !tensors.has(f));
    if (absent.length > 0) return failed(400, `missing input${absent.length > 1 ? 's' : ''} ${absent.join(', ')}: every feature is an input; send null for missing values`);
    const rows: Record<string, unknown>[] = new Array(rowsCount);
    for (let i = 0; i < rowsCount; i++) {
      const row: Record<string, unknown> = Object.create(null);
      for (const [name, data] of tensors) row[name] = data[i];
      rows[i] = row;
    }

    const scored = await scorer.scoreRows(rows);
    const problems = scored.outcomes.flatMap((o, i) => (o.ok ? [] : o.errors.map((e) => `row ${i}: ${e.message}`)));
    if (problems.length > 0) return failed(400, problems.slice(0, 20).join('; '));

    const columns = scorer.outputColumns;
    const wanted = body.outputs?.map((o) => o.name) ?? columns;
    const unknownOutput = wanted.find((w) => !columns.includes(w));
    if (unknownOutput !== undefined) return failed(400, `unknown output ${JSON.stringify(unknownOutput)}; outputs: ${columns.join(', ')}`);
    const outputs = wanted.map((name) => {
      const j = columns.indexOf(name);
      const data = scored.outcomes.map((o) => (o.ok ? o.outputs[j] : null));
      return { name, shape: [rowsCount], datatype: typeof data[0] === 'string' ? 'BYTES' : 'FP64', data };
    });

    stats.inferenceCount += rowsCount;
    stats.executionCount++;
    stats.lastInference = Date.now();
    stats.success.count++;
    stats.success.ns += Math.round((performance.now() - started) * 1e6);
    metrics.observeInfer(service.name, version.version, (performance.now() - started) / 1000, true);
    return { model_name: service.name, model_version: version.version, id: body.id ?? '', outputs };
  };
  const inferOptions = { ...SCORING_ROUTE, preHandler: ctx.auth.decide };
  app.post('/v2/models/:name/infer', inferOptions, infer);
  app.post('/v2/models/:name/versions/:version/infer', inferOptions, infer);

  // Statistics extension (Triton's shape).
  const statsOf = (service: Service, only?: string) =>
    [...service.versions.values()]
      .filter((v) => only === undefined || v.version === only)
      .map((v) => ({
        name: service.name,
        version: v.version,
        last_inference: v.stats.lastInference,
        inference_count: v.stats.inferenceCount,
        execution_count: v.stats.executionCount,
        inference_stats: { success: v.stats.success, fail: v.stats.fail },
      }));
  app.get('/v2/models/stats', async () => ({ model_stats: repository.list().flatMap((s) => statsOf(s)) }));
  const modelStats = async (request: { params: unknown }, reply: FastifyReply) => {
    const target = resolve(request.params, reply);
    if (!target) return reply;
    const { version } = modelParams.parse(request.params);
    return { model_stats: statsOf(target.service, version) };
  };
  app.get('/v2/models/:name/stats', modelStats);
  app.get('/v2/models/:name/versions/:version/stats', modelStats);

  // Model repository extension: admin operations all three (the index tells why a bundle did
  // not load, which can quote the files on disk).
  app.post('/v2/repository/index', { preHandler: ctx.auth.admin }, async () => repository.index());
  app.post('/v2/repository/models/:name/load', { preHandler: ctx.auth.admin }, async (request, reply) => {
    const { name } = modelParams.parse(request.params);
    try {
      const service = await repository.load(name);
      // Recorded once it serves here: the other replicas load it from their own repository, and
      // a service unloaded before is loaded again after a restart.
      try {
        await ctx.operations.setLoaded(name, { loaded: true, by: 'admin' });
      } catch (err) {
        if (!isOperationsUnavailable(err)) throw err;
        return reply.code(503).header('retry-after', '1').send({ error: `${name} loaded here, but not recorded for the other replicas (${err.message}): retry` });
      }
      return { name, versions: [...service.versions.keys()], default_version: service.defaultVersion.version };
    } catch (err) {
      if (err instanceof ServiceLoadError) return error(reply, 400, `load refused, the loaded version (if any) keeps serving: ${err.message}`);
      throw err;
    }
  });
  app.post('/v2/repository/models/:name/unload', { preHandler: ctx.auth.admin }, async (request, reply) => {
    const { name } = modelParams.parse(request.params);
    if (!repository.get(name)) return error(reply, 404, `no model named ${JSON.stringify(name)} is loaded`);
    // Recorded first: if the store cannot take it (503), nothing changed anywhere.
    await ctx.operations.setLoaded(name, { loaded: false, by: 'admin' });
    repository.unload(name);
    return { name, unloaded: true };
  });
}
