import { z } from 'zod';
import type { AlertAcknowledgement } from '../monitor/alerts.ts';

/**
 * Operations: what operators set on a running service (kill switch, safe-mode override,
 * alert acknowledgements, loads and unloads, the rollout of its versions) and every replica
 * must obey. `OperationsStore` is
 * the front door; the embedded adapter (./embedded.ts: in-process, one SQLite file under the
 * data dir) serves one process, the PostgreSQL adapter (./postgres.ts) a fleet.
 *
 * Reads are synchronous (`current()`): the request path never awaits the store. Writes resolve
 * once durable (committed) and already applied to this process's view, so the replica that
 * took an admin call obeys it when the call answers; other replicas learn of it through
 * `subscribe`. When the shared store cannot take a write it rejects with
 * {@link OperationsUnavailableError} (the server answers 503 + Retry-After); reads keep the
 * last known state.
 */

export type SafeModeMode = 'auto' | 'on' | 'off';

export interface KillSwitchState {
  enabled: boolean;
  reason: string | null;
  /** When it was turned on (null while off). */
  since: string | null;
  /** Who set it last (null: never set). */
  by: string | null;
}

/** The operator's override of safe mode; `auto` hands safe mode back to the monitors' alerts. */
export interface SafeModeOverride {
  mode: SafeModeMode;
  reason: string | null;
  /** When the override was set (null: never). */
  since: string | null;
  by: string | null;
}

/** `alertKey`: the alert's key (`feature_drift:annual_inc`) when the replica that took the ack held it. */
export type Acknowledgement = AlertAcknowledgement;

export interface LoadState {
  loaded: boolean;
  at: string;
  by: string;
}

/** A challenger: `shadow` decides unseen on a sampled share of requests; `canary` decides for the share of keys whose hash falls in it. */
export interface ChallengerSpec {
  version: string;
  mode: 'shadow' | 'canary';
  /** 0 < share <= 1: of requests (shadow), of key values (canary). */
  share: number;
  /** Canary: the request field whose value is hashed (one value always meets the same version); null for a shadow. */
  key: string | null;
}

/**
 * Which of a service's versions decides (the champion) and which are measured against it.
 * Set by an operator (or by an automatic rollback); a service never rolled out serves its
 * highest version with no challenger.
 */
export interface RolloutState {
  /** The version that decides; null: the highest loaded. */
  champion: string | null;
  /** The champion before the last promotion, for a rollback of it. */
  previous: string | null;
  challengers: ChallengerSpec[];
  /** A canary rolls back by itself once its live flip rate exceeds this (null: no budget). */
  maxFlipRate: number | null;
  reason: string | null;
  since: string;
  by: string;
}

/** One service's operations as this process last knew them. */
export interface ServiceOperations {
  readonly killSwitch: KillSwitchState;
  readonly safeMode: SafeModeOverride;
  /** The latest acknowledgements, oldest first, at most {@link MAX_ACKNOWLEDGEMENTS}. */
  readonly acknowledgements: readonly Acknowledgement[];
  /** Null: no operator loaded or unloaded it (it follows the repository on disk). */
  readonly load: LoadState | null;
  /** Null: never rolled out (the highest version decides, no challenger). */
  readonly rollout: RolloutState | null;
}

/** A synchronous view of the latest known state. */
export interface OperationsView {
  /** A service never operated on gets the defaults (kill switch off, safe mode auto). */
  service(name: string): ServiceOperations;
  /** Services with any recorded operation. */
  services(): string[];
}

export type OperationKind = 'kill_switch' | 'safe_mode' | 'acknowledge' | 'load' | 'rollout';

/** One applied change, as subscribers receive it. */
export type OperationChange =
  | { kind: 'kill_switch'; service: string; local: boolean; value: KillSwitchState }
  | { kind: 'safe_mode'; service: string; local: boolean; value: SafeModeOverride }
  | { kind: 'acknowledge'; service: string; local: boolean; value: Acknowledgement }
  | { kind: 'load'; service: string; local: boolean; value: LoadState }
  | { kind: 'rollout'; service: string; local: boolean; value: RolloutState };

