import { InvalidArgumentError, type Command } from 'commander';
import { loadBundle } from '../../bundle/load.ts';
import { ColumnCheck, describeErrors, entityColumns, openRecords, streamColumns } from '../../batch/records.ts';
import { textRowConverter } from '../../decision/index.ts';
import { parseEntityFields, parseEvent, streamsOf } from '../../features/events.ts';
import type { StreamEvent } from '../../features/types.ts';
import { allowMissingOption, delimiterOption, EXIT_FAILED, openBundle, parseWholeNumber, type DataFileOptions } from '../shared.ts';

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
    .option('--batch <n>', 'rows per request', parseWholeNumber, 1000)
    .addOption(allowMissingOption())
    .addOption(delimiterOption())
    .action(async (dir: string, opts: DataFileOptions & { input: string; stream?: string; entity?: string; url: string; batch: number }) => {
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
        const columns = streamColumns(def, opts.allowMissing);
        ColumnCheck.requireKnown(opts.allowMissing, [columns], `stream ${def.name}`);
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
        for await (const record of openRecords(opts.input, { delimiter: opts.delimiter, columns })) {
          totals.rows++;
          const parsed = record.row === null ? { ok: false as const, message: describeErrors(record.errors) } : parseEvent(def, record.row, true);
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
        const columns = entityColumns(bundle, opts.entity!, keyField, opts.allowMissing);
        ColumnCheck.requireKnown(opts.allowMissing, [columns], `entity ${opts.entity}`);
        const typed = textRowConverter(bundle.encoding.features);
        for await (const record of openRecords(opts.input, { delimiter: opts.delimiter, columns })) {
          totals.rows++;
          const row = record.row === null ? null : { ...typed(record.row) };
          const id = row?.[keyField];
          if (row) delete row[keyField];
          const parsed = row ? parseEntityFields(row) : { ok: false as const, message: record.row === null ? describeErrors(record.errors) : '' };
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
}
