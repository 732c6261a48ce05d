/**
 * Whether a challenger may become champion: the gates its bundle declares (`gates:` in its
 * rtml.yaml, as `rtml gate` runs them), against the champion, run in a worker thread.
 */
import { startWorker } from '../threads.ts';
import type { GateReport } from './gates.ts';

/** The worker's answer: the report (null: the bundle declares no gates), or why it could not run. */
export type GateReply = { ok: true; report: GateReport | null } | { ok: false; error: string };

/** Runs the candidate's gates off the event loop; rejects when they could not run at all. */
export function gatesOffThread(candidateDir: string, championDir: string | null): Promise<GateReport | null> {
  return new Promise((resolve, reject) => {
    const worker = startWorker(new URL('./gate-worker.ts', import.meta.url), { workerData: { candidate: candidateDir, champion: championDir } });
    let answered = false;
    worker.once('message', (reply: GateReply) => {
      answered = true;
      if (reply.ok) resolve(reply.report);
      else reject(new Error(`the gates could not run: ${reply.error}`));
      void worker.terminate();
    });
    worker.once('error', (err) => reject(err));
    worker.once('exit', (code) => {
      if (!answered) reject(new Error(`the gates' worker exited with ${code} before answering`));
    });
  });
}
