/**
 * Which decision log a process uses: `--decision-log` (env RTML_DECISION_LOG) names a
 * PostgreSQL database (`postgres://...`: shared by a fleet of servers, `postgres.ts`) or a
 * directory for the embedded SQLite log (`sqlite.ts`, its file `decisions.sqlite` inside).
 * Without it, the SQLite log lives under the data directory, as always.
 */
import { isPostgresUrl } from '../store/postgres.ts';
import { openPostgresDecisionLog } from './postgres.ts';
import { openSqliteDecisionLog } from './sqlite.ts';
import type { DecisionLog } from './types.ts';

export interface DecisionLogSpec {
  /** A PostgreSQL URL, or a directory for the SQLite log; absent: the SQLite log under `dataDir`. */
  decisionLog?: string;
  dataDir: string;
  /** SQLite only (PostgreSQL's durability is the server's `synchronous_commit`). Default 'full'. */
  synchronous?: 'normal' | 'full';
  /** An append not committed in this long rejects with LOG_TIMEOUT (null: no bound). */
  appendTimeoutMs?: number | null;
}

/** True when the spec puts the log (and the other shared stores) in PostgreSQL. */
export function isSharedDecisionLog(spec: Pick<DecisionLogSpec, 'decisionLog'>): boolean {
  return spec.decisionLog !== undefined && isPostgresUrl(spec.decisionLog);
}

export async function openDecisionLog(spec: DecisionLogSpec): Promise<DecisionLog> {
  const appendTimeoutMs = spec.appendTimeoutMs ?? null;
  if (spec.decisionLog !== undefined && isPostgresUrl(spec.decisionLog)) return openPostgresDecisionLog(spec.decisionLog, { appendTimeoutMs });
  return openSqliteDecisionLog(spec.decisionLog || spec.dataDir, { synchronous: spec.synchronous, appendTimeoutMs });
}
