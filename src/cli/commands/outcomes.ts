import type { Command } from 'commander';
import { loadBundle } from '../../bundle/load.ts';
import { ColumnCheck, describeErrors, openRecords } from '../../batch/records.ts';
import { openSqliteDecisionLog } from '../../log/sqlite.ts';
import type { Outcome } from '../../log/types.ts';
import { parseOutcome } from '../../pipeline/outcomes.ts';
import { allowMissingOption, defaultDataDir, delimiterOption, EXIT_FAILED, openBundle, type DataFileOptions } from '../shared.ts';

/** `rtml outcomes <bundle> -i <file>`: join outcomes to logged decisions, through a running server or straight into the log. */
export function registerOutcomes(program: Command): void {
  program
    .command('outcomes')
    .description('join outcomes (id, label, optional time) from a CSV or JSON-lines file to logged decisions')
    .argument('<bundle>', 'bundle directory (names the service and its classes)')
    .requiredOption('-i, --input <file>', 'outcomes file: columns id, label, time (ISO 8601, optional)')
    .option('--url <url>', "a running server's base URL: post there (its monitors see them at once)")
    .option('--data-dir <dir>', 'or write straight into this decision log', defaultDataDir())
    .addOption(allowMissingOption())
    .addOption(delimiterOption())
    .action(async (dir: string, opts: DataFileOptions & { input: string; url?: string; dataDir: string }) => {
      const bundle = await openBundle(dir, loadBundle);
      // `Id` or `labels` for `id` or `label` would make every row invalid; `Time` for `time` would silently stamp them now.
      const columns = new ColumnCheck([{ name: 'id', required: true, why: 'the decision id' }, { name: 'label', required: true, why: 'the outcome' }, { name: 'time' }], opts.allowMissing);
      ColumnCheck.requireKnown(opts.allowMissing, [columns], 'rtml outcomes');
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
      for await (const record of openRecords(opts.input, { delimiter: opts.delimiter, columns })) {
        totals.rows++;
        const parsed = record.row === null ? { ok: false as const, message: describeErrors(record.errors) } : parseOutcome(bundle, record.row);
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
}
