/**
 * The `rtml` command line. Each command is a thin shell over a stage's front door:
 * `check` (bundle + golden parity), `score` (batch scoring of a file), `inspect`.
 * Exit status: 0 success, 1 some rows or checks failed, 2 the command could not run.
 */
import { Command, InvalidArgumentError } from 'commander';
import { createWriteStream } from 'node:fs';
import { SingleBar } from 'cli-progress';
import { BundleError, loadBundle, loadModelBundle, type Bundle } from '../bundle/load.ts';
import { checkGolden } from '../bundle/golden.ts';
import { scoreFile, type FileFormat, type RowFailure } from '../batch/score-file.ts';
import { readFileSync } from 'node:fs';
import { openSqliteDecisionLog } from '../log/sqlite.ts';
import { createServer, DEFAULT_CONFIG, type FeatureStoreFactory } from '../server/app.ts';
import { openEmbeddedFeatureStore } from '../features/embedded.ts';
import { buildProfile, writeProfile } from '../monitor/profile.ts';
import { openRecords } from '../batch/records.ts';
import { parseOutcome } from '../pipeline/outcomes.ts';
import { parsePerturbation, simulate } from '../monitor/simulate.ts';
import { backfillFile, exportLogged } from '../batch/features.ts';
import { parseEntityFields, parseEvent, streamsOf } from '../features/events.ts';
import type { StreamEvent } from '../features/types.ts';
import { textRowConverter } from '../decision/index.ts';
import type { Outcome } from '../log/types.ts';

const EXIT_FAILED = 1;
const EXIT_ERROR = 2;

async function openBundle<B extends Bundle>(dir: string, load: (dir: string) => Promise<B>): Promise<B> {
  try {
    return await load(dir);
  } catch (err) {
    if (err instanceof BundleError) {
      process.stderr.write(`rtml: invalid bundle ${dir}\n${err.message}\n`);
      process.exit(EXIT_ERROR);
    }
    throw err;
  }
}

function parseTolerance(value: string): number {
  const v = Number(value);
  if (!(v >= 0)) throw new InvalidArgumentError('must be a non-negative number');
  return v;
}

function parsePositiveInt(value: string): number {
  const v = Number(value);
  if (!Number.isInteger(v) || v < 0) throw new InvalidArgumentError('must be a whole number >= 0');
  return v;
}

/** `name=path` pairs, repeatable. */
function collectPairs(value: string, previous: Record<string, string>): Record<string, string> {
  const at = value.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError('use NAME=FILE');
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}

function parseFormat(value: string): FileFormat {
  if (value !== 'csv' && value !== 'jsonl') throw new InvalidArgumentError('must be csv or jsonl');
  return value;
}

function describeFailure(f: RowFailure): string {
  return `line ${f.line}: ${f.errors.map((e) => (e.field ? `${e.field}: ${e.rule}: ${e.message}` : e.message)).join('; ')}`;
}

