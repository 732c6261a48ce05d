import { InvalidArgumentError, type Command } from 'commander';
import { loadBundle } from '../../bundle/load.ts';
import { ColumnCheck, describeErrors, entityColumns, openRecords, streamColumns, type SourceRecord } from '../../batch/records.ts';
import { textRowConverter } from '../../decision/index.ts';
import { parseEntityFields, parseEvent, streamsOf } from '../../features/events.ts';
import { allowMissingOption, delimiterOption, EXIT_FAILED, openBundle, parseWholeNumber, readToken, ServerClient, tokenFileOption, type DataFileOptions } from '../shared.ts';

/** `rtml ingest <bundle> -i <file> --stream s | --entity t`: load events or entity fields from a file into a running server. */
export function registerIngest(program: Command): void {
  program
    .command('ingest')
    .description('load events of a stream, or entity fields, from a file into a running server')
    .argument('<bundle>', 'bundle directory (declares the stream or entity)')
    .requiredOption('-i, --input <file>', 'CSV or JSON lines')
    .option('--stream <name>', 'the events are this stream')
    .option('--entity <type>', 'the rows are fields of this entity type (its key column names the entity)')
    .option('--url <url>', 'server base URL', 'http://127.0.0.1:8080')
    .addOption(tokenFileOption())
    .option('--batch <n>', 'rows per request', parseWholeNumber, 1000)
    .addOption(allowMissingOption())
    .addOption(delimiterOption())
    .action(async (dir: string, opts: DataFileOptions & { input: string; stream?: string; entity?: string; url: string; tokenFile?: string; batch: number }) => {
      const bundle = await openBundle(dir, loadBundle);
      if (!opts.stream === !opts.entity) throw new InvalidArgumentError('give --stream or --entity');
      const server = new ServerClient(opts.url, readToken(opts.tokenFile));
      const totals = { rows: 0, accepted: 0, duplicates: 0, late: 0, invalid: 0 };
      const invalid = (line: number, message: string) => {
        if (++totals.invalid <= 20) process.stderr.write(`line ${line}: ${message}\n`);
      };
      const problem = (record: SourceRecord & { row: null }) => describeErrors(record.errors);
      if (opts.stream) {
        const def = streamsOf([bundle]).streams.get(opts.stream);
        if (!def) throw new InvalidArgumentError(`${bundle.name} declares no stream ${opts.stream}`);
        const columns = streamColumns(def, opts.allowMissing);
        ColumnCheck.requireKnown(opts.allowMissing, [columns], `stream ${def.name}`);
        const path = `/v1/events/${encodeURIComponent(opts.stream)}`;
        let batch: { line: number; body: Record<string, unknown> }[] = [];
        const send = async () => {
          if (batch.length === 0) return;
          const r = await server.send('POST', path, { json: batch.map((e) => e.body) }, 'events');
          const count = (key: string) => (typeof r[key] === 'number' ? (r[key] as number) : 0);
          totals.accepted += count('accepted');
          totals.duplicates += count('duplicates');
          totals.late += count('late');
          // Events the server refused (checked again there, e.g. against its clock), by their line in the file.
          if (Array.isArray(r.errors)) for (const e of r.errors as { index?: number; message?: string }[]) invalid(batch[e.index ?? -1]?.line ?? 0, `the server refused it: ${e.message ?? ''}`);
          totals.invalid += Math.max(0, count('rejected') - (Array.isArray(r.errors) ? r.errors.length : 0));
          batch = [];
        };
        for await (const record of openRecords(opts.input, { delimiter: opts.delimiter, columns })) {
          totals.rows++;
          const parsed = record.row === null ? { ok: false as const, message: problem(record) } : parseEvent(def, record.row, true);
          if (!parsed.ok) {
            invalid(record.line, parsed.message);
            continue;
          }
          const e = parsed.event;
          batch.push({ line: record.line, body: { [def.keyField]: e.key, [def.spec.id]: e.id, [def.spec.time]: e.time, ...e.fields } });
          if (batch.length >= opts.batch) await send();
        }
        await send();
      } else {
        const keyField = bundle.manifest.sources?.entities[opts.entity!]?.key;
        if (!keyField) throw new InvalidArgumentError(`${bundle.name} declares no entity ${opts.entity}`);
        const columns = entityColumns(bundle, opts.entity!, keyField, opts.allowMissing);
        ColumnCheck.requireKnown(opts.allowMissing, [columns], `entity ${opts.entity}`);
        const typed = textRowConverter(bundle.encoding.features);
        for await (const record of openRecords(opts.input, { delimiter: opts.delimiter, columns })) {
          totals.rows++;
          if (record.row === null) {
            invalid(record.line, problem(record));
            continue;
          }
          const row = { ...typed(record.row) };
          const id = row[keyField];
          delete row[keyField];
          const parsed = parseEntityFields(row);
          if (!parsed.ok || (typeof id !== 'string' && typeof id !== 'number') || id === '') {
            invalid(record.line, parsed.ok ? `${keyField} is required` : parsed.message);
            continue;
          }
          await server.send('PUT', `/v1/entities/${encodeURIComponent(opts.entity!)}/${encodeURIComponent(String(id))}`, { json: parsed.fields }, 'entities');
          totals.accepted++;
        }
      }
      await bundle.model?.close?.();
      process.stderr.write(`${totals.rows} rows: ${totals.accepted} accepted, ${totals.duplicates} duplicates, ${totals.late} late, ${totals.invalid} invalid\n`);
      if (totals.invalid > 0) process.exitCode = EXIT_FAILED;
    });
}
