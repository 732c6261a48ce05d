/**
 * Loading an XGBoost JSON model file without stalling the event loop (the server answers
 * health probes and other services' decisions meanwhile).
 *
 * Where a big model's load time goes (200,000 trees of depth 2, a 126 MB file, on this
 * project's 2-core machine when quiet): reading the file 0.1 s, JSON.parse 1.3-1.4 s,
 * validation (`parseXgbModel`) 0.9-1.2 s, choosing the evaluator and laying out its tables
 * 0.25 s (then the golden check scores its rows: golden.ts yields). So one load path, in two
 * steps:
 *  1. `prepareForest`: read, parse, validate, choose the evaluator and, for the flat one, lay
 *     its tables out; the trees the evaluator still needs as trees (all of them for compiled
 *     code, the few walked ones for flat) are packed (packed.ts). For a file of at least
 *     OFF_THREAD_BYTES this runs in a worker thread (load-worker.ts), and the result comes back
 *     by transfer: a few large buffers, no copy. Smaller files are prepared here, where a
 *     thread's start would cost more than the work.
 *  2. `runtimeFromForest`, on this thread: unpack the trees (views into the buffers) and build
 *     the evaluator: the flat one from its tables at once; generated code one chunk function at
 *     a time (`new Function` must run on the thread that calls it), in slices that let the event
 *     loop run between them.
 * The CLI and the server load through the same path.
 */
import { readFile, stat } from 'node:fs/promises';
import { Slices, startWorker } from '../../threads.ts';
import { ModelLoadError, type ModelRuntime, type RuntimeAdapter } from '../runtime.ts';
import { compileForestInSteps, type ForestAccumulator } from './compile.ts';
import { flatAccumulator, flatWalker, flatWalkedTrees, layOutFlatForest, type FlatTables } from './flat.ts';
import { parseXgbJson, parseXgbModel, XgbFormatError, type XgbModel, type XgbTree } from './format.ts';
import { packedBuffers, packTrees, unpackTree, type PackedTrees } from './packed.ts';
import { chooseEvaluator, modelHeader, modelObjective, runtimeOf, type XgbModelHeader } from './runtime.ts';

/** Model files at least this large are prepared in a worker thread (below it: ~10 ms of work here). */
export const OFF_THREAD_BYTES = 1024 * 1024;

/** A model read, validated and laid out for its evaluator: typed arrays and a small header, transferable. */
export interface PreparedForest {
  readonly header: XgbModelHeader;
  readonly evaluator: 'compiled' | 'flat';
  /**
   * The trees needed as trees: all of them for compiled code or exact contributions (when the
   * model has them: header.noContributions is null), else those the flat tables cannot hold.
   */
  readonly trees: PackedTrees;
  /** The flat evaluator's tables (flat only). */
  readonly flat: FlatTables | null;
}

/** Parses, validates and lays out a model file's text; a ModelLoadError says what is wrong with it. */
export function prepareForest(text: string, file: string): PreparedForest {
  let json: unknown;
  try {
    json = parseXgbJson(text);
  } catch (err) {
    throw new ModelLoadError(file, `not valid JSON (truncated or corrupt?): ${(err as Error).message}`);
  }
  let model: XgbModel;
  try {
    model = parseXgbModel(json);
    modelObjective(model); // an unsupported objective fails before any evaluator work
  } catch (err) {
    if (err instanceof XgbFormatError) throw new ModelLoadError(file, err.message);
    throw err;
  }
  const evaluator = chooseEvaluator(model);
  const flat = evaluator === 'flat' ? layOutFlatForest(model) : null;
  const header = modelHeader(model);
  const trees = packTrees(model.trees, flat && header.noContributions !== null ? flatWalkedTrees(flat) : undefined);
  return { header, evaluator, trees, flat };
}

/** Reads and prepares a model file (what the worker thread runs). */
export async function readPreparedForest(file: string): Promise<PreparedForest> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ModelLoadError(file, (err as Error).message);
  }
  return prepareForest(text, file);
}

/** The buffers to transfer with a prepared forest. */
export function preparedBuffers(forest: PreparedForest): ArrayBuffer[] {
  const buffers = packedBuffers(forest.trees);
  const { flat, header } = forest;
  if (flat) buffers.push(...[flat.P, flat.L, flat.M, flat.kind, flat.steps, flat.root, flat.group, flat.walkedTree].map((a) => a.buffer as ArrayBuffer));
  if (header.treeWeights) buffers.push(header.treeWeights.buffer as ArrayBuffer);
  return buffers;
}

/** What the worker thread answers. */
export type PrepareReply = { ok: true; forest: PreparedForest } | { ok: false; reason: string } | { ok: false; error: string };

/** Prepares a model file in a worker thread of its own, which ends with the answer. */
export function prepareOffThread(file: string): Promise<PreparedForest> {
  return new Promise((resolve, reject) => {
    const worker = startWorker(new URL('./load-worker.ts', import.meta.url), { workerData: { file } });
    let settled = false;
    // After its answer the thread ends by itself; terminating it instead would tear its heap
    // down (the whole parsed model) while this thread waits to join it: ~70 ms for 126 MB.
    let answered = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      fn();
      if (!answered) void worker.terminate();
    };
    worker.once('message', (reply: PrepareReply) =>
      settle(() => {
        answered = true;
        if (reply.ok) resolve(reply.forest);
        else if ('reason' in reply) reject(new ModelLoadError(file, reply.reason));
        else reject(new Error(`loading ${file}: ${reply.error}`));
      }),
    );
    // Out of memory on a huge file, or a bug: the load fails, the process goes on.
    worker.once('error', (err) => settle(() => reject(new ModelLoadError(file, `the loader thread failed: ${err.message}`))));
    worker.once('exit', (code) => settle(() => reject(new ModelLoadError(file, `the loader thread exited (code ${code}) without an answer`))));
  });
}

/** Builds the runtime from a prepared forest on this thread, in slices. */
export async function runtimeFromForest(forest: PreparedForest): Promise<ModelRuntime> {
  const { header, evaluator, flat } = forest;
  const slices = new Slices();
  const trees = new Array<XgbTree>(forest.trees.index.length);
  let nextSet = 0;
  for (let k = 0; k < trees.length; k++) {
    const unpacked = unpackTree(forest.trees, k, nextSet);
    trees[k] = unpacked.tree;
    nextSet = unpacked.nextSet;
    if (slices.due) await slices.pause();
  }
  let accumulate: ForestAccumulator;
  if (flat) {
    const byIndex = new Map<number, XgbTree>();
    forest.trees.index.forEach((t, k) => byIndex.set(t, trees[k]));
    accumulate = flatAccumulator(flat, (t) => flatWalker(header.treeWeights, byIndex.get(t)!, t));
  } else {
    const steps = compileForestInSteps({ ...header, trees });
    for (;;) {
      const step = steps.next();
      if (step.done) {
        accumulate = step.value;
        break;
      }
      if (slices.due) await slices.pause();
    }
  }
  return runtimeOf(header, evaluator, accumulate, header.noContributions === null ? trees : null);
}

/** Loads a model file: prepared off this thread when it is big, the runtime built here. */
export async function loadXgboostModel(file: string): Promise<ModelRuntime> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (err) {
    throw new ModelLoadError(file, (err as Error).message);
  }
  const forest = size >= OFF_THREAD_BYTES ? await prepareOffThread(file) : await readPreparedForest(file);
  return runtimeFromForest(forest);
}

export const xgboostAdapter: RuntimeAdapter = {
  format: 'xgboost-json',
  load: (file) => loadXgboostModel(file),
};
