/**
 * The service monitor's evaluation thread: judges the windows (drift tests, KS on the count
 * window's raw values, data quality, model health, attribution) and finds the count window's
 * alert candidates, so that the statistics never run on the event loop that answers decisions.
 * Keeps a copy of the monitor's windows, fed with the blocks that changed and the raw rows
 * observed since the previous job (read from the monitor's shared rings); it sends back the reports it computed, serialized.
 */
import { serialize } from 'node:v8';
import { parentPort, workerData } from 'node:worker_threads';
import { COUNT_WINDOW, MonitorWindows } from './histogram.ts';
import { loadBlocks, windowCandidates, WindowJudge, type JudgeJob, type JudgeResult, type JudgeWorkerInit } from './judge.ts';
import type { WindowReport } from './service-monitor.ts';

const init = workerData as JudgeWorkerInit;
const windows = new MonitorWindows(init.spec, init.windows);
const judge = new WindowJudge(init.reference, init.config, init.attribution);
/** Windows judged at least once (the monitor keeps their last reports: only new ones are sent). */
const judgedBefore = new Set<string>();

parentPort!.on('message', (job: JudgeJob) => {
  let result: JudgeResult;
  try {
    if (job.resetRaw) windows.countWindow!.resetRaw();
    if (job.raw) windows.countWindow!.pushRaw(job.raw);
    else windows.countWindow!.pushRawRows(init.raw, job.rawFrom, job.rawTo);
    loadBlocks(windows, job.blocks);
    let alerting: WindowReport | undefined;
    const judged: Record<string, Uint8Array> = {};
    for (const name of windows.windowNames) {
      if (name !== COUNT_WINDOW && !job.refresh && judgedBefore.has(name)) continue;
      const report = judge.evaluateWindow(windows, windows.snapshot(name, job.now), name === COUNT_WINDOW);
      if (name === COUNT_WINDOW) alerting = report;
      judged[name] = serialize(report);
      judgedBefore.add(name);
    }
    result = { id: job.id, candidates: windowCandidates(alerting, `last_${init.config.count_window}`, init.config), reports: judged };
  } catch (err) {
    result = { id: job.id, error: String((err as Error)?.stack ?? err) };
  }
  parentPort!.postMessage(result);
});
