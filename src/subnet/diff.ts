/**
 * Lease diffing (pure): turns "what etcd lists now" into the added/removed
 * events a backend needs, given what the backend was last told. Used after
 * every (re)list, so a reconnect or a compaction neither invents a removal of
 * a live lease nor misses one that happened while we were not watching.
 */
import { Lease, LeaseEvent, formatLeaseKey, sameAttrs } from './lease';

export type LeaseMap = Map<string, Lease>; // keyed by the lease key (formatLeaseKey: both families)

export function leaseKey(l: Lease): string {
  return formatLeaseKey(l);
}

/**
 * Events that move a backend from `known` to `now`. A lease whose attributes
 * changed (PublicIP moved, new VTEP MAC) is a removal then an addition, so
 * backends need only two operations. Expiry-only changes (a renewal) are not
 * events.
 */
export function diffLeases(known: ReadonlyMap<string, Lease>, now: readonly Lease[]): LeaseEvent[] {
  const events: LeaseEvent[] = [];
  const seen = new Set<string>();
  for (const l of now) {
    const k = leaseKey(l);
    seen.add(k);
    const old = known.get(k);
    if (old === undefined) events.push({ type: 'added', lease: l });
    else if (!sameAttrs(old, l)) {
      events.push({ type: 'removed', lease: old });
      events.push({ type: 'added', lease: l });
    }
  }
  const removed: LeaseEvent[] = [];
  for (const [k, old] of known) if (!seen.has(k)) removed.push({ type: 'removed', lease: old });
  return [...removed, ...events];
}

/** Applies events to a map (the watcher's view of what backends know). */
export function applyEvents(known: LeaseMap, events: readonly LeaseEvent[]): void {
  for (const e of events) {
    if (e.type === 'added') known.set(leaseKey(e.lease), e.lease);
    else known.delete(leaseKey(e.lease));
  }
}
