/**
 * The loader's worker thread (started by load.ts for big model files): reads, parses,
 * validates and lays out one model file, posts the result back by transfer, and is done.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ModelLoadError } from '../runtime.ts';
import { preparedBuffers, readPreparedForest, type PrepareReply } from './load.ts';

if (parentPort === null) throw new Error('load-worker.ts runs as a worker thread of the model loader');
const port = parentPort;
const { file } = workerData as { file: string };

try {
  const forest = await readPreparedForest(file);
  port.postMessage({ ok: true, forest } satisfies PrepareReply, preparedBuffers(forest));
} catch (err) {
  const reply: PrepareReply = err instanceof ModelLoadError ? { ok: false, reason: err.reason } : { ok: false, error: (err as Error)?.stack ?? String(err) };
  port.postMessage(reply);
}
