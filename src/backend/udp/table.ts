/**
 * The udp backend's peer table (pure): lease events in, the complete
 * data-plane route table (IPv4 and IPv6 routes) and what changed out.
 */
import { formatCidr } from '../../ip/ipv4';
import { formatCidr6 } from '../../ip/ipv6';
import type { DataPlaneRoute, DataPlaneRoute6, UnderlayFamily } from '../../dataplane/types';
import { hasIpv4, type Lease, type LeaseEvent } from '../../subnet/lease';
import { PeerTable } from '../peers';
import { formatEndpoint } from '../tun-network';

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
  /** The same for the IPv6 routes. */
  readonly set6: readonly DataPlaneRoute6[];
  readonly removed6: readonly DataPlaneRoute6[];
  /** Leases of another backend type, seen for the first time in this batch. */
  readonly ignored: readonly Lease[];
  /** Leases of this type that no route can reach (why, once per lease). */
  readonly invalid: ReadonlyArray<{ readonly lease: Lease; readonly why: string }>;
}

/** A peer: its lease key and the data-plane routes to it (what `table()` and `table6()` hand out). */
interface UdpPeer {
  readonly key: string;
  /** Its IPv4 subnet's route; absent for an IPv6-only lease. */
  readonly route?: DataPlaneRoute;
  /** Its IPv6 subnet's route, when both it and this host have one. */
  readonly route6?: DataPlaneRoute6;
}

const sameRoute = (a: DataPlaneRoute | undefined, b: DataPlaneRoute | undefined): boolean =>
  a === undefined || b === undefined ? a === b : a.ip === b.ip && a.prefix === b.prefix && a.publicIP === b.publicIP && a.publicIPv6 === b.publicIPv6 && a.port === b.port;

const sameRoute6 = (a: DataPlaneRoute6 | undefined, b: DataPlaneRoute6 | undefined): boolean =>
  a === undefined || b === undefined ? a === b : a.ip === b.ip && a.prefix === b.prefix && a.publicIP === b.publicIP && a.publicIPv6 === b.publicIPv6 && a.port === b.port;

export function describeRoute(r: DataPlaneRoute | DataPlaneRoute6): string {
  const dst = typeof r.ip === 'bigint' ? formatCidr6({ ip: r.ip, prefix: r.prefix }) : formatCidr({ ip: r.ip, prefix: r.prefix });
  return `${dst} \u2192 ${formatEndpoint(r.publicIP, r.publicIPv6, r.port)}`; // → (escaped: see src/util/flags.ts)
}

/** Order of the table handed to the data plane: by subnet address, then prefix length. */
function compareRoutes(a: DataPlaneRoute, b: DataPlaneRoute): number {
  return a.ip - b.ip || a.prefix - b.prefix;
}

function compareRoutes6(a: DataPlaneRoute6, b: DataPlaneRoute6): number {
  return a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : a.prefix - b.prefix;
}

