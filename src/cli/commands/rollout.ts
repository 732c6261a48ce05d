import { userInfo } from 'node:os';
import { Option, type Command } from 'commander';
import { CliError, EXIT_FAILED, readToken, ServerClient, tokenFileOption } from '../shared.ts';

/**
 * `rtml rollout ...`: a running server's rollout (see README, Changing a model), through its
 * admin endpoints: `status`, `shadow`, `canary`, `promote`, `rollback`. Exit 0 done, 1
 * promotion refused by the gates, 2 could not run (unreachable, refused, bad input).
 */
export function registerRollout(program: Command): void {
  const rollout = program.command('rollout').description("a running server's rollout: status, shadow, canary, promote, rollback");
  const common = (command: Command) =>
    command
      .addOption(new Option('--url <url>', 'the server').default('http://127.0.0.1:8080'))
      .addOption(tokenFileOption())
      .option('--reason <text>', 'why (recorded in the audit trail)')
      .option('--by <name>', 'who (recorded in the audit trail; default: your user name)');
  type Common = { url: string; tokenFile?: string; reason?: string; by?: string };
  const client = (opts: Common) => new ServerClient(opts.url, readToken(opts.tokenFile));
  const who = (opts: Common) => ({ ...(opts.reason ? { reason: opts.reason } : {}), by: opts.by ?? userName() });
  const path = (service: string) => `/v1/services/${encodeURIComponent(service)}/rollout`;

  common(rollout.command('status').description('the champion, the challengers and their live comparison').argument('<service>')).action(async (service: string, opts: Common) => {
    const body = await client(opts).send('GET', path(service), undefined, 'the rollout');
    process.stdout.write(formatStatus(body as unknown as RolloutStatus));
  });

  common(rollout.command('shadow').description('a version decides unseen on a share of requests (replaces the challengers)').argument('<service>').argument('<version>'))
    .option('--share <fraction>', 'share of requests, (0, 1]', parseShare, 1)
    .action(async (service: string, version: string, opts: Common & { share: number }) => {
      const body = await client(opts).send('PUT', path(service), { json: { challengers: [{ version, mode: 'shadow', share: opts.share }], ...who(opts) } }, 'the rollout');
      process.stdout.write(`${service}: champion ${String(body.champion)}, ${version} shadowing ${pct(opts.share)} of requests\n`);
    });

  common(rollout.command('canary').description('a version decides for the share of keys that hash into it (replaces the challengers)').argument('<service>').argument('<version>'))
    .requiredOption('--share <fraction>', 'share of key values, (0, 1]', parseShare)
    .requiredOption('--key <field>', 'the request field whose value picks the version (e.g. customer_id)')
    .option('--max-flip-rate <fraction>', 'roll back by itself past this live flip rate (default: its gates.replay.max_flip_rate)', parseShare)
    .action(async (service: string, version: string, opts: Common & { share: number; key: string; maxFlipRate?: number }) => {
      const json = { challengers: [{ version, mode: 'canary', share: opts.share, key: opts.key }], ...(opts.maxFlipRate !== undefined ? { max_flip_rate: opts.maxFlipRate } : {}), ...who(opts) };
      const body = await client(opts).send('PUT', path(service), { json }, 'the rollout');
      const state = body.rollout as { maxFlipRate: number | null };
      process.stdout.write(`${service}: champion ${String(body.champion)}, ${version} deciding for ${pct(opts.share)} of ${opts.key} values; flip-rate budget ${state.maxFlipRate === null ? 'none' : pct(state.maxFlipRate)}\n`);
    });

  common(rollout.command('promote').description("the version becomes champion once its gates pass").argument('<service>').argument('<version>')).action(async (service: string, version: string, opts: Common) => {
    const server = client(opts);
    const answer = await server.request('POST', `${path(service)}/promote`, { json: { version, ...who(opts) } });
    const gates = (answer.body.gates ?? []) as { name: string; status: string; message: string }[];
    for (const g of gates) process.stdout.write(`${g.status.toUpperCase().padEnd(7)} ${g.name}: ${g.message}\n`);
    if (answer.status === 409 && gates.length > 0) {
      process.stderr.write(`rtml: ${answer.body.error}\n`);
      process.exitCode = EXIT_FAILED;
      return;
    }
    if (answer.status < 200 || answer.status > 299) server.refuse(answer, `POST ${path(service)}/promote`, 'admin operations');
    process.stdout.write(`${service}: ${version} is champion (was ${String(answer.body.previous)})\n`);
  });

  common(rollout.command('rollback').description('stop the challengers; with none running, undo the last promotion').argument('<service>')).action(async (service: string, opts: Common) => {
    const body = await client(opts).send('POST', `${path(service)}/rollback`, { json: who(opts) }, 'admin operations');
    const what = body.rolled_back === 'promotion' ? `promotion of ${String(body.from)} undone` : `challengers ${(body.stopped as string[]).join(', ')} stopped`;
    process.stdout.write(`${service}: ${what}; champion ${String(body.champion)}\n`);
  });
}

interface RolloutStatus {
  service: string;
  champion: string;
  versions: string[];
  rollout: { by: string; since: string; reason: string | null; maxFlipRate: number | null } | null;
  challengers: {
    version: string;
    mode: string;
    share: number;
    key: string | null;
    compared: number;
    errors: number;
    logged: number;
    loaded: boolean;
    comparison: {
      flips: number;
      flipRate: number;
      scoreDifference: { n: number; meanAbsolute: number };
      latencyMs: { p50: number | null; p99: number | null };
      outcomes: { labelled: number; champion: { auc: number | null }; candidate: { auc: number | null } } | null;
    };
  }[];
}

function formatStatus(s: RolloutStatus): string {
  const lines = [`${s.service}: champion ${s.champion} (versions ${s.versions.join(', ')})`];
  if (s.rollout) lines.push(`  set by ${s.rollout.by} at ${s.rollout.since}${s.rollout.reason ? `: ${s.rollout.reason}` : ''}; flip-rate budget ${s.rollout.maxFlipRate === null ? 'none' : pct(s.rollout.maxFlipRate)}`);
  if (s.challengers.length === 0) lines.push('  no challenger');
  for (const c of s.challengers) {
    const r = c.comparison;
    const on = c.mode === 'canary' ? `${pct(c.share)} of ${c.key} values` : `${pct(c.share)} of requests`;
    let line = `  ${c.version} ${c.mode} (${on})${c.loaded ? '' : ' [not loaded here]'}: ${c.compared} compared, ${r.flips} flips (${pct(r.flipRate)}), mean |score difference| ${r.scoreDifference.meanAbsolute.toExponential(2)}`;
    if (r.latencyMs.p50 !== null) line += `, model p50 ${r.latencyMs.p50.toFixed(3)} ms p99 ${r.latencyMs.p99?.toFixed(3)} ms`;
    line += `, ${c.errors} errors`;
    if (r.outcomes) line += `; on ${r.outcomes.labelled} outcomes AUC ${r.outcomes.champion.auc?.toFixed(4)} -> ${r.outcomes.candidate.auc?.toFixed(4)}`;
    lines.push(line);
  }
  return `${lines.join('\n')}\n`;
}

function parseShare(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > 1) throw new CliError(`rtml rollout: a share is a fraction in (0, 1], got ${JSON.stringify(value)}\n`);
  return n;
}

const pct = (x: number) => `${(100 * x).toFixed(2).replace(/\.?0+$/, '')}%`;

function userName(): string {
  try {
    return userInfo().username || 'cli';
  } catch {
    return 'cli';
  }
}
