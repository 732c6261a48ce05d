import type { Command } from 'commander';
import { loadBundle } from '../../bundle/load.ts';
import { ColumnCheck, describeErrors, openRecords } from '../../batch/records.ts';
import { openDecisionLog } from '../../log/index.ts';
import type { Outcome } from '../../log/types.ts';
import { parseOutcome } from '../../pipeline/outcomes.ts';
import { allowMissingOption, decisionLogOption, defaultDataDir, delimiterOption, EXIT_FAILED, openBundle, readToken, ServerClient, tokenFileOption, type DataFileOptions } from '../shared.ts';

/** `rtml outcomes <bundle> -i <file>`: join outcomes to logged decisions, through a running server or straight into the log. */
export function registerOutcomes(program: Command): void {
  program
    .command('outcomes')
    .description('join outcomes (id, label, optional time) from a CSV or JSON-lines file to logged decisions')
    .argument('<bundle>', 'bundle directory (names the service and its classes)')
    .requiredOption('-i, --input <file>', 'outcomes file: columns id, label, time (ISO 8601, optional)')
    .option('--url <url>', "a running server's base URL: post there (its monitors see them at once)")
    .addOption(tokenFileOption())
    .option('--data-dir <dir>', 'or write straight into this decision log', defaultDataDir())
    .addOption(decisionLogOption())
    .addOption(allowMissingOption())
    .addOption(delimiterOption())
    .action(async (dir: string, opts: DataFileOptions & { input: string; url?: string; tokenFile?: string; dataDir: string; decisionLog?: string }) => {
      const bundle = await openBundle(dir, loadBundle);
      // `Id` or `labels` for `id` or `label` would make every row invalid; `Time` for `time` would silently stamp them now.
      const columns = new ColumnCheck([{ name: 'id', required: true, why: 'the decision id' }, { name: 'label', required: true, why: 'the outcome' }, { name: 'time' }], opts.allowMissing);
      ColumnCheck.requireKnown(opts.allowMissing, [columns], 'rtml outcomes');
      const server = opts.url ? new ServerClient(opts.url, readToken(opts.tokenFile)) : null;
      const log = server ? null : await openDecisionLog(opts);
      const totals = { rows: 0, joined: 0, unknown: 0, invalid: 0 };
      const invalid = (line: number, message: string) => {
        if (++totals.invalid <= 20) process.stderr.write(`line ${line}: ${message}\n`);
      };
      /** The outcomes of a batch, and the line of the file each came from. */
      const send = async (batch: Outcome[], lines: number[]) => {
        if (batch.length === 0) return;
        if (log) {
          const r = await log.recordOutcomes(bundle.name, batch);
          totals.joined += r.joined;
          totals.unknown += r.unknown.length;
          return;
        }
        const body = await server!.send('POST', `/v1/services/${encodeURIComponent(bundle.name)}/outcomes`, { ndjson: batch }, 'outcomes');
        totals.joined += typeof body.joined === 'number' ? body.joined : 0;
        totals.unknown += Array.isArray(body.unknown) ? body.unknown.length : 0;
        // Outcomes the server refused (its loaded version may have other classes), by their line in the file.
        if (Array.isArray(body.errors)) for (const e of body.errors as { line?: number; message?: string }[]) invalid(lines[(e.line ?? 0) - 1] ?? 0, `the server refused it: ${e.message ?? ''}`);
      };
      try {
        let batch: Outcome[] = [];
        let lines: number[] = [];
        for await (const record of openRecords(opts.input, { delimiter: opts.delimiter, columns })) {
          totals.rows++;
          const parsed = record.row === null ? { ok: false as const, message: describeErrors(record.errors) } : parseOutcome(bundle, record.row);
          if (!parsed.ok) {
            invalid(record.line, parsed.message);
            continue;
          }
          batch.push(parsed.outcome);
          lines.push(record.line);
          if (batch.length >= 1000) {
            await send(batch, lines);
            batch = [];
            lines = [];
          }
        }
        await send(batch, lines);
      } catch (err) {
        // The server stopped answering midway: say how far it got.
        if (totals.joined > 0) process.stderr.write(`${totals.joined} outcomes were joined before this error:\n`);
        throw err;
      } finally {
        await log?.close();
      }
      process.stderr.write(`${totals.rows} outcomes: ${totals.joined} joined, ${totals.unknown} for unknown decisions, ${totals.invalid} invalid\n`);
      if (totals.invalid > 0 || totals.unknown > 0) process.exitCode = EXIT_FAILED;
    });
}
