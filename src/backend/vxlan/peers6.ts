/**
 * The IPv6 side of the vxlan backend (pure): the IPv6 VTEP MAC, the table of
 * IPv6 peers and the plans for the second VXLAN device, whose VTEP is this
 * host's PublicIPv6. peers.ts has the IPv4 side; the rules are the same, over
 * 128-bit addresses. Per remote lease with an IPv6 subnet, a PublicIPv6 and a
 * BackendV6Data VtepMAC, three kernel objects on the IPv6 device, programmed
 * in this order and undone in reverse:
 *   neighbor  remote IPv6 network address → remote IPv6 VTEP MAC
 *   fdb       remote IPv6 VTEP MAC → remote PublicIPv6
 *   route     remote IPv6 subnet via remote IPv6 network address, onlink
 * A lease without them (a host with IPv4 only, in a dual-stack network) is
 * no IPv6 peer: it is reported once (the table's `invalid`), and reached
 * over IPv4 only.
 */
import { createHash } from 'node:crypto';
import { cidr6ToKey, formatCidr6, formatIp6, type Cidr6 } from '../../ip/ipv6';
import { formatLeaseKey, type Lease } from '../../subnet/lease';
import { PeerTable, type PeerChange, type PeerRules } from '../peers';
import { IPV6_DEFAULT_METRIC, TABLE_MAIN, type Fdb6Spec, type Neighbor6Spec, type Route6Info } from '../../netlink/types';
import { MAC_RE, type PeerUse } from './peers';

/**
 * This host's IPv6 VTEP MAC, derived from its PublicIPv6 and the VNI (as
 * vtepMac from the PublicIP): stable without a state file, unique per host,
 * locally administered unicast, and never the IPv4 device's.
 */
