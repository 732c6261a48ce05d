import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { loadModelBundle } from '../../bundle/load.ts';
import { runGates } from '../../rollout/gates.ts';
import { gateHtml } from '../../rollout/html.ts';
import { gateJunit } from '../../rollout/junit.ts';
import { CliError, EXIT_FAILED, openBundle } from '../shared.ts';

/**
 * `rtml gate <candidate>`: the gates its rtml.yaml declares. Exit 0 when all pass (skipped
 * ones do not fail), 1 when one fails, 2 for a bundle that does not load or declares none.
 */
export function registerGate(program: Command): void {
  program
    .command('gate')
    .description("run the gates a candidate bundle declares (parity, cases, invariance, directional, slices, replay budget)")
    .argument('<candidate>', 'the candidate bundle directory')
    .option('--champion <bundle>', 'the bundle serving now, for the replay budget')
    .option('--data <file>', 'reference rows (CSV or JSON lines; labelled for slices)')
    .option('--junit <file>', 'the results as JUnit XML')
    .option('--html <file>', 'the results as a self-contained HTML page')
    .option('--json <file>', 'the results as JSON')
    .action(async (dir: string, opts: { champion?: string; data?: string; junit?: string; html?: string; json?: string }) => {
      const candidate = await openBundle(dir, loadModelBundle);
      const champion = opts.champion ? await openBundle(opts.champion, loadModelBundle) : undefined;
      const spec = candidate.manifest.gates;
      if (!spec) throw new CliError(`rtml gate: ${dir}/rtml.yaml declares no gates (a gates: section)\n`);
      if (champion && champion.name !== candidate.name) throw new CliError(`rtml gate: the champion is service ${champion.name}, the candidate ${candidate.name}\n`);
      try {
        const report = await runGates(candidate, spec, { champion, data: opts.data });
        for (const g of report.gates) process.stdout.write(`${g.status.toUpperCase().padEnd(7)} ${g.name}: ${g.message}\n`);
        process.stdout.write(`${report.passed ? 'PASS' : 'FAIL'}: ${report.gates.filter((g) => g.status === 'passed').length} passed, ${report.gates.filter((g) => g.status === 'failed').length} failed, ${report.gates.filter((g) => g.status === 'skipped').length} skipped\n`);
        if (opts.junit) await writeFile(opts.junit, gateJunit(report));
        if (opts.html) await writeFile(opts.html, gateHtml(report));
        if (opts.json) await writeFile(opts.json, `${JSON.stringify(report, null, 2)}\n`);
        if (!report.passed) process.exitCode = EXIT_FAILED;
      } finally {
        await candidate.model.close?.();
        await champion?.model.close?.();
      }
    });
}
