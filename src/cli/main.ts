/**
 * The `rtml` command line. Each command is a thin shell over a stage's front door and lives in
 * `commands/<name>.ts`, which registers it on the program; what they share (exit codes, opening
 * a bundle, option parsers) is in `shared.ts`.
 * Exit status: 0 success, 1 some rows or checks failed, 2 the command could not run.
 */
import { Command } from 'commander';
import { CliError, EXIT_ERROR } from './shared.ts';
import { registerCheck } from './commands/check.ts';
import { registerScore } from './commands/score.ts';
import { registerInspect } from './commands/inspect.ts';
import { registerProfile } from './commands/profile.ts';
import { registerOutcomes } from './commands/outcomes.ts';
import { registerSimulate } from './commands/simulate.ts';
import { registerBackfill } from './commands/backfill.ts';
import { registerExport } from './commands/export.ts';
import { registerIngest } from './commands/ingest.ts';
import { registerServe } from './commands/serve.ts';
import { registerReplay } from './commands/replay.ts';
import { registerGate } from './commands/gate.ts';
import { registerRollout } from './commands/rollout.ts';

/** In the order `rtml --help` lists them. */
const COMMANDS: ReadonlyArray<(program: Command) => void> = [
  registerCheck,
  registerScore,
  registerInspect,
  registerProfile,
  registerOutcomes,
  registerSimulate,
  registerBackfill,
  registerExport,
  registerIngest,
  registerServe,
  registerReplay,
  registerGate,
  registerRollout,
];

export function buildProgram(): Command {
  // Configure the program before registering: commander copies these settings into each
  // command when it is created.
  const program = new Command()
    .name('rtml')
    .description('Serve, score and check trained ML model bundles')
    .showHelpAfterError()
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT_ERROR));
  for (const register of COMMANDS) register(program);
  return program;
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  if (err instanceof CliError) {
    process.stderr.write(err.message);
    process.exit(err.exitCode);
  }
  // Anything else a command threw (a bad option value checked in the action, a file that
  // cannot be read, a server that does not answer) is still "could not run": one line, not a
  // stack trace, unless RTML_DEBUG asks for it.
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`rtml: ${message}\n`);
  if (process.env.RTML_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  process.exit(EXIT_ERROR);
}
