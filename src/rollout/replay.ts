/**
 * Replay: a candidate bundle re-decides a service's logged decisions from exactly what the
 * champion used (the logged request and served features), page by page from the log, and the
 * two are compared decision by decision (compare.ts). Memory stays bounded: one page at a
 * time, plus 16 bytes per decision with an outcome.
 */
import type { ModelBundle } from '../bundle/load.ts';
import type { DecisionLog } from '../log/types.ts';
import { positiveLabel } from '../pipeline/outcomes.ts';
import { DecisionComparison, type ComparisonReport, type ComparisonSetup } from './compare.ts';
import { deciderOf, forcedCause, loggedFeatures, loggedSide, redecide } from './redecide.ts';

export interface ReplayOptions {
  since?: string;
  until?: string;
  /** Records read per page. */
  pageSize?: number;
  /** Called after each page. */
  onProgress?: (progress: { decisions: number; seconds: number }) => void;
}

export interface ReplayReport {
  kind: 'replay';
  service: string;
  candidate: { name: string; version: string; dir: string; policyVersion: string | null };
  /** The champion versions found in the log (model version -> decisions). */
  champion: Record<string, number>;
  range: { since: string | null; until: string | null };
  /** Rows the candidate's schema refused (counted as flips to "(refused)"), with the first reasons. */
  refused: { count: number; examples: string[] };
  comparison: ComparisonReport;
  seconds: number;
  decisionsPerSecond: number;
}

/** What the comparison is broken down by: the candidate's actions, its policy's band edges, its categorical features. */
export function comparisonSetup(bundle: Pick<ModelBundle, 'policy' | 'encoding'>): ComparisonSetup {
  const policy = bundle.policy;
  return {
    actions: policy?.actions ?? [],
    bandEdges: (policy?.spec.bands ?? []).flatMap((b) => (b.below === undefined ? [] : [b.below])),
    segments: bundle.encoding.features.flatMap((f) => (f.type === 'category' ? [{ feature: f.name, values: f.values }] : [])),
  };
}

export async function replay(log: DecisionLog, service: string, candidate: ModelBundle, options: ReplayOptions = {}): Promise<ReplayReport> {
  const started = performance.now();
  const decider = deciderOf(candidate);
  const comparison = new DecisionComparison(comparisonSetup(candidate));
  const positive = positiveLabel(candidate);
  const champion: Record<string, number> = {};
  const refused = { count: 0, examples: [] as string[] };
  let cursor: string | undefined;
  let decisions = 0;
  for (;;) {
    const page = await log.scan(service, { since: options.since, until: options.until, after: cursor, limit: options.pageSize ?? 2000 });
    if (page.items.length === 0) break;
    cursor = page.cursor;
    for (const record of page.items) {
      const version = record.model?.version ?? '(no model)';
      champion[version] = (champion[version] ?? 0) + 1;
      const features = loggedFeatures(record);
      const side = loggedSide(record);
      const decided = await redecide(decider, features, forcedCause(side.fallback));
      if (decided.refused !== null) {
        refused.count++;
        if (refused.examples.length < 5) refused.examples.push(`${record.id}: ${decided.refused}`);
      }
      const label = record.outcome && positive !== null ? (record.outcome.label === positive ? 1 : 0) : undefined;
      comparison.add({ champion: side, candidate: decided, row: features, label, candidateModelMs: decided.modelMs ?? undefined });
      decisions++;
    }
    options.onProgress?.({ decisions, seconds: (performance.now() - started) / 1000 });
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    kind: 'replay',
    service,
    candidate: { name: candidate.name, version: candidate.version, dir: candidate.dir, policyVersion: candidate.policy?.version ?? null },
    champion,
    range: { since: options.since ?? null, until: options.until ?? null },
    refused,
    comparison: comparison.report(),
    seconds,
    decisionsPerSecond: seconds > 0 ? decisions / seconds : 0,
  };
}
