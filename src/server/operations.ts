/**
 * How a server obeys the operations store (src/ops/types.ts), whichever replica took the
 * admin call:
 *  - the kill switch is read by the decision route from `current()` at each request;
 *  - a rollout's champion becomes the service's default version (its challengers are read by
 *    ./rollout.ts at each request);
 *  - the safe-mode override is applied to every version's monitor (`setSafeMode`), at once
 *    and whenever a version loads later;
 *  - acknowledgements are applied to every version's alert manager, which keeps one for an
 *    alert it does not hold and applies it if that alert fires;
 *  - loads and unloads made through another replica are replayed here from this replica's own
 *    repository directory, and a service an operator unloaded stays unloaded after a restart
 *    (neither loading at start nor the repository watcher brings it back).
 */
import { Gauge, type Registry } from 'prom-client';
import type { OperationChange, OperationsStore } from '../ops/types.ts';
import type { ModelRepository, RepositoryLogger, Service } from './repository.ts';

/** Hooks the repository to the store and applies its changes; call before the repository loads. Returns an unsubscribe. */
export function obeyOperations(repository: ModelRepository, store: OperationsStore, logger: RepositoryLogger): () => void {
  repository.unloadedByOperator = (name) => store.current().service(name).load?.loaded === false;
  repository.championOf = (name) => store.current().service(name).rollout?.champion ?? null;
  const applyTo = (service: Service) => {
    const ops = store.current().service(service.name);
    for (const version of service.versions.values()) {
      const monitor = version.monitor;
      if (!monitor) continue;
      if (ops.safeMode.mode !== 'auto' || monitor.safeMode.mode !== 'auto') monitor.setSafeMode(ops.safeMode.mode, ops.safeMode.reason);
      for (const ack of ops.acknowledgements) monitor.alerts.applyAcknowledgement(ack);
    }
  };
  repository.afterServe = applyTo;
  for (const service of repository.list()) applyTo(service);

  return store.subscribe((change: OperationChange) => {
    const service = repository.get(change.service);
    switch (change.kind) {
      case 'kill_switch':
        if (!change.local) logger.warn({ service: change.service, killSwitch: change.value }, change.value.enabled ? 'kill switch on (set through another replica): decisions use the fallback policy' : 'kill switch off (set through another replica)');
        return;
      case 'safe_mode':
        if (service) applyTo(service);
        return;
      case 'acknowledge':
        for (const version of service?.versions.values() ?? []) version.monitor?.alerts.applyAcknowledgement(change.value);
        return;
      case 'rollout':
        // The champion decides from the next request on; requests under way finish on the version they hold.
        repository.applyChampion(change.service);
        if (!change.local) logger.warn({ service: change.service, rollout: change.value }, 'rollout changed (through another replica)');
        return;
      case 'load':
        // This replica's own loads and unloads are done by the route that recorded them.
        if (change.local) return;
        if (!change.value.loaded) {
          repository.unload(change.service);
          return;
        }
        repository.load(change.service).then(
          // An unload that arrived while this load ran wins: the fleet's last word is the store's.
          () => void (repository.unloadedByOperator(change.service) && repository.unload(change.service)),
          (err: Error) => logger.error({ service: change.service, err: err.message }, 'a load made through another replica failed here'),
        );
        return;
    }
  });
}

/** `rtml_operations_store_connected`: 0 while the shared store cannot be read (the replica obeys the last state it knew). */
export function operationsMetrics(registry: Registry, store: OperationsStore): void {
  new Gauge({
    name: 'rtml_operations_store_connected',
    help: 'Whether the operations store (kill switch, safe mode, acknowledgements, loads) can be read: 0 during a shared store outage, when the last known state is obeyed',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      const status = store.status();
      this.reset();
      this.set({ kind: status.kind }, status.connected ? 1 : 0);
    },
  });
}
