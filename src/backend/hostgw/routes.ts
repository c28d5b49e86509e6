/**
 * The host-gw backend's pure logic: the peer table (lease events in, peers
 * added/removed out), the "directly connected" rule and the plans that make
 * the kernel's Rudder-protocol routes (IPv4 and IPv6) match the peers. No
 * I/O here.
 */
import { cidrToKey, contains, formatCidr, formatIp, maskOf, type Cidr } from '../../ip/ipv4';
import { cidr6ToKey, contains6, formatCidr6, formatIp6, maskOf6, type Cidr6 } from '../../ip/ipv6';
import { PeerTable, type PeerRules } from '../peers';
import { IPV6_DEFAULT_METRIC, TABLE_MAIN, type Addr6Spec, type AddrSpec, type Route6Info, type RouteInfo } from '../../netlink/types';
import { hasIpv4, type Lease, type LeaseSubnets } from '../../subnet/lease';

export interface HostGwPeer {
  /** Lease key (10.0.5.0-24, 10.0.5.0-24&fd00:0:0:5::-64, 0.0.0.0-0&fd00:0:0:5::-64). */
  readonly key: string;
  /** The IPv4 subnet; 0.0.0.0/0 when the peer is reached over IPv6 only. */
  readonly subnet: Cidr;
  /** 0 when the peer is reached over IPv6 only. */
  readonly publicIP: number;
  /** The IPv6 subnet, routed via publicIPv6 (both or neither). */
  readonly ipv6Subnet?: Cidr6;
  readonly publicIPv6?: bigint;
}

/** Which families this host's network routes (the config's EnableIPv4 / EnableIPv6). */
export interface Families {
  readonly ipv4: boolean;
  readonly ipv6: boolean;
}

export function describePeer(p: HostGwPeer): string {
  const parts: string[] = [];
  if (hasV4(p)) parts.push(`${formatCidr(p.subnet)} via ${formatIp(p.publicIP)}`);
  if (p.ipv6Subnet !== undefined && p.publicIPv6 !== undefined) parts.push(`${formatCidr6(p.ipv6Subnet)} via ${formatIp6(p.publicIPv6)}`);
  return parts.join(', ');
}

/** The peer has an IPv4 route to get. */
export const hasV4 = (p: HostGwPeer): boolean => hasIpv4(p) && p.publicIP !== 0;
/** The peer has an IPv6 route to get. */
export const hasV6 = (p: HostGwPeer): p is HostGwPeer & { ipv6Subnet: Cidr6; publicIPv6: bigint } => p.ipv6Subnet !== undefined && p.publicIPv6 !== undefined;

/**
 * True if `ip` is on a subnet directly connected through one of `addrs` (the
 * external interface's addresses): then it can be a next hop without a
 * router in between. A /32 (or /31-less point address) connects nothing.
 */
export function directlyConnected(addrs: readonly AddrSpec[], ip: number): boolean {
  return addrs.some((a) => a.prefix < 32 && a.ip >>> 0 !== ip >>> 0 && contains({ ip: (a.ip & maskOf(a.prefix)) >>> 0, prefix: a.prefix }, ip));
}

/** directlyConnected for IPv6: `ip` is on an on-link prefix of one of `addrs` (a /128 connects nothing). */
export function directlyConnected6(addrs: readonly Addr6Spec[], ip: bigint): boolean {
  return addrs.some((a) => a.prefix < 128 && a.ip !== ip && contains6({ ip: a.ip & maskOf6(a.prefix), prefix: a.prefix }, ip));
}

/**
 * The peer a host-gw lease describes in a network of these families, or why
 * it cannot be used: the IPv4 subnet via PublicIP when the network routes
 * IPv4 and the lease has both; the IPv6 subnet via PublicIPv6 likewise. A
 * lease with IPv4 only in a dual-stack network is a peer over IPv4 only (as
 * flannel handles it; the driver logs it once).
 */
