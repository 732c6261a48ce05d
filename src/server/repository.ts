/**
 * The model repository: a directory with one folder per service. A service folder is
 * either a bundle itself (it holds rtml.yaml) or holds one bundle folder per version.
 *
 * Loading is all-or-nothing per service: every version must load, validate, and pass its
 * golden parity check, then the service's version table is swapped in one assignment, so
 * in-flight requests finish on the versions they started with and a broken new version is
 * refused while the old one keeps serving.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BundleError, hasModel, loadBundle, MANIFEST_FILE, type Bundle } from '../bundle/load.ts';
import { checkGolden } from '../bundle/golden.ts';
import type { DecisionTarget } from '../pipeline/decide.ts';
import { createScorer, type Scorer } from '../pipeline/score.ts';
import { contributionSupport } from '../models/index.ts';
import type { AlertSink } from '../monitor/alerts.ts';
import { monitoringSchema } from '../monitor/config.ts';
import { readReference, referenceMismatch } from '../monitor/reference.ts';
import { ServiceMonitor } from '../monitor/service-monitor.ts';

export interface ServiceVersion extends DecisionTarget {
  readonly version: string;
  readonly loadedAt: string;
  /** Golden parity measured at load, when the bundle has a golden file. */
  readonly parity: { rows: number; maxDiff: number } | null;
  readonly stats: InferenceStats;
  /** Live monitoring, when the bundle has a reference profile. */
  readonly monitor: ServiceMonitor | null;
}

/** Counters for the Open Inference Protocol's statistics extension. */
export interface InferenceStats {
  inferenceCount: number;
  executionCount: number;
  lastInference: number;
  success: { count: number; ns: number };
  fail: { count: number; ns: number };
}

export interface Service {
  readonly name: string;
  readonly dir: string;
  /** Replaced as a whole on reload; never mutated in place. */
  versions: ReadonlyMap<string, ServiceVersion>;
  /** The version served when a request names none: the rollout's champion, else the highest. */
  defaultVersion: ServiceVersion;
  /** Files and mtimes the loaded versions came from, to notice changes. */
  signature: string;
}

export interface RepositoryEntry {
  name: string;
  version: string;
  state: 'READY' | 'UNAVAILABLE';
  reason: string;
}

export interface RepositoryLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export class ServiceLoadError extends Error {
  constructor(
    readonly service: string,
    message: string,
  ) {
    super(message);
    this.name = 'ServiceLoadError';
  }
}

const SERVICE_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** How long a replaced version's runtime stays open for requests that started on it. */
const RETIRE_AFTER_MS = 30_000;

/** Natural order of version labels: "10" after "9", "1.10" after "1.9". */
export function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

export class ModelRepository {
  private readonly services = new Map<string, Service>();
  /** Why the last attempt to load a service failed, for the repository index. */
  private readonly failures = new Map<string, string>();
  /** Loads under way, by service: the files' signature they read, and their result. */
  private readonly loading = new Map<string, { signature: string; done: Promise<Service> }>();
  private watcher: NodeJS.Timeout | null = null;
  /**
   * Runs after a service's versions loaded and passed their checks, before they serve (the
   * server configures the feature store's streams here); a rejection refuses the load.
   */
  beforeServe: ((name: string, bundles: Bundle[]) => Promise<void>) | null = null;
  /** Runs once a service's new versions serve (the server applies the operators' safe mode and acknowledgements to their monitors). */
  afterServe: ((service: Service) => void) | null = null;
  /** The version an operator made champion (the rollout), when there is one; else the highest serves. */
  championOf: (name: string) => string | null = () => null;
  /** Services an operator unloaded: neither `loadAll` nor the watcher loads them (an explicit `load` does). */
  unloadedByOperator: (name: string) => boolean = () => false;

  constructor(
    readonly root: string,
    private readonly logger: RepositoryLogger,
    /** Where every service's alerts go. */
    private readonly alertSinks: readonly AlertSink[] = [],
  ) {}

  get(name: string): Service | undefined {
    return this.services.get(name);
  }

