/**
 * What rtml's worker threads share: starting one from a TypeScript module, and giving the
 * event loop a turn during long work that must stay on it.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Starts a worker thread on the module `entry` (a `.ts` URL next to the caller). Running from
 * the TypeScript sources (tsx), the worker gets tsx's loader first: workers do not inherit the
 * main thread's module hooks. Built to JavaScript, the `.js` next to it runs as is.
 */
export function startWorker(entry: URL, options: WorkerOptions = {}): Worker {
  if (entry.href.endsWith('.ts') && import.meta.url.endsWith('.ts')) {
    const tsx = import.meta.resolve('tsx/esm/api');
    const boot = `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); });`;
    return new Worker(boot, { ...options, eval: true });
  }
  return new Worker(new URL(entry.href.replace(/\.ts$/, '.js')), options);
}

/** How long work that stays on the event loop runs before it lets the loop take a turn. */
export const SLICE_MS = 10;

/**
 * Long synchronous work on the event loop, cut into slices of about `sliceMs`: between two
 * slices the loop answers whatever waits (health probes, other services' decisions). In a
 * loop: `if (slices.due) await slices.pause();`.
 */
export class Slices {
  private start = performance.now();

  constructor(private readonly sliceMs = SLICE_MS) {}

  /** The current slice is used up. */
  get due(): boolean {
    return performance.now() - this.start >= this.sliceMs;
  }

  /** Lets the event loop run what waits (I/O included: `setImmediate`), then starts a new slice. */
  async pause(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.start = performance.now();
  }
}