export function hostGwPeer(l: Lease, key: string, fam: Families): HostGwPeer | string {
  const v4 = fam.ipv4 && hasIpv4(l) && l.publicIP !== 0;
  const v6 = fam.ipv6 && l.ipv6Subnet !== undefined && l.publicIPv6 !== undefined;
  if (!v4 && !v6) {
    if (!fam.ipv4) return l.ipv6Subnet === undefined ? 'no IPv6 subnet in an IPv6-only network' : 'no PublicIPv6 to route its IPv6 subnet to';
    if (!fam.ipv6) return hasIpv4(l) ? 'no PublicIP to route its subnet to' : 'no IPv4 subnet in an IPv4 network';
    return 'neither an IPv4 subnet with a PublicIP nor an IPv6 subnet with a PublicIPv6';
  }
  return {
    key,
    subnet: v4 ? l.subnet : { ip: 0, prefix: 0 },
    publicIP: v4 ? l.publicIP : 0,
    ...(v6 ? { ipv6Subnet: l.ipv6Subnet, publicIPv6: l.publicIPv6 } : {}),
  };
}

function rules(fam: Families): PeerRules<HostGwPeer> {
  return {
    backendType: 'host-gw',
    peer: (l, key) => hostGwPeer(l, key, fam),
    same: (a, b) => a.publicIP === b.publicIP && a.publicIPv6 === b.publicIPv6,
  };
}

/** The peer table of host-gw, with the peers indexed by each family's subnet (for kernel notifications). */
export class HostGwPeerTable extends PeerTable<HostGwPeer> {
  private readonly byV4 = new Map<string, HostGwPeer>();
  private readonly byV6 = new Map<string, HostGwPeer>();

  /** `own`: this host's lease (or its IPv4 subnet); `fam`: default IPv4 only. */
  constructor(own: Cidr | LeaseSubnets, fam: Families = { ipv4: true, ipv6: false }) {
    super(own, rules(fam));
  }

  /** By IPv4 subnet, then (IPv6-only peers) by IPv6 subnet: a stable order for plans and logs. */
  list(): HostGwPeer[] {
    const v6 = (p: HostGwPeer): bigint => p.ipv6Subnet?.ip ?? 0n;
    return [...this.values()].sort((a, b) => a.subnet.ip - b.subnet.ip || a.subnet.prefix - b.subnet.prefix || (v6(a) < v6(b) ? -1 : v6(a) > v6(b) ? 1 : 0));
  }

  /** The peer whose IPv4 subnet is `dst`. */
  byIpv4Subnet(dst: Cidr): HostGwPeer | undefined {
    return this.byV4.get(cidrToKey(dst));
  }

  /** The peer whose IPv6 subnet is `dst`. */
  byIpv6Subnet(dst: Cidr6): HostGwPeer | undefined {
    return this.byV6.get(cidr6ToKey(dst));
  }

  protected override placed(p: HostGwPeer, old: HostGwPeer | undefined): void {
    if (old !== undefined) this.dropped(old);
    if (hasV4(p)) this.byV4.set(cidrToKey(p.subnet), p);
    if (hasV6(p)) this.byV6.set(cidr6ToKey(p.ipv6Subnet), p);
  }

  protected override dropped(p: HostGwPeer): void {
    if (hasV4(p) && this.byV4.get(cidrToKey(p.subnet)) === p) this.byV4.delete(cidrToKey(p.subnet));
    if (hasV6(p) && this.byV6.get(cidr6ToKey(p.ipv6Subnet)) === p) this.byV6.delete(cidr6ToKey(p.ipv6Subnet));
  }
}

/** The steps of the IPv4 plan. */
export type HostGwStep4 =
  | { readonly kind: 'add-route'; readonly dst: Cidr; readonly via: number }
  | { readonly kind: 'del-route'; readonly dst: Cidr; readonly table: number; readonly metric: number; readonly oif?: number; readonly gateway?: number };

/** The steps of the IPv6 plan. */
export type HostGwStep6 =
  | { readonly kind: 'add-route6'; readonly dst: Cidr6; readonly via: bigint }
  | { readonly kind: 'del-route6'; readonly dst: Cidr6; readonly table: number; readonly metric: number; readonly oif?: number; readonly gateway?: bigint };

export type HostGwStep = HostGwStep4 | HostGwStep6;

