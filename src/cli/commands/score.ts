import type { Command } from 'commander';
import { createWriteStream } from 'node:fs';
import { SingleBar } from 'cli-progress';
import { loadModelBundle } from '../../bundle/load.ts';
import { scoreFile, type FileFormat, type RowFailure } from '../../batch/score-file.ts';
import { allowMissingOption, CliError, delimiterOption, EXIT_FAILED, openBundle, parseFormat, type DataFileOptions } from '../shared.ts';

function describeFailure(f: RowFailure): string {
  return `line ${f.line}: ${f.errors.map((e) => (e.field ? `${e.field}: ${e.rule}: ${e.message}` : e.message)).join('; ')}`;
}

/** `rtml score <bundle> -i <file> -o <file>`: batch-score a CSV or JSON-lines file, streaming; bad rows are reported and skipped. */
export function registerScore(program: Command): void {
  program
    .command('score')
    .description('score a CSV or JSON-lines file with a bundle, streaming; bad rows are reported by line and skipped')
    .argument('<bundle>', 'bundle directory')
    .requiredOption('-i, --input <file>', 'input file (.csv, .jsonl), or - for standard input')
    .requiredOption('-o, --output <file>', 'output file (.csv, .jsonl), or - for standard output')
    .option('--input-format <format>', 'csv or jsonl (default: from the file name)', parseFormat)
    .option('--output-format <format>', 'csv or jsonl (default: from the file name)', parseFormat)
    .addOption(allowMissingOption())
    .addOption(delimiterOption())
    .option('--errors <file>', 'write every rejected row as a JSON line {line, errors}')
    .option('--no-decisions', "only the model's outputs, without the policy's decision columns")
    .option('--explain', "add each feature's exact contribution to the score's margin (contribution_<feature>, contribution_bias)")
    .option('--quiet', 'no progress bar or per-row error lines')
    .action(async (dir: string, opts: DataFileOptions & { input: string; output: string; inputFormat?: FileFormat; outputFormat?: FileFormat; errors?: string; quiet?: boolean; decisions: boolean; explain?: boolean }) => {
      const bundle = await openBundle(dir, loadModelBundle);
      const errorsOut = opts.errors ? createWriteStream(opts.errors) : null;
      const shownLimit = 20;
      let shown = 0;
      const bar = !opts.quiet && process.stderr.isTTY ? new SingleBar({ format: 'scoring [{bar}] {percentage}% | {rows} rows | {eta_formatted} left', hideCursor: true, stream: process.stderr }) : null;
      bar?.start(100, 0, { rows: 0 });
      let summary;
      try {
        summary = await scoreFile(bundle, {
          input: opts.input,
          output: opts.output,
          inputFormat: opts.inputFormat,
          outputFormat: opts.outputFormat ?? (opts.output === '-' ? opts.inputFormat : undefined),
          decisions: opts.decisions,
          explain: opts.explain,
          allowMissing: opts.allowMissing,
          delimiter: opts.delimiter,
          onNotice: (message) => process.stderr.write(`${bar ? '\n' : ''}${message}\n`),
          onFailure: (failure) => {
            errorsOut?.write(JSON.stringify(failure) + '\n');
            if (!opts.quiet && shown++ < shownLimit) process.stderr.write(`${bar ? '\n' : ''}${describeFailure(failure)}\n`);
          },
          onProgress: (read, total, rows) => bar?.update(total ? Math.min(100, Math.round((100 * read) / total)) : 0, { rows }),
        });
      } catch (err) {
        bar?.stop();
        throw new CliError(`rtml score: ${(err as Error).message}\n`);
      }
      bar?.update(100, { rows: summary.rows });
      bar?.stop();
      if (errorsOut) await new Promise((done) => errorsOut.end(done));
      if (shown > shownLimit) process.stderr.write(`… and ${shown - shownLimit} more rejected rows${opts.errors ? ` (all in ${opts.errors})` : ''}\n`);
      const rate = summary.seconds > 0 ? Math.round(summary.scored / summary.seconds) : summary.scored;
      process.stderr.write(`scored ${summary.scored} of ${summary.rows} rows, ${summary.failed} rejected, in ${summary.seconds.toFixed(2)} s (${rate} rows/s)\n`);
      await bundle.model.close?.();
      if (summary.failed > 0) process.exitCode = EXIT_FAILED;
    });
}
