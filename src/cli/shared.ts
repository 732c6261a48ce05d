/**
 * What the `rtml` commands share: exit codes, the one way a command stops with an error
 * (`CliError`, printed and turned into an exit code by `main.ts`), opening a bundle, the
 * options of commands that read data files, and the parsers commander calls on option values.
 */
import { InvalidArgumentError, Option } from 'commander';
import { BundleError, type Bundle } from '../bundle/load.ts';
import type { FileFormat } from '../batch/score-file.ts';

/** Exit status: 0 success, 1 some rows or checks failed, 2 the command could not run. */
export const EXIT_FAILED = 1;
export const EXIT_ERROR = 2;

/** Stops the command: `main.ts` writes `message` (as is) to standard error and exits with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT_ERROR,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Loads a bundle with `load`; an invalid bundle stops the command with exit status 2. */
export async function openBundle<B extends Bundle>(dir: string, load: (dir: string) => Promise<B>): Promise<B> {
  try {
    return await load(dir);
  } catch (err) {
    if (err instanceof BundleError) throw new CliError(`rtml: invalid bundle ${dir}\n${err.message}\n`);
    throw err;
  }
}

/** The default of `--data-dir`: where the decision log lives. */
export function defaultDataDir(): string {
  return process.env.RTML_DATA_DIR ?? '.rtml-data';
}

export function parseTolerance(value: string): number {
  const v = Number(value);
  if (!(v >= 0)) throw new InvalidArgumentError('must be a non-negative number');
  return v;
}

export function parseWholeNumber(value: string): number {
  const v = Number(value);
  if (!Number.isInteger(v) || v < 0) throw new InvalidArgumentError('must be a whole number >= 0');
  return v;
}

/** `name=path` pairs, repeatable. */
export function collectPairs(value: string, previous: Record<string, string>): Record<string, string> {
  const at = value.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError('use NAME=FILE');
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}

export function parseFormat(value: string): FileFormat {
  if (value !== 'csv' && value !== 'jsonl') throw new InvalidArgumentError('must be csv or jsonl');
  return value;
}

/** Options of every command that reads a data file. */
export interface DataFileOptions {
  allowMissing: string[];
  delimiter?: string;
}

/** `--allow-missing`, for a command that reads data files. */
export function allowMissingOption(): Option {
  return new Option('--allow-missing <columns>', 'columns deliberately absent from the data, comma-separated, repeatable (else a missing or misspelt column is an error)').argParser(collectNames).default([]);
}

/** `--delimiter`, for a command that reads CSV files. */
export function delimiterOption(): Option {
  return new Option('--delimiter <char>', "CSV field separator: ',' (default), ';', tab or '|'").argParser(parseDelimiter);
}

function collectNames(value: string, previous: string[]): string[] {
  const names = value.split(',').map((n) => n.trim()).filter((n) => n !== '');
  if (names.length === 0) throw new InvalidArgumentError('name one or more columns, comma-separated');
  return [...previous, ...names];
}

export function parseDelimiter(value: string): string {
  const delimiter = value === 'tab' || value === '\\t' ? '\t' : value;
  if (![',', ';', '\t', '|'].includes(delimiter)) throw new InvalidArgumentError("must be one of ',' ';' tab '|'");
  return delimiter;
}
