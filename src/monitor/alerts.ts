/**
 * Alerts: each evaluation of the monitors yields the conditions that hold now ("candidates");
 * the alert manager turns them into alert events with de-duplication (one active alert per
 * key), escalation, a cooldown against flapping, acknowledgement, and delivery to sinks.
 */
import { randomUUID } from 'node:crypto';

export type Severity = 'warning' | 'critical';

/** A condition that holds now, as one evaluation saw it. */
export interface AlertCandidate {
  /** Identity for de-duplication, e.g. `feature_drift:annual_inc`. */
  key: string;
  rule: string;
  /** What it is about: a feature, `score`, `decisions`, `model`. */
  subject: string;
  severity: Severity;
  message: string;
  value: number;
  threshold: number;
  window: string;
}

export interface Alert extends AlertCandidate {
  id: string;
  service: string;
  firedAt: string;
  resolvedAt: string | null;
  acknowledged: { at: string; by: string; note: string } | null;
}

/** An acknowledgement as the operations store keeps it (src/ops/types.ts). */
export interface AlertAcknowledgement {
  alertId: string;
  alertKey: string | null;
  by: string;
  note: string;
  at: string;
}

export type AlertEvent = { type: 'fired' | 'escalated' | 'resolved'; alert: Alert };

export interface AlertSink {
  readonly name: string;
  deliver(event: AlertEvent): void;
}

export interface AlertManagerOptions {
  /** After an alert resolves, the same key does not fire again for this long (anti-flapping). */
  cooldownMs: number;
  /** Resolved alerts kept for the history. */
  historySize: number;
  /** A new alert's id (default: a random UUID); a fleet evaluating alerts in one place may name them so. */
  newId?: (candidate: AlertCandidate) => string;
}

export class AlertManager {
  private readonly activeByKey = new Map<string, Alert>();
  private readonly resolvedAt = new Map<string, number>();
  private readonly past: Alert[] = [];
  /** Acknowledgements of alert ids not (yet) held here, applied if such an alert fires (bounded, oldest dropped). */
  private readonly pendingAcks = new Map<string, AlertAcknowledgement>();

  constructor(
    readonly service: string,
    private readonly sinks: readonly AlertSink[],
    private readonly options: AlertManagerOptions = { cooldownMs: 60_000, historySize: 200 },
  ) {}

  /** Applies one evaluation's candidates; returns the events it caused. */
  update(candidates: readonly AlertCandidate[], now: number): AlertEvent[] {
    const events: AlertEvent[] = [];
    const seen = new Set<string>();
    for (const c of candidates) {
      if (seen.has(c.key)) continue;
      seen.add(c.key);
      const active = this.activeByKey.get(c.key);
      if (active) {
        // Keep the alert current; a warning that becomes critical is a new event.
        const escalated = active.severity === 'warning' && c.severity === 'critical';
        Object.assign(active, { severity: escalated ? 'critical' : active.severity, message: c.message, value: c.value, threshold: c.threshold, window: c.window });
        if (escalated) events.push({ type: 'escalated', alert: { ...active } });
        continue;
      }
      const lastResolved = this.resolvedAt.get(c.key);
      if (lastResolved !== undefined && now - lastResolved < this.options.cooldownMs && c.severity !== 'critical') continue;
      const alert: Alert = { ...c, id: this.options.newId?.(c) ?? randomUUID(), service: this.service, firedAt: new Date(now).toISOString(), resolvedAt: null, acknowledged: null };
      const pending = this.pendingAcks.get(alert.id);
      if (pending) {
        this.pendingAcks.delete(alert.id);
        alert.acknowledged = { at: pending.at, by: pending.by, note: pending.note };
      }
      this.activeByKey.set(c.key, alert);
      events.push({ type: 'fired', alert: { ...alert } });
    }
    for (const [key, alert] of this.activeByKey) {
      if (seen.has(key)) continue;
      alert.resolvedAt = new Date(now).toISOString();
      this.activeByKey.delete(key);
      this.resolvedAt.set(key, now);
      this.past.push(alert);
      if (this.past.length > this.options.historySize) this.past.shift();
      events.push({ type: 'resolved', alert: { ...alert } });
    }
    for (const event of events) for (const sink of this.sinks) sink.deliver(event);
    return events;
  }

  active(): Alert[] {
    return [...this.activeByKey.values()].map((a) => ({ ...a }));
  }

  /** Resolved alerts, newest first: the newest `limit` of them (copies only those). */
  history(limit = Infinity): Alert[] {
    const out: Alert[] = [];
    for (let i = this.past.length - 1; i >= 0 && out.length < limit; i--) out.push({ ...this.past[i] });
    return out;
  }

  hasCritical(): boolean {
    for (const a of this.activeByKey.values()) if (a.severity === 'critical') return true;
    return false;
  }