  list(): Service[] {
    return [...this.services.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Service folders present on disk. */
  discover(): string[] {
    if (!existsSync(this.root)) return [];
    return readdirSync(this.root, { withFileTypes: true })
      .filter((d) => d.isDirectory() && SERVICE_NAME.test(d.name) && bundleDirs(join(this.root, d.name)).length > 0)
      .map((d) => d.name)
      .sort();
  }

  /** Loads every service found; a service that fails is reported and left out. */
  async loadAll(): Promise<{ loaded: string[]; failed: Record<string, string> }> {
    const loaded: string[] = [];
    const failed: Record<string, string> = {};
    for (const name of this.discover()) {
      if (this.unloadedByOperator(name)) continue;
      try {
        await this.load(name);
        loaded.push(name);
      } catch (err) {
        failed[name] = (err as Error).message;
      }
    }
    return { loaded, failed };
  }

  /**
   * Loads (or reloads) one service from disk. Throws ServiceLoadError and keeps the old one if
   * anything is wrong. One load per service at a time (the watcher and the load endpoint may
   * ask at once): a request while the same files are loading gets that load's result; files
   * that changed since it started are loaded again once it is done.
   */
  async load(name: string): Promise<Service> {
    if (!SERVICE_NAME.test(name)) throw new ServiceLoadError(name, `not a service name: ${JSON.stringify(name)}`);
    const dir = join(this.root, name);
    const dirs = existsSync(dir) ? bundleDirs(dir) : [];
    if (dirs.length === 0) throw this.fail(name, `no bundle in ${dir}: expected ${MANIFEST_FILE} there or in one folder per version`);
    const signature = signatureOf(dir);
    const running = this.loading.get(name);
    if (running) {
      if (running.signature === signature) return running.done;
      await running.done.catch(() => {});
      return this.load(name);
    }
    const done = this.loadVersions(name, dir, dirs, signature);
    this.loading.set(name, { signature, done });
    try {
      return await done;
    } finally {
      if (this.loading.get(name)?.done === done) this.loading.delete(name);
    }
  }

  private async loadVersions(name: string, dir: string, dirs: string[], signature: string): Promise<Service> {
    const versions = new Map<string, ServiceVersion>();
    try {
      for (const bundleDir of dirs) {
        const version = await loadVersion(bundleDir, this.alertSinks);
        if (version.bundle.name !== name) throw new Error(`${bundleDir}: rtml.yaml names the service ${JSON.stringify(version.bundle.name)}, but it sits in the folder for ${JSON.stringify(name)}`);
        if (versions.has(version.version)) throw new Error(`${bundleDir}: version ${version.version} appears twice`);
        versions.set(version.version, version);
      }
      await this.beforeServe?.(name, [...versions.values()].map((v) => v.bundle));
    } catch (err) {
      for (const v of versions.values()) {
        v.monitor?.close();
        await v.bundle.model?.close?.();
      }
      throw this.fail(name, err instanceof BundleError ? err.message : (err as Error).message);
    }

    const chosen = defaultOf(versions, this.championOf(name));
    const previous = this.services.get(name);
    let service: Service;
    if (previous) {
      const retired = previous.versions;
      // The swap: one assignment each; requests that already hold a version keep it.
      previous.versions = versions;
      previous.defaultVersion = versions.get(chosen)!;
      previous.signature = signature;
      service = previous;
      retire(retired, versions);
    } else {
      service = { name, dir, versions, defaultVersion: versions.get(chosen)!, signature };
      this.services.set(name, service);
    }
    this.failures.delete(name);
    this.afterServe?.(service);
    this.logger.info({ service: name, versions: [...versions.keys()], default: chosen }, previous ? 'service reloaded' : 'service loaded');
    return service;
  }

  /**
   * Makes the rollout's champion (or, without one, the highest version) the default: one
   * assignment, so a request decides on the old champion or the new, never fails between.
   */
  applyChampion(name: string): void {
    const service = this.services.get(name);
    if (!service) return;
    const chosen = service.versions.get(defaultOf(service.versions, this.championOf(name)))!;
    if (chosen === service.defaultVersion) return;
    service.defaultVersion = chosen;
    this.logger.info({ service: name, default: chosen.version }, 'champion changed');
  }

  /** Stops serving a service. Returns false if it was not loaded. */
  unload(name: string): boolean {
    const service = this.services.get(name);
    if (!service) return false;
    this.services.delete(name);
    retire(service.versions, new Map());
    this.logger.info({ service: name }, 'service unloaded');
    return true;
  }

  /** The repository index of the Open Inference Protocol's model_repository extension. */
  index(): RepositoryEntry[] {
    const entries: RepositoryEntry[] = [];
    const names = new Set([...this.discover(), ...this.services.keys()]);
    for (const name of [...names].sort()) {
      const service = this.services.get(name);
      if (service) for (const v of service.versions.keys()) entries.push({ name, version: v, state: 'READY', reason: '' });
      else entries.push({ name, version: '', state: 'UNAVAILABLE', reason: this.failures.get(name) ?? (this.unloadedByOperator(name) ? 'unloaded by an operator' : 'not loaded') });
    }
    return entries;
  }

  /**
   * Polls the repository every `intervalMs`: a service whose files changed and then held
   * still for one interval is reloaded (so half-copied files are not loaded); a new folder
   * is loaded; a removed one is unloaded. Polling, not fs.watch, so it behaves the same on
   * every filesystem.
   */
  watch(intervalMs: number): void {
    const pending = new Map<string, string>();
    const tick = async () => {
      const present = new Set(this.discover());
      for (const name of present) {
        if (this.unloadedByOperator(name)) continue;
        const signature = signatureOf(join(this.root, name));
        const loaded = this.services.get(name);
        if (loaded?.signature === signature || (!loaded && this.failures.get(`${name}@sig`) === signature)) {
          pending.delete(name);
          continue;
        }
        if (pending.get(name) !== signature) {
          pending.set(name, signature);
          continue;
        }
        pending.delete(name);
        try {
          await this.load(name);
        } catch (err) {
          // Remember the signature that failed so an unchanged broken folder is not retried every tick.
          if (!loaded) this.failures.set(`${name}@sig`, signature);
          else loaded.signature = signature;
          this.logger.error({ service: name, err: (err as Error).message }, 'reload refused; the loaded version keeps serving');
        }
      }
      for (const name of this.services.keys()) if (!present.has(name)) this.unload(name);
    };
    let running = false;
    this.watcher = setInterval(() => {
      if (running) return;
      running = true;
      tick().finally(() => (running = false));
    }, intervalMs);
    this.watcher.unref();
  }

  async close(): Promise<void> {
    if (this.watcher) clearInterval(this.watcher);
    for (const service of this.services.values()) {
      for (const v of service.versions.values()) {
        v.monitor?.close();
        await v.bundle.model?.close?.();
      }
    }
    this.services.clear();
  }

  private fail(name: string, reason: string): ServiceLoadError {
    this.failures.set(name, reason);
    this.logger.error({ service: name, err: reason }, 'service failed to load');
    return new ServiceLoadError(name, reason);
  }
}

/**
 * The bundle's scorer. When decisions (model reasons) or the monitor (attribution) will need the
 * model's exact contributions, their tables are built first, in slices between which the event
 * loop runs, so neither a request nor the loop waits for them.
 */
async function scorerOf(bundle: Bundle, attribution: boolean): Promise<Scorer | null> {
  if (!hasModel(bundle)) return null;
  if (bundle.policy?.modelReasons || attribution) {
    const support = contributionSupport(bundle.model);
    if (support.exact) await support.prepare?.();
  }
  return createScorer(bundle, { fromText: false });
}

async function loadVersion(dir: string, sinks: readonly AlertSink[]): Promise<ServiceVersion> {
  const bundle: Bundle = await loadBundle(dir);
  let parity: ServiceVersion['parity'] = null;
  if (hasModel(bundle) && bundle.goldenPath) {
    // A version whose model no longer reproduces its training library's outputs is refused.
    const report = await checkGolden(bundle);
    if (report.failures.length > 0) {
      await bundle.model.close?.();
      throw new Error(`${dir}: golden parity failed: ${report.failures[0].reason} (${report.failures.length} failures)`);
    }
    parity = { rows: report.rows, maxDiff: report.maxDiff };
  }
  // Monitoring needs the reference profile; a bundle that asks for monitoring must have one.
  const config = bundle.manifest.monitoring ?? monitoringSchema.parse({});
  let monitor: ServiceMonitor | null = null;
  let scorer: Scorer | null = null;
  if (bundle.referencePath) {
    try {
      const reference = await readReference(bundle.referencePath);
      const mismatch = referenceMismatch(reference, bundle.name, bundle.encoding.features.map((f) => f.name));
      if (mismatch) throw new Error(`${bundle.referencePath} cannot monitor this bundle: ${mismatch}: run rtml profile ${dir} --data <training data>`);
      scorer = await scorerOf(bundle, reference.contributions !== null && reference.contributions !== undefined);
      // Attribution monitoring when the profile recorded contributions (their tables were built just above).
      // The statistics run in a worker thread: the request path only records each decision.
      monitor = new ServiceMonitor({ bundle, reference, config, sinks, explainer: reference.contributions ? (scorer?.explainer() ?? null) : null, evaluateOffThread: true });
    } catch (err) {
      await bundle.model?.close?.();
      throw err;
    }
  } else if (bundle.manifest.monitoring) {
    await bundle.model?.close?.();
    throw new Error(`${dir}: monitoring needs the reference profile ${config.reference}: run rtml profile ${dir} --data <training data>`);
  }
  scorer ??= await scorerOf(bundle, false);
  // What a caller may send: the features that come from the request, and entity keys.
  const featureNames = new Set([...bundle.encoding.features.filter((f) => !f.source).map((f) => f.name), ...bundle.manifest.keys]);
  return {
    bundle,
    scorer,
    featureNames,
    version: bundle.version,
    loadedAt: new Date().toISOString(),
    parity,
    stats: { inferenceCount: 0, executionCount: 0, lastInference: 0, success: { count: 0, ns: 0 }, fail: { count: 0, ns: 0 } },
    monitor,
  };
}

/** The champion when it is loaded, else the highest version: a replica without the champion's folder serves what it has. */
function defaultOf(versions: ReadonlyMap<string, ServiceVersion>, champion: string | null): string {
  if (champion !== null && versions.has(champion)) return champion;
  return [...versions.keys()].sort(compareVersions).at(-1)!;
}

/** Bundle folders of a service: itself, or its version subfolders. */
export function bundleDirs(dir: string): string[] {
  if (existsSync(join(dir, MANIFEST_FILE))) return [dir];
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(dir, d.name, MANIFEST_FILE)))
    .map((d) => join(dir, d.name))
    .sort();
}

/** Names, sizes and mtimes of a service's files, two levels deep. */
function signatureOf(dir: string): string {
  const parts: string[] = [];
  const walk = (d: string, depth: number) => {
    for (const entry of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) {
        if (depth < 2 && entry.name !== 'out') walk(path, depth + 1);
      } else {
        try {
          const st = statSync(path);
          parts.push(`${path}:${st.size}:${st.mtimeMs}`);
        } catch {
          // Vanished between readdir and stat: the next tick sees the new state.
        }
      }
    }
  };
  walk(dir, 0);
  return parts.join('|');
}

/** Closes runtimes of versions no longer served, after in-flight requests have had time to finish. */
function retire(old: ReadonlyMap<string, ServiceVersion>, current: ReadonlyMap<string, ServiceVersion>): void {
  const stillServed = new Set([...current.values()].map((v) => v.bundle));
  const toClose = [...old.values()].filter((v) => !stillServed.has(v.bundle));
  if (toClose.length === 0) return;
  setTimeout(() => {
    for (const v of toClose) {
      v.monitor?.close();
      void v.bundle.model?.close?.();
    }
  }, RETIRE_AFTER_MS).unref();
}
