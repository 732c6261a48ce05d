import type { Command } from 'commander';
import { loadBundle } from '../../bundle/load.ts';
import { BundleFileError } from '../../bundle/files.ts';
import { buildProfile, ReversedAucError, writeProfile } from '../../monitor/profile.ts';
import { allowMissingOption, CliError, delimiterOption, EXIT_FAILED, openBundle, parseWholeNumber, type DataFileOptions } from '../shared.ts';

/** `rtml profile <bundle> -d <file>`: measure the reference profile the monitors compare live traffic to, into reference.json. */
export function registerProfile(program: Command): void {
  program
    .command('profile')
    .description("measure the bundle's reference profile on a data set (usually its training data) and write reference.json into the bundle")
    .argument('<bundle>', 'bundle directory')
    .requiredOption('-d, --data <file>', 'reference data (.csv or .jsonl), through the same encoding, model and policy as live traffic')
    .option('--label <column>', 'label column, to record realized performance on the reference rows: class names, class indices (0, 1, …) or, for a binary bundle, true/false')
    .option('--positive <value>', "the positive class, as a label would name it (default: the bundle's positive class)")
    .option('--holdout <file>', 'held-out rows (with the label column) to measure the reference performance on; without it, measured on --data')
    .option('--bins <n>', 'bins per numeric column, at reference quantiles', parseWholeNumber, 10)
    .addOption(allowMissingOption())
    .addOption(delimiterOption())
    .option('--allow-reversed-auc', 'write the reference even if the labelled AUC is below 0.5 (by default refused: the classes look reversed)')
    .action(async (dir: string, opts: DataFileOptions & { data: string; label?: string; positive?: string; holdout?: string; bins: number; allowReversedAuc?: boolean }) => {
      const bundle = await openBundle(dir, loadBundle);
      try {
        const profile = await buildProfile(bundle, opts);
        const file = await writeProfile(bundle, profile);
        const perf = profile.performance;
        process.stdout.write(
          `wrote ${file}: ${profile.data.rows} rows (${profile.data.rejected} rejected), ${Object.keys(profile.features).length} features` +
            `${profile.decisions ? `, decision mix ${Object.entries(profile.decisions).map(([a, v]) => `${a} ${(100 * v).toFixed(1)}%`).join(' / ')}` : ''}` +
            `${perf ? `, AUC ${perf.auc.toFixed(4)} on ${perf.rows} rows of ${perf.data}` : ''}\n`,
        );
      } catch (err) {
        if (err instanceof ReversedAucError) throw new CliError(`rtml profile: ${err.message}\n`, EXIT_FAILED);
        if (err instanceof BundleFileError) throw new CliError(`rtml profile: monitoring.reference: ${err.rule}\n`);
        throw err;
      } finally {
        await bundle.model?.close?.();
      }
    });
}