/** An audit record: who did what, when, why. */
export interface AuditEntry {
  /** Increases with every change, in commit order. */
  seq: number;
  service: string;
  kind: OperationKind;
  by: string;
  at: string;
  /** The reason or note given, if any. */
  reason: string | null;
  /** The state written. */
  value: KillSwitchState | SafeModeOverride | Acknowledgement | LoadState | RolloutState;
}

export interface OperationsStatus {
  kind: 'embedded' | 'postgres';
  /** False while the shared store cannot be read: the process obeys the last known state. */
  connected: boolean;
  /** When this process last read the shared state successfully (embedded: always now). */
  lastSyncAt: string | null;
}

export interface OperationsStore {
  readonly kind: 'embedded' | 'postgres';
  current(): OperationsView;
  /** Called for every change applied to this process's view, its own writes included (`local`). Returns an unsubscribe. */
  subscribe(listener: (change: OperationChange) => void): () => void;
  setKillSwitch(service: string, input: { enabled: boolean; reason: string | null; by: string }): Promise<KillSwitchState>;
  setSafeMode(service: string, input: { mode: SafeModeMode; reason: string | null; by: string }): Promise<SafeModeOverride>;
  acknowledge(service: string, input: { alertId: string; alertKey: string | null; by: string; note: string }): Promise<Acknowledgement>;
  setLoaded(service: string, input: { loaded: boolean; by: string }): Promise<LoadState>;
  setRollout(service: string, input: Omit<RolloutState, 'since'>): Promise<RolloutState>;
  /** The service's audit trail, newest first. */
  history(service: string, options?: { limit?: number }): Promise<AuditEntry[]>;
  status(): OperationsStatus;
  close(): Promise<void>;
}

/** Acknowledgements kept per service in the view (as many as an alert manager's history). */
export const MAX_ACKNOWLEDGEMENTS = 200;
export const DEFAULT_HISTORY_LIMIT = 100;
/** Challengers a rollout may measure at once: each one decides again on the requests it sees. */
export const MAX_CHALLENGERS = 4;

export const DEFAULT_KILL_SWITCH: KillSwitchState = Object.freeze({ enabled: false, reason: null, since: null, by: null });
export const DEFAULT_SAFE_MODE: SafeModeOverride = Object.freeze({ mode: 'auto', reason: null, since: null, by: null });
const DEFAULT_SERVICE: ServiceOperations = Object.freeze({ killSwitch: DEFAULT_KILL_SWITCH, safeMode: DEFAULT_SAFE_MODE, acknowledgements: Object.freeze([]), load: null, rollout: null });

/** The shared store could not take a write (or answer a read that must be fresh): retry shortly. */
export class OperationsUnavailableError extends Error {
  readonly code = 'OPERATIONS_UNAVAILABLE';
  constructor(message: string, options?: { cause: unknown }) {
    super(message, options);
    this.name = 'OperationsUnavailableError';
  }
}

export function isOperationsUnavailable(err: unknown): err is OperationsUnavailableError {
  return err instanceof OperationsUnavailableError;
}

/**
 * The in-process state both adapters keep: per service, each kind's value with the sequence
 * number of the change that wrote it. A change older than what is held (a replay, or a change
 * read after this process's own later write) is ignored, so applying changes is idempotent
 * and order-safe; listeners hear only changes that took effect.
 */
export class OperationsState implements OperationsView {
  private readonly byService = new Map<string, { ops: ServiceOperations; seq: Record<'kill_switch' | 'safe_mode' | 'load' | 'rollout', number>; acks: Map<string, Acknowledgement> }>();
  private readonly listeners = new Set<(change: OperationChange) => void>();

  constructor(private readonly onListenerError: (err: unknown) => void = () => {}) {}

  service(name: string): ServiceOperations {
    return this.byService.get(name)?.ops ?? DEFAULT_SERVICE;
  }

