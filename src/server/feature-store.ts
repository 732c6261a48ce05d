/**
 * The server's feature store follows the loaded bundles: it is opened with the streams the
 * bundles loaded at start declare, and a bundle loaded later (hot reload, a new service) has
 * its streams configured on the store before it serves its first request, so declaring a
 * new stream needs no restart. A store that cannot take the new streams refuses the load
 * (the loaded versions keep serving).
 */
import type { Bundle } from '../bundle/load.ts';
import type { StreamStoreConfig } from '../features/aggregate.ts';
import { streamsOf, type StreamDefinition } from '../features/events.ts';
import type { FeatureStore } from '../features/types.ts';

export interface FeatureStoreLogger {
  warn(msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * Opens the feature store with the streams the loaded bundles read (`streams`), given their
 * declarations (to read events from elsewhere exactly as HTTP ingestion reads them).
 */
export type FeatureStoreFactory = (
  streams: Record<string, StreamStoreConfig>,
  context: { definitions: ReadonlyMap<string, StreamDefinition>; logger: FeatureStoreLogger },
) => Promise<FeatureStore>;

export class FeatureStoreHost {
  private current: FeatureStore | null = null;
  /** Loads run one at a time through here, so the store is opened once. */
  private queue: Promise<unknown> = Promise.resolve();
  private warnedNoStore = false;

  constructor(
    private readonly open: FeatureStoreFactory | null,
    private readonly logger: FeatureStoreLogger,
  ) {}

  /** Null until some loaded bundle reads features from a source (or when the server has no store). */
  get store(): FeatureStore | null {
    return this.current;
  }

  /**
   * Makes the store serve every stream `bundles` declare (all the bundles that will be
   * loaded once they serve): opens it on first need, else adds and widens streams.
   */
  prepare(bundles: readonly Bundle[]): Promise<void> {
    const run = this.queue.then(() => this.apply(bundles));
    this.queue = run.catch(() => {});
    return run;
  }

  async close(): Promise<void> {
    await this.queue;
    await this.current?.close();
  }

  private async apply(bundles: readonly Bundle[]): Promise<void> {
    if (!bundles.some((b) => b.sources !== null)) return;
    const { streams, conflicts } = streamsOf(bundles);
    for (const c of conflicts) this.logger.warn(c);
    const configs = Object.fromEntries([...streams].map(([name, s]) => [name, { latenessMs: s.latenessMs, retentionMs: Math.max(s.retentionMs, 1) }]));
    if (this.current) return this.current.configureStreams(configs);
    if (!this.open) {
      if (!this.warnedNoStore) this.logger.warn('services gather features from sources but no feature store is configured: those features take their defaults');
      this.warnedNoStore = true;
      return;
    }
    this.current = await this.open(configs, { definitions: streams, logger: this.logger });
  }
}
