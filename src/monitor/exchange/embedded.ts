/**
 * The in-process exchange: replicas are objects in one process sharing one hub. A single
 * server needs none (its monitor evaluates its own windows, as always); the hub serves
 * fleets of in-process monitors (tests, simulations) with the semantics of the shared
 * adapter: the first open replica leads until it closes.
 */
import type { MonitorState } from '../service-monitor.ts';
import { newReplicaId, restoreNonFinite, verdictKey, verdictStateToJson, type MonitorExchange, type MonitorKey, type PublishedExport, type PublishedVerdict } from './types.ts';

export class EmbeddedMonitorHub {
  private readonly exported = new Map<string, Map<string, PublishedExport>>();
  private readonly published = new Map<string, PublishedVerdict>();
  private leader: string | null = null;
  private terms = 0;

  constructor(private readonly now: () => number = Date.now) {}

  connect(replica: string = newReplicaId()): MonitorExchange {
    const hub = this;
    let closed = false;
    const open = () => {
      if (closed) throw new Error(`monitor exchange of ${replica} is closed`);
    };
    return {
      kind: 'embedded',
      replica,
      async publish(key: MonitorKey, state: Uint8Array) {
        open();
        const k = verdictKey(key);
        let byReplica = hub.exported.get(k);
        if (!byReplica) hub.exported.set(k, (byReplica = new Map()));
        byReplica.set(replica, { replica, publishedAt: hub.now(), state: state.slice() });
      },
      async exports(key: MonitorKey) {
        open();
        return [...(hub.exported.get(verdictKey(key))?.values() ?? [])];
      },
      async lead() {
        if (closed) return null;
        if (hub.leader === null) {
          hub.leader = replica;
          hub.terms++;
        }
        return hub.leader === replica ? hub.terms : null;
      },
      async publishVerdict(key: MonitorKey, verdict: PublishedVerdict) {
        open();
        // Through JSON, as the shared adapter stores it.
        hub.published.set(verdictKey(key), { ...verdict, state: restoreNonFinite(JSON.parse(verdictStateToJson(verdict.state)) as MonitorState) });
      },
      async verdicts() {
        open();
        return new Map(hub.published);
      },
      async forget(olderThanMs: number) {
        let dropped = 0;
        for (const byReplica of hub.exported.values()) {
          for (const [id, e] of byReplica) {
            if (hub.now() - e.publishedAt > olderThanMs) {
              byReplica.delete(id);
              dropped++;
            }
          }
        }
        return dropped;
      },
      async close() {
        closed = true;
        if (hub.leader === replica) hub.leader = null;
      },
    };
  }
}