export function describeStep(s: HostGwStep): string {
  switch (s.kind) {
    case 'add-route':
      return `route ${formatCidr(s.dst)} via ${formatIp(s.via)}`;
    case 'add-route6':
      return `route ${formatCidr6(s.dst)} via ${formatIp6(s.via)}`;
    case 'del-route':
      return `delete route ${formatCidr(s.dst)}${s.gateway !== undefined ? ` via ${formatIp(s.gateway)}` : ''}${s.oif !== undefined ? ` oif ${s.oif}` : ''}`;
    case 'del-route6':
      return `delete route ${formatCidr6(s.dst)}${s.gateway !== undefined ? ` via ${formatIp6(s.gateway)}` : ''}${s.oif !== undefined ? ` oif ${s.oif}` : ''}`;
  }
}

/** Removes the IPv4 route of a peer (for one without, nothing: see delSteps). */
export function delStep(p: HostGwPeer, oif: number): HostGwStep4 {
  return { kind: 'del-route', dst: p.subnet, table: TABLE_MAIN, metric: 0, oif, gateway: p.publicIP };
}

export function addStep(p: HostGwPeer): HostGwStep4 {
  return { kind: 'add-route', dst: p.subnet, via: p.publicIP };
}

/** Adds the IPv6 route of a peer that has one. */
export function addStep6(p: HostGwPeer & { ipv6Subnet: Cidr6; publicIPv6: bigint }): HostGwStep6 {
  return { kind: 'add-route6', dst: p.ipv6Subnet, via: p.publicIPv6 };
}

/** Every route of a peer, removed. */
export function delSteps(p: HostGwPeer, oif: number): HostGwStep[] {
  const out: HostGwStep[] = [];
  if (hasV4(p)) out.push(delStep(p, oif));
  if (hasV6(p)) out.push({ kind: 'del-route6', dst: p.ipv6Subnet, table: TABLE_MAIN, metric: IPV6_DEFAULT_METRIC, oif, gateway: p.publicIPv6 });
  return out;
}

/**
 * Steps that make the Rudder-protocol routes of the main table exactly the
 * routes of `peers` (already filtered to reachable ones) via `oif`: every
 * other Rudder route (a gone lease, another backend's) is removed first.
 */
export function planRoutes(peers: readonly HostGwPeer[], have: readonly RouteInfo[], oif: number): HostGwStep4[] {
  const byKey = new Map(peers.map((p) => [cidrToKey(p.subnet), p]));
  const ok = new Set<string>();
  const steps: HostGwStep4[] = [];
  for (const r of have) {
    const k = cidrToKey(r.dst);
    const p = byKey.get(k);
    if (p !== undefined && !ok.has(k) && r.oif === oif && r.gateway === p.publicIP >>> 0 && r.metric === 0) {
      ok.add(k);
      continue;
    }
    steps.push({ kind: 'del-route', dst: r.dst, table: r.table, metric: r.metric, ...(r.oif !== undefined ? { oif: r.oif } : {}), ...(r.gateway !== undefined ? { gateway: r.gateway } : {}) });
  }
  for (const p of peers) if (!ok.has(cidrToKey(p.subnet))) steps.push(addStep(p));
  return steps;
}

/** planRoutes for IPv6: the peers' IPv6 subnets via their PublicIPv6 (peers already filtered to reachable ones with both). */
export function planRoutes6(peers: readonly HostGwPeer[], have: readonly Route6Info[], oif: number): HostGwStep6[] {
  const byKey = new Map<string, HostGwPeer & { ipv6Subnet: Cidr6; publicIPv6: bigint }>();
  for (const p of peers) if (hasV6(p)) byKey.set(cidr6ToKey(p.ipv6Subnet), p);
  const ok = new Set<string>();
  const steps: HostGwStep6[] = [];
  for (const r of have) {
    const k = cidr6ToKey(r.dst);
    const p = byKey.get(k);
    if (p !== undefined && !ok.has(k) && r.oif === oif && r.gateway === p.publicIPv6 && r.metric === IPV6_DEFAULT_METRIC) {
      ok.add(k);
      continue;
    }
    steps.push({ kind: 'del-route6', dst: r.dst, table: r.table, metric: r.metric, ...(r.oif !== undefined ? { oif: r.oif } : {}), ...(r.gateway !== undefined ? { gateway: r.gateway } : {}) });
  }
  for (const [k, p] of byKey) if (!ok.has(k)) steps.push(addStep6(p));
  return steps;
}