/** Where `r` is in `sorted` (ordered by `cmp`), or where it would go (lower bound). */
function lowerBound<R>(sorted: readonly R[], r: R, cmp: (a: R, b: R) => number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cmp(sorted[mid] as R, r) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Keeps `sorted` in `cmp` order as `old` is replaced by `now` (either may be absent). */
function replaceSorted<R>(sorted: R[], old: R | undefined, now: R | undefined, cmp: (a: R, b: R) => number): void {
  if (old !== undefined && now !== undefined && cmp(old, now) === 0) {
    sorted[lowerBound(sorted, now, cmp)] = now; // same subnet: the route keeps its slot
    return;
  }
  if (old !== undefined) sorted.splice(lowerBound(sorted, old, cmp), 1);
  if (now !== undefined) sorted.splice(lowerBound(sorted, now, cmp), 0, now);
}

/** The generic peer table, with the peers' routes beside it in `compareRoutes` order (IPv6: `compareRoutes6`). */
class SortedPeers extends PeerTable<UdpPeer> {
  readonly sorted: DataPlaneRoute[] = [];
  readonly sorted6: DataPlaneRoute6[] = [];

  protected override placed(p: UdpPeer, old: UdpPeer | undefined): void {
    replaceSorted(this.sorted, old?.route, p.route, compareRoutes);
    replaceSorted(this.sorted6, old?.route6, p.route6, compareRoutes6);
  }

  protected override dropped(p: UdpPeer): void {
    replaceSorted(this.sorted, p.route, undefined, compareRoutes);
    replaceSorted(this.sorted6, p.route6, undefined, compareRoutes6);
  }
}

/**
 * Why a peer lease has no endpoint on this host's underlay, or its address:
 * its PublicIP on an IPv4 underlay, its PublicIPv6 on an IPv6 one.
 */
export function peerAddress(l: Lease, underlay: UnderlayFamily): { publicIP: number; publicIPv6?: bigint } | string {
  if (underlay === 'ipv4') {
    return l.publicIP !== 0 ? { publicIP: l.publicIP } : "no IPv4 PublicIP, and this host's underlay is IPv4 (it has an IPv4 PublicIP): expected a lease with a PublicIP";
  }
  return l.publicIPv6 !== undefined && l.publicIPv6 !== 0n
    ? { publicIP: 0, publicIPv6: l.publicIPv6 }
    : "no PublicIPv6, and this host's underlay is IPv6 (it has no IPv4 PublicIP): expected a lease with a PublicIPv6";
}

/**
 * The routes of one peer lease: its IPv4 subnet (if it has one) and its
 * IPv6 subnet (if both it and this host have one), each to the peer's
 * address on this host's underlay (peerAddress) — one underlay carries both
 * families — or why none can be made.
 */
function peerOf(l: Lease, key: string, networkPort: number, ownHasIpv6: boolean, underlay: UnderlayFamily): UdpPeer | string {
  const at = peerAddress(l, underlay);
  if (typeof at === 'string') return at;
  const port = peerPort(l, networkPort);
  const route = hasIpv4(l) ? { ip: l.subnet.ip, prefix: l.subnet.prefix, ...at, port } : undefined;
  const route6 = ownHasIpv6 && l.ipv6Subnet !== undefined ? { ip: l.ipv6Subnet.ip, prefix: l.ipv6Subnet.prefix, ...at, port } : undefined;
  if (route === undefined && route6 === undefined) return 'no subnet of a family this host carries';
  return { key, ...(route !== undefined ? { route } : {}), ...(route6 !== undefined ? { route6 } : {}) };
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

  private readonly peerOf: (l: Lease, key: string) => UdpPeer | string;

  /** `underlay`: this host's underlay family (underlayOf), which every peer is reached over. */
  constructor(networkPort: number, own: Lease, underlay: UnderlayFamily = 'ipv4') {
    const ownHasIpv6 = own.ipv6Subnet !== undefined;
    this.peerOf = (l, key) => peerOf(l, key, networkPort, ownHasIpv6, underlay);
    this.peers = new SortedPeers(own, {
      backendType: 'udp',
      peer: this.peerOf,
      same: (a, b) => sameRoute(a.route, b.route) && sameRoute6(a.route6, b.route6),
    });
  }

  get size(): number {
    return this.peers.size;
  }

  /** Applies a batch; returns the routes that were set (new or changed) and removed (gone). */
  apply(events: readonly LeaseEvent[]): TableChange {
    const ch = this.peers.apply(events);
    const gone = ch.removed.filter((p) => this.peers.get(p.key) === undefined);
    return {
      set: ch.added.flatMap((p) => (p.route !== undefined ? [p.route] : [])),
      removed: gone.flatMap((p) => (p.route !== undefined ? [p.route] : [])),
      set6: ch.added.flatMap((p) => (p.route6 !== undefined ? [p.route6] : [])),
      removed6: gone.flatMap((p) => (p.route6 !== undefined ? [p.route6] : [])),
      ignored: ch.ignored,
      invalid: ch.invalid.map((lease) => {
        const why = this.peerOf(lease, '');
        return { lease, why: typeof why === 'string' ? why : 'unusable' };
      }),
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

  /** The complete IPv6 table, by subnet address (the live array, like `table()`). */
  table6(): readonly DataPlaneRoute6[] {
    return this.peers.sorted6;
  }
}
