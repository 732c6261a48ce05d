import { InvalidArgumentError, type Command } from 'commander';
import { loadBundle } from '../../bundle/load.ts';
import { parsePerturbation, simulate } from '../../monitor/simulate.ts';
import { allowMissingOption, delimiterOption, openBundle, parseWholeNumber, readToken, tokenFileOption, type DataFileOptions } from '../shared.ts';

/** `rtml simulate <bundle> -i <file>`: drive a running server with rows at a rate, optionally perturbed, posting outcomes later. */
export function registerSimulate(program: Command): void {
  program
    .command('simulate')
    .description('send rows to a running server at a rate, optionally perturbed, and post their outcomes later')
    .argument('<bundle>', 'bundle directory (names the service and its features)')
    .requiredOption('-i, --input <file>', 'rows to send (.csv or .jsonl), cycled if --limit is larger')
    .option('--url <url>', 'server base URL', 'http://127.0.0.1:8080')
    .addOption(tokenFileOption())
    .option('--rate <n>', 'requests per second (0: as fast as --concurrency allows)', parseWholeNumber, 100)
    .option('--concurrency <n>', 'requests in flight at most', parseWholeNumber, 8)
    .option('--limit <n>', 'rows to send', parseWholeNumber, 1000)
    .option('--perturb <spec...>', 'scale:FEATURE:FACTOR, shift:FEATURE:DELTA, null:FEATURE, swap:FEATURE:A:B', [])
    .option('--perturb-after <n>', 'rows sent unperturbed first', parseWholeNumber, 0)
    .option('--label <column>', 'column with the true label, posted as the outcome later (never sent with the request)')
    .option('--outcome-delay <n>', 'post each outcome this many decisions later (0: none)', parseWholeNumber, 0)
    .option('--watch-every <n>', 'poll the monitoring endpoint every n decisions (0: never)', parseWholeNumber, 100)
    .option('--id-prefix <prefix>', 'decision ids are PREFIX-n', `sim-${Date.now()}`)
    .addOption(allowMissingOption())
    .addOption(delimiterOption())
    .action(async (dir: string, opts: DataFileOptions & { input: string; url: string; tokenFile?: string; rate: number; concurrency: number; limit: number; perturb: string[]; perturbAfter: number; label?: string; outcomeDelay: number; watchEvery: number; idPrefix: string }) => {
      const bundle = await openBundle(dir, loadBundle);
      let perturbations;
      try {
        perturbations = opts.perturb.map(parsePerturbation);
      } catch (err) {
        throw new InvalidArgumentError((err as Error).message);
      }
      const summary = await simulate({
        url: opts.url,
        token: readToken(opts.tokenFile),
        bundle,
        input: opts.input,
        allowMissing: opts.allowMissing,
        delimiter: opts.delimiter,
        rate: opts.rate,
        concurrency: Math.max(1, opts.concurrency),
        limit: opts.limit,
        perturbations,
        perturbAfter: opts.perturbAfter,
        label: opts.label,
        outcomeDelay: opts.outcomeDelay,
        watchEvery: opts.watchEvery,
        idPrefix: opts.idPrefix,
        onProgress: (s) => process.stderr.write(`sent ${s.sent}, alerts ${s.alerts.length}, safe mode ${s.safeMode.engagedAt === null ? 'off' : s.safeMode.releasedAt === null ? 'on' : 'released'}\r`),
      });
      await bundle.model?.close?.();
      process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
    });
}
