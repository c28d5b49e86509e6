/**
 * The vxlan backend's pure logic, for either address family: the VTEP MACs,
 * the peer tables (lease events in, peers added/removed out) and the plans
 * that turn peers into ordered kernel steps. No I/O here, so every rule is
 * unit-tested with plain data.
 *
 * Per remote lease three kernel objects on the family's device, programmed
 * in this order and undone in reverse:
 *   neighbor  remote lease network address → remote VTEP MAC   (on rudder.<VNI>)
 *   fdb       remote VTEP MAC → remote PublicIP                 (on rudder.<VNI>)
 *   route     remote subnet via remote network address, onlink  (dev rudder.<VNI>)
 * The route goes last so the kernel never sends into an unresolved next hop,
 * and first on removal for the same reason. The IPv6 device (rudder-v6.<VNI>)
 * gets the same three over the lease's IPv6 subnet, its PublicIPv6 and its
 * BackendV6Data VtepMAC; a lease without them (a host with IPv4 only, in a
 * dual-stack network) is no IPv6 peer: it is reported once (the table's
 * `invalid`), and reached over IPv4 only.
 *
 * The rules are written once over a VxlanFamily (VXLAN4, VXLAN6); the IPv4
 * names (planReconcile, ...) and the IPv6 ones (planReconcile6, ...) are the
 * two families' instances.
 */
import { createHash } from 'node:crypto';
import { IPV4, IPV6, type IpFamily, type PrefixOf } from '../../ip/family';
import { cidrToKey, formatIp, type Cidr } from '../../ip/ipv4';
import { formatIp6, type Cidr6 } from '../../ip/ipv6';
import { formatLeaseKey, type Lease } from '../../subnet/lease';
import { PeerTable, bySubnet, type PeerChange, type PeerRules } from '../peers';
import { IPV6_DEFAULT_METRIC, TABLE_MAIN, type FdbSpecOf, type NeighborSpecOf, type RouteInfoOf } from '../../netlink/types';

export const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/**
 * A VTEP MAC derived from `seed` (the VNI and this host's PublicIP, or
 * PublicIPv6): stable across restarts, crashes and a deleted device without
 * any state file, and unique per host (public addresses are unique in a
 * cluster). Locally administered unicast (first octet xxxxxx10), so it can
 * never equal a vendor-assigned MAC.
 */
