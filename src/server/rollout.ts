/**
 * How a server obeys a service's rollout (`RolloutState` in the operations store, whichever
 * replica an operator told):
 *  - the champion is the service's default version (ModelRepository.championOf), switched in
 *    one assignment when the rollout changes, so no request fails across a promotion;
 *  - a canary decides for the requests whose key hashes into its share (`plan`);
 *  - shadows decide again, on a sampled share, with the features the champion used, after the
 *    answer has gone (`follow`: setImmediate, never awaited by the request); their decisions
 *    are logged under service `<name>~shadow`, id `<champion's id>~<version>`, and neither
 *    their errors nor their time reach the response;
 *  - beside a canary's decision the champion decides unseen, so the canary is compared too;
 *  - a canary over its flip-rate budget, or whose monitors raise a critical alert, is rolled
 *    back by writing the rollout without it (recorded like any operator's change).
 *
 * The comparisons are this process's (like /metrics): each replica measures the traffic it
 * answered.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import { scrapedGauge } from './metrics.ts';
import type { RawRow } from '../bundle/encoding.ts';
import { hasModel } from '../bundle/load.ts';
import type { DecisionLog, LabelledDecision } from '../log/types.ts';
import { positiveLabel } from '../pipeline/outcomes.ts';
import type { ChallengerSpec, OperationsStore, RolloutState } from '../ops/types.ts';
import type { DecisionResponse } from '../pipeline/decide.ts';
import type { DecidedSide } from '../rollout/compare.ts';
import { canaryBucket, keyValue, LiveChallenger, type ChallengerReport } from '../rollout/live.ts';
import { forcedCause, redecide, type Decider } from '../rollout/redecide.ts';
import { comparisonSetup } from '../rollout/replay.ts';
import type { ModelRepository, RepositoryLogger, Service, ServiceVersion } from './repository.ts';

/** The log's service name for a service's shadow decisions: out of its own decisions (replay, export, monitors), found by id. */
export function shadowServiceOf(service: string): string {
  return `${service}~shadow`;
}

/** Who an automatic rollback is recorded as. */
export const AUTOMATIC = 'rtml (automatic rollback)';

/** What one request needs of the rollout: who decides, and who follows. */
export interface DecisionPlan {
  target: ServiceVersion;
  /** The canary deciding this request (the champion follows it, unseen). */
  canary: Follower | null;
  /** Shadows sampled for this request. */
  shadows: Follower[];
  /** The canary's key while a canary runs: a request field accepted though it is not a feature. */
  routingKey: string | null;
}

interface Follower {
  challenger: LiveChallenger;
  version: ServiceVersion;
}

/** What the decision route hands back once answered: the champion's (or canary's) side and the features it used. */
export interface Decided {
  response: DecisionResponse;
  row: RawRow;
  /** The model's score even when a fallback decided (what the comparison and the shadow compare). */
  score: number | null;
}

/** One service's live rollout: its challengers, kept while the champion and their spec stay the same. */
interface ServiceLive {
  state: RolloutState;
  champion: ServiceVersion;
  challengers: LiveChallenger[];
}

export class RolloutHost {
  private readonly live = new Map<string, ServiceLive>();
  private readonly deciders = new WeakMap<ServiceVersion, Decider | null>();
  private readonly timer: NodeJS.Timeout;
  private readonly metrics: RolloutMetrics;

  constructor(
    private readonly repository: ModelRepository,
    private readonly operations: OperationsStore,
    private readonly log: DecisionLog,
    private readonly logger: RepositoryLogger,
    registry: Registry,
  ) {
    this.metrics = rolloutMetrics(registry, () => this.liveChallengers());
    // A canary's monitors are read once a second: a critical alert rolls it back.
    this.timer = setInterval(() => this.checkMonitors(), 1000);
    this.timer.unref();
  }

  /** Who decides a request, and who follows; null (the common case) when the service has no challenger. */
  plan(service: Service, body: RawRow): DecisionPlan | null {
    const state = this.operations.current().service(service.name).rollout;
    if (state === null || state.challengers.length === 0) return null;
    const live = this.liveOf(service, state);
    let target = live.champion;
    let canary: Follower | null = null;
    let routingKey: string | null = null;
    const shadows: Follower[] = [];
    for (const challenger of live.challengers) {
      const version = service.versions.get(challenger.spec.version);
      // Not loaded on this replica, the champion itself, rules-only, or rolled back here: it sits out.
      if (!version || version === live.champion || challenger.rolledBack !== null || !this.deciderOf(version)) continue;
      if (challenger.spec.mode === 'canary') {
        routingKey = challenger.spec.key;
        const key = canary === null && challenger.spec.key !== null ? keyValue(body, challenger.spec.key) : null;
        if (key !== null && canaryBucket(service.name, key) < challenger.spec.share) {
          target = version;
          canary = { challenger, version };
        }
      } else if (challenger.spec.share >= 1 || Math.random() < challenger.spec.share) {
        shadows.push({ challenger, version });
      }
    }
    return { target, canary, shadows, routingKey };
  }

