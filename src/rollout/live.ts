/**
 * A challenger measured on live traffic, decision by decision, against the champion: what a
 * shadow (deciding unseen) or a canary (deciding for its share of keys, the champion deciding
 * unseen beside it) feeds into the same comparison `rtml replay` reports (./compare.ts).
 *
 * Also the canary's split: a stable hash of a key's value, so one customer always meets the
 * same version, on every replica and after every restart.
 */
import type { RawRow } from '../bundle/encoding.ts';
import type { ChallengerSpec } from '../ops/types.ts';
import { DecisionComparison, type ComparisonReport, type ComparisonSetup, type DecidedSide } from './compare.ts';

/** Decisions a canary must have been compared on before its flip rate may roll it back (fewer: noise). */
export const MIN_COMPARED_FOR_BUDGET = 200;

/**
 * Where a key's value falls in [0, 1): FNV-1a over the service and the value, then murmur3's
 * finaliser so that neighbouring values ("c-1000", "c-1001") spread over the whole range. A
 * canary at share s takes the values below s, so raising the share keeps every key already
 * in the canary there.
 */
export function canaryBucket(service: string, value: string): number {
  let h = 0x811c9dc5;
  const text = `${service}\u0000${value}`;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 0x1_0000_0000;
}

/** The canary key's value in a request, as hashed: a string or a finite number; anything else has none. */
export function keyValue(body: RawRow, key: string): string | null {
  const value = body[key];
  if (typeof value === 'string' && value !== '') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return null;
}

/** What an operator reads of one challenger. */
export interface ChallengerReport extends ChallengerSpec {
  since: string;
  /** Decisions compared (shadow: sampled requests; canary: requests it decided). */
  compared: number;
  /** Challenger runs that threw (a shadow's error never reaches the response). */
  errors: number;
  /** Shadow decisions written to the log, and writes that failed. */
  logged: number;
  logErrors: number;
  /** Set once the challenger was rolled back automatically: why. */
  rolledBack: string | null;
  comparison: ComparisonReport;
}

/**
 * Compared decisions kept per challenger until their outcome arrives (the oldest dropped
 * first): two sides each, so about 20 MB at most; outcomes that come later than this many
 * decisions are not counted live (`rtml replay` counts every one).
 */
export const MAX_AWAITING_OUTCOMES = 50_000;

export class LiveChallenger {
  private readonly comparison: DecisionComparison;
  /** Scored pairs by the champion's decision id, awaiting their outcome. */
  private readonly awaiting = new Map<string, { champion: DecidedSide; challenger: DecidedSide }>();
  compared = 0;
  errors = 0;
  logged = 0;
  logErrors = 0;
  /** Why it was rolled back automatically (it then decides nothing more here). */
  rolledBack: string | null = null;

  constructor(
    readonly spec: ChallengerSpec,
    setup: ComparisonSetup,
    readonly since: string,
  ) {
    this.comparison = new DecisionComparison(setup);
  }

  /** A decision both sides took; `id` is the decision's (its outcome will name it). */
  add(id: string, champion: DecidedSide, challenger: DecidedSide, row: RawRow, challengerModelMs: number | null): void {
    this.compared++;
    this.comparison.add({ champion, candidate: challenger, row, ...(challengerModelMs !== null ? { candidateModelMs: challengerModelMs } : {}) });
    if (champion.score === null || challenger.score === null) return;
    this.awaiting.set(id, { champion, challenger });
    if (this.awaiting.size > MAX_AWAITING_OUTCOMES) this.awaiting.delete(this.awaiting.keys().next().value!);
  }

  /** An outcome arrived for decision `id` (1: the positive class): counted once when the pair is still held. */
  outcome(id: string, label: 0 | 1): boolean {
    const pair = this.awaiting.get(id);
    if (!pair) return false;
    this.awaiting.delete(id);
    this.comparison.addOutcome(label, pair.champion, pair.challenger);
    return true;
  }

  get flipRate(): number {
    return this.compared === 0 ? 0 : this.comparison.flipCount / this.compared;
  }

  /** Why the live flip rate breaks the budget, or null while within it (or too few decisions to tell). */
  overBudget(maxFlipRate: number | null): string | null {
    if (maxFlipRate === null || this.compared < MIN_COMPARED_FOR_BUDGET) return null;
    const rate = this.flipRate;
    return rate > maxFlipRate ? `live flip rate ${(100 * rate).toFixed(2)}% over ${this.compared} decisions exceeds the budget of ${(100 * maxFlipRate).toFixed(2)}%` : null;
  }

  report(): ChallengerReport {
    return { ...this.spec, since: this.since, compared: this.compared, errors: this.errors, logged: this.logged, logErrors: this.logErrors, rolledBack: this.rolledBack, comparison: this.comparison.report() };
  }

  /** The absolute score difference's mean so far (for a gauge; report() is the full picture). */
  meanAbsoluteScoreDifference(): number {
    return this.comparison.meanAbsoluteScoreDifference;
  }
}
