/**
 * The promotion's gates in a worker thread (started by ./promotion.ts): loads the candidate
 * and the champion from their folders, runs the gates the candidate declares, posts the
 * report back and is done. The directional proofs and the replay budget take seconds; on the
 * server's event loop they would stall every request.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadModelBundle } from '../bundle/load.ts';
import { runGates } from './gates.ts';
import type { GateReply } from './promotion.ts';

if (parentPort === null) throw new Error('gate-worker.ts runs as a worker thread of the promotion');
const port = parentPort;
const { candidate: candidateDir, champion: championDir } = workerData as { candidate: string; champion: string | null };

try {
  const candidate = await loadModelBundle(candidateDir);
  const champion = championDir ? await loadModelBundle(championDir) : undefined;
  try {
    const spec = candidate.manifest.gates;
    const reply: GateReply = spec ? { ok: true, report: await runGates(candidate, spec, { champion }) } : { ok: true, report: null };
    port.postMessage(reply);
  } finally {
    await candidate.model.close?.();
    await champion?.model.close?.();
  }
} catch (err) {
  port.postMessage({ ok: false, error: (err as Error)?.message ?? String(err) } satisfies GateReply);
}