  /** After the answer: the followers decide, off the request's path; nothing here can fail the request. */
  follow(service: Service, plan: DecisionPlan, decided: Decided): void {
    if (plan.canary === null && plan.shadows.length === 0) return;
    setImmediate(() => {
      this.runFollowers(service, plan, decided).catch((err: Error) => this.logger.error({ service: service.name, err: err.message }, 'rollout: a follower failed'));
    });
  }

  /** The rollout as this replica runs it, for GET /v1/services/{name}/rollout. */
  report(service: Service): { champion: string; rollout: RolloutState | null; challengers: (ChallengerReport & { loaded: boolean })[] } {
    const state = this.operations.current().service(service.name).rollout;
    const live = state ? this.liveOf(service, state) : null;
    return {
      champion: service.defaultVersion.version,
      rollout: state,
      challengers: (live?.challengers ?? []).map((c) => ({ ...c.report(), loaded: service.versions.has(c.spec.version) })),
    };
  }

  /** An outcome joined to a decision: the challengers that compared it count it (AUC, log loss, bad rate per action, side by side). */
  observeOutcome(item: LabelledDecision): void {
    const live = this.live.get(item.service);
    if (!live || live.challengers.length === 0) return;
    const positive = positiveLabel(live.champion.bundle);
    if (positive === null) return;
    const label = item.label === positive ? 1 : 0;
    for (const challenger of live.challengers) challenger.outcome(item.id, label);
  }

  close(): void {
    clearInterval(this.timer);
  }

  private deciderOf(version: ServiceVersion): Decider | null {
    let decider = this.deciders.get(version);
    if (decider === undefined) {
      decider = hasModel(version.bundle) && version.scorer ? { bundle: version.bundle, scorer: version.scorer } : null;
      this.deciders.set(version, decider);
    }
    return decider;
  }

  /** The service's challengers for this state: a challenger whose spec and champion are unchanged keeps its comparison. */
  private liveOf(service: Service, state: RolloutState): ServiceLive {
    const current = this.live.get(service.name);
    const champion = service.defaultVersion;
    if (current && current.state === state && current.champion === champion) return current;
    const kept = new Map((current?.champion === champion ? current.challengers : []).map((c) => [identity(c.spec), c]));
    const challengers = state.challengers.map((spec) => kept.get(identity(spec)) ?? new LiveChallenger(spec, comparisonSetup(champion.bundle), state.since));
    const live = { state, champion, challengers };
    this.live.set(service.name, live);
    return live;
  }

  private *liveChallengers(): Generator<{ service: string; challenger: LiveChallenger }> {
    for (const [service, live] of this.live) {
      if (this.operations.current().service(service).rollout !== live.state) continue;
      for (const challenger of live.challengers) yield { service, challenger };
    }
  }

  private async runFollowers(service: Service, plan: DecisionPlan, decided: Decided): Promise<void> {
    const { response, row, score } = decided;
    const forced = forcedCause(response.fallback.cause);
    const answered: DecidedSide = { action: response.decision, score, reasons: response.reasons.map((r) => r.code), fallback: response.fallback.cause };
    if (plan.canary) {
      // The champion decides unseen beside the canary: the canary's flips are measured on its own traffic.
      const { challenger, version } = plan.canary;
      const champion = this.deciderOf(service.defaultVersion);
      if (champion) {
        try {
          const side = await redecide(champion, row, forced);
          challenger.add(response.id, side, answered, row, null);
          this.metrics.compared.inc({ service: service.name, version: version.version, mode: 'canary' });
          const over = challenger.overBudget(this.operations.current().service(service.name).rollout?.maxFlipRate ?? null);
          if (over) void this.rollBack(service.name, challenger, over);
        } catch (err) {
          challenger.errors++;
          this.metrics.errors.inc({ service: service.name, version: version.version, mode: 'canary' });
          this.logger.warn({ service: service.name, err: (err as Error).message }, 'rollout: the champion beside a canary failed');
        }
      }
    }
    for (const { challenger, version } of plan.shadows) {
      const labels = { service: service.name, version: version.version, mode: 'shadow' };
      const started = performance.now();
      let side;
      try {
        side = await redecide(this.deciderOf(version)!, row, forced);
      } catch (err) {
        challenger.errors++;
        this.metrics.errors.inc(labels);
        continue;
      }
      challenger.add(response.id, answered, side, row, side.modelMs);
      this.metrics.compared.inc(labels);
      if (side.modelMs !== null) this.metrics.modelSeconds.observe(labels, side.modelMs / 1000);
      try {
        await this.log.append({
          id: `${response.id}~${version.version}`,
          time: new Date().toISOString(),
          service: shadowServiceOf(service.name),
          model: { name: service.name, version: version.version },
          policyVersion: version.bundle.policy?.version ?? null,
          request: row,
          inputs: side.detail.inputs,
          outputs: side.detail.outputs,
          score: side.score,
          decision: side.action ?? '',
          reasons: side.detail.reasons,
          fallback: { used: side.fallback !== null, cause: side.fallback },
          timingsMs: { model: side.modelMs ?? 0, total: performance.now() - started },
        });
        challenger.logged++;
      } catch {
        // A duplicate (the champion's id retried) or a log outage: the comparison has it, the log does not.
        challenger.logErrors++;
      }
    }
  }