export function vtepMac6(publicIPv6: bigint, vni: number): string {
  const h = createHash('sha256').update(`rudder-vtep6/${vni}/${formatIp6(publicIPv6)}`).digest();
  const b = [...h.subarray(0, 6)];
  b[0] = ((b[0] as number) & 0xfe) | 0x02;
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** The lease's BackendV6Data VtepMAC in canonical form, or null if it has none or a malformed one. */
export function leaseMac6(l: Lease): string | null {
  const v = l.backendV6Data?.['VtepMAC'];
  if (typeof v !== 'string') return null;
  const m = v.toLowerCase();
  return MAC_RE.test(m) ? m : null;
}

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

export interface Vxlan6Peer {
  /** The lease key (`10.0.5.0-24&fd00:0:0:5::-64`). */
  readonly key: string;
  /** The lease's IPv6 subnet. */
  readonly subnet: Cidr6;
  readonly publicIPv6: bigint;
  readonly mac: string;
}

/** The next hop of a peer's route, and its neighbor entry's address: the peer's IPv6 network address. */
export const peerVtepIp6 = (p: Vxlan6Peer): bigint => p.subnet.ip;

const RULES6: PeerRules<Vxlan6Peer> = {
  backendType: 'vxlan',
  keyOf: formatLeaseKey,
  peer(l, key) {
    const why = notV6Peer(l);
    if (why !== null) return why;
    return { key, subnet: l.ipv6Subnet as Cidr6, publicIPv6: l.publicIPv6 as bigint, mac: leaseMac6(l) as string };
  },
  same: (a, b) => a.publicIPv6 === b.publicIPv6 && a.mac === b.mac && a.subnet.ip === b.subnet.ip && a.subnet.prefix === b.subnet.prefix,
};

type Use6 = PeerUse<bigint>;

const fdbKey6 = (mac: string, publicIPv6: bigint): string => `${mac}@${publicIPv6}`;

function bump<K>(m: Map<K, number>, k: K, by: number): void {
  const n = (m.get(k) ?? 0) + by;
  if (n > 0) m.set(k, n);
  else m.delete(k);
}

export class Vxlan6PeerTable extends PeerTable<Vxlan6Peer> implements Use6 {
  private readonly fdbUse = new Map<string, number>();
  private readonly vtepUse = new Map<bigint, number>();
  private readonly vteps = new Map<bigint, Vxlan6Peer>();
  private readonly macs = new Map<string, Vxlan6Peer>();
  /** IPv6 subnet → peer: to judge route notifications in O(1). */
  private readonly subnets = new Map<string, Vxlan6Peer>();

  constructor(own: Lease) {
    super(own, RULES6);
  }

  protected override placed(p: Vxlan6Peer, old: Vxlan6Peer | undefined): void {
    if (old !== undefined) this.dropped(old);
    bump(this.fdbUse, fdbKey6(p.mac, p.publicIPv6), 1);
    bump(this.vtepUse, peerVtepIp6(p), 1);
    this.vteps.set(peerVtepIp6(p), p);
    this.macs.set(p.mac, p);
    this.subnets.set(cidr6ToKey(p.subnet), p);
  }

  protected override dropped(p: Vxlan6Peer): void {
    bump(this.fdbUse, fdbKey6(p.mac, p.publicIPv6), -1);
    bump(this.vtepUse, peerVtepIp6(p), -1);
    if (this.vteps.get(peerVtepIp6(p)) === p) this.vteps.delete(peerVtepIp6(p));
    if (this.macs.get(p.mac) === p) this.macs.delete(p.mac);
    if (this.subnets.get(cidr6ToKey(p.subnet)) === p) this.subnets.delete(cidr6ToKey(p.subnet));
  }

  usesFdb(mac: string, publicIPv6: bigint): boolean {
    return this.fdbUse.has(fdbKey6(mac, publicIPv6));
  }

  usesVtep(ip: bigint): boolean {
    return this.vtepUse.has(ip);
  }

  /** The peer whose IPv6 VTEP address (neighbor entry, route next hop) is `ip`. */
  byVtep(ip: bigint): Vxlan6Peer | undefined {
    return this.vteps.get(ip);
  }

  /** A peer with this IPv6 VTEP MAC. */
  byMac(mac: string): Vxlan6Peer | undefined {
    return this.macs.get(mac);
  }

  /** The peer routed to this IPv6 subnet. */
  bySubnet(dst: Cidr6): Vxlan6Peer | undefined {
    return this.subnets.get(cidr6ToKey(dst));
  }

  /** Current peers, by IPv6 subnet. */
  list(): Vxlan6Peer[] {
    return [...this.values()].sort((a, b) => (a.subnet.ip < b.subnet.ip ? -1 : a.subnet.ip > b.subnet.ip ? 1 : a.subnet.prefix - b.subnet.prefix));
  }
}

/** PeerUse over a list (tests, one-off callers). */
export function peerUse6(peers: readonly Vxlan6Peer[]): Use6 {
  const fdb = new Set(peers.map((p) => fdbKey6(p.mac, p.publicIPv6)));
  const vtep = new Set(peers.map(peerVtepIp6));
  return { usesFdb: (mac, ip) => fdb.has(fdbKey6(mac, ip)), usesVtep: (ip) => vtep.has(ip) };
}

// ---------------------------------------------------------------------------
// Kernel steps

export type Vxlan6Step =
  | { readonly kind: 'add-neigh'; readonly ip: bigint; readonly mac: string }
  | { readonly kind: 'add-fdb'; readonly mac: string; readonly dst: bigint }
  | { readonly kind: 'add-route'; readonly dst: Cidr6; readonly via: bigint }
  | { readonly kind: 'del-route'; readonly dst: Cidr6; readonly table: number; readonly metric: number; readonly oif?: number; readonly gateway?: bigint }
  | { readonly kind: 'del-fdb'; readonly mac: string; readonly dst: bigint }
  | { readonly kind: 'del-neigh'; readonly ip: bigint };

export function describeStep6(s: Vxlan6Step): string {
  switch (s.kind) {
    case 'add-neigh':
      return `neighbor ${formatIp6(s.ip)} lladdr ${s.mac}`;
    case 'add-fdb':
      return `fdb ${s.mac} dst ${formatIp6(s.dst)}`;
    case 'add-route':
      return `route ${formatCidr6(s.dst)} via ${formatIp6(s.via)} onlink`;
    case 'del-route':
      return `delete route ${formatCidr6(s.dst)}${s.gateway !== undefined ? ` via ${formatIp6(s.gateway)}` : ''}${s.oif !== undefined ? ` oif ${s.oif}` : ''}`;
    case 'del-fdb':
      return `delete fdb ${s.mac} dst ${formatIp6(s.dst)}`;
    case 'del-neigh':
      return `delete neighbor ${formatIp6(s.ip)}`;
  }
}

export function programSteps6(p: Vxlan6Peer): Vxlan6Step[] {
  return [
    { kind: 'add-neigh', ip: peerVtepIp6(p), mac: p.mac },
    { kind: 'add-fdb', mac: p.mac, dst: p.publicIPv6 },
    { kind: 'add-route', dst: p.subnet, via: peerVtepIp6(p) },
  ];
}

const delRoute = (p: Vxlan6Peer, devIndex: number): Vxlan6Step => ({ kind: 'del-route', dst: p.subnet, table: TABLE_MAIN, metric: IPV6_DEFAULT_METRIC, oif: devIndex, gateway: peerVtepIp6(p) });

/** Undoes one peer in reverse order; an FDB entry or neighbor another current peer needs stays. */
export function unprogramSteps6(p: Vxlan6Peer, devIndex: number, remaining: Use6): Vxlan6Step[] {
  const steps: Vxlan6Step[] = [delRoute(p, devIndex)];
  if (!remaining.usesFdb(p.mac, p.publicIPv6)) steps.push({ kind: 'del-fdb', mac: p.mac, dst: p.publicIPv6 });
  if (!remaining.usesVtep(peerVtepIp6(p))) steps.push({ kind: 'del-neigh', ip: peerVtepIp6(p) });
  return steps;
}

/** Steps that remove every one of `peers` (stop): routes, then each FDB entry and neighbor once. */
export function stopSteps6(peers: readonly Vxlan6Peer[], devIndex: number): Vxlan6Step[] {
  const fdb = new Set<string>();
  const neigh = new Set<bigint>();
  const routes: Vxlan6Step[] = [];
  const rest: Vxlan6Step[] = [];
  for (const p of peers) {
    routes.push(delRoute(p, devIndex));
    if (!fdb.has(fdbKey6(p.mac, p.publicIPv6))) {
      fdb.add(fdbKey6(p.mac, p.publicIPv6));
      rest.push({ kind: 'del-fdb', mac: p.mac, dst: p.publicIPv6 });
    }
    if (!neigh.has(peerVtepIp6(p))) {
      neigh.add(peerVtepIp6(p));
      rest.push({ kind: 'del-neigh', ip: peerVtepIp6(p) });
    }
  }
  return [...routes, ...rest];
}

/** Steps for one batch: every removal (reverse order) before any addition. */
export function changeSteps6(ch: Pick<PeerChange<Vxlan6Peer>, 'added' | 'removed'>, devIndex: number, current: Use6): Vxlan6Step[] {
  return [...ch.removed.flatMap((p) => unprogramSteps6(p, devIndex, current)), ...ch.added.flatMap(programSteps6)];
}

export interface Vxlan6KernelState {
  /** RTPROT_RUDDER IPv6 routes of the main table (any device). */
  readonly routes: readonly Pick<Route6Info, 'dst' | 'table' | 'metric' | 'oif' | 'gateway' | 'onlink'>[];
  /** IPv6 neighbors on the IPv6 VXLAN device. */
  readonly neighbors: readonly Neighbor6Spec[];
  /** FDB entries with an IPv6 remote on the IPv6 VXLAN device. */
  readonly fdb: readonly Fdb6Spec[];
}

/** Whether a kernel IPv6 route is exactly peer `p`'s on device `devIndex`. */
export function isPeerRoute6(r: Vxlan6KernelState['routes'][number], p: Vxlan6Peer | undefined, devIndex: number): boolean {
  return p !== undefined && r.oif === devIndex && r.gateway === peerVtepIp6(p) && r.onlink && r.metric === IPV6_DEFAULT_METRIC;
}

/**
 * What makes the kernel match `peers` exactly (as planReconcile, IPv4):
 * stale routes, then FDB entries, then neighbors removed; missing ones added
 * per peer (neighbor, FDB, route). Every Rudder-protocol IPv6 route of the
 * main table is this backend's.
 */
export function planReconcile6(peers: readonly Vxlan6Peer[], have: Vxlan6KernelState, devIndex: number): Vxlan6Step[] {
  const routeDel: Vxlan6Step[] = [];
  const bySubnet = new Map(peers.map((p) => [cidr6ToKey(p.subnet), p]));
  const routeOk = new Set<string>();
  for (const r of have.routes) {
    const k = cidr6ToKey(r.dst);
    if (isPeerRoute6(r, bySubnet.get(k), devIndex) && !routeOk.has(k)) routeOk.add(k);
    else routeDel.push({ kind: 'del-route', dst: r.dst, table: r.table, metric: r.metric, ...(r.oif !== undefined ? { oif: r.oif } : {}), ...(r.gateway !== undefined ? { gateway: r.gateway } : {}) });
  }
  const wantFdb = new Set(peers.map((p) => fdbKey6(p.mac, p.publicIPv6)));
  const fdbOk = new Set<string>();
  const fdbDel: Vxlan6Step[] = [];
  for (const f of have.fdb) {
    const k = fdbKey6(f.mac, f.dst);
    if (wantFdb.has(k)) fdbOk.add(k);
    else fdbDel.push({ kind: 'del-fdb', mac: f.mac, dst: f.dst });
  }
  const byVtep = new Map<bigint, Vxlan6Peer>();
  for (const p of peers) if (!byVtep.has(peerVtepIp6(p))) byVtep.set(peerVtepIp6(p), p);
  const neighOk = new Set<bigint>();
  const neighDel: Vxlan6Step[] = [];
  for (const n of have.neighbors) {
    if (isKernelNeighbor6(n.ip)) continue;
    const p = byVtep.get(n.ip);
    if (p !== undefined && p.mac === n.mac) neighOk.add(n.ip);
    // A wrong MAC for a peer's address is replaced by add-neigh below; anything else goes.
    else if (p === undefined) neighDel.push({ kind: 'del-neigh', ip: n.ip });
  }
  const add: Vxlan6Step[] = [];
  for (const p of peers) {
    for (const s of programSteps6(p)) {
      if (s.kind === 'add-neigh' && neighOk.has(s.ip)) continue;
      if (s.kind === 'add-fdb' && fdbOk.has(fdbKey6(s.mac, s.dst))) continue;
      if (s.kind === 'add-route' && routeOk.has(cidr6ToKey(s.dst))) continue;
      add.push(s);
    }
  }
  return [...routeDel, ...fdbDel, ...neighDel, ...add];
}
