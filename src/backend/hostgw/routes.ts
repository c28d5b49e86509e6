/**
 * The host-gw backend's pure logic: the peer table (lease events in, peers
 * added/removed out), the "directly connected" rule and the plan that makes
 * the kernel's Rudder-protocol routes match the peers. No I/O here.
 */
import { cidrToKey, contains, formatCidr, formatIp, maskOf, type Cidr } from '../../ip/ipv4';
import { PeerTable, bySubnet, type PeerRules } from '../peers';
import { TABLE_MAIN, type AddrSpec, type RouteInfo } from '../../netlink/types';

export interface HostGwPeer {
  /** Lease key form of the subnet (10.0.5.0-24). */
  readonly key: string;
  readonly subnet: Cidr;
  readonly publicIP: number;
}

export function describePeer(p: HostGwPeer): string {
  return `${formatCidr(p.subnet)} via ${formatIp(p.publicIP)}`;
}

/**
 * True if `ip` is on a subnet directly connected through one of `addrs` (the
 * external interface's addresses): then it can be a next hop without a
 * router in between. A /32 (or /31-less point address) connects nothing.
 */
export function directlyConnected(addrs: readonly AddrSpec[], ip: number): boolean {
  return addrs.some((a) => a.prefix < 32 && a.ip >>> 0 !== ip >>> 0 && contains({ ip: (a.ip & maskOf(a.prefix)) >>> 0, prefix: a.prefix }, ip));
}

/** The peer table's rules for host-gw: a lease is a route to its subnet via its PublicIP. */
const RULES: PeerRules<HostGwPeer> = {
  backendType: 'host-gw',
  peer: (l, key) => ({ key, subnet: l.subnet, publicIP: l.publicIP }),
  same: (a, b) => a.publicIP === b.publicIP,
};

export class HostGwPeerTable extends PeerTable<HostGwPeer> {
  constructor(own: Cidr) {
    super(own, RULES);
  }

  list(): HostGwPeer[] {
    return bySubnet(this.values());
  }
}

export type HostGwStep =
  | { readonly kind: 'add-route'; readonly dst: Cidr; readonly via: number }
  | { readonly kind: 'del-route'; readonly dst: Cidr; readonly table: number; readonly metric: number; readonly oif?: number; readonly gateway?: number };

export function describeStep(s: HostGwStep): string {
  if (s.kind === 'add-route') return `route ${formatCidr(s.dst)} via ${formatIp(s.via)}`;
  return `delete route ${formatCidr(s.dst)}${s.gateway !== undefined ? ` via ${formatIp(s.gateway)}` : ''}${s.oif !== undefined ? ` oif ${s.oif}` : ''}`;
}

export function delStep(p: HostGwPeer, oif: number): HostGwStep {
  return { kind: 'del-route', dst: p.subnet, table: TABLE_MAIN, metric: 0, oif, gateway: p.publicIP };
}

export function addStep(p: HostGwPeer): HostGwStep {
  return { kind: 'add-route', dst: p.subnet, via: p.publicIP };
}

/**
 * Steps that make the Rudder-protocol routes of the main table exactly the
 * routes of `peers` (already filtered to reachable ones) via `oif`: every
 * other Rudder route (a gone lease, another backend's) is removed first.
 */
export function planRoutes(peers: readonly HostGwPeer[], have: readonly RouteInfo[], oif: number): HostGwStep[] {
  const byKey = new Map(peers.map((p) => [cidrToKey(p.subnet), p]));
  const ok = new Set<string>();
  const steps: HostGwStep[] = [];
  for (const r of have) {
    const k = cidrToKey(r.dst);
    const p = byKey.get(k);
    if (p !== undefined && !ok.has(k) && r.oif === oif && r.gateway === p.publicIP >>> 0 && r.metric === 0) {
      ok.add(k);
      continue;
    }
    steps.push({ kind: 'del-route', dst: r.dst, table: r.table, metric: r.metric, ...(r.oif !== undefined ? { oif: r.oif } : {}), ...(r.gateway !== undefined ? { gateway: r.gateway } : {}) });
  }
  for (const p of peers) if (!ok.has(p.key)) steps.push(addStep(p));
  return steps;
}
