import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { loadModelBundle } from '../../bundle/load.ts';
import { isSharedDecisionLog, openDecisionLog } from '../../log/index.ts';
import { normalizeBound } from '../../log/record.ts';
import { replayHtml } from '../../rollout/html.ts';
import { replay, type ReplayReport } from '../../rollout/replay.ts';
import { CliError, decisionLogOption, defaultDataDir, openBundle } from '../shared.ts';

/**
 * `rtml replay <candidate> --service NAME`: the candidate re-decides the service's logged
 * decisions from what the champion used, and the report says which decisions it would flip
 * and what that would have cost on the outcomes already known. Exit 0 once reported.
 */
export function registerReplay(program: Command): void {
  program
    .command('replay')
    .description("re-decide a service's logged decisions with a candidate bundle and compare, decision by decision")
    .argument('<candidate>', 'the candidate bundle directory')
    .requiredOption('--service <name>', 'the service whose logged decisions are replayed')
    .option('--data-dir <dir>', 'the decision log', defaultDataDir())
    .addOption(decisionLogOption())
    .option('--since <time>', 'decisions made at or after this time')
    .option('--until <time>', 'decisions made before this time')
    .option('-o, --output <file>', 'the report as JSON (default: standard output)')
    .option('--html <file>', 'the report as a self-contained HTML page')
    .action(async (dir: string, opts: { service: string; dataDir: string; decisionLog?: string; since?: string; until?: string; output?: string; html?: string }) => {
      for (const bound of ['since', 'until'] as const) {
        if (opts[bound] === undefined) continue;
        try {
          normalizeBound(bound, opts[bound]);
        } catch (err) {
          throw new CliError(`rtml replay: --${bound}: ${(err as Error).message}\n`);
        }
      }
      if (!isSharedDecisionLog(opts)) {
        const file = join(opts.decisionLog || opts.dataDir, 'decisions.sqlite');
        if (!existsSync(file)) throw new CliError(`rtml replay: no decision log at ${file} (give --data-dir or --decision-log)\n`);
      }
      const candidate = await openBundle(dir, loadModelBundle);
      const log = await openDecisionLog(opts);
      let report: ReplayReport;
      const progress = process.stderr.isTTY ? (text: string) => process.stderr.write(`\r${text}`) : (text: string) => process.stderr.write(`${text}\n`);
      let lastShown = 0;
      try {
        report = await replay(log, opts.service, candidate, {
          since: opts.since,
          until: opts.until,
          onProgress: ({ decisions, seconds }) => {
            if (seconds - lastShown < 1) return;
            lastShown = seconds;
            progress(`replay: ${decisions} decisions, ${Math.round(decisions / seconds)}/s`);
          },
        });
      } finally {
        await log.close();
        await candidate.model.close?.();
      }
      const c = report.comparison;
      if (c.decisions === 0) throw new CliError(`rtml replay: the log holds no decision of service ${JSON.stringify(opts.service)}${opts.since || opts.until ? ' in that time range' : ''}\n`);
      const json = `${JSON.stringify(report, null, 2)}\n`;
      if (opts.output) await writeFile(opts.output, json);
      else process.stdout.write(json);
      if (opts.html) await writeFile(opts.html, replayHtml(report));
      const auc = c.outcomes?.aucDifference;
      process.stderr.write(
        `${process.stderr.isTTY ? '\n' : ''}replay of ${report.candidate.name} v${report.candidate.version} on ${c.decisions} decisions (${report.seconds.toFixed(1)} s, ${Math.round(report.decisionsPerSecond)}/s): ` +
          `${c.flips} flips (${(100 * c.flipRate).toFixed(2)}%), score difference mean |Δ| ${c.scoreDifference.meanAbsolute.toExponential(2)}, max |Δ| ${c.scoreDifference.maxAbsolute.toExponential(2)}` +
          (auc ? `; on ${c.outcomes!.labelled} outcomes AUC ${auc.aucA.toFixed(4)} -> ${auc.aucB.toFixed(4)} (difference ${auc.difference.toFixed(4)}, 95% CI [${auc.lower.toFixed(4)}, ${auc.upper.toFixed(4)}])` : '') +
          '\n',
      );
    });
}
