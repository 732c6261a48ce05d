/**
 * Batch and ad-hoc scoring of a file (CSV or JSON lines), streamed in chunks so memory
 * stays constant whatever the file size. Each output row is the input row's columns, in
 * order, followed by the model's outputs; extra columns (ids, labels) pass through. A bad
 * row is reported with its line number and reason, and the rest are scored.
 */
import { createReadStream, createWriteStream, mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { bundleColumns, ColumnCheck, csvCell, csvLine, csvRecords, formatOf, jsonlRecords, type FileFormat, type ReadOptions, type RecordError, type SourceRecord } from './records.ts';
import type { ModelBundle } from '../bundle/load.ts';
import type { RawRow } from '../bundle/encoding.ts';

export { formatOf, type FileFormat } from './records.ts';
import { createScorer } from '../pipeline/score.ts';
import { decideAfterModel, namedOutputs } from '../pipeline/policy.ts';
import { explainDecision, rowOf, type RowExplanation } from '../pipeline/explain.ts';
import { contributionSupport } from '../models/index.ts';
import { textRowConverter } from '../decision/index.ts';
import type { OutputValue } from '../bundle/outputs.ts';
import { scoreCsv } from './score-csv.ts';

export interface RowFailure {
  /** 1-based line of the file where the row ends (the header is line 1 in CSV). */
  line: number;
  errors: RecordError[];
}

export interface ScoreFileOptions {
  input: string;
  output: string;
  inputFormat?: FileFormat;
  outputFormat?: FileFormat;
  /** Rows scored per model call. */
  chunkSize?: number;
  onFailure?: (failure: RowFailure) => void;
  /** Something the caller should know that fails no row (a field the output cannot hold). */
  onNotice?: (message: string) => void;
  /** Add the policy's decision, reason codes and fallback cause when the bundle has a policy (default true). */
  decisions?: boolean;
  /**
   * Add every feature's exact contribution to the score's margin (`contribution_<feature>`) and
   * the bias (`contribution_bias`); the model must have exact contributions.
   */
  explain?: boolean;
  /** Feature columns deliberately absent from the input: scored as missing, or their default. */
  allowMissing?: readonly string[];
  /** CSV field separator (default `,`). */
  delimiter?: string;
  /** Called after each chunk with bytes of input read so far and the total (null for stdin). */
  onProgress?: (bytesRead: number, totalBytes: number | null, rowsDone: number) => void;
}

export interface ScoreFileSummary {
  rows: number;
  scored: number;
  failed: number;
  seconds: number;
}

async function write(out: Writable, text: string): Promise<void> {
  if (!out.write(text)) await once(out, 'drain');
}

export async function scoreFile(bundle: ModelBundle, options: ScoreFileOptions): Promise<ScoreFileSummary> {
  const started = performance.now();
  const inputFormat = options.inputFormat ?? formatOf(options.input);
  const outputFormat = options.outputFormat ?? formatOf(options.output);
  const chunkSize = options.chunkSize ?? 2048;
  // With a policy, each row also gets the decision the server would give it.
  const policy = options.decisions === false ? null : bundle.policy;
  const scorer = createScorer(bundle, { fromText: inputFormat === 'csv', explainerNow: policy !== null });
  const typed = inputFormat === 'csv' ? textRowConverter(bundle.encoding.features) : (row: RawRow) => row;
  // Contributions: for the model reasons the policy asks for (as the server gives them), and
  // with `explain` as columns of their own; computed for a chunk's rows at once.
  const explainer = options.explain || policy?.modelReasons ? scorer.explainer() : null;
  if (options.explain && !explainer) {
    const support = contributionSupport(bundle.model);
    throw new Error(`--explain: this model has no exact contributions: ${support.exact ? 'unknown reason' : support.reason}`);
  }
  const featureCount = bundle.encoding.features.length;
  const explainColumns = options.explain ? [...bundle.encoding.features.map((f) => `contribution_${f.name}`), 'contribution_bias'] : [];
  const outputColumns = [...scorer.outputColumns, ...(policy ? ['decision', 'reason_codes', 'fallback'] : []), ...explainColumns];
  const outputValues = (row: RawRow, outcome: { score: number; outputs: OutputValue[] }, explained: RowExplanation | null): OutputValue[] => {
    const values = [...outcome.outputs];
    if (policy) {
      const features = typed(row);
      const pre = policy.preDecide(features);
      const verdict = pre
        ? { decision: pre, fallbackCause: null }
        : decideAfterModel(policy, features, { ok: true, score: outcome.score, outputs: namedOutputs(scorer.outputColumns, outcome.outputs) });
      const reasons = explainDecision(policy, explainer, verdict.decision, features, () => explained!)?.reasons ?? verdict.decision.reasons;
      values.push(verdict.decision.action, reasons.map((r) => r.code).join(' '), verdict.fallbackCause ?? '');
    }
    if (options.explain) values.push(...explained!.values, explained!.bias);
    return values;
  };

  const totalBytes = options.input === '-' ? null : statSync(options.input).size;
  const input = options.input === '-' ? process.stdin : createReadStream(options.input, { highWaterMark: 1 << 16 });
  let bytesRead = 0;
  input.on('data', (chunk: Buffer | string) => {
    bytesRead += chunk.length;
  });
  if (options.output !== '-') mkdirSync(dirname(options.output), { recursive: true });
  const output = options.output === '-' ? process.stdout : createWriteStream(options.output);
  // A write error (disk full, permissions) surfaces at the next chunk instead of crashing the process.
  let outputError: Error | null = null;
  output.on('error', (err) => (outputError ??= err));
  const outputDone = options.output === '-' ? Promise.resolve() : new Promise<void>((done) => output.once('close', () => done()));

  // Every feature's column must be there (or be said to be absent on purpose): a missing or
  // misspelt one would score every row on a missing value. Checked once on a CSV's header;
  // in JSON lines, a misspelt key or a missing sourced feature makes a bad row.
  const expected = bundleColumns(bundle, { allowMissing: options.allowMissing });
  ColumnCheck.requireKnown(options.allowMissing ?? [], [expected], bundle.name);
  const read: ReadOptions = { delimiter: options.delimiter, columns: expected, source: options.input === '-' ? 'standard input' : options.input };
  const header = { columns: null as string[] | null };
  const summary: ScoreFileSummary = { rows: 0, scored: 0, failed: 0, seconds: 0 };
  let wroteHeader = false;

  const fail = (failure: RowFailure) => {
    summary.failed++;
    options.onFailure?.(failure);
  };

  // A CSV has one header: a field a later JSON line brings cannot be written, and says so once.
  const dropped = new Set<string>();
  const noticeDropped = (row: Record<string, unknown>, line: number) => {
    for (const key of Object.keys(row)) {
      if (header.columns!.includes(key) || dropped.has(key) || dropped.size >= 20) continue;
      dropped.add(key);
      options.onNotice?.(`line ${line}: field ${JSON.stringify(key.slice(0, 100))} is not in the CSV header (the first row's fields and the features): not written; write JSON lines to keep every field`);
    }
  };

  // A chunk keeps unreadable records in place so failures are reported in line order.
  const flush = async (chunk: SourceRecord[]) => {
    const readable = chunk.filter((r) => r.row !== null);
    const scored = await scorer.scoreRows(readable.map((r) => r.row as RawRow));
    const { outcomes } = scored;
    const valid = outcomes.filter((o) => o.ok).length;
    const explained = explainer && valid > 0 ? explainer.explain(scored.inputs, valid, scored.raw) : null;
    let next = 0;
    const lines: string[] = [];
    if (outputFormat === 'csv' && !wroteHeader) {
      // JSON lines into CSV: the first row's fields, and every feature even if that row lacked it.
      const inputColumns = header.columns ?? [...new Set([...Object.keys(readable[0]?.row ?? {}), ...bundle.encoding.features.map((f) => f.name)])];
      clashCheck(inputColumns);
      header.columns = inputColumns;
      lines.push(csvLine([...inputColumns, ...outputColumns]));
      wroteHeader = true;
    }
    for (const record of chunk) {
      if (record.row === null) {
        fail({ line: record.line, errors: record.errors });
        continue;
      }
      const outcome = outcomes[next++];
      if (!outcome.ok) {
        fail({ line: record.line, errors: outcome.errors });
        continue;
      }
      summary.scored++;
      const row = record.row;
      const values = outputValues(row, outcome, explained ? rowOf(explained, outcome.slot, featureCount) : null);
      if (outputFormat === 'csv') {
        if (inputFormat === 'jsonl') noticeDropped(row, record.line);
        const cells = header.columns!.map((c) => csvCell(row[c]));
        for (const v of values) cells.push(csvCell(v));
        lines.push(csvLine(cells));
      } else {
        const record: Record<string, unknown> = { ...row };
        outputColumns.forEach((c, j) => (record[c] = values[j]));
        lines.push(JSON.stringify(record) + '\n');
      }
    }
    if (outputError) throw outputError;
    if (lines.length > 0) await write(output, lines.join(''));
    options.onProgress?.(bytesRead, totalBytes, summary.rows);
  };

  const clashCheck = (inputColumns: readonly string[]) => {
    const clash = inputColumns.find((c) => outputColumns.includes(c));
    if (clash !== undefined) throw new Error(`the input already has a column named ${JSON.stringify(clash)}, which the model's output would overwrite`);
  };

  // CSV to CSV, the common case, goes from bytes to bytes (score-csv.ts); the rest record by record.
  const scoreAll = async () => {
    if (inputFormat === 'csv' && outputFormat === 'csv') {
      const counts = await scoreCsv(input, {
        scorer,
        read,
        header,
        chunkSize,
        outputColumns,
        needsRow: policy !== null,
        needsExplanation: explainer !== null,
        values: (row, outcome, explained) => outputValues(row!, outcome, explained),
        headerLine: (columns, first) => {
          if (first) clashCheck(columns);
          return csvLine([...columns, ...outputColumns]);
        },
        write: async (bytes) => {
          if (outputError) throw outputError;
          if (!output.write(bytes)) await once(output, 'drain');
        },
        fail: (line, errors) => fail({ line, errors }),
        progress: (rows) => options.onProgress?.(bytesRead, totalBytes, rows),
      });
      summary.rows = counts.rows;
      summary.scored = counts.scored;
      return;
    }
    const records = inputFormat === 'csv' ? csvRecords(input, header, read) : jsonlRecords(input, read);
    let chunk: SourceRecord[] = [];
    for await (const record of records) {
      summary.rows++;
      chunk.push(record);
      if (chunk.length >= chunkSize) {
        await flush(chunk);
        chunk = [];
      }
    }
    if (chunk.length > 0) await flush(chunk);
    if (outputFormat === 'csv' && !wroteHeader && header.columns) {
      await write(output, csvLine([...header.columns, ...outputColumns]));
    }
  };

  try {
    await scoreAll();
  } finally {
    if (output !== process.stdout) output.end();
    input.destroy();
  }
  await outputDone;
  if (outputError) throw outputError;
  summary.seconds = (performance.now() - started) / 1000;
  return summary;
}
