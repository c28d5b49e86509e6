/**
 * The udp backend's peer table (pure): lease events in, the complete
 * data-plane route table and what changed out.
 */
import { cidrToKey, formatCidr, formatIp } from '../../ip/ipv4';
import type { DataPlaneRoute } from '../../dataplane/types';
import type { Lease, LeaseEvent } from '../../subnet/lease';

export { DEFAULT_UDP_PORT } from '../../config';

function validPort(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;
}

/**
 * The port a peer listens on: its published BackendData.Port, else the
 * network's port (every host that did not override -port uses that one).
 */
export function peerPort(lease: Lease, networkPort: number): number {
  const p = lease.backendData['Port'];
  return validPort(p) ? p : networkPort;
}

export interface TableChange {
  readonly set: readonly DataPlaneRoute[];
  readonly removed: readonly DataPlaneRoute[];
  /** Leases of another backend type, seen for the first time in this batch. */
  readonly ignored: readonly Lease[];
}

const sameRoute = (a: DataPlaneRoute, b: DataPlaneRoute): boolean =>
  a.ip === b.ip && a.prefix === b.prefix && a.publicIP === b.publicIP && a.port === b.port;

export function describeRoute(r: DataPlaneRoute): string {
  return `${formatCidr(r)} → ${formatIp(r.publicIP)}:${r.port}`;
}

/** Order of the table handed to the data plane: by subnet address, then prefix length. */
function compareRoutes(a: DataPlaneRoute, b: DataPlaneRoute): number {
  return a.ip - b.ip || a.prefix - b.prefix;
}

/**
 * Kept incrementally: a batch costs O(changes · log n) lookups plus one
 * array move per added or removed peer, never a copy or sort of every peer
 * (at 5,000 peers, copying the map and sorting the table per lease event
 * was most of the udp backend's CPU under churn).
 */
export class PeerTable {
  private readonly routes = new Map<string, DataPlaneRoute>();
  /** The same routes as `routes`, in `compareRoutes` order: what `table()` hands out. */
  private readonly sorted: DataPlaneRoute[] = [];
  /** subnet key → backend type already warned about, so a foreign lease is logged once. */
  private readonly warned = new Map<string, string>();
  private readonly ownKey: string;

  constructor(
    private readonly networkPort: number,
    own: Lease,
  ) {
    this.ownKey = cidrToKey(own.subnet);
  }

  get size(): number {
    return this.routes.size;
  }

  /** Applies a batch; returns the routes that were set (new or changed) and removed. */
  apply(events: readonly LeaseEvent[]): TableChange {
    // Each touched key's route before this batch, so several events for one
    // key in a batch report only the net change.
    const before = new Map<string, DataPlaneRoute | undefined>();
    const ignored: Lease[] = [];
    const drop = (key: string): void => {
      const old = this.routes.get(key);
      if (!before.has(key)) before.set(key, old);
      if (old === undefined) return;
      this.routes.delete(key);
      this.sorted.splice(this.indexOf(old), 1);
    };
    for (const ev of events) {
      const key = cidrToKey(ev.lease.subnet);
      if (key === this.ownKey) continue; // never route our own subnet to the network
      if (ev.type === 'removed') {
        drop(key);
        this.warned.delete(key);
        continue;
      }
      const l = ev.lease;
      if (l.backendType !== 'udp') {
        // A peer on another backend cannot decapsulate our datagrams: no route beats a black hole.
        drop(key);
        if (this.warned.get(key) !== l.backendType) {
          this.warned.set(key, l.backendType);
          ignored.push(l);
        }
        continue;
      }
      this.warned.delete(key);
      const r: DataPlaneRoute = { ip: l.subnet.ip, prefix: l.subnet.prefix, publicIP: l.publicIP, port: peerPort(l, this.networkPort) };
      const old = this.routes.get(key);
      if (!before.has(key)) before.set(key, old);
      if (old !== undefined && sameRoute(old, r)) continue;
      this.routes.set(key, r);
      const i = this.indexOf(r);
      // Same key, same (ip, prefix): a changed peer keeps its slot.
      if (old !== undefined) this.sorted[i] = r;
      else this.sorted.splice(i, 0, r);
    }
    const set: DataPlaneRoute[] = [];
    const removed: DataPlaneRoute[] = [];
    for (const [k, old] of before) {
      const now = this.routes.get(k);
      if (now !== undefined && (old === undefined || !sameRoute(old, now))) set.push(now);
      else if (now === undefined && old !== undefined) removed.push(old);
    }
    return { set, removed, ignored };
  }

  /**
   * The complete table, in a stable order (by subnet address). The live
   * array, not a copy: valid until the next `apply` (the data plane copies
   * it during `setRoutes`).
   */
  table(): readonly DataPlaneRoute[] {
    return this.sorted;
  }

  /** Where `r` is in `sorted`, or where it would go (lower bound). */
  private indexOf(r: DataPlaneRoute): number {
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareRoutes(this.sorted[mid] as DataPlaneRoute, r) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