function derivedMac(seed: string): string {
  const h = createHash('sha256').update(seed).digest();
  const b = [...h.subarray(0, 6)];
  b[0] = ((b[0] as number) & 0xfe) | 0x02;
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** This host's VTEP MAC for the IPv4 device. */
export const vtepMac = (publicIP: number, vni: number): string => derivedMac(`rudder-vtep/${vni}/${formatIp(publicIP)}`);
/** This host's VTEP MAC for the IPv6 device: never the IPv4 device's. */
export const vtepMac6 = (publicIPv6: bigint, vni: number): string => derivedMac(`rudder-vtep6/${vni}/${formatIp6(publicIPv6)}`);

function canonicalMac(v: unknown): string | null {
  if (typeof v !== 'string') return null;
  const m = v.toLowerCase();
  return MAC_RE.test(m) ? m : null;
}

/** A lease's VTEP MAC in canonical form, or null if BackendData has none or a malformed one. */
export const leaseMac = (l: Lease): string | null => canonicalMac(l.backendData['VtepMAC']);
/** The lease's BackendV6Data VtepMAC in canonical form, or null if it has none or a malformed one. */
export const leaseMac6 = (l: Lease): string | null => canonicalMac(l.backendV6Data?.['VtepMAC']);

/** Why a vxlan lease is no IPv6 peer, or null when it is one. */
export function notV6Peer(l: Lease): string | null {
  if (l.ipv6Subnet === undefined) return 'no IPv6 subnet';
  if (l.publicIPv6 === undefined) return 'no PublicIPv6';
  if (leaseMac6(l) === null) return `BackendV6Data VtepMAC ${JSON.stringify(l.backendV6Data?.['VtepMAC'] ?? null)}`;
  return null;
}

/**
 * Neighbor entries the kernel keeps for itself on an IPv6 device: multicast
 * (ff00::/8: its MLD reports make a NOARP entry for ff02::16) and link-local
 * (fe80::/10). Rudder never programs these, so they are neither stale nor drift.
 */
export function isKernelNeighbor6(ip: bigint): boolean {
  const top = ip >> 112n;
  return top >> 8n === 0xffn || (top & 0xffc0n) === 0xfe80n;
}

/** A peer of either family's device. */
export interface PeerOf<A extends number | bigint> {
  readonly key: string;
  readonly subnet: PrefixOf<A>;
  readonly mac: string;
}

export interface VxlanPeer extends PeerOf<number> {
  /** Lease key form of the subnet (10.0.5.0-24). */
  readonly key: string;
  readonly subnet: Cidr;
  readonly publicIP: number;
}

export interface Vxlan6Peer extends PeerOf<bigint> {
  /** The lease key (`10.0.5.0-24&fd00:0:0:5::-64`). */
  readonly key: string;
  /** The lease's IPv6 subnet. */
  readonly subnet: Cidr6;
  readonly publicIPv6: bigint;
}

/** The next hop of a peer's route, and its neighbor entry's address: the peer's network address. */
export const peerVtepIp = <A extends number | bigint>(p: { readonly subnet: PrefixOf<A> }): A => p.subnet.ip;

/** What the IPv4 and IPv6 devices' peers and plans differ in. */
export interface VxlanFamily<A extends number | bigint, P extends PeerOf<A>> extends IpFamily<A> {
  readonly rules: PeerRules<P>;
  /** The peer's PublicIP (PublicIPv6): its FDB entry's remote. */
  remote(p: P): A;
  /** The metric of a peer's route: 0, or IPv6's default (the kernel never stores 0). */
  readonly metric: number;
  /** A neighbor entry the kernel keeps for itself (never stale, never drift). */
  kernelNeighbor(ip: A): boolean;
}

/** The peer table's rules for vxlan: a lease with a valid VtepMAC is a VTEP. */
export const VXLAN4: VxlanFamily<number, VxlanPeer> = {
  ...IPV4,
  rules: {
    backendType: 'vxlan',
    // Only leases with an IPv4 subnet reach this table (the backend filters): a route's destination finds its peer.
    keyOf: (l) => cidrToKey(l.subnet),
    peer(l, key) {
      const mac = leaseMac(l);
      return mac === null ? `mac ${JSON.stringify(l.backendData['VtepMAC'])}` : { key, subnet: l.subnet, publicIP: l.publicIP, mac };
    },
    same: (a, b) => a.publicIP === b.publicIP && a.mac === b.mac,
  },
  remote: (p) => p.publicIP,
  metric: 0,
  kernelNeighbor: () => false,
};

/** IPv6 peers are keyed by the whole lease key; a lease without IPv6 is no peer (notV6Peer). */
export const VXLAN6: VxlanFamily<bigint, Vxlan6Peer> = {
  ...IPV6,
  rules: {
    backendType: 'vxlan',
    keyOf: formatLeaseKey,
    peer(l, key) {
      const why = notV6Peer(l);
      if (why !== null) return why;
      return { key, subnet: l.ipv6Subnet as Cidr6, publicIPv6: l.publicIPv6 as bigint, mac: leaseMac6(l) as string };
    },
    same: (a, b) => a.publicIPv6 === b.publicIPv6 && a.mac === b.mac && a.subnet.ip === b.subnet.ip && a.subnet.prefix === b.subnet.prefix,
  },
  remote: (p) => p.publicIPv6,
  metric: IPV6_DEFAULT_METRIC,
  kernelNeighbor: isKernelNeighbor6,
};

export type { PeerChange } from '../peers';

/** Whether some current peer still needs a kernel entry that a removed peer also used. */
export interface PeerUse<A = number> {
  usesFdb(mac: string, publicIP: A): boolean;
  usesVtep(ip: A): boolean;
}

const fdbKey = <A extends number | bigint>(fam: IpFamily<A>, mac: string, remote: A): string => `${mac}@${fam.key(remote)}`;

function bump<K>(m: Map<K, number>, k: K, by: number): void {
  const n = (m.get(k) ?? 0) + by;
  if (n > 0) m.set(k, n);
  else m.delete(k);
}

/** The peer table of one family's device, with the indexes its driver and plans ask. */
export class FamilyPeerTable<A extends number | bigint, P extends PeerOf<A>> extends PeerTable<P> implements PeerUse<A> {
  /**
   * How many current peers use each FDB entry (MAC, PublicIP) and VTEP address: a removal
   * asks whether another peer still needs them in O(1), not by copying and scanning every peer.
   */
  private readonly fdbUse = new Map<string, number>();
  private readonly vtepUse = new Map<A, number>();
  /** VTEP (network) address, VTEP MAC and subnet → peer: to judge kernel notifications in O(1). */
  private readonly vteps = new Map<A, P>();
  private readonly macs = new Map<string, P>();
  private readonly subnets = new Map<string, P>();

  constructor(
    own: Cidr | Lease,
    private readonly fam: VxlanFamily<A, P>,
  ) {
    super(own, fam.rules);
  }

  protected override placed(p: P, old: P | undefined): void {
    if (old !== undefined) this.dropped(old);
    const vtep = this.fam.key(peerVtepIp(p));
    bump(this.fdbUse, fdbKey(this.fam, p.mac, this.fam.remote(p)), 1);
    bump(this.vtepUse, vtep, 1);
    this.vteps.set(vtep, p);
    this.macs.set(p.mac, p);
    this.subnets.set(this.fam.cidrKey(p.subnet), p);
  }

  protected override dropped(p: P): void {
    const vtep = this.fam.key(peerVtepIp(p));
    bump(this.fdbUse, fdbKey(this.fam, p.mac, this.fam.remote(p)), -1);
    bump(this.vtepUse, vtep, -1);
    if (this.vteps.get(vtep) === p) this.vteps.delete(vtep);
    if (this.macs.get(p.mac) === p) this.macs.delete(p.mac);
    if (this.subnets.get(this.fam.cidrKey(p.subnet)) === p) this.subnets.delete(this.fam.cidrKey(p.subnet));
  }

  usesFdb(mac: string, remote: A): boolean {
    return this.fdbUse.has(fdbKey(this.fam, mac, remote));
  }

  usesVtep(ip: A): boolean {
    return this.vtepUse.has(this.fam.key(ip));
  }

  /** The peer whose VTEP address (neighbor entry, route next hop) is `ip`. */
  byVtep(ip: A): P | undefined {
    return this.vteps.get(this.fam.key(ip));
  }

  /** A peer with this VTEP MAC (the latest programmed, if several share it). */
  byMac(mac: string): P | undefined {
    return this.macs.get(mac);
  }

  /** The peer routed to this subnet. */
  bySubnet(dst: PrefixOf<A>): P | undefined {
    return this.subnets.get(this.fam.cidrKey(dst));
  }

  /** Current peers, in a stable order (by subnet address). */
  list(): P[] {
    return bySubnet(this.values());
  }
}

export class VxlanPeerTable extends FamilyPeerTable<number, VxlanPeer> {
  constructor(own: Cidr) {
    super(own, VXLAN4);
  }
}

/** The IPv6 device's peers, keyed by the whole lease key. */
export class Vxlan6PeerTable extends FamilyPeerTable<bigint, Vxlan6Peer> {
  constructor(own: Lease) {
    super(own, VXLAN6);
  }
}

// ---------------------------------------------------------------------------
// Kernel steps

/** A step on one family's device: VxlanStep (IPv4 addresses) or Vxlan6Step. */
export type VxlanStepOf<A extends number | bigint> =
  | { readonly kind: 'add-neigh'; readonly ip: A; readonly mac: string }
  | { readonly kind: 'add-fdb'; readonly mac: string; readonly dst: A }
  | { readonly kind: 'add-route'; readonly dst: PrefixOf<A>; readonly via: A }
  | { readonly kind: 'del-route'; readonly dst: PrefixOf<A>; readonly table: number; readonly metric: number; readonly oif?: number; readonly gateway?: A }
  | { readonly kind: 'del-fdb'; readonly mac: string; readonly dst: A }
  | { readonly kind: 'del-neigh'; readonly ip: A };
export type VxlanStep = VxlanStepOf<number>;
export type Vxlan6Step = VxlanStepOf<bigint>;

/** What a reconcile reads back: the family's Rudder routes and the device's neighbors and FDB. */
export interface VxlanKernelStateOf<A extends number | bigint> {
  /** RTPROT_RUDDER routes of the main table (any device). */
  readonly routes: ReadonlyArray<Pick<RouteInfoOf<A>, 'dst' | 'table' | 'metric' | 'oif' | 'gateway' | 'onlink'>>;
  /** Neighbors on the VXLAN device. */
  readonly neighbors: ReadonlyArray<NeighborSpecOf<A>>;
  /** FDB entries (with a remote of this family) on the VXLAN device. */
  readonly fdb: ReadonlyArray<FdbSpecOf<A>>;
}
export type VxlanKernelState = VxlanKernelStateOf<number>;
export type Vxlan6KernelState = VxlanKernelStateOf<bigint>;

/** The plans of one family, as functions of its peers. */
function plans<A extends number | bigint, P extends PeerOf<A>>(fam: VxlanFamily<A, P>) {
  type Step = VxlanStepOf<A>;
  const delRoute = (p: P, devIndex: number): Step => ({ kind: 'del-route', dst: p.subnet, table: TABLE_MAIN, metric: fam.metric, oif: devIndex, gateway: peerVtepIp(p) });

  function describeStep(s: Step): string {
    switch (s.kind) {
      case 'add-neigh':
        return `neighbor ${fam.formatIp(s.ip)} lladdr ${s.mac}`;
      case 'add-fdb':
        return `fdb ${s.mac} dst ${fam.formatIp(s.dst)}`;
      case 'add-route':
        return `route ${fam.formatCidr(s.dst)} via ${fam.formatIp(s.via)} onlink`;
      case 'del-route':
        return `delete route ${fam.formatCidr(s.dst)}${s.gateway !== undefined ? ` via ${fam.formatIp(s.gateway)}` : ''}${s.oif !== undefined ? ` oif ${s.oif}` : ''}`;
      case 'del-fdb':
        return `delete fdb ${s.mac} dst ${fam.formatIp(s.dst)}`;
      case 'del-neigh':
        return `delete neighbor ${fam.formatIp(s.ip)}`;
    }
  }

  function programSteps(p: P): Step[] {
    return [
      { kind: 'add-neigh', ip: peerVtepIp(p), mac: p.mac },
      { kind: 'add-fdb', mac: p.mac, dst: fam.remote(p) },
      { kind: 'add-route', dst: p.subnet, via: peerVtepIp(p) },
    ];
  }

  /**
   * Undoes one peer in reverse order. An FDB entry or neighbor another current
   * peer still needs (a host that moved to a new subnet keeps its MAC and
   * PublicIP; events may arrive in separate batches) is left alone.
   */
  function unprogramSteps(p: P, devIndex: number, remaining: PeerUse<A>): Step[] {
    const steps: Step[] = [delRoute(p, devIndex)];
    if (!remaining.usesFdb(p.mac, fam.remote(p))) steps.push({ kind: 'del-fdb', mac: p.mac, dst: fam.remote(p) });
    if (!remaining.usesVtep(peerVtepIp(p))) steps.push({ kind: 'del-neigh', ip: peerVtepIp(p) });
    return steps;
  }

  /** Steps that remove every one of `peers` (stop): routes, then each FDB entry and neighbor once. */
  function stopSteps(peers: readonly P[], devIndex: number): Step[] {
    const fdb = new Set<string>();
    const neigh = new Set<A>();
    const routes: Step[] = [];
    const rest: Step[] = [];
    for (const p of peers) {
      routes.push(delRoute(p, devIndex));
      const f = fdbKey(fam, p.mac, fam.remote(p));
      if (!fdb.has(f)) {
        fdb.add(f);
        rest.push({ kind: 'del-fdb', mac: p.mac, dst: fam.remote(p) });
      }
      if (!neigh.has(fam.key(peerVtepIp(p)))) {
        neigh.add(fam.key(peerVtepIp(p)));
        rest.push({ kind: 'del-neigh', ip: peerVtepIp(p) });
      }
    }
    return [...routes, ...rest];
  }

  /** Steps for one batch: every removal (reverse order) before any addition. */
  function changeSteps(ch: Pick<PeerChange<P>, 'added' | 'removed'>, devIndex: number, current: PeerUse<A>): Step[] {
    return [...ch.removed.flatMap((p) => unprogramSteps(p, devIndex, current)), ...ch.added.flatMap(programSteps)];
  }

  /** Whether a kernel route is exactly peer `p`'s on device `devIndex`. */
  function isPeerRoute(r: VxlanKernelStateOf<A>['routes'][number], p: P | undefined, devIndex: number): boolean {
    return p !== undefined && r.oif === devIndex && r.gateway === fam.key(peerVtepIp(p)) && r.onlink && r.metric === fam.metric;
  }

  /**
   * What makes the kernel match `peers` exactly: stale objects removed (routes,
   * then FDB, then neighbors), missing ones added per peer (neighbor, FDB,
   * route). Routes elsewhere (another device, another backend's shape) are
   * stale too: every Rudder-protocol route of the family in the main table is
   * this backend's. Neighbors the kernel keeps for itself are not looked at.
   */
  function planReconcile(peers: readonly P[], have: VxlanKernelStateOf<A>, devIndex: number): Step[] {
    const routeDel: Step[] = [];
    const bySubnetKey = new Map(peers.map((p) => [fam.cidrKey(p.subnet), p]));
    const routeOk = new Set<string>();
    for (const r of have.routes) {
      const k = fam.cidrKey(r.dst);
      if (isPeerRoute(r, bySubnetKey.get(k), devIndex) && !routeOk.has(k)) routeOk.add(k);
      else routeDel.push({ kind: 'del-route', dst: r.dst, table: r.table, metric: r.metric, ...(r.oif !== undefined ? { oif: r.oif } : {}), ...(r.gateway !== undefined ? { gateway: r.gateway } : {}) });
    }
    const wantFdb = new Set(peers.map((p) => fdbKey(fam, p.mac, fam.remote(p))));
    const fdbOk = new Set<string>();
    const fdbDel: Step[] = [];
    for (const f of have.fdb) {
      const k = fdbKey(fam, f.mac, f.dst);
      if (wantFdb.has(k)) fdbOk.add(k);
      else fdbDel.push({ kind: 'del-fdb', mac: f.mac, dst: f.dst });
    }
    const byVtep = new Map<A, P>();
    for (const p of peers) if (!byVtep.has(fam.key(peerVtepIp(p)))) byVtep.set(fam.key(peerVtepIp(p)), p);
    const neighOk = new Set<A>();
    const neighDel: Step[] = [];
    for (const n of have.neighbors) {
      if (fam.kernelNeighbor(n.ip)) continue;
      const p = byVtep.get(fam.key(n.ip));
      if (p !== undefined && p.mac === n.mac) neighOk.add(fam.key(n.ip));
      // A wrong MAC for a peer's address is replaced by add-neigh below; anything else goes.
      else if (p === undefined) neighDel.push({ kind: 'del-neigh', ip: n.ip });
    }
    const add: Step[] = [];
    for (const p of peers) {
      for (const s of programSteps(p)) {
        if (s.kind === 'add-neigh' && neighOk.has(fam.key(s.ip))) continue;
        if (s.kind === 'add-fdb' && fdbOk.has(fdbKey(fam, s.mac, s.dst))) continue;
        if (s.kind === 'add-route' && routeOk.has(fam.cidrKey(s.dst))) continue;
        add.push(s);
      }
    }
    return [...routeDel, ...fdbDel, ...neighDel, ...add];
  }

  /** PeerUse over a list (tests, one-off callers); the tables keep counts instead. */
  function peerUse(peers: readonly P[]): PeerUse<A> {
    const fdb = new Set(peers.map((p) => fdbKey(fam, p.mac, fam.remote(p))));
    const vtep = new Set(peers.map((p) => fam.key(peerVtepIp(p))));
    return { usesFdb: (mac, ip) => fdb.has(fdbKey(fam, mac, ip)), usesVtep: (ip) => vtep.has(fam.key(ip)) };
  }

  return { describeStep, programSteps, unprogramSteps, stopSteps, changeSteps, isPeerRoute, planReconcile, peerUse };
}

export type VxlanPlans<A extends number | bigint, P extends PeerOf<A>> = ReturnType<typeof plans<A, P>>;
export const plans4 = plans(VXLAN4);
export const plans6 = plans(VXLAN6);

export const { describeStep, programSteps, unprogramSteps, stopSteps, changeSteps, planReconcile, peerUse } = plans4;
export const {
  describeStep: describeStep6,
  programSteps: programSteps6,
  unprogramSteps: unprogramSteps6,
  stopSteps: stopSteps6,
  changeSteps: changeSteps6,
  planReconcile: planReconcile6,
  peerUse: peerUse6,
} = plans6;