  /**
   * Applies an acknowledgement taken anywhere in the fleet: to the active alert with its id;
   * else, when it names the alert's key, to this manager's active alert of that key that fired
   * no later than the acknowledgement (the same condition, seen here); else it is kept and
   * applied if an alert with its id fires. Returns the alert acknowledged now, if any.
   */
  applyAcknowledgement(ack: AlertAcknowledgement): Alert | null {
    const mark = (alert: Alert) => {
      alert.acknowledged ??= { at: ack.at, by: ack.by, note: ack.note };
      return { ...alert };
    };
    for (const alert of this.activeByKey.values()) if (alert.id === ack.alertId) return mark(alert);
    if (ack.alertKey !== null) {
      const same = this.activeByKey.get(ack.alertKey);
      if (same && same.firedAt <= ack.at) return mark(same);
    }
    this.pendingAcks.set(ack.alertId, ack);
    for (const id of this.pendingAcks.keys()) {
      if (this.pendingAcks.size <= this.options.historySize) break;
      this.pendingAcks.delete(id);
    }
    return null;
  }

  /**
   * Takes over another manager's state (a new fleet leader resuming from the last published
   * verdict): its active alerts stay active without firing again, and resolved ones keep their
   * cooldown. Newest-first history, as `history()` gives it.
   */
  restore(active: readonly Alert[], history: readonly Alert[]): void {
    this.activeByKey.clear();
    this.resolvedAt.clear();
    this.past.length = 0;
    for (const a of active) this.activeByKey.set(a.key, { ...a });
    for (const a of [...history].reverse()) {
      this.past.push({ ...a });
      if (a.resolvedAt !== null) this.resolvedAt.set(a.key, Date.parse(a.resolvedAt));
    }
    if (this.past.length > this.options.historySize) this.past.splice(0, this.past.length - this.options.historySize);
  }

  /** Marks an active alert as seen by a person; it stays active until its condition clears. */
  acknowledge(id: string, by: string, note: string, now: number): Alert | null {
    for (const alert of this.activeByKey.values()) {
      if (alert.id === id) {
        alert.acknowledged = { at: new Date(now).toISOString(), by, note };
        return { ...alert };
      }
    }
    return null;
  }
}

/** Writes alert events to the structured log. */
export function logSink(logger: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void; info(obj: object, msg: string): void }): AlertSink {
  return {
    name: 'log',
    deliver(event) {
      const { alert } = event;
      const fields = { alert: { id: alert.id, service: alert.service, rule: alert.rule, subject: alert.subject, severity: alert.severity, value: alert.value, threshold: alert.threshold, window: alert.window } };
      if (event.type === 'resolved') logger.info(fields, `alert resolved: ${alert.message}`);
      else if (alert.severity === 'critical') logger.error(fields, `alert ${event.type}: ${alert.message}`);
      else logger.warn(fields, `alert ${event.type}: ${alert.message}`);
    },
  };
}

export interface WebhookOptions {
  url: string;
  /** Attempts per event, including the first. */
  attempts: number;
  timeoutMs: number;
  /** Delay before the first retry; doubled each time. */
  backoffMs: number;
  /** Events waiting beyond this are dropped (and counted): a dead receiver must not eat memory. */
  maxQueue: number;
}

export interface WebhookSink extends AlertSink {
  readonly stats: { delivered: number; failed: number; dropped: number; queued: number };
  /** Resolves when every queued event has been delivered or given up on. */
  drain(): Promise<void>;
}

/** POSTs each event as JSON, in order, retrying with exponential backoff; never blocks the caller. */
export function webhookSink(options: WebhookOptions, onError?: (err: string) => void): WebhookSink {
  const queue: AlertEvent[] = [];
  const stats = { delivered: 0, failed: 0, dropped: 0, queued: 0 };
  let running: Promise<void> | null = null;

  const send = async (event: AlertEvent): Promise<void> => {
    const body = JSON.stringify({ type: event.type, ...event.alert });
    let delay = options.backoffMs;
    for (let attempt = 1; attempt <= options.attempts; attempt++) {
      try {
        const res = await fetch(options.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(options.timeoutMs) });
        if (res.ok) {
          stats.delivered++;
          return;
        }
        // 4xx other than 408/429 will not get better by retrying.
        if (res.status < 500 && res.status !== 408 && res.status !== 429) throw new Error(`webhook answered ${res.status}`);
        if (attempt === options.attempts) throw new Error(`webhook answered ${res.status}`);
      } catch (err) {
        if (attempt === options.attempts || /webhook answered 4/.test((err as Error).message)) {
          stats.failed++;
          onError?.(`alert webhook ${options.url} failed after ${attempt} attempt(s): ${(err as Error).message}`);
          return;
        }
      }
      await new Promise((r) => setTimeout(r, delay));
      delay *= 2;
    }
  };

  const pump = async () => {
    while (queue.length > 0) {
      const event = queue.shift()!;
      stats.queued = queue.length;
      await send(event);
    }
    running = null;
  };

  return {
    name: 'webhook',
    stats,
    deliver(event) {
      if (queue.length >= options.maxQueue) {
        stats.dropped++;
        return;
      }
      queue.push(event);
      stats.queued = queue.length;
      running ??= pump();
    },
    async drain() {
      while (running) await running;
    },
  };
}