  services(): string[] {
    return [...this.byService.keys()].sort();
  }

  subscribe(listener: (change: OperationChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Applies a change with its sequence number; returns whether it took effect (and was announced). */
  apply(seq: number, change: OperationChange): boolean {
    let entry = this.byService.get(change.service);
    if (!entry) {
      entry = { ops: DEFAULT_SERVICE, seq: { kill_switch: 0, safe_mode: 0, load: 0, rollout: 0 }, acks: new Map() };
      this.byService.set(change.service, entry);
    }
    if (change.kind === 'acknowledge') {
      if (entry.acks.has(change.value.alertId)) return false;
      entry.acks.set(change.value.alertId, change.value);
      // Bounded: the oldest acknowledgements go first.
      for (const id of entry.acks.keys()) {
        if (entry.acks.size <= MAX_ACKNOWLEDGEMENTS) break;
        entry.acks.delete(id);
      }
      entry.ops = { ...entry.ops, acknowledgements: Object.freeze([...entry.acks.values()]) };
    } else {
      if (seq <= entry.seq[change.kind]) return false;
      entry.seq[change.kind] = seq;
      const field = change.kind === 'kill_switch' ? 'killSwitch' : change.kind === 'safe_mode' ? 'safeMode' : change.kind === 'rollout' ? 'rollout' : 'load';
      entry.ops = { ...entry.ops, [field]: Object.freeze({ ...change.value }) };
    }
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (err) {
        // One listener's bug must not stop the others (nor the store's sync loop).
        this.onListenerError(err);
      }
    }
    return true;
  }
}

const by = z.string().min(1).max(200);
const when = z.string().min(1).max(64);
const reason = z.string().max(2000).nullable();
/** Values as stored: read back from a file or a database shared with other processes, so checked. */
const VALUE_SCHEMAS = {
  kill_switch: z.object({ enabled: z.boolean(), reason, since: when.nullable(), by: by.nullable() }),
  safe_mode: z.object({ mode: z.enum(['auto', 'on', 'off']), reason, since: when.nullable(), by: by.nullable() }),
  acknowledge: z.object({ alertId: z.string().min(1).max(200), alertKey: z.string().max(500).nullable(), by, note: z.string().max(2000), at: when }),
  load: z.object({ loaded: z.boolean(), at: when, by }),
  rollout: z.object({
    champion: z.string().min(1).max(200).nullable(),
    previous: z.string().min(1).max(200).nullable(),
    challengers: z.array(z.object({ version: z.string().min(1).max(200), mode: z.enum(['shadow', 'canary']), share: z.number().gt(0).lte(1), key: z.string().min(1).max(200).nullable() })).max(MAX_CHALLENGERS),
    maxFlipRate: z.number().min(0).max(1).nullable(),
    reason,
    since: when,
    by,
  }),
} as const;

export function isOperationKind(kind: string): kind is OperationKind {
  return kind in VALUE_SCHEMAS;
}

/** A stored change as subscribers receive it; throws when the stored value is not one rtml writes. */
export function changeOf(kind: string, service: string, value: unknown, local: boolean): OperationChange {
  if (!isOperationKind(kind)) throw new Error(`operations: unknown kind ${JSON.stringify(kind)} for ${service}`);
  const parsed = VALUE_SCHEMAS[kind].parse(value);
  return { kind, service, local, value: parsed } as OperationChange;
}

/** The reason or note an audit entry shows. */
export function reasonOf(change: OperationChange): string | null {
  if (change.kind === 'acknowledge') return change.value.note || null;
  if (change.kind === 'load') return null;
  return change.value.reason;
}

/** An audit row as read back from a store (its value checked). */
export function auditEntryOf(row: { seq: number | string; service: string; kind: string; by: string; at: string; reason: string | null; value: unknown }): AuditEntry {
  const change = changeOf(row.kind, row.service, row.value, false);
  return { seq: Number(row.seq), service: row.service, kind: change.kind, by: row.by, at: row.at, reason: row.reason, value: change.value };
}

/** When a change was made (the time `changeFor` stamped on it). */
export function atOf(change: OperationChange): string {
  if (change.kind === 'acknowledge' || change.kind === 'load') return change.value.at;
  if (change.kind === 'rollout') return change.value.since;
  return change.value.since ?? new Date().toISOString();
}

/** Who made a change. */
export function byOf(change: OperationChange): string {
  return change.value.by ?? 'unknown';
}

/** The change a write makes, stamped `at`: computed the same way by both adapters. */
export type OperationInput =
  | { kind: 'kill_switch'; input: Parameters<OperationsStore['setKillSwitch']>[1] }
  | { kind: 'safe_mode'; input: Parameters<OperationsStore['setSafeMode']>[1] }
  | { kind: 'acknowledge'; input: Parameters<OperationsStore['acknowledge']>[1] }
  | { kind: 'load'; input: Parameters<OperationsStore['setLoaded']>[1] }
  | { kind: 'rollout'; input: Parameters<OperationsStore['setRollout']>[1] };

/**
 * The change a write makes, checked against the schema its readers apply (VALUE_SCHEMAS): a value
 * no store could read back (an empty alert id, an over-long name) is refused here, before it is
 * written, instead of being stored where every replica reading the feed would skip it and none
 * could open the store again.
 */
export function changeFor(service: string, write: OperationInput, at: string): OperationChange {
  const change = unvalidatedChange(service, write, at);
  const checked = VALUE_SCHEMAS[change.kind].safeParse(change.value);
  if (!checked.success) {
    const problems = checked.error.issues.map((i) => `${i.path.join('.') || 'value'}: ${i.message}`).join('; ');
    throw new TypeError(`operations store: refusing to write a ${change.kind} change it could not read back (${problems})`);
  }
  return change;
}

function unvalidatedChange(service: string, write: OperationInput, at: string): OperationChange {
  switch (write.kind) {
    case 'kill_switch': {
      const i = write.input;
      return { kind: 'kill_switch', service, local: true, value: { enabled: i.enabled, reason: i.enabled ? i.reason : null, since: i.enabled ? at : null, by: i.by } };
    }
    case 'safe_mode': {
      const i = write.input;
      return { kind: 'safe_mode', service, local: true, value: { mode: i.mode, reason: i.mode === 'auto' ? null : i.reason, since: at, by: i.by } };
    }
    case 'acknowledge': {
      const i = write.input;
      return { kind: 'acknowledge', service, local: true, value: { alertId: i.alertId, alertKey: i.alertKey, by: i.by, note: i.note, at } };
    }
    case 'load':
      return { kind: 'load', service, local: true, value: { loaded: write.input.loaded, at, by: write.input.by } };
    case 'rollout': {
      const i = write.input;
      return { kind: 'rollout', service, local: true, value: { champion: i.champion, previous: i.previous, challengers: i.challengers.map((c) => ({ ...c })), maxFlipRate: i.maxFlipRate, reason: i.reason, since: at, by: i.by } };
    }
  }
}

/** The writes of the interface, each through one function that writes a change. */
export function writesThrough(write: (service: string, change: OperationInput) => Promise<OperationChange>): Pick<OperationsStore, 'setKillSwitch' | 'setSafeMode' | 'acknowledge' | 'setLoaded' | 'setRollout'> {
  return {
    setKillSwitch: async (service, input) => (await write(service, { kind: 'kill_switch', input })).value as KillSwitchState,
    setSafeMode: async (service, input) => (await write(service, { kind: 'safe_mode', input })).value as SafeModeOverride,
    acknowledge: async (service, input) => (await write(service, { kind: 'acknowledge', input })).value as Acknowledgement,
    setLoaded: async (service, input) => (await write(service, { kind: 'load', input })).value as LoadState,
    setRollout: async (service, input) => (await write(service, { kind: 'rollout', input })).value as RolloutState,
  };
}
