/**
 * The udp backend's peer table (pure): lease events in, the complete
 * data-plane route table and what changed out.
 */
import { formatCidr, formatIp } from '../../ip/ipv4';
import type { DataPlaneRoute } from '../../dataplane/types';
import type { Lease, LeaseEvent } from '../../subnet/lease';
import { PeerTable } from '../peers';

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

/** A peer: its lease key and the data-plane route to it (what `table()` hands out). */
interface UdpPeer {
  readonly key: string;
  readonly route: DataPlaneRoute;
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

/** The generic peer table, with the peers' routes beside it in `compareRoutes` order. */
class SortedPeers extends PeerTable<UdpPeer> {
  readonly sorted: DataPlaneRoute[] = [];

  protected override placed(p: UdpPeer, old: UdpPeer | undefined): void {
    const i = this.indexOf(p.route);
    // Same key, same (ip, prefix): a changed peer keeps its slot.
    if (old !== undefined) this.sorted[i] = p.route;
    else this.sorted.splice(i, 0, p.route);
  }

  protected override dropped(p: UdpPeer): void {
    this.sorted.splice(this.indexOf(p.route), 1);
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

/**
 * The udp peer table: lease events in, the complete data-plane route table
 * and what changed out. Kept sorted incrementally: a batch costs
 * O(changes · log n) lookups plus one array move per added or removed peer,
 * never a copy or sort of every peer (at 5,000 peers, copying the map and
 * sorting the table per lease event was most of the udp backend's CPU under
 * churn).
 */
export class UdpPeerTable {
  private readonly peers: SortedPeers;

  constructor(networkPort: number, own: Lease) {
    this.peers = new SortedPeers(own.subnet, {
      backendType: 'udp',
      peer: (l, key) => ({ key, route: { ip: l.subnet.ip, prefix: l.subnet.prefix, publicIP: l.publicIP, port: peerPort(l, networkPort) } }),
      same: (a, b) => sameRoute(a.route, b.route),
    });
  }

  get size(): number {
    return this.peers.size;
  }

  /** Applies a batch; returns the routes that were set (new or changed) and removed (gone). */
  apply(events: readonly LeaseEvent[]): TableChange {
    const ch = this.peers.apply(events);
    return {
      set: ch.added.map((p) => p.route),
      removed: ch.removed.filter((p) => this.peers.get(p.key) === undefined).map((p) => p.route),
      ignored: ch.ignored,
    };
  }

  /**
   * The complete table, in a stable order (by subnet address). The live
   * array, not a copy: valid until the next `apply` (the data plane copies
   * it during `setRoutes`).
   */
  table(): readonly DataPlaneRoute[] {
    return this.peers.sorted;
  }
}
