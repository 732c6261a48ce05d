import type { Command } from 'commander';
import { loadModelBundle } from '../../bundle/load.ts';
import { checkGolden } from '../../bundle/golden.ts';
import { CliError, EXIT_FAILED, openBundle, parseTolerance } from '../shared.ts';

/**
 * `rtml check <bundle>`: load and validate a bundle, then score its golden set against the
 * training library's predictions. Exit 0 only when parity was checked and held; 1 when it
 * failed or there was nothing to check it against; 2 for a bundle that does not load.
 */
export function registerCheck(program: Command): void {
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
        // Loading proves the files fit together, not that the model computes what training did.
        await bundle.model.close?.();
        throw new CliError(`rtml check: nothing to check: ${dir} loads and validates but has no golden file; add golden.jsonl (see README, "Golden file")\n`, EXIT_FAILED);
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
}