export function buildProgram(): Command {
  const program = new Command()
    .name('rtml')
    .description('Serve, score and check trained ML model bundles')
    .showHelpAfterError()
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT_ERROR));

  program
    .command('check')
    .description("load a bundle, validate it and score its golden set against the training library's predictions")
    .argument('<bundle>', 'bundle directory (holds rtml.yaml)')
    .option('--tolerance <t>', 'largest allowed difference (absolute for probabilities, relative for values)', parseTolerance, 1e-6)
    .action(async (dir: string, opts: { tolerance: number }) => {
      const bundle = await openBundle(dir, loadModelBundle);
      const info = Object.entries(bundle.model.info).map(([k, v]) => `${k}=${v}`).join(' ');
      process.stdout.write(`bundle ${bundle.name} v${bundle.version}: ${bundle.model.format} (${info}), ${bundle.encoding.features.length} features → ${bundle.encoding.width} model columns\n`);
      if (!bundle.goldenPath) {
        process.stdout.write('no golden file: the bundle loads and validates; parity not checked\n');
        return;
      }
      const report = await checkGolden(bundle, opts.tolerance);
      for (const f of report.failures.slice(0, 20)) process.stdout.write(`  golden line ${f.line}: ${f.reason}\n`);
      if (report.failures.length > 20) process.stdout.write(`  … ${report.failures.length - 20} more\n`);
      const verdict = report.failures.length === 0 ? 'PASS' : 'FAIL';
      process.stdout.write(
        `${verdict}: ${report.rows} golden rows, largest ${report.measure} difference ${report.maxDiff.toExponential(3)}` +
          `${report.worstLine ? ` (line ${report.worstLine})` : ''}, tolerance ${opts.tolerance}\n`,
      );
      await bundle.model.close?.();
      if (report.failures.length > 0) process.exitCode = EXIT_FAILED;
    });

  program
    .command('score')
    .description('score a CSV or JSON-lines file with a bundle, streaming; bad rows are reported by line and skipped')
    .argument('<bundle>', 'bundle directory')
    .requiredOption('-i, --input <file>', 'input file (.csv, .jsonl), or - for standard input')
    .requiredOption('-o, --output <file>', 'output file (.csv, .jsonl), or - for standard output')
    .option('--input-format <format>', 'csv or jsonl (default: from the file name)', parseFormat)
    .option('--output-format <format>', 'csv or jsonl (default: from the file name)', parseFormat)
    .option('--errors <file>', 'write every rejected row as a JSON line {line, errors}')
    .option('--no-decisions', "only the model's outputs, without the policy's decision columns")
    .option('--quiet', 'no progress bar or per-row error lines')
    .action(async (dir: string, opts: { input: string; output: string; inputFormat?: FileFormat; outputFormat?: FileFormat; errors?: string; quiet?: boolean; decisions: boolean }) => {
      const bundle = await openBundle(dir, loadModelBundle);
      const errorsOut = opts.errors ? createWriteStream(opts.errors) : null;
      const shownLimit = 20;
      let shown = 0;
      const bar = !opts.quiet && process.stderr.isTTY ? new SingleBar({ format: 'scoring [{bar}] {percentage}% | {rows} rows | {eta_formatted} left', hideCursor: true, stream: process.stderr }) : null;
      bar?.start(100, 0, { rows: 0 });
      let summary;
      try {
        summary = await scoreFile(bundle, {
          input: opts.input,
          output: opts.output,
          inputFormat: opts.inputFormat,
          outputFormat: opts.outputFormat ?? (opts.output === '-' ? opts.inputFormat : undefined),
          decisions: opts.decisions,
          onFailure: (failure) => {
            errorsOut?.write(JSON.stringify(failure) + '\n');
            if (!opts.quiet && shown++ < shownLimit) process.stderr.write(`${bar ? '\n' : ''}${describeFailure(failure)}\n`);
          },
          onProgress: (read, total, rows) => bar?.update(total ? Math.min(100, Math.round((100 * read) / total)) : 0, { rows }),
        });
      } catch (err) {
        bar?.stop();
        process.stderr.write(`rtml score: ${(err as Error).message}\n`);
        process.exit(EXIT_ERROR);
      }
      bar?.update(100, { rows: summary.rows });
      bar?.stop();
      if (errorsOut) await new Promise((done) => errorsOut.end(done));
      if (shown > shownLimit) process.stderr.write(`… and ${shown - shownLimit} more rejected rows${opts.errors ? ` (all in ${opts.errors})` : ''}\n`);
      const rate = summary.seconds > 0 ? Math.round(summary.scored / summary.seconds) : summary.scored;
      process.stderr.write(`scored ${summary.scored} of ${summary.rows} rows, ${summary.failed} rejected, in ${summary.seconds.toFixed(2)} s (${rate} rows/s)\n`);
      await bundle.model.close?.();
      if (summary.failed > 0) process.exitCode = EXIT_FAILED;
    });

  program
    .command('inspect')
    .description("print a bundle's model, input schema and outputs as JSON")
    .argument('<bundle>', 'bundle directory')
    .action(async (dir: string) => {
      const bundle = await openBundle(dir, loadBundle);
      const description = {
        name: bundle.name,
        version: bundle.version,
        model: bundle.model ? { format: bundle.model.format, ...bundle.model.info } : null,
        features: bundle.encoding.features,
        model_columns: bundle.encoding.columns,
        outputs: bundle.outputs ? { ...bundle.manifest.outputs, columns: bundle.outputs.columns } : null,
        policy: bundle.policy ? { version: bundle.policy.version, actions: bundle.policy.actions, reason_codes: bundle.policy.reasonCodes } : null,
        golden: bundle.goldenPath !== null,
      };
      process.stdout.write(JSON.stringify(description, null, 2) + '\n');
      await bundle.model?.close?.();
    });

  program
    .command('profile')
    .description("measure the bundle's reference profile on a data set (usually its training data) and write reference.json into the bundle")
    .argument('<bundle>', 'bundle directory')
    .requiredOption('-d, --data <file>', 'reference data (.csv or .jsonl), through the same encoding, model and policy as live traffic')
    .option('--label <column>', 'label column, to record realized performance on the reference rows')
    .option('--positive <value>', "the label value of the positive class (default: the bundle's positive class)")
    .option('--holdout <file>', 'held-out rows (with the label column) to measure the reference performance on; without it, measured on --data')
    .option('--bins <n>', 'bins per numeric column, at reference quantiles', parsePositiveInt, 10)
    .action(async (dir: string, opts: { data: string; label?: string; positive?: string; holdout?: string; bins: number }) => {
      const bundle = await openBundle(dir, loadBundle);
      const profile = await buildProfile(bundle, opts);
      const file = await writeProfile(bundle, profile);
      const perf = profile.performance;
      process.stdout.write(
        `wrote ${file}: ${profile.data.rows} rows (${profile.data.rejected} rejected), ${Object.keys(profile.features).length} features` +
          `${profile.decisions ? `, decision mix ${Object.entries(profile.decisions).map(([a, v]) => `${a} ${(100 * v).toFixed(1)}%`).join(' / ')}` : ''}` +
          `${perf ? `, AUC ${perf.auc.toFixed(4)} on ${perf.rows} rows of ${perf.data}` : ''}\n`,
      );
      await bundle.model?.close?.();
    });

  program
    .command('outcomes')
    .description('join outcomes (id, label, optional time) from a CSV or JSON-lines file to logged decisions')
    .argument('<bundle>', 'bundle directory (names the service and its classes)')
    .requiredOption('-i, --input <file>', 'outcomes file: columns id, label, time (ISO 8601, optional)')
    .option('--url <url>', "a running server's base URL: post there (its monitors see them at once)")
    .option('--data-dir <dir>', 'or write straight into this decision log', process.env.RTML_DATA_DIR ?? '.rtml-data')
    .action(async (dir: string, opts: { input: string; url?: string; dataDir: string }) => {
      const bundle = await openBundle(dir, loadBundle);
      const log = opts.url ? null : openSqliteDecisionLog(opts.dataDir);
      const totals = { rows: 0, joined: 0, unknown: 0, invalid: 0 };
      const send = async (batch: Outcome[]) => {
        if (batch.length === 0) return;
        if (log) {
          const r = await log.recordOutcomes(bundle.name, batch);
          totals.joined += r.joined;
          totals.unknown += r.unknown.length;
          return;
        }
        const res = await fetch(`${opts.url!.replace(/\/$/, '')}/v1/services/${bundle.name}/outcomes`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson' },
          body: batch.map((o) => JSON.stringify(o)).join('\n'),
        });
        const body = (await res.json()) as { joined?: number; unknown?: string[]; error?: string };
        if (!res.ok) throw new Error(`${opts.url} answered ${res.status}: ${body.error ?? JSON.stringify(body)}`);
        totals.joined += body.joined ?? 0;
        totals.unknown += body.unknown?.length ?? 0;
      };
      let batch: Outcome[] = [];
      for await (const record of openRecords(opts.input)) {
        totals.rows++;
        const parsed = record.row === null ? { ok: false as const, message: record.syntaxError ?? 'unreadable' } : parseOutcome(bundle, record.row);
        if (!parsed.ok) {
          totals.invalid++;
          if (totals.invalid <= 20) process.stderr.write(`line ${record.line}: ${parsed.message}\n`);
          continue;
        }
        batch.push(parsed.outcome);
        if (batch.length >= 1000) {
          await send(batch);
          batch = [];
        }
      }
      await send(batch);
      await log?.close();
      process.stderr.write(`${totals.rows} outcomes: ${totals.joined} joined, ${totals.unknown} for unknown decisions, ${totals.invalid} invalid\n`);
      if (totals.invalid > 0 || totals.unknown > 0) process.exitCode = EXIT_FAILED;
    });

  program
    .command('simulate')
    .description('send rows to a running server at a rate, optionally perturbed, and post their outcomes later')
    .argument('<bundle>', 'bundle directory (names the service and its features)')
    .requiredOption('-i, --input <file>', 'rows to send (.csv or .jsonl), cycled if --limit is larger')
    .option('--url <url>', 'server base URL', 'http://127.0.0.1:8080')
    .option('--rate <n>', 'requests per second (0: as fast as --concurrency allows)', parsePositiveInt, 100)
    .option('--concurrency <n>', 'requests in flight at most', parsePositiveInt, 8)
    .option('--limit <n>', 'rows to send', parsePositiveInt, 1000)
    .option('--perturb <spec...>', 'scale:FEATURE:FACTOR, shift:FEATURE:DELTA, null:FEATURE, swap:FEATURE:A:B', [])
    .option('--perturb-after <n>', 'rows sent unperturbed first', parsePositiveInt, 0)
    .option('--label <column>', 'column with the true label, posted as the outcome later (never sent with the request)')
    .option('--outcome-delay <n>', 'post each outcome this many decisions later (0: none)', parsePositiveInt, 0)
    .option('--watch-every <n>', 'poll the monitoring endpoint every n decisions (0: never)', parsePositiveInt, 100)
    .option('--id-prefix <prefix>', 'decision ids are PREFIX-n', `sim-${Date.now()}`)
    .action(async (dir: string, opts: { input: string; url: string; rate: number; concurrency: number; limit: number; perturb: string[]; perturbAfter: number; label?: string; outcomeDelay: number; watchEvery: number; idPrefix: string }) => {
      const bundle = await openBundle(dir, loadBundle);
      let perturbations;
      try {
        perturbations = opts.perturb.map(parsePerturbation);
      } catch (err) {
        throw new InvalidArgumentError((err as Error).message);
      }
      const summary = await simulate({
        url: opts.url,
        service: bundle.name,
        features: bundle.encoding.features,
        input: opts.input,
        rate: opts.rate,
        concurrency: Math.max(1, opts.concurrency),
        limit: opts.limit,
        perturbations,
        perturbAfter: opts.perturbAfter,
        label: opts.label,
        outcomeDelay: opts.outcomeDelay,
        watchEvery: opts.watchEvery,
        idPrefix: opts.idPrefix,
        onProgress: (s) => process.stderr.write(`sent ${s.sent}, alerts ${s.alerts.length}, safe mode ${s.safeMode.engagedAt === null ? 'off' : s.safeMode.releasedAt === null ? 'on' : 'released'}\r`),
      });
      await bundle.model?.close?.();
      process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
    });

  program
    .command('backfill')
    .description('compute point-in-time features for historical rows, as the server would have served them (training sets)')
    .argument('<bundle>', 'bundle directory (declares the features and their sources)')
    .requiredOption('--events <stream=file...>', 'event file of a stream, sorted by event time (repeatable)', collectPairs, {})
    .option('--entities <type=file...>', 'entity snapshot file (key column, optional updated_at) (repeatable)', collectPairs, {})
    .requiredOption('-i, --input <file>', 'rows to compute features for (keys and a time column)')
    .requiredOption('-o, --output <file>', 'CSV: the input columns followed by every model feature')
    .option('--at <column>', 'the column holding each row\'s point in time', 'event_time')
    .option('--before', "features as of 1 ms before that time, so a row's own event is not in its features")
    .action(async (dir: string, opts: { events: Record<string, string>; entities: Record<string, string>; input: string; output: string; at: string; before?: boolean }) => {
      const bundle = await openBundle(dir, loadBundle);
      const started = performance.now();
      const result = await backfillFile(bundle, { events: opts.events, entities: opts.entities, input: opts.input, output: opts.output, atColumn: opts.at, before: opts.before ?? false });
      process.stderr.write(`wrote ${result.rows} rows to ${opts.output} in ${((performance.now() - started) / 1000).toFixed(1)} s (${JSON.stringify(result.stats)})\n`);
      await bundle.model?.close?.();
    });

  program
    .command('export')
    .description('log-and-wait: the features the server served (as logged), joined with their outcomes, as a training set')
    .argument('<bundle>', 'bundle directory (names the service and its features)')
    .requiredOption('-o, --output <file>', 'CSV: id, time, model_version, the features, label')
    .option('--data-dir <dir>', 'the decision log', process.env.RTML_DATA_DIR ?? '.rtml-data')
    .option('--since <time>', 'decisions made at or after this time')
    .option('--until <time>', 'decisions made before this time')
    .action(async (dir: string, opts: { output: string; dataDir: string; since?: string; until?: string }) => {
      const bundle = await openBundle(dir, loadBundle);
      const log = openSqliteDecisionLog(opts.dataDir);
      try {
        const result = await exportLogged(bundle, log, opts);
        process.stderr.write(`wrote ${result.rows} labelled decisions to ${opts.output}${result.skipped ? ` (${result.skipped} decided without the model, left out)` : ''}\n`);
      } finally {
        await log.close();
        await bundle.model?.close?.();
      }
    });

  program
    .command('ingest')
    .description('load events of a stream, or entity fields, from a file into a running server')
    .argument('<bundle>', 'bundle directory (declares the stream or entity)')
    .requiredOption('-i, --input <file>', 'CSV or JSON lines')
    .option('--stream <name>', 'the events are this stream')
    .option('--entity <type>', 'the rows are fields of this entity type (its key column names the entity)')
    .option('--url <url>', 'server base URL', 'http://127.0.0.1:8080')
    .option('--batch <n>', 'rows per request', parsePositiveInt, 1000)
    .action(async (dir: string, opts: { input: string; stream?: string; entity?: string; url: string; batch: number }) => {
      const bundle = await openBundle(dir, loadBundle);
      if (!opts.stream === !opts.entity) throw new InvalidArgumentError('give --stream or --entity');
      const base = opts.url.replace(/\/$/, '');
      const totals = { rows: 0, accepted: 0, duplicates: 0, late: 0, invalid: 0 };
      const post = async (path: string, method: string, body: unknown) => {
        const res = await fetch(base + path, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        const json = (await res.json()) as Record<string, number> & { error?: string };
        if (!res.ok) throw new Error(`${path}: ${res.status} ${json.error ?? ''}`);
        return json;
      };
      if (opts.stream) {
        const def = streamsOf([bundle]).streams.get(opts.stream);
        if (!def) throw new InvalidArgumentError(`${bundle.name} declares no stream ${opts.stream}`);
        let batch: StreamEvent[] = [];
        const send = async () => {
          if (batch.length === 0) return;
          const body = batch.map((e) => ({ [def.keyField]: e.key, [def.spec.id]: e.id, [def.spec.time]: e.time, ...e.fields }));
          const r = await post(`/v1/events/${opts.stream}`, 'POST', body);
          totals.accepted += r.accepted ?? 0;
          totals.duplicates += r.duplicates ?? 0;
          totals.late += r.late ?? 0;
          batch = [];
        };
        for await (const record of openRecords(opts.input)) {
          totals.rows++;
          const parsed = record.row === null ? { ok: false as const, message: record.syntaxError ?? '' } : parseEvent(def, record.row, true);
          if (!parsed.ok) {
            if (++totals.invalid <= 20) process.stderr.write(`line ${record.line}: ${parsed.message}\n`);
            continue;
          }
          batch.push(parsed.event);
          if (batch.length >= opts.batch) await send();
        }
        await send();
      } else {
        const keyField = bundle.manifest.sources?.entities[opts.entity!]?.key;
        if (!keyField) throw new InvalidArgumentError(`${bundle.name} declares no entity ${opts.entity}`);
        const typed = textRowConverter(bundle.encoding.features);
        for await (const record of openRecords(opts.input)) {
          totals.rows++;
          const row = record.row === null ? null : { ...typed(record.row) };
          const id = row?.[keyField];
          if (row) delete row[keyField];
          const parsed = row ? parseEntityFields(row) : { ok: false as const, message: record.syntaxError ?? '' };
          if (!parsed.ok || (typeof id !== 'string' && typeof id !== 'number')) {
            if (++totals.invalid <= 20) process.stderr.write(`line ${record.line}: ${parsed.ok ? `${keyField} is required` : parsed.message}\n`);
            continue;
          }
          await post(`/v1/entities/${opts.entity}/${encodeURIComponent(String(id))}`, 'PUT', parsed.fields);
          totals.accepted++;
        }
      }
      await bundle.model?.close?.();
      process.stderr.write(`${totals.rows} rows: ${totals.accepted} accepted, ${totals.duplicates} duplicates, ${totals.late} late, ${totals.invalid} invalid\n`);
      if (totals.invalid > 0) process.exitCode = EXIT_FAILED;
    });

  program
    .command('serve')
    .description('serve every bundle in a model repository (one folder per service) over HTTP')
    .argument('[repository]', 'model repository directory', 'examples')
    .option('-p, --port <port>', 'port (env PORT)', parsePositiveInt, Number(process.env.PORT ?? 8080))
    .option('--host <host>', 'address to listen on (env HOST)', process.env.HOST ?? '127.0.0.1')
    .option('--data-dir <dir>', 'where the decision log lives (env RTML_DATA_DIR)', process.env.RTML_DATA_DIR ?? '.rtml-data')
    .option('--admin-token-file <file>', 'file holding the admin bearer token (or env RTML_ADMIN_TOKEN); without one, admin operations are disabled')
    .option('--max-in-flight <n>', 'requests served at once before answering 503', parsePositiveInt, DEFAULT_CONFIG.maxInFlight)
    .option('--deadline-ms <ms>', 'per-request budget for the model; past it the fallback policy decides', parsePositiveInt, DEFAULT_CONFIG.deadlineMs)
    .option('--body-limit <bytes>', 'largest request body', parsePositiveInt, DEFAULT_CONFIG.bodyLimit)
    .option('--watch-interval-ms <ms>', 'poll the repository for new versions this often (0: off)', parsePositiveInt, DEFAULT_CONFIG.watchIntervalMs)
    .option('--log-sync <mode>', 'decision log durability: normal (survives a killed process) or full (also a power loss)', 'full')
    .option('--log-level <level>', 'pino log level', process.env.LOG_LEVEL ?? 'info')
    .option('--feature-store <kind>', 'where sourced features live: embedded (in-process, durable under --data-dir) or redis', process.env.RTML_FEATURE_STORE ?? 'embedded')
    .option('--redis-url <url>', 'Redis for --feature-store redis (env REDIS_URL)', process.env.REDIS_URL ?? 'redis://127.0.0.1:6379')
    .option('--alert-webhook <url>', 'POST alerts here as JSON, with retries (env RTML_ALERT_WEBHOOK)', process.env.RTML_ALERT_WEBHOOK)
    .action(async (repository: string, opts: { port: number; host: string; dataDir: string; adminTokenFile?: string; maxInFlight: number; deadlineMs: number; bodyLimit: number; watchIntervalMs: number; logSync: string; logLevel: string; alertWebhook?: string; featureStore: string; redisUrl: string }) => {
      const adminToken = opts.adminTokenFile ? readFileSync(opts.adminTokenFile, 'utf8').trim() : (process.env.RTML_ADMIN_TOKEN ?? null);
      if (opts.logSync !== 'normal' && opts.logSync !== 'full') throw new InvalidArgumentError('--log-sync must be normal or full');
      const log = openSqliteDecisionLog(opts.dataDir, { synchronous: opts.logSync });
      if (opts.featureStore !== 'embedded' && opts.featureStore !== 'redis') throw new InvalidArgumentError('--feature-store must be embedded or redis');
      const openFeatureStore: FeatureStoreFactory =
        opts.featureStore === 'redis'
          ? async (streams) => (await import('../features/redis.ts')).connectRedisFeatureStore({ url: opts.redisUrl, streams })
          : async (streams) => openEmbeddedFeatureStore({ dataDir: opts.dataDir, streams, synchronous: opts.logSync === 'normal' ? 'normal' : 'full' });
      const server = await createServer(
        { repository, adminToken: adminToken || null, maxInFlight: opts.maxInFlight, deadlineMs: opts.deadlineMs, bodyLimit: opts.bodyLimit, watchIntervalMs: opts.watchIntervalMs, logLevel: opts.logLevel, alertWebhook: opts.alertWebhook || null },
        log,
        openFeatureStore,
      );
      const shutdown = (signal: string) => {
        server.app.log.info({ signal }, 'draining in-flight requests and flushing the decision log');
        server.close().then(
          () => process.exit(0),
          (err) => {
            server.app.log.error({ err }, 'unclean shutdown');
            process.exit(1);
          },
        );
      };
      process.once('SIGTERM', () => shutdown('SIGTERM'));
      process.once('SIGINT', () => shutdown('SIGINT'));
      await server.app.listen({ port: opts.port, host: opts.host });
    });

  return program;
}

await buildProgram().parseAsync(process.argv);
