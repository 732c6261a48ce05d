import type { Command } from 'commander';
import { loadBundle } from '../../bundle/load.ts';
import { backfillFile } from '../../batch/features.ts';
import { allowMissingOption, collectPairs, delimiterOption, openBundle, type DataFileOptions } from '../shared.ts';

/** `rtml backfill <bundle> --events s=file -i <file> -o <file>`: point-in-time features for historical rows (training sets). */
export function registerBackfill(program: Command): void {
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
    .addOption(allowMissingOption())
    .addOption(delimiterOption())
    .action(async (dir: string, opts: DataFileOptions & { events: Record<string, string>; entities: Record<string, string>; input: string; output: string; at: string; before?: boolean }) => {
      const bundle = await openBundle(dir, loadBundle);
      const started = performance.now();
      const result = await backfillFile(bundle, { events: opts.events, entities: opts.entities, input: opts.input, output: opts.output, atColumn: opts.at, before: opts.before ?? false, allowMissing: opts.allowMissing, delimiter: opts.delimiter });
      process.stderr.write(`wrote ${result.rows} rows to ${opts.output} in ${((performance.now() - started) / 1000).toFixed(1)} s (${JSON.stringify(result.stats)})\n`);
      await bundle.model?.close?.();
    });
}
