import type { Command } from 'commander';
import { loadBundle } from '../../bundle/load.ts';
import { exportLogged } from '../../batch/features.ts';
import { openDecisionLog } from '../../log/index.ts';
import { decisionLogOption, defaultDataDir, openBundle } from '../shared.ts';

/** `rtml export <bundle> -o <file>`: log-and-wait training sets, the features as served joined with their outcomes. */
export function registerExport(program: Command): void {
  program
    .command('export')
    .description('log-and-wait: the features the server served (as logged), joined with their outcomes, as a training set')
    .argument('<bundle>', 'bundle directory (names the service and its features)')
    .requiredOption('-o, --output <file>', 'CSV: id, time, model_version, the features, label')
    .option('--data-dir <dir>', 'the decision log', defaultDataDir())
    .addOption(decisionLogOption())
    .option('--since <time>', 'decisions made at or after this time')
    .option('--until <time>', 'decisions made before this time')
    .option('--with-status', "add <feature>_status per sourced feature (present, default, stale, missing, timeout, error) to leave out or weight what was not served fresh")
    .action(async (dir: string, opts: { output: string; dataDir: string; decisionLog?: string; since?: string; until?: string; withStatus?: boolean }) => {
      const bundle = await openBundle(dir, loadBundle);
      const log = await openDecisionLog(opts);
      try {
        const result = await exportLogged(bundle, log, opts);
        process.stderr.write(`wrote ${result.rows} labelled decisions to ${opts.output}${result.skipped ? ` (${result.skipped} logged without their features, left out)` : ''}\n`);
      } finally {
        await log.close();
        await bundle.model?.close?.();
      }
    });
}