  private checkMonitors(): void {
    for (const { service, challenger } of this.liveChallengers()) {
      if (challenger.spec.mode !== 'canary' || challenger.rolledBack !== null) continue;
      const monitor = this.repository.get(service)?.versions.get(challenger.spec.version)?.monitor;
      const critical = monitor?.alerts.active().filter((a) => a.severity === 'critical') ?? [];
      if (critical.length > 0) void this.rollBack(service, challenger, `critical alert on the canary: ${critical.map((a) => a.message).join('; ')}`.slice(0, 500));
    }
  }

  /** Takes a canary out of the rollout, recorded as an automatic rollback; it stops deciding here at once. */
  private async rollBack(service: string, challenger: LiveChallenger, why: string): Promise<void> {
    if (challenger.rolledBack !== null) return;
    challenger.rolledBack = why;
    const state = this.operations.current().service(service).rollout;
    if (!state || !state.challengers.some((c) => identity(c) === identity(challenger.spec))) return;
    this.logger.warn({ service, version: challenger.spec.version, why }, 'rollout: canary rolled back automatically');
    this.metrics.rollbacks.inc({ service, version: challenger.spec.version });
    try {
      await this.operations.setRollout(service, {
        champion: state.champion,
        previous: state.previous,
        challengers: state.challengers.filter((c) => identity(c) !== identity(challenger.spec)),
        maxFlipRate: state.maxFlipRate,
        reason: `automatic rollback of ${challenger.spec.version}: ${why}`.slice(0, 2000),
        by: AUTOMATIC,
      });
    } catch (err) {
      // Not recorded (the shared store is down): it stays out here, and the next check records it.
      this.logger.error({ service, err: (err as Error).message }, 'rollout: recording an automatic rollback failed; retrying');
      setTimeout(() => {
        challenger.rolledBack = null;
        void this.rollBack(service, challenger, why);
      }, 1000).unref();
    }
  }
}

function identity(spec: ChallengerSpec): string {
  return `${spec.version}\u0000${spec.mode}\u0000${spec.share}\u0000${spec.key ?? ''}`;
}

interface RolloutMetrics {
  compared: Counter<'service' | 'version' | 'mode'>;
  errors: Counter<'service' | 'version' | 'mode'>;
  modelSeconds: Histogram<'service' | 'version' | 'mode'>;
  rollbacks: Counter<'service' | 'version'>;
}

function rolloutMetrics(registry: Registry, challengers: () => Iterable<{ service: string; challenger: LiveChallenger }>): RolloutMetrics {
  const labelNames = ['service', 'version', 'mode'] as const;
  const gauge = (name: string, help: string, value: (c: LiveChallenger) => number) =>
    scrapedGauge(registry, name, help, labelNames, (g) => {
      for (const { service, challenger } of challengers()) g.set({ service, version: challenger.spec.version, mode: challenger.spec.mode }, value(challenger));
    });
  gauge('rtml_rollout_flip_rate', "Share of compared decisions where the challenger's action differs from the champion's (this process, since the challenger started)", (c) => c.flipRate);
  gauge('rtml_rollout_score_difference_mean_absolute', 'Mean |challenger score - champion score| over compared decisions', (c) => c.meanAbsoluteScoreDifference());
  gauge('rtml_rollout_challenger_share', "The challenger's share: of requests (shadow) or of key values (canary)", (c) => c.spec.share);
  return {
    compared: new Counter({ name: 'rtml_rollout_compared_total', help: 'Decisions compared between the champion and a challenger', labelNames, registers: [registry] }),
    errors: new Counter({ name: 'rtml_rollout_errors_total', help: 'Follower runs that failed (never seen by the caller)', labelNames, registers: [registry] }),
    modelSeconds: new Histogram({ name: 'rtml_rollout_shadow_model_seconds', help: "A shadow challenger's model time per decision", labelNames, buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1], registers: [registry] }),
    rollbacks: new Counter({ name: 'rtml_rollout_automatic_rollbacks_total', help: 'Canaries rolled back automatically (flip-rate budget, critical alert)', labelNames: ['service', 'version'], registers: [registry] }),
  };
}
